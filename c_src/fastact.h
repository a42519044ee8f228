/* fastact.h: the public C interface of fastact's SIMD kernels.
 *
 * Every kernel exists for float32 (_f32) and float64 (_f64).  Arguments
 * follow one order: upstream gradient first, then the saved tensor, then the
 * output, then sizes, then parameters, then the thread count.  Buffers are
 * contiguous and may sit at any byte offset; an output may be exactly the
 * same buffer as an input (in place) but must not overlap it otherwise.
 * Math conventions (kinks, NaN, guards) are those of fastact/_registry.py.
 * Threads are OpenMP; a process forked after using them runs serially.
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
int fa_openmp(void);              /* 1 when built with OpenMP threads */

/* Outputs of at least this many bytes of the memory-bound kernels (relu,
   leaky_relu and prelu forward; sigmoid, relu, leaky_relu and softmax
   backward) are written with non-temporal (streaming) stores, which skip the
   read-for-ownership of the output's cache lines; a negative value never
   streams.  Default 1 << 22 (4 MiB). */
void fa_set_stream_min(int64_t bytes);
int64_t fa_stream_min(void);

/* kernel ids (fa_elementwise takes the first ten; each is FA_K_ and the
   upper-cased stem of the kernel's entry point fa_<stem>_f32) and dtype ids */
enum {
    FA_K_SIGMOID_FWD, FA_K_SIGMOID_BWD, FA_K_RELU_FWD, FA_K_RELU_BWD,
    FA_K_LEAKY_RELU_FWD, FA_K_LEAKY_RELU_BWD, FA_K_RRELU_TRAIN_FWD, FA_K_RRELU_TRAIN_BWD,
    FA_K_ELU_FWD, FA_K_ELU_BWD, FA_K_PRELU_FWD, FA_K_PRELU_BWD,
    FA_K_SOFTMAX_FWD, FA_K_SOFTMAX_BWD, FA_K_COUNT
};
enum { FA_F32_IDX, FA_F64_IDX };

/* Any elementwise kernel by id, for callers that hold one function pointer
   (the small-array entry, c_src/fastcall.c): in0 is x (forward) or the
   upstream gradient, in1 the saved array (backward; NULL forward); p0 the
   slope or alpha (leaky_relu, elu) or lower (rrelu, with p1 = upper and the
   stream key), exact in the dtype.  Returns 0, or -1 for an unknown dtype or
   kernel id or a negative n (nothing is touched). */
int fa_elementwise(int dtype, int kernel, const void *in0, const void *in1, void *out, int64_t n,
                   double p0, double p1, uint64_t key, int nthreads);

/* The row-wise kernels by id, for the same callers: FA_K_PRELU_FWD (in0 x,
   in1 w, out0 y; d0, d1, d2 = outer, C, inner), FA_K_PRELU_BWD (in0 g, in1
   x, in2 w, out0 gx, out1 gw), FA_K_SOFTMAX_FWD (in0 x, out0 y; d0 rows, d1
   n), FA_K_SOFTMAX_BWD (in0 g, in1 y, out0 gx); unused pointers may be NULL.
   Returns 0; -1 where prelu backward ran out of memory; -2 for an unknown
   dtype or kernel id or a negative extent (nothing is touched). */
int fa_rowwise(int dtype, int kernel, const void *in0, const void *in1, const void *in2,
               void *out0, void *out1, int64_t d0, int64_t d1, int64_t d2, int nthreads);

void fa_sigmoid_fwd_f32(const float *x, float *y, int64_t n, int nthreads);
void fa_sigmoid_bwd_f32(const float *g, const float *y, float *gx, int64_t n, int nthreads);
void fa_relu_fwd_f32(const float *x, float *y, int64_t n, int nthreads);
void fa_relu_bwd_f32(const float *g, const float *s, float *gx, int64_t n, int nthreads);
void fa_leaky_relu_fwd_f32(const float *x, float *y, int64_t n, float slope, int nthreads);
void fa_leaky_relu_bwd_f32(const float *g, const float *x, float *gx, int64_t n, float slope,
                           int nthreads);
void fa_rrelu_train_fwd_f32(const float *x, float *y, int64_t n, uint64_t key, float lower,
                            float upper, int nthreads);
void fa_rrelu_train_bwd_f32(const float *g, const float *x, float *gx, int64_t n, uint64_t key,
                            float lower, float upper, int nthreads);
void fa_elu_fwd_f32(const float *x, float *y, int64_t n, float alpha, int nthreads);
void fa_elu_bwd_f32(const float *g, const float *x, float *gx, int64_t n, float alpha,
                    int nthreads);
/* x is (outer, C, inner), w and gw are (C,); the backward returns 0, or -1 when
   out of memory */
void fa_prelu_fwd_f32(const float *x, const float *w, float *y, int64_t outer, int64_t C,
                      int64_t inner, int nthreads);
int fa_prelu_bwd_f32(const float *g, const float *x, const float *w, float *gx, float *gw,
                     int64_t outer, int64_t C, int64_t inner, int nthreads);
/* rows of length n */
void fa_softmax_fwd_f32(const float *x, float *y, int64_t rows, int64_t n, int nthreads);
void fa_softmax_bwd_f32(const float *g, const float *y, float *gx, int64_t rows, int64_t n,
                        int nthreads);

void fa_sigmoid_fwd_f64(const double *x, double *y, int64_t n, int nthreads);
void fa_sigmoid_bwd_f64(const double *g, const double *y, double *gx, int64_t n, int nthreads);
void fa_relu_fwd_f64(const double *x, double *y, int64_t n, int nthreads);
void fa_relu_bwd_f64(const double *g, const double *s, double *gx, int64_t n, int nthreads);
void fa_leaky_relu_fwd_f64(const double *x, double *y, int64_t n, double slope, int nthreads);
void fa_leaky_relu_bwd_f64(const double *g, const double *x, double *gx, int64_t n, double slope,
                           int nthreads);
void fa_rrelu_train_fwd_f64(const double *x, double *y, int64_t n, uint64_t key, double lower,
                            double upper, int nthreads);
void fa_rrelu_train_bwd_f64(const double *g, const double *x, double *gx, int64_t n,
                            uint64_t key, double lower, double upper, int nthreads);
void fa_elu_fwd_f64(const double *x, double *y, int64_t n, double alpha, int nthreads);
void fa_elu_bwd_f64(const double *g, const double *x, double *gx, int64_t n, double alpha,
                    int nthreads);
void fa_prelu_fwd_f64(const double *x, const double *w, double *y, int64_t outer, int64_t C,
                      int64_t inner, int nthreads);
int fa_prelu_bwd_f64(const double *g, const double *x, const double *w, double *gx, double *gw,
                     int64_t outer, int64_t C, int64_t inner, int nthreads);
void fa_softmax_fwd_f64(const double *x, double *y, int64_t rows, int64_t n, int nthreads);
void fa_softmax_bwd_f64(const double *g, const double *y, double *gx, int64_t rows, int64_t n,
                        int nthreads);
/* cdef end */

#ifdef __cplusplus
}
#endif

#endif /* FASTACT_H */
