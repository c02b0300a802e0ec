"""Batch norm on the support set's statistics: queries normalised without seeing each other.

A network that adapts to each episode (MAML) cannot normalise with running averages learned across
episodes, and normalising the queries with their own batch statistics makes a query's class depend on the
other queries (the transductive test of Finn et al. 2017). Here every batch norm of a network normalises its
whole input with the per-channel mean and (biased) variance of the input's first rows, the support set's:
support and queries pass through the network together, the support exactly as batch norm in training mode
normalises it alone, each query as if it were one more support example. The statistics depend on the
weights, so gradients flow through them, as through batch norm's own. Computed with plain tensor operations,
which ``torch.func.vmap`` batches correctly even at second order (torch 2.13's batch-norm kernel does not).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def batch_norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers of ``module``, in order.

    Example:
        >>> len(batch_norms(build_encoder("conv4_strided", 1, 28)))
        4
    """
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def support_statistics(module: nn.Module, n_support: int | None) -> Iterator[None]:
    """While active, every batch norm of ``module`` normalises its input ``[b, c, ...]`` with the statistics of
    its first ``n_support`` rows (``None``: of all rows, batch norm in training mode) and applies its affine
    map; the running statistics are neither used nor updated, in training and in eval mode alike.

    Example:
        >>> with support_statistics(encoder, len(support)):
        ...     features = encoder(torch.cat([support, query]))  # queries on the support's statistics
    """
    norms = batch_norms(module)
    tracking = [norm.track_running_stats for norm in norms]

    def normalise(norm: nn.modules.batchnorm._BatchNorm, inputs: tuple[torch.Tensor], _: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        reference = x if n_support is None else x[:n_support]
        dims = [0, *range(2, x.dim())]
        mean = reference.mean(dims, keepdim=True)
        var = reference.var(dims, unbiased=False, keepdim=True)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        out = (x - mean) * torch.rsqrt(var + norm.eps)
        if norm.affine:
            out = out * norm.weight.view(shape) + norm.bias.view(shape)
        return out

    handles = [norm.register_forward_hook(normalise) for norm in norms]
    for norm in norms:
        norm.track_running_stats = False  # training mode then takes batch statistics without updating the buffers
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for norm, track in zip(norms, tracking):
            norm.track_running_stats = track
