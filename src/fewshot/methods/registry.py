"""Methods by name: ``METHODS.get("protonet")``, ``METHODS.build("protonet", encoder=encoder, n_way=20)``."""
from fewshot.registry import Registry

METHODS: Registry = Registry("method", inputs=("encoder",))
"""The methods ``fewshot train METHOD`` names; each is built from an encoder and its options.

Example:
    >>> "protonet" in sorted(METHODS)
    True
    >>> method = METHODS.get("protonet")(build_encoder("conv4", in_channels=1, image_size=28))
"""
