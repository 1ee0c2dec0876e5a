"""What a backend computes with: a ``SkipRNN``'s layers, update gate and options as explicit arguments.

As torch's ``nn.RNN`` validates and then hands its flat weights to a backend, ``skiprnn.nn.SkipRNN`` validates its
input and hands a ``Stack`` here; no backend sees the module or calls back into it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Stack:
    cells: tuple[nn.Module, ...]  # each layer's cell (skiprnn.cells.recurrent), bottom first
    update_gate: nn.Linear | None  # Δũ's linear map of a Skip model; None for a plain or random-skip one
    input_size: int
    hidden_size: int
    has_cell_state: bool  # LSTM: c beside h
    original_stack_bug: bool  # layers >= 2 of a stacked Skip GRU read the network input (the original code's bug)
    fused: bool  # a one-layer dense call may take the fused path

    @property
    def num_layers(self) -> int:
        return len(self.cells)

    @property
    def gated(self) -> bool:
        return self.update_gate is not None

    def candidate(self, x_proj: Tensor, h: list[Tensor], c: list[Tensor | None], x: Tensor | None = None):
        """Every layer's new state for one step; x_proj is the bottom layer's projected input, x the raw one."""
        h_new, c_new = [], []
        for layer, cell in enumerate(self.cells):
            inp = x_proj if layer == 0 else cell.project_input(h_new[-1])
            if layer and self.original_stack_bug:
                hs = self.hidden_size
                raw = torch.nn.functional.linear(x, cell.weight_in_raw, cell.bias[2 * hs :])
                inp = torch.cat([inp[:, : 2 * hs], raw], 1)
            hl, cl = cell.step(inp, h[layer], c[layer])
            h_new.append(hl)
            c_new.append(cl)
        return h_new, c_new

    def gate_input(self, h_new: list[Tensor], c_new: list) -> Tensor:
        """The state Δũ is computed from: the top layer's c for LSTM, its h for GRU (original code)."""
        return c_new[-1] if self.has_cell_state else h_new[-1]
