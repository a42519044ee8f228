/* isa_baseline.c: the kernels at the baseline level (SSE2 on x86-64, whatever
 * the compiler targets elsewhere); see internal.h. */
/* FA_PART: 32 (float32 and the narrow dtypes), or 64 where
   isa_baseline_f64.c includes this file (level.inc) */
#ifndef FA_PART
#define FA_PART 32
#endif
#include "internal.h"

#define FA_ISA baseline
#define FA_NARROW_HW 0
#include "level.inc"
