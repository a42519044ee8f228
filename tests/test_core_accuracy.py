"""Accuracy bounds of the spec, over the whole input range, against
high-precision oracles written in the tests (conftest)."""
import pathlib
import sys

import numpy as np
import pytest

import fastact
from fastact._prims import streaming_supported
from conftest import (assert_ulp, oracle_elu, oracle_elu_backward, oracle_sigmoid,
                      oracle_sigmoid_backward, oracle_softmax, oracle_softmax_backward,
                      softmax_backward_bound, ulp_errors, WIDE)
from early import EarlyProcess


def whole_range(dtype, n=4000):
    """Both signs, every binade from the smallest subnormal to the largest
    finite value, plus dense grids where the functions bend and where their
    results become subnormal."""
    dt = np.dtype(dtype)
    fi = np.finfo(dt)
    lo, hi = np.log10(float(fi.smallest_subnormal)), np.log10(float(fi.max))
    with np.errstate(over="ignore"):
        mags = np.logspace(lo, hi, n)[:-1]     # the last one may round past max
    rng = np.random.default_rng(0)
    sub_lim = 110.0 if dt == np.float32 else 750.0     # sigmoid/exp results go subnormal here
    parts = [mags, -mags, np.linspace(-sub_lim, 40, 4 * n), rng.uniform(-20, 20, n),
             rng.uniform(-1e-3, 1e-3, n), [0.0, -0.0, fi.max, -fi.max, fi.tiny, -fi.tiny]]
    with np.errstate(over="ignore"):
        return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]).astype(dt)


def test_whole_range_reaches_subnormal_results(dtype):
    """The grid must exercise results in the subnormal range (else the bound is untested)."""
    y = oracle_sigmoid(whole_range(dtype)).astype(dtype)
    tiny = np.finfo(dtype).tiny
    assert ((y > 0) & (y < tiny)).sum() > 100


def test_sigmoid_4ulp(host_backend, dtype):
    x = whole_range(dtype)
    assert_ulp(fastact.sigmoid(x, backend=host_backend), oracle_sigmoid(x), 4, "sigmoid")


def test_sigmoid_backward_4ulp(host_backend, dtype):
    x = whole_range(dtype)
    y = oracle_sigmoid(x).astype(dtype)
    g = np.random.default_rng(1).uniform(-4, 4, x.size).astype(dtype)
    got = fastact.sigmoid_backward(g, y, backend=host_backend)
    assert_ulp(got, oracle_sigmoid_backward(g, y), 4, "sigmoid_backward")
    got1 = fastact.sigmoid_backward(np.ones_like(y), y, backend=host_backend)
    assert_ulp(got1, oracle_sigmoid_backward(np.ones_like(y), y), 4, "sigmoid_backward g=1")


@pytest.mark.parametrize("alpha", [1.0, 0.7, 3.0])
def test_elu_4ulp(host_backend, dtype, alpha):
    x = whole_range(dtype)
    assert_ulp(fastact.elu(x, alpha, backend=host_backend), oracle_elu(x, alpha), 4, "elu")


@pytest.mark.parametrize("alpha", [1.0, 0.7, 3.0])
def test_elu_backward_4ulp(host_backend, dtype, alpha):
    x = whole_range(dtype)
    g = np.random.default_rng(2).uniform(-4, 4, x.size).astype(dtype)
    got = fastact.elu_backward(g, x, alpha, backend=host_backend)
    assert_ulp(got, oracle_elu_backward(g, x, alpha), 4, "elu_backward")
    one = np.ones_like(x)
    got1 = fastact.elu_backward(one, x, alpha, backend=host_backend)
    assert_ulp(got1, oracle_elu_backward(one, x, alpha), 4, "elu_backward g=1")


# --- softmax ------------------------------------------------------------------------

def _softmax_rows(dtype, seed=0):
    """Rows of many kinds: normal values, wide ranges, values 1e4 apart, long rows,
    rows whose results go subnormal, constant rows."""
    rng = np.random.default_rng(seed)
    rows = [rng.standard_normal(1000), rng.standard_normal(1000) * 30,
            rng.uniform(-100, 0, 300), np.array([1e4, 0.0, -1e4, 5.0]),
            np.full(17, 2.5), rng.standard_normal(3) * 1e3, np.array([0.0, -90.0, -100.0, -110.0]),
            np.array([0.0, -700.0, -730.0, -744.0]), np.array([7.0]),
            rng.standard_normal(4097)]
    return [r.astype(dtype) for r in rows]


def test_softmax_float32_4ulp(host_backend):
    for r in _softmax_rows(np.float32):
        got = fastact.softmax(r, backend=host_backend)
        assert_ulp(got, oracle_softmax(r), 4, f"softmax float32 row of {r.size}")


def test_softmax_float32_4ulp_2d_rows(host_backend):
    x = np.random.default_rng(3).standard_normal((64, 129)).astype(np.float32) * 8
    for axis in (0, 1, -1, -2):
        got = fastact.softmax(x, axis=axis, backend=host_backend)
        assert_ulp(got, oracle_softmax(x, axis=axis), 4, f"softmax float32 axis={axis}")


@pytest.mark.parametrize("rows,n,scale", [(32, 1000, 1.0), (32, 1000, 3.0), (3, 12000, 3.0),
                                          (200, 17, 10.0)])
def test_softmax_float64_no_worse_than_torch(host_backend, torch, rows, n, scale):
    """On rows of 1000 normal values torch is ~20 ULP off in float64; we must not be worse."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((rows, n)) * scale
    exact = oracle_softmax(x)
    ours = ulp_errors(fastact.softmax(x, backend=host_backend), exact)
    theirs = ulp_errors(torch.softmax(torch.from_numpy(x), -1).numpy(), exact)
    assert ours.max() <= max(theirs.max(), 1), (float(ours.max()), float(theirs.max()))
    assert ours.mean() <= max(theirs.mean(), 0.5), (float(ours.mean()), float(theirs.mean()))


def test_softmax_float64_absolute(host_backend):
    """Independent of torch: rows of normal values stay within 20 ULP."""
    for r in _softmax_rows(np.float64):
        if np.ptp(r) > 100:
            continue   # x - max rounds in float64: error grows with |x - max| (torch alike)
        assert_ulp(fastact.softmax(r, backend=host_backend), oracle_softmax(r), 20,
                   f"softmax float64 row of {r.size}")


def test_softmax_backward_bound(host_backend, dtype):
    """Within 4 eps |y| (|g| + sum |g y|).  Long rows need a compensated
    float64 dot product: plain vector partial sums (rows of 4096) and runs of
    256 compensated only between them (rows of 256) exceeded the bound by up
    to 1.4x in float64."""
    rng = np.random.default_rng(5)
    for n, rows in ((1, 8), (2, 8), (7, 8), (16, 8), (33, 8), (1000, 8), (256, 4096),
                    (4096, 256)):
        x = (rng.standard_normal((rows, n)) * 4).astype(dtype)
        y = oracle_softmax(x).astype(dtype)
        g = (rng.standard_normal((rows, n)) * 4).astype(dtype)
        g[0] = 1.0   # g constant along a row: exact result 0, maximal cancellation
        got = fastact.softmax_backward(g, y, backend=host_backend)
        exact = oracle_softmax_backward(g, y)
        err = np.abs(got.astype(WIDE) - exact)
        bound = softmax_backward_bound(g, y)
        assert (err <= bound).all(), (n, float(np.max(err / bound)))


def test_softmax_rows_sum_to_one(host_backend, dtype):
    x = np.random.default_rng(6).standard_normal((10, 300)).astype(dtype) * 5
    s = fastact.softmax(x, backend=host_backend).astype(np.float64).sum(axis=-1)
    np.testing.assert_allclose(s, 1.0, rtol=300 * np.finfo(dtype).eps)


# --- prelu weight gradient --------------------------------------------------------------

@pytest.mark.parametrize("shape,axis", [((4096, 3), 1), ((5, 3, 2000), 1), ((3, 7, 11), -1),
                                        ((20000,), 0),
                                        # short rows past the parallel threshold
                                        ((30000, 3), 1), ((9000, 4, 3), 1)])
def test_prelu_weight_grad_sum(host_backend, dtype, shape, axis):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * rng.choice([1e-3, 1.0, 1e3], shape)).astype(dtype)
    g = (rng.standard_normal(shape) * 10).astype(dtype)
    C = shape[axis] if len(shape) > 1 else 1
    w = rng.uniform(0.05, 0.3, C).astype(dtype)
    gx, gw = fastact.prelu_backward(g, x, w, axis=axis, backend=host_backend)
    assert gw.shape == w.shape and gw.dtype == dtype
    np.testing.assert_array_equal(gx, fastact.prelu_backward(g, x, w, axis=axis,
                                                             backend="numpy")[0])
    xm = np.moveaxis(x.astype(WIDE), axis, -1).reshape(-1, C)
    gm = np.moveaxis(g.astype(WIDE), axis, -1).reshape(-1, C)
    terms = np.where(xm > 0, 0, gm * xm)
    exact, mag = terms.sum(axis=0), np.abs(terms).sum(axis=0)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    err = np.abs(gw.astype(WIDE) - exact)
    assert (err <= tol * mag).all(), err / mag


@pytest.mark.parametrize("alpha", [1.0, 0.7, 3.0])
def test_elu_backward_huge_gradients(host_backend, dtype, alpha):
    """g * alpha * exp(x) with g near the largest float: no spurious overflow where the
    product is finite, and no nonzero result where exp(x) underflows far below it."""
    fi = np.finfo(dtype)
    x = whole_range(dtype, 500)
    x = x[x <= 0]
    for gv in (fi.max, -fi.max, fi.max / 3):
        g = np.full_like(x, gv)
        got = fastact.elu_backward(g, x, alpha, backend=host_backend)
        assert_ulp(got, oracle_elu_backward(g, x, alpha), 4, f"elu_backward g={gv:g}")


HERE = pathlib.Path(__file__).resolve().parent
#: the accuracy tests of the exponential kernels, and the extreme products
#: of elu_backward, in a process that compiles for Haswell (AVX2)
HASWELL = EarlyProcess(
    "accuracy tests compiled for haswell",
    [sys.executable, "-c", "import fastact._prims as p, sys; assert not p._has_scalef(); "
     "import pytest; sys.exit(pytest.main(sys.argv[1:]))",
     "-q", "-p", "no:cacheprovider", "-x", HERE / "test_core_accuracy.py",
     HERE / "test_core_values.py",
     "-k", "numba and (sigmoid_4ulp or elu_4ulp or elu_backward_4ulp or extreme_products "
           "or softmax)"],
    env={"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": None}, cwd=HERE, own_cache=True)


@pytest.mark.skipif(not streaming_supported(), reason="the Haswell target is x86-64")
@pytest.mark.early(HASWELL)
def test_numba_kernels_without_avx512_scalef():
    """Where AVX-512 is missing, the exponentials scale by 2**n with factors
    built from bits instead of ``vscalef``: the accuracy tests of the
    exponential kernels, and the extreme products of elu_backward, run again
    in a process that compiles for Haswell (AVX2).  Skipped off x86-64."""
    run = HASWELL.result()
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert " passed" in run.stdout
