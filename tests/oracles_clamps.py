"""Oracles of the clamps family (see oracles.py): the textbook piecewise
definitions in ``np.longdouble``, parameters rounded to the data's dtype
first (as the public functions document)."""
from __future__ import annotations

import numpy as np  # noqa: F401

from oracles_base import WIDE, Oracle, hp  # noqa: F401

ORACLES: dict[str, Oracle] = {}


def _p(x, v):
    """A parameter as the kernels see it: rounded to x's dtype, then widened."""
    return WIDE(np.asarray(v, dtype=np.asarray(x).dtype))


def _sel(cond, a, b):
    with np.errstate(invalid="ignore"):
        return np.where(cond, a, b)


# hardtanh: clamp; the gradient passes strictly inside (PyTorch), and at NaN
def _hardtanh(x, min_val=-1.0, max_val=1.0):
    xw, lo, hi = hp(x), _p(x, min_val), _p(x, max_val)
    return _sel(np.isnan(xw), xw, np.minimum(np.maximum(xw, lo), hi))


def _hardtanh_bwd(g, x, min_val=-1.0, max_val=1.0):
    xw, lo, hi = hp(x), _p(x, min_val), _p(x, max_val)
    inside = ((xw > lo) & (xw < hi)) | np.isnan(xw)
    return _sel(inside, hp(g), WIDE(0))


ORACLES["hardtanh"] = Oracle(
    _hardtanh, _hardtanh_bwd,
    variants={"wide": dict(min_val=-2.0, max_val=3.5), "point": dict(min_val=0.5, max_val=0.5),
              "open": dict(min_val=-np.inf, max_val=0.25)},
    kinks=lambda min_val=-1.0, max_val=1.0: tuple(v for v in (min_val, max_val)
                                                  if np.isfinite(v)))

ORACLES["relu6"] = Oracle(
    lambda x: _hardtanh(x, 0.0, 6.0), lambda g, x: _hardtanh_bwd(g, x, 0.0, 6.0),
    kinks=lambda: (0.0, 6.0))


# hardsigmoid: (x + 3)/6 on [-3, 3], 0 below, 1 above; gradient 1/6 strictly inside
def _hardsigmoid(x):
    xw = hp(x)
    v = np.clip((xw + 3) / 6, 0, 1)
    return _sel(np.isnan(xw), xw, v)


def _hardsigmoid_bwd(g, x):
    xw = hp(x)
    return _sel((xw > -3) & (xw < 3), hp(g) / 6, WIDE(0))


ORACLES["hardsigmoid"] = Oracle(_hardsigmoid, _hardsigmoid_bwd, kinks=lambda: (-3.0, 3.0))


# hardswish: x (x + 3) / 6 on (-3, 3), 0 below, x above; gradient (2x + 3)/6 inside
def _hardswish(x):
    xw = hp(x)
    with np.errstate(invalid="ignore", over="ignore"):
        mid = xw * (xw + 3) / 6
    return _sel(xw <= -3, WIDE(0), _sel(xw >= 3, xw, mid))


def _hardswish_bwd(g, x):
    xw, gw = hp(x), hp(g)
    with np.errstate(invalid="ignore", over="ignore"):
        mid = gw * (2 * xw + 3) / 6
    return _sel(xw <= -3, WIDE(0), _sel(xw < 3, mid, gw))


ORACLES["hardswish"] = Oracle(_hardswish, _hardswish_bwd, kinks=lambda: (-3.0, 3.0))


# hardshrink: 0 on [-l, l], x elsewhere
def _hardshrink(x, lambd=0.5):
    xw, l = hp(x), _p(x, lambd)
    return _sel((xw >= -l) & (xw <= l), WIDE(0), xw)


def _hardshrink_bwd(g, x, lambd=0.5):
    xw, l = hp(x), _p(x, lambd)
    return _sel((xw >= -l) & (xw <= l), WIDE(0), hp(g))


ORACLES["hardshrink"] = Oracle(
    _hardshrink, _hardshrink_bwd, variants={"l2": dict(lambd=2.0), "neg": dict(lambd=-1.0)},
    kinks=lambda lambd=0.5: (-lambd, lambd))


# softshrink: sign(x) max(|x| - l, 0)
def _softshrink(x, lambd=0.5):
    xw, l = hp(x), _p(x, lambd)
    with np.errstate(invalid="ignore"):
        v = np.sign(xw) * np.maximum(np.abs(xw) - l, 0)
    return _sel(np.isnan(xw), xw, v)


ORACLES["softshrink"] = Oracle(
    _softshrink, _hardshrink_bwd, variants={"l0": dict(lambd=0.0), "l1.5": dict(lambd=1.5)},
    kinks=lambda lambd=0.5: (-lambd, lambd))


# threshold: x where x > threshold, else value; the backward takes no value
def _threshold(x, threshold, value):
    xw = hp(x)
    return _sel(xw <= _p(x, threshold), _p(x, value), xw)


def _threshold_bwd(g, x, threshold):
    xw = hp(x)
    return _sel(xw <= _p(x, threshold), WIDE(0), hp(g))


ORACLES["threshold"] = Oracle(
    _threshold, _threshold_bwd, required=dict(threshold=0.1, value=20.0),
    variants={"neg": dict(threshold=-1.0, value=-2.5), "high": dict(threshold=1.5, value=-7.0)},
    kinks=lambda threshold, **_: (threshold,))


# softsign: x / (1 + |x|), +-1 at +-inf; gradient 1 / (1 + |x|)^2
def _softsign(x):
    xw = hp(x)
    with np.errstate(invalid="ignore"):
        return _sel(np.isinf(xw), np.sign(xw), xw / (1 + np.abs(xw)))


def _softsign_bwd(g, x):
    xw = hp(x)
    d = 1 + np.abs(xw)
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        return hp(g) / d / d


ORACLES["softsign"] = Oracle(_softsign, _softsign_bwd)
