"""``SkipCell``: turn any recurrent cell into a Skip RNN cell (paper Eq. 2-5).

The wrapped cell is any module called as ``cell(x)`` (its own initial state) or ``cell(x, state)``, returning the
new state: a tensor, or a tuple of tensors such as ``torch.nn.LSTMCell``'s ``(h, c)``. The wrapper adds the update
gate: on a step with u_t = 0 the whole state is copied, and Δũ is computed from the new state as in the
original code. ``SkipRNN`` is the fast path for LSTM and GRU; this is for every other cell.
"""
from __future__ import annotations

from typing import NamedTuple, Union

import torch
from torch import Tensor, nn

from .cells import accumulate_update_prob, round_ste

CellState = Union[Tensor, tuple[Tensor, ...]]


class SkipCellState(NamedTuple):
    cell: CellState  # the wrapped cell's own state
    update_prob: Tensor  # (B,) the last Δũ
    cum_update_prob: Tensor  # (B,) ũ accumulated since the last update


class SkipCellOutput(NamedTuple):
    output: Tensor  # the cell's state, or its first element for a tuple (h of an LSTM)
    update: Tensor  # (B,) binary u_t with a straight-through gradient
    state: SkipCellState


class SkipCell(nn.Module):
    """A Skip RNN around any recurrent cell.

    Args:
        cell: the recurrent cell (see the module docstring).
        gate_size: the width of the state Δũ is computed from (flattened per row); defaults to ``cell.hidden_size``.
        gate_from: for a tuple state, the element Δũ is computed from. The default, -1, is c for
            ``nn.LSTMCell``'s (h, c), as the original Skip LSTM.

    ``forward(x, state=None)`` takes one step; ``state=None`` starts from the cell's own initial state, and
    the first step always updates. Under ``torch.no_grad()`` a step on which no row updates does not call the cell.
    """

    def __init__(self, cell: nn.Module, gate_size: int | None = None, gate_from: int = -1):
        super().__init__()
        if gate_size is None:
            gate_size = getattr(cell, "hidden_size", None)
            if not isinstance(gate_size, int):
                raise ValueError(f"{type(cell).__name__} has no integer hidden_size: pass gate_size, the width of the "
                                 "state the update gate reads")
        self.cell, self.gate_from = cell, gate_from
        self.update_gate = nn.Linear(gate_size, 1)
        with torch.no_grad():  # b_p = 1: every step updates at the start of training
            self.update_gate.bias.fill_(1.0)

    def forward(self, x: Tensor, state: SkipCellState | None = None) -> SkipCellOutput:
        if state is None:
            ones = x.new_ones(x.shape[0])
            # Δũ = 1 and nothing accumulated give ũ_1 = 1: the first step updates, so there is nothing to copy.
            return self._finish(self.cell(x), ones, ones, ones)
        if not isinstance(state, SkipCellState):
            raise ValueError("state must be None or the SkipCellState of a previous step")
        u_tilde = accumulate_update_prob(state.update_prob, state.cum_update_prob)
        u = round_ste(u_tilde)
        if not torch.is_grad_enabled() and not bool(u.any()):
            # Nothing updates and no gradient is needed: skip the cell itself (Δũ is kept on a skip anyway).
            return SkipCellOutput(_output(state.cell), u, SkipCellState(state.cell, state.update_prob, u_tilde))
        candidate = self.cell(x, state.cell)
        blended = _map(lambda old, new: torch.lerp(old, new, _rows(u, old)), state.cell, candidate)
        return self._finish(blended, u, u_tilde, state.update_prob, candidate)

    def _finish(self, cell_state, u, u_tilde, update_prob, candidate=None) -> SkipCellOutput:
        """The new SkipCellState; Δũ comes from the candidate (the cell's output before the skip blend)."""
        candidate = cell_state if candidate is None else candidate
        if isinstance(candidate, tuple):
            if not -len(candidate) <= self.gate_from < len(candidate):
                raise ValueError(f"gate_from={self.gate_from} is out of range for a state of {len(candidate)} tensors")
            candidate = candidate[self.gate_from]
        delta = torch.sigmoid(self.update_gate(candidate.flatten(1))).squeeze(1)
        return SkipCellOutput(
            _output(cell_state), u, SkipCellState(cell_state, torch.lerp(update_prob, delta, u), (1.0 - u) * u_tilde)
        )


def unroll(cell: SkipCell, x: Tensor, state: SkipCellState | None = None, batch_first: bool = False):
    """Run a ``SkipCell`` over a sequence: returns (outputs (T, B, ...), updates (T, B), final state),
    batch-major with ``batch_first``. ``updates`` goes straight into :func:`skiprnn.budget_loss`."""
    steps = x.unbind(1 if batch_first else 0)
    outputs, updates = [], []
    for x_t in steps:
        output, update, state = cell(x_t, state)
        outputs.append(output)
        updates.append(update)
    dim = 1 if batch_first else 0
    return torch.stack(outputs, dim), torch.stack(updates, dim), state


def _rows(u: Tensor, like: Tensor) -> Tensor:
    """u (B,) shaped to broadcast over one row of ``like`` (B, ...)."""
    return u.view(-1, *([1] * (like.dim() - 1)))


def _map(fn, old: CellState, new: CellState) -> CellState:
    if isinstance(new, tuple):
        if not isinstance(old, tuple) or len(old) != len(new):
            raise ValueError("the cell returned a state of a different structure from the one it was given")
        return tuple(fn(a, b) for a, b in zip(old, new))
    return fn(old, new)


def _output(cell_state: CellState) -> Tensor:
    return cell_state[0] if isinstance(cell_state, tuple) else cell_state
