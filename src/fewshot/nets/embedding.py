"""The embedding network of seed 003's triplet network, and L2 normalisation of embeddings."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.errors import FewShotError
from fewshot.nets.registry import ENCODERS


class TripletConvNet(nn.Sequential):
    """Seed 003's MNIST embedding: conv 32, conv 32, pool, conv 64, conv 64, pool, conv 128, dense.

    All convolutions are 3x3 without padding; every layer, the last included, is
    followed by a ReLU, as in the seed. 190,148 parameters for 28x28 grayscale and a
    100-d embedding, the seed's count.

    Example:
        >>> net = TripletConvNet(in_channels=1, image_size=28)
        >>> net.out_features, sum(p.numel() for p in net.parameters())
        (100, 190148)
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, embedding_dim: int = 100) -> None:
        side = ((image_size - 4) // 2 - 4) // 2 - 2
        if side < 1:
            raise FewShotError(f"the triplet convnet needs images of at least 22 pixels, got {image_size}")
        if embedding_dim < 1:
            raise FewShotError(f"embedding_dim must be at least 1, got {embedding_dim}")

        def conv(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, kernel_size=3), nn.ReLU(inplace=True)]

        super().__init__(
            *conv(in_channels, 32), *conv(32, 32), nn.MaxPool2d(2),
            *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),
            *conv(64, 128), nn.Flatten(),
            nn.Linear(128 * side * side, embedding_dim), nn.ReLU(inplace=True),
        )
        self.out_features = embedding_dim


@ENCODERS.register("triplet_convnet")
def triplet_convnet(in_channels: int, image_size: int, embedding_dim: int = 100) -> TripletConvNet:
    return TripletConvNet(in_channels, image_size, embedding_dim=embedding_dim)


class L2Normalize(nn.Module):
    """Scales each embedding to unit length: ``x / max(||x||, eps)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)
