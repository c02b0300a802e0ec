"""The trainer's side of ``torch.distributed``: the method in ``DistributedDataParallel``.

DDP averages the gradients of all processes in the backward pass, but synchronises only what goes
through the wrapped module's ``forward``, so the loss runs through :class:`TrainingLoss`, whose
``forward`` is the method's ``training_loss``. The process group is :mod:`fewshot.distributed`'s.
"""
from __future__ import annotations

import torch
from torch import nn

from fewshot.distributed import Group
from fewshot.errors import FewShotError


class TrainingLoss(nn.Module):
    """``forward(batch)`` is ``method.training_loss(batch)``: the module DDP wraps, so gradients are averaged.

    Example:
        >>> loss, metrics = TrainingLoss(method)(batch)
    """

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: object) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.method.training_loss(batch)


def wrap_for_training(method: nn.Module, group: Group, sync_bn: bool) -> nn.Module:
    """:class:`TrainingLoss` of ``method``, in ``DistributedDataParallel`` when there are several processes.

    With ``sync_bn`` the batch norms of the method are made ``SyncBatchNorm`` first (in place: the
    parameters stay the same tensors), so their statistics are over the batches of all processes.

    Example:
        >>> model = wrap_for_training(method, start_group(), sync_bn=False)
        >>> loss, metrics = model(batch)
    """
    loss = TrainingLoss(method)
    if not group.distributed:
        return loss
    if sync_bn:
        if group.device.type != "cuda":
            raise FewShotError("--sync-bn needs CUDA GPUs (torch's SyncBatchNorm runs on CUDA only): use "
                               "--device cuda, or leave --sync-bn out and batch norm statistics stay per process")
        nn.SyncBatchNorm.convert_sync_batchnorm(method)
    return nn.parallel.DistributedDataParallel(loss)

