"""PReLU's weight gradient is the correctly rounded sum of its exact terms
(every host backend, every layout the kernels take apart): the NumPy
reference's math.fsum, bit for bit."""
import math

import numpy as np
import pytest

from conftest import assert_bitwise_equal, require_backend

import fastact
from fastact._backends import pair_sum, prelu_weight_terms, round_pairs
from fastact._backends.numpy_ref import exact_channel_sums

BACKENDS = ["numpy", "numba", "c"]

#: (outer, C, inner): long rows, short rows (inner 1 and a few), one channel,
#: and sizes the kernels take in parallel
SHAPES = [(64, 33, 300), (3, 5, 17), (1000, 7, 3), (5000, 64, 1), (2, 1, 100000),
          (16, 8, 8192), (1 << 15, 24, 1)]


def _fsum_rounded(g, x, dtype):
    """each channel's exact sum by math.fsum over its exact terms, rounded
    once to dtype (float32: with the sum's remainder)"""
    p, e = prelu_weight_terms(g, x)
    out = []
    for c in range(x.shape[1]):
        terms = np.concatenate([p[:, c].ravel(), e[:, c].ravel()]).tolist()
        s = math.fsum(terms)
        out.append(round_pairs(s, math.fsum(terms + [-s]), dtype))
    return np.array(out, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_data(backend, dtype):
    require_backend(backend)
    rng = np.random.default_rng(3)
    for shape in SHAPES:
        g = rng.standard_normal(shape).astype(dtype)
        x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)).astype(dtype)
        w = np.linspace(0.1, 0.3, shape[1]).astype(dtype)
        gw = fastact.prelu_backward(g, x, w, backend=backend)[1]
        assert_bitwise_equal(gw, _fsum_rounded(g, x, dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 2, 50000), (100000, 2, 1), (20000, 2, 5)])
def test_cancellation(backend, dtype, shape):
    """Large terms that cancel exactly, interleaved with terms 2**-50 of
    their size: a float64 sum loses the small ones, the double-double sums
    keep them."""
    require_backend(backend)
    rng = np.random.default_rng(5)
    outer, C, inner = shape
    m = outer * inner
    g = np.empty(shape, dtype)
    for c in range(C):
        big = rng.uniform(1, 2, m // 4) * 2.0 ** 20
        terms = np.concatenate([big, -big, rng.uniform(1, 2, m - 2 * big.size) * 2.0 ** -30])
        g[:, c, :] = rng.permutation(terms).astype(dtype).reshape(outer, inner)
    x = np.full(shape, -1.0, dtype)
    gw = fastact.prelu_backward(g, x, np.full(shape[1], 0.25, dtype), backend=backend)[1]
    want = _fsum_rounded(g, x, dtype)
    naive = np.where(x > 0, 0, g.astype(np.float64) * x).sum(axis=(0, 2)).astype(dtype)
    assert not np.array_equal(naive, want)      # the case cancels
    assert_bitwise_equal(gw, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_not_double_rounded(backend):
    """-(1 + 2**-24 + 2**-60): its float64 sum is a float32 tie (rounded to
    even, -1), its correct rounding -(1 + 2**-23)."""
    require_backend(backend)
    for inner in (3, 300):
        g = np.zeros((1, 1, inner), np.float32)
        g[0, 0, :3] = (1.0, 2.0 ** -24, 2.0 ** -60)
        x = -np.ones_like(g)
        gw = fastact.prelu_backward(g, x, np.ones(1, np.float32), backend=backend)[1]
        assert gw[0] == np.float32(-(1 + 2.0 ** -23))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_not_finite(backend, dtype):
    """inf and NaN terms: the IEEE sum (inf, or NaN for inf - inf or a NaN x)."""
    require_backend(backend)
    for vals, want in (((np.inf, 1.0), -np.inf), ((np.inf, -np.inf), np.nan),
                       ((1.0, np.nan), np.nan)):
        g = np.ones((1, 1, 40), dtype)
        g[0, 0, :2] = vals
        x = -np.ones_like(g)
        if np.isnan(vals[1]):
            g[0, 0, 1], x[0, 0, 1] = 1.0, np.nan
        gw = fastact.prelu_backward(g, x, np.ones(1, dtype), backend=backend)[1]
        assert_bitwise_equal(gw, np.array([want], dtype))


def test_reference_is_fsum():
    rng = np.random.default_rng(1)
    g, x = rng.standard_normal((50, 3, 20)), rng.standard_normal((50, 3, 20))
    assert_bitwise_equal(exact_channel_sums(g, x, np.float64), _fsum_rounded(g, x, np.float64))
    hi, lo = pair_sum(*prelu_weight_terms(g, x), 2)
    assert_bitwise_equal(round_pairs(*pair_sum(hi, lo, 0), np.float64),
                         _fsum_rounded(g, x, np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_c_round_pairs(dtype):
    """The C backend rounds its pairs itself (fa_round_pairs): bit for bit
    round_pairs, on float32 ties and near-ties (round to odd), a low part
    that moves the rounding, overflow and inf and NaN high parts."""
    require_backend("c")
    from fastact import _dispatch
    b = _dispatch.get("c")
    rng = np.random.default_rng(7)
    f32 = 1.0 + np.arange(8) * 2.0 ** -23
    hi = np.concatenate([rng.standard_normal(2000) * 10.0 ** rng.integers(-40, 40, 2000),
                         f32 + 2.0 ** -24, -(f32 + 2.0 ** -24), f32,
                         [1.0, np.finfo(np.float64).max, np.inf, -np.inf, np.nan, 0.0, -0.0,
                          2.0 ** -1074, 3.0e38, 3.5e38]])
    lo = np.concatenate([hi[:2000] * rng.uniform(-2.0 ** -53, 2.0 ** -53, 2000),
                         np.full(8, 2.0 ** -60), np.full(8, 2.0 ** -60),
                         np.full(8, -2.0 ** -80),
                         [2.0 ** -70, 2.0 ** 970, 1.0, 1.0, 0.0, 0.0, -0.0, 0.0, 1e22, 1e22]])
    pairs = np.concatenate([hi, lo])
    out = np.empty(hi.size, dtype)
    lib, ffi = b._lib, b._ffi
    assert lib.fa_round_pairs(b._dtype_ids[np.dtype(dtype).char], ffi.from_buffer("double[]", pairs),
                              hi.size, ffi.from_buffer(out, require_writable=True)) == 0
    assert_bitwise_equal(out, round_pairs(hi, lo, dtype))
    assert lib.fa_round_pairs(b._dtype_ids["e"], ffi.from_buffer("double[]", pairs), 1,
                              ffi.from_buffer(out, require_writable=True)) == -1
