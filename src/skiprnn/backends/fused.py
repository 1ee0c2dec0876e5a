"""A fused single-layer SkipRNN: the whole sequence in one ``torch.autograd.Function``.

The reference backend (``backends/reference.py``; ``SkipRNN(..., fused=False)``) is a per-step Python loop that
autograd records op by op. Here, as in cuDNN, the forward pass runs without autograd into preallocated
(T, B, ...) buffers with in-place ops, and the backward pass is written by hand: one reverse loop over
time computes the gate pre-activation gradients of every step; the weight gradients come after the loop
from one large matmul over all steps (dW = dgates_allᵀ @ [x, 1, h_prev]_all).

It reproduces the reference backend for ``num_layers == 1`` in every mode, including the gradients:

* u_t = round_STE(ũ_t) · keep_t · valid_t, ũ_t = cum + min(Δũ, 1 − cum) (torch.minimum's backward
  gives each side half the gradient on a tie, which happens at the first step: Δũ = 1, cum = 0),
* h, c = lerp(prev, candidate, u_t); Δũ = lerp(Δũ, σ(w·s + b), u_t), s = c̃ (LSTM) or h̃ (GRU);
  cum = (1 − u_t) ũ_t, and with a ``valid`` mask cum = lerp(cum, that, valid_t),
* outputs h_t, updates u_t (their gradient reaches ũ through the STE: the budget loss) and the final
  state (h, c, Δũ, cum) are all differentiable.

Implementation choices (timings: ``python -m skiprnn.experiment.bench``, and one-thread CPU times on a 2-core AMD EPYC):

* The input projection is done inside, TF-style, in the same matmul as the recurrent one:
  gates_t = [x_t, 1, h_{t-1}] @ [W_ih, b, W_hh]ᵀ, so the (T, B, G) projection is never materialised.
  Projecting outside with ``cell.project_input`` and letting autograd differentiate it took 10.4 ms
  (forward + backward) at T=50, B=256, I=2 on one thread, against ~54 ms for the whole fused LSTM step
  now (autograd computes the weight gradient as (T·B, G)ᵀ @ (T·B, I), a slow matmul orientation for a
  tiny I: 6.6 ms, against 1.7 ms for the other orientation).
  The bias b is ``cell.project_input(0)`` (the cell's own bias, with the LSTM's forget offset), so its
  gradient still flows through the cell by ordinary autograd; the weight and the input gradients come
  from the dgates matmuls. This assumes ``project_input(x) = x @ weight_ihᵀ + project_input(0)``, true
  for both cells and checked by the tests against the reference path.
* The LSTM j rows (and the GRU candidate rows) of the weights are scaled by 2, so that one sigmoid over
  the contiguous gate block gives every activation, with tanh(j) = 2σ(2j) − 1. tanh(c) is computed the
  same way: torch's CPU tanh took ~60 µs for a (256, 110) block, its sigmoid ~7 µs. Results agree with
  ``torch.tanh`` to a few ulps.
* Large buffers are reused across calls (see ``_empty``).
* The matmuls (forward, dh per step, one dW) are the same as cuDNN's and torch's, through oneDNN on CPU
  in float32 (see ``_mm``). The rest of a step is elementwise: on CPU one call of a C kernel per step
  (``skiprnn.backends.native``, two for the GRU), else ~25 small tensor ops whose dispatch overhead (~1-3 µs each)
  cost as much as the arithmetic. The two implementations save different tensors for the backward pass
  (the kernels recompute h̃ and c̃ instead of keeping them), so the backward pass takes the forward's.
"""
from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict

import torch
from torch import Tensor

from ..cells.state import SkipState
from . import native, numerics
from .flags import current as _flags

# ------------------------------------------------------------------------------------------ workspace
# A fresh multi-megabyte CPU allocation is mmap-ed and page-faulted in on first touch, which can cost
# as much as the recurrence itself (about 0.35 ms per MB here, against a few µs for the maths of a step).
# Large (T, B, ...) buffers are kept in a small pool and reused once nothing refers to them any more
# (no tensor, view, saved tensor or gradient shares their storage), as a caching allocator would.
_POOL: OrderedDict = OrderedDict()  # (numel, dtype) -> [flat buffers], least recently used first
_POOL_KEYS, _POOL_PER_KEY, _POOL_MIN_BYTES, _POOL_MAX_BYTES = 16, 8, 1 << 20, 4 << 30
_POOL_LOCK = threading.Lock()
# Private torch APIs (docs/layout.md): without any of them, no pool.
_PRIVATE = ((torch._C, "_storage_Use_Count"), (torch.Tensor, "_use_count"), (torch.UntypedStorage, "_cdata"))
_CAN_POOL = all(hasattr(owner, name) for owner, name in _PRIVATE)


def _unused(buf: Tensor) -> bool:
    # 2 = the pool's own tensor + the temporary storage object of this very call.
    return buf._use_count() == 1 and torch._C._storage_Use_Count(buf.untyped_storage()._cdata) <= 2


def _pool_bytes() -> int:
    return sum(b.numel() * b.element_size() for bufs in _POOL.values() for b in bufs)


def _empty(like: Tensor, *shape: int) -> Tensor:
    """An uninitialised tensor of ``shape``; on CPU, large ones are taken from the pool when one is free."""
    numel = math.prod(shape)
    if not _CAN_POOL or like.device.type != "cpu" or numel * like.element_size() < _POOL_MIN_BYTES:
        return like.new_empty(shape)
    key = (numel, like.dtype)
    with _POOL_LOCK:
        bufs = _POOL.pop(key, [])
        _POOL[key] = bufs
        buf = next((b for b in bufs if _unused(b)), None)
        if buf is None:
            buf = like.new_empty(numel)
            if len(bufs) < _POOL_PER_KEY:
                bufs.append(buf)
            while len(_POOL) > 1 and (len(_POOL) > _POOL_KEYS or _pool_bytes() > _POOL_MAX_BYTES):
                _POOL.popitem(last=False)
        # A separate tensor on the same storage, not a view: callers return some of these as outputs.
        return like.new_empty(0).set_(buf.untyped_storage(), 0, shape)


def empty_cache() -> None:
    """Release the buffers the fused path keeps for reuse (up to 4 GiB, the last 16 sizes used)."""
    with _POOL_LOCK:
        _POOL.clear()


# --------------------------------------------------------------------------------------------- matmul
# torch.mm goes to the BLAS torch was built with (MKL on x86). oneDNN's float32 kernel (the one nn.LSTM
# uses) was as fast or faster at these shapes in every measurement here: 115 µs against 227 µs for (256, 113) @ (113, 440)
# on one AMD EPYC host, 258 against 261 µs (and 262 against 320 µs for the backward's (256, 440) @ (440, 110))
# on a slower one, one thread each; below ~32 rows its call overhead loses.
def _probe_onednn():
    """The oneDNN linear op, if this torch build has it with the signature used here and it computes a @ w.T;
    it is a private op, so a torch release that changes it falls back to torch.mm instead of failing mid-training."""
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        op = torch.ops.mkldnn._linear_pointwise
        a = torch.linspace(-1, 1, _ONEDNN_MIN_ROWS * 8).reshape(-1, 8)  # not randn: importing must not move the RNG
        w = torch.linspace(2, -1, 5 * 8).reshape(5, 8)
        return op if torch.allclose(op(a, w, None, "none", [], ""), a @ w.t(), atol=1e-5) else None
    except (AttributeError, RuntimeError, TypeError):  # a build without oneDNN, or another signature
        return None


_ONEDNN_MIN_ROWS = 32


@functools.cache
def _onednn():
    # Probed on first use, not at import: running an op at import would fix ATen's CPU code before the numerics mode
    # is chosen (backends/numerics.py).
    return _probe_onednn()


def _mm(a: Tensor, w: Tensor) -> Tensor:
    """a @ w.T for a (M, K) and a contiguous w (N, K)."""
    if numerics.mode() == "reproducible" and a.device.type == "cpu":
        return numerics.mm(a, w.t())
    if _flags.onednn and a.dtype == torch.float32 and a.device.type == "cpu" and a.shape[0] >= _ONEDNN_MIN_ROWS:
        op = _onednn()
        if op is not None:
            return op(a, w, None, "none", [], "")
    return torch.mm(a, w.t())


# ------------------------------------------------------------------------------------------- Function
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
        run = _lstm_forward if cell == "lstm" else _gru_forward
        outputs, saved = run(x, w_ih, bias, w_hh, h0, c0, up0, cum0, gate_w, gate_b, mask, valid, gated, need_grad, kern)
        if need_grad:
            ctx.save_for_backward(*saved)
        return outputs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        run = _lstm_backward if ctx.cell == "lstm" else _gru_backward
        return run(ctx, ctx.saved_tensors, grads) + (None,) * 5


def _or_none(t: Tensor, present: bool) -> Tensor | None:
    return t if present else None


def _per_step(buf: Tensor, blocks: int) -> list:
    """Per-step views of ``blocks`` equal column blocks of a (T, B, blocks·n) buffer: [block][t] -> (B, n),
    made once per call (slicing inside the time loop costs a dispatch per block and step)."""
    n = buf.shape[2] // blocks
    return [buf[:, :, k * n : (k + 1) * n].unbind(0) for k in range(blocks)]


def _input_buffer(x: Tensor, h0: Tensor, new) -> Tensor:
    """(T, B, I + 1 + H): [x_t, 1, h_{t-1}] for every step; the h part is filled during the loop."""
    steps, batch, inp = x.shape
    xh = new(steps, batch, inp + 1 + h0.shape[1])
    xh[:, :, :inp] = x
    xh[:, :, inp] = 1.0
    xh[0, :, inp + 1 :] = h0
    return xh


# ------------------------------------------------------------------------------------------- ũ logic
def _round(u_tilde: Tensor, out: Tensor, t: int) -> Tensor:
    """The forward value of u_t = round_STE(ũ_t) (the backward pass uses du/dũ = 1) in the Python steps. A
    module-level seam so that the gradient check can substitute a relaxed rounding whose exact derivative is the
    STE's; the C kernels round on their own, so that check runs under ``flags(native=False)``."""
    return torch.round(u_tilde, out=out)


def kernels_for(x: Tensor, hidden: int):
    """The C step kernels (``backends.native``) for this input and state size, or None: the Python steps."""
    if not _flags.native or x.device.type != "cpu" or hidden > native.MAX_HIDDEN:
        return None
    return native.kernels(x.dtype, numerics.mode())


class _GateForward:
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

    def saved(self):
        return [self.ups, self.cums, self.ut, self.us, self.dl]


class _GateBackward:
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


def _native_gate_forward(kern, gate: _GateForward, mask, valid, gate_w, gate_b):
    """The C kernels' view of the forward gate (a native gate_fwd struct)."""
    tensors = dict(mask=mask, valid=valid, w=gate_w, bias=gate_b, ups=gate.ups, cums=gate.cums, ut=gate.ut,
                   us=gate.us, dl=gate.dl)
    return native.make_struct(kern.gate_fwd, batch=gate.ut.shape[1],
                              **{k: None if v is None else v.contiguous() for k, v in tensors.items()})


class _NativeBackwardGate:
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


def _input_grads(ctx, blocks, w_cat, inp):
    """Gradients of x, w_ih, bias and w_hh, after the loop.

    ``blocks``: (dgates (T, B, n), the rows of ``w_cat`` they belong to, their matmul input (T, B, K))
    triples, each dgates buffer contiguous (oneDNN is slow on column slices); ``w_cat`` = the unscaled
    [w_ih, b, w_hh].
    """
    steps, batch = blocks[0][0].shape[:2]
    need = ctx.needs_input_grad
    flat = [(dg.view(steps * batch, -1), rows, buf.view(steps * batch, -1)) for dg, rows, buf in blocks]
    dx = dw_ih = db = dw_hh = None
    if need[1] or need[2] or need[3]:
        dw = w_cat.new_empty(w_cat.shape)
        for dg, rows, buf in flat:  # dWᵀ = bufᵀ @ dgates: the faster orientation for this long reduction
            dw[rows] = _mm(buf.t(), dg.t()).t()
        dw_ih, db, dw_hh = dw[:, :inp], dw[:, inp], dw[:, inp + 1 :]
    if need[0]:
        dx = sum(numerics.matmul(dg, w_cat[rows, :inp]) for dg, rows, _ in flat).view(steps, batch, inp)
    return dx, dw_ih if need[1] else None, db if need[2] else None, dw_hh if need[3] else None


def _gate_weight_grad(dz_all: Tensor, gate_in: Tensor) -> Tensor:
    """dL/dw of the update gate: Σ_t,b dz · s, s = c̃ (LSTM) or h̃ (GRU)."""
    steps, batch = dz_all.shape[:2]
    return numerics.matmul(dz_all.view(1, steps * batch), gate_in.reshape(steps * batch, -1))


# ------------------------------------------------------------------------------------------------ LSTM
def _lstm_forward(x, w_ih, bias, w_hh, h0, c0, up0, cum0, gate_w, gate_b, mask, valid, gated, need_grad, kern):
    steps, batch, inp = x.shape
    hs = w_hh.shape[1]
    g = 4 * hs
    new = lambda *shape: _empty(x, *shape)  # noqa: E731
    w_cat = torch.cat([w_ih, bias.unsqueeze(1), w_hh], 1)  # (4H, I + 1 + H), rows i, j, f, o
    w_cat[hs : 2 * hs] *= 2.0  # tanh(j) = 2σ(2j) − 1: one sigmoid over all four gates
    xh = _input_buffer(x, h0, new)
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
    gate = _GateForward(x, steps, batch, up0, cum0, mask, valid, kern) if gated else None
    if kern is not None:
        c_init = c0 if c0.stride(1) == 1 else c0.contiguous()
        args = kern.lstm_forward.args(
            T=steps, B=batch, H=hs, pre=None, pre_s=0, acts=acts, c0=c_init, c0_s=c_init.stride(0), cs=cs,
            tanh_c=tanh_c, out=out, xh=xh, xrow=xh.shape[2], h_col=inp + 1,
            mask=None if mask is None else mask.contiguous(),
            gate=_native_gate_forward(kern, gate, mask, valid, gate_w, gate_b) if gated else None,
        )  # fmt: skip
        xh_t = xh.unbind(0)
        for t in range(steps):
            pre = _mm(xh_t[t], w_cat)
            args.t, args.pre, args.pre_s = t, pre.data_ptr(), pre.stride(0)
            kern.lstm_forward(args)
    else:
        _lstm_forward_python(x, w_cat, xh, acts, cand_c, tanh_c, out, cs, cand_h, c0, mask, gate, gate_w, gate_b, masked)

    outputs = (out, out[-1].clone(), cs[-1].clone())
    if gated:
        outputs += (gate.us, gate.ups[-1].clone(), gate.cums[-1].clone())
    if not need_grad:
        return outputs, ()
    empty = x.new_empty(0)
    saved = [w_cat, xh, c0, acts, tanh_c, cs] + [empty if t is None else t for t in (mask, valid)]
    if gated:
        saved += [gate_w] + ([empty, empty] if kern is not None else [cand_c, cand_h]) + gate.saved()
    return outputs, saved


def _lstm_forward_python(x, w_cat, xh, acts, cand_c, tanh_c, out, cs, cand_h, c0, mask, gate, gate_w, gate_b, masked):
    """The time loop of _lstm_forward as tensor ops (no C kernels)."""
    steps, inp = x.shape[0], x.shape[2]
    gated = gate is not None
    cand_h_t = cand_h.unbind(0)
    xh_t, xh_prev_h = xh.unbind(0), xh[:, :, inp + 1 :].unbind(0)
    acts_t, cand_t, tanh_t, out_t, cs_t = (b.unbind(0) for b in (acts, cand_c, tanh_c, out, cs))
    si_t, tj_t, sf_t, so_t = _per_step(acts, 4)
    mask_t = None if mask is None else mask.unbind(0)
    gw_t = gate_w.t() if gated else None
    h, c = xh_prev_h[0], c0
    for t in range(steps):
        torch.sigmoid(_mm(xh_t[t], w_cat), out=acts_t[t])
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
            if gated:
                u = gate.update(t)
                torch.addmm(gate_b, ct, gw_t, out=gate.dl_c[t]).sigmoid_()
            else:
                u = mask_t[t]
            h = torch.lerp(h, cand_h_t[t], u, out=out_t[t])
            c = torch.lerp(c, ct, u, out=cs_t[t])
            if gated:
                gate.advance(t, u)
        if t + 1 < steps:
            xh_prev_h[t + 1].copy_(h)



def _lstm_backward(ctx, saved, grads):
    w_cat, xh, acts = saved[0], saved[1], saved[3]
    gated = ctx.gated
    hs = acts.shape[2] // 4
    inp = xh.shape[2] - 1 - hs
    w_cat = w_cat.clone()
    w_cat[hs : 2 * hs] *= 0.5  # unscaled: dgates are taken w.r.t. the true pre-activations
    w_hh_t = w_cat[:, inp + 1 :].t().contiguous()  # dh = dgates @ w_hh = _mm(dgates, w_hh_t)

    mask, valid = _or_none(saved[6], ctx.has_mask), _or_none(saved[7], ctx.has_valid)
    run = _lstm_backward_python if ctx.kern is None else functools.partial(_lstm_backward_native, ctx.kern)
    dgates, dh, dc, dz_all, dgw, gate_grads = run(saved, grads, mask, valid, gated, w_hh_t)
    dx, dw_ih, db, dw_hh = _input_grads(ctx, [(dgates, slice(None), xh)], w_cat, inp)
    need = ctx.needs_input_grad
    dh0 = dh.clone() if need[4] else None
    dc0 = dc.clone() if need[5] else None
    dup0, dcum0 = gate_grads
    dgb = dz_all.sum((0, 1)) if gated and need[9] else None
    return dx, dw_ih, db, dw_hh, dh0, dc0, dup0 if need[6] else None, dcum0 if need[7] else None, dgw, dgb


def _lstm_backward_python(saved, grads, mask, valid, gated, w_hh_t):
    """The reverse time loop of _lstm_backward as tensor ops; returns dgates, dh_0, dc_0, dz and the gate's
    input gradients."""
    xh, c0, acts, tanh_c, cs = saved[1:6]
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
    dgates = _empty(acts, steps, batch, g)
    dcn = acts.new_empty(batch, hs)
    tmp = acts.new_empty(batch, hs)
    ones = acts.new_ones(batch, hs)
    tanh_t, cs_t, dg_t = (b.unbind(0) for b in (tanh_c, cs, dgates))
    si_t, tj_t, sf_t, so_t = _per_step(acts, 4)
    di_t, dj_t, df_t, do_t = _per_step(dgates, 4)
    acts_t = acts.unbind(0)
    dout_t = None if dout is None else dout.unbind(0)
    if gated:
        gate_w, cand_c, cand_h = saved[8:11]
        gate = _GateBackward(saved[11:], mask, valid, grads[3:], batch, acts)
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
                torch.add(dout_t[t - 1], _mm(dg, w_hh_t), out=dh)
            else:
                dh.copy_(_mm(dg, w_hh_t))
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
            dh.add_(_mm(dg, w_hh_t))
    if not gated:
        return dgates, dh, dc, None, None, (None, None)
    return dgates, dh, dc, gate.dz_all, _gate_weight_grad(gate.dz_all, cand_c), gate.input_grads()


def _lstm_backward_native(kern, saved, grads, mask, valid, gated, w_hh_t):
    """_lstm_backward_python with one C kernel call per step (plus the dh matmul)."""
    xh, c0, acts, tanh_c, cs = saved[1:6]
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
    dgates = _empty(acts, steps, batch, g)
    c_init = c0 if c0.stride(1) == 1 else c0.contiguous()
    gate = _NativeBackwardGate(kern, saved[11:] if gated else None, saved[8] if gated else None, mask, valid,
                               grads[3:])
    args = kern.lstm_backward.args(
        T=steps, B=batch, H=hs, acts=acts, tanh_c=tanh_c, cs=cs, c0=c_init, c0_s=c_init.stride(0), xh=xh,
        xrow=xh.shape[2], h_col=inp + 1, dh=dh, dc=dc, dh_mm=None, dout=dout, dg=dgates, u=gate.u,
        gate_w=gate.gate_w, dgw_rows=gate.dgw_rows, gate=gate.struct,
    )  # fmt: skip
    dg_t = dgates.unbind(0)
    pending = None  # dgates_{t+1} @ W_hh, added to dh by the next kernel call
    for t in range(steps - 1, -1, -1):
        args.t, args.dh_mm = t, None if pending is None else pending.data_ptr()
        kern.lstm_backward(args)
        pending = _mm(dg_t[t], w_hh_t)
    dh.add_(pending)
    return (dgates, dh, dc, *gate.results())


# ------------------------------------------------------------------------------------------------- GRU
def _gru_forward(x, w_ih, bias, w_hh, h0, c0, up0, cum0, gate_w, gate_b, mask, valid, gated, need_grad, kern):
    steps, batch, inp = x.shape
    hs = w_hh.shape[1]
    two = 2 * hs
    new = lambda *shape: _empty(x, *shape)  # noqa: E731
    w_cat = torch.cat([w_ih, bias.unsqueeze(1), w_hh], 1)  # (3H, I + 1 + H), rows r, z, n
    w_rz = w_cat[:two]
    w_n = w_cat[two:] * 2.0  # tanh(n) = 2σ(2n) − 1
    xh = _input_buffer(x, h0, new)  # [x_t, 1, h_{t-1}]
    xrh = new(steps, batch, inp + 1 + hs)  # [x_t, 1, r_t ⊙ h_{t-1}]: the candidate's matmul input
    xrh[:, :, : inp + 1] = xh[:, :, : inp + 1]
    rz = new(steps, batch, two)  # σ(r), σ(z)
    cand = new(steps, batch, hs)  # tanh(n)
    out = new(steps, batch, hs)
    masked = gated or mask is not None
    # h̃_t: the Python backward pass needs h̃_t − h_{t−1} (the C kernels recompute it)
    store_cand_h = gated and need_grad and kern is None
    cand_h = new(steps, batch, hs) if store_cand_h else x.new_empty(1, batch, hs).expand(steps, -1, -1)
    gate = _GateForward(x, steps, batch, up0, cum0, mask, valid, kern) if gated else None
    if kern is None:
        _gru_forward_python(x, w_rz, w_n, xh, xrh, rz, cand, out, cand_h, mask, gate, gate_w, gate_b, masked)
    else:
        args = kern.gru_forward.args(
            T=steps, B=batch, H=hs, pre=None, pre_s=0, rz=rz, cand=cand, out=out, xh=xh, xrh=xrh,
            xrow=xh.shape[2], h_col=inp + 1, mask=None if mask is None else mask.contiguous(),
            gate=_native_gate_forward(kern, gate, mask, valid, gate_w, gate_b) if gated else None,
        )  # fmt: skip
        xh_t, xrh_t = xh.unbind(0), xrh.unbind(0)
        for t in range(steps):
            pre = _mm(xh_t[t], w_rz)
            args.t, args.pre, args.pre_s = t, pre.data_ptr(), pre.stride(0)
            kern.gru_gates(args)  # σ(r), σ(z), and r ⊙ h_{t-1} into xrh for the candidate's matmul
            pre = _mm(xrh_t[t], w_n)
            args.pre, args.pre_s = pre.data_ptr(), pre.stride(0)
            kern.gru_forward(args)

    outputs = (out, out[-1].clone())
    if gated:
        outputs += (gate.us, gate.ups[-1].clone(), gate.cums[-1].clone())
    if not need_grad:
        return outputs, ()
    empty = x.new_empty(0)
    saved = [w_cat, xh, xrh, rz, cand] + [empty if t is None else t for t in (mask, valid)]
    if gated:
        saved += [gate_w, empty if kern is not None else cand_h] + gate.saved()
    return outputs, saved


def _gru_forward_python(x, w_rz, w_n, xh, xrh, rz, cand, out, cand_h, mask, gate, gate_w, gate_b, masked):
    """The time loop of _gru_forward as tensor ops (no C kernels)."""
    steps, inp = x.shape[0], x.shape[2]
    gated = gate is not None
    cand_h_t = cand_h.unbind(0)
    xh_t, xh_prev_h = xh.unbind(0), xh[:, :, inp + 1 :].unbind(0)
    xrh_t, xrh_h = xrh.unbind(0), xrh[:, :, inp + 1 :].unbind(0)
    rz_t, cand_t, out_t = rz.unbind(0), cand.unbind(0), out.unbind(0)
    r_t, z_t = _per_step(rz, 2)
    mask_t = None if mask is None else mask.unbind(0)
    gw_t = gate_w.t() if gated else None
    h = xh_prev_h[0]
    for t in range(steps):
        torch.sigmoid(_mm(xh_t[t], w_rz), out=rz_t[t])
        r, z = r_t[t], z_t[t]
        torch.mul(r, h, out=xrh_h[t])
        n = torch.sigmoid(_mm(xrh_t[t], w_n), out=cand_t[t]).mul_(2.0).sub_(1.0)
        if not masked:
            h = torch.lerp(n, h, z, out=out_t[t])
        else:
            h_cand = torch.lerp(n, h, z, out=cand_h_t[t])
            if gated:
                u = gate.update(t)
                torch.addmm(gate_b, h_cand, gw_t, out=gate.dl_c[t]).sigmoid_()
            else:
                u = mask_t[t]
            h = torch.lerp(h, h_cand, u, out=out_t[t])
            if gated:
                gate.advance(t, u)
        if t + 1 < steps:
            xh_prev_h[t + 1].copy_(h)



def _gru_backward(ctx, saved, grads):
    w_cat, xh, xrh, cand = saved[0], saved[1], saved[2], saved[4]
    gated = ctx.gated
    mask, valid = _or_none(saved[5], ctx.has_mask), _or_none(saved[6], ctx.has_valid)
    hs = cand.shape[2]
    two = 2 * hs
    inp = xh.shape[2] - 1 - hs
    w_rz_t, w_n_t = w_cat[:two, inp + 1 :].t().contiguous(), w_cat[two:, inp + 1 :].t().contiguous()
    run = _gru_backward_python if ctx.kern is None else functools.partial(_gru_backward_native, ctx.kern)
    dg_rz, dg_n, dh, dz_all, dgw, gate_grads = run(saved, grads, mask, valid, gated, w_rz_t, w_n_t)
    blocks = [(dg_rz, slice(0, two), xh), (dg_n, slice(two, 3 * hs), xrh)]
    dx, dw_ih, db, dw_hh = _input_grads(ctx, blocks, w_cat, inp)
    need = ctx.needs_input_grad
    dh0 = dh.clone() if need[4] else None
    dup0, dcum0 = gate_grads
    dgb = dz_all.sum((0, 1)) if gated and need[9] else None
    return dx, dw_ih, db, dw_hh, dh0, None, dup0 if need[6] else None, dcum0 if need[7] else None, dgw, dgb




def _gru_backward_python(saved, grads, mask, valid, gated, w_rz_t, w_n_t):
    """The reverse time loop of _gru_backward as tensor ops; returns dgates (r, z | n), dh_0, dz and the
    gate's input gradients."""
    xh, rz, cand = saved[1], saved[3], saved[4]
    steps, batch, hs = cand.shape
    two = 2 * hs
    inp = xh.shape[2] - 1 - hs
    dout, dh_t = grads[:2]
    dh = cand.new_zeros(batch, hs)  # dL/dh_t, carried backwards
    if dh_t is not None:
        dh.copy_(dh_t)
    dg_rz, dg_n = _empty(cand, steps, batch, two), _empty(cand, steps, batch, hs)  # rows r, z | n
    dhn = cand.new_empty(batch, hs)
    tmp = cand.new_empty(batch, hs)
    ones = cand.new_ones(batch, hs)
    rz_t, cand_t, h_prev_t = rz.unbind(0), cand.unbind(0), xh[:, :, inp + 1 :].unbind(0)
    dg_rz_t, dg_n_t = dg_rz.unbind(0), dg_n.unbind(0)
    r_t, z_t = _per_step(rz, 2)
    dr_t, dz_t = _per_step(dg_rz, 2)
    dout_t = None if dout is None else dout.unbind(0)
    if gated:
        gate_w, cand_h = saved[7:9]
        gate = _GateBackward(saved[9:], mask, valid, grads[2:], batch, cand)
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
        drh = _mm(d_n, w_n_t)
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
        dh.addcmul_(r, drh).add_(_mm(drz, w_rz_t))
    if not gated:
        return dg_rz, dg_n, dh, None, None, (None, None)
    return dg_rz, dg_n, dh, gate.dz_all, _gate_weight_grad(gate.dz_all, cand_h), gate.input_grads()


def _gru_backward_native(kern, saved, grads, mask, valid, gated, w_rz_t, w_n_t):
    """_gru_backward_python with two C kernel calls per step (around the d(r ⊙ h) matmul)."""
    xh, rz, cand = saved[1], saved[3], saved[4]
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
    dg_rz, dg_n = _empty(cand, steps, batch, two), _empty(cand, steps, batch, hs)  # rows r, z | n
    gate = _NativeBackwardGate(kern, saved[9:] if gated else None, saved[7] if gated else None, mask, valid,
                               grads[2:])
    args = kern.gru_backward1.args(
        T=steps, B=batch, H=hs, rz=rz, cand=cand, xh=xh, xrow=xh.shape[2], h_col=inp + 1, dh=dh, dh_mm=None,
        drh=None, dout=dout, dg_rz=dg_rz, dg_n=dg_n, u=gate.u, gate_w=gate.gate_w, dgw_rows=gate.dgw_rows,
        gate=gate.struct,
    )  # fmt: skip
    dg_rz_t, dg_n_t = dg_rz.unbind(0), dg_n.unbind(0)
    pending = None  # [dr, dz]_{t+1} @ W_rz, added to dh by the next kernel call
    for t in range(steps - 1, -1, -1):
        args.t, args.dh_mm = t, None if pending is None else pending.data_ptr()
        kern.gru_backward1(args)
        drh = _mm(dg_n_t[t], w_n_t)
        args.drh = drh.data_ptr()
        kern.gru_backward2(args)  # the d(r ⊙ h_{t-1}) terms
        pending = _mm(dg_rz_t[t], w_rz_t)
    dh.add_(pending)
    return (dg_rz, dg_n, dh, *gate.results())


# --------------------------------------------------------------------------------------------- wrapper
def forward(rnn, x: Tensor, state: SkipState, valid: Tensor | None, keep: Tensor | None):
    """A one-layer ``SkipRNN``'s call through :class:`FusedSkipRNN` (the reference backend's results, faster)."""
    cell = rnn.cells[0]
    # The effective input bias, by the cell's own code (LSTM: bias + forget offset): project_input(0).
    bias = cell.project_input(x.new_zeros(1, rnn.input_size))[0]
    mask = keep if valid is None else (valid if keep is None else keep * valid)
    kind = "lstm" if rnn.has_cell_state else "gru"
    h0 = state.h[0]
    c0 = state.c[0] if rnn.has_cell_state else None
    gated = rnn.gated
    gate_w = rnn.update_gate.weight if gated else None
    gate_b = rnn.update_gate.bias if gated else None
    up0, cum0 = state.update_prob, state.cum_update_prob
    inputs = (x, cell.weight_ih, bias, cell.weight_hh, h0, c0, up0, cum0, gate_w, gate_b)
    need_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    outs = FusedSkipRNN.apply(*inputs, mask, valid, kind, gated, need_grad)
    output, h_t = outs[0], outs[1]
    rest = outs[2:]
    c_t = None
    if rnn.has_cell_state:
        c_t, rest = rest[0], rest[1:]
    if gated:
        updates, up, cum = rest
    else:
        updates = x.new_ones(x.shape[:2]) if mask is None else mask.squeeze(2)
        up, cum = state.update_prob, state.cum_update_prob
    final = SkipState(h_t.unsqueeze(0), None if c_t is None else c_t.unsqueeze(0), up, cum)
    return output, updates, final
