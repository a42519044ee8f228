"""Dask arrays (fastact._dask): lazy, and the single NumPy call's results
under any chunking."""
import math
import os
import sys

import numpy as np
import pytest

from conftest import _status, assert_bitwise_equal, require_backend

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import fastact  # noqa: E402
from fastact import _dask  # noqa: E402
from fastact._registry import REGISTRY  # noqa: E402

ELEMENTWISE = [s for s in REGISTRY.values() if s.public and s.kind == "elementwise"]
ROWS = [s for s in REGISTRY.values() if s.public and s.kind == "rowwise"]
GATED = [s for s in REGISTRY.values() if s.public and s.kind == "gated"]

#: (shape, chunks): ragged, every axis chunked, zero-size chunks, 1-D to 4-D
CHUNKINGS = [
    ((101,), ((30, 0, 71),)),
    ((37, 53), ((10, 0, 27), (20, 33))),
    ((37, 53), ((37,), (1, 52))),
    ((6, 7, 9), ((2, 4), (3, 0, 4), (5, 4))),
    ((3, 4, 5, 6), ((1, 2), (4,), (2, 3), (1, 1, 4))),
]


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if x.size > 3:
        x.reshape(-1)[:3] = (0.0, -0.0, -1e-3)
    return x


def _lazy(a, chunks):
    return da.from_array(a, chunks=chunks)


def _call(spec, pass_, arrays, chunks=None, **kw):
    fname = spec.api_name if pass_ == "forward" else spec.api_name + "_backward"
    fn = getattr(fastact, fname)
    kw = {**spec.example_kwargs(pass_), **kw}
    lazy = fn(*[_lazy(a, chunks) for a in arrays], **kw)
    return lazy, fn(*arrays, **kw)


# --- elementwise ----------------------------------------------------------------------

@pytest.mark.parametrize("spec", ELEMENTWISE, ids=lambda s: s.api_name)
def test_elementwise_every_op(spec):
    shape, chunks = CHUNKINGS[1]
    x, g = _data(shape, np.float32), _data(shape, np.float32, 1)
    for pass_, arrays in (("forward", (x,)), ("backward", (g, x))):
        lazy, want = _call(spec, pass_, arrays, chunks)
        assert isinstance(lazy, da.Array)
        assert lazy.dtype == want.dtype and lazy.shape == want.shape
        assert_bitwise_equal(lazy.compute(), want)


@pytest.mark.parametrize("shape,chunks", CHUNKINGS, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_chunkings(shape, chunks, dtype):
    x, g = _data(shape, dtype), _data(shape, dtype, 1)
    for f, args in ((fastact.elu, (x,)), (fastact.sigmoid_backward, (g, x))):
        assert_bitwise_equal(f(*[_lazy(a, chunks) for a in args]).compute(), f(*args))


def test_backend_pinned_by_the_whole_array():
    # 90000 elements go to Numba (gelu is NUMBA_FIRST), its blocks of 15000
    # would go to C on their own
    require_backend("numba")
    require_backend("c")
    x = _data((300, 300), np.float32)
    assert_bitwise_equal(fastact.gelu(_lazy(x, (50, 300))).compute(), fastact.gelu(x))
    # the choice made where the graph is built: use_backend's block has ended
    with fastact.use_backend("numpy"):
        lazy = fastact.elu(_lazy(x, 70))
    assert_bitwise_equal(lazy.compute(), fastact.elu(x, backend="numpy"))


@pytest.mark.parametrize("backend", ["c", "numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rrelu_training_keyed_by_global_index(backend, dtype):
    require_backend(backend)
    for shape, chunks in CHUNKINGS:
        x, g = _data(shape, dtype), _data(shape, dtype, 1)
        for divide, (lo, up) in ((False, (0.1, 0.3)), (True, (3.0, 8.0))):
            kw = dict(training=True, seed=11, divide=divide, backend=backend)
            got = fastact.rrelu(_lazy(x, chunks), lo, up, **kw).compute()
            assert_bitwise_equal(got, fastact.rrelu(x, lo, up, **kw))
            got = fastact.rrelu_backward(_lazy(g, chunks), _lazy(x, chunks), lo, up, **kw)
            assert_bitwise_equal(got.compute(), fastact.rrelu_backward(g, x, lo, up, **kw))


def test_row_starts():
    shape = (4, 5, 6)
    flat = np.arange(math.prod(shape)).reshape(shape)
    for loc in (((1, 3), (2, 4), (0, 6)), ((1, 3), (0, 5), (0, 6)), ((0, 4), (1, 2), (3, 5))):
        rows, m, starts = _dask.row_starts(loc, shape)
        block = flat[tuple(slice(*se) for se in loc)].reshape(rows, m)
        assert np.array_equal(block[:, 0], starts)
        assert np.array_equal(block - block[:, :1], np.broadcast_to(np.arange(m), block.shape))


# --- the softmax family --------------------------------------------------------------------

def _ulps(a, b):
    ui = np.int32 if a.dtype == np.float32 else np.int64
    return int(np.max(np.abs(a.view(ui).astype(np.int64) - b.view(ui).astype(np.int64)),
                      initial=0))


@pytest.mark.parametrize("spec", ROWS, ids=lambda s: s.api_name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_along_a_chunked_axis(spec, dtype):
    shape, chunks = CHUNKINGS[3]
    x, g = _data(shape, dtype), _data(shape, dtype, 1)
    fwd = getattr(fastact, spec.api_name)
    bwd = getattr(fastact, spec.api_name + "_backward")
    for axis in (0, 1, 2):
        y = fwd(x, axis=axis)
        # rechunked: bit for bit
        got = fwd(_lazy(x, chunks), axis=axis, method="rechunk").compute()
        assert_bitwise_equal(got, y)
        got = bwd(_lazy(g, chunks), _lazy(y, chunks), axis=axis, method="rechunk").compute()
        assert_bitwise_equal(got, bwd(g, y, axis=axis))
        # the default is two passes: within 1 ULP of both backends' single
        # calls (the blocks' exponentials are the Numba kernels' own;
        # float64's against the rows' max, summed in double-double as the
        # single calls sum theirs), and within 4 ULP of the exact result
        xl = x.astype(np.longdouble) * (-1 if spec.row.negate else 1)
        ml = xl.max(axis=axis, keepdims=True)
        el = np.exp(xl - ml)
        sl = el.sum(axis=axis, keepdims=True)
        exact = ((xl - ml) - np.log(sl) if spec.row.log else el / sl).astype(dtype)
        for b in ("c", "numba"):
            if _status()[b]["available"]:
                got = fwd(_lazy(x, chunks), axis=axis, backend=b).compute()
                assert_bitwise_equal(
                    got, fwd(_lazy(x, chunks), axis=axis, method="two-pass", backend=b).compute())
                want = fwd(x, axis=axis, backend=b)
                assert _ulps(got, want) <= 1, (axis, b)
                if dtype == np.float64:     # the same sums, rounded once: here, the same bits
                    assert_bitwise_equal(got, want)
                if not spec.row.log:     # log_softmax: near 0, absolute errors
                    assert _ulps(got, exact) <= 4, (axis, b)
        # backward: within the single call's bound, 4 eps |y| (|g| + sum |g y|)
        want = bwd(g, y, axis=axis)
        got = bwd(_lazy(g, chunks), _lazy(y, chunks), axis=axis, method="two-pass").compute()
        e = np.exp(y) if spec.row.log else y
        dot = np.sum(np.abs(g.astype(np.float64) * (1 if spec.row.log else y)), axis=axis,
                     keepdims=True)
        bound = 8 * np.finfo(dtype).eps * np.abs(e) * (np.abs(g) + dot) + np.spacing(
            np.abs(want))
        assert np.all(np.abs(got.astype(np.float64) - want) <= bound), axis


def test_rows_whole_axis_and_specials():
    x = _data((6, 7, 9), np.float32)
    assert_bitwise_equal(fastact.softmax(_lazy(x, (2, 3, 9)), axis=2).compute(),
                         fastact.softmax(x, axis=2))
    assert_bitwise_equal(fastact.log_softmax(_lazy(x, (2, 7, 4)), axis=1).compute(),
                         fastact.log_softmax(x, axis=1))
    # NaN, +inf, a block of -inf, a row of -inf: as the single call
    x = np.zeros((4, 6), np.float32)
    x[0, 1], x[1, 4], x[2, :3], x[3] = np.nan, np.inf, -np.inf, -np.inf
    for f in (fastact.softmax, fastact.log_softmax, fastact.softmin):
        for method in ("rechunk", "two-pass"):
            got = f(_lazy(x, (2, 3)), method=method).compute()
            want = f(x)
            assert np.array_equal(np.isnan(got), np.isnan(want)), (f, method)
            assert np.array_equal(got[~np.isnan(got)], want[~np.isnan(want)]), (f, method)
    # far apart (the single call's other exponential underflows in float32):
    # log_softmax's 0 stays +0, and a wide range stays within 1 ULP
    x = np.array([[300.0, 1.0, 0.0], [-20.0, 0.5, -90.0], [7.0, -3.0, 95.0]], np.float32)
    for f in (fastact.softmax, fastact.log_softmax, fastact.softmin):
        got = f(_lazy(x, (1, 3)), axis=0, method="two-pass").compute()
        assert _ulps(got, f(x, axis=0)) <= 1, f
    with pytest.raises(ValueError, match="method"):
        fastact.softmax(x, method="three-pass")


# --- the gated family --------------------------------------------------------------------------

@pytest.mark.parametrize("spec", GATED, ids=lambda s: s.api_name)
def test_gated_any_chunking(spec):
    x = _data((6, 8, 10), np.float32)
    fwd = getattr(fastact, spec.api_name)
    bwd = getattr(fastact, spec.api_name + "_backward")
    for axis, chunks in ((1, (4, 3, 5)), (2, (6, 8, (3, 3, 4))), (0, ((1, 4, 1), 8, 10))):
        y = fwd(x, axis=axis)
        assert_bitwise_equal(fwd(_lazy(x, chunks), axis=axis).compute(), y)
        g = _data(y.shape, np.float32, 2)
        got = bwd(_lazy(g, 3), _lazy(x, chunks), axis=axis).compute()
        assert_bitwise_equal(got, bwd(g, x, axis=axis))


# --- prelu ----------------------------------------------------------------------------------------

#: (shape, chunks, axis): CHUNKINGS with the channel axis split (zero-size
#: chunks among them), long channel rows, and a size the kernels take in
#: parallel (Numba's pool, C's chunks)
PRELU_CHUNKINGS = [c + (min(1, len(c[0]) - 1),) for c in CHUNKINGS] + [
    (CHUNKINGS[4][0], CHUNKINGS[4][1], 3),
    ((64, 300), (16, (100, 200)), 1),
    ((12, 5, 700), (5, 2, 300), 2),
    ((8, 16, 4096), (3, (5, 0, 11), 1000), 1),
]


@pytest.mark.parametrize("backend", ["numba", "c"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prelu(dtype, backend):
    """prelu and both its gradients bit-identical to the single call under
    any chunking, the weight gradient (the correctly rounded sum) too."""
    require_backend(backend)
    for shape, chunks, axis in PRELU_CHUNKINGS:
        x, g = _data(shape, dtype), _data(shape, dtype, 1)
        ws = [np.array([0.25], dtype)]
        if len(shape) > 1:
            ws.append(np.linspace(0.1, 0.5, shape[axis]).astype(dtype))
        for w in ws:
            kw = dict(axis=axis, backend=backend)
            assert_bitwise_equal(fastact.prelu(_lazy(x, chunks), w, **kw).compute(),
                                 fastact.prelu(x, w, **kw))
            gx, gw = fastact.prelu_backward(_lazy(g, chunks), _lazy(x, chunks), w, **kw)
            want_x, want_w = fastact.prelu_backward(g, x, w, **kw)
            got_x, got_w = dask.compute(gx, gw)
            assert_bitwise_equal(got_x, want_x)
            assert_bitwise_equal(got_w, want_w)


@pytest.mark.parametrize("backend", ["numba", "c"])
def test_prelu_backward_float16(backend):
    """float16: the weight gradient rounded to float32, then float16, as the
    single call (computed in float32) rounds it."""
    require_backend(backend)
    (shape, chunks), axis = CHUNKINGS[3], 1
    x, g = _data(shape, np.float16), _data(shape, np.float16, 1)
    w = np.linspace(0.1, 0.5, shape[axis]).astype(np.float16)
    lazy = fastact.prelu_backward(_lazy(g, chunks), _lazy(x, chunks), w, backend=backend)
    for got, want in zip(dask.compute(*lazy), fastact.prelu_backward(g, x, w, backend=backend)):
        assert got.dtype == want.dtype == np.float16
        assert np.array_equal(got.view(np.uint16), want.view(np.uint16))


def test_prelu_backward_graph_shares_its_blocks(monkeypatch):
    """grad_x and grad_weight computed together run each block's call once;
    each alone still computes (no task culled for want of a declared
    dependency)."""
    calls = []
    block_call = _dask._PreluBackwardBlock.__call__
    monkeypatch.setattr(_dask._PreluBackwardBlock, "__call__",
                        lambda self, *b: calls.append(1) or block_call(self, *b))
    x, g = _data((40, 30), np.float32), _data((40, 30), np.float32, 1)
    w = np.linspace(0.1, 0.3, 30).astype(np.float32)
    gx, gw = fastact.prelu_backward(_lazy(g, (10, 15)), _lazy(x, (10, 15)), w)
    want_x, want_w = fastact.prelu_backward(g, x, w)
    got_x, got_w = dask.compute(gx, gw, scheduler="sync")
    assert len(calls) == 8            # 4 x 2 blocks, once each
    assert_bitwise_equal(got_x, want_x)
    assert_bitwise_equal(got_w, want_w)
    assert_bitwise_equal(gx.compute(scheduler="sync"), want_x)
    assert_bitwise_equal(gw.compute(scheduler="sync"), got_w)
    assert len(calls) == 24


# --- laziness and errors ------------------------------------------------------------------------

def _boom(block):
    raise RuntimeError("computed")


def test_nothing_computed_at_construction():
    x = da.ones((20, 30), chunks=(7, 11), dtype=np.float32).map_blocks(_boom, dtype=np.float32)
    g = da.ones((20, 30), chunks=(5, 30), dtype=np.float32).map_blocks(_boom, dtype=np.float32)
    lazy = [fastact.relu(x), fastact.elu_backward(g, x), fastact.rrelu(x, training=True, seed=1),
            fastact.softmax(x, axis=0), fastact.softmax_backward(g, x, axis=1),
            fastact.log_softmax(x, method="rechunk"), fastact.glu(x[:, :30], axis=0),
            fastact.glu_backward(g[:10], x, axis=0), fastact.prelu(x, np.ones(30, np.float32)),
            *fastact.prelu_backward(g, x, da.ones(30, chunks=7, dtype=np.float32))]
    for r in lazy:
        assert isinstance(r, da.Array)
        with pytest.raises(RuntimeError, match="computed"):
            r.compute(scheduler="sync")


def test_errors_and_promotion():
    x = _lazy(np.ones((4, 5), np.float32), 2)
    with pytest.raises(TypeError, match="out= is not supported with dask"):
        fastact.relu(x, out=np.empty((4, 5), np.float32))
    with pytest.raises(TypeError, match="out= is not supported with dask"):
        fastact.relu(np.ones(3), out=_lazy(np.ones(3), 2))
    with pytest.raises(ValueError, match="shape"):
        fastact.relu_backward(x, x[:3])
    with pytest.raises(TypeError, match="dtype"):
        fastact.relu(x.astype(np.complex64))
    with pytest.raises(ValueError, match="even"):
        fastact.glu(x, axis=1)
    with pytest.raises(ValueError, match="weight"):
        fastact.prelu(x, np.ones(3, np.float32))
    ints = fastact.relu(_lazy(np.arange(-3, 3), 2))
    assert ints.dtype == np.float64
    assert np.array_equal(ints.compute(), fastact.relu(np.arange(-3, 3)))


# --- a cluster of processes --------------------------------------------------------------------

def test_local_cluster_processes():
    distributed = pytest.importorskip("distributed")
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastact.__file__)))
    paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))  # the workers' fastact
    x = _data((256, 200), np.float32)
    lazy = _lazy(x, (64, 50))
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.register_plugin(fastact.dask_worker_plugin())
        assert set(client.run(fastact.get_num_threads).values()) == {1}
        files = client.run(lambda: sys.modules["fastact"].__file__)
        assert {os.path.dirname(f) for f in files.values()} == {os.path.dirname(fastact.__file__)}
        got = client.compute([fastact.relu(lazy), fastact.softmax(lazy, axis=0,
                                                                  method="two-pass"),
                              fastact.rrelu(lazy, training=True, seed=5)], sync=True)
    assert_bitwise_equal(got[0], fastact.relu(x))
    assert _ulps(got[1], fastact.softmax(x, axis=0)) <= 1
    assert_bitwise_equal(got[2], fastact.rrelu(x, training=True, seed=5))
