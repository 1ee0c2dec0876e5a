"""The C step kernels of the fused path (``csrc/steps.c``): built on first use, loaded with ctypes.

One call per pass runs a whole sequence (its per-step products included), in place of the Python steps of
``backends/fused/`` (lstm.py, gru.py): ~25 small tensor ops each, whose dispatch overhead (a few µs each) costs as
much as the arithmetic at the paper's sizes. The library is
compiled once per machine, source version and build with the system C compiler (:func:`build_flags`; the fast
build's vectorised ``exp`` comes from glibc's libmvec) into ``$SKIPRNN_CACHE`` (default
``~/.cache/skiprnn``). Without a compiler, or when ``SKIPRNN_NATIVE=0``, :func:`kernels` returns None
and the fused path stays in Python (with a one-time warning when the build failed); both give the same
results to float rounding (``tests/backends/``).

The boundary is typed: each kernel takes one pointer to its argument struct, declared once in ``csrc/args.h``.
The library exports each struct's layout ("field type; ...") and size; :class:`Kernels` builds the ctypes
structures from them and checks the sizes, :func:`make_struct` needs every field by name, and a kernel refuses
another kernel's struct. A mismatch raises in Python instead of corrupting memory.
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
# The reproducible build's ISA: the same code on every CPU that has it (AVX2 and FMA). SKIPRNN_REPRODUCIBLE_ARCH
# builds it for another level (the tests compare x86-64-v2 with x86-64-v3: the results must not change).
REPRODUCIBLE_ARCH = "x86-64-v3"


def build_flags(numerics: str) -> list[str]:
    """The compiler flags of a build. ``fast``: this CPU's full ISA, floating-point contraction and reassociation.
    ``reproducible``: a fixed ISA level, no fast-math, no contraction (the kernels' fused multiply-adds are
    explicit), and an ``exp`` of the kernels' own instead of glibc's CPU- and width-dependent ones."""
    if numerics == "fast":
        return ["-O3", "-march=native", "-ffast-math", "-fPIC", "-std=c99"]
    arch = os.environ.get("SKIPRNN_REPRODUCIBLE_ARCH", REPRODUCIBLE_ARCH)
    # -fno-trapping-math and -fno-math-errno change no value; they let the compiler vectorise the clamps of exp.
    return ["-O3", f"-march={arch}", "-ffp-contract=off", "-fno-fast-math", "-fno-trapping-math", "-fno-math-errno",
            "-DSKIPRNN_REPRODUCIBLE", "-fPIC", "-std=c99"]


# The kernels keep a few rows of H reals on the stack (per thread); larger states take the Python steps.
MAX_HIDDEN = 4096
_LOCK = threading.Lock()
_LOADED: dict = {}  # build ("fast" | "reproducible") -> ctypes.CDLL or None (build failed or disabled)

# The exported kernels. Each takes one pointer to its argument struct, whose name (``<kernel>_takes``), layout
# and size the library exports: csrc/args.h declares every struct once, and Python builds them from it.
KERNELS = ("lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
           "skip_sequence", "skip_batch", "gemm")
GATE_STRUCTS = ("gate_fwd", "gate_bwd")  # what the gated kernels' `gate` field points to


def cpuinfo(field: str) -> str | None:
    """The value of a /proc/cpuinfo field for the first CPU ("flags", "model name"), or None where there is none."""
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.split(":", 1)[0].strip() == field)
    except (OSError, StopIteration):
        return None
    return line.split(":", 1)[1].strip()


def _cpu_key() -> str:
    """What ``-march=native`` depends on: a library built on one CPU may not run on another."""
    return platform.machine() + (cpuinfo("flags") or platform.processor())


def _library_path(flags: list[str]) -> Path:
    digest = hashlib.sha256()
    for f in sorted(_SRC.glob("*.[ch]")):
        digest.update(f.name.encode() + f.read_bytes())
    digest.update(" ".join(flags).encode() + _cpu_key().encode())
    root = Path(os.environ.get("SKIPRNN_CACHE", "~/.cache/skiprnn")).expanduser()
    return root / f"steps-{digest.hexdigest()[:16]}.so"


def _compile(cc: str, flags: list, openmp: list, obj: Path, lib: Path) -> None:
    # Compiled with -ffast-math but linked without it: linking with it would switch the whole process
    # to flush-denormals-to-zero when the library loads.
    for cmd in ([cc, *flags, *openmp, "-c", str(_SRC / "steps.c"), "-o", str(obj)],
                [cc, "-shared", *openmp, str(obj), "-o", str(lib), "-lm"]):  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()}")


def _build(target: Path, flags: list[str]) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler found (set CC)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        obj, lib = Path(tmp) / "steps.o", Path(tmp) / "steps.so"
        try:
            _compile(cc, flags, ["-fopenmp"], obj, lib)
        except RuntimeError:  # a compiler without OpenMP (e.g. Apple clang): one thread per step
            _compile(cc, flags, [], obj, lib)
        os.replace(lib, target)  # atomic: concurrent builders (parallel sweep jobs) never see half a file


def load(numerics: str):
    """The library of one build (``fast`` or ``reproducible``), built on first use; None when the build failed or
    ``SKIPRNN_NATIVE=0`` (a warning says why). The reproducible build raises instead: its runs need the kernels."""
    if numerics in _LOADED:
        return _LOADED[numerics]
    with _LOCK:
        if numerics not in _LOADED:
            _LOADED[numerics] = _load(numerics)
    return _LOADED[numerics]


def _load(numerics: str):
    if numerics == "fast" and os.environ.get("SKIPRNN_NATIVE", "1") == "0":
        return None
    flags = build_flags(numerics)
    try:
        path = _library_path(flags)
        if not path.exists():
            _build(path, flags)
        lib = ctypes.CDLL(str(path))
    except (OSError, RuntimeError) as err:
        if numerics == "reproducible":
            raise RuntimeError(f"numerics=reproducible needs skiprnn's C kernels, which did not build ({err}). "
                               "Install a C compiler (gcc) or set CC, or run with numerics=fast") from err
        warnings.warn(f"skiprnn: the C step kernels are unavailable, using the slower Python steps ({err})", stacklevel=3)
        return None
    lib.set_threads.argtypes, lib.set_threads.restype = [ctypes.c_long], None
    return lib


def _export(lib, name: str, restype):
    fn = getattr(lib, name)
    fn.argtypes, fn.restype = [], restype
    return fn


def _struct_class(lib, name: str, dtype: torch.dtype) -> type[ctypes.Structure]:
    """The ctypes structure of the C struct ``name``, from the layout the library exports ("field type; ...").

    Its instances take only its fields (``__slots__``): a misspelt field raises instead of being ignored. Raises
    RuntimeError when its size differs from C's in either precision (a library older than this module)."""
    layout = _export(lib, f"{name}_layout_f32", ctypes.c_char_p)().decode()
    fields = []
    for entry in filter(None, (e.strip() for e in layout.split(";"))):
        field, ctype = entry.split(" ", 1)
        fields.append((field, ctypes.c_void_p if "*" in ctype else ctypes.c_long))
        if "*" not in ctype and ctype != "long":
            raise RuntimeError(f"{name}.{field}: a field of C type {ctype!r} (only pointers and long are mapped)")
    cls = type(name, (ctypes.Structure,), {"_fields_": fields, "__slots__": ("_keep",), "dtype": dtype})
    for suffix in ("_f32", "_f64"):
        size = _export(lib, f"{name}_size{suffix}", ctypes.c_long)()
        if size != ctypes.sizeof(cls):
            raise RuntimeError(f"the C struct {name}{suffix} has {size} bytes, its ctypes mirror {ctypes.sizeof(cls)}")
    return cls


def _address(value):
    """A field's value: a tensor's or structure's address, or the number itself (None is NULL)."""
    if isinstance(value, torch.Tensor):
        return value.data_ptr()
    if isinstance(value, ctypes.Structure):
        return ctypes.addressof(value)
    return value


def make_struct(struct: type[ctypes.Structure], **fields) -> ctypes.Structure:
    """An instance of ``struct`` with every field given by name: a pointer field takes a CPU tensor of the
    struct's dtype with unit stride in its last dimension, a structure, or None (NULL); a ``long`` field an int.

    It keeps the tensors and structures it points to alive: the C side holds raw addresses only."""
    kinds = dict(struct._fields_)
    missing = [f for f in kinds if f not in fields]
    unknown = [f for f in fields if f not in kinds]
    if missing or unknown:
        raise TypeError(f"{struct.__name__}: missing fields {missing}, unknown fields {unknown}")
    for name, value in fields.items():
        if kinds[name] is ctypes.c_long:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(value, torch.Tensor):
            ok = value.dtype == struct.dtype and value.device.type == "cpu" and (value.dim() == 0 or value.stride(-1) == 1)
        else:
            ok = value is None or isinstance(value, ctypes.Structure)
        if not ok:
            wanted = ("an int" if kinds[name] is ctypes.c_long
                      else f"a CPU {struct.dtype} tensor with unit last stride, a structure or None")
            got = (f"a {value.dtype} tensor on {value.device}, strides {value.stride()}"
                   if isinstance(value, torch.Tensor) else repr(value))
            raise TypeError(f"{struct.__name__}.{name} takes {wanted}, not {got}")
    out = struct(**{k: _address(v) for k, v in fields.items()})
    out._keep = [v for v in fields.values() if isinstance(v, (torch.Tensor, ctypes.Structure))]
    return out


class Kernel:
    """One C kernel for one dtype: ``args = kernel.args(field=..., ...)`` makes its argument struct
    (:func:`make_struct`) and ``kernel(args)`` runs it; ``kernel.run(**fields)`` does both for a kernel that
    allocates its own work buffers (a ``status`` field), raising MemoryError where they could not be allocated."""

    __slots__ = ("fn", "struct")

    def __init__(self, fn, struct: type[ctypes.Structure]):
        self.fn, self.struct = fn, struct
        fn.argtypes, fn.restype = [ctypes.POINTER(struct)], None  # any other struct raises ctypes.ArgumentError

    def args(self, **fields) -> ctypes.Structure:
        return make_struct(self.struct, **fields)

    def __call__(self, args: ctypes.Structure) -> None:
        self.fn(args)

    def run(self, **fields) -> None:
        status = torch.zeros(1, dtype=self.struct.dtype)
        self(self.args(**fields, status=status))
        if status.item():
            raise MemoryError(f"skiprnn's C kernel {self.fn.__name__} could not allocate its work buffers "
                              f"({fields.get('B')} rows): lower the batch size")


class Kernels:
    """The kernels for one dtype, as attributes (``k.lstm_forward``), and the gate structs they point to
    (``k.gate_fwd``, ``k.gate_bwd``: ctypes structure classes, filled with :func:`make_struct`)."""

    def __init__(self, lib, suffix: str):
        dtype = torch.float32 if suffix == "_f32" else torch.float64
        structs = {name: _struct_class(lib, name, dtype) for name in GATE_STRUCTS}
        for name in KERNELS:
            takes = _export(lib, f"{name}_takes{suffix}", ctypes.c_char_p)().decode()
            if takes not in structs:
                structs[takes] = _struct_class(lib, takes, dtype)
            setattr(self, name, Kernel(getattr(lib, name + suffix), structs[takes]))
        self.gate_fwd, self.gate_bwd = (structs[name] for name in GATE_STRUCTS)


_BY_DTYPE: dict = {}


def kernels(dtype: torch.dtype, numerics: str = "fast") -> Kernels | None:
    """The step kernels of a build for float32 or float64, or None (other dtypes, no compiler, or disabled)."""
    if dtype not in (torch.float32, torch.float64):
        return None
    lib = load(numerics)
    if lib is None:
        return None
    key = (numerics, dtype)
    if key not in _BY_DTYPE:
        _BY_DTYPE[key] = Kernels(lib, "_f32" if dtype == torch.float32 else "_f64")
    return _BY_DTYPE[key]
