/* Included by steps.c once per element type: `real`, EXP, RINT and FN(name) are defined there. */

/* x is clamped below so that exp(−x) stays finite: -ffast-math assumes finite values (and divides through
 * a reciprocal estimate, which turns 1/∞ into NaN). σ(−EXP_LIMIT) is below 1e-34 in either precision. */
static inline real FN(sigmoid)(real x) {
    x = x < -EXP_LIMIT ? -EXP_LIMIT : x;
    return (real)1 / ((real)1 + EXP(-x));
}

/* torch.lerp's two-sided formula: exact at w = 0 and at w = 1. */
static inline real FN(lerp)(real a, real b, real w) {
    return fabs((double)w) < 0.5 ? a + w * (b - a) : b - (b - a) * ((real)1 - w);
}

/* The argument structs (args.h), each with its layout and size exported for the Python side. */
#define FIELD(type, name) type name;
#define LAYOUT(type, name) #name " " #type ";"
#define ARGS_STRUCT(name, FIELDS)                                        \
    typedef struct { FIELDS(FIELD) } FN(name);                           \
    const char *FN(name##_layout)(void) { return FIELDS(LAYOUT); }       \
    long FN(name##_size)(void) { return (long)sizeof(FN(name)); }

ARGS_STRUCT(gate_fwd, GATE_FWD_FIELDS)
ARGS_STRUCT(gate_bwd, GATE_BWD_FIELDS)
ARGS_STRUCT(lstm_fwd_args, LSTM_FWD_FIELDS)
ARGS_STRUCT(lstm_bwd_args, LSTM_BWD_FIELDS)
ARGS_STRUCT(gru_fwd_args, GRU_FWD_FIELDS)
ARGS_STRUCT(gru_bwd_args, GRU_BWD_FIELDS)
ARGS_STRUCT(skip_sequence_args, SKIP_SEQUENCE_FIELDS)
ARGS_STRUCT(gemm_args, GEMM_FIELDS)
ARGS_STRUCT(skip_batch_args, SKIP_BATCH_FIELDS)

/* An exported kernel: one pointer to its argument struct, whose name it exports too. */
#define KERNEL(name, args)                                               \
    const char *FN(name##_takes)(void) { return #args; }                 \
    void FN(name)(const FN(args) *a)

/* The update gate of the forward pass, for row b at step t. ũ = cum + min(Δũ, 1 − cum); u = round(ũ)·mask. */
static inline real FN(gate_update)(const FN(gate_fwd) *g, long t, long b) {
    const long i = t * g->batch + b;
    real one_minus_cum = (real)1 - g->cums[i];
    real step = g->ups[i] < one_minus_cum ? g->ups[i] : one_minus_cum;
    real u_tilde = g->cums[i] + step;
    real u = RINT(u_tilde);  /* round half to even, as torch.round */
    if (g->mask) u *= g->mask[i];
    g->ut[i] = u_tilde;
    g->us[i] = u;
    return u;
}

static inline void FN(gate_advance)(const FN(gate_fwd) *g, long t, long b, real u, real dot) {
    const long i = t * g->batch + b, next = i + g->batch;
    real delta = FN(sigmoid)(dot + g->bias[0]);
    g->dl[i] = delta;
    g->ups[next] = FN(lerp)(g->ups[i], delta, u);
    real cum = g->ut[i] - u * g->ut[i];
    g->cums[next] = g->valid ? FN(lerp)(g->cums[i], cum, g->valid[i]) : cum;
}

/* The gate's backward recursion for row b at step t (see GateBackward in fused/gate.py); returns dz, the gradient
 * of the gate's pre-activation, and updates the carried [dL/dΔũ, dL/dcum] in state[2b], state[2b + 1]. */
static inline real FN(gate_back)(const FN(gate_bwd) *g, long t, long b, real dl_du) {
    const long i = t * g->batch + b;
    real upp = g->ups[i], one_minus_cum = (real)1 - g->cums[i];
    real tie = upp == one_minus_cum ? (real)0.5 : (real)0;
    real alpha = (upp < one_minus_cum ? (real)1 : (real)0) + tie;
    real one_minus_beta = (real)1 - ((upp > one_minus_cum ? (real)1 : (real)0) + tie);
    real m = g->mask ? g->mask[i] : (real)1, v = g->valid ? g->valid[i] : (real)1;
    real u = g->us[i], delta = g->dl[i], u_tilde = g->ut[i];
    real dup = g->state[2 * b], dcum = g->state[2 * b + 1];
    real dz = u * delta * ((real)1 - delta) * dup;
    real d_tilde = m * dl_du;
    if (g->dupd) d_tilde += m * g->dupd[i];
    d_tilde += m * (delta - upp) * dup + (((real)1 - u) * v - m * u_tilde * v) * dcum;
    g->state[2 * b] = ((real)1 - u) * dup + alpha * d_tilde;
    g->state[2 * b + 1] = ((real)1 - v) * dcum + one_minus_beta * d_tilde;
    g->dz[i] = dz;
    return dz;
}

/* Each step works row by row, in short branch-free loops over H that the compiler vectorises
 * (-O3 -ffast-math: exp from libmvec, reductions reassociated). */
#define R restrict

/* h = lerp(h_prev, h̃, u), c likewise: torch.lerp's formula with u constant over the row. */
static inline void FN(lerp_row)(long H, real *R out, const real *R a, const real *R b, real u) {
    if (fabs((double)u) < 0.5)
        for (long k = 0; k < H; k++) out[k] = a[k] + u * (b[k] - a[k]);
    else
        for (long k = 0; k < H; k++) out[k] = b[k] - (b[k] - a[k]) * ((real)1 - u);
}

/* Σ_k a_k·b_k (b NULL: Σ_k a_k) in eight lanes, k ≡ j (mod 8) in lane j, combined in a fixed tree: the same bits at
 * every vector width, and a loop the compiler vectorises without reassociating. */
static inline real FN(dot)(long H, const real *R a, const real *R b) {
    real lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long k = 0;
    for (; k + 8 <= H; k += 8)
        for (int j = 0; j < 8; j++) lane[j] += b ? a[k + j] * b[k + j] : a[k + j];
    for (int j = 0; k + j < H; j++) lane[j] += b ? a[k + j] * b[k + j] : a[k + j];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* ------------------------------------------------------------------------------------------- LSTM
 * pre: (B, 4H) gate pre-activations [i, 2j, f, o]; acts: σ(i), tanh(j), σ(f), σ(o) out.
 * u: per-row update (gated: from the gate; masked: mask; else 1). h = lerp(h_prev, h̃, u), c likewise.
 * Not masked: c_out is NULL and c = c̃ goes to cand_c. Masked: cand_c may be NULL (c̃ is not kept: the
 * backward step recomputes it, and h̃ = tanh(c̃)·σ(o), from what it reads anyway). h_next NULL: last step. */
static inline void FN(lstm_cand)(long H, real *R cc, const real *R cp, const real *R sf, const real *R si,
                                 const real *R tj) {
    for (long k = 0; k < H; k++) cc[k] = cp[k] * sf[k] + si[k] * tj[k];
}

static void FN(lstm_forward_step)(long t, long b0, long b1, long H, const real *pre, long pre_s, real *acts, const real *c_prev, long cp_s,
                           const real *h_prev, long hp_s, real *cand_c, real *tanh_c, real *h_out, real *c_out,
                           real *h_next, long hn_s, const real *mask, const FN(gate_fwd) *gate) {
    const long G = 4 * H;
    const int masked = gate != NULL || mask != NULL;
    for (long b = b0; b < b1; b++) {
        real scratch_c[H], scratch_h[H];
        real u = 1;
        if (gate) u = FN(gate_update)(gate, t, b);
        else if (mask) u = mask[b];
        const real *R p = pre + b * pre_s;
        real *R a = acts + b * G;
        for (long k = 0; k < G; k++) a[k] = FN(sigmoid)(p[k]);
        real *R si = a, *R tj = a + H, *R sf = a + 2 * H, *R so = a + 3 * H;
        for (long k = 0; k < H; k++) tj[k] = tj[k] * 2 - 1;
        const real *R cp = c_prev + b * cp_s, *R hp = h_prev + b * hp_s;
        real *R cc = cand_c ? cand_c + b * H : scratch_c, *R tc = tanh_c + b * H, *R ho = h_out + b * H;
        FN(lstm_cand)(H, cc, cp, sf, si, tj);
        for (long k = 0; k < H; k++) tc[k] = FN(sigmoid)(cc[k] * 2) * 2 - 1;
        real *R hc = masked ? scratch_h : ho;
        for (long k = 0; k < H; k++) hc[k] = tc[k] * so[k];
        if (masked) {
            FN(lerp_row)(H, ho, hp, hc, u);
            FN(lerp_row)(H, c_out + b * H, cp, cc, u);
        }
        if (h_next) {
            real *R hn = h_next + b * hn_s;
            for (long k = 0; k < H; k++) hn[k] = ho[k];
        }
        if (gate) FN(gate_advance)(gate, t, b, u, FN(dot)(H, cc, gate->w));
    }
}

/* dh, dc: (B, H) gradients of h_t, c_t on entry, of h_{t-1}, c_{t-1} on exit, except that the matmul
 * term dgates_t @ W_hh is left to the caller, who passes it to the next call as dh_mm.
 * dg: (B, 4H) gate pre-activation gradients out. u: (B,) updates when masked, else NULL.
 * Gated: dgw_rows (B, H) accumulates dz·c̃ per row (the update gate's weight gradient, summed by the caller). */
static void FN(lstm_backward_step)(long t, long b0, long b1, long H, const real *acts, const real *tanh_c, const real *c_prev, long cp_s,
                            real *dh, real *dc, const real *dh_mm, const real *dout_prev, real *dg, const real *u,
                            const real *h_prev, long hp_s, const real *gate_w, real *dgw_rows,
                            const FN(gate_bwd) *gate) {
    const long G = 4 * H;
    for (long b = b0; b < b1; b++) {
        real dcn[H], cc[H], terms[H];
        real *R dhr = dh + b * H, *R dcr = dc + b * H;
        const real *R cp = c_prev + b * cp_s;
        if (dh_mm) {
            const real *R mm = dh_mm + b * H;
            for (long k = 0; k < H; k++) dhr[k] += mm[k];
        }
        const real *R a = acts + b * G, *R tc = tanh_c + b * H;
        const real *R si = a, *R tj = a + H, *R sf = a + 2 * H, *R so = a + 3 * H;
        real uu = u ? u[b] : (real)1, stay = (real)1 - uu, dz = 0;
        if (gate) {  /* dL/du = <h̃ − h_prev, dh> + <c̃ − c_prev, dc>, with h̃ and c̃ recomputed as in the forward step */
            const real *R hp = h_prev + b * hp_s;
            FN(lstm_cand)(H, cc, cp, sf, si, tj);
            for (long k = 0; k < H; k++) terms[k] = (tc[k] * so[k] - hp[k]) * dhr[k] + (cc[k] - cp[k]) * dcr[k];
            real s = FN(dot)(H, terms, NULL);
            dz = FN(gate_back)(gate, t, b, s);
            real *R gw = dgw_rows + b * H;
            for (long k = 0; k < H; k++) gw[k] += dz * cc[k];
        }
        real *R di = dg + b * G, *R dj = di + H, *R df = di + 2 * H, *R d_o = di + 3 * H;
        /* dc̃ = u·(dc + dh·σ(o)·(1 − tanh²c̃)) + dz·w */
        for (long k = 0; k < H; k++) dcn[k] = dcr[k] + dhr[k] * (so[k] - so[k] * tc[k] * tc[k]);
        if (u)
            for (long k = 0; k < H; k++) dcn[k] *= uu;
        if (gate)
            for (long k = 0; k < H; k++) dcn[k] += dz * gate_w[k];
        for (long k = 0; k < H; k++) di[k] = (si[k] - si[k] * si[k]) * dcn[k] * tj[k];
        for (long k = 0; k < H; k++) dj[k] = ((real)1 - tj[k] * tj[k]) * dcn[k] * si[k];
        for (long k = 0; k < H; k++) df[k] = (sf[k] - sf[k] * sf[k]) * dcn[k] * cp[k];
        for (long k = 0; k < H; k++) d_o[k] = (so[k] - so[k] * so[k]) * tc[k] * dhr[k] * uu;
        /* carried: dc_prev = (1 − u)·dc + dc̃·σ(f); dh_prev = (1 − u)·dh (+ the output gradient at t − 1) */
        const real *R dop = dout_prev ? dout_prev + b * H : NULL;
        for (long k = 0; k < H; k++) dcr[k] = dcr[k] * stay + dcn[k] * sf[k];
        if (dop)
            for (long k = 0; k < H; k++) dhr[k] = dop[k] + dhr[k] * stay;
        else
            for (long k = 0; k < H; k++) dhr[k] *= stay;
    }
}

/* -------------------------------------------------------------------------------------------- GRU
 * Step 1 (before the candidate's matmul): rz = σ(pre_rz); rh = r ⊙ h_prev, the candidate's matmul input. */
static void FN(gru_gates_step)(long b0, long b1, long H, const real *pre, long pre_s, real *rz, const real *h_prev, long hp_s,
                        real *rh, long rh_s) {
    for (long b = b0; b < b1; b++) {
        const real *R p = pre + b * pre_s, *R hp = h_prev + b * hp_s;
        real *R a = rz + b * 2 * H, *R o = rh + b * rh_s;
        for (long k = 0; k < 2 * H; k++) a[k] = FN(sigmoid)(p[k]);
        for (long k = 0; k < H; k++) o[k] = a[k] * hp[k];
    }
}

/* h̃ = lerp(n, h_prev, z), z varying: both sides of torch's formula, selected per element. */
static inline void FN(gru_cand)(long H, real *R hc, const real *R n, const real *R hp, const real *R z) {
    for (long k = 0; k < H; k++)
        hc[k] = z[k] < (real)0.5 ? n[k] + z[k] * (hp[k] - n[k]) : hp[k] - (hp[k] - n[k]) * ((real)1 - z[k]);
}

/* Step 2: n = tanh (pre_n arrives scaled by 2), h̃ = lerp(n, h_prev, z), h = lerp(h_prev, h̃, u).
 * h̃ is not kept: the backward step recomputes it. */
static void FN(gru_forward_step)(long t, long b0, long b1, long H, const real *pre_n, long pn_s, const real *rz, const real *h_prev, long hp_s,
                          real *cand, real *h_out, real *h_next, long hn_s, const real *mask, const FN(gate_fwd) *gate) {
    const int masked = gate != NULL || mask != NULL;
    for (long b = b0; b < b1; b++) {
        real scratch[H];
        real u = 1;
        if (gate) u = FN(gate_update)(gate, t, b);
        else if (mask) u = mask[b];
        const real *R p = pre_n + b * pn_s, *R hp = h_prev + b * hp_s, *R z = rz + b * 2 * H + H;
        real *R n = cand + b * H, *R ho = h_out + b * H;
        for (long k = 0; k < H; k++) n[k] = FN(sigmoid)(p[k]) * 2 - 1;
        real *R hc = masked ? scratch : ho;
        FN(gru_cand)(H, hc, n, hp, z);
        if (masked) FN(lerp_row)(H, ho, hp, hc, u);
        if (h_next) {
            real *R hn = h_next + b * hn_s;
            for (long k = 0; k < H; k++) hn[k] = ho[k];
        }
        if (gate) FN(gate_advance)(gate, t, b, u, FN(dot)(H, hc, gate->w));
    }
}

/* Backward step 1: everything but the terms of d(r ⊙ h_prev) = dg_n @ W_n, which the caller computes
 * next and passes to step 2. dg_rz gets dz_pre and r(1 − r) (completed by step 2); dg_n gets dn_pre. */
static void FN(gru_backward_step1)(long t, long b0, long b1, long H, const real *rz, const real *cand, const real *h_prev, long hp_s, real *dh,
                            const real *dh_mm, const real *dout_prev, real *dg_rz, real *dg_n, const real *u,
                            const real *gate_w, real *dgw_rows, const FN(gate_bwd) *gate) {
    for (long b = b0; b < b1; b++) {
        real dhn[H], hc[H], diff[H];
        real *R dhr = dh + b * H;
        const real *R hp = h_prev + b * hp_s;
        if (dh_mm) {
            const real *R mm = dh_mm + b * H;
            for (long k = 0; k < H; k++) dhr[k] += mm[k];
        }
        const real *R r = rz + b * 2 * H, *R z = r + H, *R n = cand + b * H;
        real uu = u ? u[b] : (real)1, stay = (real)1 - uu, dz = 0;
        if (gate) {  /* dL/du = <h̃ − h_prev, dh>, h̃ recomputed as in the forward step */
            FN(gru_cand)(H, hc, n, hp, z);
            for (long k = 0; k < H; k++) diff[k] = hc[k] - hp[k];
            real s = FN(dot)(H, diff, dhr);
            dz = FN(gate_back)(gate, t, b, s);
            real *R gw = dgw_rows + b * H;
            for (long k = 0; k < H; k++) gw[k] += dz * hc[k];
        }
        real *R dr = dg_rz + b * 2 * H, *R dzp = dr + H, *R dn = dg_n + b * H;
        /* dh̃ = u·dh + dz·w */
        for (long k = 0; k < H; k++) dhn[k] = dhr[k] * uu;
        if (gate)
            for (long k = 0; k < H; k++) dhn[k] += dz * gate_w[k];
        for (long k = 0; k < H; k++) dn[k] = ((real)1 - n[k] * n[k]) * (dhn[k] - z[k] * dhn[k]);
        for (long k = 0; k < H; k++) dzp[k] = (z[k] - z[k] * z[k]) * (hp[k] - n[k]) * dhn[k];
        for (long k = 0; k < H; k++) dr[k] = r[k] - r[k] * r[k];
        /* carried: dh_prev = (1 − u)·dh (+ the output gradient at t − 1) + z·dh̃ (+ step 2's terms) */
        const real *R dop = dout_prev ? dout_prev + b * H : NULL;
        if (dop)
            for (long k = 0; k < H; k++) dhr[k] = dop[k] + dhr[k] * stay + z[k] * dhn[k];
        else
            for (long k = 0; k < H; k++) dhr[k] = dhr[k] * stay + z[k] * dhn[k];
    }
}

/* Backward step 2: drh = dg_n @ W_n (B, H); dr_pre = r(1 − r) h_prev drh; dh += r drh. */
static void FN(gru_backward_step2)(long b0, long b1, long H, const real *rz, const real *h_prev, long hp_s, const real *drh,
                            real *dg_rz, real *dh) {
    for (long b = b0; b < b1; b++) {
        const real *R r = rz + b * 2 * H, *R hp = h_prev + b * hp_s, *R d = drh + b * H;
        real *R dr = dg_rz + b * 2 * H, *R dhr = dh + b * H;
        for (long k = 0; k < H; k++) dr[k] = dr[k] * hp[k] * d[k];
        for (long k = 0; k < H; k++) dhr[k] += r[k] * d[k];
    }
}


/* ------------------------------------------------------------------------------ one sequence, eval
 * A single-layer model over one sequence (batch 1) without autograd, as inference.py's skipping path:
 * a step with u_t = 0 costs only the ũ recursion; the cell runs only where u_t = 1, and its result is
 * then exactly the candidate (lerp with u = 1), as on the dense path. Steps from `length` on are masked.
 * wt: (I + 1 + H, G) = [W_ih, b, W_hh]ᵀ, tanh rows scaled by 2 (G = 4H: i, 2j, f, o; G = 3H: r, z, 2n).
 * gate_w NULL: not gated (u_t = keep_t). h, c (LSTM) and state = (Δũ, cum) are updated in place. */
static inline void FN(axpy)(long n, real *R y, real a, const real *R w) {
    for (long k = 0; k < n; k++) y[k] += a * w[k];
}

/* An updating step of one row from its pre-activations, as the dense step with u = 1 (whose h is then exactly h̃).
 * LSTM: pre (4H) [i, 2j, f, o] is overwritten by its activations; c, h updated; cand gets c̃, the gate's input. */
static inline void FN(lstm_update_row)(long H, real *R pre, real *R h, real *R c, real *R cand) {
    for (long g = 0; g < 4 * H; g++) pre[g] = FN(sigmoid)(pre[g]);
    real *R si = pre, *R tj = pre + H, *R sf = pre + 2 * H, *R so = pre + 3 * H;
    for (long k = 0; k < H; k++) tj[k] = tj[k] * 2 - 1;
    FN(lstm_cand)(H, cand, c, sf, si, tj);
    for (long k = 0; k < H; k++) {
        c[k] = cand[k];
        h[k] = (FN(sigmoid)(cand[k] * 2) * 2 - 1) * so[k];
    }
}

/* GRU, first half: pre (2H) [r, z] becomes σ(r), σ(z); rh gets r ⊙ h, the candidate's matmul input. */
static inline void FN(gru_gates_row)(long H, real *R pre, const real *R h, real *R rh) {
    for (long g = 0; g < 2 * H; g++) pre[g] = FN(sigmoid)(pre[g]);
    for (long k = 0; k < H; k++) rh[k] = pre[k] * h[k];
}

/* GRU, second half: pre_n (H, scaled by 2) gives n (into n_tmp); cand and h get h̃ = lerp(n, h, z). */
static inline void FN(gru_update_row)(long H, const real *R pre_n, const real *R z, real *R h, real *R cand,
                                      real *R n_tmp) {
    for (long k = 0; k < H; k++) n_tmp[k] = FN(sigmoid)(pre_n[k]) * 2 - 1;
    FN(gru_cand)(H, cand, n_tmp, h, z);
    for (long k = 0; k < H; k++) h[k] = cand[k];
}

static void FN(skip_sequence_run)(long gru, long T, long I, long H, const real *x, const real *wt, const real *gate_w,
                       const real *gate_b, const real *keep, long length, real *h, real *c, real *state, real *out,
                       real *updates) {
    const long G = gru ? 3 * H : 4 * H;
    real pre[G], tmp[H], cand[H];
    real up = state[0], cum = state[1];
    for (long t = 0; t < T; t++) {
        real u = 0, u_tilde = 0;
        if (t < length) {
            u = 1;
            if (gate_w) {
                real one_minus_cum = (real)1 - cum;
                u_tilde = cum + (up < one_minus_cum ? up : one_minus_cum);
                u = RINT(u_tilde);
            }
            if (keep) u *= keep[t];
        }
        if (u != 0) {
            const real *R xt = x + t * I, *R wh = wt + (I + 1) * G;
            for (long g = 0; g < G; g++) pre[g] = wt[I * G + g];  /* the bias row: x's trailing 1 */
            for (long k = 0; k < I; k++) FN(axpy)(G, pre, xt[k], wt + k * G);
            if (!gru) {
                for (long k = 0; k < H; k++) FN(axpy)(G, pre, h[k], wh + k * G);
                FN(lstm_update_row)(H, pre, h, c, cand);
            } else {
                for (long k = 0; k < H; k++) FN(axpy)(2 * H, pre, h[k], wh + k * G);
                FN(gru_gates_row)(H, pre, h, tmp);
                for (long k = 0; k < H; k++) FN(axpy)(H, pre + 2 * H, tmp[k], wh + k * G + 2 * H);
                FN(gru_update_row)(H, pre + 2 * H, pre + H, h, cand, tmp);
            }
            if (gate_w) {
                up = FN(sigmoid)(FN(dot)(H, cand, gate_w) + gate_b[0]);
                cum = u_tilde - u * u_tilde;
            }
        } else if (gate_w && t < length) {
            cum = u_tilde - u * u_tilde;
        }
        for (long k = 0; k < H; k++) out[t * H + k] = h[k];
        updates[t] = u;
    }
    state[0] = up;
    state[1] = cum;
}


#include "gemm.h"
#include "skip_batch.h"

/* ------------------------------------------------------------------------------------- the exports
 * Each finds step t's rows in the whole buffers of its struct (args.h), then runs the step above. */
#define ROWS(buf, t, width) ((buf) + (t) * a->B * (width))                  /* step t of a (T, B, width) buffer */
#define H_PREV(t) (a->xh + (t) * a->B * a->xrow + a->h_col)               /* h_{t-1} inside xh's row t */
#define STEP_OR_NULL(buf, t) ((buf) ? ROWS(buf, t, 1) : NULL)             /* step t of an optional (T, B) one */

/* Each kernel below runs the whole sequence, each thread for its own rows b0 .. b1 (ROW_REGION, thread_rows): rows
 * never meet (each row's state, gate and gradients are its own, and the products give a row the same sums whichever
 * rows share its block), so the threads need no barrier. The weights are packed once per call. */

/* Forward: per step the recurrent product (for numerics=reproducible the sums of gemm_run, element for element),
 * then the step's elementwise work. */
KERNEL(lstm_forward, lstm_fwd_args) {
    const long H = a->H, B = a->B, K = a->xrow, G = 4 * H;
    const int masked = a->gate != NULL || a->mask != NULL;
    FN(packed) w = FN(gemm_pack_all)(a->w, 1, K, K, G);  /* B[k, j] = w[j, k] */
    real *pre = malloc(sizeof(real) * (size_t)(B * G));
    a->status[0] = !(w.data && pre);
    if (!a->status[0])
        ROW_REGION(a->B) {
            long b0, b1;
            thread_rows(a->B, GEMM_MR, &b0, &b1);
            for (long t = 0; t < a->T; t++) {
                real *cs = ROWS(a->cs, t, H);
                FN(gemm_packed_run)(b1 - b0, ROWS(a->xh, t, K) + b0 * K, K, &w, pre + b0 * G, G);
                FN(lstm_forward_step)(t, b0, b1, H, pre, G, ROWS(a->acts, t, G), t ? ROWS(a->cs, t - 1, H) : a->c0,
                                      t ? H : a->c0_s, H_PREV(t), a->xrow, masked ? NULL : cs, ROWS(a->tanh_c, t, H),
                                      ROWS(a->out, t, H), masked ? cs : NULL, t + 1 < a->T ? H_PREV(t + 1) : NULL,
                                      a->xrow, a->gate ? NULL : STEP_OR_NULL(a->mask, t), a->gate);
            }
        }
    free(pre);
    free(w.data);
}

/* Backward, in reverse: per step the elementwise work, whose dh_{t-1} then gets the step's product dgates_t · W_hh
 * (added at the start of the next step, and to dh_0 at the end). */
KERNEL(lstm_backward, lstm_bwd_args) {
    const long H = a->H, B = a->B, G = 4 * H;
    FN(packed) w = FN(gemm_pack_all)(a->w_hh_t, 1, G, G, H);  /* B[k, j] = w_hh_t[j, k] */
    real *mm = malloc(sizeof(real) * (size_t)(B * H));
    a->status[0] = !(w.data && mm);
    if (!a->status[0] && a->T > 0)
        ROW_REGION(a->B) {
            long b0, b1;
            thread_rows(a->B, GEMM_MR, &b0, &b1);
            for (long t = a->T - 1; t >= 0; t--) {
                FN(lstm_backward_step)(t, b0, b1, H, ROWS(a->acts, t, G), ROWS(a->tanh_c, t, H),
                                       t ? ROWS(a->cs, t - 1, H) : a->c0, t ? H : a->c0_s, a->dh, a->dc,
                                       t + 1 < a->T ? mm : NULL, a->dout && t > 0 ? ROWS(a->dout, t - 1, H) : NULL,
                                       ROWS(a->dg, t, G), STEP_OR_NULL(a->u, t), H_PREV(t), a->xrow, a->gate_w,
                                       a->dgw_rows, a->gate);
                FN(gemm_packed_run)(b1 - b0, ROWS(a->dg, t, G) + b0 * G, G, &w, mm + b0 * H, H);
            }
            for (long i = b0 * H; i < b1 * H; i++) a->dh[i] += mm[i];
        }
    free(mm);
    free(w.data);
}

KERNEL(gru_forward, gru_fwd_args) {
    const long H = a->H, B = a->B, K = a->xrow;
    FN(packed) w_rz = FN(gemm_pack_all)(a->w_rz, 1, K, K, 2 * H), w_n = FN(gemm_pack_all)(a->w_n, 1, K, K, H);
    real *pre = malloc(sizeof(real) * (size_t)(B * 2 * H));
    a->status[0] = !(w_rz.data && w_n.data && pre);
    if (!a->status[0])
        ROW_REGION(a->B) {
            long b0, b1;
            thread_rows(a->B, GEMM_MR, &b0, &b1);
            for (long t = 0; t < a->T; t++) {
                real *xrh = ROWS(a->xrh, t, K);
                FN(gemm_packed_run)(b1 - b0, ROWS(a->xh, t, K) + b0 * K, K, &w_rz, pre + b0 * 2 * H, 2 * H);
                FN(gru_gates_step)(b0, b1, H, pre, 2 * H, ROWS(a->rz, t, 2 * H), H_PREV(t), a->xrow, xrh + a->h_col,
                                   a->xrow);
                /* n's pre-activations in the first H columns of the rows' own 2H: other rows belong to others */
                FN(gemm_packed_run)(b1 - b0, xrh + b0 * K, K, &w_n, pre + b0 * 2 * H, 2 * H);
                FN(gru_forward_step)(t, b0, b1, H, pre, 2 * H, ROWS(a->rz, t, 2 * H), H_PREV(t), a->xrow, ROWS(a->cand, t, H),
                                     ROWS(a->out, t, H), t + 1 < a->T ? H_PREV(t + 1) : NULL, a->xrow,
                                     a->gate ? NULL : STEP_OR_NULL(a->mask, t), a->gate);
            }
        }
    free(pre);
    free(w_n.data);
    free(w_rz.data);
}

/* Per step: step 1, then d(r ⊙ h_{t-1}) = dg_n · W_n for step 2, then [dr, dz] · W_rz for the next step. */
KERNEL(gru_backward, gru_bwd_args) {
    const long H = a->H, B = a->B;
    FN(packed) w_rz = FN(gemm_pack_all)(a->w_rz_t, 1, 2 * H, 2 * H, H), w_n = FN(gemm_pack_all)(a->w_n_t, 1, H, H, H);
    real *mm = malloc(sizeof(real) * (size_t)(B * H)), *drh = malloc(sizeof(real) * (size_t)(B * H));
    a->status[0] = !(w_rz.data && w_n.data && mm && drh);
    if (!a->status[0] && a->T > 0)
        ROW_REGION(a->B) {
            long b0, b1;
            thread_rows(a->B, GEMM_MR, &b0, &b1);
            for (long t = a->T - 1; t >= 0; t--) {
                real *dg_rz = ROWS(a->dg_rz, t, 2 * H), *dg_n = ROWS(a->dg_n, t, H);
                FN(gru_backward_step1)(t, b0, b1, H, ROWS(a->rz, t, 2 * H), ROWS(a->cand, t, H), H_PREV(t), a->xrow,
                                       a->dh, t + 1 < a->T ? mm : NULL,
                                       a->dout && t > 0 ? ROWS(a->dout, t - 1, H) : NULL, dg_rz, dg_n,
                                       STEP_OR_NULL(a->u, t), a->gate_w, a->dgw_rows, a->gate);
                FN(gemm_packed_run)(b1 - b0, dg_n + b0 * H, H, &w_n, drh + b0 * H, H);
                FN(gru_backward_step2)(b0, b1, H, ROWS(a->rz, t, 2 * H), H_PREV(t), a->xrow, drh, dg_rz, a->dh);
                FN(gemm_packed_run)(b1 - b0, dg_rz + b0 * 2 * H, 2 * H, &w_rz, mm + b0 * H, H);
            }
            for (long i = b0 * H; i < b1 * H; i++) a->dh[i] += mm[i];
        }
    free(drh);
    free(mm);
    free(w_n.data);
    free(w_rz.data);
}

KERNEL(skip_sequence, skip_sequence_args) {
    FN(skip_sequence_run)(a->gru, a->T, a->I, a->H, a->x, a->wt, a->gate_w, a->gate_b, a->keep, a->length, a->h,
                          a->c, a->state, a->out, a->updates);
}

KERNEL(gemm, gemm_args) { FN(gemm_run)(a); }

KERNEL(skip_batch, skip_batch_args) { FN(skip_batch_run)(a); }

#undef ROWS
#undef H_PREV
#undef STEP_OR_NULL
#undef FIELD
#undef LAYOUT
#undef ARGS_STRUCT
#undef KERNEL
#undef R
