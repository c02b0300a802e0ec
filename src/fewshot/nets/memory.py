"""External memory for memory-augmented networks: the interface LRUA and NTM share.

A memory is an ``nn.Module`` that, at each time step, takes the controller's output
``h_t [batch, controller_size]`` and the previous :class:`MemoryState`, writes to its
``slots x width`` matrix, reads it with ``heads`` read heads, and returns the read
vector ``r_t [batch, heads * width]`` with the new state. Every operation is batched
over episodes, heads and slots; the only loop is the caller's loop over time steps.

Conventions (Graves et al. 2014; Santoro et al. 2016): ``M_t`` is the memory after the
write of step ``t``, and the reads of step ``t`` see it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch
from torch import nn

INITIAL_VALUE = 1e-6
"""Every cell of a fresh memory holds this small constant (as in the MANN reference code)."""

COSINE_EPS = 1e-8
"""Added to squared norms in cosine similarity, so an all-zero slot has similarity 0, not NaN."""


class MemoryState(NamedTuple):
    """Memory contents and addressing weights after one step.

    Attributes:
        memory: ``M_t [batch, slots, width]``.
        read_weights: ``w^r_t [batch, heads, slots]``; each head's row sums to 1.
        write_weights: ``w^w_t [batch, write heads, slots]``.
        usage: ``w^u_t [batch, slots]`` (LRUA only; ``None`` for memories without usage).
    """

    memory: torch.Tensor
    read_weights: torch.Tensor
    write_weights: torch.Tensor
    usage: torch.Tensor | None


class Memory(nn.Module, ABC):
    """Base class of external memories.

    Args:
        controller_size: features of the controller output ``h_t`` that drives the heads.
        slots: number of memory locations N.
        width: size M of each location.
        heads: number of read heads.
    """

    kind: str

    def __init__(self, controller_size: int, slots: int, width: int, heads: int) -> None:
        super().__init__()
        for value, what in ((controller_size, "controller_size"), (slots, "slots"), (width, "width"),
                            (heads, "heads")):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"memory {what} must be a positive integer, got {value!r}")
        self.controller_size, self.slots, self.width, self.heads = controller_size, slots, width, heads

    @property
    def read_size(self) -> int:
        """Features of the read vector ``r_t``: all heads' reads concatenated."""
        return self.heads * self.width

    @abstractmethod
    def initial_state(self, batch: int, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> MemoryState:
        """The state before the first step: memory filled with :data:`INITIAL_VALUE`."""

    @abstractmethod
    def forward(self, h: torch.Tensor, state: MemoryState) -> tuple[torch.Tensor, MemoryState]:
        """One step: write, then read. Returns ``r_t [batch, heads * width]`` and the new state."""

    def extra_repr(self) -> str:
        return f"slots={self.slots}, width={self.width}, heads={self.heads}"


def cosine_similarity(keys: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """``K(k, M(i)) = k . M(i) / (||k|| ||M(i)||)`` (Santoro eq. 17; Graves eq. 6), batched.

    Args:
        keys: ``[batch, heads, width]``.
        memory: ``[batch, slots, width]``.

    Returns:
        ``[batch, heads, slots]``; rows of zeros give similarity 0 (norms get :data:`COSINE_EPS`).
    """
    keys = keys * torch.rsqrt((keys * keys).sum(-1, keepdim=True) + COSINE_EPS)
    inverse_norms = torch.rsqrt((memory * memory).sum(-1) + COSINE_EPS)  # [batch, slots]
    return torch.bmm(keys, memory.transpose(1, 2)) * inverse_norms.unsqueeze(1)


def read(weights: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
    """``r_t = sum_i w_t(i) M_t(i)`` (Santoro eq. 19; Graves eq. 2) for every head, concatenated.

    ``weights [batch, heads, slots]``, ``memory [batch, slots, width]`` -> ``[batch, heads * width]``.
    """
    return torch.bmm(weights, memory).flatten(1)
