"""Thread count of the parallel CPU kernels, shared by the Numba and C backends."""
from __future__ import annotations

import os
import warnings

from . import config

#: the count set by set_num_threads; None: FASTACT_NUM_THREADS, else default_threads()
_setting = {"n": None}
_env = {}

# A thread pool does not survive fork(): a child has none of its parent's
# workers (fastact's pool, c_src/pool.c, which runs both backends' parallel
# kernels, then runs serially there itself; Numba's "omp" threading layer,
# its fallback, kills the process).  Such a child runs every kernel serially
# (as PyTorch's do); a child forked before any parallel kernel ran keeps
# its threads.
_fork = {"used": False, "child": False}


def _after_fork_in_child():
    if _fork["used"]:
        _fork["child"] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def forked_serial() -> bool:
    """Whether this process was forked after its parent ran parallel
    kernels: its kernels then run on the calling thread only."""
    return _fork["child"]


def team_size() -> int:
    """Threads for a parallel kernel about to run (for the backends, which
    call it only then): :func:`get_num_threads`, noted so that a process
    forked from this one later runs serially; 1 in such a child."""
    if not _fork["child"]:
        _fork["used"] = True
    return get_num_threads()


def _env_threads() -> int | None:
    """FASTACT_NUM_THREADS, checked once, when the count is first read (the
    bound comes from Numba, which ``import fastact`` does not load): above
    the available threads it is lowered to them, and a value that is not a
    positive integer is ignored, each with a warning that says so."""
    if "n" not in _env:
        raw, n = config.env_num_threads(), None
        if raw is not None:
            hi = max_threads()
            if not raw.isdigit() or int(raw) < 1:
                warnings.warn(f"FASTACT_NUM_THREADS={raw!r} is not a positive integer; "
                              f"ignored (using {hi} threads)", RuntimeWarning, stacklevel=3)
            elif int(raw) > hi:
                warnings.warn(f"FASTACT_NUM_THREADS={raw} is more than the {hi} threads "
                              f"available; using {hi}", RuntimeWarning, stacklevel=3)
                n = hi
            else:
                n = int(raw)
        _env["n"] = n
    return _env["n"]


def _cgroup_quota(root="/sys/fs/cgroup") -> int | None:
    """CPUs a cgroup CPU quota allows (rounded up), None where there is none:
    cgroup v2 ``cpu.max`` (``"<quota> <period>"`` or ``"max ..."``), else
    v1's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``."""
    try:
        with open(os.path.join(root, "cpu.max")) as f:
            quota, period = f.read().split()[:2]
        if quota != "max" and int(period) > 0:
            return max(1, -(-int(quota) // int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as f:
            quota = int(f.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as f:
            period = int(f.read())
        if quota > 0 and period > 0:
            return max(1, -(-quota // period))
    except (OSError, ValueError):
        pass
    return None


def default_threads() -> int:
    """The count without FASTACT_NUM_THREADS or set_num_threads:
    OMP_NUM_THREADS's first entry where it is a positive integer (as
    OpenMP libraries and Dask's workers set it), else the CPUs of the
    affinity mask, fewer where a cgroup CPU quota allows fewer; at most
    :func:`max_threads`, checked once."""
    if "default" not in _env:
        hi = max_threads()
        omp = config.env_omp_threads()
        if omp is not None and omp.isdigit() and int(omp) >= 1:
            n = int(omp)
        else:
            n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else hi
            quota = _cgroup_quota()
            if quota is not None:
                n = min(n, quota)
        _env["default"] = max(1, min(n, hi))
    return _env["default"]


def max_threads() -> int:
    """Upper bound: Numba's pool size (``NUMBA_NUM_THREADS``, by default the
    affinity mask's CPUs, as Numba counts them), read without importing
    Numba where it is not loaded yet (a call on the C backend then does not
    wait the 0.4 s of that import)."""
    import sys
    numba = sys.modules.get("numba")
    if numba is not None and hasattr(numba, "config"):
        return int(numba.config.NUMBA_NUM_THREADS)
    raw = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (1 <= n <= available CPUs) in the parallel kernels."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"fastact.set_num_threads: n must be an int, not {type(n).__name__}")
    hi = max_threads()
    if not 1 <= n <= hi:
        raise ValueError(f"fastact.set_num_threads: n must be between 1 and {hi}, got {n}")
    _setting["n"] = n


def get_num_threads() -> int:
    """Threads the parallel kernels use: the last :func:`set_num_threads`,
    else ``FASTACT_NUM_THREADS``, else :func:`default_threads`
    (``OMP_NUM_THREADS``, the affinity mask, a cgroup quota); 1 in a
    process forked after its parent ran parallel kernels (a thread pool
    does not survive fork())."""
    if _fork["child"]:
        return 1
    n = _setting["n"]
    if n is None:
        n = _env_threads()
    return n if n is not None else default_threads()
