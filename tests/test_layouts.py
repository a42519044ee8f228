"""Elementwise ops on layouts other than C order: dense ones (F order,
permuted 3-D arrays) walked in memory order, the others (steps, negative
and zero strides, operands of different layouts, empty and 0-d arrays)
through the N-d walk of fastact._walk; no input copied, the result in the
inputs' layout (NumPy's ``order="K"``), the same bits as the contiguous
call."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import fastact
from conftest import (ALL_CALLS, DTYPES, SINGLE_OUTPUT_CALLS, assert_bitwise_equal,
                      contiguous_copy, mixed_values, require_backend)

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


# --- any strides: the N-d walk ------------------------------------------------------

def _view(kind, values, dtype, shape):
    """A view of ``shape`` of the kind ``kind`` holding ``values`` (cycled)."""
    def take(*dims):
        return np.resize(np.asarray(values, dtype), int(np.prod(dims))).reshape(dims)
    *outer, n = shape
    if kind == "c":
        return take(*shape)
    if kind == "steps":                    # every other row block, every third column
        return take(*outer[:-1], 2 * outer[-1], 3 * n)[..., ::2, 1::3]
    if kind == "negative":                 # backwards along the first and last axes
        return take(*outer, 2 * n)[::-1, ..., ::-2]
    if kind == "reversed":                 # unit steps backwards
        return take(*shape)[..., ::-1, ::-1]
    if kind == "broadcast":                # one row for all (zero outer strides)
        return np.broadcast_to(take(n), shape)
    if kind == "column":                   # zero inner stride
        return np.broadcast_to(take(*outer, 1), shape)
    if kind == "transposed":
        return take(*shape[::-1]).T
    raise ValueError(kind)


#: layout classes: (the gradient's kind, the saved array's, a forward's x) and the shape
STRIDED = {
    "steps": (("steps", "steps"), (4, 5, 6)),
    "negative": (("negative", "negative"), (4, 5, 6)),
    "broadcast": (("broadcast", "column"), (4, 5, 6)),
    "mixed": (("c", "transposed"), (4, 5, 6)),
    "mixed_steps": (("transposed", "negative"), (4, 5, 6)),
    "empty": (("steps", "negative"), (0, 5, 6)),
    "0d": (("c", "c"), ()),
}
#: every layout class for these; one each, in turn, for the other calls
SAMPLED = ("sigmoid", "sigmoid_backward", "elu_backward", "leaky_relu")
ELEMENTWISE_CALLS = sorted(n for n in SINGLE_OUTPUT_CALLS
                           if not n.startswith(("softmax", "prelu")))


def _strided_cases():
    cases, k = [], 0
    for name in ELEMENTWISE_CALLS:
        if name in SAMPLED:
            cases += [(name, layout) for layout in STRIDED]
        else:
            cases.append((name, list(STRIDED)[k % len(STRIDED)]))
            k += 1
    return cases


def _strided_inputs(n_in, dtype, layout):
    kinds, shape = STRIDED[layout]
    if not shape:
        x = np.array(mixed_values(dtype, 1, seed=3)[0])
        return [x] if n_in == 1 else [np.array(dtype(-1.5)), x]
    g = _view(kinds[0], np.random.default_rng(4).standard_normal(300), dtype, shape)
    x = _view(kinds[1], mixed_values(dtype, 300, seed=3), dtype, shape)
    return [x] if n_in == 1 else [g, x]


def _strided_out(shape, dtype):
    """A view with negative steps into a NaN-filled buffer (for ``out=``),
    and the buffer's elements it leaves out (which must stay NaN)."""
    if not shape:
        buf = np.full(3, np.nan, dtype)
        return buf[1:2].reshape(()), buf[::2]
    buf = np.full(shape[:-1] + (2 * shape[-1],), np.nan, dtype)
    return buf[..., ::-2], buf[..., -2::-2]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name,layout", _strided_cases())
@pytest.mark.parametrize("backend", ["c", "numba"])
def test_strided_layouts_give_the_contiguous_bits(backend, name, layout, dtype):
    """Steps, negative and zero strides, a gradient and a saved array of
    different layouts, empty and 0-d arrays: the bits of the call on
    C-contiguous copies; ``out=`` with negative steps written in place."""
    require_backend(backend)
    fn, n_in = ALL_CALLS[name]
    ins = _strided_inputs(n_in, dtype, layout)
    with np.errstate(all="ignore"):
        want = fn(*[contiguous_copy(a) for a in ins], backend=backend)
        got = fn(*ins, backend=backend)
        assert_bitwise_equal(got, want)
        assert all(s >= 0 for s in got.strides)
        out, rest = _strided_out(want.shape, want.dtype)
        assert fn(*ins, out=out, backend=backend) is out
    assert_bitwise_equal(out, want)
    assert np.isnan(rest).all()


def _big(kind, dtype, shape=(260, 280)):
    """Views of about 2**16 elements (past the parallel thresholds)."""
    rng = np.random.default_rng(7)
    g = rng.standard_normal(shape).astype(dtype)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    if kind == "steps":
        return (np.repeat(g, 2, axis=1)[:, ::2], np.repeat(x, 2, axis=1)[:, 1::2])
    if kind == "mixed":               # a transposed saved array: gathered by columns
        return g, np.ascontiguousarray(x.T).T
    if kind == "reversed":            # the output walked backwards: scattered
        return g[::-1, ::-1], x[::-1, ::-1]
    if kind == "column":              # zero inner stride
        return g, np.broadcast_to(x[:, :1], shape)
    if kind == "short_rows":          # rows of 3: whole tiles in one run
        wide = np.resize(x, (24000, 6))
        return np.resize(g, (24000, 3)), wide[:, ::2]
    raise ValueError(kind)


#: the walk kernels compiled (Numba: one compile each): unary, binary, with
#: a parameter, both dtypes
BIG_CALLS = [("sigmoid", np.float32), ("sigmoid_backward", np.float32),
             ("elu_backward", np.float64), ("leaky_relu", np.float64)]


@pytest.mark.parametrize("kind", ["steps", "mixed", "reversed", "column", "short_rows"])
@pytest.mark.parametrize("name,dtype", BIG_CALLS, ids=[n for n, _ in BIG_CALLS])
@pytest.mark.parametrize("backend", ["c", "numba"])
def test_big_strided_walks_give_the_contiguous_bits(backend, name, dtype, kind):
    """The parallel walk kernels (tiles, gathers by rows and by columns,
    scattered outputs, packed short rows) against the contiguous call."""
    require_backend(backend)
    fn, n_in = ALL_CALLS[name]
    g, x = _big(kind, dtype)
    ins = [x] if n_in == 1 else [g, x]
    with np.errstate(all="ignore"):
        want = fn(*[contiguous_copy(a) for a in ins], backend=backend)
        assert_bitwise_equal(fn(*ins, backend=backend), want)
        out = np.full(want.shape[::-1], np.nan, want.dtype).T      # out= transposed
        fn(*ins, out=out, backend=backend)
    assert_bitwise_equal(out, want)


@pytest.mark.parametrize("backend", ["numba", "c"])
def test_strided_inputs_are_not_copied(backend):
    """sigmoid(x.T), sigmoid_backward(g.T, y.T), sigmoid(x[:, ::2]) and
    sigmoid_backward(g, y.T) allocate the result only."""
    require_backend(backend)
    x = np.random.default_rng(0).standard_normal((1024, 512)).astype(np.float32)
    g = np.ones_like(x)
    yT = np.ascontiguousarray(x.T).T
    calls = [(lambda: fastact.sigmoid(x.T, backend=backend), "F"),
             (lambda: fastact.sigmoid_backward(g.T, x.T, backend=backend), "F"),
             (lambda: fastact.sigmoid(x[:, ::2], backend=backend), "C"),
             (lambda: fastact.sigmoid_backward(g, yT, backend=backend), "C")]
    for call, order in calls:
        call()                                   # compiled, pools started
        tracemalloc.start()
        y = call()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert y.flags[order + "_CONTIGUOUS"]
        assert peak < 1.25 * y.nbytes, (peak, y.nbytes)


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
