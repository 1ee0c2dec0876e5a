"""Skip RNN: Learning to Skip State Updates in Recurrent Neural Networks (Campos et al., ICLR 2018).

The library, in layers: ``skiprnn.cells`` (the cell and gate maths) < ``skiprnn.backends`` (what computes a
call) < ``skiprnn.nn`` (the layers). ``skiprnn.experiment`` (configs, tasks, trainer, tables) sits on top and
is the only part that needs Hydra, W&B or tqdm.
"""
from .cells import GRUCell, LSTMCell, SkipState
from .nn import (
                 MODES,
                 SkipCell,
                 SkipCellOutput,
                 SkipCellState,
                 SkipRNN,
                 SkipRNNOutput,
                 StackedCells,
                 budget_loss,
                 inference_flops,
                 unroll,
)

__all__ = ["MODES", "SkipRNN", "SkipRNNOutput", "SkipState", "budget_loss", "inference_flops", "LSTMCell", "GRUCell",
           "SkipCell", "SkipCellOutput", "SkipCellState", "StackedCells", "unroll"]
__version__ = "0.1.0"

from .backends import numerics as _numerics  # noqa: E402

_numerics.use_from_environment()  # SKIPRNN_NUMERICS=reproducible: before any tensor operation
