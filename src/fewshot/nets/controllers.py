"""Controllers of memory-augmented networks: an LSTM or a feed-forward layer.

At step ``t`` a controller reads the external input ``x_t`` (image and previous label)
and the previous read vector ``r_{t-1}`` and emits ``h_t``, from which the memory heads
take their keys (Santoro et al. 2016, section 3.1; Graves et al. 2014, section 2).
The part of the computation that depends on ``x_t`` alone is done for all time steps at
once (:meth:`Controller.project_inputs`), so the time loop only does the recurrent part
(:meth:`Controller.step`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from fewshot.registry import Registry

CONTROLLERS: Registry[type[Controller]] = Registry("controller")

State = tuple[torch.Tensor, ...]


class Controller(nn.Module, ABC):
    """Base class of controllers.

    Args:
        input_size: features of the external input ``x_t``.
        read_size: features of the read vector ``r_{t-1}`` (0 without external memory).
        hidden_size: features of the output ``h_t``.
    """

    def __init__(self, input_size: int, read_size: int, hidden_size: int) -> None:
        super().__init__()
        for value, what in ((input_size, "input_size"), (hidden_size, "hidden_size")):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"controller {what} must be a positive integer, got {value!r}")
        self.input_size, self.read_size, self.hidden_size = input_size, read_size, hidden_size

    @abstractmethod
    def project_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """The input part of every step at once: ``[batch, time, input_size] -> [batch, time, *]``."""

    @abstractmethod
    def initial_state(self, batch: int, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> State:
        """The recurrent state before the first step."""

    @abstractmethod
    def step(self, projected: torch.Tensor, read: torch.Tensor | None, state: State) -> tuple[torch.Tensor, State]:
        """One step from the projected input of step ``t`` and ``r_{t-1}``: returns ``h_t`` and the new state."""


@CONTROLLERS.register("lstm")
class LSTMController(Controller):
    """An LSTM over ``[x_t, r_{t-1}]`` (Santoro et al. 2016: 200 units).

    The gates are ``W_x x_t + W_r r_{t-1} + W_h h_{t-1} + b`` (Hochreiter and Schmidhuber
    1997, with a forget gate); the forget-gate bias starts at 1 (Jozefowicz et al. 2015).

    Example:
        >>> lstm = LSTMController(input_size=405, read_size=160, hidden_size=200)
        >>> projected = lstm.project_inputs(torch.randn(16, 50, 405))
        >>> h, state = lstm.step(projected[:, 0], torch.zeros(16, 160), lstm.initial_state(16))
        >>> h.shape
        torch.Size([16, 200])
    """

    def __init__(self, input_size: int, read_size: int, hidden_size: int = 200) -> None:
        super().__init__(input_size, read_size, hidden_size)
        self.input_gates = nn.Linear(input_size, 4 * hidden_size)
        self.recurrent_gates = nn.Linear(read_size + hidden_size, 4 * hidden_size, bias=False)
        with torch.no_grad():
            self.input_gates.bias[hidden_size: 2 * hidden_size].fill_(1.0)

    def project_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.input_gates(inputs)

    def initial_state(self, batch: int, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> State:
        zeros = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return zeros, zeros

    def step(self, projected: torch.Tensor, read: torch.Tensor | None, state: State) -> tuple[torch.Tensor, State]:
        h, c = state
        recurrent = h if read is None else torch.cat([read, h], dim=-1)
        gates = torch.addmm(projected, recurrent, self.recurrent_gates.weight.t())
        n = self.hidden_size
        sigmoid = torch.sigmoid(gates[:, : 3 * n])
        input_gate, forget_gate, output_gate = sigmoid[:, :n], sigmoid[:, n: 2 * n], sigmoid[:, 2 * n:]
        c = torch.addcmul(forget_gate * c, input_gate, torch.tanh(gates[:, 3 * n:]))
        h = output_gate * torch.tanh(c)
        return h, (h, c)


@CONTROLLERS.register("feedforward")
class FeedForwardController(Controller):
    """One tanh layer over ``[x_t, r_{t-1}]``: all memory of the past is in the external memory.

    Example:
        >>> ff = FeedForwardController(input_size=405, read_size=160, hidden_size=200)
        >>> h, _ = ff.step(ff.project_inputs(torch.randn(16, 1, 405))[:, 0], torch.zeros(16, 160), ())
        >>> h.shape
        torch.Size([16, 200])
    """

    def __init__(self, input_size: int, read_size: int, hidden_size: int = 200) -> None:
        super().__init__(input_size, read_size, hidden_size)
        self.input_layer = nn.Linear(input_size, hidden_size)
        self.read_layer = nn.Linear(read_size, hidden_size, bias=False) if read_size else None

    def project_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.input_layer(inputs)

    def initial_state(self, batch: int, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> State:
        return ()

    def step(self, projected: torch.Tensor, read: torch.Tensor | None, state: State) -> tuple[torch.Tensor, State]:
        if read is not None and self.read_layer is not None:
            projected = torch.addmm(projected, read, self.read_layer.weight.t())
        return torch.tanh(projected), state


def build_controller(name: str, input_size: int, read_size: int, hidden_size: int) -> Controller:
    """The controller registered as ``name`` (``lstm`` or ``feedforward``)."""
    return CONTROLLERS.get(name)(input_size=input_size, read_size=read_size, hidden_size=hidden_size)
