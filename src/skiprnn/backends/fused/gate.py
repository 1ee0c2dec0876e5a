"""The update gate's (Δũ, cum) recursion: forward, backward, and the C kernels' view of both."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .. import native


def _round(u_tilde: Tensor, out: Tensor, t: int) -> Tensor:
    """The forward value of u_t = round_STE(ũ_t) (the backward pass uses du/dũ = 1) in the Python steps. A
    module-level seam so that the gradient check can substitute a relaxed rounding whose exact derivative is the
    STE's; the C kernels round on their own, so that check runs under ``flags(native=False)``."""
    return torch.round(u_tilde, out=out)


class GateSaved(NamedTuple):
    """What the backward pass takes from the forward gate."""
    ups: Tensor  # (T + 1, B): Δũ before each step, and after the last
    cums: Tensor  # (T + 1, B): cum likewise
    ut: Tensor  # (T, B): ũ_t
    us: Tensor  # (T, B): u_t
    dl: Tensor  # (T, B): δ_t = σ(w·s_t + b), the new Δũ of an updating step

    @classmethod
    def absent(cls, empty: Tensor) -> GateSaved:
        """An ungated model's: empty tensors."""
        return cls(empty, empty, empty, empty, empty)


def flatten(saved: tuple) -> tuple[Tensor, ...]:
    """A cell's saved tensors (a NamedTuple ending in its GateSaved) as the flat tuple autograd keeps."""
    return (*saved[:-1], *saved[-1])


def unflatten(cls: type, tensors: tuple[Tensor, ...]):
    """``flatten``'s inverse: the cell's NamedTuple ``cls`` of the tensors autograd kept."""
    gate = len(GateSaved._fields)
    return cls(*tensors[:-gate], GateSaved(*tensors[-gate:]))


def step_update(gate: GateForward | None, t: int, gate_in: Tensor, gate_w_t: Tensor | None, gate_b: Tensor | None,
                mask_t) -> Tensor:
    """u_t of one Python forward step: the gate's (which also takes δ_t = σ(w·s_t + b) from ``gate_in`` = s_t), or,
    for an ungated model, the step's mask."""
    if gate is None:
        return mask_t[t]
    u = gate.update(t)
    torch.addmm(gate_b, gate_in, gate_w_t, out=gate.dl_c[t]).sigmoid_()
    return u


class GateForward:
    """The (Δũ, cum) recursion of the forward pass, on (B, 1) columns of (T, B) buffers."""

    def __init__(self, x: Tensor, steps: int, batch: int, up0: Tensor, cum0: Tensor, mask, valid, native=None):
        new = x.new_empty
        self.ut, self.us, self.dl = new(steps, batch), new(steps, batch), new(steps, batch)
        self.ups, self.cums = new(steps + 1, batch), new(steps + 1, batch)
        self.ups[0].copy_(up0)
        self.cums[0].copy_(cum0)
        if native is not None:  # the C kernels run the recursion; they only need the buffers
            return
        cols = lambda buf: buf.unsqueeze(2).unbind(0)  # noqa: E731
        self.ut_c, self.us_c, self.dl_c = cols(self.ut), cols(self.us), cols(self.dl)
        self.ups_c, self.cums_c = cols(self.ups), cols(self.cums)
        self.mask = None if mask is None else mask.unbind(0)
        self.valid = None if valid is None else valid.unbind(0)
        self.one = x.new_ones(batch, 1)
        self.scratch = x.new_empty(batch, 1)

    def update(self, t: int) -> Tensor:
        """ũ_t = cum + min(Δũ, 1 − cum); u_t = round(ũ_t)·mask_t (the STE's value: ũ + (round(ũ) − ũ)
        equals round(ũ) exactly for ũ in [0, 2])."""
        cum, scratch = self.cums_c[t], self.scratch
        torch.sub(self.one, cum, out=scratch)
        torch.minimum(self.ups_c[t], scratch, out=scratch)
        torch.add(cum, scratch, out=self.ut_c[t])
        u = _round(self.ut_c[t], self.us_c[t], t)
        if self.mask is not None:
            u.mul_(self.mask[t])
        return u

    def advance(self, t: int, u: Tensor) -> None:
        """Δũ = lerp(Δũ, δ, u); cum = (1 − u) ũ (written ũ − u ũ: the same value for u in {0, 1}),
        or lerp(cum, that, valid) with lengths."""
        torch.lerp(self.ups_c[t], self.dl_c[t], u, out=self.ups_c[t + 1])
        u_tilde = self.ut_c[t]
        if self.valid is None:
            torch.addcmul(u_tilde, u, u_tilde, value=-1.0, out=self.cums_c[t + 1])
        else:
            torch.addcmul(u_tilde, u, u_tilde, value=-1.0, out=self.scratch)
            torch.lerp(self.cums_c[t], self.scratch, self.valid[t], out=self.cums_c[t + 1])

    def saved(self) -> GateSaved:
        return GateSaved(self.ups, self.cums, self.ut, self.us, self.dl)


class GateBackward:
    """The backward recursion of the (Δũ, cum) gradients, linear with per-step coefficients (T, B, 1).

    With dl_du = <h̃ − h_prev, dh> + <c̃ − c_prev, dc> and the carried gradients dup, dcum of the state:
        du  = dl_du + dupd + (δ − Δũ_prev)·dup − ũ·v·dcum     (lerps of h, c, Δũ; cum_next = (1 − u) ũ)
        dũ  = m·du + (1 − u)·v·dcum                           (STE through u = round(ũ)·m)
        dz  = u·δ(1 − δ)·dup                                   (the update gate's pre-activation)
        dup_prev  = (1 − u)·dup + α·dũ,  dcum_prev = (1 − v)·dcum + (1 − β)·dũ
    where α, β split min(Δũ_prev, 1 − cum_prev)'s gradient as torch.minimum does (halves on a tie).
    """

    def __init__(self, saved, mask, valid, grads, batch: int, like: Tensor):
        ups, cums, ut, us, dl = saved
        dupd, dup_t, dcum_t = grads
        upp, cump = ups[:-1].unsqueeze(2), cums[:-1].unsqueeze(2)
        u_tilde, u, delta = ut.unsqueeze(2), us.unsqueeze(2), dl.unsqueeze(2)
        one_minus_cum = 1.0 - cump  # as in the forward pass, so that ties are the same
        tie = (upp == one_minus_cum).to(u.dtype) * 0.5
        alpha = (upp < one_minus_cum).to(u.dtype) + tie
        one_minus_beta = 1.0 - ((upp > one_minus_cum).to(u.dtype) + tie)
        m = torch.ones_like(u) if mask is None else mask
        v = torch.ones_like(u) if valid is None else valid
        one_minus_u = 1.0 - u
        # dũ = m·dl_du + b0 + b1·dup + b2·dcum;  [dup, dcum] <- [1 − u, 1 − v]·[dup, dcum] + [α, 1 − β]·dũ
        keep = torch.cat([one_minus_u, 1.0 - v], 2)
        spread = torch.cat([alpha, one_minus_beta], 2)
        self.m = None if mask is None else m.unbind(0)
        self.b0 = None if dupd is None else (m * dupd.unsqueeze(2)).unbind(0)
        self.b1 = (m * (delta - upp)).unbind(0)
        self.b2 = (one_minus_u * v - m * u_tilde * v).unbind(0)
        self.keep, self.spread = keep.unbind(0), spread.unbind(0)
        self.cz = (u * delta * (1.0 - delta)).unbind(0)
        self.one_minus_u = one_minus_u.unbind(0)
        self.u = u.unbind(0)
        self.state = like.new_zeros(batch, 2)  # [dL/dΔũ, dL/dcum] of the state after the current step
        if dup_t is not None:
            self.state[:, 0] = dup_t
        if dcum_t is not None:
            self.state[:, 1] = dcum_t
        self.dz_all = like.new_empty(len(self.u), batch, 1)
        self.dz = self.dz_all.unbind(0)
        self.dup, self.dcum = self.state[:, :1], self.state[:, 1:]
        self.d_tilde = like.new_empty(batch, 1)

    def step(self, t: int, dl_du: Tensor) -> Tensor:
        """One step back; returns dz_t (B, 1), the gradient of the update gate's pre-activation."""
        d_tilde, dup, dcum = self.d_tilde, self.dup, self.dcum
        dz = torch.mul(self.cz[t], dup, out=self.dz[t])
        dl_du = dl_du.unsqueeze(1)
        if self.m is None and self.b0 is None:  # the usual case: one op fewer
            torch.addcmul(dl_du, self.b1[t], dup, out=d_tilde)
        else:
            if self.m is None:
                torch.add(dl_du, self.b0[t], out=d_tilde)
            elif self.b0 is not None:
                torch.addcmul(self.b0[t], self.m[t], dl_du, out=d_tilde)
            else:
                torch.mul(self.m[t], dl_du, out=d_tilde)
            d_tilde.addcmul_(self.b1[t], dup)
        d_tilde.addcmul_(self.b2[t], dcum)
        self.state.mul_(self.keep[t]).addcmul_(self.spread[t], d_tilde)
        return dz

    def input_grads(self):
        return self.state[:, 0].clone(), self.state[:, 1].clone()


def native_gate_forward(kern, gate: GateForward, mask, valid, gate_w, gate_b):
    """The C kernels' view of the forward gate (a native gate_fwd struct)."""
    tensors = dict(mask=mask, valid=valid, w=gate_w, bias=gate_b, ups=gate.ups, cums=gate.cums, ut=gate.ut,
                   us=gate.us, dl=gate.dl)
    return native.make_struct(kern.gate_fwd, batch=gate.ut.shape[1],
                              **{k: None if v is None else v.contiguous() for k, v in tensors.items()})


class NativeBackwardGate:
    """What the C backward kernels need of the updates and the gate: ``u`` (the (T, B) updates: u_t when gated,
    else the random-skip mask, else None), and when gated ``struct`` (a native gate_bwd), ``gate_w`` and
    ``dgw_rows`` (the per-row accumulator of the gate weight's gradient, (B, H))."""

    def __init__(self, kern, gate_saved, gate_w, mask, valid, grads):
        """gate_saved and gate_w are None for an ungated model."""
        self.u = None if mask is None else mask.contiguous()
        self.struct = self.gate_w = self.dgw_rows = None
        if gate_saved is None:
            return
        ups, cums, ut, us, dl = (t.contiguous() for t in gate_saved)
        dupd, dup_t, dcum_t = grads
        steps, batch = us.shape
        self.gate_w = gate_w.contiguous()
        self.dz_all = us.new_empty(steps, batch, 1)
        self.dgw_rows = us.new_zeros(batch, gate_w.shape[1])
        self.state = us.new_zeros(batch, 2)  # [dL/dΔũ, dL/dcum] of the state after the current step
        for col, grad in enumerate((dup_t, dcum_t)):
            if grad is not None:
                self.state[:, col] = grad
        self.struct = native.make_struct(
            kern.gate_bwd, batch=batch, ups=ups, cums=cums, ut=ut, us=us, dl=dl, mask=self.u,
            valid=None if valid is None else valid.contiguous(), dupd=None if dupd is None else dupd.contiguous(),
            state=self.state, dz=self.dz_all,
        )  # fmt: skip
        self.u = us

    def results(self):
        """(dz (T, B, 1), dL/dw of the gate (1, H), (dL/dΔũ_0, dL/dcum_0)), or Nones when not gated."""
        if self.struct is None:
            return None, None, (None, None)
        return self.dz_all, self.dgw_rows.sum(0, keepdim=True), (self.state[:, 0].clone(), self.state[:, 1].clone())

