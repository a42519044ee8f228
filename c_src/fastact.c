/* fastact.c: instruction-set dispatch, threads and the public entry points.
 *
 * kernels.inc is compiled once per (instruction set, dtype) into separately
 * named functions gathered in one table per pair (the NumPy / SLEEF scheme),
 * in the units isa_<level>.c and isa_<level>_f64.c (internal.h).
 * The first call picks the best table the CPU supports, capped by
 * FASTACT_C_ISA, and remembers it.  Must be compiled with -ffp-contract=off:
 * a fused multiply-add would change the RReLU slopes, which are bit-identical
 * to the other backends.
 */
#include "fastact.h"
#include "pool.h"

#include "internal.h"


/* --- the resolver ---------------------------------------------------------------- */

/* dtype ids FA_F32_IDX, FA_F64_IDX, FA_F16_IDX, FA_BF16_IDX: fastact.h (the
   narrow dtypes' kernels: c_src/narrow.inc) */

static const fa_table *const fa_tables[3][4] = {
    {&table_f32_baseline, &table_f64_baseline, &table_f16_baseline, &table_bf16_baseline},
#if FA_X86
    {&table_f32_avx2, &table_f64_avx2, &table_f16_avx2, &table_bf16_avx2},
    {&table_f32_avx512, &table_f64_avx512, &table_f16_avx512, &table_bf16_avx512},
#endif
};

static const fa_convert_table *const fa_converts[3] = {
    &convert_narrow_baseline,
#if FA_X86
    &convert_narrow_avx2, &convert_narrow_avx512,
#endif
};

static const int fa_itemsize[4] = {4, 8, 2, 2};

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
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
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
 * 27.5 / 49.9 (one kernel repeated).  A chain of kernels, each reading
 * the last one's output, loses by streaming below 16-32 MiB: the Python
 * side sets the threshold at load to the last-level cache's size, capped
 * (config.STREAM_MIN_BYTES); 4 MiB is the default of a bare library.
 */

static _Atomic int64_t fa_stream_min_bytes = (int64_t)1 << 22;

void fa_set_stream_min(int64_t bytes) { atomic_store(&fa_stream_min_bytes, bytes); }

int64_t fa_stream_min(void) { return atomic_load(&fa_stream_min_bytes); }

/* The size in bytes of the last-level data (or unified) cache, from cpuid's
   deterministic cache parameters (leaf 4 on Intel, 0x8000001D on AMD): ways *
   partitions * line size * sets of the highest level; 0 where cpuid does not
   say (not x86, or a leaf the CPU lacks).  fastact._threads reads sysfs
   first and asks this only where sysfs is absent. */
int64_t fa_llc_bytes(void)
{
#if FA_X86
    unsigned a, b, c, d, leaf = 4;
    if (!__get_cpuid(0, &a, &b, &c, &d))
        return 0;
    if (b == 0x68747541u) {                       /* "Auth"enticAMD */
        unsigned ext = __get_cpuid_max(0x80000000u, NULL);
        if (ext < 0x8000001Du)
            return 0;
        leaf = 0x8000001Du;
    } else if (a < 4) {
        return 0;
    }
    int64_t best = 0;
    unsigned best_level = 0;
    for (unsigned i = 0; i < 32; i++) {
        __cpuid_count(leaf, i, a, b, c, d);
        const unsigned type = a & 31, level = (a >> 5) & 7;
        if (type == 0)
            break;
        if (type == 2)                            /* instruction cache */
            continue;
        const int64_t size = (int64_t)((b >> 22) + 1) * (((b >> 12) & 0x3ff) + 1)
                             * ((b & 0xfff) + 1) * ((int64_t)c + 1);
        if (level > best_level || (level == best_level && size > best)) {
            best = size;
            best_level = level;
        }
    }
    return best;
#else
    return 0;
#endif
}

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
#define FA_OUT_MODE(ID, stem, binary, out, fast) [FA_K_##ID] = out,
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

/* One chunk of a kernel's call (pool.h); non-temporal stores are weakly
   ordered, so a streaming chunk drains them before the pool counts it done
   (or the call returns) and anyone reads the output. */
typedef struct fa_call {
    fa_range_fn fn;
    const fa_args *a;
    int fence;
} fa_call;

static void fa_call_chunk(void *ctx, int64_t chunk, int64_t lo, int64_t hi)
{
    const fa_call *c = (const fa_call *)ctx;
    c->fn(c->a, lo, hi, chunk);
#if FA_X86
    if (c->fence) fa_sfence();
#endif
}

/* Chunks of at least this many output elements (fewer where a unit is
   longer: a softmax row): a claim costs a compare-and-swap on a line all
   threads share. */
#define FA_CHUNK_MIN_ELEMS 4096

/* kernel `k` of the current level over `units` work units of unit_elems
   output elements (1, or a softmax row); streamed where it pays */
static void fa_launch_chunks(int dtype, int k, fa_args *a, fa_chunks ch, int64_t unit_elems,
                             int nthreads, int whole)
{
    int level = fa_isa();
    int64_t min = fa_stream_min(), bytes = ch.units * unit_elems * fa_itemsize[dtype];
    int big = min >= 0 && bytes > 0 && bytes >= min;
    a->stream = big ? fa_out_mode[k] : FA_OUT_REGULAR;
    fa_call c = {fa_tables[level][dtype]->fn[k], a,
                 (a->stream == FA_OUT_STREAM || a->stream == FA_OUT_PREFETCH) &&
                 (FA_NT || level > FA_ISA_BASELINE)};
    fa_pool_for(fa_call_chunk, &c, ch, nthreads, whole);
}

/* fn over `units` work units of unit_elems output elements each, in chunks
   of multiples of `grain` units that the calling thread and the pool's
   workers take; `fence`: drain streamed stores after each chunk */
static void fa_parallel(fa_range_fn fn, const fa_args *a, int64_t units, int64_t grain,
                        int64_t unit_elems, int nthreads, int fence)
{
    int64_t min_units = (FA_CHUNK_MIN_ELEMS + unit_elems - 1) / unit_elems;
    fa_call c = {fn, a, fence};
    fa_pool_for(fa_call_chunk, &c, fa_chunks_for(units, grain, min_units, nthreads), nthreads, 1);
}

/* kernel `k` of the current level over `units` work units of unit_elems
   output elements (1, or a softmax row), in chunks of multiples of `grain`
   units that the calling thread and the pool's workers take; streamed where
   it pays */
static void fa_launch(int dtype, int k, fa_args *a, int64_t units, int64_t grain,
                      int64_t unit_elems, int nthreads)
{
    int64_t min_units = (FA_CHUNK_MIN_ELEMS + unit_elems - 1) / unit_elems;
    fa_launch_chunks(dtype, k, a, fa_chunks_for(units, grain, min_units, nthreads), unit_elems,
                     nthreads, 1);
}

/* --- public entry points ------------------------------------------------------------ */

#define FA_ELEMENTWISE_GRAIN 16

/* PReLU backward's chunks: a count that does not depend on the thread
   count, so that its weight gradient, summed chunk by chunk, does not
   either (FA_PRELU_CHUNKS, fewer for small arrays, and fewer where their 2 C
   partial sums each would take more than 8 bytes an element) */
#define FA_PRELU_CHUNKS 32

static int64_t fa_prelu_chunks(int64_t n, int64_t C)
{
    int64_t k = n / FA_CHUNK_MIN_ELEMS;
    if (k > FA_PRELU_CHUNKS) k = FA_PRELU_CHUNKS;
    if (C > 0 && k > n / (2 * C)) k = n / (2 * C);
    return k < 1 ? 1 : k;
}

/* PReLU of data T and weights WT (float32 for the narrow dtypes, whose data
   pass as their uint16 bits); the weight gradient as double-double pairs;
   SC: the storage class */
#define FA_DEFINE_PRELU(SC, T, WT, SFX, IDX)                                                  \
    SC void fa_prelu_fwd_##SFX(const T *x, const WT *w, T *y, int64_t outer, int64_t C,          \
                            int64_t inner, int nthreads)                                      \
    {                                                                                         \
        fa_args a = {.in0 = x, .w = w, .out = y, .C = C, .inner = inner};                     \
        fa_launch(IDX, FA_K_PRELU_FWD, &a, outer * C * inner, FA_ELEMENTWISE_GRAIN, 1,        \
                  nthreads);                                                                  \
    }                                                                                         \
    SC int fa_prelu_bwd_##SFX(const T *g, const T *x, const WT *w, T *gx, double *gw,          \
                              int64_t outer, int64_t C, int64_t inner, int nthreads)          \
    {                                                                                         \
        int64_t n = outer * C * inner;                                                        \
        fa_chunks ch = fa_chunks_fixed(n, FA_ELEMENTWISE_GRAIN, fa_prelu_chunks(n, C));       \
        double *scratch = (double *)calloc((size_t)ch.count * 2 * (size_t)C, sizeof(double)); \
        if (scratch == NULL) return -1;                                                       \
        fa_args a = {.in0 = g, .in1 = x, .w = w, .out = gx, .scratch = scratch, .C = C,       \
                     .inner = inner};                                                         \
        if (n > 0)                                                                            \
            fa_launch_chunks(IDX, FA_K_PRELU_BWD, &a, ch, 1, nthreads, 0);                    \
        /* the chunks' pairs in chunk order, in double-double: each channel's */              \
        /* pair, high parts then low ones (fastact._backends.round_pairs)    */              \
        for (int64_t c = 0; c < C; c++) {                                                     \
            double hi = 0.0, lo = 0.0;                                                        \
            for (int64_t t = 0; t < ch.count; t++)                                            \
                fa_add_term(&hi, &lo, scratch[t * 2 * C + c], scratch[t * 2 * C + C + c]);    \
            gw[c] = hi;                                                                       \
            gw[C + c] = lo;                                                                   \
        }                                                                                     \
        free(scratch);                                                                        \
        return 0;                                                                             \
    }

#define FA_DEFINE_DTYPE(T, SFX, IDX)                                                          \
    FA_DEFINE_PRELU(, T, T, SFX, IDX)                                                         \
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
FA_DEFINE_PRELU(static, uint16_t, float, f16, FA_F16_IDX)
FA_DEFINE_PRELU(static, uint16_t, float, bf16, FA_BF16_IDX)

int fa_elementwise(int dtype, int kernel, const void *in0, const void *in1, void *out, int64_t n,
                   double p0, double p1, double p2, uint64_t key, int nthreads)
{
    if (dtype < FA_F32_IDX || dtype > FA_BF16_IDX || kernel < 0 ||
        kernel >= FA_K_ELEMENTWISE_COUNT || n < 0)
        return -1;
    fa_args a = {.in0 = in0, .in1 = in1, .out = out, .p0 = p0, .p1 = p1, .p2 = p2, .key = key};
    fa_launch(dtype, kernel, &a, n, FA_ELEMENTWISE_GRAIN, 1, nthreads);
    return 0;
}

/* --- elementwise kernels at global positions (fastact/_dask.py's blocks) ---------- */

typedef struct {
    fa_range_fn fn;
    fa_args a;
    const int64_t *starts;
    int64_t m, size;
} fa_rows_at;

/* rows [lo, hi): row r's operands shifted (in integers: the shifted address
   lies outside the row) so that the kernel's index i in [starts[r],
   starts[r] + m) addresses element i - starts[r] of the row, and an indexed
   formula keys it by i */
static void fa_rows_at_chunk(void *ctx, int64_t chunk, int64_t lo, int64_t hi)
{
    const fa_rows_at *c = (const fa_rows_at *)ctx;
    for (int64_t r = lo; r < hi; r++) {
        fa_args a = c->a;
        const uintptr_t shift = (uintptr_t)((r * c->m - c->starts[r]) * c->size);
        a.in0 = (const void *)((uintptr_t)a.in0 + shift);
        a.in1 = a.in1 ? (const void *)((uintptr_t)a.in1 + shift) : NULL;
        a.out = (void *)((uintptr_t)a.out + shift);
        c->fn(&a, c->starts[r], c->starts[r] + c->m, chunk);
    }
}

int fa_elementwise_rows(int dtype, int kernel, const void *in0, const void *in1, void *out,
                        int64_t rows, int64_t m, const int64_t *starts, double p0, double p1,
                        double p2, uint64_t key, int nthreads)
{
    if ((dtype != FA_F32_IDX && dtype != FA_F64_IDX) || kernel < 0 ||
        kernel >= FA_K_ELEMENTWISE_COUNT || rows < 0 || m < 0)
        return -1;
    for (int64_t r = 0; r < rows; r++)
        if (starts[r] < 0) return -1;
    if (rows == 0 || m == 0) return 0;
    fa_rows_at c = {fa_tables[fa_isa()][dtype]->fn[kernel],
                    {.in0 = in0, .in1 = in1, .out = out, .p0 = p0, .p1 = p1, .p2 = p2,
                     .key = key, .stream = FA_OUT_REGULAR},
                    starts, m, dtype == FA_F32_IDX ? 4 : 8};
    fa_pool_for(fa_rows_at_chunk, &c,
                fa_chunks_for(rows, 1, (FA_CHUNK_MIN_ELEMS + m - 1) / m, nthreads), nthreads, 1);
    return 0;
}

int fa_narrow_convert(int dtype, int to_f32, const void *in, void *out, int64_t n)
{
    if ((dtype != FA_F16_IDX && dtype != FA_BF16_IDX) || n < 0)
        return -1;
    const fa_convert_table *t = fa_converts[fa_isa()];
    if (to_f32)
        t->widen[dtype - FA_F16_IDX]((const fa_u16_unaligned *)in, (float *)out, n);
    else
        t->narrow[dtype - FA_F16_IDX]((const float *)in, (fa_u16_unaligned *)out, n);
    return 0;
}

int fa_round_pairs(int dtype, const double *pairs, int64_t n, void *out)
{
    if ((dtype != FA_F32_IDX && dtype != FA_F64_IDX) || n < 0)
        return -1;
    for (int64_t i = 0; i < n; i++) {
        const double hi = pairs[i], lo = pairs[n + i], s = hi + lo;
        if (dtype == FA_F64_IDX) {
            ((double *)out)[i] = fabs(hi) < INFINITY ? s : hi;
            continue;
        }
        double v = hi;
        if (fabs(hi) < INFINITY) {
            /* round to odd: the pair's exact sum where it is not a double
               replaced by the double of odd last bit next to it */
            const double r = fa_two_sum_err(hi, lo, s);
            uint64_t u;
            memcpy(&u, &s, sizeof u);
            v = r != 0.0 && (u & 1) == 0 ? nextafter(s, copysign(INFINITY, r)) : s;
        }
        ((float *)out)[i] = (float)v;
    }
    return 0;
}

int fa_rowwise_inner(int dtype, int kernel, const void *in0, const void *in1, void *out0,
                     int64_t outer, int64_t n, int64_t K, int64_t cols, int nthreads)
{
    /* the narrow dtypes' columns are float32 ones in the float32 worker */
    if (dtype < FA_F32_IDX || dtype > FA_BF16_IDX || kernel < 0 || kernel >= FA_K_COUNT ||
        outer < 0 || n < 1 || K < 1 || cols < 1 || cols > 8192 / (dtype == FA_F64_IDX ? 8 : 4))
        return -2;
    fa_range_fn fn = fa_tables[fa_isa()][dtype]->inner[kernel];
    if (fn == NULL)                 /* not a kernel of the softmax family */
        return -2;
    _Atomic int nomem = 0;
    int64_t min = fa_stream_min(), bytes = outer * n * K * fa_itemsize[dtype];
    int big = min >= 0 && bytes >= min && dtype <= FA_F64_IDX;
    fa_args a = {.in0 = in0, .in1 = in1, .out = out0, .n = n, .C = K, .inner = cols,
                 .stream = big ? FA_OUT_PREFETCH : FA_OUT_REGULAR, .nomem = &nomem};
    /* a unit: one block of `cols` columns of one outer index, n rows */
    fa_parallel(fn, &a, outer * ((K + cols - 1) / cols), 1, n * cols, nthreads,
                big && (FA_NT || fa_isa() > FA_ISA_BASELINE));
    return atomic_load(&nomem) ? -1 : 0;
}

int fa_rowwise(int dtype, int kernel, const void *in0, const void *in1, const void *in2,
               void *out0, void *out1, int64_t d0, int64_t d1, int64_t d2, int nthreads)
{
    if (dtype < FA_F32_IDX || dtype > FA_BF16_IDX || d0 < 0 || d1 < 0 || d2 < 0)
        return -2;
    _Atomic int nomem = 0;
    switch (kernel) {
    /* the narrow dtypes' weights and weight gradient are float32 */
    case FA_K_PRELU_FWD:
        switch (dtype) {
        case FA_F32_IDX: fa_prelu_fwd_f32(in0, in1, out0, d0, d1, d2, nthreads); break;
        case FA_F64_IDX: fa_prelu_fwd_f64(in0, in1, out0, d0, d1, d2, nthreads); break;
        case FA_F16_IDX: fa_prelu_fwd_f16(in0, in1, out0, d0, d1, d2, nthreads); break;
        default: fa_prelu_fwd_bf16(in0, in1, out0, d0, d1, d2, nthreads);
        }
        return 0;
    case FA_K_PRELU_BWD:
        switch (dtype) {
        case FA_F32_IDX: return fa_prelu_bwd_f32(in0, in1, in2, out0, out1, d0, d1, d2, nthreads);
        case FA_F64_IDX: return fa_prelu_bwd_f64(in0, in1, in2, out0, out1, d0, d1, d2, nthreads);
        case FA_F16_IDX: return fa_prelu_bwd_f16(in0, in1, in2, out0, out1, d0, d1, d2, nthreads);
        default: return fa_prelu_bwd_bf16(in0, in1, in2, out0, out1, d0, d1, d2, nthreads);
        }
    /* the softmax family: rows d0 of length d1 (-1: a narrow row's buffers
       could not be allocated) */
#define FA_ROW_CASE(NAME, name, negate, log_, fwd_out, bwd_out)                      \
    case FA_K_##NAME##_FWD: {                                                        \
        fa_args a = {.in0 = in0, .out = out0, .n = d1, .nomem = &nomem};             \
        fa_launch(dtype, kernel, &a, d0, 1, d1, nthreads);                           \
        return atomic_load(&nomem) ? -1 : 0;                                         \
    }                                                                                \
    case FA_K_##NAME##_BWD: {                                                        \
        fa_args a = {.in0 = in0, .in1 = in1, .out = out0, .n = d1, .nomem = &nomem}; \
        fa_launch(dtype, kernel, &a, d0, 1, d1, nthreads);                           \
        return atomic_load(&nomem) ? -1 : 0;                                         \
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
