"""Accuracy bounds of the catalogue's exponential family over the whole input
range (every binade of both signs, dense grids where the functions bend and
where their results go subnormal), on every host backend, against the
high-precision oracles of tests/oracles_exponential.py: forward within 4 ULP,
backward within 4 ULP or, for SiLU and Mish, within the "cond" bound near
their derivative's zero (conftest.Op.check)."""
import numpy as np
import pytest

from conftest import OPS_BY_ID, WIDE, hp, ulp_of
from test_core_accuracy import whole_range

FAMILY = ["silu", "tanh", "selu", "celu", "celu_alpha0.5", "celu_alpha3", "celu_alpha0.7",
          "mish", "tanhshrink"]


def _grid(dtype):
    x = whole_range(dtype)
    dt = np.dtype(dtype)
    # where x e^x (SiLU, Mish) and e^x (SELU, CELU backward) go subnormal,
    # and the region of tanhshrink's polynomial and of the derivatives' zeros
    lo = -110.0 if dt == np.float32 else -750.0
    # and where tanhshrink's x**3 / 3 is subnormal
    t0, t1 = (-15.5, -12.3) if dt == np.float32 else (-108.5, -102.4)
    t = np.logspace(t0, t1, 500)
    extra = [np.linspace(lo, lo + 25, 6000), np.linspace(-2, 2, 6000),
             np.linspace(-1.01, 1.01, 2000), t, -t]
    return np.concatenate([x] + [e.astype(dt) for e in extra])


@pytest.mark.parametrize("op", FAMILY)
def test_forward_whole_range(host_backend, dtype, op):
    o = OPS_BY_ID[op]
    x = _grid(dtype)
    o.check("forward", o.fwd(x, backend=host_backend), (x,), f"{op} forward {dtype}")


@pytest.mark.parametrize("op", FAMILY)
def test_backward_whole_range(host_backend, dtype, op):
    o = OPS_BY_ID[op]
    x = _grid(dtype)
    with np.errstate(over="ignore"):
        s = x if o.saves == "x" else o.oracle_fwd(x).astype(dtype)
    rng = np.random.default_rng(3)
    for g in (rng.uniform(-4, 4, x.size).astype(dtype), np.ones_like(x)):
        got = o.bwd(g, s, backend=host_backend)
        o.check("backward", got, (g, s), f"{op} backward {dtype}")


def test_grid_reaches_subnormal_results(dtype):
    """The grid must give subnormal results for the ops that have them."""
    x = _grid(dtype)
    tiny = np.finfo(dtype).tiny
    for op in ("silu", "mish", "tanhshrink", "selu"):
        with np.errstate(over="ignore"):
            y = np.abs(OPS_BY_ID[op].oracle_fwd(x)).astype(dtype)
        assert ((y > 0) & (y < tiny)).sum() > 100, op


@pytest.mark.parametrize("op", ["selu", "celu", "celu_alpha3", "silu", "mish"])
def test_backward_huge_gradients(host_backend, dtype, op):
    """g near the largest float: no spurious overflow where the product is
    finite, no nonzero result where it underflows, 4 ULP (or the cond bound)."""
    o = OPS_BY_ID[op]
    fi = np.finfo(dtype)
    x = whole_range(dtype, 500)
    # float64 SiLU and Mish give 0 below exp_mul's clamp -1460, where g e^x |x|
    # is a few subnormal ULPs down to -1461.6 for g near the largest float
    # (documented)
    bad = (x < -1460) & (x > -1462) if dtype == np.float64 and op in ("silu", "mish") \
        else np.zeros(x.shape, bool)
    x = x[(x <= 0) & (x > -1e4) & ~bad]
    for gv in (fi.max, -fi.max, fi.max / 3):
        g = np.full_like(x, gv)
        with np.errstate(over="ignore"):
            got = o.bwd(g, x, backend=host_backend)
        o.check("backward", got, (g, x), f"{op} backward g={gv:g}")


def test_celu_float32_alpha_not_a_float32(host_backend):
    """alpha = 0.7 is not a float32: x / alpha is taken with the caller's
    alpha (float32 kernels add back what float32(alpha) drops), so
    exp(x / alpha) keeps 4 ULP far left, where |x / alpha| amplifies."""
    x = np.linspace(-60, -1, 5000).astype(np.float32)
    g = np.ones_like(x)
    import fastact
    got = fastact.celu_backward(g, x, 0.7, backend=host_backend)
    exact = np.exp(hp(x) / WIDE(0.7))
    err = np.abs(hp(got) - exact) / ulp_of(exact, np.float32)
    assert err.max() <= 4, float(err.max())
