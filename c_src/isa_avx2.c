/* isa_avx2.c: the kernels at the AVX2 + FMA + F16C level; see internal.h.
 * Empty where the target is not x86. */
/* FA_PART: 32 (float32 and the narrow dtypes), or 64 where
   isa_avx2_f64.c includes this file (level.inc) */
#ifndef FA_PART
#define FA_PART 32
#endif
#include "internal.h"

#if FA_X86
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
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
#define FA_NARROW_HW 1
#include "level.inc"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int fa_isa_avx2_unused; /* ISO C: no empty translation unit */
#endif /* FA_X86 */
