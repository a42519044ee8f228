"""The Numba backend's elementwise kernels at global positions: rows of a
block of a larger C-order array, row ``r`` at flat index ``starts[r]``
(``Backend.elementwise_rows``; fastact._dask's RReLU blocks).

The rows are the blocked kernels' runs (numba_cpu._block_runs) with the
index offset: each element keyed by its index in the whole array, so the
slopes are the single call's.
"""
from __future__ import annotations

import functools

import numpy as np

from .._prims import always_inline, inner_njit
from .._registry import REGISTRY
from . import numba_cpu


@functools.lru_cache(maxsize=None)
def rows_kernel(name, pass_, dtype, parallel):
    """``k([nthreads,] a, b, out, starts, m, params)`` over flat ``a``, ``b``
    (``a`` again for a forward) and ``out`` of ``len(starts) * m`` elements."""
    f = numba_cpu._formula(name, pass_, dtype)
    indexed, binary = REGISTRY[name].indexed, pass_ != "forward"
    fi = numba_cpu._one_shape(f, indexed, binary)
    inline = always_inline()
    run = numba_cpu._block_runs(fi, indexed)

    @inner_njit()
    def body(lo, hi, a, b, out, starts, m, params):
        inline()
        for r in range(lo, hi):
            s = starts[r]
            # out[r m + k] = fi(a[r m + k], ..., s + k): base = s - r m
            run(a, b, out, r * m, s, s + m, s - r * m, params)

    @inner_njit()
    def units(a, b, out, starts, m, params):
        return starts.shape[0], max(1, 4096 // max(m, 1))

    tag = f"{name}_{pass_}_{np.dtype(dtype).name}_rows"
    if parallel:
        return numba_cpu._pooled(tag, body, units)
    return numba_cpu._serial(tag, body, units)
