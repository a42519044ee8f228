"""Property tests: random shapes, strides and values, every fast backend against the
reference (bit-exact ops) or the high-precision oracles (ULP-bounded ops)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import fastact
from conftest import (ELEMENTWISE_OPS, assert_bitwise_equal, assert_ulp, contiguous_copy, oracle_softmax,
                      require_backend)

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FAST = [b for b in ("numba", "c")]


@st.composite
def strided_arrays(draw, dtype, finite=False, min_dims=0):
    """An array with random shape, then a random view of it: steps (negative too),
    a transpose, or a broadcast."""
    dt = np.dtype(dtype)
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=4, min_side=0, max_side=6))
    elements = st.floats(width=32 if dt == np.float32 else 64, allow_nan=not finite,
                         allow_infinity=not finite, allow_subnormal=True)
    if finite:
        elements = st.floats(-60, 60, width=32 if dt == np.float32 else 64)
    a = draw(hnp.arrays(dt, shape, elements=elements))
    kind = draw(st.sampled_from(["plain", "steps", "transpose", "broadcast"]))
    if kind == "steps" and a.ndim:
        steps = draw(st.lists(st.sampled_from([1, 2, -1, -2]), min_size=a.ndim, max_size=a.ndim))
        a = a[tuple(slice(None, None, s) for s in steps)]
    elif kind == "transpose" and a.ndim > 1:
        a = a.transpose(draw(st.permutations(range(a.ndim))))
    elif kind == "broadcast":
        a = np.broadcast_to(a, (2,) + a.shape)
    return a


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("op", ELEMENTWISE_OPS, ids=repr)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_elementwise_property(backend, op, dtype):
    require_backend(backend)

    @SETTINGS
    @given(data=st.data())
    def check(data):
        x = data.draw(strided_arrays(dtype))
        g = np.asarray(data.draw(hnp.arrays(np.dtype(dtype), x.shape,
                                            elements=st.floats(-8, 8, width=np.dtype(dtype).itemsize * 8))))
        s = x if op.saves == "x" else op.fwd(x, backend="numpy")
        xc = contiguous_copy(x)
        sc = contiguous_copy(s)
        y = op.fwd(x, backend=backend)
        gx = op.bwd(g, s, backend=backend)
        assert y.shape == x.shape and gx.shape == x.shape
        op.check("forward", y, (xc,))
        op.check("backward", gx, (g, sc))

    check()


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_softmax_property(backend, dtype):
    require_backend(backend)

    @SETTINGS
    @given(data=st.data())
    def check(data):
        x = data.draw(strided_arrays(dtype, finite=True))
        axis = data.draw(st.integers(-max(x.ndim, 1), max(x.ndim, 1) - 1))
        y = fastact.softmax(x, axis=axis, backend=backend)
        assert y.shape == x.shape and y.dtype == dtype
        assert_ulp(y, oracle_softmax(contiguous_copy(x), axis=axis),
                   4 if dtype == np.float32 else 64, f"softmax axis={axis}")

    check()


@pytest.mark.parametrize("backend", FAST)
def test_prelu_property(backend):
    require_backend(backend)

    @SETTINGS
    @given(data=st.data())
    def check(data):
        dtype = data.draw(st.sampled_from([np.float32, np.float64]))
        x = data.draw(strided_arrays(dtype, finite=True, min_dims=2))
        axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
        C = x.shape[axis]
        w = np.asarray(data.draw(hnp.arrays(np.dtype(dtype), (C,),
                                            elements=st.floats(0, 1, width=np.dtype(dtype).itemsize * 8))))
        if C == 1:
            w = w.reshape(1)
        g = np.ones(x.shape, dtype)
        y = fastact.prelu(x, w, axis=axis, backend=backend)
        assert_bitwise_equal(y, fastact.prelu(contiguous_copy(x), w, axis=axis, backend="numpy"))
        gx, gw = fastact.prelu_backward(g, x, w, axis=axis, backend=backend)
        rx, rw = fastact.prelu_backward(g, contiguous_copy(x), w, axis=axis, backend="numpy")
        assert_bitwise_equal(gx, rx)
        np.testing.assert_allclose(gw, rw, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-30)

    check()
