"""``SkipCell``: turn any recurrent cell into a Skip RNN cell (paper Eq. 2-5).

The wrapped cell is any module called as ``cell(x)`` (from its own initial state) and ``cell(x, state)``,
returning its new state: a tensor, or a tuple (a NamedTuple, or nested tuples) of tensors such as
``torch.nn.LSTMCell``'s ``(h, c)``. Every state tensor has the batch in its first dimension. The wrapper adds
the update gate: on a step with u_t = 0 the whole state is copied, and Δũ is computed from the candidate state
as in the original code. ``SkipRNN`` is the fast path for LSTM and GRU; this is for every other cell.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..cells.gate import accumulate_update_prob, init_update_gate, round_ste
from ..cells.state import valid_steps

CellState = Any  # a tensor, or a (named, possibly nested) tuple of tensors, each (B, ...)


class SkipCellState(NamedTuple):
    """A ``SkipCell``'s state: the wrapped cell's own state, the last Δũ (B,) and ũ accumulated since the last
    update (B,)."""

    cell: CellState
    update_prob: Tensor
    cum_update_prob: Tensor

    def detach(self) -> SkipCellState:
        """The same state cut from the autograd graph, to continue after ``backward()`` (truncated BPTT)."""
        return SkipCellState(_map(lambda _, t: t.detach(), self.cell, self.cell), self.update_prob.detach(),
                             self.cum_update_prob.detach())


class SkipCellOutput(NamedTuple):
    """One step of a ``SkipCell``: its output (see ``SkipCell.output_of``; h for an LSTM cell), the binary u_t (B,)
    with a straight-through gradient, for ``budget_loss``, and the new ``SkipCellState``."""

    output: Tensor
    update: Tensor
    state: SkipCellState


class SkipCell(nn.Module):
    """A Skip RNN around any recurrent cell.

    Args:
        cell: the recurrent cell (see the module docstring).
        gate_size: the number of values per row of the state element Δũ is computed from (flattened);
            defaults to ``cell.hidden_size``, which is right for vector states.
        gate_from: for a tuple state, the element Δũ is computed from: an index, or a tuple of indices into
            nested tuples (``(-1, 1)``: the top layer's c of a stack whose state is ((h1, c1), (h2, c2))).
            The default, -1, is c for ``nn.LSTMCell``'s (h, c), as the original Skip LSTM.
        gate_init: W_p's initialisation: "glorot" (the original code's, default) or "torch" (nn.Linear's).

    ``forward(x, state=None)`` takes one step. ``state=None`` starts from the cell's own initial state
    (zeros for torch's cells, where ``SkipRNN`` learns one); ``SkipCell.initial_state(cell_state)`` starts from
    a given one. The first step always updates. In eval mode under ``torch.no_grad()`` a step on which no row
    updates does not call the cell. The gate's own quantities (u, Δũ, ũ) are float32 or wider, and each state
    tensor keeps its dtype, so the wrapper also runs under ``torch.autocast``.
    """

    def __init__(self, cell: nn.Module, gate_size: int | None = None, gate_from: int | tuple[int, ...] = -1,
                 gate_init: str = "glorot"):
        super().__init__()
        if gate_size is None:
            gate_size = getattr(cell, "hidden_size", None)
            if not _positive_int(gate_size):
                raise ValueError(f"{type(cell).__name__} has no integer hidden_size: pass gate_size, the number of "
                                 "values per row of the state the update gate reads")
        if not _positive_int(gate_size):
            raise ValueError(f"gate_size must be a positive integer; got {gate_size!r}")
        if type(cell).forward is nn.Module.forward:
            raise ValueError(f"{type(cell).__name__} has no forward(x, state): SkipCell calls the cell as cell(x) and "
                             "cell(x, state), like torch.nn.LSTMCell")
        path = gate_from if isinstance(gate_from, tuple) else (gate_from,)
        if not path or not all(isinstance(i, int) and not isinstance(i, bool) for i in path):
            raise ValueError(f"gate_from must be an index into the cell's state tuple, or a tuple of indices into "
                             f"nested tuples; got {gate_from!r}")
        self.cell, self.gate_size, self.gate_from = cell, gate_size, gate_from
        self._gate_path = path  # gate_from as a tuple of indices, resolved once
        self.update_gate = nn.Linear(gate_size, 1)
        init_update_gate(self.update_gate, gate_init)  # W_p Glorot (as the original code) or torch's; b_p = 1

    @staticmethod
    def initial_state(cell_state: CellState) -> SkipCellState:
        """Start from a given cell state; ũ_1 = 1 (Δũ = 1, nothing accumulated), so the first step updates."""
        first = _leaves(cell_state)[0]
        ones = first.new_ones(first.shape[0])
        return SkipCellState(cell_state, ones, torch.zeros_like(ones))

    def forward(self, x: Tensor, state: SkipCellState | None = None) -> SkipCellOutput:
        """One step: x (B, ...) and the previous ``SkipCellState`` (None: the cell's own initial state, and an
        update) -> ``SkipCellOutput`` (output, update, state)."""
        if state is None:
            candidate = self.cell(x)
            delta = self._update_prob(candidate)
            ones = torch.ones_like(delta)
            return SkipCellOutput(self.output_of(candidate), ones, SkipCellState(candidate, delta, torch.zeros_like(delta)))
        if not isinstance(state, SkipCellState):
            raise ValueError("state must be None or a SkipCellState (from a previous step or SkipCell.initial_state)")
        batch = _leaves(state.cell)[0].shape[0]
        for name in ("update_prob", "cum_update_prob"):
            if tuple(getattr(state, name).shape) != (batch,):
                raise ValueError(f"state.{name} must have shape ({batch},); got {tuple(getattr(state, name).shape)}")
        u_tilde = accumulate_update_prob(state.update_prob, state.cum_update_prob)
        u = round_ste(u_tilde)
        if not self.training and not torch.is_grad_enabled() and not bool(u.any()):
            # Nothing updates and no gradient is needed: skip the cell itself (Δũ is kept on a skip anyway).
            return SkipCellOutput(self.output_of(state.cell), u, SkipCellState(state.cell, state.update_prob, u_tilde))
        candidate = self.cell(x, state.cell)
        blended = _map(lambda old, new: torch.lerp(old, new.to(old.dtype), _rows(u, old)), state.cell, candidate)
        update_prob = torch.lerp(state.update_prob, self._update_prob(candidate).to(u.dtype), u)
        return SkipCellOutput(self.output_of(blended), u, SkipCellState(blended, update_prob, (1.0 - u) * u_tilde))

    def output_of(self, cell_state: CellState) -> Tensor:
        """The step's output: the cell's ``output(state)`` where it defines one (``StackedCells``: the top layer's h),
        else the state, or its first element for a tuple (h of an LSTM)."""
        own = getattr(self.cell, "output", None)
        return own(cell_state) if callable(own) else _output(cell_state)

    def _update_prob(self, candidate: CellState) -> Tensor:
        """Δũ (B,) from the candidate state, before the skip blend (Eq. 4); float32 at least, also under autocast."""
        for index in self._gate_path:
            if isinstance(candidate, tuple):
                if not -len(candidate) <= index < len(candidate):
                    raise ValueError(f"gate_from={self.gate_from} is out of range for a state of {_structure(candidate)}")
                candidate = candidate[index]
            elif index not in (0, -1):
                raise ValueError(f"gate_from={self.gate_from} indexes into a tuple, but the state there is one tensor")
        if not isinstance(candidate, Tensor):
            raise ValueError(f"the state element at gate_from={self.gate_from} must be a tensor; got "
                             f"{_structure(candidate)}: give gate_from as a tuple of indices to reach into it")
        flat = candidate.flatten(1)
        if flat.shape[1] != self.gate_size:
            raise ValueError(f"the gated state has {flat.shape[1]} values per row ({tuple(candidate.shape)}), but "
                             f"gate_size={self.gate_size}: pass gate_size={flat.shape[1]}")
        delta = torch.sigmoid(self.update_gate(flat)).squeeze(1)
        return delta if delta.dtype in (torch.float32, torch.float64) else delta.float()


class StackedCells(nn.Module):
    """Recurrent cells stacked into one cell, for ``SkipCell``: ``StackedCells(nn.LSTMCell(2, 64), nn.LSTMCell(64, 64))``.

    Layer k reads layer k-1's new output (the first element of a tuple state, h of an LSTM) and the state is the
    tuple of the layers' states, so ``SkipCell`` shares one gate across the stack and copies every layer on a skip,
    as ``SkipRNN(num_layers=...)`` does. ``hidden_size`` is the top layer's; read Δũ from the top layer's c of an
    LSTM stack with ``gate_from=(-1, 1)``, from its h of a GRU stack with the default ``gate_from=-1``.
    """

    def __init__(self, *cells: nn.Module):
        super().__init__()
        if not cells:
            raise ValueError("StackedCells needs at least one cell")
        self.layers = nn.ModuleList(cells)
        self.hidden_size = getattr(cells[-1], "hidden_size", None)

    def forward(self, x: Tensor, state: tuple | None = None) -> tuple:
        if state is not None and (not isinstance(state, tuple) or len(state) != len(self.layers)):
            raise ValueError(f"state must be a tuple of {len(self.layers)} layer states; got {_structure(state)}")
        new = []
        for k, layer in enumerate(self.layers):
            new.append(layer(x) if state is None else layer(x, state[k]))
            x = _output(new[-1])
        return tuple(new)

    def output(self, state: tuple) -> Tensor:
        """The top layer's output (its h), which ``SkipCell`` returns for each step."""
        return _output(state[-1])


def unroll(cell: SkipCell, x: Tensor, state: SkipCellState | None = None, batch_first: bool = False,
           lengths: Tensor | None = None) -> tuple[Tensor, Tensor, SkipCellState]:
    """Run a ``SkipCell`` over a sequence: (outputs (T, B, ...), updates (T, B), final state), batch-major with
    ``batch_first``. ``updates`` goes straight into :func:`skiprnn.budget_loss`.

    ``lengths`` (B,) marks a padded batch, as in ``SkipRNN``: past its length a sequence neither updates nor
    changes its state (its output repeats the last one), so the final state is each sequence's own and
    ``budget_loss(updates, lam, lengths=lengths)`` counts only real steps."""
    if not isinstance(cell, SkipCell):
        raise ValueError(f"unroll runs a SkipCell; got {type(cell).__name__}: wrap it first, SkipCell(cell)")
    dim = 1 if batch_first else 0
    if x.dim() < 2:
        raise ValueError(f"x must be (T, B, ...), or (B, T, ...) with batch_first=True; got shape {tuple(x.shape)}")
    if x.shape[dim] == 0:
        raise ValueError(f"x has no time steps: shape {tuple(x.shape)}")
    valid = None if lengths is None else valid_steps(lengths, x.shape[dim], x.shape[1 - dim], x.device)
    outputs, updates = [], []
    for t, x_t in enumerate(x.unbind(dim)):
        output, update, new_state = cell(x_t, state)
        if valid is not None and state is not None and not bool(valid[t].all()):
            keep = valid[t]  # padded rows keep their whole state, gate included
            new_state = SkipCellState(*(_map(lambda old, new, keep=keep: torch.where(keep.view(-1, *[1] * (new.dim() - 1)),
                                                                                     new, old),
                                             before, after) for before, after in zip(state, new_state)))
            update, output = update * keep.to(update.dtype), cell.output_of(new_state.cell)
        state = new_state
        outputs.append(output)
        updates.append(update)
    return torch.stack(outputs, dim), torch.stack(updates, dim), state


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _rows(u: Tensor, like: Tensor) -> Tensor:
    """u (B,) shaped to broadcast over one row of ``like`` (B, ...)."""
    if like.shape[0] != u.shape[0]:
        raise ValueError(f"every state tensor must have the batch ({u.shape[0]}) first; got shape {tuple(like.shape)}")
    return u.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def _map(fn: Callable[[Tensor, Tensor], Tensor], old: CellState, new: CellState) -> CellState:
    """fn over matching tensors of two states of the same structure; tuples keep their (named) type."""
    if isinstance(new, Tensor) and isinstance(old, Tensor):
        return fn(old, new)
    if isinstance(new, tuple) and isinstance(old, tuple) and len(old) == len(new):
        items = [_map(fn, a, b) for a, b in zip(old, new)]
        return type(new)(*items) if hasattr(new, "_fields") else type(new)(items)
    raise ValueError(f"the cell returned a state of another structure ({_structure(new)}) than it was given "
                     f"({_structure(old)})")


def _structure(state: CellState) -> str:
    if isinstance(state, tuple):
        return "(" + ", ".join(_structure(s) for s in state) + ")"
    return "tensor" if isinstance(state, Tensor) else type(state).__name__


def _leaves(state: CellState) -> list[Tensor]:
    if isinstance(state, tuple):
        return [leaf for item in state for leaf in _leaves(item)]
    if not isinstance(state, Tensor):
        raise ValueError(f"a cell state must be a tensor or a tuple of tensors; got {type(state).__name__}")
    return [state]


def _output(cell_state: CellState) -> Tensor:
    return _output(cell_state[0]) if isinstance(cell_state, tuple) else cell_state
