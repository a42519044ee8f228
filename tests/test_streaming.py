"""The Numba backend's kernels for big outputs.

Outputs of at least ``config.STREAM_MIN_BYTES`` bytes are written in blocks:
memory-bound kernels compute a block into a buffer and write it with
streaming stores (:func:`fastact._prims.streaming`); kernels bound by their
arithmetic prefetch the blocks ahead and stream each vector as they compute
it (ordinary stores before the first 64-byte boundary).  These tests force
either way on arrays just big enough for the parallel kernels, for every
formula, and check it against the regular path bit for bit: outputs at odd
offsets, sizes that leave heads and tails, in place, one and two threads.
"""
from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest

import fastact
from fastact import _api, _registry, config
from fastact._prims import streaming_supported

from conftest import (assert_bitwise_equal, mixed_values, require_backend,
                      sampled_op_dtypes)
from early import EarlyProcess

pytestmark = pytest.mark.skipif(not streaming_supported(),
                                reason="streaming stores are used on x86-64 only")

N = config.PARALLEL_MIN + 37        # parallel kernels; blocks with a head and a tail


@pytest.fixture
def numba_backend():
    return require_backend("numba")


@pytest.fixture
def spy(monkeypatch, numba_backend):
    """Blocked kernels forced for every big output; records which elementwise
    kernels ran."""
    from fastact._backends import numba_cpu
    calls = []
    real = numba_cpu._blocked_kernel

    def recording(name, pass_, dtype):
        calls.append((name, pass_))
        return real(name, pass_, dtype)

    monkeypatch.setattr(numba_cpu, "_blocked_kernel", recording)
    monkeypatch.setattr(_api, "_kernels", {})        # closures made before the patch
    monkeypatch.setattr(config, "STREAM_MIN_BYTES", 0)
    return calls


def _regular(monkeypatch, fn):
    with monkeypatch.context() as m:
        m.setattr(config, "STREAM_MIN_BYTES", -1)
        m.setattr(_api, "_kernels", {})
        return fn()


def _out(kind, n, dtype, src=None):
    if kind == "fresh":
        return np.empty(n, dtype)
    if kind == "offset":             # C-contiguous, not 64-byte aligned
        return np.empty(n + 1, dtype)[1:]
    return src                       # in place


# every other catalogue op: each compiles its blocked kernels here (3-5 s a
# pair in CI, the longest test of the suite), whose loop skeleton is the same
# for every op; tests/test_kernel_structure.py compiles every op's
@pytest.mark.parametrize("op,dtype", sampled_op_dtypes(stride=2))
@pytest.mark.parametrize("out_kind", ["fresh", "offset", "inplace"])
@pytest.mark.parametrize("threads", [1, 2])
def test_blocked_elementwise_matches_the_regular_path(op, dtype, out_kind, threads, spy,
                                                       monkeypatch, restore_threads):
    fastact.set_num_threads(threads)
    x = mixed_values(dtype, N, seed=1)
    g = mixed_values(dtype, N, seed=2)
    s = x if op.saves == "x" else op.fwd(x, backend="numpy")
    for fn, args in ((op.fwd, (x,)), (op.bwd, (g, s))):
        want = _regular(monkeypatch, lambda: fn(*args, backend="numba"))
        src = args[0].copy()
        call_args = (src,) + args[1:]
        out = _out(out_kind, N, dtype, src)
        got = fn(*call_args, out=out, backend="numba")
        assert got is out
        assert_bitwise_equal(got, want)
        if op.exact:
            assert_bitwise_equal(got, fn(*args, backend="numpy"))
    # the backward from y takes its own kernels where the registry has them
    assert [p for _, p in spy] in (["forward", "backward"], ["forward", "backward_y"]), spy


@pytest.mark.parametrize("cols", [256, 1000, 4099])
@pytest.mark.parametrize("out_kind", ["fresh", "offset", "inplace"])
def test_streamed_softmax_backward_matches_the_regular_path(dtype, cols, out_kind, spy,
                                                            monkeypatch, restore_threads):
    fastact.set_num_threads(2)
    rows = -(-N // cols)
    x = mixed_values(dtype, rows * cols, seed=3).reshape(rows, cols)
    x[np.isnan(x) | np.isinf(x)] = 0
    y = fastact.softmax(x, backend="numpy")
    g = mixed_values(dtype, rows * cols, seed=4).reshape(rows, cols)
    g[np.isnan(g) | np.isinf(g)] = 1
    want = _regular(monkeypatch, lambda: fastact.softmax_backward(g, y, backend="numba"))
    src = g.copy()
    out = _out(out_kind, rows * cols, dtype, src.ravel()).reshape(rows, cols)
    got = fastact.softmax_backward(src, y, out=out, backend="numba")
    assert_bitwise_equal(got, want)


def test_blocked_kernels_follow_the_registry_and_the_size_threshold(monkeypatch, numba_backend):
    from fastact._backends import numba_cpu
    calls = []
    real = numba_cpu._blocked_kernel
    monkeypatch.setattr(numba_cpu, "_blocked_kernel",
                        lambda *a: calls.append((a[0], a[1])) or real(*a))
    monkeypatch.setattr(_api, "_kernels", {})
    x = np.ones(N, np.float32)
    monkeypatch.setattr(config, "STREAM_MIN_BYTES", x.nbytes)
    fastact.relu(x, backend="numba")
    fastact.relu_backward(x, x, backend="numba")
    fastact.sigmoid(x, backend="numba")               # compute-bound: prefetched
    fastact.sigmoid_backward(x, x, backend="numba")
    assert calls == [("relu", "forward"), ("relu", "backward"),
                     ("sigmoid", "forward"), ("sigmoid", "backward")]
    assert not _registry.streamed("sigmoid", "forward")
    assert _registry.streamed("softmax", "backward")
    assert not _registry.streamed("softmax", "forward")
    calls.clear()
    monkeypatch.setattr(config, "STREAM_MIN_BYTES", x.nbytes + 1)   # just too small
    fastact.relu(x, backend="numba")
    fastact.sigmoid(x, backend="numba")
    assert calls == []


@pytest.mark.parametrize("kind", ["float16", "bfloat16"])
@pytest.mark.parametrize("out_kind", ["fresh", "offset", "inplace"])
@pytest.mark.parametrize("threads", [1, 2])
def test_blocked_narrow_elementwise_matches_the_regular_path(kind, out_kind, threads,
                                                             monkeypatch, numba_backend,
                                                             restore_threads):
    """float16 and bfloat16 outputs take the blocked kernels too (their uint16
    bits streamed; odd offsets, in place, RReLU's slopes keyed by the index):
    the same bits as the regular parallel path."""
    from fastact import _narrow
    from fastact._backends import numba_cpu
    dtype = np.float16 if kind == "float16" else pytest.importorskip("ml_dtypes").bfloat16
    calls = []
    real = numba_cpu._narrow_kernel
    monkeypatch.setattr(numba_cpu, "_narrow_kernel",
                        lambda *a: calls.append(a[3]) or real(*a))
    monkeypatch.setattr(_api, "_kernels", {})
    monkeypatch.setattr(config, "STREAM_MIN_BYTES", 0)
    fastact.set_num_threads(threads)
    x = _narrow.narrowed(mixed_values(np.float32, N, seed=7), dtype)
    g = _narrow.narrowed(mixed_values(np.float32, N, seed=8), dtype)
    cases = [(fastact.tanh, (x,), {}), (fastact.gelu_backward, (g, x), {}),
             (fastact.softplus, (x,), {"beta": 2.0}),
             (fastact.rrelu, (x,), {"training": True, "seed": 3}),
             (fastact.relu_backward, (g, x), {})]
    for fn, args, kw in cases:
        want = _regular(monkeypatch, lambda: fn(*args, backend="numba", **kw))
        src = args[0].copy()
        out = _out(out_kind, N, dtype, src)
        got = fn(src, *args[1:], out=out, backend="numba", **kw)
        assert got is out
        assert np.array_equal(got.view(np.uint16), want.view(np.uint16)), fn
    assert calls.count("stream") == len(cases), calls


@pytest.fixture
def prelu_calls(monkeypatch, numba_backend, restore_threads):
    """Every output streamed (threshold 0), two threads; records which PReLU
    kernels (serial, parallel, "stream") were asked for."""
    from fastact._backends import numba_cpu
    calls = []
    real = numba_cpu._prelu_kernels
    monkeypatch.setattr(numba_cpu, "_prelu_kernels",
                        lambda dt, v: calls.append(v) or real(dt, v))
    monkeypatch.setattr(config, "STREAM_MIN_BYTES", 0)
    fastact.set_num_threads(2)
    return calls


@pytest.mark.parametrize("out_kind", ["fresh", "offset", "inplace"])
@pytest.mark.parametrize("inner", [1, 5, config.PRELU_ROW_MIN, 1000 + 3])
def test_streamed_prelu_forward_is_exact(dtype, out_kind, inner, prelu_calls):
    outer = -(-N // (3 * inner))
    x = mixed_values(dtype, outer * 3 * inner, seed=5).reshape(outer, 3, inner)
    w = np.array([0.25, -0.5, 2.0], dtype)
    want = fastact.prelu(x, w, backend="numpy")
    src = x.copy()
    out = _out(out_kind, x.size, dtype, src.ravel()).reshape(x.shape)
    got = fastact.prelu(src, w, out=out, backend="numba")
    assert_bitwise_equal(got, want)
    assert prelu_calls == ["stream"]


@pytest.mark.parametrize("out_kind", ["fresh", "offset", "inplace"])
@pytest.mark.parametrize("inner", [1, 5, config.PRELU_ROW_MIN, 1000 + 3, 4096])
def test_streamed_prelu_backward_is_exact(dtype, out_kind, inner, prelu_calls):
    """Big outputs: the gradients streamed between each row's (or short
    rows' run's) 64-byte boundaries equal the reference bit for bit (offset
    and in-place outputs included), and the weight gradient holds its bound
    (float64: summed with Kahan's compensation, also when streamed)."""
    outer = -(-N // (3 * inner))
    rng = np.random.default_rng(6)
    x = (3 * rng.standard_normal((outer, 3, inner))).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    w = np.array([0.25, -0.5, 2.0], dtype)
    want_gx, want_gw = fastact.prelu_backward(g, x, w, backend="numpy")
    src = g.copy()
    out = _out(out_kind, x.size, dtype, src.ravel()).reshape(x.shape)
    gx, gw = fastact.prelu_backward(src, x, w, out=(out, None), backend="numba")
    assert_bitwise_equal(gx, want_gx)
    wide = np.longdouble if dtype == np.float64 else np.float64
    terms = np.where(x > 0, 0, g.astype(wide) * x)
    exact, mag = terms.sum(axis=(0, 2)), np.abs(terms).sum(axis=(0, 2))
    tol = 1e-5 if dtype == np.float32 else 1e-13
    assert np.all(np.abs(gw.astype(wide) - exact) <= tol * mag), (gw, exact)
    assert "stream" in prelu_calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("start", [2**32 - 300, 2 * 2**32 - 1, 2**33 + 5])
def test_block_runs_across_multiples_of_2_32(numba_backend, dtype, start):
    """The blocked loops cut an indexed formula's range at multiples of 2**32
    and rebuild each index from its halves: RReLU slopes on a range crossing
    one (through ``base``, the array offset the kernels leave at 0) are those
    of the reference at the same flat indices."""
    import numba

    from fastact._backends import numba_cpu
    fwd, _ = numba_cpu._formulas("rrelu_train", dtype)
    fi = numba.njit(lambda x, b, i, *params: fwd(x, i, *params))
    run = numba_cpu._block_runs(fi, True)
    n, key, lower, upper = 600, np.uint64(0x1234_5678_9ABC_DEF0), dtype(0.1), dtype(0.4)
    x = -np.ones(n, dtype)
    out = np.zeros(n, dtype)
    run(x, x, out, 0, start, start + n, start, (key, lower, upper))
    want = _registry.reference_rrelu_slopes(n, key, lower, upper, dtype, start)
    assert_bitwise_equal(out, -want)


def _serial_loops_not_vectorized(dtype):
    """In a child process: the elementwise ops whose serial loop, compiled
    afresh (kernels loaded from the disk cache cannot be inspected), has no
    vector code, as ``"name pass"``."""
    import re

    import numba

    from fastact._backends import numba_cpu
    dtype = np.dtype(dtype).type
    numba_cpu.kernel_njit = lambda tag, **opts: numba.njit(error_model="numpy", **opts)
    bad = []
    lanes = re.compile(r"<(\d+) x (float|double)>")
    for name, spec in _registry.REGISTRY.items():
        if spec.kind != "elementwise":
            continue
        for pass_ in ("forward", "backward"):
            k = numba_cpu._elementwise_kernel(name, pass_, dtype, False)
            x = np.ones(64, dtype)
            params = tuple({"key": np.uint64(1)}.get(p, dtype(0.5)) for p in spec.params)
            k(x, x.copy(), params) if pass_ == "forward" else k(x, x, x.copy(), params)
            ir = "\n".join(k.inspect_llvm().values())
            if not any(int(m.group(1)) >= 4 for m in lanes.finditer(ir)):
                bad.append(f"{name} {pass_}")
    return bad


HERE = pathlib.Path(__file__).resolve().parent
#: the check of every serial loop, per dtype, in a child compiling on an idle core
SERIAL_LOOPS = {dt: EarlyProcess(f"streaming: serial loops of {dt}", [
    sys.executable, "-c", "import json, sys; from test_streaming import "
    f"_serial_loops_not_vectorized as f; print(json.dumps(f({dt!r})))"], cwd=HERE)
    for dt in ("float32", "float64")}


@pytest.mark.parametrize("dtype", [pytest.param(dt, marks=pytest.mark.early(child))
                                   for dt, child in SERIAL_LOOPS.items()])
def test_every_numba_elementwise_loop_vectorizes(dtype, numba_backend):
    """The serial loop of every elementwise kernel, forward and backward,
    compiles to vector code: a formula or primitive that LLVM cannot
    vectorize (a branch it cannot turn into a select, a call it cannot
    widen) once cost float64 elu_backward 6x its speed, silently.  Compiled
    afresh in a child process (_serial_loops_not_vectorized)."""
    r = SERIAL_LOOPS[dtype].result()
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    bad = json.loads(r.stdout.strip().splitlines()[-1])
    assert not bad, f"not vectorized ({dtype}): {bad}"
