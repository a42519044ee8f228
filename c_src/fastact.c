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
#else
#define FA_SIMD_SUM(v)
#endif

/* Independent partial sums in the reductions: 16 float64 fill two AVX-512
   registers and break the add-latency chain (as config.REDUCTION_LANES). */
#define FA_LANES 16

/* Everything a range worker needs; unused fields are ignored. */
typedef struct fa_args {
    const void *in0, *in1;      /* x, or (g, s) */
    const void *w;              /* prelu weight */
    void *out;
    double *scratch;            /* prelu backward: per-thread partial sums */
    int64_t n, C, inner;        /* softmax row length; prelu layout */
    double p0, p1;              /* parameters, exact in the kernel's dtype */
    uint64_t key;               /* rrelu stream key */
} fa_args;

typedef void (*fa_range_fn)(const fa_args *, int64_t lo, int64_t hi, int tid);

enum {
    FA_K_SIGMOID_FWD, FA_K_SIGMOID_BWD, FA_K_RELU_FWD, FA_K_RELU_BWD,
    FA_K_LEAKY_FWD, FA_K_LEAKY_BWD, FA_K_RRELU_FWD, FA_K_RRELU_BWD,
    FA_K_ELU_FWD, FA_K_ELU_BWD, FA_K_PRELU_FWD, FA_K_PRELU_BWD,
    FA_K_SOFTMAX_FWD, FA_K_SOFTMAX_BWD, FA_K_COUNT
};

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

/* fused multiply-add inside the exponentials, where the ISA has one (a
   libm fma without hardware support would be slow) */
#define FA_FMA32(a, b, c) ((a) * (b) + (c))
#define FA_FMA64(a, b, c) ((a) * (b) + (c))

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
#pragma clang attribute push(__attribute__((target("avx512f,avx512cd,avx512bw,avx512dq,avx512vl,prefer-vector-width=512"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512cd,avx512bw,avx512dq,avx512vl,prefer-vector-width=512")
#endif
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

enum { FA_F32_IDX, FA_F64_IDX };

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

static void fa_parallel(fa_range_fn fn, const fa_args *a, int64_t n, int64_t grain, int nthreads)
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
            if (lo < hi) fn(a, lo, hi, t);
        }
        return;
    }
#endif
    (void)team;
    fn(a, 0, n, 0);
}

static const fa_table *fa_get(int dtype)
{
    return fa_tables[fa_isa()][dtype];
}

/* --- public entry points ------------------------------------------------------------ */

#define FA_ELEMENTWISE_GRAIN 16

#define FA_DEFINE_DTYPE(T, SFX, IDX)                                                          \
    void fa_sigmoid_fwd_##SFX(const T *x, T *y, int64_t n, int nthreads)                      \
    {                                                                                         \
        fa_args a = {.in0 = x, .out = y};                                                     \
        fa_parallel(fa_get(IDX)->fn[FA_K_SIGMOID_FWD], &a, n, FA_ELEMENTWISE_GRAIN, nthreads); \
    }                                                                                         \
    void fa_sigmoid_bwd_##SFX(const T *g, const T *y, T *gx, int64_t n, int nthreads)         \
    {                                                                                         \
        fa_args a = {.in0 = g, .in1 = y, .out = gx};                                          \
        fa_parallel(fa_get(IDX)->fn[FA_K_SIGMOID_BWD], &a, n, FA_ELEMENTWISE_GRAIN, nthreads); \
    }                                                                                         \
    void fa_relu_fwd_##SFX(const T *x, T *y, int64_t n, int nthreads)                         \
    {                                                                                         \
        fa_args a = {.in0 = x, .out = y};                                                     \
        fa_parallel(fa_get(IDX)->fn[FA_K_RELU_FWD], &a, n, FA_ELEMENTWISE_GRAIN, nthreads);    \
    }                                                                                         \
    void fa_relu_bwd_##SFX(const T *g, const T *s, T *gx, int64_t n, int nthreads)            \
    {                                                                                         \
        fa_args a = {.in0 = g, .in1 = s, .out = gx};                                          \
        fa_parallel(fa_get(IDX)->fn[FA_K_RELU_BWD], &a, n, FA_ELEMENTWISE_GRAIN, nthreads);    \
    }                                                                                         \
    void fa_leaky_relu_fwd_##SFX(const T *x, T *y, int64_t n, T slope, int nthreads)          \
    {                                                                                         \
        fa_args a = {.in0 = x, .out = y, .p0 = slope};                                        \
        fa_parallel(fa_get(IDX)->fn[FA_K_LEAKY_FWD], &a, n, FA_ELEMENTWISE_GRAIN, nthreads);   \
    }                                                                                         \
    void fa_leaky_relu_bwd_##SFX(const T *g, const T *x, T *gx, int64_t n, T slope,           \
                                 int nthreads)                                                \
    {                                                                                         \
        fa_args a = {.in0 = g, .in1 = x, .out = gx, .p0 = slope};                             \
        fa_parallel(fa_get(IDX)->fn[FA_K_LEAKY_BWD], &a, n, FA_ELEMENTWISE_GRAIN, nthreads);   \
    }                                                                                         \
    void fa_rrelu_train_fwd_##SFX(const T *x, T *y, int64_t n, uint64_t key, T lower,         \
                                  T upper, int nthreads)                                      \
    {                                                                                         \
        fa_args a = {.in0 = x, .out = y, .p0 = lower, .p1 = upper, .key = key};               \
        fa_parallel(fa_get(IDX)->fn[FA_K_RRELU_FWD], &a, n, FA_ELEMENTWISE_GRAIN, nthreads);   \
    }                                                                                         \
    void fa_rrelu_train_bwd_##SFX(const T *g, const T *x, T *gx, int64_t n, uint64_t key,     \
                                  T lower, T upper, int nthreads)                             \
    {                                                                                         \
        fa_args a = {.in0 = g, .in1 = x, .out = gx, .p0 = lower, .p1 = upper, .key = key};    \
        fa_parallel(fa_get(IDX)->fn[FA_K_RRELU_BWD], &a, n, FA_ELEMENTWISE_GRAIN, nthreads);   \
    }                                                                                         \
    void fa_elu_fwd_##SFX(const T *x, T *y, int64_t n, T alpha, int nthreads)                 \
    {                                                                                         \
        fa_args a = {.in0 = x, .out = y, .p0 = alpha};                                        \
        fa_parallel(fa_get(IDX)->fn[FA_K_ELU_FWD], &a, n, FA_ELEMENTWISE_GRAIN, nthreads);     \
    }                                                                                         \
    void fa_elu_bwd_##SFX(const T *g, const T *x, T *gx, int64_t n, T alpha, int nthreads)    \
    {                                                                                         \
        fa_args a = {.in0 = g, .in1 = x, .out = gx, .p0 = alpha};                             \
        fa_parallel(fa_get(IDX)->fn[FA_K_ELU_BWD], &a, n, FA_ELEMENTWISE_GRAIN, nthreads);     \
    }                                                                                         \
    void fa_prelu_fwd_##SFX(const T *x, const T *w, T *y, int64_t outer, int64_t C,           \
                            int64_t inner, int nthreads)                                      \
    {                                                                                         \
        fa_args a = {.in0 = x, .w = w, .out = y, .C = C, .inner = inner};                     \
        fa_parallel(fa_get(IDX)->fn[FA_K_PRELU_FWD], &a, outer * C * inner,                   \
                    FA_ELEMENTWISE_GRAIN, nthreads);                                          \
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
            fa_parallel(fa_get(IDX)->fn[FA_K_PRELU_BWD], &a, n, FA_ELEMENTWISE_GRAIN, team);  \
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
        fa_parallel(fa_get(IDX)->fn[FA_K_SOFTMAX_FWD], &a, rows, 1, nthreads);                \
    }                                                                                         \
    void fa_softmax_bwd_##SFX(const T *g, const T *y, T *gx, int64_t rows, int64_t n,         \
                              int nthreads)                                                   \
    {                                                                                         \
        fa_args a = {.in0 = g, .in1 = y, .out = gx, .n = n};                                  \
        fa_parallel(fa_get(IDX)->fn[FA_K_SOFTMAX_BWD], &a, rows, 1, nthreads);                \
    }

FA_DEFINE_DTYPE(float, f32, FA_F32_IDX)
FA_DEFINE_DTYPE(double, f64, FA_F64_IDX)
