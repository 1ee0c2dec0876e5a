"""The reference backend: the paper's recursion as a per-step loop of autograd tensor ops.

Every layer count, the original stacking bug and any dtype; the straight-through gradient comes from autograd.
The faster backends are tested against it.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..cells.gate import accumulate_update_prob, round_ste
from ..cells.state import SkipState
from .stack import Stack


def forward(stack: Stack, x: Tensor, state: SkipState, valid: Tensor | None, keep: Tensor | None):
    """(T, B, I) -> output (T, B, H), updates (T, B), final ``SkipState``; ``stack`` holds the cells
    (``stack.candidate``), the gate (``stack.update_gate``, ``stack.gate_input``) and the options it runs."""
    h = list(state.h.unbind(0))
    c = list(state.c.unbind(0)) if stack.has_cell_state else [None] * stack.num_layers
    up, cum = state.update_prob.unsqueeze(1), state.cum_update_prob.unsqueeze(1)
    # One matmul for all steps; unbind (not x_proj[t]) so backward assembles one gradient, not T.
    x_proj = stack.cells[0].project_input(x).unbind(0)
    valid = None if valid is None else valid.unbind(0)
    keep = None if keep is None else keep.unbind(0)
    outputs, updates = [], []
    for t in range(x.shape[0]):
        h_new, c_new = stack.candidate(x_proj[t], h, c, x[t])
        u = None  # None: update every row
        if stack.gated:
            u_tilde = accumulate_update_prob(up, cum)
            u = round_ste(u_tilde)
        if keep is not None:
            u = keep[t] if u is None else u * keep[t]
        if valid is not None:
            u = valid[t] if u is None else u * valid[t]
        if u is None:
            h, c = h_new, c_new
        else:
            h = [torch.lerp(a, b, u) for a, b in zip(h, h_new)]
            if stack.has_cell_state:
                c = [torch.lerp(a, b, u) for a, b in zip(c, c_new)]
        if stack.gated:
            delta = torch.sigmoid(stack.update_gate(stack.gate_input(h_new, c_new)))
            up = torch.lerp(up, delta, u)
            cum_next = (1.0 - u) * u_tilde
            cum = cum_next if valid is None else torch.lerp(cum, cum_next, valid[t])
        outputs.append(h[-1])
        updates.append(x.new_ones(x.shape[1]) if u is None else u.squeeze(1))
    final = SkipState(
        torch.stack(h), torch.stack(c) if stack.has_cell_state else None, up.squeeze(1), cum.squeeze(1)
    )
    return torch.stack(outputs), torch.stack(updates), final
