"""The backends that compute a ``SkipRNN`` call; the layer (``skiprnn.nn.rnn``) validates and picks one.

- ``reference``: the per-step autograd loop, every option; what the others are tested against.
- ``fused``: one layer, training and dense evaluation, as one autograd Function with a hand-written backward
  through time, with its steps in C (``native``) or Python.
- ``skipping``: evaluation under ``no_grad`` that does not compute the cell on skipped steps.

Each takes a ``stack.Stack`` (the layers, the update gate and the options) and imports only the cell and state
definitions (``skiprnn.cells``), never the layer. ``flags`` switches the C
kernels and oneDNN off and on; ``numerics`` chooses between the fast and the reproducible arithmetic.
"""
from . import fused, native, numerics, reference, skipping
from .flags import Flags, flags
from .stack import Stack

__all__ = ["Flags", "Stack", "flags", "fused", "native", "numerics", "reference", "skipping"]
