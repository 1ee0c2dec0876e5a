/* The argument struct of every kernel, declared once, as an X-macro list of (C type, name).
 *
 * steps_impl.h makes each list a struct, and exports its layout as a string ("name type; ...") and its size.
 * skiprnn/backends/native/__init__.py builds the ctypes structures from those strings and checks the sizes, so
 * Python and C cannot disagree about a field: a call site sets fields by name, and a misspelt name raises.
 * Every buffer is given whole, as (T, B, N) rows from its start; a kernel finds step t's rows itself, so the
 * caller makes one call per pass (the kernels run the whole sequence).
 */

/* The update gate's recursion: every array is a (T, B) or (T + 1, B) buffer. */
#define GATE_FWD_FIELDS(X)                                                                                  \
    X(const real *, mask)   /* (T, B) keep·valid, or NULL */                                              \
    X(const real *, valid)  /* (T, B) or NULL */                                                          \
    X(const real *, w)      /* (H,) update-gate weight */                                                 \
    X(const real *, bias)   /* (1,) */                                                                    \
    X(real *, ups) X(real *, cums)        /* (T + 1, B) Δũ and cum before each step */                    \
    X(real *, ut) X(real *, us) X(real *, dl) /* (T, B) ũ_t, u_t, δ_t = σ(w·s + b) */                    \
    X(long, batch)

#define GATE_BWD_FIELDS(X)                                                                                  \
    X(const real *, ups) X(const real *, cums) X(const real *, ut) X(const real *, us) X(const real *, dl) \
    X(const real *, mask) X(const real *, valid) /* (T, B) or NULL */                                     \
    X(const real *, dupd)   /* (T, B) gradient of the updates output, or NULL */                          \
    X(real *, state)        /* (B, 2) carried [dL/dΔũ, dL/dcum] */                                        \
    X(real *, dz)           /* (T, B) out */                                                              \
    X(long, batch)

/* The input buffer xh is (T, B, xrow) = [x_t, 1, h_{t-1}]: h_{t-1} starts at column h_col of row t. */
#define LSTM_FWD_FIELDS(X)                                                                                  \
    X(long, T) X(long, B) X(long, H)                                                                       \
    X(const real *, w)                   /* (4H, xrow) [W_ih, b, W_hh], rows i, 2j, f, o: pre = [x, 1, h] wᵀ */ \
    X(real *, acts)                      /* (T, B, 4H) σ(i), tanh(j), σ(f), σ(o) out */                   \
    X(const real *, c0) X(long, c0_s)    /* (B, H) the initial cell state, row stride */                  \
    X(real *, cs)                        /* (T, B, H) c_t out (masked: lerp(c_{t-1}, c̃_t, u); else c̃_t) */  \
    X(real *, tanh_c) X(real *, out)     /* (T, B, H) tanh(c̃_t), h_t out */                              \
    X(real *, xh) X(long, xrow) X(long, h_col) /* h_t is also written into row t + 1 */                 \
    X(const real *, mask)                /* (T, B) the random-skip mask when not gated, or NULL */        \
    X(const FN(gate_fwd) *, gate)        /* NULL: not gated */                                            \
    X(real *, status)                    /* (1,) out: 0, or 1 when memory ran out (nothing computed) */

#define LSTM_BWD_FIELDS(X)                                                                                  \
    X(long, T) X(long, B) X(long, H)                                                                       \
    X(const real *, w_hh_t)              /* (H, 4H) W_hhᵀ of the scaled w: dh_{t-1} gets dgates_t · W_hh */ \
    X(const real *, acts) X(const real *, tanh_c) X(const real *, cs) /* the forward pass's, (T, B, ·) */ \
    X(const real *, c0) X(long, c0_s)                                                                      \
    X(const real *, xh) X(long, xrow) X(long, h_col)                                                       \
    X(real *, dh) X(real *, dc)          /* (B, H) gradients of h_T, c_T on entry, of h_0, c_0 on exit */  \
    X(const real *, dout)                /* (T, B, H) gradient of the outputs, or NULL */                 \
    X(real *, dg)                        /* (T, B, 4H) gate pre-activation gradients out */               \
    X(const real *, u)                   /* (T, B) the updates when masked or gated, else NULL */         \
    X(const real *, gate_w) X(real *, dgw_rows) /* gated: (H,) and (B, H) per-row dz·c̃ accumulator */    \
    X(const FN(gate_bwd) *, gate)                                                                          \
    X(real *, status)

/* Each step: the gates (r, z and r ⊙ h_{t-1} into xrh), then the candidate from xrh. */
#define GRU_FWD_FIELDS(X)                                                                                   \
    X(long, T) X(long, B) X(long, H)                                                                       \
    X(const real *, w_rz) X(const real *, w_n) /* (2H, xrow) rows r, z; (H, xrow) the n rows scaled by 2 */ \
    X(real *, rz) X(real *, cand) X(real *, out) /* (T, B, 2H) σ(r), σ(z); (T, B, H) tanh(n), h_t out */  \
    X(real *, xh) X(real *, xrh) X(long, xrow) X(long, h_col) /* xrh: [x_t, 1, r_t ⊙ h_{t-1}] */         \
    X(const real *, mask)                                                                                  \
    X(const FN(gate_fwd) *, gate)                                                                          \
    X(real *, status)

#define GRU_BWD_FIELDS(X)                                                                                   \
    X(long, T) X(long, B) X(long, H)                                                                       \
    X(const real *, w_rz_t) X(const real *, w_n_t) /* (H, 2H), (H, H): the h columns of W_rz and W_n, transposed */ \
    X(const real *, rz) X(const real *, cand) X(const real *, xh) X(long, xrow) X(long, h_col)            \
    X(real *, dh)                        /* (B, H) the gradient of h_T on entry, of h_0 on exit */        \
    X(const real *, dout)                                                                                  \
    X(real *, dg_rz) X(real *, dg_n)     /* (T, B, 2H), (T, B, H) out */                                  \
    X(const real *, u)                                                                                     \
    X(const real *, gate_w) X(real *, dgw_rows)                                                            \
    X(const FN(gate_bwd) *, gate)                                                                          \
    X(real *, status)

/* One sequence at batch 1, evaluation only (skiprnn/backends/skipping.py). */
#define SKIP_SEQUENCE_FIELDS(X)                                                                             \
    X(long, gru) X(long, T) X(long, I) X(long, H)                                                          \
    X(const real *, x)                   /* (T, I) */                                                     \
    X(const real *, wt)                  /* (I + 1 + H, G) [W_ih, b, W_hh]ᵀ, tanh rows scaled by 2 */      \
    X(const real *, gate_w) X(const real *, gate_b) /* NULL: not gated */                                \
    X(const real *, keep)                /* (T,) the random-skip mask, or NULL */                         \
    X(long, length)                      /* steps from `length` on are padding */                         \
    X(real *, h) X(real *, c)            /* (H,) updated in place; c NULL for the GRU */                  \
    X(real *, state)                     /* (2,) [Δũ, cum], updated in place */                           \
    X(real *, out) X(real *, updates)    /* (T, H), (T,) out */

/* A batch, evaluation only: each step computes only the rows that update (csrc/skip_batch.h). */
#define SKIP_BATCH_FIELDS(X)                                                                                \
    X(long, gru) X(long, T) X(long, B) X(long, I) X(long, H)                                              \
    X(const real *, x)                   /* (T, B, I) */                                                  \
    X(const real *, wt)                  /* (I + 1 + H, G) as skip_sequence's */                          \
    X(const real *, gate_w) X(const real *, gate_b) /* NULL: not gated */                                \
    X(const real *, keep) X(const real *, valid) /* (T, B) or NULL */                                    \
    X(real *, h) X(real *, c)            /* (B, H) updated in place; c NULL for the GRU */                \
    X(real *, up) X(real *, cum)         /* (B,) Δũ and cum, updated in place (gated) */                  \
    X(real *, out) X(real *, updates)    /* (T, B, H), (T, B) out */                                      \
    X(real *, status)                    /* (1,) out: 0, or 1 when memory ran out (nothing computed) */

/* C (M, N) = [C +] A (M, K) · B (K, N), any strides: the matmuls of numerics=reproducible (csrc/gemm.h). */
#define GEMM_FIELDS(X)                                                                                      \
    X(long, M) X(long, N) X(long, K)                                                                       \
    X(const real *, A) X(long, sam) X(long, sak)  /* A[i, k] = A[i·sam + k·sak] */                         \
    X(const real *, B) X(long, sbk) X(long, sbn)  /* B[k, j] = B[k·sbk + j·sbn] */                         \
    X(real *, C) X(long, ldc)                     /* C[i, j] = C[i·ldc + j] */                             \
    X(long, accumulate)                           /* 1: add to C's values; 0: overwrite C */
