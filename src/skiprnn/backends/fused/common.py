"""What both cells' fused passes share: the matmul, the per-step views, the [x, 1, h] input buffer, the choice of
C kernels, and the gradients computed after the time loop."""
from __future__ import annotations

import functools

import torch
from torch import Tensor

from .. import native, numerics
from ..flags import current as _flags


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


def mm(a: Tensor, w: Tensor) -> Tensor:
    """a @ w.T for a (M, K) and a contiguous w (N, K)."""
    if numerics.mode() == "reproducible" and a.device.type == "cpu":
        return numerics.mm(a, w.t())
    if _flags.onednn and a.dtype == torch.float32 and a.device.type == "cpu" and a.shape[0] >= _ONEDNN_MIN_ROWS:
        op = _onednn()
        if op is not None:
            return op(a, w, None, "none", [], "")
    return torch.mm(a, w.t())



def or_none(t: Tensor, present: bool) -> Tensor | None:
    return t if present else None


def per_step(buf: Tensor, blocks: int) -> list:
    """Per-step views of ``blocks`` equal column blocks of a (T, B, blocks·n) buffer: [block][t] -> (B, n),
    made once per call (slicing inside the time loop costs a dispatch per block and step)."""
    n = buf.shape[2] // blocks
    return [buf[:, :, k * n : (k + 1) * n].unbind(0) for k in range(blocks)]


def input_buffer(x: Tensor, h0: Tensor, new) -> Tensor:
    """(T, B, I + 1 + H): [x_t, 1, h_{t-1}] for every step; the h part is filled during the loop."""
    steps, batch, inp = x.shape
    xh = new(steps, batch, inp + 1 + h0.shape[1])
    xh[:, :, :inp] = x
    xh[:, :, inp] = 1.0
    xh[0, :, inp + 1 :] = h0
    return xh


def kernels_for(x: Tensor, hidden: int):
    """The C step kernels (``backends.native``) for this input and state size, or None: the Python steps."""
    if not _flags.native or x.device.type != "cpu" or hidden > native.MAX_HIDDEN:
        return None
    return native.kernels(x.dtype, numerics.mode())


def input_grads(ctx, blocks, w_cat, inp):
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
        for dg, rows, buf in flat:
            dw[rows] = _weight_grad(dg, buf)
        dw_ih, db, dw_hh = dw[:, :inp], dw[:, inp], dw[:, inp + 1 :]
    if need[0]:
        dx = sum(numerics.matmul(dg, w_cat[rows, :inp]) for dg, rows, _ in flat).view(steps, batch, inp)
    return dx, dw_ih if need[1] else None, db if need[2] else None, dw_hh if need[3] else None


def _weight_grad(dg: Tensor, buf: Tensor) -> Tensor:
    """dgatesᵀ @ buf, the sum over all T·B rows. torch.mm (MKL) reads both transposed operands in place: at the
    adding size on one thread 1.07× (LSTM) and 1.2× (GRU) faster than oneDNN, which copies them."""
    if numerics.mode() == "reproducible" and dg.device.type == "cpu":
        return numerics.mm(buf.t(), dg).t()
    return torch.mm(dg.t(), buf)


def function_grads(ctx, input_grads: tuple, dh: Tensor, dc: Tensor | None, dz_all: Tensor | None,
                   dgw: Tensor | None, gate_grads: tuple) -> tuple:
    """The gradients of FusedSkipRNN's differentiable inputs, in their order (x, w_ih, bias, w_hh, h0, c0, up0, cum0,
    gate_w, gate_b), each None where autograd does not need it: ``input_grads`` from :func:`input_grads`, the
    state's from the time loop."""
    need = ctx.needs_input_grad
    dup0, dcum0 = gate_grads
    return (*input_grads, dh.clone() if need[4] else None, dc.clone() if dc is not None and need[5] else None,
            dup0 if need[6] else None, dcum0 if need[7] else None, dgw,
            dz_all.sum((0, 1)) if ctx.gated and need[9] else None)


def gate_weight_grad(dz_all: Tensor, gate_in: Tensor) -> Tensor:
    """dL/dw of the update gate: Σ_t,b dz · s, s = c̃ (LSTM) or h̃ (GRU)."""
    steps, batch = dz_all.shape[:2]
    return numerics.matmul(dz_all.view(1, steps * batch), gate_in.reshape(steps * batch, -1))

