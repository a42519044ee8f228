"""Oracles of the gated family (GLU and its variants): the halves of ``x``
in np.longdouble through the act's own oracle, and the checks of a result
against them with the bounds the docstrings state."""
from __future__ import annotations

import numpy as np

from conftest import WIDE, hp, oracle_sigmoid, ulp_of
from oracles import ORACLES

#: public name -> (act, its oracle's keyword arguments of the op's, u is b)
GATED = {
    "glu": ("sigmoid", True),
    "reglu": ("relu", False),
    "geglu": ("gelu", False),
    "swiglu": ("silu", False),
}
#: the parameter sets each op is checked with
VARIANTS = {"glu": [{}], "reglu": [{}], "swiglu": [{}],
            "geglu": [{}, {"approximate": "tanh"}]}


def _act(name, u, kw):
    if name == "sigmoid":
        return oracle_sigmoid(u)
    if name == "relu":
        return np.where(u > 0, u, np.where(np.isnan(u), u, 0))
    return ORACLES[name].forward(u, **kw)


def _rounded(v, dt):
    return v.astype(dt).astype(WIDE)


def _act_grad(name, gv, u, kw, dt):
    """The act's derivative at u times gv, and the magnitude of its terms
    (for the conditioning bound near the derivative's zeros)."""
    with np.errstate(all="ignore"):
        if name == "sigmoid":
            d = oracle_sigmoid(u) * oracle_sigmoid(-u)
            # an infinite g v times sigmoids that round to 0: NaN, as computed
            dr = _rounded(oracle_sigmoid(u), dt) * _rounded(oracle_sigmoid(-u), dt)
            return gv * np.where(np.isinf(gv), dr, d), np.abs(d)
        if name == "relu":              # relu'(0) = 0; a NaN x passes g (relu_backward)
            return np.where((u > 0) | np.isnan(u), gv, 0), np.ones_like(u)
        o = ORACLES[name]
        return o.backward(gv, u, **kw), o.terms(u, **kw)


def halves(x, axis):
    a, b = np.split(hp(x), 2, axis=axis)
    return a, b


def exact(op, x, g, axis=-1, **kw):
    """(y, dx) of ``op`` in np.longdouble."""
    act, swap = GATED[op]
    a, b = halves(x, axis)
    u, v = (b, a) if swap else (a, b)
    dt = np.asarray(x).dtype
    with np.errstate(all="ignore"):
        fu = _act(act, u, kw)
        # an infinite v times act(u) that rounds to 0 in the dtype is NaN
        # (the docstrings: special values follow the product); the
        # reference, wider, may keep the infinity
        y = fu * v
        y_alt = np.where(np.isinf(v), _rounded(fu, dt), fu) * v
        gw = hp(g)
        du, terms = _act_grad(act, gw * v, u, kw, dt)
        dv = gw * fu
        cond = np.abs(gw * v) * terms
        # (g = 0 with v = inf: NaN, no warning)
        gv_inf = np.isinf(_rounded(gw * v, dt))
    da, db = (dv, du) if swap else (du, dv)
    return (y, y_alt), np.concatenate([da, db], axis=axis), cond, np.abs(v), gv_inf


def _close(got, want, tol, what, alt=None, free=None):
    got = np.asarray(got)
    gw = hp(got)
    big = WIDE(np.finfo(got.dtype).max)
    with np.errstate(all="ignore"):
        same = (np.isnan(gw) & np.isnan(want)) | (gw == want)
        if alt is not None:
            same |= (np.isnan(gw) & np.isnan(alt)) | (gw == alt)
        if free is not None:            # inf or NaN both allowed there
            same |= free & ~np.isfinite(gw)
        # an exact value beyond the largest float may round to infinity
        same |= np.isinf(gw) & (np.abs(want) >= big) & (np.sign(gw) == np.sign(want))
        err = np.abs(gw - want)
    bad = ~same & ~(err <= tol)
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {got.size} beyond the bound; first: "
                           f"got {got[bad][:4]}, exact {want[bad][:4]}, tol {tol[bad][:4]}")


def check(op, x, g, y, dx, axis=-1, what="", **kw):
    """``y`` and ``dx`` (``op``'s forward and backward of ``x``, ``g``)
    within the stated bounds: 4 ULP (glu's dL/db: 5), where the act's result
    is subnormal plus ``|v|`` times 4 of its ULPs; ``dL/du`` of geglu and
    swiglu within 4 eps |g v| (the act derivative's terms) near its zeros."""
    dt = np.asarray(x).dtype
    fi = np.finfo(dt)
    sub, eps = WIDE(fi.smallest_subnormal), WIDE(fi.eps)
    (ey, ey_alt), edx, cond, av, gv_inf = exact(op, x, g, axis, **kw)
    act, swap = GATED[op]
    n_ulp = 4
    with np.errstate(all="ignore"):
        tol_y = n_ulp * ulp_of(ey, dt) + 4 * av * sub
        _close(y, ey, tol_y, f"{what} {op} forward", ey_alt)
        tol = 4 * ulp_of(edx, dt)
        a_tol, b_tol = np.split(tol, 2, axis=axis)
        du_tol, dv_tol = (b_tol, a_tol) if swap else (a_tol, b_tol)
        gv = np.abs(hp(g)) * av
        if act == "sigmoid":
            du_tol = du_tol * 5 / 4 + 8 * gv * sub
        elif act in ("gelu", "silu"):
            du_tol = np.maximum(du_tol, 4 * eps * cond) + 8 * gv * sub
        dv_tol = dv_tol + 4 * np.abs(hp(g)) * sub
        tol = np.concatenate([dv_tol, du_tol] if swap else [du_tol, dv_tol], axis=axis)
    # where g v overflows (an infinite v), dL/du is inf or NaN: the product
    # with a derivative that underflows, or its limit (the act's convention)
    free = np.zeros(edx.shape, bool)
    fa, fb_ = np.split(free, 2, axis=axis)
    (fb_ if swap else fa)[...] = gv_inf
    _close(dx, edx, tol, f"{what} {op} backward", free=free)
