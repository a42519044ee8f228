"""``out=``: validation, in place, partial overlap, non-contiguous targets."""
import numpy as np
import pytest

import fastact
from conftest import ALL_CALLS, SINGLE_OUTPUT_CALLS, assert_bitwise_equal


def assert_same(name, got, want):
    """Bit-exact, except softmax rows, whose summation order may legitimately change
    when out aliases an input (the vectorizer's runtime alias checks): 2 ULP there."""
    if name.startswith(("softmax", "log_softmax")):
        np.testing.assert_array_max_ulp(got, want, 2)
    else:
        assert_bitwise_equal(got, want)


NAMES = sorted(SINGLE_OUTPUT_CALLS)


def _args(name, dtype, shape=(4, 6), seed=0):
    fn, nargs = ALL_CALLS[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    if nargs == 1:
        return fn, [x]
    s = x
    if name in ("sigmoid_backward", "softmax_backward"):
        s = rng.uniform(0, 1, shape).astype(dtype)
    return fn, [rng.standard_normal(shape).astype(dtype), s]


@pytest.mark.parametrize("name", NAMES)
def test_out_is_written_and_returned(host_backend, dtype, name):
    fn, args = _args(name, dtype)
    want = fn(*args, backend=host_backend)
    out = np.full(want.shape, np.nan, dtype)
    res = fn(*args, out=out, backend=host_backend)
    assert res is out
    assert_same(name, out, want)


@pytest.mark.parametrize("name", NAMES)
def test_out_wrong_shape_dtype_readonly_type(name):
    fn, args = _args(name, np.float64)
    with pytest.raises(ValueError, match=r"out has shape \(6, 4\), expected \(4, 6\)"):
        fn(*args, out=np.empty((6, 4)))
    with pytest.raises(ValueError, match="out has shape"):
        fn(*args, out=np.empty(24))
    with pytest.raises(TypeError, match="out has dtype float32, expected float64"):
        fn(*args, out=np.empty((4, 6), np.float32))
    with pytest.raises(TypeError, match="out has dtype"):
        fn(*args, out=np.empty((4, 6), np.int64))
    ro = np.empty((4, 6))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        fn(*args, out=ro)
    with pytest.raises(ValueError, match="read-only"):
        fn(*args, out=np.broadcast_to(np.empty(6), (4, 6)))
    with pytest.raises(TypeError, match="numpy.ndarray, not list"):
        fn(*args, out=[[0.0] * 6] * 4)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        fn(*args, out=memoryview(np.empty((4, 6))))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("which", [0, -1])
def test_out_in_place(host_backend, dtype, name, which):
    fn, args = _args(name, dtype, seed=1)
    want = fn(*[a.copy() for a in args], backend=host_backend)
    target = args[which]
    res = fn(*args, out=target, backend=host_backend)
    assert res is target
    assert_same(name, target, want)


#: a sample of the kernel skeletons (elementwise unary and binary, the
#: softmax family's rows): each in-place case compiles a worker of its own
POOL_IN_PLACE = ["gelu", "gelu_backward", "softmax", "softmax_backward", "log_softmax"]


@pytest.mark.parametrize("name", POOL_IN_PLACE)
@pytest.mark.parametrize("which", [0, -1])
def test_out_in_place_on_the_pool(name, which, restore_threads):
    """Arrays big enough for the parallel kernels: an in-place call runs the
    pool's worker compiled for its case (numba_pool.PoolKernel's ``alias``),
    with the results of a call into another array, on one thread and two."""
    from conftest import require_backend
    require_backend("numba")
    if name == "log_softmax":          # its own forward skeleton
        fn, args = fastact.log_softmax, _args("softmax", np.float32, (256, 512), seed=11)[1]
    else:
        fn, args = _args(name, np.float32, shape=(256, 512), seed=11)
    assert args[0].size >= fastact.config.PARALLEL_MIN
    for threads in (1, 2):
        fastact.set_num_threads(threads)
        want = fn(*args, backend="numba")
        work = [a.copy() for a in args]
        assert fn(*work, out=work[which], backend="numba") is work[which]
        assert_same(name, work[which], want)


def test_prelu_in_place_on_the_pool(restore_threads):
    """PReLU's parallel kernels in place (forward out is x; backward gx is
    g, or x), long rows and short, as test_out_in_place_on_the_pool."""
    from conftest import require_backend
    require_backend("numba")
    rng = np.random.default_rng(12)
    for shape in ((8, 64, 256), (16384, 8, 1)):
        x = rng.standard_normal(shape).astype(np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        w = rng.uniform(0.05, 0.5, shape[1]).astype(np.float32)
        for threads in (1, 2):
            fastact.set_num_threads(threads)
            want = fastact.prelu(x, w, backend="numba")
            xc = x.copy()
            assert fastact.prelu(xc, w, out=xc, backend="numba") is xc
            assert_bitwise_equal(xc, want)
            gx_want, gw_want = fastact.prelu_backward(g, x, w, backend="numba")
            for k in (0, 1):
                work = [g.copy(), x.copy()]
                gx, gw = fastact.prelu_backward(*work, w, out=(work[k], None), backend="numba")
                assert gx is work[k]
                assert_bitwise_equal(gx, gx_want)
                assert_bitwise_equal(gw, gw_want)


@pytest.mark.parametrize("name", NAMES)
def test_out_in_place_non_contiguous(host_backend, dtype, name):
    fn, args = _args(name, dtype, shape=(8, 12), seed=2)
    views = [a[::2, ::-3] for a in args]
    want = fn(*[v.copy() for v in views], backend=host_backend)
    res = fn(*views, out=views[0], backend=host_backend)
    assert res is views[0]
    assert_same(name, views[0], want)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shift", [1, -1, 5])
def test_out_partial_overlap(host_backend, dtype, name, shift):
    """out and the input(s) are shifted views of one buffer."""
    fn, nargs = ALL_CALLS[name]
    n = 40
    rng = np.random.default_rng(3)
    buf = rng.uniform(0.05, 0.9, n + abs(shift) + 8).astype(dtype)
    buf[::3] *= -1
    lo = max(shift, 0)
    x = buf[lo:lo + n]
    out = buf[lo - shift:lo - shift + n]
    if nargs == 1:
        args = [x]
    else:
        args = [buf[lo + 1:lo + 1 + n], x]       # grad overlaps too
    want = fn(*[a.copy() for a in args], backend=host_backend)
    res = fn(*args, out=out, backend=host_backend)
    assert res is out
    assert_same(name, out, want)


@pytest.mark.parametrize("name", NAMES)
def test_out_partial_overlap_2d(host_backend, dtype, name):
    """A 2-d out overlapping a 2-d input with a row offset (softmax rows included)."""
    fn, nargs = ALL_CALLS[name]
    rng = np.random.default_rng(4)
    buf = rng.uniform(0.05, 0.9, 7 * 5).astype(dtype)
    buf[::2] *= -1
    x = buf[5:].reshape(6, 5)
    out = buf[:30].reshape(6, 5)
    args = [x] if nargs == 1 else [buf[:30].reshape(6, 5)[::-1], x]
    want = fn(*[a.copy() for a in args], backend=host_backend)
    res = fn(*args, out=out, backend=host_backend)
    assert res is out
    assert_same(name, out, want)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["fortran", "strided", "negative"])
def test_out_non_contiguous(host_backend, dtype, name, kind):
    fn, args = _args(name, dtype, seed=5)
    want = fn(*args, backend=host_backend)
    if kind == "fortran":
        out = np.asfortranarray(np.zeros((4, 6), dtype))
    elif kind == "strided":
        out = np.zeros((8, 12), dtype)[::2, 1::2]
    else:
        out = np.zeros((4, 6), dtype)[::-1, ::-1]
    res = fn(*args, out=out, backend=host_backend)
    assert res is out
    assert_same(name, out, want)


@pytest.mark.parametrize("name", NAMES)
def test_result_shape_dtype_and_fresh(host_backend, dtype, name):
    for shape in [(), (0,), (3,), (2, 0, 3), (2, 3, 1, 2)]:
        fn, args = _args(name, dtype, shape=shape, seed=6)
        res = fn(*args, backend=host_backend)
        assert isinstance(res, np.ndarray) and res.shape == shape and res.dtype == dtype
        assert not any(np.shares_memory(res, a) for a in args)


def test_out_axis_softmax_in_place_every_axis(host_backend, dtype):
    x = np.random.default_rng(7).standard_normal((3, 4, 5)).astype(dtype)
    for axis in (0, 1, 2, -1):
        want = fastact.softmax(x, axis=axis, backend=host_backend)
        y = x.copy()
        assert fastact.softmax(y, axis=axis, out=y, backend=host_backend) is y
        assert_same("softmax", y, want)
        g = np.random.default_rng(8).standard_normal(x.shape).astype(dtype)
        wantb = fastact.softmax_backward(g, want, axis=axis, backend=host_backend)
        assert fastact.softmax_backward(g, want, axis=axis, out=g, backend=host_backend) is g
        assert_same("softmax", g, wantb)


def test_prelu_in_place_with_weight(host_backend, dtype):
    x = np.random.default_rng(9).standard_normal((5, 3, 4)).astype(dtype)
    w = np.array([0.1, 0.2, 0.3], dtype)
    want = fastact.prelu(x, w, backend=host_backend)
    gx_want, gw_want = fastact.prelu_backward(np.ones_like(x), x, w, backend=host_backend)
    g = np.ones_like(x)
    gx, gw = fastact.prelu_backward(g, x, w, out=(g, None), backend=host_backend)
    assert gx is g
    assert_bitwise_equal(gx, gx_want)
    assert_bitwise_equal(gw, gw_want)
    assert fastact.prelu(x, w, out=x, backend=host_backend) is x
    assert_bitwise_equal(x, want)


@pytest.mark.parametrize("shift", [0, 1, -1])
def test_prelu_out_overlapping_the_weight(host_backend, dtype, shift):
    """out may share memory with the weight (a shifted view of one buffer):
    the result is as if the weight had been read first."""
    C = 37
    rng = np.random.default_rng(10)
    buf = rng.uniform(0.05, 0.5, C + 4).astype(dtype)
    w = buf[2:2 + C]
    out = buf[2 + shift:2 + shift + C].reshape(1, C)
    x = -rng.uniform(0.5, 2.0, (1, C)).astype(dtype)
    want = fastact.prelu(x, w.copy(), backend="numpy")
    assert fastact.prelu(x, w, out=out, backend=host_backend) is out
    assert_bitwise_equal(out, want)
    gbuf = rng.uniform(0.05, 0.5, C + 4).astype(dtype)
    wb = gbuf[2:2 + C]
    gout = gbuf[2 + shift:2 + shift + C].reshape(1, C)
    g = rng.standard_normal((1, C)).astype(dtype)
    gx_want, gw_want = fastact.prelu_backward(g, x, wb.copy(), backend="numpy")
    gx, gw = fastact.prelu_backward(g, x, wb, out=(gout, None), backend=host_backend)
    assert gx is gout
    assert_bitwise_equal(gx, gx_want)
    assert_bitwise_equal(gw, gw_want)
