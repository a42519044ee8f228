"""Oracles of the exponential family (see oracles.py): obvious formulas in
np.longdouble, and the Taylor series of x - tanh x near 0 (coefficients from
mpmath's Bernoulli numbers)."""
from __future__ import annotations

import numpy as np

from oracles_base import WIDE, Oracle, hp  # noqa: F401

ORACLES: dict[str, Oracle] = {}

SELU_ALPHA = WIDE("1.6732632423543772848170429916717")
SELU_SCALE = WIDE("1.0507009873554804934193349852946")


def _sigmoid(w):
    e = np.exp(-np.abs(w))
    return np.where(w >= 0, 1 / (1 + e), e / (1 + e))


# --- silu ---------------------------------------------------------------------------

def silu(x):
    w = hp(x)
    return np.where(np.isneginf(w), -0.0, w * _sigmoid(w))


def silu_backward(g, x):
    w = hp(x)
    s = _sigmoid(w)
    xs = np.where(np.isinf(w), 0, w)
    return hp(g) * (s * (1 + xs * (1 - s)))


def silu_terms(x):
    w = hp(x)
    s = _sigmoid(w)
    xs = np.where(np.isinf(w), 0, w)
    return s + np.abs(xs) * s * (1 - s)


ORACLES["silu"] = Oracle(silu, silu_backward, terms=silu_terms)


# --- tanh ---------------------------------------------------------------------------

ORACLES["tanh"] = Oracle(lambda x: np.tanh(hp(x)),
                         lambda g, y: hp(g) * ((1 - hp(y)) * (1 + hp(y))))  # each factor exact


# --- selu ---------------------------------------------------------------------------

def selu(x):
    w = hp(x)
    return SELU_SCALE * np.where(w > 0, w, SELU_ALPHA * np.expm1(np.minimum(w, 0)))


def selu_backward(g, x):
    w, gw = hp(x), hp(g)
    with np.errstate(invalid="ignore"):
        neg = gw * SELU_SCALE * SELU_ALPHA * np.exp(np.minimum(w, 0))
        neg = np.where(np.isinf(gw) & (w > -np.inf), gw, neg)     # inf * (finite > 0)
    return np.where(w <= 0, neg, gw * SELU_SCALE)


ORACLES["selu"] = Oracle(selu, selu_backward,
                         backward_y=lambda g, y: np.where(
                             hp(y) <= 0, hp(g) * (hp(y) + hp(np.asarray(1.7580993408473768, y.dtype))),
                             hp(g) * hp(np.asarray(1.0507009873554804934193349852946, y.dtype))))


# --- celu ---------------------------------------------------------------------------

def celu(x, alpha=1.0):
    w, a = hp(x), WIDE(alpha)
    return np.where(w > 0, w, a * np.expm1(np.minimum(w, 0) / a))


def celu_backward(g, x, alpha=1.0):
    w, gw, a = hp(x), hp(g), WIDE(alpha)
    with np.errstate(invalid="ignore"):
        neg = gw * np.exp(np.minimum(w, 0) / a)
        neg = np.where(np.isinf(gw) & (w > -np.inf), gw, neg)
    return np.where(w <= 0, neg, gw)


ORACLES["celu"] = Oracle(celu, celu_backward,
                         backward_y=lambda g, y, alpha=1.0: np.where(
                             hp(y) <= 0, hp(g) * (hp(y) / hp(np.asarray(alpha, y.dtype)) + 1),
                             hp(g)),
                         variants={"alpha0.5": {"alpha": 0.5}, "alpha3": {"alpha": 3.0},
                                   "alpha0.7": {"alpha": 0.7}})


# --- mish ---------------------------------------------------------------------------

def _softplus(w):
    return np.maximum(w, 0) + np.log1p(np.exp(-np.abs(w)))


def mish(x):
    w = hp(x)
    return np.where(np.isneginf(w), -0.0, w * np.tanh(_softplus(w)))


def mish_backward(g, x):
    w = hp(x)
    sp = _softplus(w)
    xs = np.where(np.isinf(w), 0, w)
    return hp(g) * (np.tanh(sp) + xs * _sigmoid(w) / np.cosh(sp) ** 2)


def mish_terms(x):
    w = hp(x)
    sp = _softplus(w)
    xs = np.where(np.isinf(w), 0, w)
    return np.abs(np.tanh(sp)) + np.abs(xs) * _sigmoid(w) / np.cosh(sp) ** 2


ORACLES["mish"] = Oracle(mish, mish_backward, terms=mish_terms)


# --- tanhshrink -------------------------------------------------------------------------

def _tanh_series_coefficients(n=30):
    """x - tanh x = sum_k c_k x**(2k+1), k >= 1."""
    import mpmath as mp
    mp.mp.dps = 40
    out = []
    for k in range(2, n + 2):                 # tanh x = sum 2^2k (2^2k - 1) B_2k x^(2k-1) / (2k)!
        c = 2 ** (2 * k) * (2 ** (2 * k) - 1) * mp.bernoulli(2 * k) / mp.factorial(2 * k)
        out.append(WIDE(mp.nstr(-c, 30)))
    return out


_TS = None


def tanhshrink(x):
    global _TS
    if _TS is None:
        _TS = _tanh_series_coefficients()
    w = hp(x)
    small = np.abs(w) < 0.5
    ws = np.where(small, w, 0)
    z = ws * ws
    s = np.zeros_like(ws)
    for c in reversed(_TS):
        s = s * z + c
    series = ws * z * s
    with np.errstate(invalid="ignore"):
        direct = np.where(np.isinf(w), w, w - np.tanh(w))
    return np.where(small, series, direct)


ORACLES["tanhshrink"] = Oracle(tanhshrink, lambda g, x: hp(g) * np.tanh(hp(x)) ** 2)
