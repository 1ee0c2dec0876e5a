"""The autograd Function of the fused path and the call of a one-layer ``SkipRNN`` through it."""
from __future__ import annotations

import torch
from torch import Tensor

from ...cells.state import SkipState
from ..stack import Stack
from . import gru, lstm
from .common import kernels_for
from .gate import flatten


class FusedSkipRNN(torch.autograd.Function):
    """Inputs: x (T, B, I), w_ih (G, I), bias (G,), w_hh (G, H), h0 (B, H), c0 (B, H) or None,
    up0, cum0 (B,), gate_w (1, H), gate_b (1,) (these four used only when ``gated``), mask (T, B, 1) =
    keep·valid or None, valid (T, B, 1) or None, cell ("lstm" | "gru"), gated, need_grad (keep what the
    backward pass needs).

    Outputs: output (T, B, H), h_T (B, H), then c_T (B, H) for LSTM, then updates (T, B), Δũ_T, cum_T (B,)
    when gated.
    """

    @staticmethod
    def forward(ctx, x, w_ih, bias, w_hh, h0, c0, up0, cum0, gate_w, gate_b, mask, valid, cell, gated, need_grad):
        ctx.set_materialize_grads(False)
        ctx.cell, ctx.gated = cell, gated
        ctx.has_mask, ctx.has_valid = mask is not None, valid is not None
        ctx.kern = kern = kernels_for(x, w_hh.shape[1])  # the backward pass must take the same path (they save different things)
        run = lstm.forward if cell == "lstm" else gru.forward
        outputs, saved = run(x, w_ih, bias, w_hh, h0, c0, up0, cum0, gate_w, gate_b, mask, valid, gated, need_grad, kern)
        if need_grad:
            ctx.save_for_backward(*flatten(saved))
        return outputs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        run = lstm.backward if ctx.cell == "lstm" else gru.backward
        return run(ctx, ctx.saved_tensors, grads) + (None,) * 5


def forward(stack: Stack, x: Tensor, state: SkipState, valid: Tensor | None, keep: Tensor | None):
    """A one-layer ``SkipRNN``'s call through :class:`FusedSkipRNN` (the reference backend's results, faster)."""
    cell = stack.cells[0]
    # The effective input bias, by the cell's own code (LSTM: bias + forget offset): project_input(0).
    bias = cell.project_input(x.new_zeros(1, stack.input_size))[0]
    mask = keep if valid is None else (valid if keep is None else keep * valid)
    kind = "lstm" if stack.has_cell_state else "gru"
    h0 = state.h[0]
    c0 = state.c[0] if stack.has_cell_state else None
    gated = stack.gated
    gate_w = stack.update_gate.weight if gated else None
    gate_b = stack.update_gate.bias if gated else None
    up0, cum0 = state.update_prob, state.cum_update_prob
    inputs = (x, cell.weight_ih, bias, cell.weight_hh, h0, c0, up0, cum0, gate_w, gate_b)
    need_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    outs = FusedSkipRNN.apply(*inputs, mask, valid, kind, gated, need_grad)
    output, h_t = outs[0], outs[1]
    rest = outs[2:]
    c_t = None
    if stack.has_cell_state:
        c_t, rest = rest[0], rest[1:]
    if gated:
        updates, up, cum = rest
    else:
        updates = x.new_ones(x.shape[:2]) if mask is None else mask.squeeze(2)
        up, cum = state.update_prob, state.cum_update_prob
    final = SkipState(h_t.unsqueeze(0), None if c_t is None else c_t.unsqueeze(0), up, cum)
    return output, updates, final

