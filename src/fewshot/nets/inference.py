"""Inference copies of encoders: batch norm folded into the convolution before it.

In eval mode a batch norm is an affine map per channel, so ``bn(conv(x))`` is one
convolution with rescaled weights and a shifted bias: the same outputs (up to rounding)
with one pass over the feature maps fewer per block.
"""
from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """An eval-mode copy of ``module`` where each ``Conv2d`` directly followed by a ``BatchNorm2d``
    inside an ``nn.Sequential`` is replaced by one fused ``Conv2d`` (the batch norm by ``Identity``).

    The original is left untouched, and so stays trainable.

    Example:
        >>> fast = fold_batch_norm(encoder)
        >>> torch.allclose(fast(images), encoder.eval()(images), atol=1e-5)
        True
    """
    folded = copy.deepcopy(module).eval()
    for sequential in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        names = list(sequential._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = sequential._modules[first], sequential._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                sequential._modules[first] = fuse_conv_bn_eval(conv, norm)
                sequential._modules[second] = nn.Identity()
    return folded
