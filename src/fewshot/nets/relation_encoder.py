"""The embedding module of Relation Networks (Sung et al. 2018, figure 2): feature maps, not vectors."""
from __future__ import annotations

from torch import nn

from fewshot.errors import FewShotError
from fewshot.nets.registry import ENCODERS


def relation_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    """conv 3x3 -> batch norm -> ReLU (-> max-pool 2): unpadded when it pools, padded when it does not."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=0 if pool else 1),
                               nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class RelationEncoder(nn.Sequential):
    """Four conv blocks of ``hidden`` channels, pooling only in the first two, flattened.

    A 28x28 Omniglot image gives ``hidden x 5 x 5`` feature maps, flattened to 1,600 features;
    :attr:`feature_shape` says how to fold them back for the relation module.

    Example:
        >>> enc = RelationEncoder(in_channels=1, image_size=28)
        >>> enc.feature_shape, enc.out_features
        ((64, 5, 5), 1600)
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, hidden: int = 64) -> None:
        side = ((image_size - 2) // 2 - 2) // 2
        if side < 4:
            raise FewShotError(f"the relation encoder needs images of at least 22 pixels, got {image_size}: "
                               "pass --image-size 28 (Omniglot) or more")
        super().__init__(relation_block(in_channels, hidden, pool=True), relation_block(hidden, hidden, pool=True),
                         relation_block(hidden, hidden, pool=False), relation_block(hidden, hidden, pool=False),
                         nn.Flatten())
        self.feature_shape = (hidden, side, side)
        self.out_features = hidden * side * side


@ENCODERS.register("relation_conv4")
def relation_conv4(in_channels: int, image_size: int, hidden: int = 64) -> RelationEncoder:
    return RelationEncoder(in_channels, image_size, hidden=hidden)
