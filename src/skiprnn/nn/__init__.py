"""The layers users build with: ``SkipRNN`` (a ``torch.nn.LSTM``-style sequence layer that validates its input
and picks a backend), ``SkipCell`` around any recurrent cell, and the paper's FLOPs count."""
from .flops import inference_flops
from .rnn import MODES, SkipRNN, SkipRNNOutput, budget_loss
from .wrapper import SkipCell, SkipCellOutput, SkipCellState, StackedCells, unroll

__all__ = ["MODES", "SkipCell", "SkipCellOutput", "SkipCellState", "SkipRNN", "SkipRNNOutput", "StackedCells",
           "budget_loss", "inference_flops", "unroll"]
