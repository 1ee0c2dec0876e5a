"""A SkipRNN with a linear read-out: the model of every classification/regression task.

The read-out is the task's choice (``Task.readout``): ``"last"`` maps the final state of the top layer to one
prediction per sequence (adding, frequency, MNIST), ``"every_step"`` maps the top layer's output at every step to a
prediction per step (Charades' per-frame labels).
"""
from __future__ import annotations

from torch import Tensor, nn

from ..backends import numerics
from ..nn.rnn import SkipRNN
from .identity import LEGACY_MODEL_KEYS

READOUTS = ("last", "every_step")


class SequenceModel(nn.Module):
    def __init__(self, mode: str, input_size: int, output_size: int, hidden_size: int = 110,
                 num_layers: int = 1, p_skip: float = 0.0, original_stack_bug: bool = False,
                 gate_init: str = "glorot", p_skip_keep_first: bool = False, readout: str = "last"):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}; got {readout!r}")
        self.readout = readout
        self.rnn = SkipRNN(mode, input_size, hidden_size, num_layers=num_layers, p_skip=p_skip,
                           original_stack_bug=original_stack_bug, gate_init=gate_init,
                           p_skip_keep_first=p_skip_keep_first)
        self.head = nn.Linear(hidden_size, output_size)
        nn.init.xavier_uniform_(self.head.weight)  # tf.contrib.layers.linear: Xavier weights, zero bias
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (T, B, I) -> (prediction, updates (T, B)). The prediction is (B, O) from the last h with
        ``readout="last"`` (past a sequence's length its state is no longer updated, so that is its last real
        state), or (T, B, O) from the top layer's h at every step with ``readout="every_step"``."""
        out = self.rnn(x, lengths=lengths)
        if self.readout == "every_step":
            return numerics.linear(out.output, self.head.weight, self.head.bias), out.updates
        last = out.state.h[-1]  # the last (possibly copied) state of the top layer
        return numerics.linear(last, self.head.weight, self.head.bias), out.updates


def model_from_config(model_cfg: dict, input_size: int, output_size: int, readout: str = "last") -> SequenceModel:
    """The model a run's ``model`` config describes, with the task's read-out. Keys a record made before they
    existed lacks take the value that reproduces what that run trained (see ``LEGACY_MODEL_KEYS``)."""
    m = {**LEGACY_MODEL_KEYS, **model_cfg}
    return SequenceModel(str(m["mode"]), input_size, output_size, m["hidden_size"], m["num_layers"], m["p_skip"],
                         m["original_stack_bug"], str(m["gate_init"]), m["p_skip_keep_first"], readout)
