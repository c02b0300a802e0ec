"""Neural Turing Machine memory (Graves, Wayne and Danihelka 2014, arXiv:1410.5401, section 3).

Every head, read or write, turns the controller output into a key ``k``, a key strength
``beta = softplus(.)``, an interpolation gate ``g = sigmoid(.)``, a shift distribution
``s = softmax(.)`` over offsets ``-R .. R`` and a sharpening exponent ``gamma = 1 + softplus(.)``,
and addresses the memory in four stages:

- content (eqs. 5-6): ``w^c = softmax(beta cos(k, M))``;
- interpolation (eq. 7): ``w^g = g w^c + (1 - g) w_{t-1}``;
- circular shift (eq. 8): ``w~(i) = sum_j w^g(j) s(i - j)``;
- sharpening (eq. 9): ``w(i) = w~(i)^gamma / sum_j w~(j)^gamma``, computed as a softmax of
  ``gamma log(w~ + eps)`` so that it never divides by zero.

Write heads also emit an erase vector ``e = sigmoid(.)`` and an add vector ``a = tanh(.)``:
``M_t = M_{t-1} * prod_h (1 - w_h e_h^T) + sum_h w_h a_h^T`` (eqs. 3-4). Writes use
``M_{t-1}``; reads (eq. 2) then address and read ``M_t``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fewshot.nets.memory import INITIAL_VALUE, Memory, MemoryState, cosine_similarity, read

SHARPEN_EPS = 1e-8


class NTMMemory(Memory):
    """Neural Turing Machine memory with content and location addressing (Graves et al. 2014).

    Args:
        controller_size: features of the controller output that drives the heads.
        slots: memory locations N.
        width: size of each location M.
        heads: read heads.
        write_heads: write heads (erase then add).
        shift_range: largest shift R of the circular convolution (offsets ``-R .. R``).

    Example:
        >>> memory = NTMMemory(controller_size=200, slots=128, width=40, heads=4)
        >>> r, state = memory(torch.randn(16, 200), memory.initial_state(16))
        >>> r.shape
        torch.Size([16, 160])
    """

    kind = "ntm"

    def __init__(self, controller_size: int, slots: int = 128, width: int = 40, heads: int = 4,
                 write_heads: int = 1, shift_range: int = 1) -> None:
        super().__init__(controller_size, slots, width, heads)
        if not isinstance(write_heads, int) or write_heads < 1:
            raise ValueError(f"write_heads must be a positive integer, got {write_heads!r}")
        if not isinstance(shift_range, int) or shift_range < 0 or 2 * shift_range + 1 > slots:
            raise ValueError(f"shift_range must be an integer in 0 .. (slots - 1) / 2, got {shift_range!r}")
        self.write_heads, self.shift_range = write_heads, shift_range
        self.address_size = width + 3 + (2 * shift_range + 1)  # key, beta, g, gamma, shift
        self.read_params = nn.Linear(controller_size, heads * self.address_size)
        self.write_params = nn.Linear(controller_size, write_heads * (self.address_size + 2 * width))

    def initial_state(self, batch: int, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> MemoryState:
        return MemoryState(
            memory=torch.full((batch, self.slots, self.width), INITIAL_VALUE, device=device, dtype=dtype),
            read_weights=torch.zeros(batch, self.heads, self.slots, device=device, dtype=dtype),
            write_weights=torch.zeros(batch, self.write_heads, self.slots, device=device, dtype=dtype),
            usage=None,
        )

    def forward(self, h: torch.Tensor, state: MemoryState) -> tuple[torch.Tensor, MemoryState]:
        write = self.write_params(h).view(-1, self.write_heads, self.address_size + 2 * self.width)
        erase = torch.sigmoid(write[..., self.address_size: self.address_size + self.width])
        add = torch.tanh(write[..., self.address_size + self.width:])
        write_weights = self._address(write[..., : self.address_size], state.memory, state.write_weights)
        memory = ntm_write(state.memory, write_weights, erase, add)
        params = self.read_params(h).view(-1, self.heads, self.address_size)
        read_weights = self._address(params, memory, state.read_weights)
        return read(read_weights, memory), MemoryState(memory, read_weights, write_weights, None)

    def _address(self, params: torch.Tensor, memory: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        w = self.width
        key = torch.tanh(params[..., :w])
        beta = F.softplus(params[..., w: w + 1])
        gate = torch.sigmoid(params[..., w + 1: w + 2])
        gamma = 1.0 + F.softplus(params[..., w + 2: w + 3])
        shift = torch.softmax(params[..., w + 3:], dim=-1)
        content = torch.softmax(beta * cosine_similarity(key, memory), dim=-1)
        gated = gate * content + (1.0 - gate) * previous
        return sharpen(circular_shift(gated, shift), gamma)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, write_heads={self.write_heads}, shift_range={self.shift_range}"


def circular_shift(weights: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Circular convolution ``w~(i) = sum_k w(i - k) s(k)`` for ``k = -R .. R`` (Graves eq. 8).

    Args:
        weights: ``[..., slots]``.
        shift: ``[..., 2R + 1]``; entry ``j`` is the weight of offset ``k = j - R``, so with
            ``R = 1`` the distribution ``[0, 0, 1]`` moves every weight one slot up.
    """
    r = (shift.shape[-1] - 1) // 2
    padded = torch.cat([weights[..., weights.shape[-1] - r:], weights, weights[..., :r]], dim=-1)
    windows = padded.unfold(-1, 2 * r + 1, 1)  # [..., slots, 2R+1]: w(i - R) .. w(i + R)
    return torch.matmul(windows, shift.flip(-1).unsqueeze(-1)).squeeze(-1)


def sharpen(weights: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``w^gamma / sum w^gamma`` (Graves eq. 9), as ``softmax(gamma log(w + eps))``."""
    return torch.softmax(gamma * torch.log(weights + SHARPEN_EPS), dim=-1)


def ntm_write(memory: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """Erase then add (Graves eqs. 3-4) for all write heads at once.

    Args:
        memory: ``M_{t-1} [batch, slots, width]``.
        weights: ``[batch, heads, slots]``.
        erase: ``[batch, heads, width]`` in (0, 1).
        add: ``[batch, heads, width]``.
    """
    kept = 1.0 - weights.unsqueeze(-1) * erase.unsqueeze(2)  # [batch, heads, slots, width]
    kept = kept.squeeze(1) if kept.shape[1] == 1 else kept.prod(dim=1)  # one head: no prod (slow backward)
    return (memory * kept).baddbmm_(weights.transpose(1, 2), add)  # in place: no copy
