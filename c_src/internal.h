/* internal.h: what fastact.c and the per-instruction-set units share.
 *
 * kernels.inc and narrow.inc are compiled once per instruction set, each set
 * in its own translation units (isa_<level>.c and isa_<level>_f64.c), so
 * that the build compiles them in parallel (build.py).  Each unit defines the
 * tables of its level, declared below; fastact.c picks one at run time.
 */
#ifndef FASTACT_INTERNAL_H
#define FASTACT_INTERNAL_H

#include "fastact.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FA_X86 1
#else
#define FA_X86 0
#endif

#if FA_X86
#include <cpuid.h>
#include <immintrin.h>
#endif
/* non-temporal stores at the baseline level: SSE2 (every x86-64) */
#if FA_X86 && defined(__SSE2__)
#define FA_NT 1
#else
#define FA_NT 0
#endif

#if defined(__clang__)
#define FA_IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define FA_IVDEP _Pragma("GCC ivdep")
#else
#define FA_IVDEP
#endif

/* A sum the compiler may split into vector partial sums (OpenMP SIMD,
   which needs -fopenmp-simd, no runtime) */
#define FA_PRAGMA(x) _Pragma(#x)
#if defined(_OPENMP) || defined(__clang__) || defined(__GNUC__)
#define FA_SIMD_SUM(v) FA_PRAGMA(omp simd reduction(+ : v))
#define FA_SIMD_SUM2(v, w) FA_PRAGMA(omp simd reduction(+ : v, w))
#else
#define FA_SIMD_SUM(v)
#define FA_SIMD_SUM2(v, w)
#endif

struct fa_walk;

/* Everything a range worker needs; unused fields are ignored. */
typedef struct fa_args {
    const void *in0, *in1;      /* x, or (g, s) */
    const void *w;              /* prelu weight */
    void *out;
    double *scratch;            /* prelu backward: per-chunk partial sums */
    int64_t n, C, inner;        /* softmax row length; prelu layout */
    int stream;                 /* how `out` is written: FA_OUT_* (FA_STORE_LOOP) */
    double p0, p1, p2;          /* parameters, exact in the kernel's dtype */
    uint64_t key;               /* rrelu stream key */
    const struct fa_walk *walk; /* strided operands (walk.inc) */
    _Atomic int *nomem;         /* narrow row workers: set where a buffer was not allocated */
} fa_args;

/* fn(a, lo, hi, chunk): units [lo, hi), which are chunk `chunk` of the call
   (pool.h); what a kernel keeps per chunk (prelu backward's partial sums) is
   keyed by it, never by the thread that runs it */
typedef void (*fa_range_fn)(const fa_args *, int64_t lo, int64_t hi, int64_t chunk);

/* kernel ids FA_K_*: fastact.h */

typedef struct fa_table {
    fa_range_fn fn[FA_K_COUNT];
    fa_range_fn inner[FA_K_COUNT];  /* the softmax family along a middle axis */
} fa_table;

#define FA_CAT3_(a, b, c) a##_##b##_##c
#define FA_CAT3(a, b, c) FA_CAT3_(a, b, c)

/* the element types at any byte offset (GCC/Clang: a typedef may lower the
   alignment), so that an unaligned NumPy array is no undefined behaviour */
#if defined(__GNUC__) || defined(__clang__)
typedef float fa_float_unaligned __attribute__((aligned(1)));
typedef double fa_double_unaligned __attribute__((aligned(1)));
typedef uint16_t fa_u16_unaligned __attribute__((aligned(1)));
#else
typedef float fa_float_unaligned;
typedef double fa_double_unaligned;
typedef uint16_t fa_u16_unaligned;
#endif

/* The narrow dtypes (narrow.inc): elements converted to float32 at a time,
   2 KiB of float32 per buffer (three buffers stay in L1) */
#define FA_NARROW_CHUNK 512
/* the conversions of one level, by narrow dtype (0 float16, 1 bfloat16) */
typedef struct fa_convert_table {
    void (*widen[2])(const fa_u16_unaligned *, float *, int64_t);
    void (*narrow[2])(const float *, fa_u16_unaligned *, int64_t);
} fa_convert_table;

/* Every primitive and formula is inlined into its loop: one left a call (past
   the compiler's inlining threshold) keeps the loop scalar (a float64
   backward ran at 5% of the copy).  tests/test_c_backend.py reads the
   built range workers' disassembly for calls and vector code. */
#if defined(__GNUC__) || defined(__clang__)
#define FA_INLINE static inline __attribute__((always_inline))
#else
#define FA_INLINE static inline
#endif

/* fused multiply-add inside the exponentials, where the ISA has one: the
   levels that define FA_TARGET (a libm fma without hardware support would
   be slow) */
#if defined(FA_TARGET) && FA_X86
#define FA_FMA32(a, b, c) __builtin_fmaf(a, b, c)
#define FA_FMA64(a, b, c) __builtin_fma(a, b, c)
#else
#define FA_FMA32(a, b, c) ((a) * (b) + (c))
#define FA_FMA64(a, b, c) ((a) * (b) + (c))
#endif

/* Double-double sums (PReLU's weight gradient), as numba_cpu._double_double:
   the pair (*hi, *lo) plus p + e (the two-sum of *hi and p, its error and e
   added to *lo); the error of the product p = a * b (Dekker's, exact without
   an FMA under -ffp-contract=off; 0 where p is 0 or the split overflows) */
FA_INLINE double fa_two_sum_err(double a, double b, double s)
{
    const double t = s - a;
    return (a - (s - t)) + (b - t);
}

FA_INLINE void fa_add_term(double *hi, double *lo, double p, double e)
{
    const double s = *hi + p;
    *lo += fa_two_sum_err(*hi, p, s) + e;
    *hi = s;
}

/* fa_add_term of an exact term (e = 0: float32 products), without the
   addition of e (x + 0.0 is not x when x is -0.0, so the compiler keeps it;
   *lo starts at +0.0 and never becomes -0.0, so the bits are the same) */
FA_INLINE void fa_add_exact(double *hi, double *lo, double p)
{
    const double s = *hi + p;
    *lo += fa_two_sum_err(*hi, p, s);
    *hi = s;
}

FA_INLINE double fa_prod_err(double a, double b, double p)
{
    const double ca = 134217729.0 * a, cb = 134217729.0 * b;
    const double ah = ca - (ca - a), bh = cb - (cb - b), al = a - ah, bl = b - bh;
    const double e = (((ah * bh - p) + ah * bl) + al * bh) + al * bl;
    return p != 0.0 && fabs(e) < INFINITY ? e : 0.0;
}

/* Streamed outputs (FA_STORE_LOOP in kernels.inc) are computed in chunks of
   this many bytes into a local array, then stored line by line with
   FA_NT_LINE(dst, src): a 64-byte line, both ends 64-byte aligned, with the
   non-temporal stores of the instruction set being compiled.  Small chunks
   keep the loads of the next chunk overlapping the stores of the last: relu,
   2**24 float32 elements, 2 threads, C microbenchmark, 55-60 GB/s with 1 KiB
   chunks, 42-46 with 4 KiB, 36-38 with 16 KiB (256 bytes: slightly slower). */
#define FA_STREAM_CHUNK 1024

/* fa_args.stream: regular stores, non-temporal stores (memory-bound kernels),
   or regular stores with the lines FA_PREFETCH_CHUNKS chunks ahead
   prefetched (kernels bound by their arithmetic); see fa_launch */
enum { FA_OUT_REGULAR = 0, FA_OUT_STREAM = 1, FA_OUT_PREFETCH = 2 };
#define FA_PREFETCH_CHUNKS 4
/* FA_OUT_PREFETCH writes each 64-byte output line with non-temporal stores
   as soon as it is computed (FA_STORE_LOOP_PF), where there are such stores */
#define FA_NT_PREFETCHED FA_NT

#if FA_NT
#define FA_NT_LINE(dst, src)                                                           \
    do {                                                                               \
        __m128i *d_ = (__m128i *)(void *)(dst);                                        \
        const __m128i *s_ = (const __m128i *)(const void *)(src);                      \
        for (int l_ = 0; l_ < 4; l_++) _mm_stream_si128(d_ + l_, _mm_load_si128(s_ + l_)); \
    } while (0)
#else
/* no portable non-temporal store: a plain copy keeps the baseline buildable */
#define FA_NT_LINE(dst, src) memcpy((void *)(dst), (const void *)(src), 64)
#endif

/* the tables of one level, defined by isa_<level>.c: visible to fastact.c,
   never exported from the module */
#if defined(__GNUC__) || defined(__clang__)
#define FA_LEVEL_TABLE __attribute__((visibility("hidden"))) const
#else
#define FA_LEVEL_TABLE const
#endif
#define FA_DECLARE_LEVEL(L)                                                             \
    extern FA_LEVEL_TABLE fa_table table_f32_##L, table_f64_##L, table_f16_##L,         \
        table_bf16_##L;                                                                 \
    extern FA_LEVEL_TABLE fa_convert_table convert_narrow_##L;
FA_DECLARE_LEVEL(baseline)
#if FA_X86
FA_DECLARE_LEVEL(avx2)
FA_DECLARE_LEVEL(avx512)
#endif
#undef FA_DECLARE_LEVEL

/* A unit of an x86 level above the baseline defines FA_TARGET, its
   instruction sets (all with FMA), before including this file: everything
   after this point is compiled for them. */
#if defined(FA_TARGET) && FA_X86
#define FA_PRAGMA_X(x) FA_PRAGMA(x)
#if defined(__clang__)
FA_PRAGMA_X(clang attribute push(__attribute__((target(FA_TARGET))), apply_to = function))
#else
FA_PRAGMA_X(GCC target(FA_TARGET))
#endif
#endif

#endif /* FASTACT_INTERNAL_H */
