"""The dense tower of seed 000's Siamese network: flatten, one dense layer of 128, ReLU."""
from __future__ import annotations

from torch import nn

from fewshot.nets.registry import ENCODERS


class DenseTower(nn.Sequential):
    """``[b, c, h, w] -> [b, hidden]``: flatten, linear, ReLU (100,480 parameters for 28x28 and 128).

    Example:
        >>> tower = DenseTower(in_channels=1, image_size=28)
        >>> tower.out_features, sum(p.numel() for p in tower.parameters())
        (128, 100480)
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, hidden: int = 128) -> None:
        if hidden < 1:
            raise ValueError(f"the dense tower needs at least one unit, got hidden={hidden}")
        super().__init__(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, hidden), nn.ReLU())
        self.out_features = hidden


@ENCODERS.register("dense")
def dense(in_channels: int, image_size: int, hidden: int = 128) -> DenseTower:
    return DenseTower(in_channels, image_size, hidden=hidden)
