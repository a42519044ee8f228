"""The special family of activations (see fastact._ops): softplus and
logsigmoid, written with the primitives ``log1p``, ``exp_split``, ``ldexp``
and ``two_prod`` of :mod:`fastact._prims` (C: ``c_src/kernels.inc``; the
formulas again in ``c_src/formulas_special.inc``)."""
from __future__ import annotations

import math

import numpy as np

from .. import _checks
from .._spec import Doc, Param, Spec, Torch, register
from .._spec import wide as _wide




# --- shared: g * sigmoid(z + zl) ---------------------------------------------------

def _grad_sigmoid(p, fast=False):
    """``g * sigmoid(z + zl)`` (z + zl: a value in two parts, zl the low
    part), rounded nearly once over the whole range: exp(-|z|) = e = q 2**nf
    (exp_split), then g / (1 + e) where z > 0, else ldexp(g (q/2) / (1 + e),
    nf + 1): the power of two applied last, so that a result in the
    subnormal range is rounded once there, and g (q/2)/(1 + e) <= 0.71 |g|
    cannot overflow.  NaN z gives NaN; z = -inf gives g * 0 (NaN for an
    infinite g, as PyTorch's g * exp(-inf))."""
    T, exp_split, ldexp, ldexp_normal = p.T, p.exp_split, p.ldexp, p.ldexp_normal
    exp_split_in = p.exp_split_in
    zero, one, half, ninf = T(0.0), T(1.0), T(0.5), T(-np.inf)

    @p.jit
    def grad_sigmoid(g, z, zl):
        pos = z > zero
        v = -z if pos else z            # -|z|
        vl = -zl if pos else zl
        if fast:                        # |z| <= GS_FAST: exp_split's clamp idle
            q, n = exp_split_in(v, vl)
            nf = T(n)
        else:
            q, nf = exp_split(v, vl)
        e = ldexp_normal(q, nf)         # below the normal range, d = 1
        d = one + e
        w = (g if pos else q * half) / d
        r = w if pos else ldexp(g * w, nf + one)
        if fast:                        # z finite
            return r
        r = g * zero if z == ninf else r
        return z if z != z else r

    return grad_sigmoid


def _gs_fast_lim(p):
    """grad_sigmoid's common domain, |z| <= this (the fast variant): exp_split
    takes v as it is, and q 2**n stays normal (C: GS_FAST, formulas_special.inc)."""
    return p.T(60.0 if p.dtype == np.float32 else 600.0)


# --- softplus ------------------------------------------------------------------------

def _softplus(p, fast=False):
    T, two_prod, exp_split, ldexp, log1p = p.T, p.two_prod, p.exp_split, p.ldexp, p.log1p
    frexp2, ldexp_normal = p.frexp2, p.ldexp_normal
    zero = T(0.0)
    # below 2**-(mantissa bits + 3), log1p(t) = t to a quarter ULP: the tail
    # is computed from the scaled q and the power of two applied last
    deep_n = T(-(np.finfo(p.dtype).nmant + 3))
    grad_sigmoid = _grad_sigmoid(p, fast)

    def forward(x, beta, threshold):
        # z = beta * x in two parts (z + zl exact): exp(-|z|) sees the low
        # part, so the rounding of beta * x costs no |z| eps in the tails
        z, zl = two_prod(beta, x)
        neg = z < zero
        v = z if neg else -z            # -|z|
        vl = zl if neg else -zl
        q, nf = exp_split(v, vl)
        deep = nf < deep_n
        lp = log1p(ldexp_normal(q, nf))    # needed where not deep only
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


def _softplus_guard(p):
    """softplus_backward's common domain: |beta x| <= 60 (float64: 600)."""
    lim = _gs_fast_lim(p)

    def ok(g, x, beta, threshold):
        return abs(beta * x) <= lim
    return {"backward": ok}


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
    # the forward's output streamed out through a buffer (as a memory-bound
    # pass): the C float64 kernel ran at 0.70-0.78x PyTorch's speed with
    # the prefetched line-by-line stores, 1.14-1.28x streamed (2**24, two
    # threads, interleaved with PyTorch, three runs each)
    compute_bound=("backward",), guarded=("backward",), guard=_softplus_guard,
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

def _logsigmoid(p, fast=False):
    T, exp_split, ldexp, log1p = p.T, p.exp_split, p.ldexp, p.log1p
    zero = T(0.0)
    grad_sigmoid = _grad_sigmoid(p, fast)

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


def _logsigmoid_guard(p):
    """logsigmoid_backward's common domain: |x| <= 60 (float64: 600)."""
    lim = _gs_fast_lim(p)

    def ok(g, x):
        return abs(x) <= lim
    return {"backward": ok}


def _ref_logsigmoid_fwd(x):
    xw = x.astype(_wide(x.dtype))
    lp = np.log1p(np.exp(-np.abs(xw)))
    return np.where(xw > 0, -lp, xw - lp).astype(x.dtype)      # -0.0 at +inf


def _ref_logsigmoid_bwd(g, x):
    return _ref_grad_sigmoid(g, -x, -x.astype(_wide(x.dtype)))


register(Spec(
    "logsigmoid", "elementwise", saves="x", build=_logsigmoid,
    compute_bound=("forward", "backward"), guarded=("backward",), guard=_logsigmoid_guard,
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


# --- gelu ---------------------------------------------------------------------------
# tanh approximation: 0.5 x (1 + tanh(u)) = x sigmoid(v), v = 2u = x (c0 + c1 x**2),
# c0 = 2 sqrt(2/pi), c1 = 0.044715 c0; both carried in two parts

def _split_const(c, dtype):
    """The real ``c`` (a decimal string) as hi + lo in ``dtype``."""
    import fractions
    t = np.dtype(dtype).type
    exact = fractions.Fraction(c)
    hi = t(float(exact))
    return hi, t(float(exact - fractions.Fraction(float(hi))))


_C0 = "1.595769121605730711759784239737527473903"       # 2 sqrt(2/pi)
_C1 = "0.07135481627260024877633875227986354099559"     # 0.044715 * 2 sqrt(2/pi)


def _gelu_v(p):
    """v(x) = x (c0 + c1 x**2) as vh + vl, accurate to a few eps**2 |v|: in the
    negative tail x sigmoid(v) ~ x exp(v), whose relative error is v's
    absolute error (|v| up to ~104 / 745 before the result underflows)."""
    two_prod = p.two_prod
    c0h, c0l = _split_const(_C0, p.dtype)
    c1h, c1l = _split_const(_C1, p.dtype)

    @p.jit
    def gelu_v(x):
        x2, x2l = two_prod(x, x)
        pr, prl = two_prod(c1h, x2)
        low = prl + (c1h * x2l + c1l * x2)
        sm = c0h + pr                   # TwoSum
        bb = sm - c0h
        low = low + ((c0h - (sm - bb)) + (pr - bb)) + c0l
        vh, vl = two_prod(x, sm)
        return vh, vl + x * low

    return gelu_v


def _gelu_tanh(p):
    T, exp_split, ldexp, ldexp_normal = p.T, p.exp_split, p.ldexp, p.ldexp_normal
    zero, one, ninf, mzero = T(0.0), T(1.0), T(-np.inf), T(-0.0)
    c0h = _split_const(_C0, p.dtype)[0]
    c1x3 = T(3.0) * _split_const(_C1, p.dtype)[0]
    # beyond +-40 the derivative is 1 (to the rounding) or its product with
    # any finite g rounds to 0: x is clamped there
    xcut = T(40.0)
    # the power of two of sigmoid(v) is applied in two steps, 2**max(n, nlim)
    # then the rest: the product with g is formed near its own scale
    nlim = T(-100.0 if p.dtype == np.float32 else -1000.0)
    gelu_v, grad_sigmoid = _gelu_v(p), _grad_sigmoid(p)

    def forward(x):
        vh, vl = gelu_v(x)
        # x sigmoid(v): grad_sigmoid's product, rounded nearly once
        r = grad_sigmoid(x, vh, vl)
        return mzero if x == ninf else r

    def backward(g, x):
        xc = xcut if x > xcut else x
        xc = -xcut if xc < -xcut else xc            # NaN passes
        vh, vl = gelu_v(xc)
        pos = vh > zero
        q, nf = exp_split(-vh if pos else vh, -vl if pos else vl)
        e = ldexp_normal(q, nf)
        inv = one / (one + e)
        # sigmoid(v) = s1 2**ns, sigmoid(-v) = sm
        s1 = inv if pos else q * inv
        sm = e * inv if pos else inv
        ns = zero if pos else nf
        dv = c0h + c1x3 * (xc * xc)                 # v'(x)
        a = s1 + s1 * ((xc * sm) * dv)              # sigmoid(v) (1 + x sigmoid(-v) v') 2**-ns
        n1 = nlim if ns < nlim else ns
        r = ldexp(g * ldexp_normal(a, n1), ns - n1)
        r = g * zero if x == ninf else r
        return x if x != x else r

    return forward, backward


def _ref_gelu_v(xw):
    W = xw.dtype.type
    return xw * (W(_C0) + W(_C1) * (xw * xw))


def _ref_gelu_tanh_fwd(x):
    xw = x.astype(_wide(x.dtype))
    y = xw * _ref_sigmoid_wide(_ref_gelu_v(xw))
    return np.where(x == -np.inf, -0.0, y).astype(x.dtype)


def _ref_gelu_tanh_bwd(g, x):
    xw = x.astype(_wide(x.dtype))
    W = xw.dtype.type
    v = _ref_gelu_v(xw)
    s, sm = _ref_sigmoid_wide(v), _ref_sigmoid_wide(-v)
    d = s + xw * s * sm * (W(_C0) + 3 * W(_C1) * xw * xw)
    return _ref_grad_times(g, x, d, -0.7517)


def _ref_grad_times(g, x, d, x0):
    """g * d (d the derivative in the wider type) as if exact: an infinite g
    gives +-inf by the derivative's sign (negative below its zero x0) for
    every finite x, also where the wide d underflowed; at x = +inf d = 1,
    at x = -inf g * 0."""
    d = np.where(x == np.inf, 1, np.where(x == -np.inf, 0, d))
    r = (g.astype(d.dtype) * d).astype(g.dtype)
    sign = np.where(d != 0, np.sign(d), np.where(x < x0, -1, 1)).astype(g.dtype)
    return np.where(np.isinf(g) & np.isfinite(x), g * sign, r)


register(Spec(
    "gelu_tanh", "elementwise", saves="x", build=_gelu_tanh,
    compute_bound=("forward", "backward"),
    reference_forward=_ref_gelu_tanh_fwd, reference_backward=_ref_gelu_tanh_bwd,
    accuracy=(4, "cond"),
))


# exact GELU: x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2.  With t = |x| / sqrt 2
# and E = exp(-x**2 / 2) (x**2 exact in two parts: the exponential's argument
# is exact, so the tails keep their relative accuracy), erfc(t) = E erfcx(t):
# Phi(x) = E erfcx(t) / 2 for x <= 0, 1 - E erfcx(t) / 2 for x > 0.

_RSQRT2 = "0.7071067811865475244008443621048490392848"      # 1 / sqrt(2)
_RSQRT2PI = "0.3989422804014326779399460599343818684759"    # 1 / sqrt(2 pi)


def _gelu_erf(p):
    """float32 with phi_ratio (every target has it): _gelu_erf32, else
    (float64) _gelu_erf64; their backward is _grad_phi's."""
    T = p.T
    return _gelu_erf32(p, _grad_phi(p, np.int32)) if p.phi_ratio is not None \
        else _gelu_erf64(p, _grad_phi(p, T))


def _grad_phi(p, N):
    """grad_phi(g, x, xc, q, nf, f) = g (Phi(x) + x phi(x)) from Phi(-|xc|) =
    q f 2**nf (f = Phi(-a) exp(a**2 / 2)), xc = x clamped: a 2**ns with a =
    1 + E (xc / sqrt(2 pi) - f) for xc > 0, else q (f + xc / sqrt(2 pi));
    the power of two applied last, in two steps (nlim: no overflow of g a).
    N: the type of nf and its arithmetic (an integer for exp_split_in's n:
    float32's vscalef then needs no conversions, 9 of them a vector
    before)."""
    T, ldexp, ldexp_normal = p.T, p.ldexp, p.ldexp_normal
    zero, one, ninf = T(0.0), T(1.0), T(-np.inf)
    nzero, nlim = N(0), N(-100 if p.dtype == np.float32 else -1000)
    cphi = _split_const(_RSQRT2PI, p.dtype)[0]

    @p.jit
    def grad_phi(g, x, xc, q, nf, f):
        pos = xc > zero
        xp = xc * cphi
        a = one + ldexp_normal(q, nf) * (xp - f) if pos else q * (f + xp)
        ns = nzero if pos else nf
        n1 = nlim if ns < nlim else ns
        r = ldexp(g * ldexp_normal(a, n1), ns - n1)
        r = g * zero if x == ninf else r
        return x if x != x else r

    return grad_phi


def _gelu_erf64(p, grad_phi):
    """float64: erfcx2's y + c."""
    T, two_prod, exp_split = p.T, p.two_prod, p.exp_split
    ldexp, ldexp_normal, erfcx2, fma = p.ldexp, p.ldexp_normal, p.erfcx2, p.fma
    zero, one, half, ninf, mzero = T(0.0), T(1.0), T(0.5), T(-np.inf), T(-0.0)
    rsqrt2 = _split_const(_RSQRT2, p.dtype)[0]
    # erfcx's argument stays finite; beyond, E is 0 (x**2 / 2 > 1800)
    tmax = T(60.0)
    # the backward's x is clamped at +-60: Phi' = 1 to the rounding beyond
    # +9, and below -55 the product with any finite g rounds to 0
    xcut = T(60.0)

    @p.jit
    def phi_parts(x):
        """(q, nf, e, y, c): E = exp(-x**2 / 2) = q 2**nf (nf a float) with
        e = E where normal; erfcx(|x| / sqrt 2) = y + c."""
        x2, x2l = two_prod(x, x)
        q, nf = exp_split(-half * x2, -half * x2l)
        t = abs(x) * rsqrt2
        y, c = erfcx2(tmax if t > tmax else t)
        return q, nf, ldexp_normal(q, nf), y, c

    def forward(x):
        q, nf, e, y, c = phi_parts(x)
        # x > 0: x (1 - E erfcx / 2); else x (q / 2) erfcx 2**nf, with
        # x (q / 2) = h + l exact and erfcx = y + c: one rounding, then the
        # power of two (|h y| < 1: no overflow; one more rounding only where
        # the result is subnormal)
        rp = x * (one - half * (e * (y + c)))
        h, l = two_prod(x, half * q)
        rn = ldexp(fma(h, y, h * c + l * y), nf)
        r = rp if x > zero else rn
        r = mzero if x == ninf else r
        return x if x != x else r

    def backward(g, x):
        xc = xcut if x > xcut else x
        xc = -xcut if xc < -xcut else xc            # NaN passes
        q, nf, e, y, c = phi_parts(xc)
        # Phi(-|x|) exp(x**2 / 2) = erfcx / 2
        return grad_phi(g, x, xc, q, nf, half * (y + c))

    return forward, backward


def _gelu_erf32(p, grad_phi):
    """float32: Phi(-a) = E F(a), a = |x|, E = exp(-x**2 / 2) = q 2**nf from
    the exact -x**2 / 2 = h + l, and F = phi_ratio(a) = fh + fl (one
    division: its throughput is below the rest of the formula's); the
    backward is _grad_phi's.  x is clamped to [-15, 10] first (NaN
    passes), which keeps every step in its range without a select of its
    own: beyond 10, x Phi(-x) < 2**-76 x and x minus it rounds to x (+inf
    stays inf); from -15 down, x Phi(x) rounds to -0 (the last nonzero
    result is near -14.1), and 2**n stays above 2**-163.  The backward
    clamps at +-20: beyond +20 the derivative is 1 to the rounding, and
    below -20 its product with any finite g rounds to 0."""
    T, two_prod, exp_split = p.T, p.two_prod, p.exp_split_in
    ldexp, phi_ratio, fma = p.ldexp, p.phi_ratio, p.fma
    zero, half = T(0.0), T(0.5)
    from .._prims import _PHI_A32      # phi_ratio's domain: [0, 20]
    xbig, xlow, xcut = T(10.0), T(-15.0), T(_PHI_A32)

    @p.jit
    def phi_parts(x):
        """(q, n, fh, fl): Phi(-|x|) = q (fh + fl) 2**n for |x| <= 20, n an
        integer (exp_split_in's)."""
        h, l = two_prod(x, -half * x)
        q, nf = exp_split(h, l)
        fh, fl = phi_ratio(abs(x))
        return q, nf, fh, fl

    def forward(x):
        xc = xlow if x < xlow else x                # NaN passes
        xc = xbig if xc > xbig else xc
        q, n, fh, fl = phi_parts(xc)
        # xc Phi(-|xc|) = v 2**n, v = (h + l)(fh + fl) rounded once, xc q =
        # h + l exactly; then the power of two; x > 0: x minus that
        h, l = two_prod(xc, q)
        v = ldexp(fma(h, fh, h * fl + l * fh), n)
        r = x - v if x > zero else v
        return x if x != x else r

    def backward(g, x):
        xc = xcut if x > xcut else x
        xc = -xcut if xc < -xcut else xc            # NaN passes
        q, n, fh, fl = phi_parts(xc)
        return grad_phi(g, x, xc, q, n, fh + fl)

    return forward, backward


def _ref_phi(xw):
    """Phi(x) and phi(x) in the wider type: erfc from math (float64) for
    float32 data; for float64 data, long double with erfc(t) = exp(-t**2)
    erfcx(t) for t > 1 (erfcx by its continued fraction) and the Taylor
    series of erf below."""
    import math
    W = xw.dtype.type
    phi = np.exp(-xw * xw / 2) * W(_RSQRT2PI)
    if xw.dtype == np.float64:
        erfc = np.vectorize(math.erfc, otypes=[np.float64])
        return erfc(-xw * W(_RSQRT2)) / 2, phi
    return _erfc_ld(-xw * W(_RSQRT2)) / 2, phi


def _erfc_ld(y):
    """erfc(y) in long double (~1e-18 relative), vectorized: for |y| < 2 the
    Taylor series of erf (40 terms), for y >= 2 the continued fraction of
    erfcx (Lentz, 60 terms), erfc(-y) = 2 - erfc(y)."""
    W = np.longdouble
    sqrt_pi = np.sqrt(W("3.141592653589793238462643383279502884"))
    a = np.abs(y)
    out = np.empty_like(y)
    small = a < 2
    ys = y[small]
    # erf(y) = 2/sqrt(pi) sum (-1)^k y^(2k+1) / (k! (2k+1))
    term, s = ys.copy(), ys.copy()
    y2 = ys * ys
    for k in range(1, 60):
        term = term * (-y2) / k
        s = s + term / (2 * k + 1)
    out[small] = 1 - s * (2 / sqrt_pi)
    big = ~small & np.isfinite(a)
    ab = a[big]
    # erfc(a) = exp(-a^2) / sqrt(pi) * 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...))))
    f = ab.copy()
    for k in range(80, 0, -1):
        f = ab + (W(k) / 2) / f
    e = np.exp(-ab * ab) / sqrt_pi / f
    out[big] = np.where(y[big] > 0, e, 2 - e)
    out[np.isinf(y)] = np.where(y[np.isinf(y)] > 0, 0, 2)
    out[np.isnan(y)] = np.nan
    return out


def _ref_gelu_fwd(x):
    xw = x.astype(_wide(x.dtype))
    Phi, _ = _ref_phi(xw)
    return np.where(x == -np.inf, -0.0, xw * Phi).astype(x.dtype)


def _ref_gelu_bwd(g, x):
    xw = x.astype(_wide(x.dtype))
    Phi, phi = _ref_phi(xw)
    return _ref_grad_times(g, x, Phi + xw * phi, -0.7518)


def _numpy_erf(x):
    """NumPy has no erf: what a NumPy-only user would write."""
    import math
    return np.vectorize(math.erf, otypes=[x.dtype])(x)


def _numpy_gelu_fwd(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _numpy_erf(x / np.sqrt(2)))


def _numpy_gelu_bwd(g, x, approximate):
    if approximate == "tanh":
        k = np.sqrt(2 / np.pi)
        t = np.tanh(k * (x + 0.044715 * x ** 3))
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x))
    return g * (0.5 * (1 + _numpy_erf(x / np.sqrt(2)))
                + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi))


def _gelu_route(op, approximate):
    if isinstance(approximate, str):
        if approximate == "none":
            return "gelu", ()
        if approximate == "tanh":
            return "gelu_tanh", ()
    raise ValueError(f'fastact.{op}: approximate must be "none" or "tanh", got '
                     f"{approximate!r}")


def _gelu_torch_skip(x, approximate):
    """PyTorch's GELU differs beyond the bounds at +-inf (NaN; the limits are
    0, inf, and 0 and 1 for the derivative), where 1 + erf(x / sqrt 2) or
    1 + tanh(u) cancels (x < -1: float32 erf form 5 ULP at -1.5, 0.16% at
    -4; the tanh form hundreds of ULP by -3), and for large x: its float32
    product overflows to inf from 2**127, and the tanh form's x**3 overflows
    (NaN backward from ~7e12 in float32)."""
    return np.isinf(x) | (x < -1) | (x > 1e12)


register(Spec(
    "gelu", "elementwise", saves="x", build=_gelu_erf,
    compute_bound=("forward", "backward"),
    reference_forward=_ref_gelu_fwd, reference_backward=_ref_gelu_bwd,
    api=(Param("approximate", "none", '``"none"`` (the exact GELU, with erf) or '
               '``"tanh"`` (the tanh approximation)', kw_only=True),),
    route=_gelu_route,
    accuracy=(4, "cond"),
    doc=Doc(
        "Gaussian error linear unit (Hendrycks and Gimpel, 2016), elementwise.",
        r"\mathrm{gelu}(x) = x\,\Phi(x) = \frac{x}{2}\,\mathrm{erfc}\left(-\frac{x}{\sqrt 2}"
        r"\right); \quad \text{tanh: } \frac{x}{2}\left(1 + \tanh\left(\sqrt{2/\pi}\,"
        r"(x + 0.044715 x^3)\right)\right)",
        r"\frac{\partial L}{\partial x} = g\,(\Phi(x) + x\,\varphi(x)); \quad \text{tanh: }"
        r" g\,\sigma(v)\,(1 + x\,\sigma(-v)\,v'), \; v = 2\sqrt{2/\pi}\,(x + 0.044715 x^3)",
        notes="""``approximate="none"``: ``erfc(t) = exp(-t**2) erfcx(t)`` with the
exponential's argument ``x**2 / 2`` carried exactly (two parts) and
``erfcx`` a polynomial in ``q = (t - K) / (t + K)`` (float32: ``Phi(-|x|) =
exp(-x**2/2) P(q) / (|x| + 4)``, one reciprocal by Newton's method, no
division, ``1 / (|x| + 4)`` in two parts); ``approximate="tanh"``:
``x * sigmoid(v)``, ``v = 2u`` in two parts.  Both within 4 ULP of the exact
function over the whole range, subnormal results of the negative tail
included (where ``1 + tanh(u)`` and ``1 + erf`` cancel in the naive
formulas).  ``gelu(+inf) = +inf``, ``gelu(-inf) = -0.0``, NaN propagates;
``approximate`` other than ``"none"`` or ``"tanh"`` is a ValueError.

Deviations from PyTorch 2.13: PyTorch gives NaN at ``-inf`` (both forms) and
at ``+inf`` (``"none"``); it computes ``1 + erf(x/sqrt 2)`` and ``1 +
tanh(u)``, which cancel below ``x = -1`` (float32 erf form: 5 ULP at -1.5,
0.16% at -4; the tanh form hundreds of ULP by -3); its float32 GELU
overflows to inf from ``x = 2**127``.""",
        backward_notes="""Within ``4 eps |g| (|Phi(x)| + |x phi(x)|)`` (tanh: ``4 eps |g|
(sigmoid(v) + |x sigmoid(v) sigmoid(-v) v'|)``) of the exact value: the
derivative has a zero near ``x = -0.7518``, where its two terms cancel; 4 ULP
elsewhere, subnormal results included.  The derivative is 1 at ``+inf`` and
0 at ``-inf`` (``g * 0``, NaN for an infinite ``g``); an infinite ``g``
gives ``+-inf`` for every finite ``x`` (the exact product).  Deviations from
PyTorch 2.13: NaN at ``+-inf`` (and, tanh form, where ``x**3`` overflows), the
cancellation below ``x = -1``, and NaN for an infinite ``g`` where the
derivative underflows.""",
        example=""">>> import numpy as np, fastact
>>> fastact.gelu(np.array([-np.inf, -1.0, 0.0, 1.0, np.inf]))
array([-0.        , -0.15865525,  0.        ,  0.84134475,         inf])
>>> fastact.gelu(np.array([-1.0, 1.0]), approximate="tanh")
array([-0.15880801,  0.84119199])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.gelu_backward(np.ones(3), np.array([-1.0, 0.0, 1.0]))
array([-0.08331547,  0.5       ,  1.08331547])"""),
    torch=Torch(
        "gelu", lambda approximate: {"approximate": approximate},
        deviations="PyTorch gives NaN at -inf (both forms) and +inf (approximate='none'), "
                   "forward and backward; fastact the limits (0, inf; derivative 0, 1).  "
                   "PyTorch computes 1 + erf(x/sqrt 2) and 1 + tanh(u), which cancel below "
                   "x = -1 (float32 erf form: 5 ULP at -1.5, 0.16% at -4; tanh form: "
                   "hundreds of ULP by -3, 0 or garbage further out); fastact keeps 4 ULP "
                   "there (erfc = exp(-x^2/2) erfcx, x sigmoid(2u)).  PyTorch's float32 "
                   "gelu overflows to inf from x = 2**127, and its tanh form's backward is "
                   "NaN where x**3 overflows.  An infinite g times a "
                   "derivative that underflows is NaN in PyTorch, +-inf in fastact.",
        skip=_gelu_torch_skip,
        forward_out=lambda A, x, out, approximate: A.gelu.out(
            x, approximate=approximate, out=out),
        backward_out=lambda A, g, x, out, approximate: A.gelu_backward.grad_input(
            g, x, approximate=approximate, grad_input=out)),
    numpy_forward=_numpy_gelu_fwd, numpy_backward=_numpy_gelu_bwd,
))


# --- squareplus ------------------------------------------------------------------------

def _squareplus(p):
    T, fma = p.T, p.fma
    zero, quarter, half, one, two = T(0.0), T(0.25), T(0.5), T(1.0), T(2.0)
    inf = T(np.inf)

    @p.jit
    def parts(x, b):
        """(a, s, u, w): a = |x|, s = sqrt(x**2 + b), u = a / s and, for x < 0,
        the derivative b / (2 s (s + a)) = b / (2 (a**2 + b + a s)), a sum of
        positive terms (a s added by an FMA), as w.  Beyond a = 1, with t = b / a**2 (as (b / a) /
        a: no overflow), s = a q, q = sqrt(1 + t), u = 1 / q and the
        derivative t / (2 (1 + t + q)): w = 1 / (2 (1 + t + q)) alone (1 + t
        + q as 2 + (t + t / (1 + q)), since q - 1 = t / (1 + q)), for
        the gradient ((g / a) w) (b / a), which underflows only where the
        exact product does."""
        a = -x if x < zero else x
        big = a > one
        t = (b / a) / a
        a2 = a * a
        q = T(math.sqrt(one + t if big else a2 + b))
        s = a * q if big else q
        u = one / q if big else a / s
        # 1 + t + q = 2 + (t + t / (1 + q)): q - 1 = t / (1 + q), no rounding of 1 + t
        w = half / (two + (t + t / (one + q))) if big else half * (b / fma(a, s, a2 + b))
        return a, s, u, w

    def forward(x, b):
        a, s, u, w = parts(x, b)
        # x < 0: b / (2 (s + |x|)), free of the cancellation in x + s; the
        # halved sum cannot overflow.  x > 1: the halves (exact) added, so
        # that x + s cannot overflow near the largest float
        neg = (b / (half * s + half * a)) * quarter
        pos = half * x + half * s if x > one else half * (x + s)
        return pos if x >= zero else neg       # NaN: neg is NaN

    def backward(g, x, b):
        a, s, u, w = parts(x, b)
        neg = ((g / a) * w) * (b / a) if a > one else g * w
        r = g * (half * (one + u)) if x >= zero else neg
        # the derivative is > 0 at every finite x: an infinite g gives g, as
        # the exact product (where the derivative underflows too)
        return g if (g == inf or g == -inf) and a < inf else r

    return forward, backward


def _ref_squareplus_parts(x, b):
    xw = x.astype(_wide(x.dtype))
    bw = xw.dtype.type(x.dtype.type(b))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        s = np.sqrt(xw * xw + bw)
    return xw, bw, s


def _ref_squareplus_fwd(x, b):
    xw, bw, s = _ref_squareplus_parts(x, b)
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.where(xw >= 0, (xw + s) / 2, bw / (2 * (s - xw)))
    return np.where(np.isinf(xw), np.maximum(xw, 0), r).astype(x.dtype)


def _ref_squareplus_bwd(g, x, b):
    xw, bw, s = _ref_squareplus_parts(x, b)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        d = np.where(xw >= 0, (1 + xw / s) / 2, bw / (2 * s * (s - xw)))
    d = np.where(np.isinf(xw), (xw > 0).astype(d.dtype), d)
    with np.errstate(invalid="ignore"):
        return (g.astype(d.dtype) * d).astype(x.dtype)


def _squareplus_check(op, b):
    _checks.not_nan(op, b=b)
    _checks.positive(op, b=b)
    _checks.finite(op, b=b)


register(Spec(
    "squareplus", "elementwise", saves="x", params=("b",), build=_squareplus,
    compute_bound=("forward", "backward"),
    reference_forward=_ref_squareplus_fwd, reference_backward=_ref_squareplus_bwd,
    api=(Param("b", 4.0, "the curvature at 0 (a finite real number > 0)"),),
    check=_squareplus_check,
    accuracy=(4, 4),
    doc=Doc(
        "Squareplus (So, 2021), elementwise: a softplus made of a square root.",
        r"\mathrm{squareplus}(x) = \frac{x + \sqrt{x^2 + b}}{2}",
        r"\frac{\partial L}{\partial x} = \frac{g}{2}\left(1 + \frac{x}{\sqrt{x^2 + b}}"
        r"\right)",
        notes="""For ``x < 0`` computed as ``b / (2 (sqrt(x**2 + b) - x))``, free of the
cancellation of ``x + sqrt(x**2 + b)``, and ``sqrt(x**2 + b)`` as ``|x|
sqrt(1 + b / x**2)`` beyond ``|x| = 1``, so that ``x**2`` cannot overflow:
within 4 ULP over the whole range.  ``squareplus(+inf) = +inf``,
``squareplus(-inf) = 0``, NaN propagates.  ``b`` must be finite and > 0
(ValueError).  JAX's ``jax.nn.squareplus``; PyTorch has none: the
expression ``(x + sqrt(x**2 + b)) / 2`` cancels for ``x << 0`` and
overflows in ``x**2``.""",
        backward_notes="""``g (1 + x / sqrt(x**2 + b)) / 2``, for ``x < 0`` as ``g b / (2 (x**2 + b
+ |x| s))`` with ``s = sqrt(x**2 + b)`` (no cancellation): within 4 ULP.
The derivative is 1 at ``+inf`` and 0 at ``-inf`` (``g * 0``); an infinite
``g`` gives ``g`` at every finite ``x`` (the exact product; the derivative is
positive).""",
        example=""">>> import numpy as np, fastact
>>> fastact.squareplus(np.array([-np.inf, -1.0, 0.0, 1.0, np.inf]))
array([0.        , 0.61803399, 1.        , 1.61803399,        inf])""",
        backward_example=""">>> import numpy as np, fastact
>>> fastact.squareplus_backward(np.ones(3), np.array([-1.0, 0.0, 1.0]))
array([0.2763932, 0.5      , 0.7236068])"""),
    torch=Torch(
        "squareplus: (x + sqrt(x**2 + b)) / 2", lambda b: {"b": b},
        function=lambda F, x, b: (x + (x * x + b).sqrt()) / 2,
        deviations="PyTorch has no squareplus; its expression (x + sqrt(x**2 + b)) / 2 "
                   "cancels for x << 0 (all digits lost where x**2 >> b / eps) and x**2 "
                   "overflows for |x| beyond sqrt(max) (inf - inf = NaN at -inf); fastact "
                   "keeps 4 ULP and the limits 0 and inf.",
        # where x**2 > b, 1 + x / s cancels in PyTorch's backward for x < 0
        skip=lambda x, b: ((x < 0) & (np.abs(x) > np.sqrt(b))) | (np.abs(x) > 1e18),
        rtol=1e-6,
        forward_out=lambda A, x, out, b: A.div_.Scalar(A.add_.Tensor(A.sqrt_(
            A.add_.Scalar(A.mul.out(x, x, out=out), b)), x), 2.0),
        backward_out=lambda A, g, x, out, b: A.div_.Scalar(A.mul_.Tensor(A.add_.Scalar(
            A.div.out(x, A.sqrt_(A.add_.Scalar(A.mul.out(x, x, out=out), b)), out=out),
            1.0), g), 2.0)),
    numpy_forward=lambda x, b: (x + np.sqrt(x * x + b)) / 2,
    numpy_backward=lambda g, x, b: g * (1 + x / np.sqrt(x * x + b)) / 2,
))
