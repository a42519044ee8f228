/* fastact.h: the public C interface of fastact's SIMD kernels.
 *
 * Every kernel exists for float32 (_f32) and float64 (_f64).  Arguments
 * follow one order: upstream gradient first, then the saved tensor, then the
 * output, then sizes, then parameters, then the thread count.  Buffers are
 * contiguous and may sit at any byte offset; an output may be exactly the
 * same buffer as an input (in place) but must not overlap it otherwise.
 * Math conventions (kinks, NaN, guards) are those of fastact/_registry.py.
 * Threads are fastact's own pool (c_src/pool.c): the calling thread and the
 * workers take chunks of a call as each is free, so a call never waits for a
 * worker that is not running; a process forked after using them runs
 * serially, and so does a call made while another thread's call holds them.
 *
 * The first call picks the best instruction set of the running CPU
 * (AVX-512, AVX2+FMA or the baseline); FASTACT_C_ISA=avx512|avx2|baseline
 * caps it.  nthreads <= 1 runs on the calling thread.  Large outputs of the
 * memory-bound kernels are written with streaming stores (fa_set_stream_min);
 * results are the same.
 *
 * The text between the cdef markers is read by build.py as the cffi cdef,
 * so it holds only declarations cffi can parse.
 */
#ifndef FASTACT_H
#define FASTACT_H

#include <stdint.h>

#include "ops.h"    /* the kernel ids FA_K_*, generated from fastact's registry */

#ifdef __cplusplus
extern "C" {
#endif

/* cdef begin */
/* instruction-set levels */
#define FA_ISA_BASELINE 0
#define FA_ISA_AVX2 1
#define FA_ISA_AVX512 2

int fa_isa(void);                 /* level in use (resolves on first call) */
int fa_best_isa(void);            /* best level this CPU supports */
int fa_set_isa(int level);        /* use min(level, best); returns the level used */
const char *fa_isa_name(int level);
int fa_threads_built(void);       /* 1 when built with threads (the pool) */

/* Outputs of at least this many bytes are written with non-temporal
   (streaming) stores, which skip the read-for-ownership of the output's
   cache lines: whole chunks by the memory-bound kernels (FA_OUT_STREAM in
   c_src/ops.h, prelu forward, softmax backward), line by line as computed by
   the others (FA_OUT_PREFETCH); a negative value never streams.  Default
   1 << 22 (4 MiB); fastact sets config.STREAM_MIN_BYTES at load. */
void fa_set_stream_min(int64_t bytes);
int64_t fa_stream_min(void);
int64_t fa_llc_bytes(void);        /* last-level cache by cpuid; 0 if unknown */

/* dtype ids; the narrow ones (float16, bfloat16) take fa_elementwise,
   fa_rowwise and fa_rowwise_inner: chunks or rows converted to float32,
   computed by the float32 kernels, rounded once (c_src/narrow.inc) */
enum { FA_F32_IDX, FA_F64_IDX, FA_F16_IDX, FA_BF16_IDX };

/* Tests: n elements of a narrow dtype (FA_F16_IDX, FA_BF16_IDX) widened to
   float32 (to_f32 = 1) or float32 rounded to it, by the current level's
   conversions; returns 0, or -1 for another dtype or a negative n */
int fa_narrow_convert(int dtype, int to_f32, const void *in, void *out, int64_t n);

/* Every elementwise kernel, by id (FA_K_* below FA_K_ELEMENTWISE_COUNT,
   c_src/ops.h): in0 is x (forward) or the upstream gradient, in1 the saved
   array (backward; NULL forward); p0, p1, p2 the kernel's parameters in the
   registry's order (fastact/_registry.py: Spec.params), exact in the dtype,
   and key the RReLU stream key.  Returns 0, or -1 for an unknown dtype or
   kernel id or a negative n (nothing is touched). */
int fa_elementwise(int dtype, int kernel, const void *in0, const void *in1, void *out, int64_t n,
                   double p0, double p1, double p2, uint64_t key, int nthreads);

/* fa_elementwise on `rows` rows of m contiguous elements (in0, in1 and out
   of rows * m), element k of row r at flat index starts[r] + k of a larger
   array (RReLU's slopes keyed by it): the blocks of a chunked array.  Returns
   0, or -1 as fa_elementwise, or for a negative start. */
int fa_elementwise_rows(int dtype, int kernel, const void *in0, const void *in1, void *out,
                        int64_t rows, int64_t m, const int64_t *starts, double p0, double p1,
                        double p2, uint64_t key, int nthreads);

/* Every elementwise kernel on operands of any strides: in0, in1 (0
   forward) and out at the addresses ptrs[0..2], each the first element of a
   walk over `ndim` axes of extents dims (the inner axis last), operand k
   stepping strides[k * ndim + q] elements along axis q (any sign, 0 too).
   The outer axes are walked in C order; rows of the inner axis are cut
   into tiles of tile_rows x tile_cols elements.  Flags: bit k (k = 0, 1, 2:
   in0, in1, out) says operand k is used in place (its inner stride must be
   1), else it goes through a buffer of the tile, by columns where bit k + 4
   is set; buffers hold FA_WALK_BYTES, tiles at most FA_WALK_ROWS rows.
   The output must not overlap an input unless it is that input, walked
   alike.  Returns 0, or -1 for an unknown dtype or kernel id or arguments
   out of those bounds (nothing is touched).  fastact/_walk.py sets the
   walk and the tiles up. */
#define FA_WALK_BYTES 16384
#define FA_WALK_ROWS 256
#define FA_WALK_MAXDIM 64
int fa_elementwise_strided(int dtype, int kernel, const uintptr_t *ptrs, int ndim,
                           const int64_t *dims, const int64_t *strides, int64_t tile_rows,
                           int64_t tile_cols, int flags, double p0, double p1, double p2,
                           uint64_t key, int nthreads);

/* The row-wise kernels by id, for the same callers: FA_K_PRELU_FWD (in0 x,
   in1 w, out0 y; d0, d1, d2 = outer, C, inner), FA_K_PRELU_BWD (in0 g, in1
   x, in2 w, out0 gx, out1 gw: 2 d1 doubles), and the softmax family of c_src/ops.h
   (FA_ROW_FAMILY: softmax, log_softmax, softmin...): FA_K_<NAME>_FWD (in0 x,
   out0 y; d0 rows, d1 n), FA_K_<NAME>_BWD (in0 g, in1 y, out0 gx); unused
   pointers may be NULL.
   Every dtype id: on the narrow ones (float16, bfloat16: their uint16 bits)
   the float32 kernels run on rows or chunks widened into buffers and round
   their results once (c_src/narrow.inc); PReLU's w and gw are then float32.
   Returns 0; -1 where prelu backward ran out of memory, or a narrow row
   longer than the stack's buffers found no heap; -2 for an unknown dtype or
   kernel id or a negative extent (nothing is touched). */
int fa_rowwise(int dtype, int kernel, const void *in0, const void *in1, const void *in2,
               void *out0, void *out1, int64_t d0, int64_t d1, int64_t d2, int nthreads);

/* PReLU's weight gradient from fa_rowwise's pairs: out[i] = pairs[i] +
   pairs[n + i] rounded once to dtype (FA_F32_IDX, FA_F64_IDX; the pair's
   high part where that is not finite), as fastact._backends.round_pairs
   (float32 by round-to-odd); returns 0, or -1 for another dtype or n < 0 */
int fa_round_pairs(int dtype, const double *pairs, int64_t n, void *out);

/* The softmax family along a middle axis: flat (outer, n,
   K) arrays, x = in0 (forward) or g = in0, y = in1 (backward), out0 the
   result; tasks of cols columns (at most 8 KiB of them) of one outer index
   walk the n rows, vectorized across the columns (at most 8 KiB of float32
   for the narrow dtypes, whose blocks go through float32 buffers).  Returns
   0; -1 where a narrow block's buffers found no heap; -2 for an unknown
   dtype or kernel id or bad extents (nothing is touched). */
int fa_rowwise_inner(int dtype, int kernel, const void *in0, const void *in1, void *out0,
                     int64_t outer, int64_t n, int64_t K, int64_t cols, int nthreads);

/* x is (outer, C, inner), w is (C,); the backward's gw is 2 C doubles, each
   channel's weight gradient as a double-double pair (the C high parts, then
   the C low ones; rounded by fastact._backends.round_pairs); it returns 0,
   or -1 when out of memory */
void fa_prelu_fwd_f32(const float *x, const float *w, float *y, int64_t outer, int64_t C,
                      int64_t inner, int nthreads);
int fa_prelu_bwd_f32(const float *g, const float *x, const float *w, float *gx, double *gw,
                     int64_t outer, int64_t C, int64_t inner, int nthreads);
/* rows of length n */
void fa_softmax_fwd_f32(const float *x, float *y, int64_t rows, int64_t n, int nthreads);
void fa_softmax_bwd_f32(const float *g, const float *y, float *gx, int64_t rows, int64_t n,
                        int nthreads);

void fa_prelu_fwd_f64(const double *x, const double *w, double *y, int64_t outer, int64_t C,
                      int64_t inner, int nthreads);
int fa_prelu_bwd_f64(const double *g, const double *x, const double *w, double *gx, double *gw,
                     int64_t outer, int64_t C, int64_t inner, int nthreads);
void fa_softmax_fwd_f64(const double *x, double *y, int64_t rows, int64_t n, int nthreads);
void fa_softmax_bwd_f64(const double *g, const double *y, double *gx, int64_t rows, int64_t n,
                        int nthreads);
/* The pool, for other compiled code (the Numba backend's range workers):
   fn(lo, hi, arg) over chunks of [0, units), each a multiple of `grain` units
   and at least `min_units`, a few a thread, on up to `nthreads` threads, the
   caller one of them (or on the caller alone: pool.h); returns 0 when done,
   -1 for a NULL fn or negative units. */
typedef void (*fa_range_cb)(int64_t lo, int64_t hi, void *arg);
int fa_pool_run(fa_range_cb fn, void *arg, int64_t units, int64_t grain, int64_t min_units,
                int nthreads);
int fa_pool_workers(void);          /* workers started so far */
int64_t fa_pool_chunks_run(int k);  /* chunks thread k ran (0: callers; -1 unknown) */
/* Tests only: worker k (1..) blocks, once woken for a job and before it
   claims a chunk, until unparked (on = 0); -1 for no such worker slot */
int fa_test_park_worker(int k, int on);
int fa_test_worker_parked(int k);   /* 1 while worker k is blocked so */
/* Tests only: on = 1 makes a call wait, once its chunks are done, for every
   worker of its team to have looked at its job (an OpenMP region's closing
   barrier): the control that shows a parked worker would stall such a pool */
void fa_test_barrier(int on);
/* cdef end */

#ifdef __cplusplus
}
#endif

#endif /* FASTACT_H */
