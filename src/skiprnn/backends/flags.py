"""Process-wide backend switches, read at each call; change them with ``skiprnn.backends.flags(...)``."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields


@dataclass
class Flags:
    native: bool = True  # the C step kernels (backends/native), where they built; False: the Python steps
    onednn: bool = True  # oneDNN's float32 matmul, where this torch has it; False: torch.mm


current = Flags()


@contextmanager
def flags(native: bool | None = None, onednn: bool | None = None) -> Iterator[Flags]:
    """Switch backends inside a ``with`` block and restore them after, as ``torch.backends.cudnn.flags``:

        with skiprnn.backends.flags(native=False, onednn=False):
            out = rnn(x)    # the fused path's Python steps and torch.mm (the same results to float rounding)

    None leaves a switch as it is. Yields the switches in force.
    """
    saved = Flags(**{f.name: getattr(current, f.name) for f in fields(Flags)})
    for name, value in (("native", native), ("onednn", onednn)):
        if value is not None:
            if not isinstance(value, bool):
                raise TypeError(f"skiprnn.backends.flags({name}=...) takes True, False or None; got {value!r}")
            setattr(current, name, value)
    try:
        yield current
    finally:
        for f in fields(Flags):
            setattr(current, f.name, getattr(saved, f.name))
