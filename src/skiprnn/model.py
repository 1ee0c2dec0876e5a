"""A SkipRNN with a linear read-out of its last output: the model of every classification/regression task."""
from __future__ import annotations

from torch import Tensor, nn

from .rnn import SkipRNN


class SequenceModel(nn.Module):
    def __init__(self, mode: str, input_size: int, output_size: int, hidden_size: int = 110,
                 num_layers: int = 1, p_skip: float = 0.0, original_stack_bug: bool = False):
        super().__init__()
        self.rnn = SkipRNN(mode, input_size, hidden_size, num_layers=num_layers, p_skip=p_skip,
                           original_stack_bug=original_stack_bug)
        self.head = nn.Linear(hidden_size, output_size)
        nn.init.xavier_uniform_(self.head.weight)  # tf.contrib.layers.linear: Xavier weights, zero bias
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (T, B, I) -> (prediction from the last h, updates (T, B))."""
        out = self.rnn(x, lengths=lengths)
        last = out.state.h[-1]  # the last (possibly copied) state of the top layer
        return self.head(last), out.updates
