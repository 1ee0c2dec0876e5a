"""The recurrent state every backend reads and writes, and the padding mask of a batch of sequences."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class SkipState(NamedTuple):
    """Recurrent state, passed back to ``forward`` to continue a sequence.

    h, c: (num_layers, B, H); c is None for GRU modes. update_prob is the last Δũ and
    cum_update_prob the ũ accumulated since the last update, both (B,).
    """

    h: Tensor
    c: Tensor | None
    update_prob: Tensor
    cum_update_prob: Tensor

    def detach(self) -> SkipState:
        """The same state cut from the autograd graph: continue a sequence after ``backward()`` on the part
        before it (truncated backpropagation through time)."""
        return SkipState(*(None if t is None else t.detach() for t in self))


def valid_steps(lengths: Tensor, steps: int, batch: int, device: torch.device) -> Tensor:
    """(T, B) bool: whether step t lies inside sequence b of a padded batch with these ``lengths`` (B,)."""
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.shape != (batch,) or lengths.dtype.is_floating_point:
        raise ValueError(f"lengths must be an integer tensor of shape ({batch},); got {lengths.dtype} of shape "
                         f"{tuple(lengths.shape)}")
    if bool((lengths < 1).any() or (lengths > steps).any()):
        raise ValueError(f"lengths must lie in [1, {steps}]; got values from {int(lengths.min())} to {int(lengths.max())}")
    return torch.arange(steps, device=device)[:, None] < lengths[None, :]
