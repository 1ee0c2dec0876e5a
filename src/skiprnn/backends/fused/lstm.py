"""The fused LSTM: its forward pass into preallocated buffers and its hand-written backward pass, each as one C
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
    w_cat: Tensor  # (4H, I + 1 + H): [W_ih, b, W_hh], rows i, j, f, o, the j rows scaled by 2
    xh: Tensor  # (T, B, I + 1 + H): [x_t, 1, h_{t-1}]
    c0: Tensor  # (B, H)
    acts: Tensor  # (T, B, 4H): σ(i), tanh(j), σ(f), σ(o)
    tanh_c: Tensor  # (T, B, H): tanh(c̃_t)
    cs: Tensor  # (T, B, H): c_t
    mask: Tensor  # (T, B, 1): keep·valid
    valid: Tensor  # (T, B, 1)
    gate_w: Tensor  # (1, H), gated
    cand_c: Tensor  # (T, B, H): c̃_t, gated, Python steps (the C kernels recompute it)
    cand_h: Tensor  # (T, B, H): h̃_t, likewise
    gate: GateSaved  # gated; else empty tensors


def forward(x, w_ih, bias, w_hh, h0, c0, up0, cum0, gate_w, gate_b, mask, valid, gated, need_grad, kern):
    steps, batch, inp = x.shape
    hs = w_hh.shape[1]
    g = 4 * hs
    new = lambda *shape: empty(x, *shape)  # noqa: E731
    w_cat = torch.cat([w_ih, bias.unsqueeze(1), w_hh], 1)  # (4H, I + 1 + H), rows i, j, f, o
    w_cat[hs : 2 * hs] *= 2.0  # tanh(j) = 2σ(2j) − 1: one sigmoid over all four gates
    xh = input_buffer(x, h0, new)
    acts = new(steps, batch, g)  # σ(i), tanh(j), σ(f), σ(o)
    tanh_c = new(steps, batch, hs)  # tanh(c̃_t)
    out = new(steps, batch, hs)  # h_t
    masked = gated or mask is not None
    # c̃_t: the C kernels keep it only as c_t of an unmasked LSTM (their backward step recomputes it)
    cand_c = new(steps, batch, hs) if kern is None or not masked else None
    cs = new(steps, batch, hs) if masked else cand_c  # c_t (= c̃_t when every step updates)
    # h̃_t: the Python backward pass needs h̃_t − h_{t−1}
    store_cand_h = gated and need_grad and kern is None
    cand_h = new(steps, batch, hs) if store_cand_h else x.new_empty(1, batch, hs).expand(steps, -1, -1)
    gate = GateForward(x, steps, batch, up0, cum0, mask, valid, kern) if gated else None
    if kern is not None:
        c_init = c0 if c0.stride(1) == 1 else c0.contiguous()
        kern.lstm_forward.run(
            T=steps, B=batch, H=hs, w=w_cat, acts=acts, c0=c_init, c0_s=c_init.stride(0), cs=cs, tanh_c=tanh_c,
            out=out, xh=xh, xrow=xh.shape[2], h_col=inp + 1, mask=None if mask is None else mask.contiguous(),
            gate=native_gate_forward(kern, gate, mask, valid, gate_w, gate_b) if gated else None,
        )  # fmt: skip
    else:
        _forward_python(x, w_cat, xh, acts, cand_c, tanh_c, out, cs, cand_h, c0, mask, gate, gate_w, gate_b, masked)

    outputs = (out, out[-1].clone(), cs[-1].clone())
    if gated:
        outputs += (gate.us, gate.ups[-1].clone(), gate.cums[-1].clone())
    if not need_grad:
        return outputs, ()
    absent = x.new_empty(0)
    python_gated = gated and kern is None  # only the Python backward steps read c̃ and h̃
    saved = Saved(w_cat, xh, c0, acts, tanh_c, cs, absent if mask is None else mask, absent if valid is None else valid,
                  gate_w if gated else absent, cand_c if python_gated else absent, cand_h if python_gated else absent,
                  gate.saved() if gated else GateSaved.absent(absent))
    return outputs, saved


def _forward_python(x, w_cat, xh, acts, cand_c, tanh_c, out, cs, cand_h, c0, mask, gate, gate_w, gate_b, masked):
    """The time loop of _lstm_forward as tensor ops (no C kernels)."""
    steps, inp = x.shape[0], x.shape[2]
    gated = gate is not None
    cand_h_t = cand_h.unbind(0)
    xh_t, xh_prev_h = xh.unbind(0), xh[:, :, inp + 1 :].unbind(0)
    acts_t, cand_t, tanh_t, out_t, cs_t = (b.unbind(0) for b in (acts, cand_c, tanh_c, out, cs))
    si_t, tj_t, sf_t, so_t = per_step(acts, 4)
    mask_t = None if mask is None else mask.unbind(0)
    gw_t = gate_w.t() if gated else None
    h, c = xh_prev_h[0], c0
    for t in range(steps):
        torch.sigmoid(mm(xh_t[t], w_cat), out=acts_t[t])
        si, tj, sf, so = si_t[t], tj_t[t], sf_t[t], so_t[t]
        tj.mul_(2.0).sub_(1.0)
        ct, tc = cand_t[t], tanh_t[t]
        torch.mul(c, sf, out=ct).addcmul_(si, tj)
        torch.mul(ct, 2.0, out=tc).sigmoid_().mul_(2.0).sub_(1.0)
        if not masked:
            h = torch.mul(tc, so, out=out_t[t])
            c = ct
        else:
            torch.mul(tc, so, out=cand_h_t[t])
            u = step_update(gate, t, ct, gw_t, gate_b, mask_t)  # Δũ from c̃
            h = torch.lerp(h, cand_h_t[t], u, out=out_t[t])
            c = torch.lerp(c, ct, u, out=cs_t[t])
            if gated:
                gate.advance(t, u)
        if t + 1 < steps:
            xh_prev_h[t + 1].copy_(h)


def backward(ctx, saved_tensors, grads):
    saved = unflatten(Saved, saved_tensors)
    w_cat, xh, acts = saved.w_cat, saved.xh, saved.acts
    gated = ctx.gated
    hs = acts.shape[2] // 4
    inp = xh.shape[2] - 1 - hs
    w_cat = w_cat.clone()
    w_cat[hs : 2 * hs] *= 0.5  # unscaled: dgates are taken w.r.t. the true pre-activations
    w_hh_t = w_cat[:, inp + 1 :].t().contiguous()  # dh = dgates @ w_hh = mm(dgates, w_hh_t)

    mask, valid = or_none(saved.mask, ctx.has_mask), or_none(saved.valid, ctx.has_valid)
    run = _backward_python if ctx.kern is None else functools.partial(_backward_native, ctx.kern)
    dgates, dh, dc, dz_all, dgw, gate_grads = run(saved, grads, mask, valid, gated, w_hh_t)
    grads_in = input_grads(ctx, [(dgates, slice(None), xh)], w_cat, inp)
    return function_grads(ctx, grads_in, dh, dc, dz_all, dgw, gate_grads)


def _backward_python(saved: Saved, grads, mask, valid, gated, w_hh_t):
    """The reverse time loop of _lstm_backward as tensor ops; returns dgates, dh_0, dc_0, dz and the gate's
    input gradients."""
    xh, c0, acts, tanh_c, cs = saved.xh, saved.c0, saved.acts, saved.tanh_c, saved.cs
    steps, batch, g = acts.shape
    hs = g // 4
    inp = xh.shape[2] - 1 - hs
    dout, dh_t, dc_t = grads[:3]
    # dL/dh_t, dL/dc_t, carried backwards; side by side when gated, for one row-wise dot with [h̃ − h, c̃ − c]
    dhc = acts.new_zeros(batch, 2 * hs) if gated else None
    dh, dc = (dhc[:, :hs], dhc[:, hs:]) if gated else (acts.new_zeros(batch, hs), acts.new_zeros(batch, hs))
    if dh_t is not None:
        dh.copy_(dh_t)
    if dc_t is not None:
        dc.copy_(dc_t)
    dgates = empty(acts, steps, batch, g)
    dcn = acts.new_empty(batch, hs)
    tmp = acts.new_empty(batch, hs)
    ones = acts.new_ones(batch, hs)
    tanh_t, cs_t, dg_t = (b.unbind(0) for b in (tanh_c, cs, dgates))
    si_t, tj_t, sf_t, so_t = per_step(acts, 4)
    di_t, dj_t, df_t, do_t = per_step(dgates, 4)
    acts_t = acts.unbind(0)
    dout_t = None if dout is None else dout.unbind(0)
    if gated:
        gate_w, cand_c, cand_h = saved.gate_w, saved.cand_c, saved.cand_h
        gate = GateBackward(saved.gate, mask, valid, grads[3:], batch, acts)
        u_t, one_minus_u = gate.u, gate.one_minus_u
        cand_t, cand_h_t, h_prev_t = cand_c.unbind(0), cand_h.unbind(0), xh[:, :, inp + 1 :].unbind(0)
        diff = acts.new_empty(batch, 2 * hs)  # [h̃ − h_prev, c̃ − c_prev]
        dl_du = acts.new_empty(batch)
    elif mask is not None:
        u_t, one_minus_u = mask.unbind(0), (1.0 - mask).unbind(0)
    masked = gated or mask is not None
    if dout_t is not None:
        dh.add_(dout_t[-1])

    for t in range(steps - 1, -1, -1):
        at, si, tj, sf, so = acts_t[t], si_t[t], tj_t[t], sf_t[t], so_t[t]
        tc = tanh_t[t]
        if gated:
            torch.sub(cand_h_t[t], h_prev_t[t], out=diff[:, :hs])
            torch.sub(cand_t[t], c0 if t == 0 else cs_t[t - 1], out=diff[:, hs:])
            dz = gate.step(t, torch.sum(diff.mul_(dhc), 1, out=dl_du))  # in place: no (B, 2H) allocation per step
        # dc̃ = u·(dc + dh·σ(o)·(1 − tanh²c̃)) + dz·w
        torch.mul(tc, tc, out=tmp)
        torch.addcmul(so, so, tmp, value=-1.0, out=tmp)
        torch.addcmul(dc, dh, tmp, out=dcn)
        if masked:
            dcn.mul_(u_t[t])
        if gated:
            dcn.addcmul_(dz, gate_w)
        # gate pre-activation gradients, rows i, j, f, o
        dg = dg_t[t]
        torch.addcmul(at, at, at, value=-1.0, out=dg)  # σ(1 − σ)
        d_i, d_j, d_f, d_o = di_t[t], dj_t[t], df_t[t], do_t[t]
        torch.addcmul(ones, tj, tj, value=-1.0, out=d_j)  # 1 − tanh²
        dg.view(batch, 4, hs)[:, :3].mul_(dcn.unsqueeze(1))
        d_i.mul_(tj)
        d_j.mul_(si)
        d_f.mul_(c0 if t == 0 else cs_t[t - 1])
        d_o.mul_(tc).mul_(dh)
        if masked:
            d_o.mul_(u_t[t])
        # carried gradients of h_{t-1} (+ the output gradient at t − 1), c_{t-1}
        prev_output_grad = dout_t is not None and t > 0
        if not masked:
            torch.mul(dcn, sf, out=dc)
            if prev_output_grad:
                torch.add(dout_t[t - 1], mm(dg, w_hh_t), out=dh)
            else:
                dh.copy_(mm(dg, w_hh_t))
        else:
            stay = one_minus_u[t]
            if gated:  # dh, dc side by side: one op
                dhc.mul_(stay)
                dc.addcmul_(dcn, sf)
                if prev_output_grad:
                    dh.add_(dout_t[t - 1])
            else:
                dc.mul_(stay).addcmul_(dcn, sf)
                if prev_output_grad:
                    torch.addcmul(dout_t[t - 1], dh, stay, out=dh)
                else:
                    dh.mul_(stay)
            dh.add_(mm(dg, w_hh_t))
    if not gated:
        return dgates, dh, dc, None, None, (None, None)
    return dgates, dh, dc, gate.dz_all, gate_weight_grad(gate.dz_all, cand_c), gate.input_grads()


def _backward_native(kern, saved: Saved, grads, mask, valid, gated, w_hh_t):
    """_backward_python as one C kernel call (the dh matmuls included)."""
    xh, c0, acts, tanh_c, cs = saved.xh, saved.c0, saved.acts, saved.tanh_c, saved.cs
    steps, batch, g = acts.shape
    hs = g // 4
    inp = xh.shape[2] - 1 - hs
    dout, dh_t, dc_t = grads[:3]
    dh, dc = acts.new_zeros(batch, hs), acts.new_zeros(batch, hs)
    if dh_t is not None:
        dh.copy_(dh_t)
    if dc_t is not None:
        dc.copy_(dc_t)
    if dout is not None:
        dout = dout.contiguous()
        dh.add_(dout[-1])
    dgates = empty(acts, steps, batch, g)
    c_init = c0 if c0.stride(1) == 1 else c0.contiguous()
    gate = NativeBackwardGate(kern, saved.gate if gated else None, saved.gate_w if gated else None, mask, valid,
                               grads[3:])
    kern.lstm_backward.run(
        T=steps, B=batch, H=hs, w_hh_t=w_hh_t, acts=acts, tanh_c=tanh_c, cs=cs, c0=c_init, c0_s=c_init.stride(0),
        xh=xh, xrow=xh.shape[2], h_col=inp + 1, dh=dh, dc=dc, dout=dout, dg=dgates, u=gate.u, gate_w=gate.gate_w,
        dgw_rows=gate.dgw_rows, gate=gate.struct,
    )  # fmt: skip
    return (dgates, dh, dc, *gate.results())

