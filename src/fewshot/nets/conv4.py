"""The Conv-4 encoder of Vinyals et al. (2016) and Snell et al. (2017), and its strided variant (Finn et al. 2017)."""
from __future__ import annotations

import torch
from torch import nn

from fewshot.errors import FewShotError
from fewshot.nets.registry import ENCODERS


def conv_block(in_channels: int, out_channels: int, strided: bool = False) -> nn.Sequential:
    """conv 3x3 (padding 1) -> batch norm -> ReLU -> max-pool 2; with ``strided``, a conv of stride 2 instead
    of the pooling (conv 3x3, stride 2, padding 1 -> batch norm -> ReLU).

    ReLU and max-pooling commute (both are monotone), so the block pools first: the same
    outputs and gradients, with a quarter of the ReLU work.
    """
    if strided:
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1),
                             nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
    )


class SpatialMean(nn.Module):
    """``[b, c, h, w] -> [b, c]``: the mean over positions.

    Example:
        >>> SpatialMean()(torch.ones(2, 64, 2, 2)).shape
        torch.Size([2, 64])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


class Conv4(nn.Sequential):
    """Four conv blocks of ``hidden`` channels, then flatten.

    A 28x28 image gives a 64-d embedding (1x1 spatial); larger images give
    ``hidden * (size // 16) ** 2`` features. ``strided`` is the Omniglot network of MAML (Finn et al. 2017,
    section 5.2: strided convolutions instead of max-pooling): blocks of stride 2, then the mean over the
    positions left (2x2 at 28x28), as the authors' code takes it, so ``hidden`` features at any size.

    Example:
        >>> enc = Conv4(in_channels=1, image_size=28)
        >>> enc.out_features
        64
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, hidden: int = 64, depth: int = 4,
                 strided: bool = False) -> None:
        if strided:
            blocks = [conv_block(in_channels if i == 0 else hidden, hidden, strided=True) for i in range(depth)]
            super().__init__(*blocks, SpatialMean())
            self.out_features = hidden
            return
        if image_size < 2**depth:
            raise FewShotError(f"Conv-{depth} halves the image {depth} times and needs images of at least "
                               f"{2 ** depth} pixels, got {image_size}: pass --image-size {2 ** depth} or more "
                               "(28 for Omniglot)")
        blocks = [conv_block(in_channels if i == 0 else hidden, hidden) for i in range(depth)]
        super().__init__(*blocks, nn.Flatten())
        side = image_size
        for _ in range(depth):
            side //= 2
        self.out_features = hidden * side * side


@ENCODERS.register("conv4")
def conv4(in_channels: int, image_size: int, hidden: int = 64) -> Conv4:
    return Conv4(in_channels, image_size, hidden=hidden)


@ENCODERS.register("conv4_strided")
def conv4_strided(in_channels: int, image_size: int, hidden: int = 64) -> Conv4:
    """MAML's Omniglot network: four blocks of a 3x3 convolution of stride 2, batch norm and ReLU, then the mean
    over positions (Finn et al. 2017).

    Example:
        >>> conv4_strided(1, 28)(torch.rand(5, 1, 28, 28)).shape
        torch.Size([5, 64])
    """
    return Conv4(in_channels, image_size, hidden=hidden, strided=True)
