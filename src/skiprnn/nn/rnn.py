"""``SkipRNN``: the sequence layer. Plain and Skip LSTM/GRU, single-layer or stacked.

The training path computes every candidate state and masks it with the binary gate u_t, so the
straight-through gradient (paper Eq. 3, 7) is exact. In eval mode, ``skip_inference=True`` takes
a path that really skips the cell where u_t = 0 (see :mod:`skiprnn.backends.skipping`); both give the same
outputs.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .. import backends
from ..backends.stack import Stack
from ..cells.gate import GATE_INITS, init_update_gate
from ..cells.recurrent import CELLS
from ..cells.state import SkipState, valid_steps

MODES = ("lstm", "gru", "skip_lstm", "skip_gru")


class _OutputFields(NamedTuple):
    output: Tensor
    updates: Tensor
    state: SkipState


class SkipRNNOutput(_OutputFields):
    """What ``SkipRNN`` returns.

    output: the top layer's h at every step, (T, B, H), or (B, T, H) with batch_first.
    updates: the binary u_t, (T, B), or (B, T) with batch_first; all ones for plain cells, 0 on padding. It carries
        the straight-through gradient, so ``budget_loss(out, lam)`` trains the update gate.
    state: the final ``SkipState``, to pass back in.

    It also knows its layout: ``batch_first`` and ``lengths`` (attributes, not fields: ``output, updates, state =
    rnn(x)`` unpacks as ever), so ``budget_loss(out, lam)`` cannot mix up (T, B) and (B, T).
    """

    batch_first: bool = False
    lengths: Tensor | None = None


class SkipRNN(nn.Module):
    """A Skip RNN (Campos et al., 2018) or its plain baseline, in the style of ``torch.nn.LSTM``.

    Args:
        mode: "lstm", "gru", "skip_lstm" or "skip_gru".
        input_size, hidden_size, num_layers: as in ``torch.nn.LSTM``. A stack shares one gate u_t,
            computed from the top layer (its c for LSTM, its h for GRU); on a skip every layer keeps its state.
        p_skip: random-skip baseline. Each step is skipped with this probability, in training and evaluation
            alike; until a sequence's first kept step its state stays the learned initial state.
        p_skip_keep_first: always keep the first step of the random-skip baseline (skiprnn's behaviour before
            it drew every step; the paper's update fractions fit a draw of every step).
        gate_init: W_p's initialisation, "glorot" (the original code's, default) or "torch" (nn.Linear's).
        batch_first: inputs and outputs are (B, T, ...) instead of (T, B, ...).
        skip_inference: in eval mode under no_grad, do not evaluate the cell on skipped steps (same results).
            "auto" (default) does so for a single sequence and for a batch of a single-layer model, which one C
            call runs (each step computes only the updating rows); True also for stacks' batches (a Python loop
            over the updating rows, which pays only when few rows update); False never.
        original_stack_bug: reproduce the original MultiSkipGRUCell, whose layers >= 2 compute their candidate
            from the network input instead of the layer below (skip_gru stacks only; off by default).
        fused: with one layer, run the dense (training) path as one ``torch.autograd.Function`` with a
            hand-written backward through time (:mod:`skiprnn.backends.fused`; the same results up to rounding, faster).
            False keeps the per-step autograd loop, the reference the fused path is tested against.
    """

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        p_skip: float = 0.0,
        batch_first: bool = False,
        skip_inference: bool | str = "auto",
        original_stack_bug: bool = False,
        fused: bool = True,
        gate_init: str = "glorot",
        p_skip_keep_first: bool = False,
    ):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not isinstance(p_skip, (int, float)) or not 0.0 <= p_skip < 1.0:
            raise ValueError(f"p_skip must be a probability in [0, 1); got {p_skip!r}")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.p_skip, self.batch_first = num_layers, float(p_skip), batch_first
        self.p_skip_keep_first = bool(p_skip_keep_first)
        if gate_init not in GATE_INITS:
            raise ValueError(f"gate_init must be one of {', '.join(GATE_INITS)}; got {gate_init!r}")
        self.gate_init = gate_init
        if skip_inference not in (True, False, "auto"):
            raise ValueError(f"skip_inference must be True, False or 'auto'; got {skip_inference!r}")
        self.skip_inference = skip_inference
        if original_stack_bug and (mode != "skip_gru" or num_layers < 2):
            raise ValueError("original_stack_bug applies only to mode='skip_gru' with num_layers >= 2")
        self.original_stack_bug = original_stack_bug
        self.fused = fused
        # Where the random-skip baseline draws its skips: None, torch's global generator; a torch.Generator (set with
        # ``skip_draws``), that generator: the trainer's evaluation draws from one seeded per evaluation.
        self.skip_generator: torch.Generator | None = None
        self.gated = mode.startswith("skip_")
        cell_type = CELLS[mode.removeprefix("skip_")]
        self.has_cell_state = cell_type.has_cell_state
        self.cells = nn.ModuleList(
            cell_type(input_size if layer == 0 else hidden_size, hidden_size) for layer in range(num_layers)
        )
        # Learned initial state, one row broadcast over any batch size (TF code: N(0, 1) init).
        self.h0 = nn.Parameter(torch.randn(num_layers, 1, hidden_size))
        self.c0 = nn.Parameter(torch.randn(num_layers, 1, hidden_size)) if self.has_cell_state else None
        if self.gated:
            self.update_gate = nn.Linear(hidden_size, 1)
            init_update_gate(self.update_gate, gate_init)
        if original_stack_bug:
            # The buggy candidate reads the network input: its kernel has input_size rows (TF [in, r*h] kernel).
            for cell in self.cells[1:]:
                cell.weight_in_raw = nn.Parameter(torch.empty(hidden_size, input_size))
                bound = (6.0 / (input_size + hidden_size + hidden_size)) ** 0.5
                nn.init.uniform_(cell.weight_in_raw, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.mode}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        return s + (f", p_skip={self.p_skip}" if self.p_skip else "") + (", batch_first=True" if self.batch_first else "")

    # ----------------------------------------------------------------------------------- state
    def initial_state(self, batch_size: int) -> SkipState:
        """The learned initial state broadcast over a batch, with ũ_1 = 1 so that the first step updates."""
        h = self.h0.expand(-1, batch_size, -1)
        c = self.c0.expand(-1, batch_size, -1) if self.has_cell_state else None
        # Δũ = 1 and ũ accumulated = 0 give ũ_1 = 1: the first step always updates.
        up = self.h0.new_ones(batch_size)
        return SkipState(h, c, up, self.h0.new_zeros(batch_size))

    def _check_state(self, state: SkipState, batch_size: int, dtype: torch.dtype) -> None:
        want = (self.num_layers, batch_size, self.hidden_size)
        if not isinstance(state, SkipState):
            raise ValueError("state must be the SkipState returned by a previous call")
        if self.has_cell_state and state.c is None:
            raise ValueError(f"state.c is None, but {self.mode} keeps a cell state: pass the state of a {self.mode} "
                             "model (a GRU state has no c)")
        got = [tuple(t.shape) for t in (state.h, state.c) if t is not None]
        if any(shape != want for shape in got):
            raise ValueError(f"state h{' and c' if self.has_cell_state else ''} must have shape {want} "
                             f"(num_layers, batch, hidden_size); got {' and '.join(map(str, got))}")
        for name in ("update_prob", "cum_update_prob"):
            if tuple(getattr(state, name).shape) != (batch_size,):
                raise ValueError(f"state.{name} must have shape ({batch_size},); got {tuple(getattr(state, name).shape)}")
        for name, value in state._asdict().items():
            if value is not None and value.dtype != dtype:
                raise ValueError(f"state.{name} has dtype {value.dtype}, x has {dtype}: they must match")

    # --------------------------------------------------------------------------------- forward
    def forward(self, x: Tensor, state: SkipState | None = None, lengths: Tensor | None = None) -> SkipRNNOutput:
        """Run the sequences ``x`` (T, B, input_size), or (B, T, input_size) with batch_first.

        state: a ``SkipState`` from a previous call, to continue those sequences (``state.detach()`` after a
            backward pass); None starts from the learned initial state.
        lengths: (B,) integer lengths of a padded batch; past its length a sequence neither updates nor counts.
        Returns a ``SkipRNNOutput`` (output, updates, state).
        """
        if isinstance(x, nn.utils.rnn.PackedSequence):
            raise ValueError("SkipRNN takes a padded tensor and lengths=, not a PackedSequence: use "
                             "torch.nn.utils.rnn.pad_packed_sequence(x) and pass the lengths it returns")
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ValueError(f"x must have shape {layout} with input_size={self.input_size}; got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor; got {x.dtype}: convert it, e.g. x.to({self.h0.dtype})")
        if x.dtype != self.h0.dtype:
            raise ValueError(f"x has dtype {x.dtype}, the model's parameters {self.h0.dtype}: convert one of them, "
                             f"e.g. model.to({x.dtype})")
        if x.shape[1 if self.batch_first else 0] == 0:
            raise ValueError(f"x has no time steps: shape {tuple(x.shape)}")
        if self.batch_first:
            x = x.transpose(0, 1)
        steps, batch = x.shape[:2]
        if state is None:
            state = self.initial_state(batch)
        else:
            self._check_state(state, batch, x.dtype)
        valid = None if lengths is None else self._valid_mask(lengths, steps, batch, x)
        keep = self._random_keep(steps, batch, x)

        output, updates, state = self._backend(x)(self.stack(), x, state, valid, keep)
        if self.batch_first:
            output, updates = output.transpose(0, 1), updates.transpose(0, 1)
        out = SkipRNNOutput(output, updates, state)
        out.batch_first, out.lengths = self.batch_first, lengths
        return out

    def _backend(self, x: Tensor):
        """Which backend computes this call (all give the same results; see skiprnn.backends)."""
        if torch.compiler.is_compiling():  # the fused and skipping paths call C kernels that torch.compile cannot trace
            return backends.reference.forward
        if self.skip_inference and not self.training and not self.original_stack_bug and not torch.is_grad_enabled():
            # "auto": a batch skips where one C call runs it (a single layer); a stack's per-step Python loop over
            # the updating rows pays only when few rows update
            if self.skip_inference is True or x.shape[1] == 1 or (
                    self.num_layers == 1 and backends.fused.kernels_for(x, self.hidden_size) is not None):
                return backends.skipping.forward
        if self.num_layers == 1 and self.fused:
            return backends.fused.forward
        return backends.reference.forward

    def _valid_mask(self, lengths: Tensor, steps: int, batch: int, x: Tensor) -> Tensor:
        return valid_steps(lengths, steps, batch, x.device).to(x.dtype).unsqueeze(-1)

    @contextmanager
    def skip_draws(self, generator: torch.Generator | None) -> Iterator[None]:
        """Draw the random skips (``p_skip``) from ``generator`` inside the block, so that they repeat: the trainer's
        evaluation uses one seeded by (seed, split, evaluation). Torch's global stream still advances as without it."""
        before, self.skip_generator = self.skip_generator, generator
        try:
            yield
        finally:
            self.skip_generator = before

    def _random_keep(self, steps: int, batch: int, x: Tensor) -> Tensor | None:
        """Random-skip baseline: a (T, B, 1) mask of kept steps, each drawn with probability 1 - p_skip (the first
        one always kept with ``p_skip_keep_first``)."""
        if not self.p_skip:
            return None
        generator = self.skip_generator
        keep = (torch.rand(steps, batch, 1, device=x.device, generator=generator) >= self.p_skip).to(x.dtype)
        if generator is not None:  # the shared stream advances as it would have (runs trained before keep their draws)
            torch.rand(steps, batch, 1, device=x.device)
        if self.p_skip_keep_first:
            keep[0] = 1.0
        return keep

    def stack(self) -> Stack:
        """What the backends compute with: the layers, the update gate and the options (backends.stack)."""
        return Stack(tuple(self.cells), self.update_gate if self.gated else None, self.input_size, self.hidden_size,
                     self.has_cell_state, self.original_stack_bug, self.fused)


def budget_loss(updates: Tensor | SkipRNNOutput, lam: float, lengths: Tensor | None = None,
                batch_first: bool = False) -> Tensor:
    """λ · Σ_t u_t, averaged over the batch (paper Eq. 8). Padded steps (t >= length) do not count.

    ``budget_loss(out, lam)`` with a ``SkipRNNOutput`` takes its layout and lengths from it (preferred); the tensor
    form takes them from ``batch_first`` and ``lengths``."""
    if isinstance(updates, SkipRNNOutput):
        if lengths is not None or batch_first:
            raise ValueError("budget_loss: a SkipRNNOutput knows its layout and lengths; pass it alone "
                             "(budget_loss(out, lam)), or pass out.updates with lengths= and batch_first=")
        updates, lengths, batch_first = updates.updates, updates.lengths, updates.batch_first
    if updates.dim() != 2:
        raise ValueError(f"updates must have shape (T, B) or (B, T); got {tuple(updates.shape)}")
    if not 0 <= lam < math.inf:
        raise ValueError(f"lam must be a finite number >= 0 (a cost per update); got {lam!r}")
    if batch_first:
        updates = updates.t()
    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=updates.device)
        if lengths.shape != (updates.shape[1],):
            raise ValueError(f"lengths must have shape ({updates.shape[1]},), one per sequence of updates "
                             f"{'(B, T)' if batch_first else '(T, B)'}; got {tuple(lengths.shape)}")
        updates = updates * valid_steps(lengths, updates.shape[0], updates.shape[1], updates.device)
    return lam * updates.sum(0).mean()
