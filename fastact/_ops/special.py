"""The special family of activations (see fastact._ops): softplus and
logsigmoid, written with the primitives ``log1p``, ``exp_split``, ``ldexp``
and ``two_prod`` of :mod:`fastact._prims` (C: ``c_src/kernels.inc``; the
formulas again in ``c_src/formulas_special.inc``)."""
from __future__ import annotations

import numpy as np

from .. import _checks
from .._spec import Doc, Param, Spec, Torch, register


def _wide(dtype):
    """The reference's working type: float64 for float32 data (every
    product of two float32 exact), long double for float64."""
    return np.float64 if dtype == np.float32 else np.longdouble


# --- shared: g * sigmoid(z + zl) ---------------------------------------------------

def _grad_sigmoid(p):
    """``g * sigmoid(z + zl)`` (z + zl: a value in two parts, zl the low
    part), rounded nearly once over the whole range: exp(-|z|) = e = q 2**nf
    (exp_split), then g / (1 + e) where z > 0, else ldexp(g (q/2) / (1 + e),
    nf + 1): the power of two applied last, so that a result in the
    subnormal range is rounded once there, and g (q/2)/(1 + e) <= 0.71 |g|
    cannot overflow.  NaN z gives NaN; z = -inf gives g * 0 (NaN for an
    infinite g, as PyTorch's g * exp(-inf))."""
    T, exp_split, ldexp = p.T, p.exp_split, p.ldexp
    zero, one, half, ninf = T(0.0), T(1.0), T(0.5), T(-np.inf)

    @p.jit
    def grad_sigmoid(g, z, zl):
        pos = z > zero
        v = -z if pos else z            # -|z|
        vl = -zl if pos else zl
        q, nf = exp_split(v, vl)
        e = ldexp(q, nf)
        d = one + e
        w = (g if pos else q * half) / d
        r = w if pos else ldexp(g * w, nf + one)
        r = g * zero if z == ninf else r
        return z if z != z else r

    return grad_sigmoid


# --- softplus ------------------------------------------------------------------------

def _softplus(p):
    T, two_prod, exp_split, ldexp, log1p = p.T, p.two_prod, p.exp_split, p.ldexp, p.log1p
    frexp2 = p.frexp2
    zero = T(0.0)
    # below 2**-(mantissa bits + 3), log1p(t) = t to a quarter ULP: the tail
    # is computed from the scaled q and the power of two applied last
    deep_n = T(-(np.finfo(p.dtype).nmant + 3))
    grad_sigmoid = _grad_sigmoid(p)

    def forward(x, beta, threshold):
        # z = beta * x in two parts (z + zl exact): exp(-|z|) sees the low
        # part, so the rounding of beta * x costs no |z| eps in the tails
        z, zl = two_prod(beta, x)
        neg = z < zero
        v = z if neg else -z            # -|z|
        vl = zl if neg else -zl
        q, nf = exp_split(v, vl)
        deep = nf < deep_n
        lp = log1p(ldexp(q, nf))
        # log1p(exp(-|z|)) / beta with beta = bm 2**kb (exact; the same for
        # every element): (lp / bm) 2**-kb, deep in the tail (q / bm)
        # 2**(nf - kb), so that a subnormal exp(-|z|) is not rounded before
        # the division, and a tiny beta cannot overflow the quotient before
        # the power of two is applied (one rounding where the result is
        # subnormal or overflows)
        bm, kb = frexp2(beta)
        d = ldexp((q if deep else lp) / bm, (nf if deep else zero) - kb)
        # softplus(x) = x + softplus(-x) where z > 0
        y = x + d if z > zero else d
        return x if (z > threshold) | (x != x) else y

    def backward(g, x, beta, threshold):
        z, zl = two_prod(beta, x)
        r = grad_sigmoid(g, z, zl)
        return g if z > threshold else r

    return forward, backward


def _ref_softplus_fwd(x, beta, threshold):
    W = _wide(x.dtype)
    b = x.dtype.type(beta)
    z = x * b                      # the rounded product decides the threshold (PyTorch)
    zw = x.astype(W) * W(b)
    # float64 data: beta * x in long double loses |z| 2**-64 relative, a
    # third of an ULP of the result at most (|z| < 746 where it matters)
    y = (np.maximum(zw, 0) + np.log1p(np.exp(-np.abs(zw)))) / W(b)
    y = np.where(zw > 0, x.astype(W) + np.log1p(np.exp(-np.abs(zw))) / W(b), y)
    return np.where((z > threshold) | np.isnan(x), x, y.astype(x.dtype))


def _ref_sigmoid_wide(zw):
    e = np.exp(-np.abs(zw))
    return np.where(zw > 0, 1 / (1 + e), e / (1 + e))


def _ref_grad_sigmoid(g, z, zw):
    """g * sigmoid(z) (zw: z in the wider type) as if exact: an infinite g
    times the positive sigmoid of a finite z is g, even where the wide
    exponential underflows; at z = -inf, g * 0."""
    r = (g.astype(zw.dtype) * _ref_sigmoid_wide(zw)).astype(g.dtype)
    return np.where(np.isinf(g) & (z > -np.inf), g, r)


def _ref_softplus_bwd(g, x, beta, threshold):
    W = _wide(x.dtype)
    b = x.dtype.type(beta)
    z = x * b
    r = _ref_grad_sigmoid(g, z, x.astype(W) * W(b))
    return np.where(z > threshold, g, r)


def _softplus_torch_skip(x, beta, threshold):
    """Where PyTorch's softplus may differ beyond the bounds: exp(beta x)
    overflows below a threshold set high (inf forward, NaN backward; from
    ~88.7 in float32), and, for a beta that is not a power of two, PyTorch
    rounds beta * x before the exponential (|beta x| eps / 2 relative error
    in the negative tail)."""
    with np.errstate(over="ignore", invalid="ignore"):
        z = x * beta
    exact = float(beta) == 2.0 ** np.floor(np.log2(float(beta)))
    return ((z > 80) & (z <= threshold)) | ((z < -4) & (not exact))


def _softplus_check(op, beta, threshold):
    _checks.not_nan(op, beta=beta, threshold=threshold)
    _checks.positive(op, beta=beta)
    _checks.finite(op, beta=beta)


register(Spec(
    "softplus", "elementwise", saves="x", params=("beta", "threshold"), build=_softplus,
    compute_bound=("forward", "backward"),
    reference_forward=_ref_softplus_fwd, reference_backward=_ref_softplus_bwd,
    api=(Param("beta", 1.0, "the sharpness ``beta`` (a finite real number > 0)"),
         Param("threshold", 20.0, "where ``beta * x > threshold`` the result is ``x`` "
               "(a real number, not NaN; may be +-inf)")),
    check=_softplus_check,
    accuracy=(4, 4),
    doc=Doc(
        "Softplus, elementwise: a smooth ReLU.",
        r"\mathrm{softplus}(x) = \frac{1}{\beta} \log\left(1 + e^{\beta x}\right)"
        r" \text{ if } \beta x \le \text{threshold} \text{ else } x",
        r"\frac{\partial L}{\partial x} = g\,\sigma(\beta x) \text{ if } \beta x \le"
        r" \text{threshold} \text{ else } g",
        notes="""Computed as ``x + log1p(exp(-beta x)) / beta`` where ``beta x > 0`` and
``log1p(exp(beta x)) / beta`` elsewhere, with ``beta x`` carried in two
parts (an exact product): within 4 ULP of the exact value over the whole
range, subnormal results included, for every ``beta > 0``.  Where the
rounded product ``beta * x`` exceeds ``threshold`` the result is ``x``
(PyTorch's convention: with the default 20, a relative difference of up to
``exp(-20)/20`` from the exact function, invisible in float32; pass
``threshold=inf`` for the exact function in float64).
``softplus(+inf) = +inf``, ``softplus(-inf) = 0``, NaN propagates.
``beta`` must be finite and > 0, ``threshold`` not NaN (ValueError).

Deviations from PyTorch 2.13: PyTorch computes ``log1p(exp(beta x))``
directly, which overflows to ``inf`` where ``beta x`` exceeds ~88.7
(float32) / ~709.8 (float64) below a threshold set that high; fastact gives
the finite value.""",
        backward_notes="""Within 4 ULP of ``g * sigmoid(beta x)`` over the whole range, subnormal
results included (the power of two of ``exp(beta x)`` is applied last);
``g`` where the rounded ``beta * x > threshold``.  NaN ``x`` gives NaN; at
``x = -inf`` the result is ``g * 0`` (NaN for an infinite ``g``, as
PyTorch); an infinite ``g`` gives ``g`` for every finite ``x`` (the exact
product: PyTorch gives NaN where ``exp(beta x)`` underflows).  Deviation from PyTorch 2.13: with a threshold above ~88.7
(float32) / ~709.8 (float64) PyTorch's ``exp(z) / (exp(z) + 1)`` is
``inf / inf = NaN`` for large ``beta x``; fastact gives ``g``.""",
        example=""">>> import numpy as np, fastact
>>> fastact.softplus(np.array([-np.inf, -1.0, 0.0, 1.0, 30.0]))
array([ 0.        ,  0.31326169,  0.69314718,  1.31326169, 30.        ])
>>> fastact.softplus(np.array([1.0]), beta=2.0)
array([1.06346401])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.softplus_backward(np.ones(3), np.array([-1.0, 0.0, 30.0]))
array([0.26894142, 0.5       , 1.        ])"""),
    torch=Torch(
        "softplus", lambda beta, threshold: {"beta": beta, "threshold": threshold},
        deviations="PyTorch's log1p(exp(beta x)) overflows to inf (forward) and "
                   "exp(z)/(exp(z)+1) is NaN (backward) where beta x > ~88.7 (float32) / "
                   "~709.8 (float64) below a threshold set that high; fastact gives x, g.  "
                   "PyTorch rounds beta * x before the exponential: for a beta that is not "
                   "a power of two, a relative error up to |beta x| eps / 2 in the negative "
                   "tail (forward and backward), which fastact avoids (exact product).  An "
                   "infinite g times a sigmoid(beta x) that underflows is NaN in PyTorch, "
                   "+-inf in fastact (the exact product).",
        skip=_softplus_torch_skip,
        forward_out=lambda A, x, out, beta, threshold: A.softplus.out(
            x, beta, threshold, out=out),
        backward_out=lambda A, g, x, out, beta, threshold: A.softplus_backward.grad_input(
            g, x, beta, threshold, grad_input=out)),
    numpy_forward=lambda x, beta, threshold: np.where(
        x * beta > threshold, x, np.log1p(np.exp(x * beta)) / beta),
    numpy_backward=lambda g, x, beta, threshold: np.where(
        x * beta > threshold, g, g / (1 + np.exp(-x * beta))),
))


# --- logsigmoid -------------------------------------------------------------------------

def _logsigmoid(p):
    T, exp_split, ldexp, log1p = p.T, p.exp_split, p.ldexp, p.log1p
    zero = T(0.0)
    grad_sigmoid = _grad_sigmoid(p)

    def forward(x):
        # min(x, 0) - log1p(exp(-|x|)): no cancellation anywhere (both terms
        # are <= 0); log1p(t) = t exactly for a subnormal t
        pos = x > zero
        v = -x if pos else x
        q, nf = exp_split(v, zero)
        lp = log1p(ldexp(q, nf))
        # NaN: not pos, x - lp is NaN
        return -lp if pos else x - lp

    def backward(g, x):
        # 1 - sigmoid(x) = sigmoid(-x)
        return grad_sigmoid(g, -x, zero)

    return forward, backward


def _ref_logsigmoid_fwd(x):
    xw = x.astype(_wide(x.dtype))
    lp = np.log1p(np.exp(-np.abs(xw)))
    return np.where(xw > 0, -lp, xw - lp).astype(x.dtype)      # -0.0 at +inf


def _ref_logsigmoid_bwd(g, x):
    return _ref_grad_sigmoid(g, -x, -x.astype(_wide(x.dtype)))


register(Spec(
    "logsigmoid", "elementwise", saves="x", build=_logsigmoid,
    compute_bound=("forward", "backward"),
    reference_forward=_ref_logsigmoid_fwd, reference_backward=_ref_logsigmoid_bwd,
    api=(), accuracy=(4, 4),
    doc=Doc(
        "Log-sigmoid, elementwise: ``log(sigmoid(x)) = -softplus(-x)``.",
        r"\log\sigma(x) = \min(x, 0) - \log\left(1 + e^{-|x|}\right)",
        r"\frac{\partial L}{\partial x} = g\,(1 - \sigma(x)) = g\,\sigma(-x)",
        notes="""Computed as ``min(x, 0) - log1p(exp(-|x|))``: within 4 ULP of the exact
value over the whole range, subnormal results included (``-exp(-x)`` for
large ``x``, ``x`` for very negative ``x``).  ``logsigmoid(+inf) = -0.0``,
``logsigmoid(-inf) = -inf``, NaN propagates.""",
        backward_notes="""Within 4 ULP of ``g * sigmoid(-x)`` over the whole range, subnormal results
included.  NaN ``x`` gives NaN; at ``x = +inf`` the result is ``g * 0``
(NaN for an infinite ``g``, as PyTorch), at ``x = -inf`` it is ``g``; an
infinite ``g`` gives ``g`` for every finite ``x`` (the exact product:
PyTorch gives NaN where ``exp(-x)`` underflows).""",
        example=""">>> import numpy as np, fastact
>>> fastact.logsigmoid(np.array([-np.inf, -1.0, 0.0, 1.0, 800.0]))
array([       -inf, -1.31326169, -0.69314718, -0.31326169, -0.        ])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.logsigmoid_backward(np.ones(3), np.array([-np.inf, 0.0, 1.0]))
array([1.        , 0.5       , 0.26894142])"""),
    torch=Torch(
        "logsigmoid",
        deviations="An infinite g times a sigmoid(-x) that underflows (x > ~88.7 in "
                   "float32, ~709.8 in float64) is NaN in PyTorch, +-inf in fastact (the "
                   "exact product).",
        forward_out=lambda A, x, out: A.log_sigmoid.out(x, out=out),
        # the CPU kernel reads the forward's buffer without using it: x
        # stands in (no allocation, lines already cached: PyTorch's best case)
        backward_out=lambda A, g, x, out: A.log_sigmoid_backward.grad_input(
            g, x, x, grad_input=out)),
    numpy_forward=lambda x: -np.log1p(np.exp(-x)),
    numpy_backward=lambda g, x: g / (1 + np.exp(x)),
))
