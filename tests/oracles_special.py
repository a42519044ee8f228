"""Oracles of the special family (see oracles.py): softplus and logsigmoid
in long double (float64 data: beta * x carries 64 bits, which costs at most
|beta x| 2**-64 relative, a third of an ULP where it matters)."""
from __future__ import annotations

import numpy as np

from oracles_base import WIDE, Oracle, hp  # noqa: F401


def _dt(x):
    return np.asarray(x).dtype


def _sigmoid(z):
    with np.errstate(over="ignore", under="ignore"):
        e = np.exp(-np.abs(z))
    return np.where(z > 0, 1 / (1 + e), e / (1 + e))


def softplus(x, beta=1.0, threshold=20.0):
    dt = _dt(x)
    b = dt.type(beta)
    with np.errstate(over="ignore", invalid="ignore"):
        above = np.asarray(x) * b > threshold          # PyTorch's test, on the rounded product
    xw = hp(x)
    z = xw * WIDE(b)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        tail = np.log1p(np.exp(-np.abs(z))) / WIDE(b)
        y = np.where(z > 0, xw + tail, tail)
    return np.where(above | np.isnan(xw), xw, y)


def _times(g, sig, z):
    """g * sig with sig > 0 wherever z > -inf (an infinite g gives g there,
    where the long double exponential may have underflowed)."""
    with np.errstate(invalid="ignore"):
        r = hp(g) * sig
    return np.where(np.isinf(hp(g)) & (z > -np.inf), hp(g), r)


def softplus_backward(g, x, beta=1.0, threshold=20.0):
    dt = _dt(x)
    b = dt.type(beta)
    with np.errstate(over="ignore", invalid="ignore"):
        z = np.asarray(x) * b              # the rounded product: PyTorch's test
        above = z > threshold
        r = _times(g, _sigmoid(hp(x) * WIDE(b)), z)
    return np.where(above, hp(g), r)


def logsigmoid(x):
    xw = hp(x)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return np.minimum(xw, 0) - np.log1p(np.exp(-np.abs(xw)))


def logsigmoid_backward(g, x):
    return _times(g, _sigmoid(-hp(x)), -hp(x))


ORACLES: dict[str, Oracle] = {
    "softplus": Oracle(softplus, softplus_backward,
                       variants={"beta2": dict(beta=2.0, threshold=10.0),
                                 "beta07": dict(beta=0.7, threshold=np.inf)},
                       kinks=lambda beta=1.0, threshold=20.0: (
                           (threshold / beta,) if np.isfinite(threshold) else ())),
    "logsigmoid": Oracle(logsigmoid, logsigmoid_backward),
}


# --- gelu --------------------------------------------------------------------------------
# The exact form in long double: exp(-x**2/2) with x**2 exact (x split into
# 26-bit halves), erfc(t) = exp(-t**2) erfcx(t) with erfcx by its continued
# fraction (300 terms: 3e-20 from t = 1) and, below t = 1, erf by its Taylor
# series.  The tanh form: long double, with mpmath (40 digits) where float64
# data have |v| > 30 (v's long double rounding would cost |v| 2**-64).

_PI = WIDE("3.141592653589793238462643383279502884")
_SQRTPI = np.sqrt(_PI)
_SQRT2 = np.sqrt(WIDE(2))


def _exp_half_sq(x):
    """exp(-x**2 / 2) for float32/float64 values x, x**2 carried exactly."""
    xd = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        c = xd * 134217729.0
        xh = np.where(np.abs(xd) < 1e300, c - (c - xd), 0.0)
        xl = np.where(np.abs(xd) < 1e300, xd - xh, 0.0)
        h, lo = hp(xh), hp(xl)
        e = np.exp(-h * h / 2) * np.exp(-(2 * h * lo + lo * lo) / 2)
    return np.where(np.abs(xd) < 200, e, 0)        # exp(-20000) is 0 in long double


def _erfcx_cf(t):
    f = t.copy()
    for k in range(300, 0, -1):
        f = t + (WIDE(k) / 2) / f
    return 1 / (_SQRTPI * f)


def _erf_taylor(y):
    term, s = y.copy(), y.copy()
    y2 = y * y
    for k in range(1, 40):
        term = term * (-y2) / k
        s = s + term / (2 * k + 1)
    return s * (2 / _SQRTPI)


def _phi_parts(x):
    """(Phi(x), phi(x)) in long double, for finite x."""
    xw = hp(x)
    t = np.abs(xw) / _SQRT2
    e = _exp_half_sq(x)
    small = t < 1
    with np.errstate(all="ignore"):
        f = _erfcx_cf(np.where(small, WIDE(1), np.minimum(t, WIDE(1e6))))
        big = np.where(xw < 0, e * f / 2, 1 - e * f / 2)
        Phi = np.where(small, (1 + _erf_taylor(np.where(small, xw / _SQRT2, 0))) / 2, big)
    return Phi, e / np.sqrt(2 * _PI)


_C0 = 2 * np.sqrt(2 / _PI)
_C1 = _C0 * WIDE("0.044715")


def _mp_tanh_parts(xv):
    import mpmath as mp
    c0 = 2 * mp.sqrt(2 / mp.pi)
    c1 = c0 * mp.mpf("0.044715")
    v = xv * (c0 + c1 * xv * xv)
    s, sm = 1 / (1 + mp.exp(-v)), 1 / (1 + mp.exp(v))
    return s, xv * s * sm * (c0 + 3 * c1 * xv * xv)


def _tanh_parts(x):
    """(sigmoid(v), x sigmoid(v) sigmoid(-v) v') in long double, finite x."""
    xw = hp(x)
    with np.errstate(all="ignore"):
        v = xw * (_C0 + _C1 * xw * xw)
        e = np.exp(-np.abs(v))
        s = np.where(v > 0, 1 / (1 + e), e / (1 + e))
        sm = np.where(v > 0, e / (1 + e), 1 / (1 + e))
        t2 = xw * s * sm * (_C0 + 3 * _C1 * xw * xw)
    if np.asarray(x).dtype == np.float64:
        hard = np.isfinite(v) & (np.abs(v) > 30) & (np.abs(v) < 5e4)
        if hard.any():
            import mpmath
            with mpmath.workdps(40):
                for i in zip(*np.nonzero(hard)):
                    a, b = _mp_tanh_parts(mpmath.mpf(float(np.asarray(x)[i])))
                    s[i], t2[i] = _mp_to_wide(a), _mp_to_wide(b)
    return s, t2


def _mp_to_wide(v):
    import mpmath
    if abs(v) < mpmath.mpf("1e-4945"):
        return WIDE(0.0)
    return WIDE(mpmath.nstr(v, 30))


def _gelu_terms(x, approximate):
    """(Phi-like factor, term1, term2) of the derivative, with the limits at
    +-inf and NaN for NaN."""
    xw = hp(x)
    fin = np.isfinite(xw)
    xf = np.where(fin, np.asarray(x), 0).astype(np.asarray(x).dtype)
    if approximate == "tanh":
        s, t2 = _tanh_parts(xf)
    else:
        s, phi = _phi_parts(xf)
        t2 = xw * phi
    s = np.where(fin, s, np.where(xw > 0, 1, np.where(xw < 0, 0, np.nan)))
    t2 = np.where(fin, t2, np.where(np.isnan(xw), np.nan, 0))
    return s, t2


def gelu(x, approximate="none"):
    s, _ = _gelu_terms(x, approximate)
    xw = hp(x)
    with np.errstate(invalid="ignore"):
        return np.where(xw == -np.inf, 0, xw * s)


def gelu_backward(g, x, approximate="none"):
    s, t2 = _gelu_terms(x, approximate)
    d = s + t2
    gw, xw = hp(g), hp(x)
    with np.errstate(invalid="ignore"):
        r = gw * d
    # the exact product: an infinite g gives +-inf for every finite x
    sign = np.where(d != 0, np.sign(d), np.where(xw < -0.7518, -1, 1))
    return np.where(np.isinf(gw) & np.isfinite(xw), gw * sign, r)


def gelu_terms(x, approximate="none"):
    s, t2 = _gelu_terms(x, approximate)
    return np.abs(s) + np.abs(t2)


ORACLES["gelu"] = Oracle(gelu, gelu_backward, terms=gelu_terms,
                         variants={"tanh": dict(approximate="tanh")})


# --- squareplus: (x + sqrt(x**2 + b)) / 2, in long double -------------------------------
def _squareplus_parts(x, b):
    xw = hp(x)
    bw = WIDE(_dt(x).type(b))
    with np.errstate(over="ignore", invalid="ignore"):
        return xw, bw, np.sqrt(xw * xw + bw)


def squareplus(x, b=4.0):
    xw, bw, s = _squareplus_parts(x, b)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        r = np.where(xw >= 0, (xw + s) / 2, bw / (2 * (s - xw)))
    return np.where(np.isinf(xw), np.maximum(xw, 0), r)


def squareplus_backward(g, x, b=4.0):
    xw, bw, s = _squareplus_parts(x, b)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        d = np.where(xw >= 0, (1 + xw / s) / 2, bw / (2 * s * (s - xw)))
        d = np.where(np.isinf(xw), (xw > 0).astype(WIDE), d)
        return hp(g) * d


ORACLES["squareplus"] = Oracle(squareplus, squareplus_backward,
                               variants={"b1e-3": dict(b=1e-3), "b100": dict(b=100.0)})
