"""The clamps family of activations (see fastact._ops): piecewise-linear
(or rational) maps made of comparisons and selects, memory-bound and
bit-identical on every backend (``accuracy=(0, 0)``).

Conventions (PyTorch 2.13's, checked with its autograd): the derivative at
a kink is the one of PyTorch's backward kernel (mostly 0 on the boundary of
the region where the gradient passes), a NaN input propagates through every
forward, and the backward at a NaN input is what PyTorch's scalar loop
gives (g, but 0 for hardsigmoid; its vectorized loop gives 0 or NaN for
some, as ``Torch.deviations`` says).  Where PyTorch's result at +-inf or
for huge inputs is not the mathematical limit, ours is, and
``Torch.deviations`` says so.
"""
from __future__ import annotations

import numpy as np

from .. import _checks
from .._spec import Doc, FromOutput, Param, Spec, Torch, register


#: the deviation of the backward kernels whose vectorized PyTorch loop masks a NaN input
_NAN_PASSES = """backward at a NaN input: g, as PyTorch's scalar loop (which runs small
tensors and the tail of a tensor); its vectorized loop, which runs the
rest, gives %s."""


def _t(x, v):
    """``v`` as a scalar of ``x``'s dtype (the references' constants)."""
    return x.dtype.type(v)


# --- hardtanh ------------------------------------------------------------------------

def _hardtanh(p):
    zero = p.T(0.0)

    def forward(x, lo, hi):
        # NaN fails both tests and propagates; x = -0.0 with lo = 0 stays
        # -0.0 (PyTorch's clamp)
        return lo if x < lo else (hi if x > hi else x)

    def backward(g, x, lo, hi):
        # 0 on the boundary (PyTorch); a NaN input passes g
        return zero if x <= lo else (zero if x >= hi else g)

    return forward, backward


def _ref_hardtanh_fwd(x, lo, hi):
    return np.where(x < lo, lo, np.where(x > hi, hi, x)).astype(x.dtype)


def _ref_hardtanh_bwd(g, x, lo, hi):
    return np.where((x <= lo) | (x >= hi), _t(g, 0), g)


def _check_hardtanh(op, lo, hi):
    _checks.ordered(op, "min_val", lo, "max_val", hi)


register(Spec(
    "hardtanh", "elementwise", saves="x", params=("min_val", "max_val"), build=_hardtanh,
    reference_forward=_ref_hardtanh_fwd, reference_backward=_ref_hardtanh_bwd,
    api=(Param("min_val", -1.0, "the lower bound (a real number, not NaN, at most ``max_val``)"),
         Param("max_val", 1.0, "the upper bound (a real number, not NaN)")),
    check=_check_hardtanh,
    doc=Doc(
        "Hard tanh: x clamped to [min_val, max_val], elementwise.",
        r"\mathrm{hardtanh}(x) = \min(\max(x, a), b), \quad a = \text{min\_val},\ "
        r"b = \text{max\_val}",
        r"\frac{\partial L}{\partial x} = g \text{ if } a < x < b \text{ else } 0",
        notes="""``min_val > max_val`` or a NaN bound is a ``ValueError``; ``min_val ==
max_val`` is allowed (a constant).  NaN propagates; inside the bounds ``x``
is returned as it is (``hardtanh(-0.0, 0.0, 1.0)`` is ``-0.0``, as
PyTorch's clamp).  The bounds are rounded to the data's dtype first.""",
        backward_notes="""Convention at the kinks (PyTorch): ``hardtanh'(min_val) =
hardtanh'(max_val) = 0``; a NaN input passes ``g`` through (PyTorch's
scalar loop; its vectorized loop gives 0).""",
        example=""">>> import numpy as np, fastact
>>> fastact.hardtanh(np.array([-np.inf, -2.0, 0.5, 3.0]))
array([-1. , -1. ,  0.5,  1. ])
>>> fastact.hardtanh(np.array([-2.0, 0.5, 3.0]), -0.25, 2.0)
array([-0.25,  0.5 ,  2.  ])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.hardtanh_backward(np.ones(4), np.array([-1.0, 0.0, 1.0, np.nan]))
array([0., 1., 0., 1.])"""),
    from_output=FromOutput(doc="the same mask (``y`` is ``x`` clamped)"),
    torch=Torch("hardtanh", lambda lo, hi: {"min_val": lo, "max_val": hi},
                deviations=_NAN_PASSES % "0", skip=lambda x, *params: np.isnan(x),
                forward_out=lambda A, x, out, lo, hi: A.hardtanh.out(x, lo, hi, out=out),
                backward_out=lambda A, g, x, out, lo, hi: A.hardtanh_backward.grad_input(
                    g, x, lo, hi, grad_input=out)),
    numpy_forward=lambda x, lo, hi: np.clip(x, lo, hi),
    numpy_backward=lambda g, x, lo, hi: np.where((x > lo) & (x < hi), g, 0),
))


# --- relu6 ---------------------------------------------------------------------------

def _relu6(p):
    zero, six = p.T(0.0), p.T(6.0)

    def forward(x):
        return zero if x < zero else (six if x > six else x)

    def backward(g, x):
        return zero if x <= zero else (zero if x >= six else g)

    return forward, backward


register(Spec(
    "relu6", "elementwise", saves="x", build=_relu6,
    reference_forward=lambda x: _ref_hardtanh_fwd(x, _t(x, 0), _t(x, 6)),
    reference_backward=lambda g, x: _ref_hardtanh_bwd(g, x, _t(x, 0), _t(x, 6)),
    api=(),
    doc=Doc(
        "ReLU6: x clamped to [0, 6], elementwise (``hardtanh(x, 0, 6)``).",
        r"\mathrm{relu6}(x) = \min(\max(x, 0), 6)",
        r"\frac{\partial L}{\partial x} = g \text{ if } 0 < x < 6 \text{ else } 0",
        notes="""NaN propagates; ``relu6(-0.0) = -0.0`` (PyTorch's clamp, unlike
:func:`relu`, which gives ``+0.0``).""",
        backward_notes="""Convention at the kinks (PyTorch): ``relu6'(0) = relu6'(6) = 0``;
a NaN input passes ``g`` through (PyTorch's scalar loop; its vectorized
loop gives 0).""",
        example=""">>> import numpy as np, fastact
>>> fastact.relu6(np.array([-1.0, 2.5, 7.0, np.inf]))
array([0. , 2.5, 6. , 6. ])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.relu6_backward(np.ones(4), np.array([0.0, 3.0, 6.0, np.nan]))
array([0., 1., 0., 1.])"""),
    from_output=FromOutput(doc="the same mask (``y`` is ``x`` clamped)"),
    torch=Torch("relu6", deviations=_NAN_PASSES % "0", skip=lambda x, *params: np.isnan(x),
                forward_out=lambda A, x, out: A.hardtanh.out(x, 0.0, 6.0, out=out),
                backward_out=lambda A, g, x, out: A.hardtanh_backward.grad_input(
                    g, x, 0.0, 6.0, grad_input=out)),
    numpy_forward=lambda x: np.clip(x, 0, 6),
    numpy_backward=lambda g, x: np.where((x > 0) & (x < 6), g, 0),
))


# --- hardsigmoid ---------------------------------------------------------------------

def _hardsigmoid(p):
    T = p.T
    zero, three, six = T(0.0), T(3.0), T(6.0)

    def forward(x):
        # PyTorch's min(max(x + 3, 0), 6) / 6, NaN propagating
        t = x + three
        t = zero if t < zero else (six if t > six else t)
        return t / six

    def backward(g, x):
        # 0 at -3 and 3 and for NaN (PyTorch); g / 6 correctly rounded
        return g / six if (x > -three and x < three) else zero

    return forward, backward


def _ref_hardsigmoid_fwd(x):
    t = x + _t(x, 3)
    t = np.where(t < 0, _t(x, 0), np.where(t > 6, _t(x, 6), t))
    return t / _t(x, 6)


register(Spec(
    "hardsigmoid", "elementwise", saves="x", build=_hardsigmoid,
    reference_forward=_ref_hardsigmoid_fwd,
    reference_backward=lambda g, x: np.where((x > -3) & (x < 3), g / _t(g, 6), _t(g, 0)),
    api=(),
    doc=Doc(
        "Hard sigmoid: relu6(x + 3) / 6, elementwise.",
        r"\mathrm{hardsigmoid}(x) = \frac{\min(\max(x + 3, 0), 6)}{6}",
        r"\frac{\partial L}{\partial x} = \frac{g}{6} \text{ if } -3 < x < 3 \text{ else } 0",
        notes="""Computed as PyTorch does, ``min(max(x + 3, 0), 6) / 6`` (bit for bit):
0 from -3 down, 1 from 3 up, 1/2 at 0, within 1 ULP elsewhere; NaN
propagates.""",
        backward_notes="""Convention at the kinks (PyTorch): ``hardsigmoid'(-3) =
hardsigmoid'(3) = 0``, and 0 at a NaN input (PyTorch's mask).  ``g / 6``
is rounded once; PyTorch multiplies by 1/6 rounded to float32, in float64
too (a relative error up to 3e-8 there; 1 ULP in float32).""",
        example=""">>> import numpy as np, fastact
>>> fastact.hardsigmoid(np.array([-np.inf, -3.0, 0.0, 1.5, 3.0]))
array([0.  , 0.  , 0.5 , 0.75, 1.  ])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.hardsigmoid_backward(np.full(4, 6.0), np.array([-3.0, 0.0, 3.0, np.nan]))
array([0., 1., 0., 0.])"""),
    torch=Torch("hardsigmoid", rtol=1e-7,
                deviations="""backward in float64: PyTorch multiplies by 1/6 rounded to float32
(relative error up to 3e-8); fastact divides by 6 (correctly rounded; in
float32 within 1 ULP of PyTorch's g * float32(1/6)).""",
                forward_out=lambda A, x, out: A.hardsigmoid.out(x, out=out),
                backward_out=lambda A, g, x, out: A.hardsigmoid_backward.grad_input(
                    g, x, grad_input=out)),
    numpy_forward=lambda x: np.clip(x + 3, 0, 6) / 6,
    numpy_backward=lambda g, x: np.where((x > -3) & (x < 3), g / 6, 0),
))


# --- hardswish -----------------------------------------------------------------------

def _hardswish(p):
    T = p.T
    zero, three, six, half, nzero = T(0.0), T(3.0), T(6.0), T(0.5), T(-0.0)

    def forward(x):
        # PyTorch's x * min(max(x + 3, 0), 6) / 6 where -3 < x < 3 (there
        # the clamp is the identity); x itself from 3 up (PyTorch's x*6/6 may
        # be 1 ULP off, and overflows above max/6), -0.0 from -3 down (x * 0
        # for a negative x; PyTorch gives NaN at -inf).  NaN propagates
        if x <= -three:
            return nzero
        if x >= three:
            return x
        return (x * (x + three)) / six

    def backward(g, x):
        # PyTorch's: 0 from -3 down (hardswish'(-3) = 0), g from 3 up
        # (hardswish'(3) = 1) and for NaN, else g * (x / 3 + 1/2)
        if x <= -three:
            return zero
        if x < three:
            return g * (x / three + half)
        return g

    return forward, backward


def _ref_hardswish_fwd(x):
    three = _t(x, 3)
    mid = (x * (x + three)) / _t(x, 6)
    return np.where(x <= -three, _t(x, -0.0), np.where(x >= three, x, mid))


def _ref_hardswish_bwd(g, x):
    three = _t(x, 3)
    mid = g * (x / three + _t(x, 0.5))
    return np.where(x <= -three, _t(x, 0), np.where(x < three, mid, g))


register(Spec(
    "hardswish", "elementwise", saves="x", build=_hardswish,
    reference_forward=_ref_hardswish_fwd, reference_backward=_ref_hardswish_bwd,
    api=(),
    doc=Doc(
        "Hard swish (Howard et al., 2019): x * relu6(x + 3) / 6, elementwise.",
        r"\mathrm{hardswish}(x) = \frac{x \min(\max(x + 3, 0), 6)}{6}",
        r"\frac{\partial L}{\partial x} = 0 \text{ if } x \le -3,\ "
        r"g \left(\frac{x}{3} + \frac{1}{2}\right) \text{ if } -3 < x < 3,\ g \text{ else}",
        notes="""Between -3 and 3 computed as PyTorch does, ``(x * (x + 3)) / 6`` (bit for
bit); exactly ``x`` from 3 up (PyTorch's ``x * 6 / 6`` can be 1 ULP off,
and overflows to inf above ``max/6``); ``-0.0`` from -3 down, ``-inf``
included (PyTorch: ``x * 0``, which is NaN at ``-inf``).  Within 2 ULP;
NaN propagates.""",
        backward_notes="""Convention at the kinks (PyTorch): ``hardswish'(-3) = 0``,
``hardswish'(3) = 1``; a NaN input passes ``g`` through (PyTorch's scalar
loop; its vectorized loop gives NaN).  Between the kinks ``g * (x / 3 +
1/2)``, as PyTorch (bit for bit): near ``x = -3/2``, where the derivative
vanishes, its error is a few ``eps |g|``, not relative to the result.""",
        example=""">>> import numpy as np, fastact
>>> fastact.hardswish(np.array([-np.inf, -3.0, -1.5, 0.0, 1.5, 3.0, 1e308]))
array([-0.000e+000, -0.000e+000, -3.750e-001,  0.000e+000,  1.125e+000,
        3.000e+000,  1.000e+308])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.hardswish_backward(np.ones(4), np.array([-3.0, 0.0, 3.0, np.nan]))
array([0. , 0.5, 1. , 1. ])"""),
    torch=Torch("hardswish",
                deviations="""forward: at -inf -0.0 (PyTorch NaN, -inf * 0); from 3 up exactly x
(PyTorch's x * 6 / 6 is up to 1 ULP off, and inf above max/6).  """
                + _NAN_PASSES % "NaN",
                skip=lambda x, *params: np.isneginf(x) | (x > 3) | np.isnan(x),
                forward_out=lambda A, x, out: A.hardswish.out(x, out=out),
                backward_out=lambda A, g, x, out: A.hardswish_backward.out(g, x, out=out)),
    numpy_forward=lambda x: x * np.clip(x + 3, 0, 6) / 6,
    numpy_backward=lambda g, x: np.where(x <= -3, 0, np.where(x < 3, g * (x / 3 + 0.5), g)),
))


# --- hardshrink ------------------------------------------------------------------------

def _hardshrink(p):
    zero = p.T(0.0)

    def forward(x, lambd):
        # +0.0 on [-lambd, lambd]; NaN fails both tests and propagates
        return zero if (x >= -lambd and x <= lambd) else x

    def backward(g, x, lambd):
        # 0 at +-lambd (PyTorch); a NaN input passes g
        return zero if (x >= -lambd and x <= lambd) else g

    return forward, backward


def _shrink_mask(x, lambd):
    return (x >= -lambd) & (x <= lambd)


def _check_lambd(op, lambd):
    _checks.not_nan(op, lambd=lambd)


register(Spec(
    "hardshrink", "elementwise", saves="x", params=("lambd",), build=_hardshrink,
    reference_forward=lambda x, l: np.where(_shrink_mask(x, l), _t(x, 0), x),
    reference_backward=lambda g, x, l: np.where(_shrink_mask(x, l), _t(g, 0), g),
    api=(Param("lambd", 0.5, "the half-width of the zeroed band (a real number, not NaN)"),),
    check=_check_lambd,
    doc=Doc(
        "Hard shrinkage, elementwise.",
        r"\mathrm{hardshrink}(x) = 0 \text{ if } -\lambda \le x \le \lambda \text{ else } x",
        r"\frac{\partial L}{\partial x} = 0 \text{ if } -\lambda \le x \le \lambda "
        r"\text{ else } g",
        notes="""The band gives ``+0.0``; NaN propagates; a NaN ``lambd`` is a
``ValueError`` (a negative one zeroes nothing, as PyTorch).""",
        backward_notes="""Convention at the kinks (PyTorch): ``hardshrink'(+-lambd) = 0``; a NaN
input passes ``g`` through (PyTorch's scalar loop; its vectorized loop
gives 0).""",
        example=""">>> import numpy as np, fastact
>>> fastact.hardshrink(np.array([-1.0, -0.5, 0.25, 0.75]))
array([-1.  ,  0.  ,  0.  ,  0.75])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.hardshrink_backward(np.ones(4), np.array([-0.5, 0.0, 0.5, 0.75]))
array([0., 0., 0., 1.])"""),
    torch=Torch("hardshrink", lambda l: {"lambd": l}, deviations=_NAN_PASSES % "0",
                skip=lambda x, *params: np.isnan(x),
                forward_out=lambda A, x, out, l: A.hardshrink.out(x, l, out=out),
                backward_out=lambda A, g, x, out, l: A.hardshrink_backward.grad_input(
                    g, x, l, grad_input=out)),
    numpy_forward=lambda x, l: np.where(np.abs(x) > l, x, 0),
    numpy_backward=lambda g, x, l: np.where(np.abs(x) > l, g, 0),
))


# --- softshrink ------------------------------------------------------------------------

def _softshrink(p):
    zero = p.T(0.0)

    def forward(x, lambd):
        # +0.0 on [-lambd, lambd] (PyTorch's vector kernel; its scalar tail
        # gives -0.0 for negative x); NaN propagates
        if x > lambd:
            return x - lambd
        if x < -lambd:
            return x + lambd
        return x if x != x else zero

    def backward(g, x, lambd):
        return zero if (x >= -lambd and x <= lambd) else g

    return forward, backward


def _ref_softshrink_fwd(x, l):
    inner = np.where(np.isnan(x), x, _t(x, 0))
    return np.where(x > l, x - l, np.where(x < -l, x + l, inner))


def _check_softshrink(op, lambd):
    _checks.not_nan(op, lambd=lambd)
    if lambd < 0:
        raise ValueError(f"fastact.{op}: lambd must be >= 0, got {lambd}")


register(Spec(
    "softshrink", "elementwise", saves="x", params=("lambd",), build=_softshrink,
    reference_forward=_ref_softshrink_fwd,
    reference_backward=lambda g, x, l: np.where(_shrink_mask(x, l), _t(g, 0), g),
    api=(Param("lambd", 0.5, "the shrinkage (a real number >= 0)"),),
    check=_check_softshrink,
    doc=Doc(
        "Soft shrinkage, elementwise.",
        r"\mathrm{softshrink}(x) = x - \lambda \text{ if } x > \lambda,\ x + \lambda "
        r"\text{ if } x < -\lambda,\ 0 \text{ else}",
        r"\frac{\partial L}{\partial x} = 0 \text{ if } -\lambda \le x \le \lambda "
        r"\text{ else } g",
        notes="""The band gives ``+0.0`` (PyTorch's vectorized kernel; its scalar tail
gives ``-0.0`` for negative ``x``); NaN propagates.  A NaN or negative
``lambd`` is a ``ValueError`` (PyTorch requires ``lambd >= 0``).""",
        backward_notes="""Convention at the kinks (PyTorch): ``softshrink'(+-lambd) = 0``; a NaN
input passes ``g`` through (PyTorch's scalar loop; its vectorized loop
gives 0).""",
        example=""">>> import numpy as np, fastact
>>> fastact.softshrink(np.array([-2.0, -0.5, 0.25, 0.75, np.inf]))
array([-1.5 ,  0.  ,  0.  ,  0.25,   inf])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.softshrink_backward(np.ones(4), np.array([-0.5, 0.0, 0.5, 0.75]))
array([0., 0., 0., 1.])"""),
    torch=Torch("softshrink", lambda l: {"lambd": l},
                deviations=_NAN_PASSES % "0" + """  Forward, the sign of zero: +0.0 on
the band everywhere (PyTorch's scalar loop gives -0.0 for negative x in
[-lambd, 0]).""", skip=lambda x, *params: np.isnan(x),
                forward_out=lambda A, x, out, l: A.softshrink.out(x, l, out=out),
                backward_out=lambda A, g, x, out, l: A.softshrink_backward.grad_input(
                    g, x, l, grad_input=out)),
    numpy_forward=lambda x, l: np.sign(x) * np.maximum(np.abs(x) - l, 0),
    numpy_backward=lambda g, x, l: np.where(np.abs(x) > l, g, 0),
))


# --- threshold -----------------------------------------------------------------------

def _threshold(p):
    zero = p.T(0.0)

    def forward(x, threshold, value):
        # NaN fails the test and propagates
        return value if x <= threshold else x

    def backward(g, x, threshold, value):
        # `value` is not read (the public backward does not take it)
        return zero if x <= threshold else g

    return forward, backward


def _check_threshold(op, threshold, value):
    _checks.not_nan(op, threshold=threshold)


register(Spec(
    "threshold", "elementwise", saves="x", params=("threshold", "value"), build=_threshold,
    reference_forward=lambda x, th, v: np.where(x <= th, v, x).astype(x.dtype),
    reference_backward=lambda g, x, th, v: np.where(x <= th, _t(g, 0), g),
    api=(Param("threshold", doc="the threshold (a real number, not NaN)", example=0.1),
         Param("value", doc="what replaces ``x <= threshold`` (any real number, "
               "+-inf and NaN included)", example=20.0)),
    backward_api=("threshold",),
    check=_check_threshold,
    doc=Doc(
        "Threshold: x where x > threshold, else value, elementwise.",
        r"f(x) = x \text{ if } x > \text{threshold} \text{ else value}",
        r"\frac{\partial L}{\partial x} = g \text{ if } x > \text{threshold} \text{ else } 0",
        notes="""Both parameters are required (PyTorch); they are rounded to the data's
dtype first.  NaN propagates; a NaN ``threshold`` is a ``ValueError``.""",
        backward_notes="""Takes no ``value`` (PyTorch's ``threshold_backward``).  Convention at
the kink (PyTorch): ``f'(threshold) = 0``; a NaN input passes ``g``
through.""",
        example=""">>> import numpy as np, fastact
>>> fastact.threshold(np.array([-1.0, 0.1, 0.5, np.nan]), 0.1, 20.0)
array([20. , 20. ,  0.5,  nan])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.threshold_backward(np.ones(3), np.array([0.1, 0.5, np.nan]), 0.1)
array([0., 1., 1.])"""),
    torch=Torch("threshold", lambda th, v: {"threshold": th, "value": v},
                forward_out=lambda A, x, out, th, v: A.threshold.out(x, th, v, out=out),
                backward_out=lambda A, g, x, out, th: A.threshold_backward.grad_input(
                    g, x, th, grad_input=out)),
    numpy_forward=lambda x, th, v: np.where(x > th, x, v),
    numpy_backward=lambda g, x, th: np.where(x > th, g, 0),
))


# --- softsign --------------------------------------------------------------------------

def _softsign(p):
    T = p.T
    zero, one, inf = T(0.0), T(1.0), T(np.inf)

    def forward(x):
        a = -x if x < zero else x
        y = x / (one + a)
        # the limits at +-inf, where x / (1 + |x|) is inf / inf
        return (one if x > zero else -one) if a == inf else y

    def backward(g, x):
        # g / (1 + |x|)**2 as two divisions: d * d would overflow from
        # |x| = sqrt(max) on; 0 at +-inf (for a finite g)
        d = one + (-x if x < zero else x)
        return (g / d) / d

    return forward, backward


def _ref_softsign_fwd(x):
    a = np.abs(x)
    return np.where(np.isinf(x), np.sign(x), x / (_t(x, 1) + a))


def _ref_softsign_bwd(g, x):
    d = _t(x, 1) + np.abs(x)
    return (g / d) / d


register(Spec(
    "softsign", "elementwise", saves="x", build=_softsign,
    reference_forward=_ref_softsign_fwd, reference_backward=_ref_softsign_bwd,
    api=(),
    doc=Doc(
        "Softsign: x / (1 + |x|), elementwise.",
        r"\mathrm{softsign}(x) = \frac{x}{1 + |x|}",
        r"\frac{\partial L}{\partial x} = \frac{g}{(1 + |x|)^2}",
        notes="""``softsign(+-inf) = +-1`` (PyTorch's ``x / (1 + |x|)`` gives NaN there);
NaN propagates; within 2 ULP elsewhere.""",
        backward_notes="""Computed as ``(g / (1 + |x|)) / (1 + |x|)``: no overflow for large
``|x|``, 0 at ``x = +-inf`` (PyTorch's autograd gives NaN), within 4 ULP
elsewhere (PyTorch's composite gradient ``g/d - g (x/d)/d sgn(x)`` cancels
for large ``|x|``).""",
        example=""">>> import numpy as np, fastact
>>> fastact.softsign(np.array([-np.inf, -3.0, 0.0, 1.0, np.inf]))
array([-1.  , -0.75,  0.  ,  0.5 ,  1.  ])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.softsign_backward(np.ones(4), np.array([-3.0, 0.0, 1.0, np.inf]))
array([0.0625, 1.    , 0.25  , 0.    ])"""),
    torch=Torch("softsign", rtol=1e-3,
                deviations="""forward at +-inf: +-1 (PyTorch's x / (|x| + 1) is NaN); backward at
+-inf: 0 (PyTorch NaN), and for large |x| PyTorch's composite gradient
g/d - g (x/d)/d sgn(x) cancels (relative error up to 1 and more where
|x| > 1/eps); ours is within 4 ULP.""",
                skip=lambda x, *params: np.isinf(x),
                # no ATen kernel: the composite x / (|x| + 1), in place in `out`
                forward_out=lambda A, x, out: A.div.out(
                    x, A.add_.Scalar(A.abs.out(x, out=out), 1.0), out=out),
                # and g / (d * d), d = |x| + 1, in place in `out`
                backward_out=lambda A, g, x, out: A.div.out(
                    g, A.mul_.Tensor(A.add_.Scalar(A.abs.out(x, out=out), 1.0), out),
                    out=out)),
    numpy_forward=lambda x: x / (1 + np.abs(x)),
    numpy_backward=lambda g, x: g / (1 + np.abs(x)) ** 2,
))
