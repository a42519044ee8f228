"""fastact: fast, trustworthy activation-function kernels for NumPy and CUDA arrays.

Every activation has a forward and a backward function; see the docstrings
for the formula and the derivative convention of each.  Backends: ``numpy``
(the reference), ``numba`` (parallel CPU), ``c`` (SIMD C via cffi) and
``cuda`` (numba.cuda); :func:`backends` tells which ones load here.

The activations are the registry's public entries (``fastact._registry``):
their functions are generated from it, and ``ACTIVATIONS`` lists them.

Importing fastact compiles nothing: kernels are compiled on first use and
cached on disk (:func:`warmup` compiles every Numba kernel ahead of time).
"""
from . import _api
from ._api import prelu, prelu_backward
from ._dispatch import BackendUnavailable, FastactWarning, use_backend
from ._registry import REGISTRY as _REGISTRY
from ._threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

globals().update(_api.GENERATED)

#: every activation's forward function name, in registration order
ACTIVATIONS = tuple(s.api_name for s in _REGISTRY.values() if s.public)


def backends():
    """For each backend: ``{"available": bool, "reason": str | None, ...}``.

    >>> import fastact
    >>> fastact.backends()["numpy"]["available"]
    True
    """
    from ._dispatch import status
    return status()


def warmup(dtypes=("float32", "float64"), ops=None, progress=None):
    """Compile every Numba kernel (of ``ops``, default all; in ``dtypes``)
    into the disk cache now, for images and CI: later processes then load
    them instead of compiling.  ``progress(label)`` is called before each
    step.  Returns ``{"steps": n, "seconds": s}``.  ``fastact warmup`` runs
    it with a progress bar."""
    from ._warmup import warmup as run
    return run(dtypes, ops, progress)


def dask_worker_plugin(nthreads=None):
    """A ``distributed.WorkerPlugin`` setting fastact's threads on each dask
    worker to ``nthreads``, default the worker's own thread count:
    ``client.register_plugin(fastact.dask_worker_plugin())`` (README: Dask)."""
    from ._dask import worker_plugin
    return worker_plugin(nthreads)


__all__ = sorted(["ACTIVATIONS", "BackendUnavailable", "FastactWarning", "backends",
                  "dask_worker_plugin", "get_num_threads",
                  "set_num_threads", "use_backend", "warmup"]
                 + [n for a in ACTIVATIONS for n in (a, a + "_backward")])


def __getattr__(name):
    # fastact.nn (layers, losses, SGD) and fastact.jit (the scalar formulas
    # for numba code) are imported on first use
    if name in ("nn", "jit"):
        import importlib
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'fastact' has no attribute {name!r}")


# The public functions callable inside @numba.njit code (fastact._overloads):
# registered now where numba is imported already, else by numba's
# numba_extensions entry point before it compiles anything.
if __import__("sys").modules.get("numba") is not None:   # (None: blocked, as not installed)
    from ._overloads import register as _register_overloads
    try:
        _register_overloads()
    except ImportError:             # a numba too broken to compile fastact's kernels either
        pass
