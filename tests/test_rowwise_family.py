"""The softmax family beyond softmax (log_softmax, softmin) on every host
backend: values against independent mpmath oracles (forward within 4 ULP,
backward within the derivative's conditioning), rows that defeat a plain
sum, edge rows, in place, any axis, finite differences and PyTorch."""
import mpmath as mp
import numpy as np
import pytest

import fastact
from conftest import DTYPES, WIDE, assert_ulp, hp

FAMILY = ("log_softmax", "softmin")
mp.mp.dps = 40


def _oracle_rows(name, x):
    """The exact forward along the last axis (mpmath, then longdouble)."""
    out = np.empty(x.shape, WIDE)
    for idx in np.ndindex(x.shape[:-1]):
        row = [mp.mpf(float(v)) for v in x[idx]]
        if name == "softmin":
            row = [-v for v in row]
        m = max(row)
        s = mp.fsum(mp.e ** (v - m) for v in row)
        if name == "log_softmax":
            out[idx] = [WIDE(str(-((m - v) + mp.log(s)))) for v in row]
        else:
            out[idx] = [WIDE(str(mp.e ** (v - m) / s)) for v in row]
    return out


def _oracle_grad(name, g, y):
    gw, yw = hp(g), hp(y)
    if name == "log_softmax":
        return gw - np.exp(yw) * np.sum(gw, axis=-1, keepdims=True)
    return yw * (np.sum(gw * yw, axis=-1, keepdims=True) - gw)


def _grad_bound(name, g, y):
    """4 eps times the magnitudes of the backward's terms (its conditioning)."""
    gw, yw = hp(g), hp(y)
    eps = WIDE(np.finfo(np.asarray(y).dtype).eps)
    tiny = WIDE(np.finfo(np.asarray(y).dtype).smallest_subnormal)
    if name == "log_softmax":
        terms = np.abs(gw) + np.exp(yw) * np.sum(np.abs(gw), axis=-1, keepdims=True)
    else:
        terms = np.abs(yw) * (np.abs(gw) + np.sum(np.abs(gw * yw), axis=-1, keepdims=True))
    return 4 * eps * terms + tiny


def _rows(dtype, n=300, rows=3, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, n)) * 5).astype(dtype)
    # one large term and many tiny ones: a plain sum's rounding shows at the max
    x[0] = -40.0
    x[0, 0], x[0, 1] = 0.0, -30.0
    return x


@pytest.mark.parametrize("n", [13, 300, 4100])
@pytest.mark.parametrize("name", FAMILY)
def test_forward_within_4_ulp(host_backend, name, dtype, n):
    x = _rows(dtype, n)
    y = getattr(fastact, name)(x, backend=host_backend)
    assert y.dtype == dtype and y.shape == x.shape
    assert_ulp(y, _oracle_rows(name, x), 4, f"{name} {host_backend} {np.dtype(dtype)}")


@pytest.mark.parametrize("name", ("softmax", "softmin"))
def test_long_rows_within_4_ulp(host_backend, name, dtype):
    """Rows of 20000 spread N(0, 10**2): float64 sums in vector partial sums
    missed by 13-26 ULP (the kernels' compensated sums: 3).  Oracle in long
    double (x86: 64-bit significands; NumPy's pairwise sum), the rows'
    exponentials and sum far below float64's ULP."""
    if np.finfo(np.longdouble).nmant < 60:
        pytest.skip("long double is float64 here")
    x = np.random.default_rng(3).standard_normal((4, 20000)) * 10
    x = x.astype(dtype)
    xl = x.astype(np.longdouble) * (-1 if name == "softmin" else 1)
    e = np.exp(xl - xl.max(axis=-1, keepdims=True))
    want = e / e.sum(axis=-1, keepdims=True)
    y = getattr(fastact, name)(x, backend=host_backend)
    assert_ulp(y, want, 4, f"{name} {host_backend} {np.dtype(dtype)}")


@pytest.mark.parametrize("name", FAMILY)
def test_backward_within_the_conditioning_bound(host_backend, name, dtype):
    x = _rows(dtype, 300)
    y = getattr(fastact, name)(x, backend="numpy")
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    gx = getattr(fastact, name + "_backward")(g, y, backend=host_backend)
    err = np.abs(hp(gx) - _oracle_grad(name, g, y))
    bound = _grad_bound(name, g, y)
    assert np.all(err <= bound), float(np.max(err / bound))


@pytest.mark.parametrize("name", FAMILY)
def test_edge_rows_match_the_reference(host_backend, name, dtype):
    inf, nan = np.inf, np.nan
    x = np.array([[1.0, nan, 2.0, 0.5],            # NaN: the whole row NaN
                  [-inf, -inf, -inf, -inf],       # all -inf
                  [inf, inf, inf, inf],           # all +inf
                  [-inf, 0.0, -inf, 1.0],         # some -inf
                  [inf, 0.0, 1.0, 2.0],           # some +inf
                  [1e4, -1e4, 1e4 - 1, 0.0]], dtype)
    with np.errstate(all="ignore"):
        want = getattr(fastact, name)(x, backend="numpy")
    got = getattr(fastact, name)(x, backend=host_backend)
    assert np.array_equal(np.isnan(got), np.isnan(want)), (got, want)
    assert np.array_equal(np.isinf(got), np.isinf(want)), (got, want)
    fin = np.isfinite(want)
    assert_ulp(got[fin], hp(want[fin]), 4, f"{name} edge rows")
    if name == "log_softmax":
        assert np.isnan(got[[0, 1, 4]]).all() and np.isneginf(got[3, [0, 2]]).all()
        assert got[5, 1] < -1e4 * 1.99                    # finite where softmax is 0
    else:
        assert np.isnan(got[[0, 2]]).all() and (got[4, 0] == 0)


@pytest.mark.parametrize("name", FAMILY)
def test_in_place_and_other_axes(host_backend, name, dtype):
    x = _rows(dtype, 37, rows=5).reshape(5, 37)
    f, fb = getattr(fastact, name), getattr(fastact, name + "_backward")
    want = f(x, backend=host_backend)
    inplace = x.copy()
    assert f(inplace, out=inplace, backend=host_backend) is inplace
    np.testing.assert_array_equal(inplace, want)
    for axis in (0, -2):
        y = f(x, axis=axis, backend=host_backend)
        assert_ulp(y, np.moveaxis(_oracle_rows(name, np.moveaxis(x, axis, -1)), -1, axis), 4,
                   f"{name} axis={axis}")
        g = np.ones_like(x)
        gx = fb(g, y, axis=axis, backend=host_backend)
        ref = np.moveaxis(fb(np.moveaxis(g, axis, -1), np.moveaxis(y, axis, -1),
                             backend="numpy"), -1, axis)
        np.testing.assert_allclose(gx, ref, rtol=1e-4, atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("name", FAMILY)
def test_backward_matches_finite_differences(host_backend, name):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6))
    g = rng.standard_normal(x.shape)
    f = getattr(fastact, name)
    h, want = 1e-6, np.empty_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = h
        want[i] = np.sum(g * (f(x + d, backend=host_backend) - f(x - d, backend=host_backend))) / (2 * h)
    got = getattr(fastact, name + "_backward")(g, f(x, backend=host_backend), backend=host_backend)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ("softmax",) + FAMILY)
@pytest.mark.parametrize("dt", DTYPES, ids=["float32", "float64"])
def test_matches_torch(torch, name, dt):
    x = _rows(dt, 300)
    x[1, :5] = [-np.inf, 1e4, -1e4, 0.0, -0.0]
    g = np.random.default_rng(2).standard_normal(x.shape).astype(dt)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = getattr(torch.nn.functional, name)(xt, dim=-1)
    yt.backward(torch.from_numpy(g))
    y = getattr(fastact, name)(x)
    gx = getattr(fastact, name + "_backward")(g, y)
    # the same function and conventions: ours is held to the exact oracle
    # above; PyTorch's plain float sums lose more (17 ULP at a float32
    # softmax of 1e-10), so values agree to a relative tolerance
    ty = yt.detach().numpy()
    for what in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(what(y), what(ty))
    fin = np.isfinite(y)
    rtol = 2e-5 if dt == np.float32 else 1e-12
    # log_softmax: PyTorch's error is absolute, a few eps of the row's
    # log-sum (the registry's documented deviation: its 0 where one term
    # dominates a row, ours -log1p of the others' sum), ours is relative
    atol = 8 * np.finfo(dt).eps if name == "log_softmax" else 0
    np.testing.assert_allclose(y[fin], ty[fin], rtol=rtol, atol=atol)
    rows = np.isfinite(y).all(axis=-1)
    bound = _grad_bound(name, g[rows], y[rows])
    np.testing.assert_allclose(gx[rows], xt.grad.numpy()[rows], rtol=0,
                               atol=float(np.max(bound)) * 4)


def test_big_rows_take_the_parallel_and_streamed_kernels(fast_backend, dtype, monkeypatch):
    """Rows past the parallel threshold and outputs past the streaming one
    (lowered to 4 MiB for the test, in both backends) give the serial results."""
    from fastact import _dispatch, config
    rows, n = 2048, 1100                  # 2.2M elements: parallel, and >= 4 MiB
    monkeypatch.setattr(config, "STREAM_MIN_BYTES", 1 << 22)
    if fast_backend == "c":
        lib = _dispatch.get("c")._lib
        before = lib.fa_stream_min()
        lib.fa_set_stream_min(1 << 22)
    x = (np.random.default_rng(6).standard_normal((rows, n)) * 4).astype(dtype)
    g = np.random.default_rng(7).standard_normal((rows, n)).astype(dtype)
    assert x.size >= config.PARALLEL_MIN and x.nbytes >= config.STREAM_MIN_BYTES
    try:
        _check_big_rows(fast_backend, x, g)
    finally:
        if fast_backend == "c":
            lib.fa_set_stream_min(before)


def _check_big_rows(fast_backend, x, g):
    for name in FAMILY:
        f, fb = getattr(fastact, name), getattr(fastact, name + "_backward")
        y, gx = f(x, backend=fast_backend), None
        gx = fb(g, y, backend=fast_backend)
        small_y = np.concatenate([f(x[i:i + 8], backend=fast_backend) for i in range(0, 64, 8)])
        small_g = np.concatenate([fb(g[i:i + 8], y[i:i + 8], backend=fast_backend)
                                  for i in range(0, 64, 8)])
        np.testing.assert_array_equal(y[:64], small_y)
        np.testing.assert_array_equal(gx[:64], small_g)


@pytest.mark.parametrize("shape,axis", [((5, 40, 7), 1), ((300, 40), 0), ((3, 30, 3, 11), 1)])
def test_log_softmax_along_a_middle_axis(host_backend, dtype, shape, axis):
    """log_softmax along a non-last axis (both CPU backends: the inner-axis
    kernels, no transposes) within the last axis's bounds: columns with a
    NaN, only -inf, one term far above the rest (row [0, -30, -40, ...]),
    mixed values; in place too."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    xm = np.moveaxis(x, axis, -1)                   # a view: the columns along axis
    xm[0, ..., 1] = np.nan
    xm[1, ...] = -np.inf
    xm[2, ...] = -40.0
    xm[2, ..., 0], xm[2, ..., 1] = 0.0, -30.0
    y = fastact.log_softmax(x, axis=axis, backend=host_backend)
    fin = np.isfinite(np.moveaxis(x, axis, -1)).all(axis=-1)
    ym = np.moveaxis(y, axis, -1)
    assert np.isnan(ym[~fin]).all()                 # NaN and -inf-only columns: NaN, as PyTorch
    want = _oracle_rows("log_softmax", np.moveaxis(x, axis, -1)[fin])
    assert_ulp(ym[fin], want, 4, f"log_softmax axis={axis}")
    inplace = x.copy()
    fastact.log_softmax(inplace, axis=axis, out=inplace, backend=host_backend)
    np.testing.assert_array_equal(inplace, y)
    g = rng.standard_normal(shape).astype(dtype)
    yf = np.where(np.isfinite(y), y, -1.0).astype(dtype)
    gx = fastact.log_softmax_backward(g, yf, axis=axis, backend=host_backend)
    gm, ygm = np.moveaxis(g, axis, -1), np.moveaxis(yf, axis, -1)
    err = np.abs(hp(np.moveaxis(gx, axis, -1)) - _oracle_grad("log_softmax", gm, ygm))
    assert (err <= _grad_bound("log_softmax", gm, ygm)).all()


@pytest.mark.parametrize("name", ("softmax", "softmin", "log_softmax"))
def test_middle_axis_sums_that_overflow_stay_infinite(host_backend, dtype, name):
    """A backward whose column sum overflows gives what the last axis gives
    (+-inf, not NaN): float64's compensated sums drop the compensation once
    the sum is infinite, in the inner-axis kernels as in the row kernels."""
    big = np.finfo(dtype).max / 2
    g = np.full((9, 4), big, dtype)
    g[3] = 1.0
    y = np.full((9, 4), 0.9 if name != "log_softmax" else np.log(0.9), dtype)
    fb = getattr(fastact, name + "_backward")
    mid = fb(g, y, axis=0, backend=host_backend)
    last = fb(np.ascontiguousarray(g.T), np.ascontiguousarray(y.T), backend=host_backend).T
    assert np.isinf(last).any() and not np.isnan(last).any()
    np.testing.assert_array_equal(mid, last)


@pytest.mark.parametrize("dt", DTYPES, ids=["float32", "float64"])
def test_big_blocks_of_columns_apart_give_the_bits_of_each_column(fast_backend, dt):
    """Along axis 0 of a wide array the C backend's blocks of columns lie
    apart and outgrow L2 (c_src/kernels.inc: inner_far): each walk asks for
    the next row, the softmax computes its exponentials again rather than
    storing them, and the output is streamed.  A column's result depends on
    that column alone, so the first 256 columns give the bits of those
    columns taken alone (a block whose rows are contiguous), in place too,
    backward too; and the reference's values."""
    from conftest import assert_ulp
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((1100, 2100)) * 4).astype(dt)
    x[7, 5] = np.nan
    x[:, 6] = -np.inf
    x[:, 9] = -40.0
    x[0, 9] = 0.0
    g = rng.standard_normal(x.shape).astype(dt)
    k = 256
    for name in ("softmax", "softmin", "log_softmax"):
        f, fb = getattr(fastact, name), getattr(fastact, name + "_backward")
        y = f(x, axis=0, backend=fast_backend)
        np.testing.assert_array_equal(y[:, :k], f(np.ascontiguousarray(x[:, :k]), axis=0,
                                                  backend=fast_backend))
        inplace = x.copy()
        assert f(inplace, axis=0, out=inplace, backend=fast_backend) is inplace
        np.testing.assert_array_equal(inplace, y)
        with np.errstate(all="ignore"):
            want = f(x[:, 8:300].astype(np.float64), axis=0, backend="numpy")
        assert_ulp(y[:, 8:300], want, 4 if dt == np.float32 else 16, name)
        ys = np.where(np.isfinite(y), y, -1.0 if name == "log_softmax" else 0.5).astype(dt)
        gx = fb(g, ys, axis=0, backend=fast_backend)
        np.testing.assert_array_equal(
            gx[:, :k], fb(np.ascontiguousarray(g[:, :k]), np.ascontiguousarray(ys[:, :k]),
                          axis=0, backend=fast_backend))
        gm, ym = g[:, 10:300].T, ys[:, 10:300].T
        # _oracle_grad's non-log convention is softmin's, y (d - g)
        name_ = "softmin" if name == "softmax" else name
        sg = -1 if name == "softmax" else 1
        err = np.abs(hp(gx[:, 10:300].T) - sg * _oracle_grad(name_, gm, ym))
        assert (err <= _grad_bound(name_, gm, ym)).all(), name
