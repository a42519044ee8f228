"""float16 and bfloat16 device arrays on the CUDA backend (issue #15).

Every elementwise op, both passes, the softmax family, PReLU and the gated
units on narrow device arrays against the host's NumPy reference (within 1
ULP of the narrow type; the ReLU family and RReLU bit for bit, RReLU's
training slopes included), on special values; PyTorch's ``'<V2'`` bfloat16
interface; dtype mixes refused; and one kernel of each kind compiled to
PTX for both types.  As tests/test_cuda.py: without a GPU the device tests
run under numba's CUDA simulator in a child process, on small arrays.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import fastact
from conftest import ELEMENTWISE_OPS, REGISTRY_OPS
from fastact import _narrow
from test_cuda import ptx_compiler, ptx_process, ptx_report, run_under_simulator, simulator_suite
from test_narrow import NARROW, _close, _values, check_against_reference, check_rowwise

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM", "") == "1"
STATUS = fastact.backends()["cuda"]
device = pytest.mark.skipif(not STATUS["available"],
                            reason=f"cuda backend unavailable: {STATUS['reason']}")
narrow = pytest.mark.parametrize("dtype", NARROW)
#: the hand-written ops in both narrow dtypes, the catalogue's in one each,
#: alternating (the conversions and loops are the same for every op, and
#: each op's float32 formula runs in tests/test_cuda.py): the simulator's time
OP_DTYPES = [pytest.param(op, p.values[0], id=f"{op.id}-{p.id}", marks=p.marks)
             for op in ELEMENTWISE_OPS[:len(ELEMENTWISE_OPS) - len(REGISTRY_OPS)] for p in NARROW]
OP_DTYPES += [pytest.param(op, NARROW[k % 2].values[0], id=f"{op.id}-{NARROW[k % 2].id}",
                           marks=NARROW[k % 2].marks) for k, op in enumerate(REGISTRY_OPS)]


SIMULATOR_SUITE = simulator_suite(__file__)


@pytest.mark.skipif(STATUS["available"] or SIMULATED, reason="runs the suite on a device here")
@pytest.mark.early(SIMULATOR_SUITE)
def test_device_suite_under_simulator():
    run_under_simulator(SIMULATOR_SUITE, len(OP_DTYPES) + 10)


def _compile_narrow_kernels_to_ptx():
    """One kernel of each kind (elementwise, rows, PReLU, gated, layout
    copies) for float16 and bfloat16 bits, compiled with NVVM."""
    from numba import types as t

    from fastact._backends import cuda as backend
    compile_, lines = ptx_compiler()
    U1, U2, F32 = t.Array(t.uint16, 1, "C"), t.Array(t.uint16, 2, "C"), t.Array(t.float32, 1, "C")
    F64, i64 = t.Array(t.float64, 1, "C"), t.int64
    for dt in NARROW:
        dt = dt.values[0]
        if dt is None:
            continue
        T = dt.type
        for name, params in (("elu", (t.float32,)),
                             ("rrelu_train", (t.uint64, t.float32, t.float32))):
            P = t.Tuple(params)
            compile_(backend._elementwise_kernel(name, "forward", T), (U1, U1, P),
                     f"{name} forward {dt.name}")
            compile_(backend._elementwise_kernel(name, "backward", T), (U1, U1, U1, P),
                     f"{name} backward {dt.name}")
        for name in ("softmax", "log_softmax"):
            sf, sb = backend._row_kernels(name, T)
            compile_(sf, (U2, U2, i64), f"{name} forward {dt.name}")
            compile_(sb, (U2, U2, U2, i64), f"{name} backward {dt.name}")
        for W, wdt in ((U1, T), (F32, np.float32)):
            fwd, bwd, channel_sum = backend._prelu_kernels(T, wdt)
            w = np.dtype(wdt).name
            compile_(fwd, (U1, W, U1, i64, i64), f"prelu forward {dt.name} w {w}")
            compile_(bwd, (U1, U1, W, U1, F64) + (i64,) * 5, f"prelu backward {dt.name} w {w}")
            compile_(channel_sum, (F64, W) + (i64,) * 4, f"prelu channel_sum {dt.name} w {w}")
        gf, gb = backend._gated_kernels("swiglu", T)
        compile_(gf, (U1, U1, i64), f"swiglu forward {dt.name}")
        compile_(gb, (U1, U1, U1, i64), f"swiglu backward {dt.name}")
    gather, _ = backend._copy_kernels()
    compile_(gather, (U1, i64, t.UniTuple(i64, 2), t.UniTuple(i64, 2), U1), "gather uint16")
    return lines


PTX = ptx_process(__file__)


@pytest.mark.skipif(SIMULATED, reason="the simulator replaces the compiler")
@pytest.mark.early(PTX)
def test_narrow_kernels_compile_to_ptx():
    """The real target's typing of the narrow kernels; their conversions
    are integer code (no PTX float16 cvt, whose NaN bits nothing pins to
    the host's), and RReLU's slopes are not contracted into FMAs."""
    report = ptx_report(PTX)
    per_dtype = 4 + 4 + 6 + 2
    assert len(report) == 2 * per_dtype + 1, report
    assert all(k.endswith("cvt=0") for k in report), report
    assert all(v == "0" for k, v in report.items() if k.startswith("rrelu_train")), report


# --- helpers -----------------------------------------------------------------------

def to_dev(a):
    from numba import cuda
    return cuda.to_device(np.ascontiguousarray(a))


def host(d):
    assert not isinstance(d, np.ndarray), "expected a device array back"
    return d.copy_to_host()


def _on_device(fn, *arrays, **kw):
    """``fn`` on device copies of ``arrays``; its results copied back."""
    res = fn(*[to_dev(a) if isinstance(a, np.ndarray) else a for a in arrays], **kw)
    return tuple(map(host, res)) if isinstance(res, tuple) else host(res)


# --- every op ------------------------------------------------------------------------

@device
@pytest.mark.parametrize("op,dtype", OP_DTYPES)
def test_elementwise(op, dtype):
    """Forward and backward on specials (+-0, +-inf, NaN, the largest
    finite, subnormals) among random values."""
    x = _values(dtype, 25, seed=3)            # 32 values: one simulated block
    g = _narrow.narrowed(np.random.default_rng(1).standard_normal(x.size).astype(np.float32),
                         dtype)
    got = _on_device(op.fwd, x)
    assert got.dtype == dtype
    check_against_reference(op, "forward", got, op.fwd(x, backend="numpy"), None, dtype)
    s = op.fwd(x, backend="numpy") if op.saves == "y" else x
    got = _on_device(op.bwd, g, s)
    assert got.dtype == dtype
    check_against_reference(op, "backward", got, op.bwd(g, s, backend="numpy"), g, dtype)


@device
@narrow
def test_rowwise_ops(dtype):
    check_rowwise(dtype, _on_device, shape=(3, 8))


@device
@narrow
def test_rrelu_training_slopes_are_the_hosts(dtype):
    """Every element negative: each shows its slope, the float32
    generator's, as on the host backends."""
    x = _narrow.narrowed(-np.linspace(0.5, 4, 200, dtype=np.float32), dtype)
    kw = dict(lower=0.05, upper=0.4, training=True, seed=2**40 + 11)
    got = _on_device(fastact.rrelu, x, **kw)
    for backend in ("numpy", "c"):
        if fastact.backends()[backend]["available"]:
            want = fastact.rrelu(x, backend=backend, **kw)
            assert np.array_equal(got.view(np.uint16), want.view(np.uint16)), backend
    assert not np.array_equal(got.view(np.uint16),
                              _on_device(fastact.rrelu, x, **dict(kw, seed=12)).view(np.uint16))


@device
@narrow
def test_conversions_keep_nans_and_subnormals(dtype):
    """relu passes every non-negative bit pattern through, quiet NaNs with
    their payloads; sigmoid far left gives subnormal results (bfloat16:
    x <= -89), not 0."""
    bits = np.array([0x0000, 0x0001, 0x0003, 0x03FF, 0x7BFF, 0x7C00, 0x7E00, 0x7E55,
                     0x7F7F, 0x7F80, 0x7FC0, 0x7FD5, 0x8000], np.uint16)
    x = bits.view(dtype)
    got = _on_device(fastact.relu, x).view(np.uint16)
    want = fastact.relu(x, backend="numpy").view(np.uint16)
    assert np.array_equal(got, want), (got, want)
    v = np.float32([-89.0, -90.0, -92.0] if dtype != np.float16 else [-10.0, -12.0, -16.0])
    xs = _narrow.narrowed(v, dtype)
    y = _on_device(fastact.sigmoid, xs)
    smallest_normal = 2.0 ** -14 if dtype == np.float16 else 2.0 ** -126
    assert ((_narrow.widen(y) > 0) & (_narrow.widen(y) < smallest_normal)).all(), y
    _close(y, fastact.sigmoid(xs, backend="numpy"), dtype, "sigmoid, subnormal results")


# --- array kinds ---------------------------------------------------------------------

class _Foreign:
    """A device array of another library (CuPy, PyTorch): host memory
    standing for device memory (simulator only), its interface's typestr
    ``typestr``, its ``dtype`` as that library names it."""

    def __init__(self, host, typestr, dtype):
        self.host, self.dtype, self.shape = host, dtype, host.shape
        self.__cuda_array_interface__ = {
            "shape": host.shape, "typestr": typestr, "strides": None,
            "data": (host.__array_interface__["data"][0], False), "version": 3}


def _torch_like(host, typestr, dtype):
    """A _Foreign whose type's module is torch's: results come back as
    torch tensors (on the CPU here: the simulator's memory is the host's)."""
    torch = pytest.importorskip("torch")
    cls = type("CudaTensor", (_Foreign,), {"__module__": "torch", "device": torch.device("cpu")})
    return cls(host, typestr, dtype)


@device
def test_torch_bfloat16_exports_v2():
    if not SIMULATED:
        pytest.skip("the stand-ins hold host memory: simulator only")
    torch = pytest.importorskip("torch")
    bf16 = NARROW[1].values[0]
    if bf16 is None:
        pytest.skip("ml_dtypes is not installed")
    x = _values(bf16, 20, seed=5)
    buf = x.copy()
    t = _torch_like(buf.view(np.int16), "<V2", torch.bfloat16)
    y = fastact.sigmoid(t)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.bfloat16
    _close(y.view(torch.int16).numpy().view(bf16), fastact.sigmoid(x, backend="numpy"), bf16,
           "torch bfloat16")
    assert fastact.relu(t, out=t) is t                       # in place, through '<V2'
    assert np.array_equal(buf.view(np.uint16), fastact.relu(x, backend="numpy").view(np.uint16))
    # '<V2' that nothing names bfloat16: an unsupported dtype, not a guess
    with pytest.raises(TypeError, match="dtype"):
        fastact.relu(_Foreign(buf.view(np.int16), "<V2", np.dtype("V2")))


@device
def test_float16_of_other_kinds():
    if not SIMULATED:
        pytest.skip("the stand-ins hold host memory: simulator only")
    x = _values(np.dtype(np.float16), 20, seed=6)
    buf = x.copy()
    foreign = _Foreign(buf, "<f2", np.dtype(np.float16))           # CuPy's float16 alike
    assert fastact.relu(foreign, out=foreign) is foreign
    assert np.array_equal(buf.view(np.uint16), fastact.relu(x, backend="numpy").view(np.uint16))
    torch = pytest.importorskip("torch")
    t = _torch_like(x.copy(), "<f2", torch.float16)
    y = fastact.elu(t, 0.5)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float16
    _close(y.numpy(), fastact.elu(x, 0.5, backend="numpy"), np.dtype(np.float16), "torch float16")


@device
@narrow
def test_strided_views_in_and_out(dtype):
    from numba import cuda
    base = _values(dtype, 41, seed=7)[:48].reshape(4, 12)
    d = to_dev(base)
    _close(host(fastact.sigmoid(d[:, ::3])), fastact.sigmoid(base[:, ::3], backend="numpy"),
           dtype, "strided in")
    out = cuda.to_device(np.zeros((4, 12), dtype))
    fastact.relu(to_dev(base[:, ::3]), out=out[:, 1::3])        # scattered
    want = np.zeros((4, 12), dtype)
    want[:, 1::3] = fastact.relu(base[:, ::3], backend="numpy")
    assert np.array_equal(host(out).view(np.uint16), want.view(np.uint16))


@device
@narrow
def test_one_dtype_per_call(dtype):
    x = to_dev(_values(dtype, 10)[:10])
    with pytest.raises(TypeError, match=f"float32 but grad has dtype {dtype.name}"):
        fastact.relu_backward(x, to_dev(np.zeros(10, np.float32)))
    with pytest.raises(TypeError, match=f"out has dtype float32, expected {dtype.name}"):
        fastact.sigmoid(x, out=to_dev(np.zeros(10, np.float32)))
    with pytest.raises(TypeError, match=f"weight has dtype float64 but x has dtype {dtype.name}"):
        fastact.prelu(to_dev(np.zeros((2, 5), dtype)), to_dev(np.ones(5)))
    other = NARROW[0 if dtype != np.float16 else 1].values[0]
    if other is not None:
        with pytest.raises(TypeError, match=f"has dtype {other.name} but grad has dtype "
                                            f"{dtype.name}"):
            fastact.sigmoid_backward(x, to_dev(np.zeros(10, other)))


if __name__ == "__main__" and sys.argv[1:] == ["--ptx"]:
    print("\n".join(_compile_narrow_kernels_to_ptx()))
