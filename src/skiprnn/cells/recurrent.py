"""One time step of each cell, in the conventions of the original TensorFlow code.

The input projection ``x @ W_ih.T + b`` does not depend on the recurrent state, so callers
compute it for a whole sequence at once and pass one row of it to :meth:`step`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _glorot_(tensor: Tensor, fan_in: int, fan_out: int) -> None:
    # TF1's default initializer (glorot_uniform) over the concatenated [x, h] kernel.
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(tensor, -bound, bound)


class LSTMCell(nn.Module):
    """TF ``BasicLSTMCell`` maths: gates in the order i, j, f, o and a constant forget bias of +1.

    c' = c * sigmoid(f + 1) + sigmoid(i) * tanh(j);  h' = tanh(c') * sigmoid(o).
    """

    num_gates = 4
    has_cell_state = True

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        g = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g, hidden_size))
        self.bias = nn.Parameter(torch.empty(g))
        # The forget bias is a constant, not a parameter: folded into the input projection.
        offset = torch.zeros(g)
        offset[2 * hidden_size : 3 * hidden_size] = 1.0
        self.register_buffer("bias_offset", offset, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in, fan_out = self.input_size + self.hidden_size, self.num_gates * self.hidden_size
        _glorot_(self.weight_ih, fan_in, fan_out)
        _glorot_(self.weight_hh, fan_in, fan_out)
        nn.init.zeros_(self.bias)

    def project_input(self, x: Tensor) -> Tensor:
        """x (..., input_size) -> the input part of the gate pre-activations (..., 4H)."""
        return torch.nn.functional.linear(x, self.weight_ih, self.bias + self.bias_offset)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """One step in ``torch.nn.LSTMCell``'s interface: x (B, in), state (h, c) or None for zeros -> (h', c')."""
        if state is None:
            zeros = x.new_zeros(x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        return self.step(self.project_input(x), *state)

    def step(self, x_proj: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        gates = torch.addmm(x_proj, h, self.weight_hh.t())
        i, _, f, o = torch.sigmoid(gates).chunk(4, 1)  # one sigmoid over all four blocks (j's is unused): fewer small ops
        j = gates[:, self.hidden_size : 2 * self.hidden_size]
        c_new = torch.addcmul(c * f, i, torch.tanh(j))
        h_new = torch.tanh(c_new) * o
        return h_new, c_new


class GRUCell(nn.Module):
    """TF ``GRUCell`` maths: reset applied to h *before* the candidate matmul; gate biases start at 1.

    r, z = sigmoid([x, h] W_g + b_g);  n = tanh([x, r * h] W_n + b_n);  h' = z * h + (1 - z) * n.
    Weights are stored as rows [r; z; n], like ``torch.nn.GRUCell``.
    """

    num_gates = 3
    has_cell_state = False

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        g = self.num_gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g, hidden_size))
        self.bias = nn.Parameter(torch.empty(g))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        hs, fan_in = self.hidden_size, self.input_size + self.hidden_size
        # Two TF kernels: gates [in+H, 2H] and candidate [in+H, H], each Glorot-initialised.
        for rows, fan_out in ((slice(0, 2 * hs), 2 * hs), (slice(2 * hs, 3 * hs), hs)):
            _glorot_(self.weight_ih.data[rows], fan_in, fan_out)
            _glorot_(self.weight_hh.data[rows], fan_in, fan_out)
        with torch.no_grad():
            self.bias[: 2 * hs].fill_(1.0)
            self.bias[2 * hs :].zero_()

    def project_input(self, x: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, self.weight_ih, self.bias)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """One step in ``torch.nn.GRUCell``'s interface: x (B, in), h (B, H) or None for zeros -> h'."""
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        return self.step(self.project_input(x), h)[0]

    def step(self, x_proj: Tensor, h: Tensor, c: Tensor | None = None) -> tuple[Tensor, None]:
        hs = self.hidden_size
        w_gates, w_cand = self.weight_hh[: 2 * hs], self.weight_hh[2 * hs :]
        rz = torch.sigmoid(torch.addmm(x_proj[:, : 2 * hs], h, w_gates.t()))
        r, z = rz.chunk(2, 1)
        n = torch.tanh(torch.addmm(x_proj[:, 2 * hs :], r * h, w_cand.t()))
        return torch.lerp(n, h, z), None


CELLS: dict[str, type[nn.Module]] = {"lstm": LSTMCell, "gru": GRUCell}
