"""The fused GRU: its forward pass into preallocated buffers and its hand-written backward pass, each as one C
kernel call for the whole sequence or as tensor ops per step."""
from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import Tensor

from .common import function_grads, gate_weight_grad, input_buffer, input_grads, mm, or_none, per_step
from .gate import GateBackward, GateForward, GateSaved, NativeBackwardGate, native_gate_forward, step_update, unflatten
from .pool import empty


class Saved(NamedTuple):
    """What the backward pass takes from the forward pass; an empty tensor stands for one the run has no use for."""
    w_cat: Tensor  # (3H, I + 1 + H): [W_ih, b, W_hh], rows r, z, n
    xh: Tensor  # (T, B, I + 1 + H): [x_t, 1, h_{t-1}]
    xrh: Tensor  # (T, B, I + 1 + H): [x_t, 1, r_t ⊙ h_{t-1}], the candidate's matmul input
    rz: Tensor  # (T, B, 2H): σ(r), σ(z)
    cand: Tensor  # (T, B, H): tanh(n)
    mask: Tensor  # (T, B, 1): keep·valid
    valid: Tensor  # (T, B, 1)
    gate_w: Tensor  # (1, H), gated
    cand_h: Tensor  # (T, B, H): h̃_t, gated, Python steps (the C kernels recompute it)
    gate: GateSaved  # gated; else empty tensors


def forward(x, w_ih, bias, w_hh, h0, c0, up0, cum0, gate_w, gate_b, mask, valid, gated, need_grad, kern):
    steps, batch, inp = x.shape
    hs = w_hh.shape[1]
    two = 2 * hs
    new = lambda *shape: empty(x, *shape)  # noqa: E731
    w_cat = torch.cat([w_ih, bias.unsqueeze(1), w_hh], 1)  # (3H, I + 1 + H), rows r, z, n
    w_rz = w_cat[:two]
    w_n = w_cat[two:] * 2.0  # tanh(n) = 2σ(2n) − 1
    xh = input_buffer(x, h0, new)  # [x_t, 1, h_{t-1}]
    xrh = new(steps, batch, inp + 1 + hs)  # [x_t, 1, r_t ⊙ h_{t-1}]: the candidate's matmul input
    xrh[:, :, : inp + 1] = xh[:, :, : inp + 1]
    rz = new(steps, batch, two)  # σ(r), σ(z)
    cand = new(steps, batch, hs)  # tanh(n)
    out = new(steps, batch, hs)
    masked = gated or mask is not None
    # h̃_t: the Python backward pass needs h̃_t − h_{t−1} (the C kernels recompute it)
    store_cand_h = gated and need_grad and kern is None
    cand_h = new(steps, batch, hs) if store_cand_h else x.new_empty(1, batch, hs).expand(steps, -1, -1)
    gate = GateForward(x, steps, batch, up0, cum0, mask, valid, kern) if gated else None
    if kern is None:
        _forward_python(x, w_rz, w_n, xh, xrh, rz, cand, out, cand_h, mask, gate, gate_w, gate_b, masked)
    else:
        kern.gru_forward.run(
            T=steps, B=batch, H=hs, w_rz=w_rz, w_n=w_n, rz=rz, cand=cand, out=out, xh=xh, xrh=xrh,
            xrow=xh.shape[2], h_col=inp + 1, mask=None if mask is None else mask.contiguous(),
            gate=native_gate_forward(kern, gate, mask, valid, gate_w, gate_b) if gated else None,
        )  # fmt: skip

    outputs = (out, out[-1].clone())
    if gated:
        outputs += (gate.us, gate.ups[-1].clone(), gate.cums[-1].clone())
    if not need_grad:
        return outputs, ()
    absent = x.new_empty(0)
    saved = Saved(w_cat, xh, xrh, rz, cand, absent if mask is None else mask, absent if valid is None else valid,
                  gate_w if gated else absent, cand_h if gated and kern is None else absent,
                  gate.saved() if gated else GateSaved.absent(absent))
    return outputs, saved


def _forward_python(x, w_rz, w_n, xh, xrh, rz, cand, out, cand_h, mask, gate, gate_w, gate_b, masked):
    """The time loop of _gru_forward as tensor ops (no C kernels)."""
    steps, inp = x.shape[0], x.shape[2]
    gated = gate is not None
    cand_h_t = cand_h.unbind(0)
    xh_t, xh_prev_h = xh.unbind(0), xh[:, :, inp + 1 :].unbind(0)
    xrh_t, xrh_h = xrh.unbind(0), xrh[:, :, inp + 1 :].unbind(0)
    rz_t, cand_t, out_t = rz.unbind(0), cand.unbind(0), out.unbind(0)
    r_t, z_t = per_step(rz, 2)
    mask_t = None if mask is None else mask.unbind(0)
    gw_t = gate_w.t() if gated else None
    h = xh_prev_h[0]
    for t in range(steps):
        torch.sigmoid(mm(xh_t[t], w_rz), out=rz_t[t])
        r, z = r_t[t], z_t[t]
        torch.mul(r, h, out=xrh_h[t])
        n = torch.sigmoid(mm(xrh_t[t], w_n), out=cand_t[t]).mul_(2.0).sub_(1.0)
        if not masked:
            h = torch.lerp(n, h, z, out=out_t[t])
        else:
            h_cand = torch.lerp(n, h, z, out=cand_h_t[t])
            u = step_update(gate, t, h_cand, gw_t, gate_b, mask_t)  # Δũ from h̃
            h = torch.lerp(h, h_cand, u, out=out_t[t])
            if gated:
                gate.advance(t, u)
        if t + 1 < steps:
            xh_prev_h[t + 1].copy_(h)


def backward(ctx, saved_tensors, grads):
    saved = unflatten(Saved, saved_tensors)
    w_cat, xh, xrh, cand = saved.w_cat, saved.xh, saved.xrh, saved.cand
    gated = ctx.gated
    mask, valid = or_none(saved.mask, ctx.has_mask), or_none(saved.valid, ctx.has_valid)
    hs = cand.shape[2]
    two = 2 * hs
    inp = xh.shape[2] - 1 - hs
    w_rz_t, w_n_t = w_cat[:two, inp + 1 :].t().contiguous(), w_cat[two:, inp + 1 :].t().contiguous()
    run = _backward_python if ctx.kern is None else functools.partial(_backward_native, ctx.kern)
    dg_rz, dg_n, dh, dz_all, dgw, gate_grads = run(saved, grads, mask, valid, gated, w_rz_t, w_n_t)
    blocks = [(dg_rz, slice(0, two), xh), (dg_n, slice(two, 3 * hs), xrh)]
    return function_grads(ctx, input_grads(ctx, blocks, w_cat, inp), dh, None, dz_all, dgw, gate_grads)


def _backward_python(saved: Saved, grads, mask, valid, gated, w_rz_t, w_n_t):
    """The reverse time loop of _gru_backward as tensor ops; returns dgates (r, z | n), dh_0, dz and the
    gate's input gradients."""
    xh, rz, cand = saved.xh, saved.rz, saved.cand
    steps, batch, hs = cand.shape
    two = 2 * hs
    inp = xh.shape[2] - 1 - hs
    dout, dh_t = grads[:2]
    dh = cand.new_zeros(batch, hs)  # dL/dh_t, carried backwards
    if dh_t is not None:
        dh.copy_(dh_t)
    dg_rz, dg_n = empty(cand, steps, batch, two), empty(cand, steps, batch, hs)  # rows r, z | n
    dhn = cand.new_empty(batch, hs)
    tmp = cand.new_empty(batch, hs)
    ones = cand.new_ones(batch, hs)
    rz_t, cand_t, h_prev_t = rz.unbind(0), cand.unbind(0), xh[:, :, inp + 1 :].unbind(0)
    dg_rz_t, dg_n_t = dg_rz.unbind(0), dg_n.unbind(0)
    r_t, z_t = per_step(rz, 2)
    dr_t, dz_t = per_step(dg_rz, 2)
    dout_t = None if dout is None else dout.unbind(0)
    if gated:
        gate_w, cand_h = saved.gate_w, saved.cand_h
        gate = GateBackward(saved.gate, mask, valid, grads[2:], batch, cand)
        u_t, one_minus_u = gate.u, gate.one_minus_u
        cand_h_t = cand_h.unbind(0)
        dl_du = cand.new_empty(batch)
    elif mask is not None:
        u_t, one_minus_u = mask.unbind(0), (1.0 - mask).unbind(0)
    masked = gated or mask is not None
    if dout_t is not None:
        dh.add_(dout_t[-1])

    for t in range(steps - 1, -1, -1):
        rzt, n, h_prev = rz_t[t], cand_t[t], h_prev_t[t]
        r, z = r_t[t], z_t[t]
        if gated:
            torch.sub(cand_h_t[t], h_prev, out=tmp)
            dz = gate.step(t, torch.sum(tmp.mul_(dh), 1, out=dl_du))
        # dh̃ = u·dh + dz·w
        if not masked:
            dhn.copy_(dh)
        else:
            torch.mul(dh, u_t[t], out=dhn)
        if gated:
            dhn.addcmul_(dz, gate_w)
        drz, d_n, d_r, d_z = dg_rz_t[t], dg_n_t[t], dr_t[t], dz_t[t]
        # h̃ = n + z (h_prev − n):  dn_pre = (1 − n²)(1 − z) dh̃
        torch.addcmul(ones, n, n, value=-1.0, out=d_n)
        torch.addcmul(dhn, z, dhn, value=-1.0, out=tmp)
        d_n.mul_(tmp)
        # dz_pre = z (1 − z)(h_prev − n) dh̃;  dr_pre = r (1 − r) h_prev d(r ⊙ h_prev), d(rh) = dn_pre W_n
        torch.sub(h_prev, n, out=tmp)
        torch.addcmul(rzt, rzt, rzt, value=-1.0, out=drz)
        d_z.mul_(tmp).mul_(dhn)
        drh = mm(d_n, w_n_t)
        d_r.mul_(h_prev).mul_(drh)
        # dh_prev = (1 − u) dh + z dh̃ + r d(rh) + [dr_pre, dz_pre] W_rz (+ the output gradient at t − 1)
        prev_output_grad = dout_t is not None and t > 0
        if not masked:
            torch.mul(z, dhn, out=dh)
            if prev_output_grad:
                dh.add_(dout_t[t - 1])
        else:
            if prev_output_grad:
                torch.addcmul(dout_t[t - 1], dh, one_minus_u[t], out=dh)
            else:
                dh.mul_(one_minus_u[t])
            dh.addcmul_(z, dhn)
        dh.addcmul_(r, drh).add_(mm(drz, w_rz_t))
    if not gated:
        return dg_rz, dg_n, dh, None, None, (None, None)
    return dg_rz, dg_n, dh, gate.dz_all, gate_weight_grad(gate.dz_all, cand_h), gate.input_grads()


def _backward_native(kern, saved: Saved, grads, mask, valid, gated, w_rz_t, w_n_t):
    """_backward_python as one C kernel call (the d(r ⊙ h) and dh matmuls included)."""
    xh, rz, cand = saved.xh, saved.rz, saved.cand
    steps, batch, hs = cand.shape
    two = 2 * hs
    inp = xh.shape[2] - 1 - hs
    dout, dh_t = grads[:2]
    dh = cand.new_zeros(batch, hs)
    if dh_t is not None:
        dh.copy_(dh_t)
    if dout is not None:
        dout = dout.contiguous()
        dh.add_(dout[-1])
    dg_rz, dg_n = empty(cand, steps, batch, two), empty(cand, steps, batch, hs)  # rows r, z | n
    gate = NativeBackwardGate(kern, saved.gate if gated else None, saved.gate_w if gated else None, mask, valid,
                               grads[2:])
    kern.gru_backward.run(
        T=steps, B=batch, H=hs, w_rz_t=w_rz_t, w_n_t=w_n_t, rz=rz, cand=cand, xh=xh, xrow=xh.shape[2],
        h_col=inp + 1, dh=dh, dout=dout, dg_rz=dg_rz, dg_n=dg_n, u=gate.u, gate_w=gate.gate_w,
        dgw_rows=gate.dgw_rows, gate=gate.struct,
    )  # fmt: skip
    return (dg_rz, dg_n, dh, *gate.results())

