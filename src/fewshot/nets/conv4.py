"""The Conv-4 encoder of Vinyals et al. (2016) and Snell et al. (2017)."""
from __future__ import annotations

from torch import nn

from fewshot.errors import FewShotError
from fewshot.nets.registry import ENCODERS


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv 3x3 (padding 1) -> batch norm -> ReLU -> max-pool 2.

    ReLU and max-pooling commute (both are monotone), so the block pools first: the same
    outputs and gradients, with a quarter of the ReLU work.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
    )


class Conv4(nn.Sequential):
    """Four conv blocks of ``hidden`` channels, then flatten.

    A 28x28 image gives a 64-d embedding (1x1 spatial); larger images give
    ``hidden * (size // 16) ** 2`` features.

    Example:
        >>> enc = Conv4(in_channels=1, image_size=28)
        >>> enc.out_features
        64
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, hidden: int = 64, depth: int = 4) -> None:
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
