"""A fused single-layer SkipRNN: the whole sequence in one ``torch.autograd.Function``.

The reference backend (``backends/reference.py``; ``SkipRNN(..., fused=False)``) is a per-step Python loop that
autograd records op by op. Here, as in cuDNN, the forward pass runs without autograd into preallocated
(T, B, ...) buffers with in-place ops, and the backward pass is written by hand: one reverse loop over
time computes the gate pre-activation gradients of every step; the weight gradients come after the loop
from one large matmul over all steps (dW = dgates_allᵀ @ [x, 1, h_prev]_all).

It reproduces the reference backend for ``num_layers == 1`` in every mode, including the gradients:

* u_t = round_STE(ũ_t) · keep_t · valid_t, ũ_t = cum + min(Δũ, 1 − cum) (torch.minimum's backward
  gives each side half the gradient on a tie, which happens at the first step: Δũ = 1, cum = 0),
* h, c = lerp(prev, candidate, u_t); Δũ = lerp(Δũ, σ(w·s + b), u_t), s = c̃ (LSTM) or h̃ (GRU);
  cum = (1 − u_t) ũ_t, and with a ``valid`` mask cum = lerp(cum, that, valid_t),
* outputs h_t, updates u_t (their gradient reaches ũ through the STE: the budget loss) and the final
  state (h, c, Δũ, cum) are all differentiable.

Implementation choices (timings: ``python -m skiprnn.experiment.bench``, and one-thread CPU times on a 2-core AMD EPYC):

* The input projection is done inside, TF-style, in the same matmul as the recurrent one:
  gates_t = [x_t, 1, h_{t-1}] @ [W_ih, b, W_hh]ᵀ, so the (T, B, G) projection is never materialised.
  Projecting outside with ``cell.project_input`` and letting autograd differentiate it took 10.4 ms
  (forward + backward) at T=50, B=256, I=2 on one thread, against ~54 ms for the whole fused LSTM step
  now (autograd computes the weight gradient as (T·B, G)ᵀ @ (T·B, I), a slow matmul orientation for a
  tiny I: 6.6 ms, against 1.7 ms for the other orientation).
  The bias b is ``cell.project_input(0)`` (the cell's own bias, with the LSTM's forget offset), so its
  gradient still flows through the cell by ordinary autograd; the weight and the input gradients come
  from the dgates matmuls. This assumes ``project_input(x) = x @ weight_ihᵀ + project_input(0)``, true
  for both cells and checked by the tests against the reference path.
* The LSTM j rows (and the GRU candidate rows) of the weights are scaled by 2, so that one sigmoid over
  the contiguous gate block gives every activation, with tanh(j) = 2σ(2j) − 1. tanh(c) is computed the
  same way: torch's CPU tanh took ~60 µs for a (256, 110) block, its sigmoid ~7 µs. Results agree with
  ``torch.tanh`` to a few ulps.
* Large buffers are reused across calls (see ``pool.empty``).
* The matmuls (forward, dh per step, one dW) are the same as cuDNN's and torch's. On CPU each pass is one call
  of a C kernel for the whole sequence (``skiprnn.backends.native``: its per-step products on weights packed once,
  and the elementwise work); the dW is one ``torch.mm``. Without the kernels each step is a oneDNN matmul in
  float32 (see ``common.mm``) and ~25 small tensor ops whose dispatch overhead (~1-3 µs each) costs as much as
  the arithmetic. The two implementations save different tensors for the backward pass
  (the kernels recompute h̃ and c̃ instead of keeping them), so the backward pass takes the forward's.

The package, by concern: ``function`` (the autograd Function and the module's call), ``lstm`` and ``gru`` (each
cell's passes, with their saved tensors named), ``gate`` (the (Δũ, cum) recursion), ``common`` (the matmul and
what both cells share) and ``pool`` (the reused buffers).
"""
from .common import kernels_for
from .function import FusedSkipRNN, forward
from .pool import empty_cache

__all__ = ["FusedSkipRNN", "empty_cache", "forward", "kernels_for"]
