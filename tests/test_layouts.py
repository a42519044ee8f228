"""Elementwise ops on dense layouts other than C order (F order, permuted
3-D arrays): walked in memory order without copying the inputs, the result
in the input's layout (NumPy's ``order="K"``), the same bits as the
contiguous call."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import fastact
from conftest import (ALL_CALLS, DTYPES, SINGLE_OUTPUT_CALLS, assert_bitwise_equal,
                      mixed_values)

DENSE = {
    "fortran": lambda a: np.asfortranarray(a),
    "permuted": lambda a: np.ascontiguousarray(a.transpose(2, 0, 1)).transpose(1, 2, 0),
    "transposed": lambda a: np.ascontiguousarray(a.T).T,
}
#: the ops whose slopes are keyed by the C-order index take the copy path
KEYED = {"rrelu", "rrelu_backward"}


def _inputs(n_in, dtype, layout):
    base = mixed_values(dtype, 4 * 6 * 10, seed=3).reshape(4, 6, 10)
    g = np.random.default_rng(4).standard_normal((4, 6, 10)).astype(dtype)
    arrays = (base,) if n_in == 1 else (g, base)
    return [DENSE[layout](a) for a in arrays]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("layout", list(DENSE))
@pytest.mark.parametrize("name", sorted(SINGLE_OUTPUT_CALLS))
def test_dense_layouts_keep_layout_and_bits(host_backend, name, layout, dtype):
    fn, n_in = ALL_CALLS[name]
    ins = _inputs(n_in, dtype, layout)
    with np.errstate(all="ignore"):
        got = fn(*ins, backend=host_backend)
        want = fn(*[np.ascontiguousarray(a) for a in ins], backend=host_backend)
    assert_bitwise_equal(got, want)
    if name not in KEYED and not name.startswith(("softmax", "prelu")):
        assert got.strides == ins[-1].strides, (got.strides, ins[-1].strides)
    # out= in the same layout is written directly, in place too
    out = np.empty_like(ins[-1])
    with np.errstate(all="ignore"):
        assert fn(*ins, out=out, backend=host_backend) is out
        assert_bitwise_equal(out, want)
        if n_in == 1 or name in KEYED:
            return
        inplace = ins[-1].copy(order="K")
        fn(ins[0], inplace, out=inplace, backend=host_backend)
    assert_bitwise_equal(inplace, want)


@pytest.mark.parametrize("backend", ["numba", "c"])
def test_transposed_input_is_not_copied(backend):
    """sigmoid(x.T) and sigmoid_backward(g.T, y.T) allocate the result only."""
    from conftest import require_backend
    require_backend(backend)
    x = np.random.default_rng(0).standard_normal((1024, 512)).astype(np.float32)
    g = np.ones_like(x)
    fastact.sigmoid(x.T, backend=backend)                 # compiled, pools started
    fastact.sigmoid_backward(g.T, x.T, backend=backend)
    for call in (lambda: fastact.sigmoid(x.T, backend=backend),
                 lambda: fastact.sigmoid_backward(g.T, x.T, backend=backend)):
        tracemalloc.start()
        y = call()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert y.flags.f_contiguous
        assert peak < 1.25 * x.nbytes, (peak, x.nbytes)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("shape,axis", [((7, 33, 5), 1), ((5, 130), 0), ((3, 4, 5, 6), 1),
                                        ((3, 4, 5, 6), 2), ((200, 300), 0), ((1, 9, 1), 1)])
@pytest.mark.parametrize("op", ["softmax", "softmin"])
def test_softmax_family_along_a_middle_axis(host_backend, op, shape, axis, dtype):
    """The softmax family along a non-last axis (Numba: the inner-axis
    kernels, no transpose) within the bounds of the last axis: columns with
    a NaN, only -inf, a 1e4 spread, mixed values."""
    from conftest import (assert_ulp, oracle_softmax, oracle_softmax_backward,
                          softmax_backward_bound)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    xm = np.moveaxis(x, axis, -1)
    if xm.shape[-1] > 2 and xm.shape[0] > 2:
        xm[0, ..., 1] = np.nan                     # a column (row along axis) with a NaN
        xm[1, ...] = -np.inf                       # columns of -inf only
        xm[2, ..., 0] = 1e4                        # a huge spread
    f, fb = getattr(fastact, op), getattr(fastact, op + "_backward")
    y = f(x, axis=axis, backend=host_backend)
    sgn = -1 if op == "softmin" else 1
    with np.errstate(all="ignore"):
        # the row-wise suite's bound (tests/test_core_rowwise.py: 16 ULP in
        # float64, where the C backend's rows reach 6)
        assert_ulp(y, oracle_softmax(sgn * x, axis=axis), 4 if dtype == np.float32 else 16,
                   f"{op} axis {axis}")
    g = rng.standard_normal(shape).astype(dtype)
    gx = fb(g, y, axis=axis, backend=host_backend)
    with np.errstate(all="ignore"):
        want = sgn * oracle_softmax_backward(g, y, axis=axis)
        bound = softmax_backward_bound(g, y, axis=axis)
    ok = (np.isnan(gx) & np.isnan(want)) | (np.abs(gx.astype(np.longdouble) - want) <= bound)
    assert ok.all(), (gx[~ok][:4], want[~ok][:4])
    # the same bits as the reference's layout path where the kernels agree
    assert y.shape == x.shape and gx.shape == x.shape
