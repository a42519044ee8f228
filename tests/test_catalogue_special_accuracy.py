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
