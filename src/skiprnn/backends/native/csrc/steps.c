/* One time step of the fused SkipRNN (skiprnn/backends/fused.py), elementwise part only.
 *
 * The Python loop in fused.py spends most of a step in ~25 small tensor ops, each a dispatch of a few µs.
 * These functions do the same arithmetic, row by row, in one call per step (two for the GRU, whose
 * candidate needs a matmul in between). The matmuls stay in torch (oneDNN). Every formula mirrors the
 * Python path line by line, including torch.lerp's two-sided form and round-half-to-even, so the two
 * paths agree to float rounding (tests/backends/test_fused.py runs both).
 *
 * Layout: every (B, N) block is row-major with the row stride given; NULL means "absent".
 * The LSTM's j rows and the GRU's candidate rows arrive pre-scaled by 2 (tanh(x) = 2σ(2x) − 1).
 * Compiled twice, for float (suffix _f32) and double (_f64); see skiprnn/backends/native/__init__.py.
 */
#include <math.h>
#include <stddef.h>

#include "args.h"

/* Rows are independent: split them over torch's OpenMP threads when a step has enough work to pay for
 * it, as torch's own elementwise kernels do. Torch's Linux wheels load libgomp.so.1, and this library's
 * libgomp.so.1 resolves to that same copy by soname (one thread pool, torch.set_num_threads applies);
 * with another OpenMP runtime in torch the kernels get a pool of their own. */
#ifdef _OPENMP
#define PARALLEL_ROWS _Pragma("omp parallel for schedule(static) if (B * H >= 16384)")
#else
#define PARALLEL_ROWS
#endif

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

#define real float
#define EXP expf
#define EXP_LIMIT 80.0f
#define RINT nearbyintf
#define FN(name) CAT(name, _f32)
#include "steps_impl.h"
#undef real
#undef EXP
#undef EXP_LIMIT
#undef RINT
#undef FN

#define real double
#define EXP exp
#define EXP_LIMIT 700.0
#define RINT nearbyint
#define FN(name) CAT(name, _f64)
#include "steps_impl.h"
