"""Fixtures of the pytest-benchmark suite: shared workloads and the copy roofline.

Run it with::

    pytest benchmarks/ --benchmark-enable

(the project's ``addopts`` disables benchmarks in ordinary test runs).  Each
group holds one op, pass and dtype, with every fastact backend and the
PyTorch / NumPy references side by side; ``--benchmark-group-by=param:op``
(or ``param:impl``, ``param:dtype``...) regroups them.  ``FASTACT_BENCH_SIZE``
overrides the element count (default 2**24).

On a busy shared machine, parallel wall-clock times mostly measure the
scheduler; one thread and the CPU clock measure the kernels::

    FASTACT_NUM_THREADS=1 pytest benchmarks/ --benchmark-enable \
        --benchmark-timer=time.process_time
"""
from __future__ import annotations

import functools
import math
import os
import time

import pytest

from fastact import _bench

SIZE = int(os.environ.get("FASTACT_BENCH_SIZE", _bench.DEFAULT_SIZE))


@functools.lru_cache(maxsize=2)
def _workload(op, dtype, size, row):
    return _bench.make_workload(op, dtype, size, row)


_copy_call = functools.lru_cache(maxsize=2)(_bench.copy_call)


def _copy_gbs(dtype, size, timer=time.perf_counter):
    """Best-of-7 throughput of the parallel copy, measured now: the roofline.

    Called right after each benchmark with pytest-benchmark's timer, so that
    the kernel and its roofline see the same state of a shared machine and
    the same clock.
    """
    copy = _copy_call(dtype, size)
    copy()
    best = math.inf
    for _ in range(7):
        t0 = timer()
        copy()
        best = min(best, timer() - t0)
    return _bench.copy_traffic(dtype, size) / best / 1e9


@pytest.fixture(scope="session")
def workload():
    return _workload


@pytest.fixture(scope="session")
def copy_gbs():
    return _copy_gbs


def implementation_or_skip(impl):
    """Skip the test when ``impl`` cannot run here, saying why."""
    if impl == "torch":
        pytest.importorskip("torch", reason="PyTorch is not installed: no reference group")
        return
    if impl == "numpy-expr":
        return
    import fastact
    st = fastact.backends()[impl]
    if not st["available"]:
        pytest.skip(f"backend {impl!r} unavailable: {st['reason']}")


def record(benchmark, wl, pass_, impl, copy_gbs):
    """Throughput and fraction of the copy roofline into ``extra_info``."""
    nbytes = wl.traffic(pass_)
    info = benchmark.extra_info
    info.update(op=wl.op, pass_=pass_, impl=impl, dtype=wl.dtype.name, shape=list(wl.shape),
                elements=wl.size, bytes=nbytes)
    stats = getattr(benchmark, "stats", None)
    if stats is None:            # --benchmark-disable: the function ran once, untimed
        return
    best, median = stats.stats.min, stats.stats.median
    roof = copy_gbs(wl.dtype.name, wl.size, getattr(benchmark, "_timer", time.perf_counter))
    gbs = nbytes / best / 1e9
    info.update(gbs=round(gbs, 3), gbs_median=round(nbytes / median / 1e9, 3),
                elements_per_s=round(wl.size / best), copy_gbs=round(roof, 3),
                roofline=round(gbs / roof, 4))


def pytest_benchmark_update_machine_info(config, machine_info):
    import fastact
    machine_info["fastact_threads"] = fastact.get_num_threads()
    machine_info["fastact_backends"] = {k: v["available"] for k, v in fastact.backends().items()}
