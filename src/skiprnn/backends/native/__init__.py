"""The C step kernels of the fused path (``csrc/steps.c``): built on first use, loaded with ctypes.

One call per time step replaces the ~25 small tensor ops of the Python step in ``backends/fused.py``, whose
dispatch overhead (a few µs each) costs as much as the arithmetic at the paper's sizes. The library is
compiled once per machine and source version with the system C compiler (``cc -O3 -march=native
-ffast-math -fopenmp``; vectorised ``exp`` from glibc's libmvec) into ``$SKIPRNN_CACHE`` (default
``~/.cache/skiprnn``). Without a compiler, or when ``SKIPRNN_NATIVE=0``, :func:`kernels` returns None
and the fused path stays in Python (with a one-time warning when the build failed); both give the same
results to float rounding (``tests/backends/``).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

_SRC = Path(__file__).with_name("csrc")
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fPIC", "-std=c99"]
# The kernels keep a few rows of H reals on the stack (per thread); larger states take the Python steps.
MAX_HIDDEN = 4096
_LOCK = threading.Lock()
_LOADED: dict = {}  # "lib" -> ctypes.CDLL or None (build failed or disabled)

P = ctypes.c_void_p
L = ctypes.c_long


class GateForward(ctypes.Structure):  # gate_fwd in csrc/steps_impl.h, field for field
    _fields_ = [(n, P) for n in ("mask", "valid", "w", "bias", "ups", "cums", "ut", "us", "dl")]
    _fields_ += [("t", L), ("batch", L)]


class GateBackward(ctypes.Structure):  # gate_bwd in csrc/steps_impl.h
    _fields_ = [(n, P) for n in ("ups", "cums", "ut", "us", "dl", "mask", "valid", "dupd", "state", "dz")]
    _fields_ += [("t", L), ("batch", L)]


_SIGNATURES = {
    "lstm_forward_step": [L, L, P, L, P, P, L, P, L, P, P, P, P, P, L, P, P],
    "lstm_backward_step": [L, L, P, P, P, L, P, P, P, P, P, P, P, L, P, P, P],
    "gru_gates_step": [L, L, P, L, P, P, L, P, L],
    "gru_forward_step": [L, L, P, L, P, P, L, P, P, P, L, P, P],
    "gru_backward_step1": [L, L, P, P, P, L, P, P, P, P, P, P, P, P, P],
    "gru_backward_step2": [L, L, P, P, L, P, P, P],
    "skip_sequence": [L, L, L, L, P, P, P, P, P, L, P, P, P, P, P],
}


def _cpu_key() -> str:
    """What ``-march=native`` depends on: a library built on one CPU may not run on another."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.processor()
    return platform.machine() + flags


def _library_path() -> Path:
    digest = hashlib.sha256()
    for f in sorted(_SRC.glob("*.[ch]")):
        digest.update(f.name.encode() + f.read_bytes())
    digest.update(" ".join(_FLAGS).encode() + _cpu_key().encode())
    root = Path(os.environ.get("SKIPRNN_CACHE", "~/.cache/skiprnn")).expanduser()
    return root / f"steps-{digest.hexdigest()[:16]}.so"


def _compile(cc: str, openmp: list, obj: Path, lib: Path) -> None:
    # Compiled with -ffast-math but linked without it: linking with it would switch the whole process
    # to flush-denormals-to-zero when the library loads.
    for cmd in ([cc, *_FLAGS, *openmp, "-c", str(_SRC / "steps.c"), "-o", str(obj)],
                [cc, "-shared", *openmp, str(obj), "-o", str(lib), "-lm"]):  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()}")


def _build(target: Path) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler found (set CC)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        obj, lib = Path(tmp) / "steps.o", Path(tmp) / "steps.so"
        try:
            _compile(cc, ["-fopenmp"], obj, lib)
        except RuntimeError:  # a compiler without OpenMP (e.g. Apple clang): one thread per step
            _compile(cc, [], obj, lib)
        os.replace(lib, target)  # atomic: concurrent builders (parallel sweep jobs) never see half a file


def _load():
    if os.environ.get("SKIPRNN_NATIVE", "1") == "0":
        return None
    try:
        path = _library_path()
        if not path.exists():
            _build(path)
        lib = ctypes.CDLL(str(path))
    except (OSError, RuntimeError) as err:
        warnings.warn(f"skiprnn: the C step kernels are unavailable, using the slower Python steps ({err})", stacklevel=3)
        return None
    for name, args in _SIGNATURES.items():
        for suffix in ("_f32", "_f64"):
            fn = getattr(lib, name + suffix)
            fn.argtypes, fn.restype = args, None
    return lib


class Kernels:
    """The kernels for one dtype, as attributes (``k.lstm_forward_step(...)``)."""

    def __init__(self, lib, suffix: str):
        for name in _SIGNATURES:
            setattr(self, name, getattr(lib, name + suffix))


_BY_DTYPE: dict = {}


def kernels(dtype: torch.dtype) -> Kernels | None:
    """The step kernels for float32 or float64, or None (other dtypes, no compiler, or disabled)."""
    if dtype not in (torch.float32, torch.float64):
        return None
    if "lib" not in _LOADED:
        with _LOCK:
            if "lib" not in _LOADED:
                _LOADED["lib"] = _load()
    lib = _LOADED["lib"]
    if lib is None:
        return None
    if dtype not in _BY_DTYPE:
        _BY_DTYPE[dtype] = Kernels(lib, "_f32" if dtype == torch.float32 else "_f64")
    return _BY_DTYPE[dtype]
