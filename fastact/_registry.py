"""The activation registry: the single source of truth for every backend.

Each :class:`Spec` holds one activation's scalar math, written once:

* ``build(p)`` takes a :class:`fastact._prims.Prims` (typed constants and
  exponentials for one dtype and target) and returns the plain-Python scalar
  functions ``forward(x, *params)`` and ``backward(g, s, *params)``, where
  ``s`` is the input ``x`` or the output ``y`` as ``saves`` says.  Backends
  compile them (``numba.njit``, ``numba.cuda.jit(device=True)``) into their
  own loop skeletons and hold no math of their own (the C backend excepted,
  which is checked against the reference).
* ``reference_forward`` / ``reference_backward`` are obvious NumPy
  expressions of the same math, used by the ``"numpy"`` backend, which is
  the oracle of the test suite (it runs them with NumPy's floating-point
  warnings off).

Numerical guards live here, so every backend inherits them.  Derivative
conventions at kinks and at NaN follow PyTorch.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from . import _rng, config
from ._prims import math_prims


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str
    kind: str                       # "elementwise", "prelu" or "rowwise"
    saves: str                      # what backward reads besides grad: "x" or "y"
    params: tuple = ()              # names of the scalar parameters, in order
    build: Callable | None = None   # Prims -> (forward, backward) scalar functions
    reference_forward: Callable | None = None
    reference_backward: Callable | None = None
    indexed: bool = False           # formula also takes the flat C-order index
    # passes with an exp or a hash per element: worth threads sooner; their
    # big outputs are not streamed through a buffer (see `streamed`)
    compute_bound: tuple = ()


def parallel_min(name: str) -> int:
    """Elements from which the parallel CPU kernels of ``name`` pay off
    (read at each call: tests and users may change ``config``)."""
    return config.PARALLEL_MIN_COMPUTE if REGISTRY[name].compute_bound else config.PARALLEL_MIN


def streamed(name: str, pass_: str) -> bool:
    """Whether the Numba backend writes a large output of the row kernel
    ``name``'s ``pass_`` (PReLU, softmax) through a row buffer streamed
    out: yes where memory bounds the kernel.  Measured on the 2-core build
    machine (float32, 2**24 elements, 2 threads, GB/s regular / streamed,
    interleaved rounds): softmax backward 23.5 / 27.7, but softmax forward
    13.8 / 12.0 (its exponentials bound it).  The elementwise kernels all
    take the prefetched blocked kernel, which streams each vector as it is
    computed (numba_cpu._make_blocked)."""
    return pass_ not in REGISTRY[name].compute_bound


REGISTRY: dict[str, Spec] = {}


def _register(spec: Spec) -> Spec:
    REGISTRY[spec.name] = spec
    return spec


# --- sigmoid ----------------------------------------------------------------

def _sigmoid(p):
    T, exp_neg_ratio = p.T, p.exp_neg_ratio
    one = T(1.0)

    def forward(x):
        # 1 / (1 + exp(-x)) = s / (s + q) with exp(-x) = q / s: neither
        # overflows (on the CPU s is a power of two, 2**round(x / ln2), and
        # q about 1), which keeps full relative accuracy down into the
        # subnormal range; exactly 1/2 at 0 and 1 from about 17 (float32)
        q, s = exp_neg_ratio(x)
        return s / (s + q)

    def backward(g, y):
        return g * ((one - y) * y)

    return forward, backward


def _ref_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, np.ones_like(e), e) / (1 + e)


_register(Spec(
    "sigmoid", "elementwise", saves="y", build=_sigmoid, compute_bound=("forward",),
    reference_forward=_ref_sigmoid,
    reference_backward=lambda g, y: g * ((1 - y) * y),
))


# --- relu -------------------------------------------------------------------

def _relu(p):
    zero = p.T(0.0)

    def forward(x):
        # `x <= 0` is False for NaN, so NaN propagates; relu(-0.0) = +0.0
        return zero if x <= zero else x

    def backward(g, s):
        # the mask is the same from x or from y: relu'(0) = 0, NaN passes g
        return zero if s <= zero else g

    return forward, backward


_register(Spec(
    "relu", "elementwise", saves="y", build=_relu,
    reference_forward=lambda x: np.where(x <= 0, np.zeros_like(x), x),
    reference_backward=lambda g, s: np.where(s <= 0, np.zeros_like(g), g),
))


# --- leaky relu (also RReLU in evaluation mode) --------------------------------

def _leaky_relu(p):
    zero = p.T(0.0)

    def forward(x, slope):
        return x if x > zero else x * slope

    def backward(g, x, slope):
        # leaky_relu'(0) = slope, as PyTorch
        return g if x > zero else g * slope

    return forward, backward


_register(Spec(
    "leaky_relu", "elementwise", saves="x", params=("negative_slope",),
    build=_leaky_relu,
    reference_forward=lambda x, a: np.where(x > 0, x, x * a),
    reference_backward=lambda g, x, a: np.where(x > 0, g, g * a),
))


# --- rrelu in training mode ----------------------------------------------------

def _rrelu_slope(p):
    """Scalar slope for flat index ``i`` (see :mod:`fastact._rng`): a 32-bit
    counter hash for float32 (``p.hash24``, a primitive: written in Python,
    Numba would widen its 32-bit arithmetic to 64 bits), SplitMix64 for
    float64."""
    T = p.T
    U = np.uint64
    if p.dtype == np.float32:
        hash24, scale24 = p.hash24, T(2.0 ** -24)

        @p.jit
        def slope24(i, key, lower, upper):
            u = hash24(U(i), key) * scale24
            return lower + (upper - lower) * u

        return slope24
    golden, m1, m2 = U(_rng.GOLDEN), U(_rng.M1), U(_rng.M2)
    s30, s27, s31, one_u = U(30), U(27), U(31), U(1)
    bits = _rng.uniform_bits(p.dtype)
    shift, scale = U(64 - bits), T(2.0 ** -bits)

    @p.jit
    def slope(i, key, lower, upper):
        z = key + (U(i) + one_u) * golden
        z = (z ^ (z >> s30)) * m1
        z = (z ^ (z >> s27)) * m2
        z = z ^ (z >> s31)
        u = T(z >> shift) * scale
        return lower + (upper - lower) * u

    return slope


def _rrelu_train(p):
    zero = p.T(0.0)
    slope = _rrelu_slope(p)

    def forward(x, i, key, lower, upper):
        return x if x > zero else x * slope(i, key, lower, upper)

    def backward(g, x, i, key, lower, upper):
        return g if x > zero else g * slope(i, key, lower, upper)

    return forward, backward


def reference_rrelu_slopes(n, key, lower, upper, dtype, start=0):
    """The slopes of flat indices ``start..start+n-1`` as a NumPy array of ``dtype``."""
    dt = np.dtype(dtype)
    lower, upper = dt.type(lower), dt.type(upper)
    idx = np.arange(start, start + n, dtype=np.uint64)
    if dt == np.float32:
        # the masked uint64 form of the CUDA target works on arrays as on
        # scalars; the tests hold it to fastact._rng.hash24
        hash24 = math_prims(dt).hash24
        u = hash24(idx, np.uint64(key)) * dt.type(2.0 ** -24)
        return lower + (upper - lower) * u
    bits = _rng.uniform_bits(dt)
    z = (idx + np.uint64(1)) * np.uint64(_rng.GOLDEN) + np.uint64(key)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_rng.M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_rng.M2)
    z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(64 - bits)).astype(dt) * dt.type(2.0 ** -bits)
    return lower + (upper - lower) * u


def _ref_rrelu_fwd(x, key, lower, upper):
    a = reference_rrelu_slopes(x.size, key, lower, upper, x.dtype).reshape(x.shape)
    return np.where(x > 0, x, x * a)


def _ref_rrelu_bwd(g, x, key, lower, upper):
    a = reference_rrelu_slopes(x.size, key, lower, upper, x.dtype).reshape(x.shape)
    return np.where(x > 0, g, g * a)


_register(Spec(
    "rrelu_train", "elementwise", saves="x", params=("key", "lower", "upper"),
    build=_rrelu_train, indexed=True, compute_bound=("forward", "backward"),
    reference_forward=_ref_rrelu_fwd, reference_backward=_ref_rrelu_bwd,
))


# --- elu --------------------------------------------------------------------------

def _elu(p):
    T, expm1, exp_mul = p.T, p.expm1, p.exp_mul
    zero, ninf = T(0.0), T(-np.inf)

    def forward(x, alpha):
        # the exponential never sees x > 0, so the unused branch cannot
        # overflow; NaN reaches expm1 and propagates
        return x if x > zero else alpha * expm1(zero if x > zero else x)

    def backward(g, x, alpha):
        # elu'(0) = alpha; a NaN input passes g through, as PyTorch
        # g * alpha * exp(x) rounded once: exact also where exp(x) alone
        # is subnormal or g * alpha alone overflows but the product doesn't
        # (so an infinite g gives +-inf for every finite x); at x = -inf,
        # exp(x) is exactly 0: (g * 0) * alpha, NaN for an infinite g (as
        # PyTorch), where exp_mul's clamp would have given +-inf
        if x <= zero:
            return exp_mul(zero if x > zero else x, g, alpha) if x > ninf else \
                (g * zero) * alpha
        return g

    return forward, backward


def _ref_elu_fwd(x, a):
    return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))


def _ref_elu_bwd(g, x, a):
    # in a wider type: the float32/float64 product loses bits where exp(x)
    # is subnormal but the gradient is not; an infinite g times the positive
    # alpha * exp(x) of a finite x is g * alpha exactly (where the wider exp
    # itself may underflow to 0), and at x = -inf exp(x) is 0
    wide = np.longdouble if x.dtype == np.float64 else np.float64
    gw = g.astype(wide) * (wide(a) * np.exp(np.minimum(x, 0).astype(wide)))
    with np.errstate(invalid="ignore"):
        gw = np.where(np.isinf(g) & (x > -np.inf), g * x.dtype.type(a), gw)
    return np.where(x <= 0, gw.astype(x.dtype), g)


_register(Spec(
    "elu", "elementwise", saves="x", params=("alpha",), build=_elu,
    compute_bound=("forward", "backward"),
    reference_forward=_ref_elu_fwd, reference_backward=_ref_elu_bwd,
))


# --- prelu ----------------------------------------------------------------------

def _prelu(p):
    zero = p.T(0.0)

    def forward(x, w):
        return x if x > zero else w * x

    def backward(g, x, w):
        # mask x > 0 (PyTorch); the weight gradient sums g*x where not x > 0
        return g if x > zero else w * g

    def weight_term(g, x):
        return zero if x > zero else g * x

    return forward, backward, weight_term


_register(Spec(
    "prelu", "prelu", saves="x", params=("weight",), build=_prelu,
    reference_forward=lambda x, w: np.where(x > 0, x, w * x),
    reference_backward=lambda g, x, w: np.where(x > 0, g, w * g),
))


# --- softmax ----------------------------------------------------------------------
# Row-wise: y_j = exp(x_j - max x) / sum_k exp(x_k - max x); the max shift is
# the overflow guard.  Backward from the output: g_x = y * (g - sum(g * y)).
# Backends accumulate in float64 (float32 inputs) or with compensated
# summation (float64 inputs).


def _ref_softmax_fwd(x):
    """Rows along the last axis, computed in higher precision."""
    wide = np.longdouble if x.dtype == np.float64 else np.float64
    xw = x.astype(wide)
    m = np.max(xw, axis=-1, keepdims=True) if x.shape[-1] else xw
    e = np.exp(xw - m)
    return (e / np.sum(e, axis=-1, keepdims=True)).astype(x.dtype)


def _ref_softmax_bwd(g, y):
    wide = np.longdouble if y.dtype == np.float64 else np.float64
    gw, yw = g.astype(wide), y.astype(wide)
    return (yw * (gw - np.sum(gw * yw, axis=-1, keepdims=True))).astype(y.dtype)


_register(Spec(
    "softmax", "rowwise", saves="y", compute_bound=("forward",),
    reference_forward=_ref_softmax_fwd, reference_backward=_ref_softmax_bwd,
))
