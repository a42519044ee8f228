"""The 16-bit storage dtypes: ``numpy.float16`` and ``ml_dtypes.bfloat16``.

Storage in the narrow type, arithmetic in float32, one rounding at the end
(round to nearest, ties to even).  bfloat16 is told by its name, so
ml_dtypes is imported only by whoever made such an array.

The conversions of every backend follow F16C's (``vcvtph2ps``/``vcvtps2ph``):
widening is exact and sets a NaN's quiet bit, keeping its payload; narrowing
rounds to nearest even, keeps subnormal results, gives inf from the first
value that rounds past the largest finite one (65520 for float16), and
keeps a NaN quiet with the payload's high bits.  These NumPy versions are
the reference of the compiled ones (C: c_src/narrow.inc; Numba:
fastact/_prims_narrow.py; CUDA).
"""
from __future__ import annotations

import numpy as np

F16 = np.dtype(np.float16)
#: the float32 compute dtype of both narrow types
F32 = np.dtype(np.float32)


def is_narrow(dtype) -> bool:
    """float16 or bfloat16 (``ml_dtypes``), native byte order."""
    return dtype == F16 or getattr(dtype, "name", None) == "bfloat16"


def is_bfloat16(dtype) -> bool:
    return getattr(dtype, "name", None) == "bfloat16"


def compute_dtype(dtype):
    """The dtype arithmetic runs in: float32 for the narrow types."""
    return F32 if is_narrow(dtype) else dtype


def widen(a):
    """A float32 copy of the narrow array ``a`` (exact; NaNs made quiet)."""
    bits = a.view(np.uint16)
    if is_bfloat16(a.dtype):
        u = bits.astype(np.uint32) << 16
        nan = (bits & 0x7FFF) > 0x7F80
        u[nan] |= 0x00400000
        return u.view(np.float32)
    out = a.astype(np.float32)
    nan = (bits & 0x7FFF) > 0x7C00
    if nan.any():
        out.view(np.uint32)[nan] |= 0x00400000
    return out


def narrow_bits(y, dtype):
    """The uint16 bits of float32 ``y`` rounded once to ``dtype``."""
    y = np.ascontiguousarray(y, np.float32)
    u = y.view(np.uint32)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    if is_bfloat16(dtype):
        r = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)
        r[nan] = ((u[nan] >> 16) | 0x0040).astype(np.uint16)
        return r
    # in integers (NumPy's float16 cast takes a slow path for subnormal
    # results: 70 ms for a softmax's 2**20 outputs)
    a = u & np.uint32(0x7FFFFFFF)
    # below 2**-14 (a float16 subnormal): adding 0.5 aligns the 10 bits at
    # the bottom of the float, rounded to nearest even by the addition
    with np.errstate(invalid="ignore"):       # a signaling NaN (its lane is not used)
        sub = (a.view(np.float32) + np.float32(0.5)).view(np.uint32) - np.uint32(0x3F000000)
    # normal: rebias 127 -> 15, round to nearest even on the 13 dropped bits
    nrm = (a + np.uint32(0xC8000FFF) + ((a >> 13) & np.uint32(1))) >> 13
    big = np.where(nan, np.uint32(0x7E00) | ((a >> 13) & np.uint32(0x3FF)), np.uint32(0x7C00))
    r = np.where(a >= np.uint32(0x47800000), big, np.where(a < np.uint32(0x38800000), sub, nrm))
    return (r | ((u >> 16) & np.uint32(0x8000))).astype(np.uint16)


def narrow_into(out, y):
    """``out[...] = y`` rounded once: ``y`` float32 (or wider: first
    rounded to float32, which no float32 result notices), ``out`` narrow."""
    out.view(np.uint16)[...] = narrow_bits(y, out.dtype).reshape(out.shape)


def narrowed(y, dtype):
    """``y`` rounded once to the narrow ``dtype``: a new array."""
    out = np.empty(np.shape(y), dtype)
    narrow_into(out, y)
    return out
