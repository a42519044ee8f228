"""Thread count of the parallel CPU kernels, shared by the Numba and C backends."""
from __future__ import annotations

import os

from . import config

_setting = {"n": config.env_num_threads()}


def max_threads() -> int:
    """Upper bound: Numba's pool size where Numba is installed, else the CPUs."""
    try:
        import numba
        return int(numba.config.NUMBA_NUM_THREADS)
    except ImportError:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (1 <= n <= available CPUs) in the parallel kernels."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"fastact.set_num_threads: n must be an int, not {type(n).__name__}")
    hi = max_threads()
    if not 1 <= n <= hi:
        raise ValueError(f"fastact.set_num_threads: n must be between 1 and {hi}, got {n}")
    _setting["n"] = n


def get_num_threads() -> int:
    """Threads the parallel kernels use (default: all available CPUs)."""
    n = _setting["n"]
    return n if n is not None else max_threads()
