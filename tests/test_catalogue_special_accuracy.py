"""Accuracy bounds of the special family (softplus, logsigmoid) over the
whole input range, every host backend, against the oracles of
tests/oracles_special.py."""
import numpy as np
import pytest

import fastact
from conftest import assert_ulp
from oracles_special import logsigmoid, logsigmoid_backward, softplus, softplus_backward
from test_core_accuracy import whole_range

SOFTPLUS_PARAMS = [dict(), dict(beta=2.0, threshold=10.0), dict(beta=0.7, threshold=np.inf),
                   dict(beta=3.1, threshold=np.inf), dict(beta=1e-3, threshold=np.inf),
                   dict(beta=250.0)]


def _grid(dtype, beta=1.0):
    """whole_range, plus a dense grid where beta * x makes results subnormal."""
    dt = np.dtype(dtype)
    sub = 110.0 if dt == np.float32 else 750.0
    extra = np.linspace(-sub / beta, sub / beta, 20000)
    return np.concatenate([whole_range(dt), extra.astype(dt)])


def _gradients(x, seed):
    return np.random.default_rng(seed).uniform(-4, 4, x.size).astype(x.dtype)


@pytest.mark.parametrize("kw", SOFTPLUS_PARAMS, ids=str)
def test_softplus_4ulp(host_backend, dtype, kw):
    x = _grid(dtype, kw.get("beta", 1.0))
    got = fastact.softplus(x, **kw, backend=host_backend)
    assert_ulp(got, softplus(x, **kw), 4, f"softplus {kw}")


@pytest.mark.parametrize("kw", SOFTPLUS_PARAMS, ids=str)
def test_softplus_backward_4ulp(host_backend, dtype, kw):
    x = _grid(dtype, kw.get("beta", 1.0))
    for g in (_gradients(x, 1), np.ones_like(x)):
        got = fastact.softplus_backward(g, x, **kw, backend=host_backend)
        assert_ulp(got, softplus_backward(g, x, **kw), 4, f"softplus_backward {kw}")


def test_logsigmoid_4ulp(host_backend, dtype):
    x = _grid(dtype)
    assert_ulp(fastact.logsigmoid(x, backend=host_backend), logsigmoid(x), 4, "logsigmoid")


def test_logsigmoid_backward_4ulp(host_backend, dtype):
    x = _grid(dtype)
    for g in (_gradients(x, 2), np.ones_like(x)):
        got = fastact.logsigmoid_backward(g, x, backend=host_backend)
        assert_ulp(got, logsigmoid_backward(g, x), 4, "logsigmoid_backward")


def test_grid_reaches_subnormal_results(dtype):
    x = _grid(dtype)
    y = np.abs(logsigmoid(x).astype(dtype))
    tiny = np.finfo(dtype).tiny
    assert ((y > 0) & (y < tiny)).sum() > 100


# --- gelu ------------------------------------------------------------------------------

from conftest import WIDE, hp, ulp_of  # noqa: E402
from oracles_special import gelu, gelu_backward, gelu_terms  # noqa: E402


def _gelu_grid(dtype):
    """Both signs over the whole range (coarser than whole_range: the oracle is
    mpmath), dense where the results go subnormal and around the derivative's
    zero near -0.75."""
    dt = np.dtype(dtype)
    fi = np.finfo(dt)
    lo, hi = np.log10(float(fi.smallest_subnormal)), np.log10(float(fi.max))
    with np.errstate(over="ignore"):
        mags = np.logspace(lo, hi, 600)[:-1]
    tail = 16.0 if dt == np.float32 else 40.0
    rng = np.random.default_rng(3)
    parts = [mags, -mags, np.linspace(-tail, 6, 6000), rng.uniform(-1.2, -0.3, 1000),
             rng.uniform(-1e-3, 1e-3, 200), [0.0, -0.0, fi.max, -fi.max, fi.tiny, -fi.tiny]]
    with np.errstate(over="ignore"):
        return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]).astype(dt)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_4ulp(host_backend, dtype, approximate):
    x = _gelu_grid(dtype)
    got = fastact.gelu(x, approximate=approximate, backend=host_backend)
    assert_ulp(got, gelu(x, approximate), 4, f"gelu {approximate}")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_backward_cond(host_backend, dtype, approximate):
    """Within 4 eps |g| (sum of the terms' magnitudes), or 4 ULP."""
    x = _gelu_grid(dtype)
    fi = np.finfo(dtype)
    terms = gelu_terms(x, approximate)
    for g in (_gradients(x, 4), np.ones_like(x)):
        got = fastact.gelu_backward(g, x, approximate=approximate, backend=host_backend)
        exact = gelu_backward(g, x, approximate)
        with np.errstate(all="ignore"):
            err = np.abs(hp(got) - exact)
            tol = np.maximum(4 * WIDE(fi.eps) * np.abs(hp(g)) * terms
                             + WIDE(fi.smallest_subnormal), 4 * ulp_of(exact, dtype))
        same = (np.isnan(hp(got)) & np.isnan(exact)) | (hp(got) == exact)
        bad = ~same & ~(err <= tol)
        assert not bad.any(), (f"gelu_backward {approximate}: {int(bad.sum())} beyond the bound;"
                               f" first at x = {x[bad][:3]}: got {got[bad][:3]}, "
                               f"exact {exact[bad][:3]}, ratio {(err / tol)[bad][:3]}")


def test_gelu_grid_reaches_subnormal_results(dtype):
    x = _gelu_grid(dtype)
    y = np.abs(np.asarray(gelu(x), dtype=np.float64).astype(dtype))
    assert ((y > 0) & (y < np.finfo(dtype).tiny)).sum() > 20
