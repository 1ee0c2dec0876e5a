"""SkipCell around arbitrary cells: against SkipRNN (an independent implementation of the same maths), against the
closed-form gate sequence, and its no-grad skipping of the cell."""
import math
from typing import NamedTuple

import pytest
import torch
from torch import nn

from skiprnn import SkipCell, SkipCellState, SkipRNN, StackedCells, budget_loss, unroll


class CountingCell(nn.Module):
    """torch.nn.GRUCell that counts its calls."""

    def __init__(self, *args):
        super().__init__()
        self.gru, self.hidden_size, self.calls = nn.GRUCell(*args), args[1], 0

    def forward(self, x, state=None):
        self.calls += 1
        return self.gru(x, state)


@pytest.mark.parametrize("mode", ["skip_lstm", "skip_gru"])
@pytest.mark.parametrize("fused", [False, True])
def test_wrapping_our_cell_reproduces_skip_rnn(mode, fused):
    """Same parameters, same initial state: outputs, updates and every gradient agree to float64 rounding."""
    torch.manual_seed(0)
    model = SkipRNN(mode, 3, 6, fused=fused).double()
    with torch.no_grad():
        model.update_gate.weight.normal_(0, 1.0)
        model.update_gate.bias.fill_(-0.2)
    wrapped = SkipCell(model.cells[0]).double()  # our TF-style cells have torch's cell(x, state) interface
    wrapped.update_gate = model.update_gate  # shared, so the gradients accumulate on the same tensors
    x = torch.randn(20, 4, 3, dtype=torch.float64)
    coef = torch.randn(20, 4, dtype=torch.float64)

    def loss_of(output, updates):
        return output.pow(2).sum() + (coef * updates).sum()

    out = model(x)
    assert 0 < out.updates.sum() < out.updates.numel()  # both branches exercised
    grads = torch.autograd.grad(loss_of(out.output, out.updates), list(model.parameters()))

    h0 = model.h0[0].expand(4, -1)
    cell_state = (h0, model.c0[0].expand(4, -1)) if mode == "skip_lstm" else h0
    output, updates, final = unroll(wrapped, x, SkipCell.initial_state(cell_state))
    torch.testing.assert_close(output, out.output, rtol=0, atol=1e-12)
    assert torch.equal(updates, out.updates)
    final_h = final.cell[0] if mode == "skip_lstm" else final.cell
    torch.testing.assert_close(final_h, out.state.h[0], rtol=0, atol=1e-12)
    if mode == "skip_lstm":
        torch.testing.assert_close(final.cell[1], out.state.c[0], rtol=0, atol=1e-12)
    for name in ("update_prob", "cum_update_prob"):
        torch.testing.assert_close(getattr(final, name), getattr(out.state, name), rtol=0, atol=1e-12)
    grads_wrapped = torch.autograd.grad(loss_of(output, updates), list(model.parameters()))
    for name, a, b in zip([n for n, _ in model.named_parameters()], grads, grads_wrapped):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("mode", ["skip_lstm", "skip_gru"])
def test_stacked_cells_reproduce_a_stacked_skip_rnn(mode):
    """Two layers sharing one gate (from the top layer's c for LSTM, its h for GRU), every layer copied on a skip."""
    torch.manual_seed(2)
    model = SkipRNN(mode, 3, 6, num_layers=2).double()
    with torch.no_grad():
        model.update_gate.weight.normal_(0, 1.0)
        model.update_gate.bias.fill_(-0.2)
    stack = StackedCells(*model.cells)
    wrapped = SkipCell(stack, gate_from=(-1, 1) if mode == "skip_lstm" else -1).double()
    wrapped.update_gate = model.update_gate
    x = torch.randn(15, 4, 3, dtype=torch.float64)
    out = model(x)
    assert 0 < out.updates.sum() < out.updates.numel()
    layers = [model.h0[k].expand(4, -1) for k in range(2)]
    if mode == "skip_lstm":
        layers = [(h, model.c0[k].expand(4, -1)) for k, h in enumerate(layers)]
    output, updates, final = unroll(wrapped, x, SkipCell.initial_state(tuple(layers)))
    torch.testing.assert_close(output, out.output, rtol=0, atol=1e-12)
    assert torch.equal(updates, out.updates)
    for k in range(2):
        h = final.cell[k][0] if mode == "skip_lstm" else final.cell[k]
        torch.testing.assert_close(h, out.state.h[k], rtol=0, atol=1e-12)
    grads = torch.autograd.grad(out.output.pow(2).sum() + out.updates.sum(), list(model.parameters()))
    grads_wrapped = torch.autograd.grad(output.pow(2).sum() + updates.sum(), list(model.parameters()))
    for name, a, b in zip([n for n, _ in model.named_parameters()], grads, grads_wrapped):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12, msg=name)
    assert StackedCells(nn.LSTMCell(3, 5), nn.LSTMCell(5, 7)).hidden_size == 7
    with pytest.raises(ValueError, match="tuple of 2 layer states"):
        stack(x[0], final.cell + final.cell)


@pytest.mark.parametrize("mode", ["skip_lstm", "skip_gru"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_unroll_with_lengths_matches_skip_rnn(mode, batch_first):
    """A padded batch: outputs, updates, each sequence's final state and the gradients agree with SkipRNN's
    own masking (an independent implementation); padding neither updates nor moves the state."""
    torch.manual_seed(1)
    model = SkipRNN(mode, 3, 6, batch_first=batch_first).double()
    with torch.no_grad():
        model.update_gate.weight.normal_(0, 1.0)
        model.update_gate.bias.fill_(-0.2)
    wrapped = SkipCell(model.cells[0]).double()
    wrapped.update_gate = model.update_gate
    lengths = torch.tensor([12, 5, 1, 9])
    x = torch.randn(4, 12, 3, dtype=torch.float64) if batch_first else torch.randn(12, 4, 3, dtype=torch.float64)
    coef = torch.randn(*x.shape[:2], dtype=torch.float64)

    out = model(x, lengths=lengths)
    h0 = model.h0[0].expand(4, -1)
    cell_state = (h0, model.c0[0].expand(4, -1)) if mode == "skip_lstm" else h0
    output, updates, final = unroll(wrapped, x, SkipCell.initial_state(cell_state), batch_first, lengths=lengths)
    torch.testing.assert_close(output, out.output, rtol=0, atol=1e-12)
    assert torch.equal(updates, out.updates)
    per_step = updates if not batch_first else updates.t()
    assert per_step[5:, 1].sum() == 0 and per_step[1:, 2].sum() == 0 and 0 < per_step[:5, 1].sum()
    final_h = final.cell[0] if mode == "skip_lstm" else final.cell
    torch.testing.assert_close(final_h, out.state.h[0], rtol=0, atol=1e-12)
    for name in ("update_prob", "cum_update_prob"):
        torch.testing.assert_close(getattr(final, name), getattr(out.state, name), rtol=0, atol=1e-12)
    grads = torch.autograd.grad((out.output.pow(2).sum() + (coef * out.updates).sum()), list(model.parameters()))
    grads_wrapped = torch.autograd.grad((output.pow(2).sum() + (coef * updates).sum()), list(model.parameters()))
    for name, a, b in zip([n for n, _ in model.named_parameters()], grads, grads_wrapped):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12, msg=name)
    _, fresh, _ = unroll(wrapped, x, batch_first=batch_first, lengths=lengths)  # from the cell's own zero state
    assert (fresh.t() if batch_first else fresh)[1:, 2].sum() == 0
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 12\]"):
        unroll(wrapped, x, batch_first=batch_first, lengths=torch.tensor([13, 1, 1, 1]))


@pytest.mark.parametrize("bias, period", [(-1.0, 2), (-2.0, 5), (0.0, 2)])
def test_constant_gate_around_torch_lstm_cell(bias, period):
    """nn.LSTMCell from its own zero state: u_t is 1 every `period` steps (the smallest k with k·Δ > 0.5), and a
    skipped step copies h and c exactly."""
    torch.manual_seed(1)
    cell = SkipCell(nn.LSTMCell(3, 5))
    with torch.no_grad():
        cell.update_gate.weight.zero_()
        cell.update_gate.bias.fill_(bias)
    delta = 1 / (1 + math.exp(-bias))
    assert min(k for k in range(1, 50) if k * delta > 0.5) == period
    state = None
    for t in range(17):
        previous = state
        output, update, state = cell(torch.randn(2, 3), state)
        assert update.tolist() == [1.0 if t % period == 0 else 0.0] * 2
        assert torch.equal(output, state.cell[0])
        if t % period:
            assert torch.equal(state.cell[0], previous.cell[0]) and torch.equal(state.cell[1], previous.cell[1])


def test_gate_reads_the_chosen_state_element():
    """Δũ comes from the new c of nn.LSTMCell by default (gate_from=-1, as the original Skip LSTM), or from h."""
    torch.manual_seed(2)
    lstm = nn.LSTMCell(3, 4)
    h, c, x = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 3)
    h_new, c_new = lstm(x, (h, c))
    for gate_from, source in ((-1, c_new), (0, h_new)):
        cell = SkipCell(lstm, gate_from=gate_from)
        _, update, state = cell(x, SkipCellState((h, c), torch.ones(5), torch.zeros(5)))
        assert torch.all(update == 1)
        torch.testing.assert_close(state.update_prob, torch.sigmoid(cell.update_gate(source)).squeeze(1))


def test_no_grad_skips_the_cell_and_gives_the_same_results():
    """Eval mode under no_grad: the cell is called only on steps where some row updates, and everything (outputs,
    updates, the final state) equals the dense path bit for bit."""
    torch.manual_seed(3)
    cell = SkipCell(CountingCell(2, 6)).eval()
    with torch.no_grad():
        cell.update_gate.weight.normal_(0, 1.0)
        cell.update_gate.bias.fill_(-2.5)
    x = torch.randn(40, 3, 2)
    with torch.no_grad():
        out, updates, final = unroll(cell, x)
    some = int((updates.sum(1) > 0).sum())
    assert 0 < some < 40 and bool(((updates.sum(1) > 0) & (updates.sum(1) < 3)).any())  # all-skip and mixed steps
    assert cell.cell.calls == some
    cell.cell.calls = 0
    dense_out, dense_updates, dense_final = unroll(cell, x)  # with gradients: every step evaluates the cell
    assert cell.cell.calls == 40
    assert torch.equal(updates, dense_updates.detach())
    assert torch.equal(out, dense_out.detach())
    for a, b in zip(final, dense_final):
        assert torch.equal(a, b.detach())


def test_state_none_starts_from_the_cells_own_zero_state():
    torch.manual_seed(5)
    cell = SkipCell(nn.LSTMCell(3, 4)).double()
    with torch.no_grad():
        cell.update_gate.weight.normal_(0, 1.0)
        cell.update_gate.bias.fill_(-0.5)
    x = torch.randn(15, 2, 3, dtype=torch.float64)
    zeros = torch.zeros(2, 4, dtype=torch.float64)
    implicit = unroll(cell, x)
    explicit = unroll(cell, x, SkipCell.initial_state((zeros, zeros)))
    assert 0 < implicit[1].sum() < implicit[1].numel()
    for a, b in zip(implicit[:2], explicit[:2]):
        assert torch.equal(a, b)
    assert implicit[1].dtype == torch.float64


class NamedState(NamedTuple):
    h: torch.Tensor
    grid: torch.Tensor


class ConvLikeCell(nn.Module):
    """A state of mixed shapes, (B, 4) and (B, 2, 3, 3), as a NamedTuple the cell reads by name."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3 + 4, 4)
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x, state=None):
        if state is None:
            state = NamedState(x.new_zeros(x.shape[0], 4), x.new_zeros(x.shape[0], 2, 3, 3))
        h = torch.tanh(self.lin(torch.cat([x, state.h], 1)))
        return NamedState(h, torch.tanh(self.conv(state.grid) + h[:, :2, None, None]))


def test_named_tuple_state_of_mixed_shapes():
    torch.manual_seed(6)
    cell = SkipCell(ConvLikeCell(), gate_size=18, gate_from=1)
    with torch.no_grad():
        cell.update_gate.bias.fill_(-2.0)  # with a zero weight: period 5
        cell.update_gate.weight.zero_()
    state, previous = None, None
    for t in range(11):
        previous = state
        output, update, state = cell(torch.randn(2, 3), state)
        assert isinstance(state.cell, NamedState) and state.cell.grid.shape == (2, 2, 3, 3)
        assert torch.equal(output, state.cell.h)
        assert update.tolist() == [1.0 if t % 5 == 0 else 0.0] * 2
        if t % 5:
            assert torch.equal(state.cell.grid, previous.cell.grid) and torch.equal(state.cell.h, previous.cell.h)


def test_budget_loss_trains_the_gate_and_batch_first():
    torch.manual_seed(4)
    cell = SkipCell(nn.GRUCell(2, 6))
    x = torch.randn(4, 9, 2)  # (B, T, input)
    output, updates, state = unroll(cell, x, batch_first=True)
    assert output.shape == (4, 9, 6) and updates.shape == (4, 9) and state.update_prob.shape == (4,)
    time_major = unroll(cell, x.transpose(0, 1))
    assert torch.equal(time_major[0].transpose(0, 1), output) and torch.equal(time_major[1].t(), updates)
    budget_loss(updates, 1e-2, batch_first=True).backward()
    assert cell.update_gate.weight.grad.abs().sum() > 0
    assert cell.update_gate.bias.grad.item() > 0  # descending it lowers b_p: fewer updates


def test_our_cells_take_torchs_cell_interface():
    """skiprnn.LSTMCell/GRUCell as cell(x, state), from zeros when no state is given, as torch's cells."""
    from skiprnn import GRUCell, LSTMCell

    torch.manual_seed(10)
    x, h, c = torch.randn(3, 2), torch.randn(3, 4), torch.randn(3, 4)
    lstm, gru = LSTMCell(2, 4), GRUCell(2, 4)
    assert all(torch.equal(a, b) for a, b in zip(lstm(x, (h, c)), lstm.step(lstm.project_input(x), h, c)))
    assert torch.equal(gru(x, h), gru.step(gru.project_input(x), h)[0])
    zeros = torch.zeros(3, 4)
    assert all(torch.equal(a, b) for a, b in zip(lstm(x), lstm(x, (zeros, zeros))))
    assert torch.equal(gru(x), gru(x, zeros))


class StackedLSTM(nn.Module):
    """Two nn.LSTMCell layers with the state ((h1, c1), (h2, c2))."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.layers = nn.ModuleList([nn.LSTMCell(input_size, hidden_size), nn.LSTMCell(hidden_size, hidden_size)])

    def forward(self, x, state=None):
        state = state or (None, None)
        first = self.layers[0](x, state[0])
        return first, self.layers[1](first[0], state[1])


class NoStep(nn.Module):
    hidden_size = 3


def test_gate_reads_a_nested_state_element():
    """gate_from=(-1, 1): the top layer's c of a stack, where the paper's stacked Skip LSTM reads Δũ."""
    torch.manual_seed(7)
    stack = StackedLSTM(3, 4)
    x = torch.randn(5, 3)
    cell = SkipCell(stack, gate_from=(-1, 1))
    start = SkipCell.initial_state(((torch.zeros(5, 4),) * 2, (torch.zeros(5, 4),) * 2))
    _, update, state = cell(x, start)
    top_c = stack(x, start.cell)[1][1]
    assert torch.all(update == 1)
    torch.testing.assert_close(state.update_prob, torch.sigmoid(cell.update_gate(top_c)).squeeze(1))


def test_feeding_a_sequence_in_chunks_equals_one_call():
    torch.manual_seed(8)
    cell = SkipCell(nn.LSTMCell(3, 5))
    with torch.no_grad():
        cell.update_gate.bias.fill_(-0.5)
    x = torch.randn(12, 4, 3)
    whole = unroll(cell, x)
    first = unroll(cell, x[:5])
    second = unroll(cell, x[5:], first[2])
    assert 0 < whole[1].sum() < whole[1].numel()
    assert torch.equal(torch.cat([first[0], second[0]]), whole[0]) and torch.equal(torch.cat([first[1], second[1]]), whole[1])


@pytest.mark.parametrize("make_cell", [lambda: nn.LSTMCell(3, 5), lambda: nn.GRUCell(3, 5)])
@pytest.mark.parametrize("given_start", [False, True])
def test_runs_under_autocast(make_cell, given_start):
    """bfloat16 autocast on the CPU: the state keeps its dtype, the gate's values stay float32, and the updates
    match float32 where the gate is far from its threshold."""
    torch.manual_seed(9)
    cell = SkipCell(make_cell())
    with torch.no_grad():
        cell.update_gate.weight.zero_()
        cell.update_gate.bias.fill_(-1.0)  # Δũ = 0.27: an update every second step, whatever the precision
    x = torch.randn(6, 2, 3)
    zeros = torch.zeros(2, 5)
    start = SkipCell.initial_state((zeros, zeros) if isinstance(cell.cell, nn.LSTMCell) else zeros) if given_start else None
    reference = unroll(cell, x, start)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, updates, state = unroll(cell, x, start)
    assert state.update_prob.dtype == torch.float32 and updates.dtype == torch.float32
    assert torch.equal(updates, reference[1]) and updates[:, 0].tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    torch.testing.assert_close(output.float(), reference[0], rtol=0, atol=0.05)


def test_detached_cell_state_continues_the_sequence():
    torch.manual_seed(0)
    cell = SkipCell(StackedCells(nn.LSTMCell(2, 5), nn.LSTMCell(5, 5)), gate_from=(-1, 1))
    x = torch.randn(9, 3, 2)
    whole, _, _ = unroll(cell, x)
    first, _, state = unroll(cell, x[:4])
    first.sum().backward()
    state = state.detach()
    assert not state.cell[1][1].requires_grad and not state.update_prob.requires_grad
    second, _, _ = unroll(cell, x[4:], state)
    second.sum().backward()
    torch.testing.assert_close(torch.cat([first, second]), whole)
    with pytest.raises(ValueError, match=r"unroll runs a SkipCell; got LSTMCell: wrap it first"):
        unroll(nn.LSTMCell(2, 5), x)


def test_clear_errors():
    class NoSize(nn.Module):
        def forward(self, x, state=None):
            return x

    with pytest.raises(ValueError, match="pass gate_size"):
        SkipCell(NoSize())
    SkipCell(NoSize(), gate_size=3)(torch.randn(2, 3))  # explicit size works
    with pytest.raises(ValueError, match=r"gate_from=2 is out of range for a state of \(tensor, tensor\)"):
        SkipCell(nn.LSTMCell(3, 4), gate_from=2)(torch.randn(2, 3))
    with pytest.raises(ValueError, match="SkipCellState"):
        SkipCell(nn.GRUCell(3, 4))(torch.randn(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="gate_from=1 indexes into a tuple, but the state there is one tensor"):
        SkipCell(nn.GRUCell(3, 4), gate_from=1)(torch.randn(2, 3))
    with pytest.raises(ValueError, match="gate_from must be an index"):
        SkipCell(nn.GRUCell(3, 4), gate_from=True)
    with pytest.raises(ValueError, match="gate_from must be an index"):
        SkipCell(nn.GRUCell(3, 4), gate_from=())
    with pytest.raises(ValueError, match=r"got \(tensor, tensor\): give gate_from as a tuple of indices"):
        SkipCell(StackedLSTM(3, 4), gate_from=-1)(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"NoStep has no forward\(x, state\)"):
        SkipCell(NoStep())
    with pytest.raises(ValueError, match=r"x must be \(T, B, ...\)"):
        unroll(SkipCell(nn.GRUCell(3, 4)), torch.randn(5), batch_first=True)
    with pytest.raises(ValueError, match=r"18 values per row .* pass gate_size=18"):
        SkipCell(ConvLikeCell(), gate_size=4, gate_from=1)(torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"another structure \(tensor\) than it was given \(\(tensor, tensor\)\)"):
        start = SkipCell.initial_state((torch.zeros(2, 3), torch.zeros(2, 3)))
        SkipCell(NoSize(), gate_size=3)(torch.randn(2, 3), start)  # given a tuple, it returns a tensor
    with pytest.raises(ValueError, match=r"update_prob must have shape \(2,\)"):
        SkipCell(nn.GRUCell(3, 4))(torch.randn(2, 3), SkipCellState(torch.zeros(2, 4), torch.ones(1), torch.zeros(2)))
    with pytest.raises(ValueError, match="no time steps"):
        unroll(SkipCell(nn.GRUCell(3, 4)), torch.randn(0, 2, 3))


def test_update_gate_is_glorot_by_default_and_torch_on_request():
    hidden = 110
    bound = math.sqrt(6 / (hidden + 1))  # 0.232, the original code's; torch's nn.Linear gives 1/sqrt(110) = 0.095
    torch.manual_seed(0)
    glorot = torch.cat([SkipCell(nn.GRUCell(2, hidden)).update_gate.weight.flatten() for _ in range(20)])
    assert glorot.abs().max() <= bound and glorot.abs().max() > 0.9 * bound
    plain = torch.cat([SkipCell(nn.GRUCell(2, hidden), gate_init="torch").update_gate.weight.flatten() for _ in range(20)])
    assert plain.abs().max() <= 1 / math.sqrt(hidden)
    with pytest.raises(ValueError, match="gate_init must be one of glorot, torch"):
        SkipCell(nn.GRUCell(2, 4), gate_init="normal")
