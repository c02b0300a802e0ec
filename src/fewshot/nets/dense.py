"""The dense tower of seed 000's Siamese network: flatten, a dense layer of 128, ReLU (optionally beside the pixels)."""
from __future__ import annotations

import torch
from torch import nn

from fewshot.nets.registry import ENCODERS


class DenseTower(nn.Sequential):
    """``[b, c, h, w] -> [b, hidden]``: flatten, linear, ReLU (100,480 parameters for 28x28 and 128).

    With ``skip=True`` the raw pixels are passed on beside the layer's units,
    ``[b, c*h*w + hidden]``: a network fed pixels (such as the MANN) keeps them and gains
    nonlinear features.

    Example:
        >>> tower = DenseTower(in_channels=1, image_size=28)
        >>> tower.out_features, sum(p.numel() for p in tower.parameters())
        (128, 100480)
        >>> DenseTower(in_channels=1, image_size=20, hidden=256, skip=True).out_features
        656
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, hidden: int = 128, skip: bool = False) -> None:
        if hidden < 1:
            raise ValueError(f"the dense tower needs at least one unit, got hidden={hidden}")
        pixels = in_channels * image_size * image_size
        super().__init__(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU())
        self.skip = skip
        self.out_features = hidden + (pixels if skip else 0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = super().forward(images)
        return torch.cat([images.flatten(1), features], dim=1) if self.skip else features


@ENCODERS.register("dense")
def dense(in_channels: int, image_size: int, hidden: int = 128, skip: bool = False) -> DenseTower:
    return DenseTower(in_channels, image_size, hidden=hidden, skip=skip)
