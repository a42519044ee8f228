"""Elementwise ops, forward and backward, on every backend, dtype and layout,
with special values mixed into the data: bit-exact against the reference
where the spec says so, within 4 ULP of a high-precision oracle otherwise."""
import numpy as np
import pytest

import fastact
from conftest import (ELEMENTWISE_OPS, LAYOUTS, WIDE, assert_bitwise_equal, assert_ulp,
                      make_layout, mixed_values, oracle_softmax, sampled_op_dtypes,
                      oracle_elu_backward, oracle_softmax_backward, softmax_backward_bound,
                      special_values)


def _inputs(op, pass_, dtype, layout):
    pool = mixed_values(dtype, 300, seed=1)
    x = make_layout(layout, pool, dtype)
    if pass_ == "forward":
        return (x,)
    # upstream gradients: finite (inf * 0 is not what these tests are about) plus NaN and zeros
    gv = np.random.default_rng(2).standard_normal(300) * 2
    gv[:4] = [0.0, -0.0, np.nan, 1.0]
    g = make_layout(layout, gv, dtype)
    if op.saves == "y":
        # layouts only select and permute the pool, so mapping the pool maps the array
        return g, make_layout(layout, op.fwd(pool, backend="numpy"), dtype)
    return g, x


def _check(op, pass_, got, ins, dtype):
    op.check(pass_, got, ins, f"{op.id} {pass_} {np.dtype(dtype)}")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pass_", ["forward", "backward"])
@pytest.mark.parametrize("op", ELEMENTWISE_OPS, ids=repr)
def test_elementwise_layouts(host_backend, op, pass_, dtype, layout):
    ins = _inputs(op, pass_, dtype, layout)
    fn = op.fwd if pass_ == "forward" else op.bwd
    got = fn(*ins, backend=host_backend)
    assert isinstance(got, np.ndarray)
    assert got.shape == ins[0].shape and got.dtype == dtype
    _check(op, pass_, got, ins, dtype)


@pytest.mark.parametrize("pass_", ["forward", "backward"])
@pytest.mark.parametrize("op", ELEMENTWISE_OPS, ids=repr)
def test_elementwise_special_values(host_backend, op, pass_, dtype):
    """Every special value, alone in a 1-d array, against every other as gradient."""
    sp = special_values(dtype)
    if pass_ == "forward":
        x = sp
        got = op.fwd(x, backend=host_backend)
        _check(op, pass_, got, (x,), dtype)
        return
    g = np.array([1.0, -3.0, 0.0, -0.0, np.nan, 1e-3], dtype)
    s = sp if op.saves == "x" else op.fwd(sp, backend="numpy")
    G, S = np.meshgrid(g, s, indexing="ij")
    got = op.bwd(G, S, backend=host_backend)
    _check(op, pass_, got, (G, S), dtype)


@pytest.mark.parametrize("op", ELEMENTWISE_OPS, ids=repr)
def test_nan_propagates_forward(host_backend, op, dtype):
    x = np.array([np.nan, 1.0, np.nan, -1.0], dtype)
    y = op.fwd(x, backend=host_backend)
    assert np.isnan(y[[0, 2]]).all() and not np.isnan(y[[1, 3]]).any()


@pytest.mark.parametrize("op", ["prelu", "softmax"])
def test_nan_propagates_forward_prelu_softmax(host_backend, op, dtype):
    x = np.array([[np.nan, 1.0, -1.0], [0.5, -0.5, 2.0]], dtype)
    if op == "prelu":
        y = fastact.prelu(x, np.array([0.1, 0.2, 0.3], dtype), backend=host_backend)
        assert np.isnan(y[0, 0]) and not np.isnan(y.ravel()[1:]).any()
    else:
        y = fastact.softmax(x, backend=host_backend)
        assert np.isnan(y[0]).all() and not np.isnan(y[1]).any()


def test_sigmoid_limits(host_backend, dtype):
    x = np.array([-np.inf, np.inf, -1e4, 1e4, 0.0, -0.0], dtype)
    y = fastact.sigmoid(x, backend=host_backend)
    assert y[0] == 0 and y[1] == 1 and y[2] == 0 and y[3] == 1 and y[4] == 0.5 and y[5] == 0.5
    assert not np.signbit(y[[0, 2]]).any()


def test_elu_limits(host_backend, dtype):
    x = np.array([-np.inf, -1e4, np.inf, 1e4, -np.finfo(dtype).max], dtype)
    for alpha in (1.0, 0.5, 2.0):
        y = fastact.elu(x, alpha, backend=host_backend)
        a = dtype.type(alpha)
        np.testing.assert_array_equal(y, np.array([-a, -a, np.inf, 1e4, -a], dtype))


def test_relu_signed_zero_and_subnormals(host_backend, dtype):
    fi = np.finfo(dtype)
    x = np.array([-0.0, 0.0, fi.smallest_subnormal, -fi.smallest_subnormal], dtype)
    y = fastact.relu(x, backend=host_backend)
    np.testing.assert_array_equal(y, [0.0, 0.0, fi.smallest_subnormal, 0.0])
    # documented: relu(-0.0) = +0.0
    assert not np.signbit(y[0])


def test_leaky_relu_slope_zero_inf_no_warning(host_backend, dtype):
    """inf * 0 must never be evaluated: the x > 0 branch returns x itself."""
    x = np.array([np.inf, -np.inf, 1.0, -1.0], dtype)
    y = fastact.leaky_relu(x, 0.0, backend=host_backend)
    assert y[0] == np.inf and y[2] == 1.0 and y[3] == 0.0
    # -inf * 0 is NaN mathematically; either way no warning (pytest turns it into an error)
    gx = fastact.leaky_relu_backward(np.array([np.inf, 1.0, 1.0, 1.0], dtype), x, 0.0,
                                     backend=host_backend)
    assert gx[0] == np.inf


def test_huge_values_no_overflow(host_backend, dtype):
    """Nothing overflows for large |x| (no inf, no warning)."""
    big = np.finfo(dtype).max
    x = np.array([big, -big, big / 2, -big / 2, 1e4, -1e4], dtype)
    assert np.isfinite(fastact.sigmoid(x, backend=host_backend)).all()
    e = fastact.elu(x, backend=host_backend)
    assert np.isfinite(e).all()
    gy = fastact.sigmoid_backward(np.ones_like(x), fastact.sigmoid(x, backend=host_backend),
                                  backend=host_backend)
    assert np.isfinite(gy).all()
    ge = fastact.elu_backward(np.ones_like(x), x, backend=host_backend)
    assert np.isfinite(ge).all()
    s = fastact.softmax(np.array([1e4, 0.0, -1e4], dtype), backend=host_backend)
    np.testing.assert_array_equal(s, np.array([1.0, 0.0, 0.0], dtype))


@pytest.mark.parametrize("op", ELEMENTWISE_OPS, ids=repr)
def test_python_lists_and_scalars(op):
    """Anything np.asarray accepts: a list of floats, a Python float (0-d result)."""
    y = op.fwd([0.5, -1.5, 2.0])
    assert y.dtype == np.float64 and y.shape == (3,)
    want = op.fwd(np.array([0.5, -1.5, 2.0]))
    assert_bitwise_equal(y, want)
    y0 = op.fwd(-1.5)
    assert isinstance(y0, np.ndarray) and y0.shape == () and y0.dtype == np.float64
    assert_bitwise_equal(y0.reshape(1), op.fwd(np.array([-1.5])))


@pytest.mark.parametrize("n", ["below", "at", "odd_above"])
@pytest.mark.parametrize("pass_", ["forward", "backward"])
@pytest.mark.parametrize("op,dtype", sampled_op_dtypes())
def test_parallel_path_sizes(fast_backend, op, pass_, dtype, n):
    """Around the parallel threshold (thread chunks, vector tails, rrelu's global index)."""
    from fastact import config
    size = {"below": config.PARALLEL_MIN - 1, "at": config.PARALLEL_MIN,
            "odd_above": 3 * config.PARALLEL_MIN + 7}[n]
    x = mixed_values(dtype, size, seed=4)
    if pass_ == "forward":
        ins = (x,)
        got = op.fwd(x, backend=fast_backend)
    else:
        g = np.random.default_rng(5).standard_normal(size).astype(dtype)
        s = x if op.saves == "x" else op.fwd(x, backend="numpy")
        ins = (g, s)
        got = op.bwd(g, s, backend=fast_backend)
    _check(op, pass_, got, ins, dtype)


@pytest.mark.parametrize("kind", ["softmax", "softmax_backward", "prelu", "prelu_backward"])
def test_parallel_path_rowwise(fast_backend, dtype, kind):
    from fastact import config
    rng = np.random.default_rng(6)
    for shape in [(3, config.PARALLEL_MIN // 3 + 5), (config.PARALLEL_MIN // 7 + 3, 7)]:
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        if kind.startswith("softmax"):
            if kind == "softmax":
                got = fastact.softmax(x, backend=fast_backend)
                # float64: x - max rounds, so the error grows with |x - max| (the torch
                # comparison in test_core_accuracy holds the real bound)
                assert_ulp(got, oracle_softmax(x), 4 if dtype == np.float32 else 32, kind)
            else:
                y = rng.uniform(0, 1, shape).astype(dtype)
                got = fastact.softmax_backward(g, y, backend=fast_backend)
                err = np.abs(got.astype(WIDE) - oracle_softmax_backward(g, y))
                assert (err <= softmax_backward_bound(g, y)).all()
        else:
            w = rng.uniform(0, 0.5, shape[1]).astype(dtype)
            if kind == "prelu":
                assert_bitwise_equal(fastact.prelu(x, w, backend=fast_backend),
                                     fastact.prelu(x, w, backend="numpy"))
            else:
                gx, gw = fastact.prelu_backward(g, x, w, backend=fast_backend)
                rx, rw = fastact.prelu_backward(g, x, w, backend="numpy")
                assert_bitwise_equal(gx, rx)
                terms = np.where(x > 0, 0, g.astype(WIDE) * x)
                tol = 1e-5 if dtype == np.float32 else 1e-13
                assert (np.abs(gw - terms.sum(0)) <= tol * np.abs(terms).sum(0)).all()


def _unaligned(n, dtype, offset=1):
    dt = np.dtype(dtype)
    a = np.frombuffer(bytearray(n * dt.itemsize + offset), dtype=dt, count=n, offset=offset)
    assert not a.flags.aligned and a.flags.writeable
    return a


@pytest.mark.parametrize("n", [37, 4099])
def test_unaligned_inputs_and_out(host_backend, dtype, n):
    """Arrays on odd byte offsets (np.frombuffer): no aligned-load assumptions."""
    ref = np.linspace(-3, 3, n).astype(dtype)
    x = _unaligned(n, dtype)
    x[:] = ref
    out = _unaligned(n, dtype, offset=3)
    for fn in (fastact.sigmoid, fastact.relu, fastact.elu,
               lambda v, **k: fastact.rrelu(v, training=True, seed=1, **k)):
        want = fn(ref, backend="numpy")
        if fn in (fastact.sigmoid, fastact.elu):
            assert_ulp(fn(x, backend=host_backend), fn(ref, backend="numpy").astype(WIDE), 4, "unaligned")
        else:
            assert_bitwise_equal(fn(x, backend=host_backend), want)
        assert fn(x, out=out, backend=host_backend) is out
        np.testing.assert_array_max_ulp(out, want, 4)
    rows = x[: n - n % 37].reshape(-1, 37)
    np.testing.assert_array_max_ulp(fastact.softmax(rows, backend=host_backend),
                                    fastact.softmax(np.array(rows), backend="numpy"), 4)
    gx = fastact.softmax_backward(rows, rows, backend=host_backend)
    assert gx.shape == rows.shape


def test_non_native_byte_order(dtype):
    """A big-endian float array holds float32/float64 values: compute on them (result in the
    native dtype), or refuse with a message that names the byte order as the problem;
    calling it an unsupported dtype ('>f8 ... supported dtypes are float32 and float64')
    is wrong."""
    x = np.array([-1.5, 0.0, 2.0], dtype=np.dtype(dtype).newbyteorder(">"))
    try:
        y = fastact.relu(x)           # validation is the public layer's, backend-independent
    except TypeError as e:
        assert "byte order" in str(e) or "endian" in str(e), str(e)
    else:
        assert y.dtype == dtype and y.tolist() == [0.0, 0.0, 2.0]


def _torch_backward(torch, op_id, g, s):
    """PyTorch's own backward kernels for the same (grad, saved) pair, or None."""
    tg, ts = torch.from_numpy(g), torch.from_numpy(s)
    A = torch.ops.aten
    return {
        "sigmoid": lambda: A.sigmoid_backward(tg, ts),
        "relu": lambda: A.threshold_backward(tg, ts, 0),
        "relu_from_x": lambda: A.threshold_backward(tg, ts, 0),
        "leaky_relu": lambda: A.leaky_relu_backward(tg, ts, 0.1, False),
        "leaky_relu_default": lambda: A.leaky_relu_backward(tg, ts, 0.01, False),
        "leaky_relu_slope0": lambda: A.leaky_relu_backward(tg, ts, 0.0, False),
        "rrelu_eval": lambda: A.leaky_relu_backward(tg, ts, float(np.asarray(0.2, g.dtype)), False),
        "elu": lambda: A.elu_backward(tg, 1.0, 1, 1, False, ts),
        "elu_alpha0.7": lambda: A.elu_backward(tg, 0.7, 1, 1, False, ts),
    }.get(op_id, lambda: None)()


@pytest.mark.parametrize("op", ELEMENTWISE_OPS, ids=repr)
def test_backward_non_finite_gradients(host_backend, op, dtype, torch):
    """Upstream gradients of +-inf, NaN, huge and subnormal against every special saved
    value: no warning; NaN and inf exactly where PyTorch's backward kernel has them
    (the reference backend where torch has no counterpart)."""
    fi = np.finfo(dtype)
    g = np.array([np.inf, -np.inf, np.nan, fi.max, -fi.max, fi.smallest_subnormal, 0.0], dtype)
    sp = special_values(dtype)
    s = sp if op.saves == "x" else op.fwd(sp, backend="numpy")
    G, S = (a.copy() for a in np.meshgrid(g, s, indexing="ij"))
    got = op.bwd(G, S, backend=host_backend)
    want = _torch_backward(torch, op.id, G, S)
    if want is None:
        with np.errstate(all="ignore"):
            want = op.bwd(G, S, backend="numpy")
    else:
        want = want.numpy()
    assert got.dtype == dtype
    if op.id.startswith("elu") and op.saves == "x":
        # torch's vectorized elu_backward turns a NaN input into NaN while its scalar path
        # (and our docstring) passes g; and g = +-inf times an exp(x) that underflows is
        # NaN or inf depending on evaluation order.  Ours: the exact product, g * alpha
        # (+-inf) for every finite x <= 0, and NaN at x = -inf, where exp(x) is 0 (as torch)
        nan_x = np.isnan(S)
        want[nan_x] = G[nan_x]
        inf_g = np.isinf(G) & (S <= 0) & (S > -np.inf)
        want[inf_g] = G[inf_g]                      # alpha > 0 in both cases
        assert np.isnan(want[np.isinf(G) & (S == -np.inf)]).all()
    for what, a, b in (("NaN", np.isnan(got), np.isnan(want)),
                       ("inf", np.isposinf(got), np.isposinf(want)),
                       ("-inf", np.isneginf(got), np.isneginf(want))):
        bad = a != b
        assert not bad.any(), (f"{what} pattern differs at (g, s) = "
                               f"{list(zip(G[bad][:4], S[bad][:4]))}: got {got[bad][:4]}, "
                               f"want {want[bad][:4]}")
    # finite values: as everywhere else (torch loses accuracy where exp(x) is subnormal)
    fin = np.isfinite(want)
    if op.exact:
        with np.errstate(all="ignore"):
            ref = op.bwd(G, S, backend="numpy")    # whole arrays: rrelu's slopes are positional
        assert_bitwise_equal(got[fin], ref[fin])
    else:
        op.check("backward", got[fin], (G[fin], S[fin]), f"{op.id} backward, non-finite rows")


@pytest.mark.parametrize("kind", ["softmax_backward", "prelu_backward"])
def test_rowwise_backward_non_finite(host_backend, dtype, kind, torch):
    fi = np.finfo(dtype)
    vals = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, fi.max, -fi.max,
                     fi.smallest_subnormal], dtype)
    G, S = np.meshgrid(vals, np.array([0, 0.5, 1, np.nan, np.inf, -2.0], dtype), indexing="ij")
    G, S = G.copy(), S.copy()
    if kind == "softmax_backward":
        got = fastact.softmax_backward(G, S, backend=host_backend)
        want = torch.ops.aten._softmax_backward_data(torch.from_numpy(G), torch.from_numpy(S), -1,
                                                     torch.from_numpy(G).dtype).numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    else:
        w = np.array([0.5], dtype)
        gx, gw = fastact.prelu_backward(G, S, w, backend=host_backend)
        t, tw = torch.tensor(S, requires_grad=True), torch.tensor(w, requires_grad=True)
        torch.nn.functional.prelu(t, tw).backward(torch.from_numpy(G))
        np.testing.assert_array_equal(gx, t.grad.numpy())
        np.testing.assert_array_equal(np.isnan(gw), np.isnan(tw.grad.numpy()))


@pytest.mark.parametrize("alpha", [1.0, 0.5, 3.0, 1e-20, 1e20])
def test_elu_backward_extreme_products(host_backend, dtype, alpha):
    """g * alpha * exp(x) within 4 ULP where g * alpha * exp(r) alone overflows
    (g near the largest float, exp(x) < 1 scales it back into range) or where
    exp(x) alone is subnormal and the product is not: the float32 kernels
    scale by 2**n after the product, or before it where the product
    overflows."""
    fi = np.finfo(dtype)
    lim = float(np.log(fi.smallest_subnormal)) * 1.5
    x = -np.concatenate([np.linspace(0, 3, 301), np.geomspace(3, -lim, 400)]).astype(dtype)
    g = np.array([fi.max, -fi.max / 3, fi.max / 1e10, 1e20, 1.0, 1e-20, fi.tiny,
                  fi.smallest_subnormal * 7], dtype)
    G, X = (a.copy() for a in np.meshgrid(g, x, indexing="ij"))
    got = fastact.elu_backward(G, X, alpha, backend=host_backend)
    assert_ulp(got, oracle_elu_backward(G, X, alpha), 4, f"elu_backward alpha={alpha}")
