"""The identity encoder: an image as its raw pixels (what the MANN of Santoro et al. 2016 reads)."""
from __future__ import annotations

from torch import nn

from fewshot.nets.registry import ENCODERS


class FlattenEncoder(nn.Flatten):
    """``[b, c, h, w] -> [b, c*h*w]``, no parameters.

    Example:
        >>> FlattenEncoder(in_channels=1, image_size=20).out_features
        400
    """

    def __init__(self, in_channels: int = 1, image_size: int = 20) -> None:
        super().__init__()
        self.out_features = in_channels * image_size * image_size


@ENCODERS.register("flatten")
def flatten(in_channels: int, image_size: int) -> FlattenEncoder:
    return FlattenEncoder(in_channels, image_size)
