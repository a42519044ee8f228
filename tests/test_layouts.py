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
