"""Encoders and memory modules."""
from fewshot.nets import conv4 as _conv4  # noqa: F401  (registers "conv4")
from fewshot.nets import dense as _dense  # noqa: F401  (registers "dense")
from fewshot.nets import embedding as _embedding  # noqa: F401  (registers "triplet_convnet")
from fewshot.nets import flatten as _flatten  # noqa: F401  (registers "flatten")
from fewshot.nets import relation_encoder as _relation_encoder  # noqa: F401  (registers "relation_conv4")
from fewshot.nets.registry import ENCODERS, build_encoder

__all__ = ["ENCODERS", "build_encoder"]
