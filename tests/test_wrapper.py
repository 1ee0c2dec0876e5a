"""SkipCell around arbitrary cells: against SkipRNN (an independent implementation of the same maths), against the
closed-form gate sequence, and its no-grad skipping of the cell."""
import math

import pytest
import torch
from torch import nn

from skiprnn import SkipCell, SkipCellState, SkipRNN, budget_loss, unroll


class TFStep(nn.Module):
    """Our TF-style LSTM/GRU cell behind the plain cell(x, state) interface, so SkipCell can wrap it."""

    def __init__(self, cell):
        super().__init__()
        self.inner, self.hidden_size = cell, cell.hidden_size

    def forward(self, x, state):
        if self.inner.has_cell_state:
            return self.inner.step(self.inner.project_input(x), *state)
        return self.inner.step(self.inner.project_input(x), state)[0]


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
    wrapped = SkipCell(TFStep(model.cells[0])).double()
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
    start = SkipCellState(cell_state, x.new_ones(4), x.new_zeros(4))
    output, updates, final = unroll(wrapped, x, start)
    torch.testing.assert_close(output, out.output, rtol=0, atol=1e-12)
    assert torch.equal(updates, out.updates)
    torch.testing.assert_close(final.cum_update_prob, out.state.cum_update_prob, rtol=0, atol=1e-12)
    grads_wrapped = torch.autograd.grad(loss_of(output, updates), list(model.parameters()))
    for name, a, b in zip([n for n, _ in model.named_parameters()], grads, grads_wrapped):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12, msg=name)


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
    torch.manual_seed(3)
    cell = SkipCell(CountingCell(2, 6))
    with torch.no_grad():
        cell.update_gate.weight.zero_()
        cell.update_gate.bias.fill_(-2.0)  # period 5
    x = torch.randn(30, 1, 2)
    with torch.no_grad():
        out, updates, _ = unroll(cell, x)
    assert cell.cell.calls == 6 and updates.sum() == 6  # t = 0, 5, ..., 25
    cell.cell.calls = 0
    dense_out, dense_updates, _ = unroll(cell, x)  # with gradients: every step evaluates the cell
    assert cell.cell.calls == 30
    assert torch.equal(updates, dense_updates.detach())
    torch.testing.assert_close(out, dense_out.detach(), rtol=0, atol=0)


def test_budget_loss_trains_the_gate_and_batch_first():
    torch.manual_seed(4)
    cell = SkipCell(nn.GRUCell(2, 6))
    x = torch.randn(4, 9, 2)  # (B, T, input)
    output, updates, state = unroll(cell, x, batch_first=True)
    assert output.shape == (4, 9, 6) and updates.shape == (4, 9) and state.update_prob.shape == (4,)
    budget_loss(updates, 1e-2, batch_first=True).backward()
    assert cell.update_gate.weight.grad.abs().sum() > 0 and cell.update_gate.bias.grad.abs().sum() > 0


def test_clear_errors():
    class NoSize(nn.Module):
        def forward(self, x, state=None):
            return x

    with pytest.raises(ValueError, match="pass gate_size"):
        SkipCell(NoSize())
    SkipCell(NoSize(), gate_size=3)(torch.randn(2, 3))  # explicit size works
    with pytest.raises(ValueError, match="gate_from=2 is out of range for a state of 2 tensors"):
        SkipCell(nn.LSTMCell(3, 4), gate_from=2)(torch.randn(2, 3))
    with pytest.raises(ValueError, match="SkipCellState"):
        SkipCell(nn.GRUCell(3, 4))(torch.randn(2, 3), torch.zeros(2, 4))
