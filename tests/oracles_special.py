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


# --- gelu: mpmath, 40 digits ----------------------------------------------------------

def _mp_map(fn, *arrays):
    """fn(*mpf) elementwise over float arrays, as long double (inf and NaN
    inputs are passed on as mpf's inf / nan)."""
    import mpmath
    flat = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    out = np.empty(flat[0].size, dtype=WIDE)
    with mpmath.workdps(40), np.errstate(all="ignore"):     # beyond long double: 0, inf
        for i in range(out.size):
            v = fn(*[mpmath.mpf(float(a[i])) for a in flat])
            if not mpmath.isfinite(v):
                out[i] = WIDE(float(v))
            elif abs(v) < mpmath.mpf("1e-4945"):          # below long double
                out[i] = WIDE(0.0) if v >= 0 else WIDE(-0.0)
            else:
                out[i] = WIDE(mpmath.nstr(v, 30))
    return out.reshape(np.shape(arrays[0]))


def _gelu_parts(x, tanh):
    """(Phi-like factor s, derivative terms t1, t2) at the mpf x."""
    import mpmath as mp
    if tanh:
        c0 = 2 * mp.sqrt(2 / mp.pi)
        v = x * (c0 + c0 * mp.mpf("0.044715") * x * x)
        s, sm = 1 / (1 + mp.exp(-v)), 1 / (1 + mp.exp(v))
        return s, s, x * s * sm * (c0 + 3 * c0 * mp.mpf("0.044715") * x * x)
    Phi = mp.erfc(-x / mp.sqrt(2)) / 2
    return Phi, Phi, x * mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi)


def _gelu_fwd(xv, tanh):
    import mpmath as mp
    if mp.isnan(xv):
        return xv
    if abs(xv) > 200:           # Phi is 1 or below 1e-8000 (long double's 0) there
        return xv if xv > 0 else mp.mpf(0)
    return xv * _gelu_parts(xv, tanh)[0]


def _gelu_deriv(xv, tanh, terms=False):
    import mpmath as mp
    if mp.isnan(xv):
        return xv
    if abs(xv) > 200:
        return mp.mpf(1 if xv > 0 else 0)
    _, t1, t2 = _gelu_parts(xv, tanh)
    return abs(t1) + abs(t2) if terms else t1 + t2


def gelu(x, approximate="none"):
    tanh = approximate == "tanh"
    return _mp_map(lambda v: _gelu_fwd(v, tanh), x)


def gelu_backward(g, x, approximate="none"):
    tanh = approximate == "tanh"
    d = _mp_map(lambda v: _gelu_deriv(v, tanh), x)
    gw, xw = hp(g), hp(x)
    with np.errstate(invalid="ignore"):
        r = gw * d
    # the exact product: an infinite g gives +-inf for every finite x
    sign = np.where(d != 0, np.sign(d), np.where(xw < -0.7518, -1, 1))
    return np.where(np.isinf(gw) & np.isfinite(xw), gw * sign, r)


def gelu_terms(x, approximate="none"):
    tanh = approximate == "tanh"
    return _mp_map(lambda v: _gelu_deriv(v, tanh, terms=True), x)


ORACLES["gelu"] = Oracle(gelu, gelu_backward, terms=gelu_terms,
                         variants={"tanh": dict(approximate="tanh")})
