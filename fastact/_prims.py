"""Scalar primitives the activation formulas are written in.

The formulas in :mod:`fastact._registry` never call ``math.exp`` directly:
they receive a :class:`Prims` object for one (target, dtype) pair and use its
``exp``/``expm1`` and its typed constants.  Two families exist:

* ``cpu_prims(dtype)``: exponentials written as a range-reduced polynomial
  whose ``2**n`` factor is built with a bit-cast intrinsic.  Unlike Numba's
  ``np.exp`` (a call into libm, without SVML on our machines) these inline and
  vectorize, so the kernels run at memory speed.
* ``math_prims(dtype)``: the ``math`` module, for CUDA (where ``expf`` is a
  fast hardware-assisted routine) and for numba's CUDA simulator, which runs
  kernels as plain Python.

Numba is imported lazily: importing fastact compiles nothing.
"""
from __future__ import annotations

import functools
import math

import numpy as np


class Prims:
    """Typed constants and exponentials for one dtype on one target."""

    def __init__(self, dtype, exp, expm1, T, jit):
        self.dtype = np.dtype(dtype)
        self.exp = exp
        self.expm1 = expm1
        # compiles a formula's own scalar helpers for the same target
        self.jit = jit
        # ``T(1.0)`` yields a scalar of the target dtype: formulas build their
        # constants with it so float32 arithmetic is never promoted to float64.
        self.T = T


def _identity(fn):
    return fn


@functools.lru_cache(maxsize=None)
def math_prims(dtype, jit=_identity) -> Prims:
    """``math.exp``/``math.expm1``; ``jit`` compiles helpers for the target
    (``numba.cuda.jit(device=True)`` on a GPU, nothing in the simulator)."""
    dt = np.dtype(dtype)
    return Prims(dt, math.exp, math.expm1, dt.type, jit)


# --- polynomial exponentials for the CPU -----------------------------------

# Constants per dtype: (int type, float type, log2(e), ln2 hi, ln2 lo,
# rounding shifter, exponent bias, mantissa bits, clamp low, clamp high).
# The clamps keep the polynomial in range: below `lo` every result rounds to
# 0 (exp) or -1 (expm1), above `hi` exp overflows to +inf through 2**n.
_F32 = dict(log2e=1.4426950408889634, ln2hi=0.693359375, ln2lo=-2.12194440e-4,
            shifter=12582912.0, bias=127, mbits=23, lo=-104.0, hi=89.0,
            em1_lo=-18.0)
_F64 = dict(log2e=1.4426950408889634, ln2hi=6.93147180369123816490e-01,
            ln2lo=1.90821492927058770002e-10, shifter=6755399441055744.0,
            bias=1023, mbits=52, lo=-746.0, hi=710.0, em1_lo=-38.0)


@functools.lru_cache(maxsize=None)
def cpu_prims(dtype) -> Prims:
    """Vectorizable exp/expm1 for float32 or float64 (max error ~1 ULP)."""
    import numba
    from numba import types
    from numba.extending import intrinsic

    dt = np.dtype(dtype)
    T = dt.type
    f32 = dt == np.float32
    c = _F32 if f32 else _F64
    nb_f = types.float32 if f32 else types.float64
    nb_i = types.int32 if f32 else types.int64
    I = np.int32 if f32 else np.int64

    @intrinsic
    def as_int(typingctx, x):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], context.get_value_type(nb_i))
        return nb_i(nb_f), codegen

    @intrinsic
    def as_float(typingctx, n):
        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], context.get_value_type(nb_f))
        return nb_f(nb_i), codegen

    log2e, ln2hi, ln2lo = T(c["log2e"]), T(c["ln2hi"]), T(c["ln2lo"])
    shifter = T(c["shifter"])
    shifter_bits = I(np.array(c["shifter"], dtype=dt).view(I))
    bias, mbits = I(c["bias"]), I(c["mbits"])
    lo, hi, em1_lo = T(c["lo"]), T(c["hi"]), T(c["em1_lo"])
    one = T(1.0)
    ione = I(1)
    if f32:
        # Cephes expf minimax coefficients on [-ln2/2, ln2/2]
        p = tuple(T(v) for v in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
    else:
        # Taylor coefficients 1/13! ... 1/2!; truncation error < 2e-17 on |r| <= ln2/2
        p = tuple(T(1.0 / math.factorial(k)) for k in range(13, 1, -1))

    njit = functools.partial(numba.njit, inline="always", error_model="numpy", cache=True)

    @njit
    def _reduce(x):
        # n = round(x / ln2) without a float->int conversion: adding the
        # shifter leaves n in the low mantissa bits (valid for |n| < 2**22).
        t = x * log2e + shifter
        n = as_int(t) - shifter_bits
        nf = t - shifter
        r = (x - nf * ln2hi) - nf * ln2lo
        return r, n

    @njit
    def _expm1_poly(r):
        # expm1(r) = r + r**2 * (1/2 + r/6 + ...) on |r| <= ln2/2
        q = p[0]
        for k in range(1, len(p)):
            q = q * r + p[k]
        return r + (r * r) * q

    @njit
    def _pow2(n):
        return as_float((n + bias) << mbits)

    @njit
    def exp(x):
        xc = hi if x > hi else x
        xc = lo if xc < lo else xc          # NaN passes through both tests
        r, n = _reduce(xc)
        m = _expm1_poly(r) + one
        # 2**n as two factors so that results in the subnormal range and the
        # overflow to +inf are rounded once, by the last multiplication.
        n1 = n >> ione
        return (m * _pow2(n1)) * _pow2(n - n1)

    @njit
    def expm1(x):
        """exp(x) - 1 accurate near 0; valid for x <= ln(max float) - 1."""
        xc = em1_lo if x < em1_lo else x
        r, n = _reduce(xc)
        e = _expm1_poly(r)
        s = _pow2(n)
        # 2**n * expm1(r) + (2**n - 1): exact scaling, one rounding in the sum
        return s * e + (s - one)

    return Prims(dt, exp, expm1, T, njit)
