/* Included by steps_impl.h once per element type. The matmul of numerics=reproducible.
 *
 * Every element of C is a fixed sum: for each block of GEMM_KC values of k, in order, one chain of fused
 * multiply-adds from 0 (s = fma(a_ik, b_kj, s), k ascending), then c = c + s (the first block: c = s, or c + s when
 * accumulating). A fused multiply-add is correctly rounded on every CPU, so the result depends on neither the vector
 * width, the thread that computes the element, nor the CPU: the AVX2 micro-kernel below and the plain C loop give the
 * same bits. Summing per block also keeps long reductions (a weight gradient over T·B rows) more accurate than one
 * chain. B is copied in panels of GEMM_NR columns, GEMM_KC rows at a time, that stay in L1 while every GEMM_MR-row
 * block of A passes over them. */
#define GEMM_MR 6
#define GEMM_NR 16
#define GEMM_KC 256

#if !GEMM_AVX2
/* One block of at most GEMM_MR × GEMM_NR elements over kc steps; bp: the packed panel (kc rows of GEMM_NR). */
static void FN(gemm_block)(long mr, long nr, long kc, const real *A, long sam, long sak, const real *bp, real *C,
                           long ldc, int load) {
    real acc[GEMM_MR][GEMM_NR];
    for (long i = 0; i < mr; i++)
        for (long j = 0; j < nr; j++) acc[i][j] = 0;
    for (long k = 0; k < kc; k++) {
        const real *b = bp + k * GEMM_NR;
        for (long i = 0; i < mr; i++) {
            const real a = A[i * sam + k * sak];
            for (long j = 0; j < nr; j++) acc[i][j] = FMA(a, b[j], acc[i][j]);
        }
    }
    for (long i = 0; i < mr; i++)
        for (long j = 0; j < nr; j++) C[i * ldc + j] = load ? C[i * ldc + j] + acc[i][j] : acc[i][j];
}
#else
/* The full 6 × 16 float block in AVX2 registers: 12 accumulators, the same fma chain per element. */
static void FN(gemm_block_avx2)(long kc, const real *A, long sam, long sak, const real *bp, real *C, long ldc,
                                int load) {
    __m256 c[GEMM_MR][2];
    for (int i = 0; i < GEMM_MR; i++)
        c[i][0] = c[i][1] = _mm256_setzero_ps();
    for (long k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_loadu_ps(bp + k * GEMM_NR), b1 = _mm256_loadu_ps(bp + k * GEMM_NR + 8);
        const real *a = A + k * sak;
        for (int i = 0; i < GEMM_MR; i++) {
            const __m256 ai = _mm256_set1_ps(a[i * sam]);
            c[i][0] = _mm256_fmadd_ps(ai, b0, c[i][0]);
            c[i][1] = _mm256_fmadd_ps(ai, b1, c[i][1]);
        }
    }
    for (int i = 0; i < GEMM_MR; i++) {
        if (load) {
            c[i][0] = _mm256_add_ps(_mm256_loadu_ps(C + i * ldc), c[i][0]);
            c[i][1] = _mm256_add_ps(_mm256_loadu_ps(C + i * ldc + 8), c[i][1]);
        }
        _mm256_storeu_ps(C + i * ldc, c[i][0]);
        _mm256_storeu_ps(C + i * ldc + 8, c[i][1]);
    }
}

/* An edge block (fewer rows or columns): the same kernel into a zero-padded copy of C, then its mr × nr corner. A is
 * read in place when all GEMM_MR rows exist (the last column panel), from a zero-padded copy otherwise. */
static void FN(gemm_edge_avx2)(long mr, long nr, long kc, const real *A, long sam, long sak, const real *bp, real *C,
                               long ldc, int load) {
    real ap[GEMM_KC * GEMM_MR], ct[GEMM_MR * GEMM_NR];
    for (long i = 0; i < GEMM_MR; i++)
        for (long j = 0; j < GEMM_NR; j++) ct[i * GEMM_NR + j] = i < mr && j < nr ? C[i * ldc + j] : (real)0;
    if (mr == GEMM_MR) {
        FN(gemm_block_avx2)(kc, A, sam, sak, bp, ct, GEMM_NR, load);
    } else {
        for (long k = 0; k < kc; k++)
            for (long i = 0; i < GEMM_MR; i++) ap[k * GEMM_MR + i] = i < mr ? A[i * sam + k * sak] : (real)0;
        FN(gemm_block_avx2)(kc, ap, 1, GEMM_MR, bp, ct, GEMM_NR, load);
    }
    for (long i = 0; i < mr; i++)
        for (long j = 0; j < nr; j++) C[i * ldc + j] = ct[i * GEMM_NR + j];
}
#endif

/* Rows k0 .. k0 + kc of B's GEMM_NR-column panel p, copied into bp (kc rows of GEMM_NR), zero past column N. */
static void FN(gemm_pack)(const real *B, long sbk, long sbn, long N, long k0, long kc, long p, real *bp) {
    const long j0 = p * GEMM_NR;
    if (sbn == 1 && j0 + GEMM_NR <= N) {  /* a full panel of contiguous rows: plain copies the compiler vectorises */
        for (long k = 0; k < kc; k++) memcpy(bp + k * GEMM_NR, B + (k0 + k) * sbk + j0, sizeof(real) * GEMM_NR);
        return;
    }
    for (long k = 0; k < kc; k++)
        for (long j = 0; j < GEMM_NR; j++)
            bp[k * GEMM_NR + j] = j0 + j < N ? B[(k0 + k) * sbk + (j0 + j) * sbn] : (real)0;
}

/* C[0:M, 0:nr] (+)= A[0:M, 0:kc] · bp, one block of GEMM_MR rows at a time. */
static void FN(gemm_panel)(long M, long nr, long kc, const real *A, long sam, long sak, const real *bp, real *C,
                           long ldc, int load) {
    for (long i0 = 0; i0 < M; i0 += GEMM_MR) {
        const long mr = M - i0 < GEMM_MR ? M - i0 : GEMM_MR;
        const real *Ai = A + i0 * sam;
        real *Ci = C + i0 * ldc;
#if GEMM_AVX2
        if (mr == GEMM_MR && nr == GEMM_NR)
            FN(gemm_block_avx2)(kc, Ai, sam, sak, bp, Ci, ldc, load);
        else
            FN(gemm_edge_avx2)(mr, nr, kc, Ai, sam, sak, bp, Ci, ldc, load);
#else
        FN(gemm_block)(mr, nr, kc, Ai, sam, sak, bp, Ci, ldc, load);
#endif
    }
}

static inline long FN(gemm_nr)(long N, long p) { return N - p * GEMM_NR < GEMM_NR ? N - p * GEMM_NR : GEMM_NR; }

/* Blocks of k outermost, so that a long reduction (a weight gradient over T·B rows) reads each block of A from
 * cache for every panel instead of streaming all of A once per panel; each element still sums its blocks in order.
 * Within a block the column panels are split over the threads: each element is computed whole by one thread. */
static void FN(gemm_run)(const FN(gemm_args) *g) {
    const long M = g->M, N = g->N, K = g->K, panels = (N + GEMM_NR - 1) / GEMM_NR;
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        if (!g->accumulate)
            for (long i = 0; i < M; i++)
                for (long j = 0; j < N; j++) g->C[i * g->ldc + j] = 0;
        return;
    }
    for (long k0 = 0; k0 < K; k0 += GEMM_KC) {
        const long kc = K - k0 < GEMM_KC ? K - k0 : GEMM_KC;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(THREADS) if (M * N * kc >= 262144 && panels > 1)
#endif
        for (long p = 0; p < panels; p++) {
            real bp[GEMM_KC * GEMM_NR];
            FN(gemm_pack)(g->B, g->sbk, g->sbn, N, k0, kc, p, bp);
            FN(gemm_panel)(M, FN(gemm_nr)(N, p), kc, g->A + k0 * g->sak, g->sam, g->sak, bp, g->C + p * GEMM_NR,
                           g->ldc, k0 > 0 || g->accumulate);
        }
    }
}

/* A constant B (K, N) packed once, all its panels (panel p: K rows of GEMM_NR), for many products with it. */
typedef struct {
    long K, N, panels;
    real *data;
} FN(packed);

static FN(packed) FN(gemm_pack_all)(const real *B, long sbk, long sbn, long K, long N) {
    FN(packed) w = {K, N, (N + GEMM_NR - 1) / GEMM_NR, NULL};
    w.data = malloc(sizeof(real) * (size_t)(w.panels * K * GEMM_NR + 1));
    if (w.data)
        for (long p = 0; p < w.panels; p++) FN(gemm_pack)(B, sbk, sbn, N, 0, K, p, w.data + p * K * GEMM_NR);
    return w;
}

/* Panel p of C (M, N) = A (M, K) · w: gemm_run's sums, element for element (the same blocks of k, in order). */
static void FN(gemm_packed_panel)(long M, const real *A, long sam, const FN(packed) *w, long p, real *C, long ldc) {
    for (long k0 = 0; k0 < w->K; k0 += GEMM_KC)
        FN(gemm_panel)(M, FN(gemm_nr)(w->N, p), w->K - k0 < GEMM_KC ? w->K - k0 : GEMM_KC, A + k0, sam, 1,
                       w->data + (p * w->K + k0) * GEMM_NR, C + p * GEMM_NR, ldc, k0 > 0);
}

/* C (M, N) = A (M, K) · w, on the calling thread. */
static void FN(gemm_packed_run)(long M, const real *A, long sam, const FN(packed) *w, real *C, long ldc) {
    for (long p = 0; p < w->panels; p++) FN(gemm_packed_panel)(M, A, sam, w, p, C, ldc);
}
