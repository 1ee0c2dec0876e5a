"""The skip gate's maths (paper Eq. 2-5), shared by every backend: ũ's recursion, the straight-through
rounding, and W_p's initialisation."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def round_ste(x: Tensor) -> Tensor:
    """round() forward (half to even, like tf.round), identity gradient backward (paper Eq. 7)."""
    return x + (torch.round(x) - x).detach()


def accumulate_update_prob(update_prob: Tensor, cum_update_prob: Tensor) -> Tensor:
    """ũ_t from the carried state, exactly as the original code: cum + min(Δũ, 1 - cum).

    After an update cum is 0, so ũ_t = Δũ; after a skip ũ grows by Δũ, capped at 1 (paper Eq. 5).
    """
    return cum_update_prob + torch.minimum(update_prob, 1.0 - cum_update_prob)


GATE_INITS = ("glorot", "torch")


def init_update_gate(gate: nn.Linear, scheme: str) -> None:
    """W_p and b_p of Eq. 4. b_p = 1, so that every step updates at the start of training. W_p: "glorot" is the
    original code's (``tf.get_variable`` with no initializer: Glorot-uniform over the (H, 1) kernel, limit
    sqrt(6 / (H + 1))); "torch" keeps ``nn.Linear``'s U(±1/sqrt(H)), what skiprnn used before."""
    if scheme not in GATE_INITS:
        raise ValueError(f"gate_init must be one of {', '.join(GATE_INITS)}; got {scheme!r}")
    with torch.no_grad():
        drawn_by_linear = gate.weight.clone()
        # Both schemes draw the Glorot values, so that every later draw (the read-out's, the data's) is the same and
        # the switch changes W_p alone.
        nn.init.xavier_uniform_(gate.weight)
        if scheme == "torch":
            gate.weight.copy_(drawn_by_linear)
        gate.bias.fill_(1.0)
