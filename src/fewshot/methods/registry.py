"""Methods by name: ``METHODS.get("protonet")``, ``METHODS.build("protonet", encoder=encoder, n_way=20)``."""
from fewshot.registry import Registry

METHODS: Registry = Registry("method", inputs=("encoder",))
