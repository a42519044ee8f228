"""One benchmark per op x pass x implementation x dtype, plus the copy roofline.

Implementations are fastact's backends and two references: ``torch``
(PyTorch's CPU kernels, skipped without PyTorch) and ``numpy-expr`` (NumPy's
own expression of the op).  Outputs are preallocated wherever the
implementation accepts one.  ``extra_info`` holds GB/s of nominal traffic
(forward: read x + write y; backward: read grad + saved + write grad_x),
elements/s and ``roofline``: the fraction of this run's parallel-copy
throughput.  Every figure uses the fastest round.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

import fastact
from fastact import _bench
from fastact.config import BACKEND_NAMES

from conftest import SIZE, implementation_or_skip, record

HOST_BACKENDS = [b for b in BACKEND_NAMES if b != "cuda"]   # cuda: benchmarks/gpu_check.py
IMPLS = HOST_BACKENDS + ["torch", "numpy-expr"]
OPS = _bench.expand_ops(fastact.ACTIVATIONS)     # rrelu brings rrelu_div (x / a)

KERNELS = [pytest.param(dtype, op, pass_, impl, id=f"{op}-{pass_}-{impl}-{dtype}")
           for dtype in _bench.DTYPES for op in OPS for pass_ in _bench.PASSES
           for impl in IMPLS]
SOFTMAX_ROWS = [pytest.param(dtype, row, pass_, impl, id=f"row{row}-{pass_}-{impl}-{dtype}")
                for dtype in _bench.DTYPES for row in _bench.SOFTMAX_ROWS_SWEEP
                for pass_ in _bench.PASSES for impl in IMPLS if impl != "numpy"]


def _run(benchmark, wl, pass_, impl, copy_gbs, group):
    fn = _bench.make_call(wl, pass_, impl)
    if fn is None:
        pytest.skip(f"{impl} has no {wl.op}")
    fn()                                # compile, fault in pages
    benchmark.group = group
    benchmark(fn)
    record(benchmark, wl, pass_, impl, copy_gbs)


@pytest.mark.parametrize("dtype, op, pass_, impl", KERNELS)
def test_kernel(benchmark, workload, copy_gbs, dtype, op, pass_, impl):
    implementation_or_skip(impl)
    wl = workload(op, dtype, SIZE, None)
    _run(benchmark, wl, pass_, impl, copy_gbs, f"{op} {pass_} {dtype}")


@pytest.mark.parametrize("dtype, row, pass_, impl", SOFTMAX_ROWS)
def test_softmax_rows(benchmark, workload, copy_gbs, dtype, row, pass_, impl):
    """Softmax with rows of 16 to 65536 elements, 2**24 elements in all."""
    implementation_or_skip(impl)
    wl = workload("softmax", dtype, SIZE, row)
    _run(benchmark, wl, pass_, impl, copy_gbs, f"softmax {pass_} {dtype} rows of {row}")

PRELU_ROWS = [pytest.param(dtype, row, pass_, impl, id=f"prelu-row{row}-{pass_}-{impl}-{dtype}")
              for dtype in _bench.DTYPES for row in _bench.PRELU_ROWS_SWEEP
              for pass_ in _bench.PASSES for impl in IMPLS if impl != "numpy"]


@pytest.mark.parametrize("dtype, row, pass_, impl", PRELU_ROWS)
def test_prelu_rows(benchmark, workload, copy_gbs, dtype, row, pass_, impl):
    """PReLU on (samples, 64 channels, row) with short rows: (N, C)
    activations (row 1) and 8-element rows, 2**24 elements in all."""
    implementation_or_skip(impl)
    wl = workload("prelu", dtype, SIZE, row)
    _run(benchmark, wl, pass_, impl, copy_gbs, f"prelu {pass_} {dtype} rows of {row}")


@pytest.mark.parametrize("impl", HOST_BACKENDS + ["automatic", "torch", "np.maximum"])
def test_call_overhead(benchmark, impl):
    """Call overhead: relu on 1024 float32 elements into a preallocated output
    (the core issue's bound: 2 microseconds), per backend, through the
    automatic choice, and PyTorch's / NumPy's own call for scale."""
    calls = _bench.overhead_calls([b for b in HOST_BACKENDS if b == impl])
    if impl not in calls:
        pytest.skip(f"{impl} is not available here")
    if impl in HOST_BACKENDS:
        implementation_or_skip(impl)
    fn = calls[impl]
    fn()
    benchmark.group = f"call overhead, relu on {_bench.OVERHEAD_SIZE} float32"
    benchmark(fn)
    benchmark.extra_info.update(impl=impl, elements=_bench.OVERHEAD_SIZE)


@pytest.mark.parametrize("impl", ["parallel", "numpy-copyto"])
@pytest.mark.parametrize("dtype", _bench.DTYPES)
def test_copy(benchmark, copy_gbs, dtype, impl):
    """The roofline: a parallel read+write copy (and NumPy's single-threaded copyto)."""
    if impl == "parallel":
        fn = _bench.copy_call(dtype, SIZE)
    else:
        src = np.ones(SIZE, dtype)
        dst = np.empty_like(src)
        fn = lambda: np.copyto(dst, src)    # noqa: E731
    fn()
    benchmark.group = f"copy {dtype}"
    benchmark(fn)
    nbytes = _bench.copy_traffic(dtype, SIZE)
    benchmark.extra_info.update(impl=impl, dtype=dtype, elements=SIZE, bytes=nbytes)
    if getattr(benchmark, "stats", None) is not None:
        gbs = nbytes / benchmark.stats.stats.min / 1e9
        roof = copy_gbs(dtype, SIZE, getattr(benchmark, "_timer", time.perf_counter))
        benchmark.extra_info.update(gbs=round(gbs, 3), roofline=round(gbs / roof, 4))
