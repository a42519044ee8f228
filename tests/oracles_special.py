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
