"""softmax (every axis, 0-d, empty, NaN/inf rows, doctest examples), prelu
(shared and per-channel weight, axis, weight shape errors) and rrelu (random
slopes: range, seeds, backends, layouts, backward, evaluation slope)."""
import numpy as np
import pytest

import fastact
from conftest import (LAYOUTS, WIDE, assert_bitwise_equal, assert_ulp, contiguous_copy,
                      make_layout, mixed_values, oracle_softmax, oracle_softmax_backward,
                      softmax_backward_bound)


def _softmax_tol(dtype):
    return 4 if dtype == np.float32 else 16


# --- softmax ----------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -2, -3, -4])
def test_softmax_every_axis(host_backend, dtype, axis):
    x = (np.random.default_rng(0).standard_normal((3, 4, 5, 6)) * 3).astype(dtype)
    y = fastact.softmax(x, axis=axis, backend=host_backend)
    assert y.shape == x.shape and y.dtype == dtype
    assert_ulp(y, oracle_softmax(x, axis=axis), _softmax_tol(dtype), f"softmax axis={axis}")
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    gx = fastact.softmax_backward(g, y, axis=axis, backend=host_backend)
    err = np.abs(gx.astype(WIDE) - oracle_softmax_backward(g, y, axis=axis))
    assert (err <= softmax_backward_bound(g, y, axis=axis)).all()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pass_", ["forward", "backward"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_layouts(host_backend, dtype, layout, pass_, axis):
    rng = np.random.default_rng(2)
    x = make_layout(layout, rng.standard_normal(400) * 3, dtype)
    if pass_ == "forward":
        y = fastact.softmax(x, axis=axis, backend=host_backend)
        assert y.shape == x.shape and y.dtype == dtype
        assert_ulp(y, oracle_softmax(contiguous_copy(x), axis=axis), _softmax_tol(dtype), layout)
    else:
        y = make_layout(layout, rng.uniform(0, 1, 400), dtype)   # any y: the formula is linear
        g = make_layout(layout, rng.standard_normal(400), dtype)
        gx = fastact.softmax_backward(g, y, axis=axis, backend=host_backend)
        assert gx.shape == x.shape and gx.dtype == dtype
        gc, yc = contiguous_copy(g), contiguous_copy(y)
        err = np.abs(gx.astype(WIDE) - oracle_softmax_backward(gc, yc, axis=axis))
        assert (err <= softmax_backward_bound(gc, yc, axis=axis)).all()


def test_softmax_0d(host_backend, dtype):
    for axis in (0, -1):
        y = fastact.softmax(np.array(3.5, dtype), axis=axis, backend=host_backend)
        assert y.shape == () and y.dtype == dtype and y == 1
    assert np.isnan(fastact.softmax(np.array(np.nan, dtype), backend=host_backend))
    gx = fastact.softmax_backward(np.array(2.0, dtype), np.array(1.0, dtype), backend=host_backend)
    assert gx.shape == () and gx == 0


@pytest.mark.parametrize("shape,axis", [((0,), 0), ((3, 0), 1), ((3, 0), 0), ((0, 4), -1),
                                        ((2, 0, 3), 1)])
def test_softmax_empty(host_backend, dtype, shape, axis):
    x = np.empty(shape, dtype)
    y = fastact.softmax(x, axis=axis, backend=host_backend)
    assert y.shape == shape and y.dtype == dtype
    g = fastact.softmax_backward(x, x, axis=axis, backend=host_backend)
    assert g.shape == shape and g.dtype == dtype


def test_softmax_nan_and_inf_rows(host_backend, dtype, torch):
    inf, nan = np.inf, np.nan
    x = np.array([[nan, 1.0, 2.0], [-inf, -inf, -inf], [inf, 1.0, 0.0], [-inf, 0.0, 1.0],
                  [1e4, 0.0, -1e4], [inf, inf, 1.0], [0.0, 0.0, 0.0]], dtype)
    y = fastact.softmax(x, backend=host_backend)
    want = torch.softmax(torch.from_numpy(x), -1).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    assert np.isnan(y[:3]).all() and np.isnan(y[5]).all()
    np.testing.assert_allclose(y[3], [0.0, 1 / (1 + np.e), np.e / (1 + np.e)], rtol=1e-6)
    np.testing.assert_array_equal(y[4], [1.0, 0.0, 0.0])


def test_softmax_examples(host_backend):
    """The founding document's worked examples (also doctests of fastact.softmax)."""
    def r(v):
        return np.round(fastact.softmax(np.array(v), backend=host_backend), 3)
    np.testing.assert_array_equal(r([3, 0.7, 0.5]), [0.846, 0.085, 0.069])
    np.testing.assert_array_equal(r([1.2, 1, 1.5]), [0.316, 0.258, 0.426])
    np.testing.assert_array_equal(r([1.5] + [1.2] * 9), [0.13] + [0.097] * 9)


def test_softmax_doctest_present():
    doc = fastact.softmax.__doc__
    for s in ("[0.846, 0.085, 0.069]", "[0.316, 0.258, 0.426]", "[0.13 , 0.097"):
        assert s in doc


def test_softmax_axis_errors():
    x = np.zeros((2, 3))
    for bad in (2, -3, 5):
        with pytest.raises(np.exceptions.AxisError, match="axis"):
            fastact.softmax(x, axis=bad)
        with pytest.raises(np.exceptions.AxisError, match="axis"):
            fastact.softmax_backward(x, x, axis=bad)
    with pytest.raises(TypeError, match="axis must be an integer"):
        fastact.softmax(x, axis=1.0)
    with pytest.raises(TypeError, match="axis must be an integer"):
        fastact.softmax(x, axis=None)
    with pytest.raises(np.exceptions.AxisError):
        fastact.softmax(np.float64(1.0), axis=1)


# --- prelu ------------------------------------------------------------------------------

def _prelu_expected(x, w, axis):
    """Independent reference: broadcast the weight along ``axis``."""
    x = np.asarray(x)
    if w.size == 1:
        wb = w.reshape(())
    else:
        shape = [1] * x.ndim
        shape[axis] = -1
        wb = w.reshape(shape)
    with np.errstate(all="ignore"):
        return np.where(x > 0, x, wb * x).astype(x.dtype), wb


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("per_channel", [False, True])
def test_prelu_layouts(host_backend, dtype, layout, per_channel):
    pool = mixed_values(dtype, 300, seed=3)
    pool[np.abs(pool) > 1e30] = -1e30      # overflow of grad_weight: its own test below
    x = make_layout(layout, pool, dtype)
    g = make_layout(layout, np.random.default_rng(4).standard_normal(300), dtype)
    if per_channel and x.ndim < 2:
        with pytest.raises(ValueError, match="must have size 1"):
            fastact.prelu(x, np.ones(3, dtype), backend=host_backend)
        with pytest.raises(ValueError, match="must have size 1"):
            fastact.prelu_backward(g, x, np.ones(3, dtype), backend=host_backend)
        return
    C = x.shape[1] if per_channel else 1
    w = np.linspace(0.05, 0.5, C).astype(dtype)
    y = fastact.prelu(x, w, backend=host_backend)
    want, wb = _prelu_expected(contiguous_copy(x), w, 1)
    assert_bitwise_equal(y, want)
    assert_bitwise_equal(y, fastact.prelu(contiguous_copy(x), w, backend="numpy"))
    gx, gw = fastact.prelu_backward(g, x, w, backend=host_backend)
    xc, gc = contiguous_copy(x), contiguous_copy(g)
    assert_bitwise_equal(gx, np.where(xc > 0, gc, wb * gc).astype(dtype))
    assert gw.shape == w.shape and gw.dtype == dtype
    # the weight gradient, on finite data in the same layout
    xf = make_layout(layout, np.random.default_rng(5).standard_normal(300), dtype)
    _, gw = fastact.prelu_backward(g, xf, w, backend=host_backend)
    xc = contiguous_copy(xf)
    axes = tuple(i for i in range(x.ndim) if not (per_channel and i == 1))
    terms = np.where(xc > 0, 0, gc.astype(WIDE) * xc.astype(WIDE))
    exact = terms.sum(axis=axes).reshape(w.shape)
    mag = np.abs(terms).sum(axis=axes).reshape(w.shape)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    assert (np.abs(gw - exact) <= tol * mag).all(), (gw, exact)


@pytest.mark.parametrize("shape,axis", [((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), 2),
                                        ((2, 3, 4), -1), ((2, 3, 4), -3), ((5, 2), 1),
                                        ((5, 2), -2)])
def test_prelu_axis(host_backend, dtype, shape, axis):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    C = shape[axis]
    w = rng.uniform(0, 1, C).astype(dtype)
    y = fastact.prelu(x, w, axis=axis, backend=host_backend)
    want, wb = _prelu_expected(x, w, axis)
    assert_bitwise_equal(y, want)
    gx, gw = fastact.prelu_backward(g, x, w, axis=axis, backend=host_backend)
    assert_bitwise_equal(gx, np.where(x > 0, g, wb * g).astype(dtype))
    other = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    exact = np.where(x > 0, 0, g.astype(WIDE) * x).sum(axis=other)
    np.testing.assert_allclose(gw.astype(WIDE), exact, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_prelu_shared_weight_shapes(host_backend, dtype):
    """A size-1 weight of any shape is shared; grad_weight keeps that shape."""
    x = np.array([[-1.0, 2.0], [-3.0, -4.0]], dtype)
    g = np.ones_like(x)
    for w in (np.array([0.5], dtype), np.array(0.5, dtype), np.array([[0.5]], dtype)):
        y = fastact.prelu(x, w, backend=host_backend)
        np.testing.assert_array_equal(y, np.array([[-0.5, 2.0], [-1.5, -2.0]], dtype))
        gx, gw = fastact.prelu_backward(g, x, w, backend=host_backend)
        np.testing.assert_array_equal(gx, np.array([[0.5, 1.0], [0.5, 0.5]], dtype))
        assert gw.shape == w.shape and gw.dtype == dtype and gw.ravel()[0] == -8.0
    # on 0-d and 1-d inputs the shared weight works too
    assert fastact.prelu(np.array(-2.0, dtype), np.array([0.25], dtype), backend=host_backend) == -0.5
    y1 = fastact.prelu(np.array([-2.0, 3.0], dtype), np.array([0.25], dtype), backend=host_backend)
    np.testing.assert_array_equal(y1, np.array([-0.5, 3.0], dtype))


def test_prelu_mask_at_zero_and_nan(host_backend, dtype):
    """Mask x > 0 (PyTorch): at x = 0 and NaN the input gradient is w*g; NaN x poisons grad_w."""
    x = np.array([[0.0, -0.0, 1.0, -1.0]], dtype).T.copy()   # shape (4, 1)
    w = np.array([0.25], dtype)
    g = np.full_like(x, 2.0)
    gx, gw = fastact.prelu_backward(g, x, w, backend=host_backend)
    np.testing.assert_array_equal(gx.ravel(), [0.5, 0.5, 2.0, 0.5])
    assert gw[0] == -2.0
    x[0, 0] = np.nan
    gx, gw = fastact.prelu_backward(g, x, w, backend=host_backend)
    assert gx[0, 0] == 0.5 and np.isnan(gw[0])


def test_prelu_weight_grad_overflow_is_inf_without_warning(host_backend, dtype):
    """A weight gradient beyond the dtype's range is -inf (as PyTorch), with no RuntimeWarning:
    both when one term g*x overflows and when only the sum of finite terms does."""
    big = np.finfo(dtype).max
    w = np.array([0.5], dtype)
    x = np.array([[-big], [-big]], dtype)
    gx, gw = fastact.prelu_backward(np.full_like(x, 2.0), x, w, backend=host_backend)
    assert gw[0] == -np.inf, gw                       # each term overflows
    np.testing.assert_array_equal(gx, np.full_like(x, 1.0))
    x = np.array([[-big / 2], [-big / 2], [1.0]], dtype)
    gx, gw = fastact.prelu_backward(np.full_like(x, 1.5), x, w, backend=host_backend)
    assert gw[0] == -np.inf, gw                       # only the sum overflows


@pytest.mark.parametrize("shape", [(3000, 4), (500, 4, 3), (3, 4, 1000)],
                         ids=["NC", "short-rows", "long-rows"])
def test_prelu_weight_grad_of_opposite_infinities_is_nan_without_warning(host_backend,
                                                                        dtype, shape):
    """+inf and -inf terms in one channel's sum give NaN (as the reference),
    with no RuntimeWarning, in every layout (short rows are summed by
    position first), small and past the parallel threshold."""
    x = np.full(shape, -1.0, dtype)
    g = np.ones(shape, dtype)
    g[0, 1] = np.inf                      # channel 1: +inf and -inf terms
    g[-1, 1] = -np.inf
    g[1, 2] = np.inf                      # channel 2: +inf only
    w = np.full(shape[1], 0.5, dtype)
    gx, gw = fastact.prelu_backward(g, x, w, backend=host_backend)
    assert np.isnan(gw[1]) and gw[2] == -np.inf, gw
    assert np.isfinite(gw[[0, 3]]).all(), gw
    assert_bitwise_equal(gx, np.where(x > 0, g, 0.5 * g).astype(dtype))


@pytest.mark.parametrize("shape", [(4, 3), (1025, 3), (3, 5, 300), (2, 3, 70001)])
def test_prelu_float32_weight_grad_of_terms_beyond_float32(host_backend, shape):
    """Finite float32 inputs whose products g * x overflow float32 but cancel:
    the sum is taken in float64, so it is the exact 0 (the terms were
    multiplied in float32 (Numba, CUDA) or summed per position in float32
    (C short rows), giving NaN); a sum beyond float32 is inf."""
    x = np.full(shape, -1.0, np.float32)
    g = np.zeros(shape, np.float32)
    first, last = (0, 0) + (0,) * (len(shape) - 2), (shape[0] - 1, 0) + (0,) * (len(shape) - 2)
    x[first], g[first] = -3e38, 2.0                 # -6e38
    x[last], g[last] = -3e38, -2.0                  # +6e38, same channel
    x[(0, 1) + (0,) * (len(shape) - 2)], g[(0, 1) + (0,) * (len(shape) - 2)] = -3e38, -1.5
    w = np.full(shape[1], 0.25, np.float32)
    _, gw = fastact.prelu_backward(g, x, w, backend=host_backend)
    assert gw[0] == 0.0, gw
    assert gw[1] == np.inf                          # 4.5e38: beyond float32
    assert np.isfinite(gw[2:]).all() and (gw[2:] == 0).all(), gw


def test_prelu_weight_errors():
    x2 = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"weight has shape \(2,\).*\(3,\)"):
        fastact.prelu(x2, np.ones(2))
    with pytest.raises(ValueError, match=r"weight has shape \(3, 1\)"):
        fastact.prelu(x2, np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"weight has shape \(2,\)"):
        fastact.prelu_backward(x2, x2, np.ones(2))
    with pytest.raises(ValueError, match="size 1"):
        fastact.prelu(np.zeros(3), np.ones(3))      # x.ndim < 2 with a per-channel weight
    with pytest.raises(ValueError, match="size 1"):
        fastact.prelu(np.array(1.0), np.ones(2))
    with pytest.raises(ValueError, match="size 1"):
        fastact.prelu_backward(np.zeros(3), np.zeros(3), np.ones(3))
    with pytest.raises(TypeError, match="weight has dtype float64 but x has dtype float32"):
        fastact.prelu(np.zeros((2, 3), np.float32), np.ones(3))
    with pytest.raises(TypeError, match="weight has dtype float16 but x has dtype float64"):
        fastact.prelu(x2, np.ones(3, np.float16))
    with pytest.raises(TypeError, match="supported dtypes are float32 and float64"):
        fastact.prelu(x2, np.ones(3, np.complex64))
    with pytest.raises(np.exceptions.AxisError):
        fastact.prelu(x2, np.ones(3), axis=2)
    with pytest.raises(TypeError, match="out must be None or a pair"):
        fastact.prelu_backward(x2, x2, np.ones(3), out=np.zeros((2, 3)))


@pytest.mark.parametrize("weight", [np.float64(0.1), np.ones(1), [0.1]], ids=["scalar", "size1", "list"])
def test_prelu_axis_is_checked_with_a_shared_weight_too(host_backend, weight):
    """A shared weight ignores the axis, but a bad axis is still an error (it
    passed silently with a size-1 weight, on the fast path and the general one)."""
    x = np.zeros((2, 3))
    for call in (lambda a: fastact.prelu(x, weight, axis=a, backend=host_backend),
                 lambda a: fastact.prelu_backward(x, x, weight, axis=a, backend=host_backend)):
        for bad in (2, 7, -3, -9):
            with pytest.raises(np.exceptions.AxisError, match=f"axis {bad} is out of bounds"):
                call(bad)
        with pytest.raises(TypeError, match="axis must be an integer"):
            call("bogus")
        call(-1)
    fastact.prelu(np.zeros(3), weight, backend=host_backend)      # 1-D: the axis is moot


def test_prelu_byte_swapped_weight_is_used_like_x():
    x = np.array([[-1.0, 2.0, -4.0]], np.float32)
    w = np.array([0.5, 0.25, 0.125], ">f4")
    np.testing.assert_array_equal(fastact.prelu(x, w), fastact.prelu(x, w.astype(np.float32)))
    gx, gw = fastact.prelu_backward(np.ones_like(x), x, w)
    assert gw.dtype == np.float32 and gw.dtype.isnative and gw.tolist() == [-1.0, 0.0, -4.0]


def test_prelu_weight_from_python_numbers():
    x = np.array([[-1.0, 2.0]], np.float32)
    y = fastact.prelu(x, 0.5)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.array([[-0.5, 2.0]], np.float32))
    np.testing.assert_array_equal(fastact.prelu(x, [0.5, 0.25], axis=1),
                                  np.array([[-0.5, 2.0]], np.float32))


def test_prelu_backward_out_pair(host_backend, dtype):
    x = np.array([[-1.0, 2.0, -3.0]], dtype).repeat(2, axis=0)
    g = np.ones_like(x)
    w = np.array([0.1, 0.2, 0.3], dtype)
    ox, ow = np.empty_like(x), np.empty_like(w)
    gx, gw = fastact.prelu_backward(g, x, w, out=(ox, ow), backend=host_backend)
    assert gx is ox and gw is ow
    np.testing.assert_array_equal(ow, np.array([-2.0, 0.0, -6.0], dtype))
    gx2, gw2 = fastact.prelu_backward(g, x, w, out=(None, ow), backend=host_backend)
    assert gw2 is ow and gx2 is not ox
    with pytest.raises(ValueError, match=r"out\[1\] has shape"):
        fastact.prelu_backward(g, x, w, out=(None, np.empty(2, dtype)))
    with pytest.raises(ValueError, match=r"out\[0\] has shape"):
        fastact.prelu_backward(g, x, w, out=(np.empty(3, dtype), None))


def test_prelu_empty_grad_weight_is_zero(host_backend, dtype):
    x = np.empty((0, 3), dtype)
    gx, gw = fastact.prelu_backward(x, x, np.ones(3, dtype), backend=host_backend)
    assert gx.shape == (0, 3)
    np.testing.assert_array_equal(gw, np.zeros(3, dtype))


# --- rrelu ------------------------------------------------------------------------------

N_RANDOM = 1 << 16


def _slopes(dtype, seed, n=N_RANDOM, lower=1 / 8, upper=1 / 3, backend=None, x=None):
    x = -np.ones(n, dtype) if x is None else x
    return -fastact.rrelu(x, lower, upper, training=True, seed=seed, backend=backend)


def test_rrelu_slopes_in_range_and_uniform(host_backend, dtype):
    for lower, upper in ((1 / 8, 1 / 3), (0.0, 1.0), (0.2, 0.2000001), (0.5, 0.5)):
        a = _slopes(dtype, 11, lower=lower, upper=upper, backend=host_backend)
        lo, up = dtype.type(lower), dtype.type(upper)
        assert a.min() >= lo and a.max() <= up, (lower, upper, a.min(), a.max())
    a = _slopes(dtype, 12, lower=0.0, upper=1.0, backend=host_backend).astype(np.float64)
    # uniform on [0, 1): mean 1/2, var 1/12, each tenth holds a tenth
    assert abs(a.mean() - 0.5) < 0.01 and abs(a.var() - 1 / 12) < 0.005
    counts = np.histogram(a, bins=10, range=(0, 1))[0]
    assert (np.abs(counts - N_RANDOM / 10) < 0.05 * N_RANDOM / 10).all(), counts
    assert len(np.unique(a)) > 0.99 * N_RANDOM


def test_rrelu_reproducible_and_seeds_differ(host_backend, dtype):
    a1 = _slopes(dtype, 1, 1000, backend=host_backend)
    a2 = _slopes(dtype, 1, 1000, backend=host_backend)
    assert_bitwise_equal(a1, a2)
    for other in (0, 2, -1, 2**63, 12345678901234):
        b = _slopes(dtype, other, 1000, backend=host_backend)
        assert (a1 != b).mean() > 0.99, other
    # numpy integers are integers
    assert_bitwise_equal(_slopes(dtype, np.int64(1), 1000, backend=host_backend), a1)


def test_rrelu_big_seeds_do_not_alias(host_backend):
    """Any Python int is accepted as a seed, so distinct ints must give distinct streams
    (or be rejected): 1 and 2**64 + 1, -1 and 2**64 - 1 must not silently coincide."""
    dtype = np.dtype(np.float64)
    for s1, s2 in ((1, 2**64 + 1), (-1, 2**64 - 1), (5, 5 + 2**100)):
        try:
            a = _slopes(dtype, s1, 100, backend=host_backend)
            b = _slopes(dtype, s2, 100, backend=host_backend)
        except (ValueError, OverflowError):
            continue      # rejecting out-of-range seeds is fine too
        assert (a != b).mean() > 0.9, (s1, s2)


def test_rrelu_bit_identical_across_backends(fast_backend, dtype):
    a = _slopes(dtype, 2024, backend=fast_backend)
    b = _slopes(dtype, 2024, backend="numpy")
    assert_bitwise_equal(a, b)
    x = np.random.default_rng(7).standard_normal(N_RANDOM).astype(dtype)
    g = np.random.default_rng(8).standard_normal(N_RANDOM).astype(dtype)
    for fn in (lambda b: fastact.rrelu(x, training=True, seed=5, backend=b),
               lambda b: fastact.rrelu_backward(g, x, training=True, seed=5, backend=b)):
        assert_bitwise_equal(fn(fast_backend), fn("numpy"))


def test_rrelu_slope_depends_on_flat_c_index(host_backend, dtype):
    """An element's slope is a function of (seed, flat C-order index) only."""
    n = 4 * 6 * 10
    a = _slopes(dtype, 99, n, backend=host_backend)
    # any shape: the same slopes in C order
    x3 = -np.ones((4, 6, 10), dtype)
    assert_bitwise_equal(-fastact.rrelu(x3, training=True, seed=99, backend=host_backend).ravel(), a)
    # a prefix of a longer array has the same slopes
    assert_bitwise_equal(_slopes(dtype, 99, 17, backend=host_backend), a[:17])
    # non-contiguous, transposed, negative-stride and broadcast views: C order of the view
    base = -np.ones((8, 6, 20), dtype)
    for v in (base[::2, :, ::2], np.asfortranarray(x3), x3.transpose(2, 0, 1)[::-1],
              np.broadcast_to(-np.ones(10, dtype), (4, 6, 10))):
        got = -fastact.rrelu(v, training=True, seed=99, backend=host_backend)
        assert_bitwise_equal(got.ravel(), a[:v.size])
        gb = fastact.rrelu_backward(np.ones(v.shape, dtype), v, training=True, seed=99,
                                    backend=host_backend)
        assert_bitwise_equal(gb.ravel(), a[:v.size])


def test_rrelu_float32_draws_agree_past_2_32_elements():
    """The float32 generator's three compiled forms (Numba's 32-bit IR, the
    masked uint64 Python of the CUDA target, NumPy's reference) agree with
    fastact._rng.hash24 on indices no test array reaches: the index's high
    half must take part, or arrays of 2**32 elements and more would repeat."""
    import numba
    from fastact import _prims, _registry, _rng

    key = int(_rng.seed_key(99))
    idx = [0, 1, 12345, 2**32 - 1, 2**32, 2**32 + 1, 2**32 + 12345, 2**40 + 3,
           2**63 + 12345, 2**64 - 1]
    want = [_rng.hash24(i, key) for i in idx]
    assert want[2] != want[6] and want[1] != want[5]      # the high half matters
    cpu = _prims.cpu_prims(np.float32).hash24

    @numba.njit
    def numba_hash(i, k):
        return cpu(i, k)

    py = _prims.math_prims(np.float32).hash24
    for i, w in zip(idx, want):
        assert numba_hash(np.uint64(i), np.uint64(key)) == w, i
        assert py(np.uint64(i), np.uint64(key)) == w, i
    # the reference's first draws are the documented function's
    ref = _registry.reference_rrelu_slopes(5, key, 0.0, 1.0, np.float32)
    assert_bitwise_equal(ref, np.array([_rng.hash24(i, key) * 2.0**-24 for i in range(5)],
                                       np.float32))
    # the narrow dtypes draw float32's slopes: asked for float16's, a TypeError
    # (it was a 53-bit draw cast to float16: inf times 2**-53, NaN slopes)
    with pytest.raises(TypeError, match="float16"):
        _registry.reference_rrelu_slopes(5, key, 0.0, 1.0, np.float16)


def test_rrelu_backward_uses_forward_slopes(host_backend, dtype):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((7, 9)).astype(dtype)
    x[0, :3] = [0.0, -0.0, np.nan]
    y = fastact.rrelu(x, 0.1, 0.4, training=True, seed=42, backend=host_backend)
    gx = fastact.rrelu_backward(np.ones_like(x), x, 0.1, 0.4, training=True, seed=42,
                                backend=host_backend)
    neg = x < 0
    assert_bitwise_equal(gx[neg] * x[neg], y[neg])          # y = a x, a = dy/dx
    assert (gx[x > 0] == 1).all()
    a = _slopes(dtype, 42, x.size, 0.1, 0.4, backend=host_backend).reshape(x.shape)
    assert gx[0, 0] == a[0, 0] and gx[0, 1] == a[0, 1]      # f'(0) = a
    assert gx[0, 2] == a[0, 2]                               # NaN input: a g (like leaky_relu)


def test_rrelu_eval_slope_is_mean(host_backend, dtype):
    x = np.array([-1.0, -4.0, 2.0, 0.0, np.nan], dtype)
    for lower, upper in ((1 / 8, 1 / 3), (0.1, 0.3), (0.0, 0.0)):
        a = dtype.type((lower + upper) / 2)
        y = fastact.rrelu(x, lower, upper, backend=host_backend)
        assert_bitwise_equal(y, np.array([-a, -4 * a, 2.0, 0.0, np.nan], dtype))
        gx = fastact.rrelu_backward(np.ones_like(x), x, lower, upper, backend=host_backend)
        assert_bitwise_equal(gx, np.array([a, a, 1.0, a, a], dtype))
    # defaults: lower=1/8, upper=1/3, training=False
    y = fastact.rrelu(np.array([-1.0]), backend=host_backend)
    assert y[0] == -(1 / 8 + 1 / 3) / 2
    # a seed in evaluation is refused: a forgotten training=True would
    # otherwise give the evaluation slope silently
    with pytest.raises(ValueError, match="training=False"):
        fastact.rrelu(x, seed=3, backend=host_backend)
    with pytest.raises(ValueError, match="training=False"):
        fastact.rrelu_backward(np.ones_like(x), x, seed=3, backend=host_backend)


@pytest.mark.parametrize("seed", [None, 1.5, "3", True, np.float64(2.0)])
def test_rrelu_training_needs_integer_seed(seed):
    x = np.array([-1.0, 1.0])
    with pytest.raises(ValueError, match="seed") as e:
        fastact.rrelu(x, training=True, seed=seed)
    msg = str(e.value)
    assert "integer" in msg and "backward" in msg      # says why
    with pytest.raises(ValueError, match="integer seed"):
        fastact.rrelu_backward(x, x, training=True, seed=seed)


def test_rrelu_parameter_errors():
    x = np.array([-1.0])
    with pytest.raises(ValueError, match="lower .* must not exceed upper"):
        fastact.rrelu(x, 0.5, 0.1)
    with pytest.raises(ValueError, match="must not exceed"):
        fastact.rrelu_backward(x, x, 0.5, 0.1, training=True, seed=1)
    with pytest.raises(TypeError, match="lower must be a real number"):
        fastact.rrelu(x, "0.1", 0.3)
    with pytest.raises(TypeError, match="upper must be a real number"):
        fastact.rrelu(x, 0.1, None)


@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 33, 100, 1000])
def test_softmax_special_values_at_every_position(host_backend, dtype, n, torch):
    """NaN (either sign), +-inf, huge and subnormal values anywhere in rows of every length
    (scalar tails and vector lanes alike) behave as PyTorch: NaN rows, exact 0/1 splits."""
    fi = np.finfo(dtype)
    base = (np.linspace(-1, 1, n) * 0.5).astype(dtype)
    neg_nan = -np.abs(np.array(np.nan, dtype))
    assert np.signbit(neg_nan)
    rows = []
    for pos in sorted({0, n // 2, n - 1}):
        for v in (np.nan, neg_nan, np.inf, -np.inf, fi.max, -fi.max, fi.smallest_subnormal):
            r = base.copy()
            r[pos] = v
            rows.append(r)
    rows += [np.full(n, -np.inf, dtype), np.full(n, np.inf, dtype), np.full(n, fi.max, dtype),
             np.full(n, -fi.max, dtype), np.zeros(n, dtype), np.full(n, -0.0, dtype)]
    x = np.array(rows, dtype)
    y = fastact.softmax(x, backend=host_backend)
    want = torch.softmax(torch.from_numpy(x.astype(np.float64)), -1).numpy().astype(dtype)
    bad = np.isnan(y) != np.isnan(want)
    assert not bad.any(), (x[bad.any(axis=1)][:3], y[bad.any(axis=1)][:3])
    fin = ~np.isnan(want)
    np.testing.assert_allclose(y[fin], want[fin], rtol=8 * fi.eps, atol=2 * float(fi.smallest_subnormal))
    # exact splits where the answer is exact
    assert_ulp(y[~np.isnan(y).any(axis=1)], oracle_softmax(x[~np.isnan(y).any(axis=1)]),
               4 if dtype == np.float32 else 16, "special rows")


def test_softmax_extreme_rows(host_backend, dtype):
    fi = np.finfo(dtype)
    big, tiny = fi.max, fi.smallest_subnormal
    cases = [([big, -big], [1, 0]), ([-big, big], [0, 1]), ([big, big], [0.5, 0.5]),
             ([-big, -big], [0.5, 0.5]), ([tiny, -tiny], [0.5, 0.5]), ([big, 0.0, -big], [1, 0, 0]),
             ([1e4, -1e4], [1, 0]), ([-np.inf, 0.0], [0, 1]), ([-np.inf, -big], [0, 1])]
    for row, want in cases:
        y = fastact.softmax(np.array(row, dtype), backend=host_backend)
        np.testing.assert_array_equal(y, np.array(want, dtype), err_msg=str(row))
