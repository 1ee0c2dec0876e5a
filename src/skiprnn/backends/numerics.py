"""The numerics mode: ``fast`` (each CPU's best code) or ``reproducible`` (the same bits on every x86-64 CPU with AVX2
and FMA, at any thread count).

What makes CPU arithmetic differ between machines, and what ``reproducible`` does about each:

- Matrix products (MKL's sgemm, oneDNN's kernels) pick their code by CPU and split reductions by thread count. Here
  every matmul of the model (the recurrence, its gradients and the read-out) goes through skiprnn's own kernel
  (``csrc/gemm.h``): one fused multiply-add chain per element in a fixed order. MKL and oneDNN are kept out of the
  path; their own switches are pinned too (``MKL_CBWR=AVX2,STRICT``, ``ONEDNN_MAX_CPU_ISA=AVX2``, oneDNN off), for
  any torch op that still reaches them.
- ATen's vectorised ops (elementwise, reductions, the loss, Adam) dispatch by CPU: pinned to ``avx2``.
- ATen splits reductions over its threads: its ops run on one thread. The C kernels take the run's threads, and
  compute each output whole on one thread, so the count does not change a bit.
- The C kernels are built for a fixed ISA level (x86-64-v3) without fast-math or contraction, with an ``exp`` of their
  own (``native.build_flags``), cached apart from the fast build.

The mode is process-wide and must be chosen before torch's first operation (ATen fixes its CPU code then):
skiprnn's entry points do it from the ``numerics`` config key; a library user calls :func:`use` first, or sets
``SKIPRNN_NUMERICS`` before starting Python.
"""
from __future__ import annotations

import ctypes
import os
import platform
import re

import torch
from torch import Tensor

from . import native

MODES = ("fast", "reproducible")
# Read by MKL at its first call, by oneDNN at its first kernel, by ATen at its first dispatch.
PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
_STATE = {"mode": "fast", "threads": 0}


class NumericsError(RuntimeError):
    """The mode cannot be used here (a CPU without AVX2 and FMA, or torch's CPU code already chosen)."""


def mode() -> str:
    return _STATE["mode"]


def _cpu_flags() -> set[str]:
    return set((native.cpuinfo("flags") or "").split())


def _cpu_model() -> str:
    return native.cpuinfo("model name") or platform.processor() or platform.machine()


def use(numerics: str, threads: int = 0) -> None:
    """Switch this process to ``numerics`` (``fast`` or ``reproducible``) with ``threads`` threads (0: torch's
    default). Raises NumericsError where the reproducible mode cannot hold."""
    if numerics not in MODES:
        raise NumericsError(f"numerics={numerics} is not a mode: use one of {', '.join(MODES)}")
    wanted = threads or _STATE["threads"] or torch.get_num_threads()
    if numerics == "fast":  # after reproducible, ATen keeps its AVX2 code: it cannot change within a process
        if _STATE["mode"] == "reproducible":
            torch.backends.mkldnn.set_flags(True)
        torch.set_num_threads(wanted)
        _STATE.update(mode="fast", threads=wanted)
        return
    if platform.machine() not in ("x86_64", "AMD64") or not {"avx2", "fma"} <= _cpu_flags():
        raise NumericsError(f"numerics=reproducible needs an x86-64 CPU with AVX2 and FMA; this one ({_cpu_model()}) "
                            "lacks them. Run with numerics=fast (its results hold for this machine only)")
    os.environ.update(PINS)
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        raise NumericsError(
            f"numerics=reproducible must be chosen before torch's first operation, but torch already runs its {capability} "
            "code in this process. Set SKIPRNN_NUMERICS=reproducible before starting Python, or call "
            "skiprnn.backends.numerics.use('reproducible') before any tensor operation")
    torch.backends.mkldnn.set_flags(False)
    lib = native.load("reproducible")
    torch.set_num_threads(1)  # ATen's reductions split by thread count
    lib.set_threads(wanted)  # the C kernels' split does not change their results
    _STATE.update(mode="reproducible", threads=wanted)


def use_from_environment() -> None:
    """``SKIPRNN_NUMERICS=reproducible`` (or ``fast``), read when skiprnn is imported."""
    wanted = os.environ.get("SKIPRNN_NUMERICS")
    if wanted and wanted not in MODES:
        raise NumericsError(f"SKIPRNN_NUMERICS={wanted} is not a mode: set it to one of {', '.join(MODES)}, or unset it")
    if wanted:
        use(wanted)


def threads() -> int:
    return _STATE["threads"] or torch.get_num_threads()


def _library_versions() -> dict:
    shown = torch.__config__.show()
    blas = re.search(r"Math Kernel Library Version ([^\s]+)", shown)
    onednn = re.search(r"MKL-DNN v([\d.]+)", shown)
    return {"blas": f"MKL {blas.group(1)}" if blas else (re.search(r"BLAS_INFO=(\w+)", shown) or [None, "unknown"])[1],
            "onednn": onednn.group(1) if onednn else "none"}


def environment() -> dict:
    """Where and how this process computes: what every run records (metrics.json, W&B, checkpoints)."""
    repro = mode() == "reproducible"
    return {
        "numerics": mode(),
        "cpu": _cpu_model(),
        "isa": {"aten": torch.backends.cpu.get_cpu_capability().lower(),
                "kernels": os.environ.get("SKIPRNN_REPRODUCIBLE_ARCH", native.REPRODUCIBLE_ARCH) if repro else "native"},
        "torch": torch.__version__,
        **_library_versions(),
        "threads": {"torch": torch.get_num_threads(), "kernels": threads()},
        "kernel_flags": " ".join(native.build_flags(mode())),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# ------------------------------------------------------------------------------------------- matmuls
def mm(a: Tensor, b: Tensor, out: Tensor | None = None, accumulate: bool = False) -> Tensor:
    """a (M, K) @ b (K, N), any strides, by skiprnn's fixed-order kernel: into ``out`` (M, N, unit last stride)
    when given (``accumulate``: added to its values)."""
    kern = native.kernels(a.dtype, "reproducible")
    if kern is None or a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or b.dtype != a.dtype:
        raise ValueError(f"mm: (M, K) and (K, N) CPU tensors of float32 or float64, not {tuple(a.shape)} {a.dtype} "
                         f"and {tuple(b.shape)} {b.dtype}")
    if out is None:
        out = a.new_empty(a.shape[0], b.shape[1])
    elif out.shape != (a.shape[0], b.shape[1]) or out.stride(1) != 1 or out.dtype != a.dtype:
        raise ValueError(f"mm: out must be ({a.shape[0]}, {b.shape[1]}) {a.dtype} with unit last stride")
    args = kern.gemm.struct(M=a.shape[0], N=b.shape[1], K=a.shape[1], A=a.data_ptr(), sam=a.stride(0),
                            sak=a.stride(1), B=b.data_ptr(), sbk=b.stride(0), sbn=b.stride(1), C=out.data_ptr(),
                            ldc=out.stride(0), accumulate=int(accumulate))
    kern.gemm.fn(ctypes.byref(args))
    return out


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b for 2-D CPU tensors: :func:`mm` in the reproducible mode, else torch.mm."""
    if mode() == "reproducible" and a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64):
        return mm(a, b)
    return torch.mm(a, b)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        out = bias.expand(x.shape[0], -1).contiguous() if bias is not None else x.new_empty(x.shape[0], weight.shape[0])
        return mm(x, weight.t(), out=out, accumulate=bias is not None)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dy = dy.contiguous()
        dx = mm(dy, weight) if ctx.needs_input_grad[0] else None
        dw = mm(dy.t(), x) if ctx.needs_input_grad[1] else None
        db = mm(dy.new_ones(1, dy.shape[0]), dy)[0] if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``torch.nn.functional.linear``, through :func:`mm` (forward and backward) in the reproducible mode."""
    if mode() != "reproducible" or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return torch.nn.functional.linear(x, weight, bias)
    lead = x.shape[:-1]
    return _Linear.apply(x.reshape(-1, x.shape[-1]), weight, bias).reshape(*lead, weight.shape[0])
