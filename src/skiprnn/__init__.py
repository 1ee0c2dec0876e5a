"""Skip RNN: Learning to Skip State Updates in Recurrent Neural Networks (Campos et al., ICLR 2018)."""
from .cells import GRUCell, LSTMCell
from .flops import inference_flops
from .rnn import MODES, SkipRNN, SkipRNNOutput, SkipState, budget_loss
from .wrapper import SkipCell, SkipCellOutput, SkipCellState, StackedCells, unroll

__all__ = ["MODES", "SkipRNN", "SkipRNNOutput", "SkipState", "budget_loss", "inference_flops", "LSTMCell", "GRUCell",
           "SkipCell", "SkipCellOutput", "SkipCellState", "StackedCells", "unroll"]
__version__ = "0.1.0"
