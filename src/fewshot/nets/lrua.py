"""Least recently used access (LRUA) memory of Santoro et al. (2016), "One-shot learning
with memory-augmented neural networks" (arXiv:1605.06065, eqs. 17-23).

Each read head ``h`` gets a key ``k_t`` (tanh of a linear map of the controller output)
and a scalar gate ``alpha``. With ``n`` = number of heads, one step is:

- least used (eq. 21): the ``n`` slots of smallest usage ``w^u_{t-1}``; they are shared out
  one per head (head ``j`` gets the ``j``-th least-used slot), so the heads' least-used
  weights sum to the paper's n-hot ``w^lu_{t-1}``;
- write weights (eq. 22): ``w^w_t = sigmoid(alpha) w^r_{t-1} + (1 - sigmoid(alpha)) w^lu_{t-1}``;
- write: the single least-used slot is zeroed, then ``M_t(i) = M_{t-1}(i) + sum_h w^w_t(h, i) k_t(h)``
  (eq. 23); with ``write="add"`` each head writes its own add vector ``a_t = tanh(W_a h_t + b_a)``
  instead of its key, as the NTM does (not in the paper's equations; some reimplementations do it);
- read (eqs. 17-19): ``w^r_t = softmax(cos(k_t, M_t))``, ``r_t = sum_i w^r_t(i) M_t(i)``; with
  ``key_strength=True`` each head also emits a key strength ``beta_t = softplus(.)`` and reads with
  ``softmax(beta_t cos(k_t, M_t))``, as the NTM's content addressing does (not in the paper's
  equations: without it a cosine in [-1, 1] can barely focus a softmax over 128 slots);
- usage (eq. 20): ``w^u_t = gamma w^u_{t-1} + sum_h w^r_t + sum_h w^w_t``.

Unlike the NTM there is no location-based addressing: a slot is found by its content
(to read, or to update what was read last step) or because it is unused (to store
something new).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.nets.memory import INITIAL_VALUE, Memory, MemoryState, cosine_similarity, read

WRITES = ("key", "add")


class LRUAMemory(Memory):
    """Least recently used access memory (Santoro et al. 2016).

    Args:
        controller_size: features of the controller output that drives the heads.
        slots: memory locations N (paper: 128).
        width: size of each location M (paper: 40).
        heads: read heads, each with its own write weighting (paper: 4).
        gamma: usage decay (paper: 0.95).
        write: what a head writes: ``key``, its read key ``k_t`` (paper, eq. 23), or ``add``, a
            separate add vector ``a_t``, so that what is stored need not be what is looked up.
        key_strength: give each read head a learned key strength ``beta_t`` that sharpens its
            softmax over cosine similarities (the paper has none: ``beta_t = 1``).

    Example:
        >>> memory = LRUAMemory(controller_size=200, slots=128, width=40, heads=4)
        >>> state = memory.initial_state(batch=16)
        >>> r, state = memory(torch.randn(16, 200), state)
        >>> r.shape, state.read_weights.shape
        (torch.Size([16, 160]), torch.Size([16, 4, 128]))
    """

    kind = "lrua"

    def __init__(self, controller_size: int, slots: int = 128, width: int = 40, heads: int = 4,
                 gamma: float = 0.95, write: str = "key", key_strength: bool = False) -> None:
        super().__init__(controller_size, slots, width, heads)
        if heads > slots:
            raise ValueError(f"LRUA needs at least as many slots as heads, got {slots} slots and {heads} heads")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"usage decay gamma must lie in [0, 1], got {gamma}")
        if write not in WRITES:
            raise ValueError(f"LRUA write must be one of {', '.join(WRITES)}, got {write!r}")
        self.gamma, self.write, self.key_strength = gamma, write, key_strength
        self.head_size = width + (2 if key_strength else 1)  # key, gate alpha[, key strength beta]
        self.head_params = nn.Linear(controller_size, heads * self.head_size)
        self.add_params = nn.Linear(controller_size, heads * width) if write == "add" else None

    def initial_state(self, batch: int, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> MemoryState:
        weights = torch.zeros(batch, self.heads, self.slots, device=device, dtype=dtype)
        return MemoryState(
            memory=torch.full((batch, self.slots, self.width), INITIAL_VALUE, device=device, dtype=dtype),
            read_weights=weights,
            write_weights=weights,
            usage=torch.zeros(batch, self.slots, device=device, dtype=dtype),
        )

    def forward(self, h: torch.Tensor, state: MemoryState) -> tuple[torch.Tensor, MemoryState]:
        params = self.head_params(h).view(-1, self.heads, self.head_size)
        keys = torch.tanh(params[..., : self.width])
        gate = torch.sigmoid(params[..., self.width: self.width + 1])
        least_used = least_used_slots(state.usage, self.heads)
        write_weights = lrua_write_weights(gate, state.read_weights, least_used, self.slots)
        added = keys if self.add_params is None else torch.tanh(self.add_params(h)).view_as(keys)
        memory = lrua_write(state.memory, least_used[:, 0], write_weights, added)
        similarity = cosine_similarity(keys, memory)
        if self.key_strength:
            similarity = F.softplus(params[..., self.width + 1:]) * similarity
        read_weights = torch.softmax(similarity, dim=-1)
        usage = self.gamma * state.usage + read_weights.sum(1) + write_weights.sum(1)
        return read(read_weights, memory), MemoryState(memory, read_weights, write_weights, usage)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma}, write={self.write}, key_strength={self.key_strength}"


def least_used_slots(usage: torch.Tensor, n: int) -> torch.Tensor:
    """Indices ``[batch, n]`` of the ``n`` smallest usages, least used first (Santoro eq. 21)."""
    return torch.topk(usage, n, dim=-1, largest=False, sorted=True).indices


def lrua_write_weights(gate: torch.Tensor, previous_read: torch.Tensor, least_used: torch.Tensor,
                       slots: int) -> torch.Tensor:
    """``w^w_t = sigmoid(alpha) w^r_{t-1} + (1 - sigmoid(alpha)) w^lu_{t-1}`` (Santoro eq. 22).

    Args:
        gate: ``sigmoid(alpha) [batch, heads, 1]``.
        previous_read: ``w^r_{t-1} [batch, heads, slots]``.
        least_used: ``[batch, heads]`` slot indices; head ``j`` takes slot ``least_used[:, j]``.
        slots: number of slots.
    """
    lu = F.one_hot(least_used, slots).to(gate.dtype)
    return torch.lerp(lu, previous_read, gate)


def lrua_write(memory: torch.Tensor, least_used: torch.Tensor, write_weights: torch.Tensor,
               keys: torch.Tensor) -> torch.Tensor:
    """Zero the least-used slot, then add ``w^w_t(i) k_t`` of every head (Santoro eq. 23).

    Args:
        memory: ``M_{t-1} [batch, slots, width]``.
        least_used: ``[batch]`` index of the slot to clear.
        write_weights: ``[batch, heads, slots]``.
        keys: ``[batch, heads, width]`` vectors written: the read keys, or the add vectors (``write="add"``).
    """
    keep = torch.ones_like(memory[..., 0]).scatter_(1, least_used.unsqueeze(1), 0.0)
    return (memory * keep.unsqueeze(-1)).baddbmm_(write_weights.transpose(1, 2), keys)  # in place: no copy
