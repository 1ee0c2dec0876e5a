"""Inference that really skips: the cell is evaluated only where u_t = 1.

The original code computes every step and masks it, so it saves no time. Here, in eval mode:

* one sequence (B = 1): a skipped step costs only the ũ recursion on scalars, in the model's precision
  (a run of them is Eq. 6's N_skip, found by the same arithmetic the dense path does). A single-layer
  model runs the whole sequence in one C call (``skip_sequence`` in csrc/steps.c); stacks, and machines
  without the C kernels, loop in Python with host scalars;
* a batch: each step computes only the rows that update.

Both give the outputs and update patterns of the dense masked path (see tests/backends/test_skipping.py).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..cells.gate import accumulate_update_prob
from ..cells.state import SkipState
from . import fused, reference
from .fused import kernels_for
from .stack import Stack

_HOST_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


@torch.no_grad()
def forward(stack: Stack, x: Tensor, state, valid: Tensor | None, keep: Tensor | None):
    if not stack.gated and keep is None and valid is None:
        dense = fused.forward if stack.num_layers == 1 and stack.fused else reference.forward
        return dense(stack, x, state, None, None)  # nothing to skip
    if x.shape[1] == 1 and x.dtype in _HOST_DTYPES:
        return _single_sequence(stack, x, state, valid, keep)
    return _row_compacted(stack, x, state, valid, keep)


def _state_lists(stack, state):
    h = [s.clone() for s in state.h.unbind(0)]
    c = [s.clone() for s in state.c.unbind(0)] if stack.has_cell_state else [None] * stack.num_layers
    return h, c


def _final_state(stack, h, c, up: Tensor, cum: Tensor):
    return SkipState(torch.stack(h), torch.stack(c) if stack.has_cell_state else None, up, cum)


def _single_sequence(stack, x: Tensor, state, valid, keep):
    kern = kernels_for(x, stack.hidden_size) if stack.num_layers == 1 else None
    if kern is not None:
        return _single_sequence_native(kern, stack, x, state, valid, keep)
    steps = x.shape[0]
    real = _HOST_DTYPES[x.dtype]
    one = real(1.0)
    length = steps if valid is None else int(valid[:, 0, 0].sum().item())
    kept = None if keep is None else keep[:, 0, 0].cpu().numpy()
    up, cum = real(state.update_prob.item()), real(state.cum_update_prob.item())
    h, c = _state_lists(stack, state)
    # Hoisting the input projection pays when inputs are narrow; wide inputs (video features)
    # are projected only on the steps that update.
    first = stack.cells[0]
    x_proj = first.project_input(x[:, 0]) if stack.input_size <= stack.hidden_size else None

    update = _updater(stack)
    tops, update_steps = [h[-1]], []
    for t in range(length):
        if stack.gated:
            u_tilde = cum + min(up, one - cum)
            u = np.round(u_tilde)
        else:
            u = one
        if kept is not None:
            u = u * kept[t]
        if not u:  # skip: only ũ moves
            if stack.gated:
                cum = u_tilde
            continue
        xp = x_proj[t : t + 1] if x_proj is not None else first.project_input(x[t])
        h, c, delta = update(xp, h, c, x[t])
        if stack.gated:
            up, cum = real(delta.item()), real(0.0)
        tops.append(h[-1])
        update_steps.append(t)

    updates = x.new_zeros(steps, 1)
    if update_steps:
        updates[update_steps] = 1.0
    # Step t outputs the state of the last update at or before t.
    which = updates[:, 0].cumsum(0).long()
    output = torch.cat(tops)[which].unsqueeze(1)
    up_t = x.new_tensor([float(up)])
    cum_t = x.new_tensor([float(cum)])
    return output, updates, _final_state(stack, h, c, up_t, cum_t)


def _kernel_weights(stack, x: Tensor) -> Tensor:
    """(I + 1 + H, G): [W_ih, b, W_hh]ᵀ with the tanh rows scaled by 2, as the C kernels take them."""
    hs, lstm = stack.hidden_size, stack.has_cell_state
    cell = stack.cells[0]
    bias = cell.project_input(x.new_zeros(1, stack.input_size))[0]  # as in fused_forward
    w_cat = torch.cat([cell.weight_ih, bias.unsqueeze(1), cell.weight_hh], 1)
    w_cat[hs : 2 * hs] *= 2.0 if lstm else 1.0  # tanh(a) = 2σ(2a) − 1: the LSTM's j rows, the GRU's n rows
    w_cat[2 * hs :] *= 1.0 if lstm else 2.0
    return w_cat.t().contiguous()


def _single_sequence_native(kern, stack, x: Tensor, state, valid, keep):
    steps, hs, lstm = x.shape[0], stack.hidden_size, stack.has_cell_state
    length = steps if valid is None else int(valid[:, 0, 0].sum().item())
    wt = _kernel_weights(stack, x)
    xs = x[:, 0].contiguous()
    h = state.h[0, 0].contiguous().clone()
    c = state.c[0, 0].contiguous().clone() if lstm else None
    up_cum = torch.cat([state.update_prob.reshape(1), state.cum_update_prob.reshape(1)]).to(x.dtype)
    kept = None if keep is None else keep[:, 0, 0].to(x.dtype).contiguous()
    gate_w = stack.update_gate.weight.reshape(-1).contiguous() if stack.gated else None
    output, updates = x.new_empty(steps, 1, hs), x.new_empty(steps, 1)
    kern.skip_sequence(kern.skip_sequence.args(
        gru=int(not lstm), T=steps, I=stack.input_size, H=hs, x=xs, wt=wt, gate_w=gate_w,
        gate_b=stack.update_gate.bias if stack.gated else None, keep=kept, length=length, h=h, c=c, state=up_cum,
        out=output, updates=updates,
    ))  # fmt: skip
    c_final = c.view(1, 1, hs) if lstm else None
    return output, updates, SkipState(h.view(1, 1, hs), c_final, up_cum[:1].clone(), up_cum[1:].clone())


def _updater(stack):
    """One updating step, (x_proj, h, c, x) -> (h, c, Δũ or None), with h and c lists over layers.

    Single-layer models call the cell directly and the update gate as one addmm (no module calls):
    at batch 1 this per-step overhead is a large part of the cost of an update.
    """
    gated, has_c = stack.gated, stack.has_cell_state
    gate_w_t = stack.update_gate.weight.t() if gated else None
    gate_b = stack.update_gate.bias if gated else None
    if stack.num_layers == 1:
        cell = stack.cells[0]

        def update(x_proj, h, c, x):
            h_new, c_new = cell.step(x_proj, h[0], c[0])
            delta = torch.addmm(gate_b, c_new if has_c else h_new, gate_w_t).sigmoid_() if gated else None
            return [h_new], [c_new], delta

        return update

    def update(x_proj, h, c, x):
        h, c = stack.candidate(x_proj, h, c, x)
        delta = torch.sigmoid(stack.update_gate(stack.gate_input(h, c))) if gated else None
        return h, c, delta

    return update


def _row_compacted(stack, x: Tensor, state, valid, keep):
    kern = kernels_for(x, stack.hidden_size) if stack.num_layers == 1 else None
    if kern is not None:
        return _row_compacted_native(kern, stack, x, state, valid, keep)
    steps, batch = x.shape[:2]
    h, c = _state_lists(stack, state)
    up, cum = state.update_prob.clone(), state.cum_update_prob.clone()
    # The input is projected step by step, for the updating rows only: projecting the whole (T, B, 4H)
    # sequence up front cost more than the skipped work saves (a fresh 350 MB at T=784, B=256, H=110).
    project = stack.cells[0].project_input
    update = _updater(stack)
    output = x.new_empty(steps, batch, stack.hidden_size)
    updates = x.new_empty(steps, batch)
    for t in range(steps):
        u = x.new_ones(batch)
        if stack.gated:
            u_tilde = accumulate_update_prob(up, cum)
            u = torch.round(u_tilde)
        if keep is not None:
            u = u * keep[t, :, 0]
        if valid is not None:
            u = u * valid[t, :, 0]
        rows = u.nonzero().squeeze(1)
        if rows.numel() == batch:
            h, c, delta = update(project(x[t]), h, c, x[t])
            if stack.gated:
                up = delta.squeeze(1)
        elif rows.numel():
            sub_h = [s.index_select(0, rows) for s in h]
            sub_c = [s.index_select(0, rows) if s is not None else None for s in c]
            sub_x = x[t].index_select(0, rows)
            new_h, new_c, delta = update(project(sub_x), sub_h, sub_c, sub_x)
            for layer in range(stack.num_layers):
                h[layer] = h[layer].index_copy(0, rows, new_h[layer])
                if stack.has_cell_state:
                    c[layer] = c[layer].index_copy(0, rows, new_c[layer])
            if stack.gated:
                up = up.index_copy(0, rows, delta.squeeze(1))
        if stack.gated:
            cum_next = (1.0 - u) * u_tilde
            cum = cum_next if valid is None else torch.where(valid[t, :, 0] > 0, cum_next, cum)
        output[t] = h[-1]
        updates[t] = u
    return output, updates, _final_state(stack, h, c, up, cum)


def _row_compacted_native(kern, stack, x: Tensor, state, valid, keep):
    """_row_compacted for a single-layer model as one C call (``skip_batch``): no Python per step."""
    steps, batch, hs, lstm = x.shape[0], x.shape[1], stack.hidden_size, stack.has_cell_state
    h = state.h[0].contiguous().clone()
    c = state.c[0].contiguous().clone() if lstm else None
    up = state.update_prob.reshape(batch).to(x.dtype).contiguous().clone()
    cum = state.cum_update_prob.reshape(batch).to(x.dtype).contiguous().clone()
    per_row = lambda m: None if m is None else m[:, :, 0].to(x.dtype).contiguous()  # noqa: E731  (T, B)
    output, updates = x.new_empty(steps, batch, hs), x.new_empty(steps, batch)
    kern.skip_batch.run(
        gru=int(not lstm), T=steps, B=batch, I=stack.input_size, H=hs, x=x.contiguous(),
        wt=_kernel_weights(stack, x), gate_w=stack.update_gate.weight.reshape(-1).contiguous() if stack.gated else None,
        gate_b=stack.update_gate.bias if stack.gated else None, keep=per_row(keep), valid=per_row(valid), h=h, c=c,
        up=up, cum=cum, out=output, updates=updates,
    )  # fmt: skip
    return output, updates, _final_state(stack, [h], [c], up, cum)
