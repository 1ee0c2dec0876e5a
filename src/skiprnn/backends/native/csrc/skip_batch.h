/* Included by steps_impl.h once per element type. A batch at evaluation, without autograd, as skipping.py's
 * row-compacted path: at each step only the rows with u_t = 1 go through the matmul and the cell; the others keep
 * their state and move only the ũ recursion. One call runs the whole sequence of a single-layer model, each thread
 * its own rows (a step costs no Python and no barrier), and packs the weights for the matmul once.
 *
 * Each updating row gets what the dense step gives it with u = 1: h = h̃ (c = c̃) from the same formulas. In
 * numerics=reproducible the matmul is gemm_run's sums, element for element, so a row's result does not depend on
 * which other rows update. */

/* u_t of row b (0 or 1, or the mask's value) and ũ_t into *u_tilde; as skipping.py's _row_compacted. */
static inline real FN(batch_update)(const FN(skip_batch_args) *a, long t, long b, real *u_tilde) {
    const long i = t * a->B + b;
    real u = 1;
    if (a->gate_w) {
        const real cum = a->cum[b], one_minus_cum = (real)1 - cum;
        *u_tilde = cum + (a->up[b] < one_minus_cum ? a->up[b] : one_minus_cum);
        u = RINT(*u_tilde);
    }
    if (a->keep) u *= a->keep[i];
    if (a->valid) u *= a->valid[i];
    return u;
}

/* The matmul input of batch row b, [x_t, 1, h_{t-1}], into row (K values). */
static inline void FN(batch_input)(const FN(skip_batch_args) *a, long t, long b, real *R row) {
    const long H = a->H, I = a->I;
    memcpy(row, a->x + (t * a->B + b) * I, sizeof(real) * (size_t)I);
    row[I] = 1;
    memcpy(row + I + 1, a->h + b * H, sizeof(real) * (size_t)H);
}

/* After the step, row b: cum (0 where it updated; padding leaves it) and its output. */
static inline void FN(batch_finish)(const FN(skip_batch_args) *a, long t, long b, const real *u_tilde) {
    const long i = t * a->B + b;
    if (a->gate_w && (!a->valid || a->valid[i] > 0)) a->cum[b] = u_tilde[b] - a->updates[i] * u_tilde[b];
    memcpy(a->out + i * a->H, a->h + b * a->H, sizeof(real) * (size_t)a->H);
}

/* The cell of batch row b from its pre-activations (its compacted row of pre); the gate's next Δũ from c̃ or h̃. */
static void FN(batch_cell)(const FN(skip_batch_args) *a, long b, real *pre) {
    const long H = a->H;
    real cand[H], tmp[H];
    if (a->gru)
        FN(gru_update_row)(H, pre + 2 * H, pre + H, a->h + b * H, cand, tmp);
    else
        FN(lstm_update_row)(H, pre, a->h + b * H, a->c + b * H, cand);
    if (a->gate_w) a->up[b] = FN(sigmoid)(FN(dot)(H, cand, a->gate_w) + a->gate_b[0]);
}

/* Rows b0 .. b1 over the whole sequence. w1: every gate's columns (LSTM), or r and z (GRU); w2: the GRU's candidate
 * columns. Work for these rows: A (b1 − b0, K), pre (b1 − b0, G), rows (b1 − b0); u_tilde (B). */
static void FN(batch_rows)(const FN(skip_batch_args) *a, long b0, long b1, const FN(packed) *w1,
                           const FN(packed) *w2, real *A, real *pre, real *u_tilde, long *rows) {
    const long H = a->H, I = a->I, K = I + 1 + H, G = a->gru ? 3 * H : 4 * H;
    for (long t = 0; t < a->T; t++) {
        long n = 0;
        for (long b = b0; b < b1; b++) {
            const real u = FN(batch_update)(a, t, b, u_tilde + b);
            a->updates[t * a->B + b] = u;
            if (u != 0) rows[n++] = b;
        }
        for (long i = 0; i < n; i++) FN(batch_input)(a, t, rows[i], A + i * K);
        FN(gemm_packed_run)(n, A, K, w1, pre, G);
        if (a->gru) {  /* r ⊙ h replaces h in A: the candidate's matmul input */
            for (long i = 0; i < n; i++) FN(gru_gates_row)(H, pre + i * G, a->h + rows[i] * H, A + i * K + I + 1);
            FN(gemm_packed_run)(n, A, K, w2, pre + 2 * H, G);
        }
        for (long i = 0; i < n; i++) FN(batch_cell)(a, rows[i], pre + i * G);
        for (long b = b0; b < b1; b++) FN(batch_finish)(a, t, b, u_tilde);
    }
}

/* Rows never meet (each row's state, gate and output are its own, and the matmul gives a row the same sums whichever
 * rows share its block), so each thread runs its own rows through the whole sequence, without a barrier. */
static void FN(batch_sequence)(const FN(skip_batch_args) *a, const FN(packed) *w1, const FN(packed) *w2, real *A,
                               real *pre, real *u_tilde, long *rows) {
    const long B = a->B, K = a->I + 1 + a->H, G = a->gru ? 3 * a->H : 4 * a->H;
    ROW_REGION(B)
    {
        long b0, b1;
        thread_rows(B, GEMM_MR, &b0, &b1);
        if (b0 < b1) FN(batch_rows)(a, b0, b1, w1, w2, A + b0 * K, pre + b0 * G, u_tilde, rows + b0);
    }
}

static void FN(skip_batch_run)(const FN(skip_batch_args) *a) {
    const long B = a->B, H = a->H, K = a->I + 1 + H, G = a->gru ? 3 * H : 4 * H;
    FN(packed) w1 = FN(gemm_pack_all)(a->wt, G, 1, K, a->gru ? 2 * H : G);
    FN(packed) w2 = a->gru ? FN(gemm_pack_all)(a->wt + 2 * H, G, 1, K, H) : w1;
    real *A = malloc(sizeof(real) * (size_t)(B * K)), *pre = malloc(sizeof(real) * (size_t)(B * G));
    real *u_tilde = malloc(sizeof(real) * (size_t)B);
    long *rows = malloc(sizeof(long) * (size_t)B);
    a->status[0] = !(w1.data && w2.data && A && pre && u_tilde && rows);
    if (!a->status[0]) FN(batch_sequence)(a, &w1, &w2, A, pre, u_tilde, rows);
    free(rows);
    free(u_tilde);
    free(pre);
    free(A);
    if (a->gru) free(w2.data);
    free(w1.data);
}
