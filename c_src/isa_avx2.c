/* isa_avx2.c: the kernels at the AVX2 + FMA + F16C level; see internal.h.
 * Empty where the target is not x86. */
/* FA_PART: 32 (float32 and the narrow dtypes), or 64 where
   isa_avx2_f64.c includes this file (level.inc) */
#ifndef FA_PART
#define FA_PART 32
#endif
#define FA_TARGET "avx2,fma,f16c"
#include "internal.h"

#if FA_X86
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
