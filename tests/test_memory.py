"""LRUA and NTM memories against small hand-worked examples."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fewshot.nets.controllers import FeedForwardController, LSTMController
from fewshot.nets.lrua import LRUAMemory, least_used_slots, lrua_write, lrua_write_weights
from fewshot.nets.memory import MemoryState, cosine_similarity, read
from fewshot.nets.ntm import NTMMemory, circular_shift, ntm_write, sharpen


pytestmark = pytest.mark.usefixtures("one_thread")


def set_head_bias(linear: torch.nn.Linear, bias: list[float]) -> None:
    """Make a head layer output ``bias`` whatever the controller says (weights zero)."""
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.tensor(bias))


# -- shared addressing --------------------------------------------------------------------------


def test_cosine_similarity_hand_worked_and_zero_rows():
    keys = torch.tensor([[[1.0, 0.0]]])
    memory = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [1.0, 1.0], [0.0, 0.0]]])
    sim = cosine_similarity(keys, memory)
    assert torch.allclose(sim, torch.tensor([[[1.0, 0.0, 1 / math.sqrt(2), 0.0]]]), atol=1e-6)


def test_cosine_similarity_gradient_is_finite_on_zero_memory():
    keys = torch.randn(2, 3, 4, requires_grad=True)
    memory = torch.zeros(2, 5, 4, requires_grad=True)
    cosine_similarity(keys, memory).sum().backward()
    assert torch.isfinite(keys.grad).all() and torch.isfinite(memory.grad).all()


def test_read_is_weighted_sum_of_rows_per_head():
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    weights = torch.tensor([[[0.25, 0.75], [1.0, 0.0]]])
    assert torch.allclose(read(weights, memory), torch.tensor([[2.5, 3.5, 1.0, 2.0]]))


# -- LRUA --------------------------------------------------------------------------------------


def test_least_used_slots_are_the_smallest_usages_least_first():
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.05], [0.0, 2.0, 1.0, 3.0]])
    assert least_used_slots(usage, 2).tolist() == [[3, 1], [0, 2]]


def test_lrua_write_weights_interpolate_previous_read_and_least_used():
    gate = torch.tensor([[[0.25]]])
    previous_read = torch.tensor([[[0.5, 0.5, 0.0, 0.0]]])
    w = lrua_write_weights(gate, previous_read, torch.tensor([[3]]), slots=4)
    assert torch.allclose(w, torch.tensor([[[0.125, 0.125, 0.0, 0.75]]]))


def test_lrua_heads_share_out_the_least_used_slots():
    gate = torch.zeros(1, 2, 1)  # pure least-used writes
    least_used = least_used_slots(torch.tensor([[3.0, 0.2, 1.0, 0.1, 4.0]]), 2)
    w = lrua_write_weights(gate, torch.zeros(1, 2, 5), least_used, 5)
    assert w[0].tolist() == [[0, 0, 0, 1, 0], [0, 1, 0, 0, 0]]
    assert w.sum(1)[0].tolist() == [0, 1, 0, 1, 0]  # the n-hot w^lu of the paper


def test_lrua_write_zeroes_least_used_slot_and_changes_only_addressed_slots():
    memory = torch.arange(12.0).view(1, 4, 3)
    weights = torch.tensor([[[0.0, 0.5, 0.0, 0.5]]])
    key = torch.tensor([[[2.0, 4.0, 6.0]]])
    out = lrua_write(memory, torch.tensor([3]), weights, key)
    assert torch.equal(out[0, 0], memory[0, 0]) and torch.equal(out[0, 2], memory[0, 2])
    assert torch.allclose(out[0, 1], memory[0, 1] + 0.5 * key[0, 0])
    assert torch.allclose(out[0, 3], 0.5 * key[0, 0])  # zeroed, then written


def test_lrua_step_hand_worked():
    mem = LRUAMemory(controller_size=3, slots=4, width=2, heads=1, gamma=0.5)
    key_pre, alpha = [10.0, 0.0], 0.0  # key tanh(10, 0) ~ (1, 0); sigmoid(0) = 1/2
    set_head_bias(mem.head_params, key_pre + [alpha])
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, 2.0]]])
    usage = torch.tensor([[1.0, 0.3, 0.2, 2.0]])
    previous_read = torch.tensor([[[0.0, 1.0, 0.0, 0.0]]])
    state = MemoryState(memory, previous_read, torch.zeros(1, 1, 4), usage)
    r, new = mem(torch.zeros(1, 3), state)
    key = torch.tanh(torch.tensor([10.0, 0.0]))
    # least used slot: 2 (usage 0.2); write weights 1/2 on slot 1 (previous read) and 1/2 on slot 2
    assert torch.allclose(new.write_weights, torch.tensor([[[0.0, 0.5, 0.5, 0.0]]]))
    expected = memory.clone()
    expected[0, 1] += 0.5 * key
    expected[0, 2] = 0.5 * key  # zeroed before the write
    assert torch.allclose(new.memory, expected)
    assert torch.equal(new.memory[0, 0], memory[0, 0]) and torch.equal(new.memory[0, 3], memory[0, 3])
    cos = cosine_similarity(key.view(1, 1, 2), expected)
    assert torch.allclose(new.read_weights, torch.softmax(cos, -1), atol=1e-6)
    assert torch.allclose(new.read_weights.sum(-1), torch.ones(1, 1))
    assert torch.allclose(new.usage, 0.5 * usage + new.read_weights.sum(1) + new.write_weights.sum(1))
    assert torch.allclose(r, read(new.read_weights, expected))


def test_lrua_add_write_stores_the_add_vector_and_reads_with_the_key():
    mem = LRUAMemory(controller_size=3, slots=3, width=2, heads=1, gamma=0.5, write="add")
    set_head_bias(mem.head_params, [10.0, 0.0, -20.0])  # key ~ (1, 0); gate ~ 0: all to the least-used slot
    set_head_bias(mem.add_params, [0.0, 10.0])  # add vector ~ (0, 1)
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    state = MemoryState(memory, torch.zeros(1, 1, 3), torch.zeros(1, 1, 3), torch.tensor([[1.0, 2.0, 0.1]]))
    r, new = mem(torch.zeros(1, 3), state)
    add = torch.tanh(torch.tensor([0.0, 10.0]))
    expected = memory.clone()
    expected[0, 2] = (1 - torch.sigmoid(torch.tensor(-20.0))) * add  # slot 2 zeroed, then the add vector written
    assert torch.allclose(new.memory, expected)
    key = torch.tanh(torch.tensor([10.0, 0.0]))
    assert torch.allclose(new.read_weights, torch.softmax(cosine_similarity(key.view(1, 1, 2), expected), -1))
    assert new.read_weights[0, 0].argmax() == 0  # the key finds slot 0, not the slot just written
    assert torch.allclose(r, read(new.read_weights, expected))


def test_lrua_key_strength_sharpens_the_read_towards_the_best_match():
    memory = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]])
    state = MemoryState(memory, torch.zeros(1, 1, 3), torch.zeros(1, 1, 3), torch.tensor([[3.0, 2.0, 1.0]]))
    reads = {}
    for strength in (0.0, 20.0):  # raw beta: softplus(0) = log 2, softplus(20) ~ 20
        mem = LRUAMemory(controller_size=3, slots=3, width=2, heads=1, gamma=0.5, key_strength=True)
        set_head_bias(mem.head_params, [10.0, 0.0, 20.0, strength])  # key ~ (1, 0); gate ~ 1: no write
        _, new = mem(torch.zeros(1, 3), state)
        key = torch.tanh(torch.tensor([10.0, 0.0])).view(1, 1, 2)
        beta = F.softplus(torch.tensor(strength))
        assert torch.allclose(new.read_weights, torch.softmax(beta * cosine_similarity(key, new.memory), -1))
        reads[strength] = new.read_weights[0, 0]
    plain = LRUAMemory(controller_size=3, slots=3, width=2, heads=1, gamma=0.5)
    assert plain.head_params.out_features == 3 and not plain.key_strength
    assert torch.all(new.memory[0, 2] == 0)  # the least-used slot was cleared
    assert reads[0.0].max() < 0.5 and reads[20.0][0] > 0.99  # log 2 barely focuses; 20 picks the match


def test_lrua_rejects_an_unknown_write():
    with pytest.raises(ValueError, match="key, add"):
        LRUAMemory(controller_size=4, slots=4, width=3, heads=1, write="value")


def test_lrua_runs_from_initial_state_without_nans():
    mem = LRUAMemory(controller_size=8, slots=16, width=4, heads=3)
    state = mem.initial_state(5)
    assert torch.all(state.memory == 1e-6)
    for _ in range(20):
        r, state = mem(torch.randn(5, 8), state)
        assert torch.isfinite(r).all()
        assert torch.allclose(state.read_weights.sum(-1), torch.ones(5, 3), atol=1e-5)
    assert r.shape == (5, 12)


def test_lrua_rejects_more_heads_than_slots():
    with pytest.raises(ValueError, match="slots"):
        LRUAMemory(controller_size=4, slots=2, width=3, heads=3)


# -- NTM ---------------------------------------------------------------------------------------


def test_circular_shift_moves_one_slot_and_wraps():
    w = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert circular_shift(w, torch.tensor([[0.0, 0.0, 1.0]])).tolist() == [[0.0, 1.0, 0.0, 0.0]]  # +1
    assert circular_shift(w, torch.tensor([[1.0, 0.0, 0.0]])).tolist() == [[0.0, 0.0, 0.0, 1.0]]  # -1 wraps
    assert circular_shift(w, torch.tensor([[0.0, 1.0, 0.0]])).tolist() == w.tolist()
    assert torch.allclose(circular_shift(w, torch.tensor([[0.5, 0.5, 0.0]])), torch.tensor([[0.5, 0, 0, 0.5]]))
    v = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.0]])
    assert torch.allclose(circular_shift(v, torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]])), v.roll(2, -1))


def test_sharpen_known_vectors():
    w = torch.tensor([[0.5, 0.25, 0.25]])
    assert torch.allclose(sharpen(w, torch.tensor([[2.0]])), torch.tensor([[2 / 3, 1 / 6, 1 / 6]]), atol=1e-6)
    assert torch.allclose(sharpen(w, torch.tensor([[1.0]])), w, atol=1e-6)
    zeros = sharpen(torch.zeros(1, 4), torch.tensor([[3.0]]))
    assert torch.allclose(zeros, torch.full((1, 4), 0.25))  # no 0/0


def test_ntm_write_erases_then_adds_only_addressed_slots():
    memory = torch.ones(1, 3, 2)
    weights = torch.tensor([[[1.0, 0.0, 0.0]]])
    out = ntm_write(memory, weights, erase=torch.tensor([[[1.0, 0.5]]]), add=torch.tensor([[[2.0, 3.0]]]))
    assert out[0].tolist() == [[2.0, 3.5], [1.0, 1.0], [1.0, 1.0]]
    two = torch.tensor([[[0.5, 0.0, 0.0], [0.5, 0.0, 0.0]]])  # two write heads on slot 0
    out = ntm_write(memory, two, erase=torch.ones(1, 2, 2), add=torch.zeros(1, 2, 2))
    assert torch.allclose(out[0, 0], torch.full((2,), 0.25))  # (1 - 0.5) * (1 - 0.5)


def test_ntm_content_addressing_with_strong_key_focuses_on_the_match():
    mem = NTMMemory(controller_size=2, slots=3, width=2, heads=1, shift_range=1)
    # read head: key (10, 0) -> ~(1, 0); beta large; gate 1 (content only); shift "stay"; gamma ~1
    set_head_bias(mem.read_params, [10.0, 0.0, 50.0, 50.0, -50.0, -50.0, 50.0, -50.0])
    # write head: erase nothing, add nothing
    set_head_bias(mem.write_params, [0.0] * 8 + [-50.0, -50.0, -50.0, -50.0])
    with torch.no_grad():
        mem.write_params.bias[-2:] = 0.0
    memory = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]]])
    state = MemoryState(memory, torch.zeros(1, 1, 3), torch.zeros(1, 1, 3), None)
    r, new = mem(torch.zeros(1, 2), state)
    assert torch.allclose(new.memory, memory, atol=1e-6)
    assert new.read_weights.argmax(-1).item() == 1 and new.read_weights[0, 0, 1] > 0.99
    assert torch.allclose(r, memory[:, 1], atol=1e-2)


def test_ntm_interpolation_gate_keeps_previous_weights():
    mem = NTMMemory(controller_size=2, slots=4, width=2, heads=1, shift_range=1)
    # gate 0: w^g = previous; shift +1; gamma ~1
    set_head_bias(mem.read_params, [1.0, 0.0, 0.0, -50.0, -50.0, -50.0, -50.0, 50.0])
    previous = torch.tensor([[[0.7, 0.3, 0.0, 0.0]]])
    state = MemoryState(torch.rand(1, 4, 2), previous, torch.full((1, 1, 4), 0.25), None)
    _, new = mem(torch.zeros(1, 2), state)
    assert torch.allclose(new.read_weights, torch.tensor([[[0.0, 0.7, 0.3, 0.0]]]), atol=1e-4)


def test_ntm_runs_from_initial_state_without_nans():
    mem = NTMMemory(controller_size=8, slots=16, width=4, heads=2, write_heads=2)
    state = mem.initial_state(3)
    for _ in range(20):
        r, state = mem(torch.randn(3, 8) * 5, state)
        assert torch.isfinite(r).all() and torch.isfinite(state.memory).all()
        assert torch.allclose(state.read_weights.sum(-1), torch.ones(3, 2), atol=1e-5)
        assert torch.allclose(state.write_weights.sum(-1), torch.ones(3, 2), atol=1e-5)


# -- controllers --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [LSTMController, FeedForwardController])
def test_controllers_step_shapes_and_read_input(cls):
    ctrl = cls(input_size=6, read_size=4, hidden_size=5)
    projected = ctrl.project_inputs(torch.randn(2, 3, 6))
    state = ctrl.initial_state(2)
    h1, _ = ctrl.step(projected[:, 0], torch.zeros(2, 4), state)
    h2, _ = ctrl.step(projected[:, 0], torch.ones(2, 4), state)
    assert h1.shape == (2, 5) and not torch.allclose(h1, h2)  # the read vector is an input


def test_lstm_matches_torch_lstm_cell():
    ctrl = LSTMController(input_size=3, read_size=0, hidden_size=4)
    cell = torch.nn.LSTMCell(3, 4)
    with torch.no_grad():  # torch orders gates i, f, g, o; ours i, f, o, g: swap the last two blocks
        perm = torch.cat([torch.arange(0, 8), torch.arange(12, 16), torch.arange(8, 12)])
        cell.weight_ih.copy_(ctrl.input_gates.weight[perm])
        cell.bias_ih.copy_(ctrl.input_gates.bias[perm])
        cell.weight_hh.copy_(ctrl.recurrent_gates.weight[perm])
        cell.bias_hh.zero_()
    x = torch.randn(2, 5, 3)
    projected, state, hc = ctrl.project_inputs(x), ctrl.initial_state(2), None
    for t in range(5):
        h, state = ctrl.step(projected[:, t], None, state)
        hc = cell(x[:, t], hc)
        assert torch.allclose(h, hc[0], atol=1e-6)
