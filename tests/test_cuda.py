"""The CUDA backend on device arrays: every op, both passes, both dtypes,
against the reference backend on host copies.

Where a GPU is present the device tests run here.  Without one they run
under numba's CUDA simulator in a child process
(:func:`test_device_suite_under_simulator`, ``NUMBA_ENABLE_CUDASIM=1``);
in this process they skip with the backend's reason, which is itself tested.
Arrays are small: the simulator runs every GPU thread as a Python thread.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import fastact
from conftest import (ELEMENTWISE_OPS, assert_bitwise_equal, assert_ulp, mixed_values,
                      oracle_elu_backward, oracle_softmax, oracle_softmax_backward,
                      softmax_backward_bound)
from early import EarlyProcess
from oracles_gated import GATED, VARIANTS
from oracles_gated import check as check_gated

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM", "") == "1"
STATUS = fastact.backends()["cuda"]
device = pytest.mark.skipif(not STATUS["available"],
                            reason=f"cuda backend unavailable: {STATUS['reason']}")
DTYPES = [np.float32, np.float64]
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])


# --- without a device ------------------------------------------------------------------

@pytest.mark.skipif(STATUS["available"], reason="a CUDA device (or the simulator) is here")
def test_unavailable_reason_is_reported():
    reason = STATUS["reason"]
    assert reason and ("CUDA" in reason or "cuda" in reason), reason


class _ForeignDeviceArray:
    """Something that claims to be a device array (like a CuPy array)."""

    def __init__(self, host):
        self.host = host
        self.dtype = host.dtype
        self.shape = host.shape
        self.__cuda_array_interface__ = {
            "shape": host.shape, "typestr": host.dtype.str, "strides": None,
            "data": (host.__array_interface__["data"][0], False), "version": 3}


@pytest.mark.skipif(STATUS["available"], reason="a CUDA device (or the simulator) is here")
def test_device_input_without_backend_says_why():
    x = _ForeignDeviceArray(np.zeros(3, np.float32))
    with pytest.raises(fastact.BackendUnavailable, match="cuda") as info:
        fastact.relu(x)
    assert info.value.reason == STATUS["reason"]


def simulator_suite(path):
    """The device tests of the test file ``path`` under numba's CUDA
    simulator: a child started early (tests/early.py)."""
    path = pathlib.Path(path).resolve()
    return EarlyProcess(f"cuda tests under the simulator: {path.name}",
                        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path],
                        cwd=path.parent.parent, env={"NUMBA_ENABLE_CUDASIM": "1"})


def run_under_simulator(child, min_passed):
    """``child`` (simulator_suite) passed, at least ``min_passed`` tests."""
    probe = subprocess.run(
        [sys.executable, "-c", "import numba.cuda.simulator"],
        capture_output=True, text=True, env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1"))
    if probe.returncode:
        pytest.skip("no CUDA device and no numba CUDA simulator: "
                    + (probe.stderr.strip().splitlines() or ["?"])[-1])
    run = child.result()
    tail = (run.stdout + run.stderr)[-6000:]
    assert run.returncode == 0, tail
    summary = tail.strip().splitlines()[-1]
    assert int(summary.split(" passed")[0].split()[-1]) >= min_passed, summary


SIMULATOR_SUITE = simulator_suite(__file__)


@pytest.mark.skipif(STATUS["available"] or SIMULATED, reason="runs the suite on a device here")
@pytest.mark.early(SIMULATOR_SUITE)
def test_device_suite_under_simulator():
    """This file's device tests, under numba's CUDA simulator, in a child process."""
    run_under_simulator(SIMULATOR_SUITE, 70)


def ptx_compiler(cc=(9, 0)):
    """``(compile_, lines)``: ``compile_(kernel, sig, label)`` types and
    compiles a kernel with NVVM (no GPU needed) and appends ``label:
    fma=N`` and the PTX's float16 conversions (``cvt=N``) to ``lines``.

    Run in a child process: device functions are compiled for a pretend
    device of compute capability ``cc``.
    """
    import re

    from numba import cuda

    import numba.cuda.dispatcher as dispatcher
    from fastact._backends import cuda as backend

    class PretendDevice:
        compute_capability = cc

    dispatcher.get_current_device = lambda: PretendDevice()
    backend._install_fma_switch()
    lines = []

    def compile_(kernel, sig, label):
        with backend._no_fma():
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
        fmas = len(re.findall(r"\bfma[.]rn", ptx))
        cvts = len(re.findall(r"\bcvt[.a-z]*[.]f16[.]|\bcvt[.a-z0-9]*[.]f16\b", ptx))
        lines.append(f"{label}: cvt={cvts} fma={fmas}")

    return compile_, lines


def _compile_every_kernel_to_ptx(cc=(9, 0)):
    """Type and compile each kernel with NVVM; return a report (ptx_compiler)."""
    from numba import types as t

    from fastact._backends import cuda as backend
    from fastact._registry import REGISTRY

    compile_, lines = ptx_compiler(cc)
    i64 = t.int64
    for dt, nbt in ((np.float32, t.float32), (np.float64, t.float64)):
        A1, A2, F64 = t.Array(nbt, 1, "C"), t.Array(nbt, 2, "C"), t.Array(t.float64, 1, "C")
        for name, spec in REGISTRY.items():
            if spec.kind == "elementwise":
                P = t.Tuple(tuple(t.uint64 if p == "key" else nbt for p in spec.params))
                for pass_ in spec.passes():
                    arrays = (A1, A1) if pass_ == "forward" else (A1, A1, A1)
                    compile_(backend._elementwise_kernel(name, pass_, dt), arrays + (P,),
                             f"{name} {pass_} {dt.__name__}")
        fwd, bwd, channel_sum = backend._prelu_kernels(dt)
        compile_(fwd, (A1, A1, A1, i64, i64), f"prelu forward {dt.__name__}")
        compile_(bwd, (A1, A1, A1, A1, F64) + (i64,) * 5, f"prelu backward {dt.__name__}")
        compile_(channel_sum, (F64, A1) + (i64,) * 4, f"prelu channel_sum {dt.__name__}")
        for name, spec in REGISTRY.items():
            if spec.kind == "rowwise":          # the softmax family
                sf, sb = backend._row_kernels(name, dt)
                compile_(sf, (A2, A2, i64), f"{name} forward {dt.__name__}")
                compile_(sb, (A2, A2, A2, i64), f"{name} backward {dt.__name__}")
        for name, spec in REGISTRY.items():
            if spec.kind == "gated":
                gf, gb = backend._gated_kernels(name, dt)
                compile_(gf, (A1, A1, i64), f"{name} forward {dt.__name__}")
                compile_(gb, (A1, A1, A1, i64), f"{name} backward {dt.__name__}")
        for kernel, what in zip(backend._copy_kernels(), ("gather", "scatter")):
            compile_(kernel, (A1, i64, t.UniTuple(i64, 3), t.UniTuple(i64, 3), A1),
                     f"{what} {dt.__name__}")
    return lines


def ptx_process(path):
    """``python path --ptx`` (a test file's compile_ lines, ptx_compiler):
    a child started early."""
    path = pathlib.Path(path).resolve()
    return EarlyProcess(f"cuda kernels compiled to ptx: {path.name}",
                        [sys.executable, path, "--ptx"], cwd=path.parent)


def ptx_report(child):
    """``{label: fma count}`` of ``child`` (ptx_process); a skip without NVVM."""
    probe = subprocess.run(
        [sys.executable, "-c", "from numba.cuda.cudadrv.nvvm import NVVM; NVVM()"],
        capture_output=True, text=True)
    if probe.returncode:
        pytest.skip("NVVM (CUDA toolkit) not found: "
                    + (probe.stderr.strip().splitlines() or ["?"])[-1])
    run = child.result()
    assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
    return dict(line.rsplit(" fma=", 1) for line in run.stdout.split("\n") if "fma=" in line)


#: every kernel compiled to PTX by NVVM (_compile_every_kernel_to_ptx)
PTX = ptx_process(__file__)


@pytest.mark.skipif(SIMULATED, reason="the simulator replaces the compiler")
@pytest.mark.early(PTX)
def test_every_kernel_compiles_to_ptx_without_fma_in_rrelu():
    """Catches typing errors of the real CUDA target on machines without a GPU."""
    report = ptx_report(PTX)
    specs = fastact._registry.REGISTRY.values()
    n = sum(len(s.passes()) for s in specs if s.kind == "elementwise")
    n += 2 * sum(s.kind in ("rowwise", "gated") for s in specs)
    assert len(report) == 2 * (n + 5), report
    # NVVM would contract lower + (upper - lower) * u into one FMA: the slopes
    # would then differ from the CPU backends'
    assert all(report[k] == "0" for k in report
               if k.startswith(("rrelu_train", "rrelu_div_train"))), report


# --- helpers -----------------------------------------------------------------------

def _cuda():
    from numba import cuda
    return cuda


def to_dev(a):
    return _cuda().to_device(np.ascontiguousarray(a))


def host(d):
    assert not isinstance(d, np.ndarray), "expected a device array back"
    return d.copy_to_host()


def _grad(shape, dtype, seed=2):
    g = np.random.default_rng(seed).standard_normal(shape) * 2
    g.reshape(-1)[:3] = [0.0, -0.0, 1.0]
    return g.astype(dtype)


# --- elementwise -------------------------------------------------------------------

@device
@dtypes
@pytest.mark.parametrize("pass_", ["forward", "backward"])
@pytest.mark.parametrize("op", ELEMENTWISE_OPS, ids=repr)
def test_elementwise(op, pass_, dtype):
    x = mixed_values(dtype, 70, seed=1).reshape(7, 10)
    if pass_ == "forward":
        ins = (x,)
        fn = op.fwd
    else:
        s = op.fwd(x, backend="numpy") if op.saves == "y" else x
        ins = (_grad(x.shape, dtype), s)
        fn = op.bwd
    got = fn(*[to_dev(a) for a in ins])
    assert got.shape == x.shape and got.dtype == dtype
    got = host(got)
    op.check(pass_, got, ins, f"cuda {op.id} {pass_}")


@device
@dtypes
@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("op,kw", [(op, kw) for op in GATED for kw in VARIANTS[op]])
def test_gated(op, kw, axis, dtype):
    """The gated family on the device: the oracle's bounds, and in place."""
    x = mixed_values(dtype, 96, seed=4).reshape(8, 12)
    g = _grad((4, 12) if axis == 0 else (8, 6), dtype)
    g = np.clip(g, -1, 1)            # g * v finite where v is (oracles_gated)
    f, fb = getattr(fastact, op), getattr(fastact, op + "_backward")
    y = f(to_dev(x), axis=axis, **kw)
    dx = fb(to_dev(g), to_dev(x), axis=axis, **kw)
    check_gated(op, x, g, host(y), host(dx), axis, f"cuda {op}", **kw)
    xd = to_dev(x)
    fb(to_dev(g), xd, axis=axis, out=xd, **kw)
    np.testing.assert_array_equal(xd.copy_to_host(), host(dx))


@device
@dtypes
@pytest.mark.parametrize("cpu_backend", ["numpy", "numba", "c"])
def test_rrelu_training_slopes_bit_identical_to_cpu(cpu_backend, dtype):
    st = fastact.backends()[cpu_backend]
    if not st["available"]:
        pytest.skip(f"backend {cpu_backend!r} unavailable: {st['reason']}")
    x = -np.abs(mixed_values(dtype, 300, seed=3)) - 1     # every slope shows
    g = _grad(x.shape, dtype)
    kw = dict(lower=0.05, upper=0.4, training=True, seed=2**40 + 11)
    a = host(fastact.rrelu(to_dev(x), **kw))
    assert_bitwise_equal(a, fastact.rrelu(x, backend=cpu_backend, **kw))
    assert_bitwise_equal(a, host(fastact.rrelu(to_dev(x), **kw)))        # deterministic
    assert not np.array_equal(a, host(fastact.rrelu(to_dev(x), **dict(kw, seed=12))))
    gb = host(fastact.rrelu_backward(to_dev(g), to_dev(x), **kw))
    assert_bitwise_equal(gb, fastact.rrelu_backward(g, x, backend=cpu_backend, **kw))
    if cpu_backend == "numpy":            # x = -1 shows each slope exactly
        from fastact import _registry, _rng
        slopes = _registry.reference_rrelu_slopes(x.size, _rng.seed_key(kw["seed"]),
                                                  0.05, 0.4, dtype)
        minus_one = to_dev(-np.ones(x.size, dtype))
        assert_bitwise_equal(-host(fastact.rrelu(minus_one, **kw)), slopes)


@device
@dtypes
def test_elu_backward_where_exp_alone_is_subnormal(dtype):
    # (g alpha) exp(x) is normal though exp(x) is not: one rounding, not a few bits
    x = np.array([-100.0, -90.0, -720.0, -740.0, -1e4, -np.inf, np.nan, -0.0, 2.0], dtype)
    g = np.full(x.shape, 1e300 if dtype == np.float64 else 1e30, dtype)
    got = host(fastact.elu_backward(to_dev(g), to_dev(x), 0.7))
    assert_ulp(got, oracle_elu_backward(g, x, 0.7), 4, "elu_backward, large gradient")
    # a huge gradient times a tiny alpha or a large one, and a subnormal
    # gradient times a huge alpha
    fi = np.finfo(dtype)
    x2 = np.array([-0.5, -3.0, -50.0, -100.0], dtype)
    cases = [(fi.max, 1e-20), (fi.max, 3.0), (fi.smallest_subnormal * 7, 1e20),
             (fi.smallest_subnormal * 12345, 1e300 if dtype == np.float64 else 1e30)]
    for gv, alpha in cases:
        g2 = np.full(x2.shape, gv, dtype)
        got = host(fastact.elu_backward(to_dev(g2), to_dev(x2), alpha))
        assert_ulp(got, oracle_elu_backward(g2, x2, alpha), 4, f"elu_backward g={gv} a={alpha}")


# --- softmax ---------------------------------------------------------------------

def _softmax_tol(dtype):
    # float64: x - m is rounded, and exp turns its error into up to |x - m|/2 ULP
    return 4 if dtype == np.float32 else 16


def _softmax_check(x, y, g, gx, axis):
    assert_ulp(y, oracle_softmax(x, axis), _softmax_tol(x.dtype), "cuda softmax")
    err = np.abs(gx.astype(np.longdouble) - oracle_softmax_backward(g, y, axis))
    assert np.all((err <= softmax_backward_bound(g, y, axis)) | np.isnan(gx)), err.max()


@device
@dtypes
@pytest.mark.parametrize("shape", [(4, 3), (3, 40), (2, 100), (37,)],
                         ids=["short-rows", "rows", "long-rows", "1d"])
def test_softmax(shape, dtype):
    x = (np.random.default_rng(4).standard_normal(shape) * 5).astype(dtype)
    y = host(fastact.softmax(to_dev(x)))
    g = _grad(shape, dtype)
    gx = host(fastact.softmax_backward(to_dev(g), to_dev(y)))
    _softmax_check(x, y, g, gx, -1)


@device
@dtypes
@pytest.mark.parametrize("axis", [0, 1, -3])
def test_softmax_other_axes(axis, dtype):
    x = (np.random.default_rng(5).standard_normal((3, 4, 5)) * 3).astype(dtype)
    y = host(fastact.softmax(to_dev(x), axis=axis))
    g = _grad(x.shape, dtype)
    gx = host(fastact.softmax_backward(to_dev(g), to_dev(y), axis=axis))
    _softmax_check(x, y, g, gx, axis)


@device
@dtypes
def test_softmax_edge_rows(dtype):
    inf, nan = np.inf, np.nan
    x = np.array([[1.0, nan, 2.0, 0.5],            # NaN: the whole row NaN
                  [-inf, -inf, -inf, -inf],       # all -inf: NaN (as PyTorch)
                  [-inf, 0.0, -inf, 1.0],         # some -inf: exact zeros there
                  [1e4, -1e4, 1e4 - 1, 0.0],      # far apart: the max shift
                  [inf, 0.0, 1.0, 2.0]], dtype)   # +inf: NaN, as the reference
    y = host(fastact.softmax(to_dev(x)))
    with np.errstate(all="ignore"):
        want = fastact.softmax(x, backend="numpy")
    assert np.array_equal(np.isnan(y), np.isnan(want))
    assert np.all(np.isnan(y[[0, 1, 4]]))
    assert y[2, 0] == 0 and y[2, 2] == 0
    assert_ulp(y[2:4], oracle_softmax(x[2:4]), _softmax_tol(dtype), "cuda softmax edge rows")


@device
def test_softmax_empty_and_0d():
    e = fastact.softmax(to_dev(np.empty((0, 3), np.float32)))
    assert e.shape == (0, 3)
    z = _cuda().to_device(np.array([[2.5]]))
    assert host(fastact.softmax(z))[0, 0] == 1.0


# --- prelu ------------------------------------------------------------------------

@device
@dtypes
@pytest.mark.parametrize("case", ["channels", "scalar-long-row", "last-axis", "odd-sizes"])
def test_prelu(case, dtype):
    rng = np.random.default_rng(6)
    shape, w, axis = {
        "channels": ((2, 3, 20), np.array([0.1, -0.2, 0.3]), 1),
        "scalar-long-row": ((3, 70), np.array([0.25]), 1),       # segments of 16 in the simulator
        "last-axis": ((5, 4), np.array([0.1, 0.2, 0.3, 0.4]), -1),
        # a grid stride that is no multiple of the row or of the channel period
        "odd-sizes": ((2, 4, 5, 7), np.array([0.1, 0.2, 0.3, 0.4, 0.5]), 2),
    }[case]
    x = rng.standard_normal(shape).astype(dtype)
    x.reshape(-1)[:2] = [0.0, -0.0]
    w = w.astype(dtype)
    g = _grad(shape, dtype)
    y = host(fastact.prelu(to_dev(x), to_dev(w), axis=axis))
    assert_bitwise_equal(y, fastact.prelu(x, w, axis=axis, backend="numpy"))
    gx, gw = fastact.prelu_backward(to_dev(g), to_dev(x), to_dev(w), axis=axis)
    rx, rw = fastact.prelu_backward(g, x, w, axis=axis, backend="numpy")
    assert_bitwise_equal(host(gx), rx)
    assert gw.shape == w.shape
    # terms g*x are rounded to the dtype and summed in float64 (as the numba backend)
    np.testing.assert_allclose(host(gw), rw, rtol=4 * np.finfo(dtype).eps,
                               atol=8 * np.finfo(dtype).eps * np.abs(g * x).sum())


@device
@dtypes
def test_infinite_sums_stay_infinite(dtype):
    """A sum that reaches +-inf is that infinity, as on the CPU backends: the
    compensated sums' error terms (inf - inf there) are dropped, not added
    (they turned the weight gradient and the softmax dot product into NaN)."""
    inf, big = np.inf, np.finfo(dtype).max
    # prelu: an x of -inf, and terms g * x that overflow; short and long rows
    for x, w in ((np.array([[1.0, -inf, 2.0], [-1.0, -2.0, 0.5]], dtype), np.ones(3, dtype)),
                 (np.full((2, 1, 40), -big / 4, dtype), np.ones(1, dtype))):
        g = np.full(x.shape, 8.0, dtype)
        gw = host(fastact.prelu_backward(to_dev(g), to_dev(x), to_dev(w))[1])
        with np.errstate(all="ignore"):
            want = fastact.prelu_backward(g, x, w, backend="numpy")[1]
        inf_at = np.isinf(want)
        assert inf_at.any() and np.array_equal(np.isinf(gw), inf_at)
        assert np.array_equal(gw[inf_at], want[inf_at])
        np.testing.assert_allclose(gw[~inf_at], want[~inf_at], rtol=8 * np.finfo(dtype).eps)
    # softmax backward: an infinite g makes the dot product +inf
    y = fastact.softmax(np.array([[0.0, 1.0, 2.0, 3.0]], dtype), backend="numpy")
    g = np.array([[inf, 1.0, 1.0, 1.0]], dtype)
    got = host(fastact.softmax_backward(to_dev(g), to_dev(y)))
    with np.errstate(all="ignore"):
        want = fastact.softmax_backward(g, y, backend="numpy")
    assert np.array_equal(got, want, equal_nan=True)           # [nan, -inf, -inf, -inf]


# --- plumbing: out=, layouts, interop, streams, errors -------------------------------

@device
def test_out_on_device_and_in_place():
    x = mixed_values(np.float32, 50, seed=7)
    dx = to_dev(x)
    out = _cuda().device_array(x.shape, np.float32)
    r = fastact.sigmoid(dx, out=out)
    assert r is out
    assert_ulp(host(out), fastact.sigmoid(x, backend="numpy"), 4, "out=")
    r = fastact.relu(dx, out=dx)              # in place
    assert r is dx
    assert_bitwise_equal(host(dx), fastact.relu(x, backend="numpy"))


@device
def test_strided_device_views_in_and_out():
    base = np.arange(-24, 24, dtype=np.float64).reshape(4, 12) / 7
    d = to_dev(base)
    view = d[:, ::3]                          # non-contiguous input: gathered
    got = host(fastact.elu(view))
    assert_ulp(got, fastact.elu(base[:, ::3], backend="numpy"), 4, "strided in")
    out_base = _cuda().to_device(np.zeros((4, 12)))
    fastact.relu(to_dev(base[:, ::3]), out=out_base[:, 1::3])     # scattered
    want = np.zeros((4, 12))
    want[:, 1::3] = np.maximum(base[:, ::3], 0)
    assert_bitwise_equal(host(out_base), want)
    sm = host(fastact.softmax(d[::-1, ::2], axis=0))              # negative strides
    assert_ulp(sm, oracle_softmax(base[::-1, ::2], 0), 16, "negative strides")


@device
def test_foreign_interface_arrays_are_used_without_copy():
    x = np.array([-1.0, 2.0, -3.0], np.float32)
    buf = x.copy() if SIMULATED else None
    if not SIMULATED:
        pytest.skip("the foreign-array stand-in holds host memory: simulator only")
    foreign = _ForeignDeviceArray(buf)
    r = fastact.relu(foreign, out=foreign)
    assert r is foreign
    assert_bitwise_equal(buf, np.array([0.0, 2.0, 0.0], np.float32))   # written in place


@device
def test_stream_argument():
    cuda = _cuda()
    s = cuda.stream()
    x = mixed_values(np.float64, 40, seed=8)
    y = fastact.leaky_relu(to_dev(x), 0.2, stream=s)
    s.synchronize()
    assert_bitwise_equal(host(y), fastact.leaky_relu(x, 0.2, backend="numpy"))


@device
def test_mixing_host_and_device_is_a_type_error():
    x = np.ones(4, np.float32)
    dx = to_dev(x)
    with pytest.raises(TypeError, match="cannot mix device arrays"):
        fastact.relu_backward(x, dx)
    with pytest.raises(TypeError, match="device array"):
        fastact.relu(dx, out=np.empty(4, np.float32))
    with pytest.raises(TypeError, match="weight must be one too.*never copies"):
        fastact.prelu(dx, np.array([0.1], np.float32))
    with pytest.raises(TypeError, match="weight must be one too"):
        fastact.prelu(dx, 0.1)
    with pytest.raises(TypeError, match="weight is a device array but x is a host array"):
        fastact.prelu(x, to_dev(np.array([0.1], np.float32)))
    with pytest.raises(TypeError, match="'cuda' backend"):
        fastact.relu(dx, backend="numba")
    with pytest.raises(TypeError, match="host arrays"):
        fastact.relu(x, backend="cuda")


@device
def test_result_kind_follows_input():
    from fastact._backends.cuda import DeviceArrays
    dx = to_dev(np.ones(3, np.float32))
    assert DeviceArrays.wrap(dx, dx) is dx
    assert isinstance(fastact.relu(dx), type(dx))


if __name__ == "__main__" and sys.argv[1:] == ["--ptx"]:
    print("\n".join(_compile_every_kernel_to_ptx()))
