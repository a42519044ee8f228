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

import numbers

import numpy as np

from . import _checks, _rng
from ._prims import math_prims
from ._spec import (REGISTRY, REQUIRED, Doc, FromOutput, Param, Row, Spec, Torch,  # noqa: F401
                    c_ops, wide as _wide,
                    elementwise, parallel_min, register, rowwise, streamed)

_register = register


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
    api=(), accuracy=(4, 4),
    doc=Doc(
        "Logistic sigmoid, elementwise.",
        r"\sigma(x) = \frac{1}{1 + e^{-x}}",
        r"\frac{\partial L}{\partial x} = g \, y (1 - y)",
        notes="""Computed as ``s/(s+q)`` with ``exp(-x) = q/s``: on the CPUs ``s =
2**round(x/ln 2)`` and ``q = exp(round(x/ln 2) ln 2 - x)`` in [0.7, 1.42]
(the reference and CUDA take ``exp(-|x|)`` on the side of the sign), so
nothing overflows and results keep full relative accuracy down to the
subnormal range (within 4 ULP everywhere; exactly 1/2 at 0).
``sigmoid(+inf) = 1``, ``sigmoid(-inf) = 0``, NaN propagates.""",
        example=""">>> import numpy as np, fastact
>>> fastact.sigmoid(np.array([-np.inf, 0.0, 2.0, np.inf]))
array([0.        , 0.5       , 0.88079708, 1.        ])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.sigmoid_backward(np.ones(1), fastact.sigmoid(np.zeros(1)))
array([0.25])"""),
    torch=Torch("sigmoid", forward_out=lambda A, x, out: A.sigmoid.out(x, out=out),
                backward_out=lambda A, g, y, out: A.sigmoid_backward.grad_input(
                    g, y, grad_input=out)),
    numpy_forward=lambda x: 1 / (1 + np.exp(-x)),
    numpy_backward=lambda g, y: g * y * (1 - y),
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
    api=(),
    doc=Doc(
        "Rectified linear unit, elementwise.",
        r"\mathrm{relu}(x) = \max(x, 0)",
        r"\frac{\partial L}{\partial x} = g \cdot [y > 0]",
        notes="NaN propagates (as PyTorch); ``relu(-0.0) = +0.0``.",
        saved_doc="the forward output or its input (the mask is the same)",
        backward_notes="""Convention at the kink: ``relu'(0) = 0``.  Where ``y`` is NaN the
gradient passes through (PyTorch's ``threshold_backward``).""",
        example=""">>> import numpy as np, fastact
>>> fastact.relu(np.array([-2.0, 0.0, 3.0]))
array([0., 0., 3.])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.relu_backward(np.ones(3), np.array([-1.0, 0.0, 2.0]))
array([0., 0., 1.])"""),
    torch=Torch("relu", forward_out=lambda A, x, out: A.clamp_min.out(x, 0, out=out),
                backward_out=lambda A, g, y, out: A.threshold_backward.grad_input(
                    g, y, 0, grad_input=out)),
    numpy_forward=lambda x: np.maximum(x, 0),
    numpy_backward=lambda g, y: np.where(y > 0, g, 0),
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
    api=(Param("negative_slope", 0.01, "the slope ``a`` where ``x <= 0`` (a real number)"),),
    doc=Doc(
        "Leaky ReLU (Maas et al., 2013), elementwise.",
        r"f(x) = x \text{ if } x > 0 \text{ else } a x, \quad a = \text{negative\_slope}",
        r"\frac{\partial L}{\partial x} = g \text{ if } x > 0 \text{ else } a g",
        backward_notes="Convention at the kink: ``f'(0) = a`` (PyTorch); a NaN input gives ``a g``.",
        example=""">>> import numpy as np, fastact
>>> fastact.leaky_relu(np.array([-2.0, 3.0]), 0.1)
array([-0.2,  3. ])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.leaky_relu_backward(np.ones(3), np.array([-1.0, 0.0, 1.0]), 0.1)
array([0.1, 0.1, 1. ])"""),
    torch=Torch("leaky_relu", lambda a: {"negative_slope": a},
                forward_out=lambda A, x, out, a: A.leaky_relu.out(x, a, out=out),
                backward_out=lambda A, g, x, out, a: A.leaky_relu_backward.grad_input(
                    g, x, a, False, grad_input=out)),
    numpy_forward=lambda x, a: np.where(x > 0, x, a * x),
    numpy_backward=lambda g, x, a: np.where(x > 0, g, a * g),
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


def _rrelu_div_train(p):
    # Xu et al.'s own form: the divisor a ~ U[lower, upper] drawn as the
    # slope is, y = x / a (a division, rounded once on every backend)
    zero = p.T(0.0)
    divisor = _rrelu_slope(p)

    def forward(x, i, key, lower, upper):
        return x if x > zero else x / divisor(i, key, lower, upper)

    def backward(g, x, i, key, lower, upper):
        return g if x > zero else g / divisor(i, key, lower, upper)

    return forward, backward


def reference_rrelu_slopes(n, key, lower, upper, dtype, start=0, index=None):
    """The slopes of flat indices ``start..start+n-1`` (or of the uint64
    array ``index``) as a NumPy array of ``dtype``, float32 or float64 (the
    narrow dtypes compute in float32 and draw float32's slopes)."""
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"rrelu slopes are drawn in float32 or float64, not {dt.name}")
    lower, upper = dt.type(lower), dt.type(upper)
    idx = np.arange(start, start + n, dtype=np.uint64) if index is None else index
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


def _slopes_of(x, key, lower, upper, index):
    """The slopes of ``x``'s elements: keyed by their flat C-order index, or
    by ``index`` (an array of x's shape: their index in a larger array)."""
    return reference_rrelu_slopes(x.size, key, lower, upper, x.dtype,
                                  index=None if index is None else index.reshape(-1)
                                  ).reshape(x.shape)


def _ref_rrelu_fwd(x, key, lower, upper, index=None):
    a = _slopes_of(x, key, lower, upper, index)
    return np.where(x > 0, x, x * a)


def _ref_rrelu_bwd(g, x, key, lower, upper, index=None):
    a = _slopes_of(x, key, lower, upper, index)
    return np.where(x > 0, g, g * a)


def _ref_rrelu_div_fwd(x, key, lower, upper, index=None):
    a = _slopes_of(x, key, lower, upper, index)
    return np.where(x > 0, x, x / a)


def _ref_rrelu_div_bwd(g, x, key, lower, upper, index=None):
    a = _slopes_of(x, key, lower, upper, index)
    return np.where(x > 0, g, g / a)


def _rrelu_route(op, lower, upper, training, seed, divide):
    lo, up = _checks.real(op, "lower", lower), _checks.real(op, "upper", upper)
    if lo != lo or up != up:
        raise ValueError(f"fastact.{op}: lower and upper must be numbers, got lower={lo}, "
                         f"upper={up}")
    if not lo <= up:
        raise ValueError(f"fastact.{op}: lower ({lo}) must not exceed upper ({up})")
    for flag, v in (("training", training), ("divide", divide)):
        if not (v is True or v is False or isinstance(v, np.bool_)):
            # any truthy object (the string "False" among them) meant True
            raise TypeError(f"fastact.{op}: {flag} must be a bool, not {type(v).__name__}")
    if divide and not lo > 0:
        raise ValueError(f"fastact.{op}: divide=True draws a divisor in [lower, upper]; "
                         f"lower must be positive, got {lo}")
    if not training:
        if seed is not None:
            # a forgotten training=True would otherwise silently give the
            # evaluation slope
            raise ValueError(f"fastact.{op}: seed={seed!r} given with training=False; the "
                             "evaluation slope is not random (pass training=True to draw "
                             "slopes, or drop the seed)")
        return "leaky_relu", ((2 / (lo + up) if divide else (lo + up) / 2),)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(
            f"fastact.{op}: training=True needs an integer seed= (got {seed!r}); "
            "the slopes are drawn from a counter-based generator keyed by "
            "(seed, element index), and the same seed lets rrelu_backward "
            "recompute them instead of storing a noise tensor")
    return ("rrelu_div_train" if divide else "rrelu_train"), (_rng.seed_key(seed), lo, up)


_register(Spec(
    "rrelu_train", "elementwise", saves="x", params=("key", "lower", "upper"),
    build=_rrelu_train, indexed=True, compute_bound=("forward", "backward"),
    reference_forward=_ref_rrelu_fwd, reference_backward=_ref_rrelu_bwd,
    public_name="rrelu", route=_rrelu_route,
    api=(Param("lower", 1 / 8, "the lower bound of the slopes (a real number, at most ``upper``)"),
         Param("upper", 1 / 3, "the upper bound of the slopes"),
         Param("training", False, "a bool: random slopes (True) or their mean (False)",
               kw_only=True),
         Param("seed", None, "an integer, required when ``training`` and refused "
               "without it: the slopes' generator key", kw_only=True),
         Param("divide", False, "a bool: Xu et al.'s own form, ``y = x / a`` with the divisor "
               "``a ~ U[lower, upper]`` in training (they take 3 and 8), ``x 2 / (lower + "
               "upper)`` in evaluation", kw_only=True)),
    doc=Doc(
        "Randomized leaky ReLU (Xu et al., 2015), elementwise.",
        r"f(x) = x \text{ if } x > 0 \text{ else } a x",
        r"\frac{\partial L}{\partial x} = g \text{ if } x > 0 \text{ else } a g",
        notes="""In evaluation (``training=False``) ``a = (lower + upper) / 2``.  In
training each element draws ``a ~ U[lower, upper]`` from a counter-based
generator at position ``(seed, flat C-order index)`` (float32: a 32-bit
counter hash with 24 random bits; float64: SplitMix64 with 53; see
:mod:`fastact._rng`): reproducible, identical on every backend and
layout, and recomputed by :func:`rrelu_backward` with the same seed.
Training without an integer ``seed`` is a ``ValueError``, and so is a
``seed`` without ``training=True``.  ``divide=True`` is Xu et al.'s own
parameterization: ``f(x) = x / a`` for ``x <= 0`` with ``a ~ U[lower,
upper]`` drawn as the slope is (their ``lower, upper = 3, 8``), and ``x 2 /
(lower + upper)`` in evaluation.""",
        backward_notes="""with the same slopes ``a`` as the forward call with the same ``lower``,
``upper``, ``training`` and ``seed``; ``f'(0) = a``.""",
        example=""">>> import numpy as np, fastact
>>> x = np.array([-1.0, 2.0])
>>> fastact.rrelu(x, 0.1, 0.3)
array([-0.2,  2. ])
>>> bool(np.array_equal(fastact.rrelu(x, training=True, seed=7),
...                     fastact.rrelu(x, training=True, seed=7)))
True""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.rrelu_backward(np.ones(2), np.array([-1.0, 1.0]), 0.1, 0.3)
array([0.2, 1. ])"""),
))


# RReLU in training, divided (Xu et al.'s parameterization): reached through rrelu's route
_register(Spec(
    "rrelu_div_train", "elementwise", saves="x", params=("key", "lower", "upper"),
    build=_rrelu_div_train, indexed=True, compute_bound=("forward", "backward"),
    reference_forward=_ref_rrelu_div_fwd, reference_backward=_ref_rrelu_div_bwd,
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


def _elu_y(p):
    zero = p.T(0.0)

    def backward_y(g, y, alpha):
        # y <= 0 where x <= 0: alpha exp(x) = y + alpha, exact where y is;
        # a NaN y (a NaN x) passes g, as from x
        return g * (y + alpha) if y <= zero else g

    return backward_y


def alpha_determines_x(op, alpha, *rest):
    """from_output's check of ELU-like ops: y determines x only for alpha >= 0."""
    if not alpha >= 0:
        raise ValueError(f"fastact.{op}: from_output=True needs alpha >= 0 (with a negative "
                         f"alpha the output does not determine the input); got alpha={alpha}")


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
    api=(Param("alpha", 1.0, "the scale ``alpha`` of the negative branch (a real number)"),),
    accuracy=(4, 4),
    doc=Doc(
        "Exponential linear unit (Clevert et al., 2016), elementwise.",
        r"\mathrm{elu}(x) = x \text{ if } x > 0 \text{ else } \alpha (e^{x} - 1)",
        r"\frac{\partial L}{\partial x} = g \text{ if } x > 0 \text{ else } g\,\alpha e^{x}",
        notes="""Uses ``expm1`` (accurate near 0); ``elu(-inf) = -alpha``; the exponential
only ever sees ``x <= 0``, so large inputs cannot overflow.""",
        backward_notes="""Convention at the kink: ``elu'(0) = alpha`` (PyTorch); a NaN input passes
``g`` through.  The product is computed as if exact: an infinite ``g``
gives ``g * alpha`` for every finite ``x <= 0`` (even where ``exp(x)``
underflows), and NaN at ``x = -inf``, where ``exp(x)`` is 0 (PyTorch).""",
        example=""">>> import numpy as np, fastact
>>> np.round(fastact.elu(np.array([-np.inf, -1.0, 2.0])), 4)
array([-1.    , -0.6321,  2.    ])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.elu_backward(np.ones(2), np.array([0.0, 1.0]), 2.0)
array([2., 1.])"""),
    from_output=FromOutput(
        build=_elu_y, check=alpha_determines_x,
        reference=lambda g, y, a: np.where(y <= 0, g * (y + y.dtype.type(a)), g),
        doc="then ``g (y + alpha)`` where ``y <= 0``, which needs ``alpha >= 0`` (else a "
            "ValueError); where ``y`` rounds to ``-alpha`` (``x`` below about -17 in float32) "
            "it is ``0``"),
    torch=Torch("elu", lambda a: {"alpha": a},
                forward_out=lambda A, x, out, a: A.elu.out(x, a, 1, 1, out=out),
                backward_out=lambda A, g, x, out, a: A.elu_backward.grad_input(
                    g, a, 1, 1, False, x, grad_input=out)),
    numpy_forward=lambda x, a: np.where(x > 0, x, a * np.expm1(x)),
    numpy_backward=lambda g, x, a: np.where(x > 0, g, g * a * np.exp(x)),
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
    "prelu", "prelu", saves="x", params=("weight",), build=_prelu, api=(),
    torch=Torch("prelu"),
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


_AXIS = (Param("axis", -1, "the axis the rows run along", kw_only=True),)




def _ref_log_softmax_fwd(x):
    """(x - m) - log sum exp(x - m) along the last axis, in higher
    precision; the log of the sum as log1p of its part beside the max's
    exact 1s (a sum near 1 rounds its small part away: row [0, -30])."""
    wide = _wide(x.dtype)
    xw = x.astype(wide)
    m = np.max(xw, axis=-1, keepdims=True) if x.shape[-1] else xw
    e = np.exp(xw - m)
    ones = np.sum(e == 1, axis=-1, keepdims=True)
    rest = np.sum(np.where(e == 1, 0, e), axis=-1, keepdims=True)
    lse = np.log1p((ones - 1) + rest)
    return ((xw - m) - lse).astype(x.dtype)


def _ref_log_softmax_bwd(g, y):
    wide = _wide(y.dtype)
    gw, yw = g.astype(wide), y.astype(wide)
    return (gw - np.exp(yw) * np.sum(gw, axis=-1, keepdims=True)).astype(y.dtype)


_register(Spec(
    "softmax", "rowwise", saves="y", compute_bound=("forward",), api=_AXIS,
    accuracy=(4, "cond"), row=Row(),
    reference_forward=_ref_softmax_fwd, reference_backward=_ref_softmax_bwd,
    doc=Doc(
        "Softmax along ``axis``.",
        r"\mathrm{softmax}(x)_j = \frac{e^{x_j - m}}{\sum_k e^{x_k - m}}, \quad m = \max_k x_k",
        r"\frac{\partial L}{\partial x_j} = y_j \Big(g_j - \sum_k g_k y_k\Big)",
        notes="""The max shift keeps every exponential <= 1 (rows with values 1e4 apart
are fine).  float32 rows are accumulated in float64 (within 4 ULP);
float64 rows with compensated sums.  A row containing NaN, or only
``-inf``, gives NaN (as PyTorch).""",
        backward_notes="""The dot product is accumulated in float64 (float32) or compensated
(float64); the result is within ``4 eps |y| (|g| + sum|g y|)`` of exact.""",
        example=""">>> import numpy as np, fastact
>>> np.round(fastact.softmax(np.array([3, 0.7, 0.5])), 3)
array([0.846, 0.085, 0.069])
>>> np.round(fastact.softmax(np.array([1.2, 1, 1.5])), 3)
array([0.316, 0.258, 0.426])
>>> np.round(fastact.softmax(np.array([1.5] + [1.2] * 9)), 3)
array([0.13 , 0.097, 0.097, 0.097, 0.097, 0.097, 0.097, 0.097, 0.097,
       0.097])""",
        backward_example=""">>> import numpy as np, fastact
>>> y = fastact.softmax(np.array([1.0, 1.0]))
>>> fastact.softmax_backward(np.array([1.0, 0.0]), y)
array([ 0.25, -0.25])"""),
    torch=Torch("softmax", lambda axis: {"dim": axis},
                forward_out=lambda A, x, out, axis: A._softmax.out(x, axis, False, out=out),
                backward_out=lambda A, g, y, out, axis: A._softmax_backward_data.out(
                    g, y, axis, y.dtype, grad_input=out)),
    numpy_forward=lambda x, axis: _np_softmax(x, axis),
    numpy_backward=lambda g, y, axis: y * (g - (g * y).sum(axis=axis, keepdims=True)),
))


def _np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


_register(Spec(
    "log_softmax", "rowwise", saves="y", compute_bound=("forward", "backward"), api=_AXIS,
    accuracy=(4, "cond"), row=Row(log=True),
    reference_forward=_ref_log_softmax_fwd, reference_backward=_ref_log_softmax_bwd,
    doc=Doc(
        "Log-softmax along ``axis``: the log-probabilities of a softmax.",
        r"\log\mathrm{softmax}(x)_j = -\Big((m - x_j) + \log \sum_k e^{x_k - m}\Big), "
        r"\quad m = \max_k x_k",
        r"\frac{\partial L}{\partial x_j} = g_j - e^{y_j} \sum_k g_k",
        notes="""Both terms are <= 0, so nothing cancels: within 4 ULP
(float32 rows in float64, float64 rows with compensated sums), and
finite far below where ``softmax`` underflows to 0 (``log_softmax([0,
-1e4]) = [0, -1e4]``).  A row containing NaN or ``+inf``, or only
``-inf``, gives NaN (as PyTorch); a ``-inf`` element among finite ones
gives ``-inf``.  Deviation: where one term dominates a row, PyTorch's sum
rounds to 1 and its largest log-probability to 0; ours is the exact
``-log1p(sum of the others)`` (float32 ``[0, -30, -40, ...]``: -9.5e-14).""",
        backward_notes="""From the output ``y`` (``e^y`` is the softmax).  The row sum of ``g``
is accumulated in float64 (float32) or compensated (float64); the result
is within ``4 eps (|g| + e^{y} sum|g|)`` of exact.""",
        example=""">>> import numpy as np, fastact
>>> np.round(fastact.log_softmax(np.array([3, 0.7, 0.5])), 4)
array([-0.1675, -2.4675, -2.6675])
>>> fastact.log_softmax(np.array([0.0, -1e4]))
array([     0., -10000.])""",
        backward_example=""">>> import numpy as np, fastact
>>> y = fastact.log_softmax(np.array([1.0, 1.0]))
>>> fastact.log_softmax_backward(np.array([1.0, 0.0]), y)
array([ 0.5, -0.5])"""),
    torch=Torch("log_softmax", lambda axis: {"dim": axis},
                deviations="PyTorch takes the log of the row's sum: where one term "
                "dominates, the sum rounds to 1 and the largest element's log-probability "
                "to 0 (float32 row [0, -30, -40, ...]: 0 where the exact value, ours, is "
                "-9.5e-14)",
                forward_out=lambda A, x, out, axis: A._log_softmax.out(x, axis, False, out=out),
                backward_out=lambda A, g, y, out, axis: A._log_softmax_backward_data.out(
                    g, y, axis, y.dtype, out=out)),
    numpy_forward=lambda x, axis: (x - x.max(axis=axis, keepdims=True)) - np.log(
        np.exp(x - x.max(axis=axis, keepdims=True)).sum(axis=axis, keepdims=True)),
    numpy_backward=lambda g, y, axis: g - np.exp(y) * g.sum(axis=axis, keepdims=True),
))


_register(Spec(
    "softmin", "rowwise", saves="y", compute_bound=("forward",), api=_AXIS,
    accuracy=(4, "cond"), row=Row(negate=True),
    reference_forward=lambda x: _ref_softmax_fwd(-x),
    reference_backward=lambda g, y: -_ref_softmax_bwd(g, y),
    doc=Doc(
        "Softmin along ``axis``: the softmax of ``-x``.",
        r"\mathrm{softmin}(x)_j = \frac{e^{m - x_j}}{\sum_k e^{m - x_k}}, \quad m = \min_k x_k",
        r"\frac{\partial L}{\partial x_j} = y_j \Big(\sum_k g_k y_k - g_j\Big)",
        notes="""As :func:`softmax` of ``-x`` (the same shift, sums and bounds), without
negating a copy of ``x``.  A row containing NaN, or only ``+inf``, gives
NaN (as PyTorch).""",
        backward_notes="""From the output ``y``: softmax's backward, negated; within ``4 eps |y|
(|g| + sum|g y|)`` of exact.""",
        example=""">>> import numpy as np, fastact
>>> np.round(fastact.softmin(np.array([3, 0.7, 0.5])), 3)
array([0.043, 0.431, 0.526])""",
        backward_example=""">>> import numpy as np, fastact
>>> y = fastact.softmin(np.array([1.0, 1.0]))
>>> fastact.softmin_backward(np.array([1.0, 0.0]), y)
array([-0.25,  0.25])"""),
    torch=Torch("softmin", lambda axis: {"dim": axis},
                forward_out=lambda A, x, out, axis: A._softmax.out(A.neg(x), axis, False, out=out),
                backward_out=lambda A, g, y, out, axis: A.neg.out(
                    A._softmax_backward_data(g, y, axis, y.dtype), out=out)),
    numpy_forward=lambda x, axis: _np_softmax(-x, axis),
    numpy_backward=lambda g, y, axis: y * ((g * y).sum(axis=axis, keepdims=True) - g),
))


# --- the op families of the catalogue (each module registers its entries) -----------

from . import _ops  # noqa: E402,F401
