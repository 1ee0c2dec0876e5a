/* The fused SkipRNN (skiprnn/backends/fused/) in C: its time steps, whole passes over a sequence, and inference.
 *
 * The Python loop in fused/lstm.py and fused/gru.py spends most of a step in ~25 small tensor ops, each a dispatch of a few µs.
 * These functions do the same arithmetic, row by row; each exported kernel runs a whole sequence, with the
 * per-step products on packed weights (csrc/gemm.h) between the elementwise steps. Every formula mirrors the
 * Python path line by line, including torch.lerp's two-sided form and round-half-to-even, so the two
 * paths agree to float rounding (tests/backends/test_fused.py runs both).
 *
 * Layout: every (B, N) block is row-major with the row stride given; NULL means "absent".
 * The LSTM's j rows and the GRU's candidate rows arrive pre-scaled by 2 (tanh(x) = 2σ(2x) − 1).
 * Compiled twice, for float (suffix _f32) and double (_f64); see skiprnn/backends/native/__init__.py.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#include "args.h"

/* Rows are independent: the sequence kernels split them over torch's OpenMP threads (gemm_run splits column
 * panels). Torch's Linux wheels load libgomp.so.1, and this library's libgomp.so.1 resolves to that same copy by
 * soname (one thread pool, torch.set_num_threads applies); with another OpenMP runtime in torch the kernels get a
 * pool of their own. */
#ifdef _OPENMP
#include <omp.h>
#define OMP(directive) _Pragma(#directive)
#else
#define OMP(directive)
#endif
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

/* The threads a kernel may use: set_threads(n), else torch's (omp_get_max_threads). numerics=reproducible runs
 * torch's own ops on one thread and gives the kernels the run's threads here: every kernel computes each output
 * whole on one thread, so their results do not depend on the count. */
static int skiprnn_threads = 0;
void set_threads(long n) { skiprnn_threads = (int)n; }
#ifdef _OPENMP
#define THREADS (skiprnn_threads > 0 ? skiprnn_threads : omp_get_max_threads())
#endif

#ifdef _OPENMP
/* The rows of a batch are split over the threads in whole blocks of `block` rows (the product's row blocks, so
 * each thread's blocks start where they would on one thread): at most one thread per block. */
static inline long row_threads(long B, long block) {
    const long blocks = (B + block - 1) / block;
    return blocks < THREADS ? blocks : THREADS;
}
#endif
/* A region whose threads each take their rows of a batch of B (thread_rows), from more than one row block up. */
#define ROW_REGION(B) OMP(omp parallel num_threads(row_threads(B, GEMM_MR)) if ((B) > GEMM_MR))

/* This thread's rows b0 .. b1 of B in a region of row_threads(B, block) threads: its even share of the blocks. */
static inline void thread_rows(long B, long block, long *b0, long *b1) {
    long id = 0, threads = 1;
#ifdef _OPENMP
    id = omp_get_thread_num();
    threads = omp_get_num_threads();
#endif
    const long blocks = (B + block - 1) / block, first = id * blocks / threads, end = (id + 1) * blocks / threads;
    *b0 = first * block < B ? first * block : B;
    *b1 = end * block < B ? end * block : B;
}

#ifdef SKIPRNN_REPRODUCIBLE
/* e^x in float from +, −, × and bit operations only, so that it is the same function on every CPU and at every
 * vector width (glibc's expf and libmvec pick code by CPU and width): x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by
 * its Taylor polynomial to r⁷ (truncation below 6e-9 relative), 2^n from the exponent bits. Within 2 ulp. */
static inline float repro_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float shifter = 12582912.0f;  /* 1.5 · 2^23: adding it rounds to an integer */
    float n = (x * 1.44269504088896341f + shifter) - shifter;
    float r = x - n * 0.693145751953125f;  /* ln 2 in two parts: n · hi is exact */
    r = r - n * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}
#define EXP_F32 repro_expf
#else
#define EXP_F32 expf
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

#define real float
#define EXP EXP_F32
#define FMA fmaf
#if defined(__AVX2__) && defined(__FMA__)
#define GEMM_AVX2 1
#else
#define GEMM_AVX2 0
#endif
#define EXP_LIMIT 80.0f
#define RINT nearbyintf
#define FN(name) CAT(name, _f32)
#include "steps_impl.h"
#undef real
#undef EXP
#undef EXP_LIMIT
#undef RINT
#undef FN
#undef FMA
#undef GEMM_AVX2

#define real double
#define EXP exp
#define FMA fma
#define GEMM_AVX2 0
#define EXP_LIMIT 700.0
#define RINT nearbyint
#define FN(name) CAT(name, _f64)
#include "steps_impl.h"
