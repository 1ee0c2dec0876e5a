"""Inference FLOPs per sequence, by the accounting that reproduces the paper's FLOPs columns.

The paper gives no formula; this one matches every printed full-update entry of Tables 1, 2, 3 and 6 to
three significant figures. Only the multiply-accumulates of the recurrent weight matmuls are counted
(no biases, element-wise ops or output layer), plus the update-gate layer W_p for Skip models and,
for video, the feature extractor run on each used frame:

    FLOPs = updates * [ sum_layers (d_in + H) * G * H  +  H (Skip only)  +  feature_flops ]

with G = 4 for LSTM and 3 for GRU.
"""
from __future__ import annotations

GATES = {"lstm": 4, "gru": 3}

# Per-frame feature extractor costs implied by the paper's tables.
VGG16_FLOPS = 1.53e10  # Charades (Table 3): fc7 of the RGB two-stream CNN
RESNET50_FLOPS = 3.8e9  # UCF-101 (Table 6)


def flops_per_update(mode: str, input_size: int, hidden_size: int, num_layers: int = 1, feature_flops: float = 0.0) -> float:
    cell = mode.removeprefix("skip_")
    if cell not in GATES:
        raise ValueError(f"mode must be one of lstm, gru, skip_lstm, skip_gru; got {mode!r}")
    g, h = GATES[cell], hidden_size
    recurrent = sum(((input_size if layer == 0 else h) + h) * g * h for layer in range(num_layers))
    gate = h if mode.startswith("skip_") else 0
    return float(recurrent + gate + feature_flops)


def inference_flops(
    mode: str,
    input_size: int,
    hidden_size: int,
    updates: float,
    num_layers: int = 1,
    feature_flops: float = 0.0,
) -> float:
    """FLOPs for one sequence that performs ``updates`` state updates (the mean count, for a table)."""
    return updates * flops_per_update(mode, input_size, hidden_size, num_layers, feature_flops)
