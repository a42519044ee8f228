/* fastact.c: instruction-set dispatch, threads and the public entry points.
 *
 * kernels.inc is compiled once per (instruction set, dtype) into separately
 * named functions gathered in one table per pair (the NumPy / SLEEF scheme).
 * The first call picks the best table the CPU supports, capped by
 * FASTACT_C_ISA, and remembers it.  Must be compiled with -ffp-contract=off:
 * a fused multiply-add would change the RReLU slopes, which are bit-identical
 * to the other backends.
 */
#include "fastact.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FA_ATFORK 1
#endif
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FA_X86 1
#else
#define FA_X86 0
#endif

#if FA_X86
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
   which needs -fopenmp or -fopenmp-simd, no runtime) */
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
    double *scratch;            /* prelu backward: per-thread partial sums */
    int64_t n, C, inner;        /* softmax row length; prelu layout */
    int stream;                 /* how `out` is written: FA_OUT_* (FA_STORE_LOOP) */
    double p0, p1, p2;          /* parameters, exact in the kernel's dtype */
    uint64_t key;               /* rrelu stream key */
    const struct fa_walk *walk; /* strided operands (walk.inc) */
} fa_args;

typedef void (*fa_range_fn)(const fa_args *, int64_t lo, int64_t hi, int tid);

/* kernel ids FA_K_*: fastact.h */

typedef struct fa_table {
    fa_range_fn fn[FA_K_COUNT];
} fa_table;

#define FA_CAT3_(a, b, c) a##_##b##_##c
#define FA_CAT3(a, b, c) FA_CAT3_(a, b, c)

/* the element types at any byte offset (GCC/Clang: a typedef may lower the
   alignment), so that an unaligned NumPy array is no undefined behaviour */
#if defined(__GNUC__) || defined(__clang__)
typedef float fa_float_unaligned __attribute__((aligned(1)));
typedef double fa_double_unaligned __attribute__((aligned(1)));
#else
typedef float fa_float_unaligned;
typedef double fa_double_unaligned;
#endif

/* Every primitive and formula is inlined into its loop: one left a call (past
   the compiler's inlining threshold) keeps the loop scalar (a float64
   backward ran at 5% of the copy).  tests/test_c_backend.py reads the
   built range workers' disassembly for calls and vector code. */
#if defined(__GNUC__) || defined(__clang__)
#define FA_INLINE static inline __attribute__((always_inline))
#else
#define FA_INLINE static inline
#endif

/* fused multiply-add inside the exponentials, where the ISA has one (a
   libm fma without hardware support would be slow) */
#define FA_FMA32(a, b, c) ((a) * (b) + (c))
#define FA_FMA64(a, b, c) ((a) * (b) + (c))

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

/* --- baseline (SSE2 on x86-64, whatever the compiler targets elsewhere) --- */
#define FA_ISA baseline
#include "both_dtypes.inc"
#undef FA_ISA

#if FA_X86
/* --- AVX2 + FMA --- */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#undef FA_FMA32
#undef FA_FMA64
#define FA_FMA32(a, b, c) __builtin_fmaf(a, b, c)
#define FA_FMA64(a, b, c) __builtin_fma(a, b, c)
#undef FA_NT_LINE
#define FA_NT_LINE(dst, src)                                                           \
    do {                                                                               \
        __m256i *d_ = (__m256i *)(void *)(dst);                                        \
        const __m256i *s_ = (const __m256i *)(const void *)(src);                      \
        for (int l_ = 0; l_ < 2; l_++)                                                 \
            _mm256_stream_si256(d_ + l_, _mm256_load_si256(s_ + l_));                  \
    } while (0)
#define FA_ISA avx2
#include "both_dtypes.inc"
#undef FA_ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

/* --- AVX-512 (Skylake-X set: F, CD, BW, DQ, VL), full-width vectors --- */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512cd,avx512bw,avx512dq,avx512vl,prfchw,prefer-vector-width=512"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512cd,avx512bw,avx512dq,avx512vl,prfchw,prefer-vector-width=512")
#endif
#undef FA_NT_LINE
#define FA_NT_LINE(dst, src) \
    _mm512_stream_si512((void *)(dst), _mm512_load_si512((const void *)(src)))
#define FA_ISA avx512
#include "both_dtypes.inc"
#undef FA_ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif /* FA_X86 */

/* --- the resolver ---------------------------------------------------------------- */

/* dtype ids FA_F32_IDX, FA_F64_IDX: fastact.h */

static const fa_table *const fa_tables[3][2] = {
    {&table_f32_baseline, &table_f64_baseline},
#if FA_X86
    {&table_f32_avx2, &table_f64_avx2},
    {&table_f32_avx512, &table_f64_avx512},
#endif
};

static const char *const fa_isa_names[3] = {"baseline", "avx2", "avx512"};

static _Atomic int fa_level = -1;

int fa_best_isa(void)
{
#if FA_X86
    __builtin_cpu_init();
    /* __builtin_cpu_supports also checks that the OS saves the registers */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        return FA_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return FA_ISA_AVX2;
#endif
    return FA_ISA_BASELINE;
}

/* FASTACT_C_ISA caps the level (for tests, and for CPUs whose AVX-512 clocks
   down); an unknown value is ignored here and reported by the Python layer */
static int fa_env_cap(void)
{
    const char *s = getenv("FASTACT_C_ISA");
    if (s != NULL)
        for (int l = 0; l < 3; l++)
            if (strcmp(s, fa_isa_names[l]) == 0) return l;
    return FA_ISA_AVX512;
}

int fa_set_isa(int level)
{
    int best = fa_best_isa();
    if (level < FA_ISA_BASELINE) level = FA_ISA_BASELINE;
    if (level > best) level = best;
    atomic_store(&fa_level, level);
    return level;
}

int fa_isa(void)
{
    int level = atomic_load_explicit(&fa_level, memory_order_relaxed);
    if (level < 0) {
        int want = fa_env_cap();
        level = fa_set_isa(want);
    }
    return level;
}

const char *fa_isa_name(int level)
{
    return level >= 0 && level < 3 ? fa_isa_names[level] : "unknown";
}

int fa_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* --- threads ---------------------------------------------------------------------
 * [0, n) is cut into one contiguous chunk per thread, a multiple of `grain`
 * long (64-byte aligned chunks for elementwise work).  nthreads <= 1, or too
 * little work for two chunks, runs on the calling thread.
 */

static int fa_team_size(int64_t n, int64_t grain, int nthreads)
{
    int64_t units = (n + grain - 1) / grain;
    if (nthreads < 1 || units < 1) return 1;
    return units < nthreads ? (int)units : nthreads;
}

#ifdef FA_ATFORK
/* libgomp's thread pool does not survive fork(): a child process that enters
   a parallel region after its parent did hangs.  Children run serially (as
   PyTorch's do). */
static _Atomic int fa_forked = 0;
static pthread_once_t fa_atfork_once = PTHREAD_ONCE_INIT;
static void fa_mark_forked(void) { atomic_store(&fa_forked, 1); }
static void fa_register_atfork(void) { pthread_atfork(NULL, NULL, fa_mark_forked); }
#endif

/* --- streaming ---------------------------------------------------------------------
 * The output of a memory-bound kernel, when at least fa_stream_min() bytes,
 * is written with non-temporal stores, which skip the read-for-ownership of
 * each output line: chunks of FA_STREAM_CHUNK bytes are computed into a
 * local array and stored line by line (FA_STORE_LOOP in kernels.inc).
 * Results are bit-identical to regular stores.
 *
 * Measured on the 2-core build machine (AVX-512, float32, 2 threads, outputs
 * preallocated, GB/s of inputs + output, regular / streamed, best of 7
 * interleaved rounds; runs vary by 10%): at 2**24 elements relu 26.8 / 49.7,
 * relu_backward 24.8 / 37.8, leaky_relu 22.2 / 38.4, its backward
 * 23.5 / 32.4, sigmoid_backward 28.7 / 40.3, prelu (64, 64, 4096)
 * 21.7 / 33.2, softmax_backward (4096 rows of 4096) 17.3 / 23.2; one thread
 * relu 11.8 / 17.9.  By output size, relu and relu_backward: 1 MiB
 * 29.1 / 23.0 and 39.5 / 34.9 (the data stay in L2, which streamed stores
 * bypass), 2 MiB 27.2 / 25.1 and 29.4 / 46.3, 4 MiB 19.9 / 28.7 and
 * 27.5 / 49.9: the threshold (config.STREAM_MIN_BYTES) is 4 MiB.
 */

static _Atomic int64_t fa_stream_min_bytes = (int64_t)1 << 22;

void fa_set_stream_min(int64_t bytes) { atomic_store(&fa_stream_min_bytes, bytes); }

int64_t fa_stream_min(void) { return atomic_load(&fa_stream_min_bytes); }

/* How each kernel writes a big output (fa_args.stream): the elementwise
   kernels as the registry says (c_src/ops.h: FA_OUT_STREAM where memory
   bounds the pass, FA_OUT_PREFETCH where its arithmetic does: the input
   lines a few chunks ahead prefetched and each 64-byte output line streamed
   as soon as it is computed); prelu forward and softmax backward stream
   whole chunks, prelu backward stores as usual, and the softmax family as
   the registry says (ops.h: FA_ROW_FAMILY).
   The measurements behind the two modes are in the commits that added
   them (% of the copy, 2**24 float32, 2 threads: sigmoid 69-87 regular /
   101-113 prefetched and streamed by lines; relu 55-60 GB/s streamed by
   1 KiB chunks). */
static const unsigned char fa_out_mode[FA_K_COUNT] = {
#define FA_OUT_MODE(ID, stem, binary, out) [FA_K_##ID] = out,
    FA_ELEMENTWISE_KERNELS(FA_OUT_MODE)
#undef FA_OUT_MODE
    [FA_K_PRELU_FWD] = FA_OUT_STREAM, [FA_K_PRELU_BWD] = FA_OUT_REGULAR,
#define FA_ROW_MODE(NAME, name, negate, log_, fwd_out, bwd_out)                      \
    [FA_K_##NAME##_FWD] = fwd_out, [FA_K_##NAME##_BWD] = bwd_out,
    FA_ROW_FAMILY(FA_ROW_MODE)
#undef FA_ROW_MODE
    /* the gated backward writes two halves with regular stores */
#define FA_GATE_MODE(NAME, name, act, swap, complement, saves_y, fwd_out)            \
    [FA_K_##NAME##_FWD] = fwd_out, [FA_K_##NAME##_BWD] = FA_OUT_REGULAR,
    FA_GATED_FAMILY(FA_GATE_MODE)
#undef FA_GATE_MODE
};

#if FA_X86
/* SSE: present wherever a level with non-temporal stores runs */
__attribute__((target("sse"))) static void fa_sfence(void) { _mm_sfence(); }
#endif

/* fn over one thread's range; non-temporal stores are weakly ordered, so a
   streaming thread drains them before the parallel region's barrier (or
   the return) lets anyone read the output */
static void fa_run_range(fa_range_fn fn, const fa_args *a, int64_t lo, int64_t hi, int tid,
                         int fence)
{
    fn(a, lo, hi, tid);
#if FA_X86
    if (fence) fa_sfence();
#else
    (void)fence;
#endif
}

static void fa_parallel(fa_range_fn fn, const fa_args *a, int64_t n, int64_t grain, int nthreads,
                        int fence)
{
    int team = fa_team_size(n, grain, nthreads);
#ifdef FA_ATFORK
    if (team > 1) {
        pthread_once(&fa_atfork_once, fa_register_atfork);
        if (atomic_load_explicit(&fa_forked, memory_order_relaxed)) team = 1;
    }
#endif
#ifdef _OPENMP
    if (team > 1) {
        int64_t units = (n + grain - 1) / grain;
#pragma omp parallel num_threads(team)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            int64_t lo = units * t / nt * grain, hi = units * (t + 1) / nt * grain;
            if (hi > n) hi = n;
            if (lo < hi) fa_run_range(fn, a, lo, hi, t, fence);
        }
        return;
    }
#endif
    (void)team;
    fa_run_range(fn, a, 0, n, 0, fence);
}

/* kernel `k` of the current level over `units` work units of unit_elems
   output elements (1, or a softmax row); streamed where it pays */
static void fa_launch(int dtype, int k, fa_args *a, int64_t units, int64_t grain,
                      int64_t unit_elems, int nthreads)
{
    int level = fa_isa();
    int64_t min = fa_stream_min(), bytes = units * unit_elems * (dtype == FA_F32_IDX ? 4 : 8);
    int big = min >= 0 && bytes > 0 && bytes >= min;
    a->stream = big ? fa_out_mode[k] : FA_OUT_REGULAR;
    fa_parallel(fa_tables[level][dtype]->fn[k], a, units, grain, nthreads,
                (a->stream == FA_OUT_STREAM || a->stream == FA_OUT_PREFETCH) &&
                (FA_NT || level > FA_ISA_BASELINE));
}

/* --- public entry points ------------------------------------------------------------ */

#define FA_ELEMENTWISE_GRAIN 16

#define FA_DEFINE_DTYPE(T, SFX, IDX)                                                          \
    void fa_prelu_fwd_##SFX(const T *x, const T *w, T *y, int64_t outer, int64_t C,           \
                            int64_t inner, int nthreads)                                      \
    {                                                                                         \
        fa_args a = {.in0 = x, .w = w, .out = y, .C = C, .inner = inner};                     \
        fa_launch(IDX, FA_K_PRELU_FWD, &a, outer * C * inner, FA_ELEMENTWISE_GRAIN, 1,        \
                  nthreads);                                                                  \
    }                                                                                         \
    int fa_prelu_bwd_##SFX(const T *g, const T *x, const T *w, T *gx, T *gw, int64_t outer,   \
                           int64_t C, int64_t inner, int nthreads)                            \
    {                                                                                         \
        int64_t n = outer * C * inner;                                                        \
        int team = fa_team_size(n, FA_ELEMENTWISE_GRAIN, nthreads);                           \
        double *scratch = (double *)calloc((size_t)team * 2 * (size_t)C, sizeof(double));     \
        if (scratch == NULL) return -1;                                                       \
        fa_args a = {.in0 = g, .in1 = x, .w = w, .out = gx, .scratch = scratch, .C = C,       \
                     .inner = inner};                                                         \
        if (n > 0)                                                                            \
            fa_launch(IDX, FA_K_PRELU_BWD, &a, n, FA_ELEMENTWISE_GRAIN, 1, team);             \
        /* threads' partial sums in thread order: compensated, deterministic */               \
        for (int64_t c = 0; c < C; c++) {                                                     \
            double s = 0.0, comp = 0.0;                                                       \
            for (int t = 0; t < team; t++) {                                                  \
                const double *part = scratch + (int64_t)t * 2 * C;                            \
                double v = part[c] - part[C + c] - comp;                                      \
                double u = s + v;                                                             \
                comp = (u - s) - v;                                                           \
                comp = comp == comp ? comp : 0.0;    /* an infinite sum stays so */           \
                s = u;                                                                        \
            }                                                                                 \
            gw[c] = (T)s;                                                                     \
        }                                                                                     \
        free(scratch);                                                                        \
        return 0;                                                                             \
    }                                                                                         \
    void fa_softmax_fwd_##SFX(const T *x, T *y, int64_t rows, int64_t n, int nthreads)        \
    {                                                                                         \
        fa_args a = {.in0 = x, .out = y, .n = n};                                             \
        fa_launch(IDX, FA_K_SOFTMAX_FWD, &a, rows, 1, n, nthreads);                           \
    }                                                                                         \
    void fa_softmax_bwd_##SFX(const T *g, const T *y, T *gx, int64_t rows, int64_t n,         \
                              int nthreads)                                                   \
    {                                                                                         \
        fa_args a = {.in0 = g, .in1 = y, .out = gx, .n = n};                                  \
        fa_launch(IDX, FA_K_SOFTMAX_BWD, &a, rows, 1, n, nthreads);                           \
    }

FA_DEFINE_DTYPE(float, f32, FA_F32_IDX)
FA_DEFINE_DTYPE(double, f64, FA_F64_IDX)

int fa_elementwise(int dtype, int kernel, const void *in0, const void *in1, void *out, int64_t n,
                   double p0, double p1, double p2, uint64_t key, int nthreads)
{
    if ((dtype != FA_F32_IDX && dtype != FA_F64_IDX) || kernel < 0 ||
        kernel >= FA_K_ELEMENTWISE_COUNT || n < 0)
        return -1;
    fa_args a = {.in0 = in0, .in1 = in1, .out = out, .p0 = p0, .p1 = p1, .p2 = p2, .key = key};
    fa_launch(dtype, kernel, &a, n, FA_ELEMENTWISE_GRAIN, 1, nthreads);
    return 0;
}

int fa_rowwise(int dtype, int kernel, const void *in0, const void *in1, const void *in2,
               void *out0, void *out1, int64_t d0, int64_t d1, int64_t d2, int nthreads)
{
    if ((dtype != FA_F32_IDX && dtype != FA_F64_IDX) || d0 < 0 || d1 < 0 || d2 < 0)
        return -2;
    const int f32 = dtype == FA_F32_IDX;
    switch (kernel) {
    case FA_K_PRELU_FWD:
        if (f32)
            fa_prelu_fwd_f32(in0, in1, out0, d0, d1, d2, nthreads);
        else
            fa_prelu_fwd_f64(in0, in1, out0, d0, d1, d2, nthreads);
        return 0;
    case FA_K_PRELU_BWD:
        return f32 ? fa_prelu_bwd_f32(in0, in1, in2, out0, out1, d0, d1, d2, nthreads)
                   : fa_prelu_bwd_f64(in0, in1, in2, out0, out1, d0, d1, d2, nthreads);
    /* the softmax family: rows d0 of length d1 */
#define FA_ROW_CASE(NAME, name, negate, log_, fwd_out, bwd_out)                      \
    case FA_K_##NAME##_FWD: {                                                        \
        fa_args a = {.in0 = in0, .out = out0, .n = d1};                              \
        fa_launch(dtype, kernel, &a, d0, 1, d1, nthreads);                           \
        return 0;                                                                    \
    }                                                                                \
    case FA_K_##NAME##_BWD: {                                                        \
        fa_args a = {.in0 = in0, .in1 = in1, .out = out0, .n = d1};                  \
        fa_launch(dtype, kernel, &a, d0, 1, d1, nthreads);                           \
        return 0;                                                                    \
    }
    FA_ROW_FAMILY(FA_ROW_CASE)
#undef FA_ROW_CASE
    /* the gated family: x (d0, 2, d1), y and g (d0, d1) */
#define FA_GATE_CASE(NAME, name, act, swap, complement, saves_y, fwd_out)            \
    case FA_K_##NAME##_FWD: {                                                        \
        fa_args a = {.in0 = in0, .out = out0, .n = d1};                              \
        fa_launch(dtype, kernel, &a, d0 * d1, FA_ELEMENTWISE_GRAIN, 1, nthreads);    \
        return 0;                                                                    \
    }                                                                                \
    case FA_K_##NAME##_BWD: {                                                        \
        fa_args a = {.in0 = in0, .in1 = in1, .out = out0, .n = d1};                  \
        fa_launch(dtype, kernel, &a, d0 * d1, FA_ELEMENTWISE_GRAIN, 1, nthreads);    \
        return 0;                                                                    \
    }
    FA_GATED_FAMILY(FA_GATE_CASE)
#undef FA_GATE_CASE
    default:
        return -2;
    }
}

/* --- strided operands --------------------------------------------------------------- */

#include "walk.inc"
