"""The cell maths, in the original TensorFlow code's conventions: the LSTM and GRU steps (``recurrent``), the
skip gate's recursion (``gate``) and the state every backend carries (``state``). Imports only torch."""
from .gate import GATE_INITS, accumulate_update_prob, init_update_gate, round_ste
from .recurrent import CELLS, GRUCell, LSTMCell
from .state import SkipState, valid_steps

__all__ = ["CELLS", "GATE_INITS", "GRUCell", "LSTMCell", "SkipState", "accumulate_update_prob", "init_update_gate",
           "round_ste", "valid_steps"]
