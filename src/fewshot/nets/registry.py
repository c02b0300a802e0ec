"""Encoders by name: ``build_encoder("conv4", in_channels=1, image_size=28)``.

An encoder factory takes ``in_channels``, ``image_size`` and its own keyword options
and returns an ``nn.Module`` mapping ``[b, c, h, w]`` to ``[b, out_features]`` with an
``out_features`` attribute.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from fewshot.registry import Registry

ENCODERS: Registry = Registry("encoder", inputs=("in_channels", "image_size"))
"""The encoders ``--encoder`` names, built by :func:`build_encoder`.

Example:
    >>> "conv4" in sorted(ENCODERS)
    True
"""


def build_encoder(name: str, in_channels: int, image_size: int, **options: Any) -> nn.Module:
    """Build the encoder registered as ``name``; unknown names and options list the valid ones.

    Example:
        >>> encoder = build_encoder("conv4", in_channels=1, image_size=28)
        >>> encoder(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 64])
    """
    return ENCODERS.build(name, in_channels=in_channels, image_size=image_size, **options)
