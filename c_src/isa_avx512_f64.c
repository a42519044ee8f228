/* isa_avx512_f64.c: float64's kernels at the avx512 level, a translation unit
   of their own so that the build compiles them beside float32's (level.inc) */
#define FA_PART 64
#include "isa_avx512.c"
