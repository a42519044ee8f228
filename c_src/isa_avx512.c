/* isa_avx512.c: the kernels at the AVX-512 level (Skylake-X set: F, CD, BW,
 * DQ, VL), full-width vectors; see internal.h.  Empty where the target is
 * not x86. */
/* FA_PART: 32 (float32 and the narrow dtypes), or 64 where
   isa_avx512_f64.c includes this file (level.inc) */
#ifndef FA_PART
#define FA_PART 32
#endif
#define FA_TARGET "avx512f,avx512cd,avx512bw,avx512dq,avx512vl,prfchw,prefer-vector-width=512"
#include "internal.h"

#if FA_X86
#undef FA_NT_LINE
#define FA_NT_LINE(dst, src) \
    _mm512_stream_si512((void *)(dst), _mm512_load_si512((const void *)(src)))
#define FA_ISA avx512
#define FA_NARROW_HW 2
#include "level.inc"
#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int fa_isa_avx512_unused; /* ISO C: no empty translation unit */
#endif /* FA_X86 */
