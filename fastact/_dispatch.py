"""The dispatcher: which backend runs a call.

Precedence: ``backend=`` on the call, then the innermost
:func:`use_backend` block (per thread), then ``FASTACT_BACKEND``, then the
automatic choice: device arrays go to ``"cuda"``; host arrays to the first
loadable backend of ``config.AUTO_SMALL`` (below ``config.PARALLEL_MIN``
elements), ``config.AUTO_LARGE_NUMBA`` (the ops of ``config.NUMBA_FIRST``)
or ``config.AUTO_LARGE``.

An op of ``config.NUMBA_FIRST`` goes to Numba only once its kernels are
compiled: its first big call starts a child process that compiles them into
Numba's disk cache, and until that is done its calls take
``config.AUTO_LARGE``'s backend (C), so that no call waits for a compile
(``config.NUMBA_FIRST_BACKGROUND``).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import threading

from . import config


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; ``.reason`` says why."""

    def __init__(self, name, reason):
        super().__init__(f"fastact backend {name!r} is unavailable: {reason}")
        self.name = name
        self.reason = reason


# name -> "module:Class"; later backends register themselves here.
_FACTORIES = {
    "numpy": "fastact._backends.numpy_ref:NumpyBackend",
    "numba": "fastact._backends.numba_cpu:NumbaBackend",
    "c": "fastact._backends.c:CBackend",
    "cuda": "fastact._backends.cuda:CudaBackend",
}
_loaded: dict = {}
_failed: dict = {}
_load_lock = threading.Lock()
class _Local(threading.local):
    stack: list = []        # class-level default: reading it costs no exception


_local = _Local()


def _check_name(name):
    if name not in _FACTORIES:
        valid = ", ".join(repr(n) for n in config.BACKEND_NAMES)
        raise ValueError(f"unknown fastact backend {name!r}; valid names: {valid}")


def get(name):
    """The loaded backend ``name``, or :class:`BackendUnavailable`."""
    b = _loaded.get(name)
    if b is not None:
        return b
    _check_name(name)
    with _load_lock:
        if name in _loaded:
            return _loaded[name]
        if name not in _failed:
            mod, cls = _FACTORIES[name].split(":")
            try:
                _loaded[name] = getattr(importlib.import_module(mod), cls)().load()
                return _loaded[name]
            except Exception as e:           # any failure to load is a reason
                _failed[name] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    raise BackendUnavailable(name, _failed[name])


def status() -> dict:
    """``{name: {"available": bool, "reason": str | None, ...details}}``."""
    out = {}
    for name in config.BACKEND_NAMES:
        try:
            b = get(name)
        except BackendUnavailable as e:
            out[name] = {"available": False, "reason": e.reason}
            continue
        try:
            details = b.describe()
        except Exception as e:               # a report must not fail the caller
            details = {"describe_error": f"{type(e).__name__}: {e}"}
        out[name] = {"available": True, "reason": None, **details}
    return out


@contextlib.contextmanager
def use_backend(name):
    """Run the calls in a ``with`` block on backend ``name`` (this thread)."""
    _check_name(name)
    stack = _local.__dict__.get("stack")
    if stack is None:
        stack = _local.stack = []
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


_auto: dict = {}         # size class (choose) -> the backend the automatic choice settled on
# read once, at import: a process picks its default backend when it starts
_ENV_BACKEND = config.env_backend()
_PARALLEL_MIN = config.PARALLEL_MIN
_NUMBA_FIRST = config.NUMBA_FIRST


class FastactWarning(UserWarning):
    """fastact's own warnings (a C backend that was not built)."""


def _first_available(names):
    """The first backend of ``names`` that loads (the reference if none).
    Passing over a C backend that was not built says so, once a process, in
    one line: pip shows no output of a build that succeeded without it."""
    for name in names:
        try:
            return get(name)
        except BackendUnavailable as e:
            if name == "c" and e.reason.startswith("ImportError: not built") \
                    and not _warned.get("c"):
                _warned["c"] = True
                import warnings
                why = e.reason[len("ImportError: not built: "):]
                warnings.warn(f"fastact: the C backend is not built ({why}); "
                              "the automatic choice takes the next backend (Numba: about 1 s "
                              "to compile each kernel on first use; `fastact warmup` "
                              "compiles them ahead)", FastactWarning, stacklevel=5)
            continue
    return get("numpy")


_warned: dict = {}

#: op of NUMBA_FIRST -> True (its Numba kernels compiled), "failed", or
#: (pid, process) while a child process compiles them into the disk cache
_compiled: dict = {}
_compiled_lock = threading.Lock()


def _while_compiling(op):
    """The backend of a big call of ``op`` (of NUMBA_FIRST) while its Numba
    kernels are not ready: AUTO_LARGE's choice (C), with a child process
    started on the first such call (again in a process forked from one
    that started it) that compiles the kernels into Numba's disk cache,
    from which a thread of this process loads them once it is done; None
    (the automatic choice as usual: Numba, the call compiling what it
    needs) where AUTO_LARGE's choice is Numba itself or Numba is not
    installed.  A process, not a thread: a compile holds the GIL, and every
    call of the user's meanwhile would wait for it (gelu's first call on
    2**20 elements took 0.18 s beside a compiling thread)."""
    other = _auto.get(1)
    if other is None:
        other = _auto[1] = _first_available(config.AUTO_LARGE)
    if other.name == "numba":
        return None
    import os
    with _compiled_lock:
        state = _compiled.get(op)
        if state is None or (isinstance(state, tuple) and state[0] != os.getpid()):
            if importlib.util.find_spec("numba") is None:
                return None
            _compiled[op] = state = (os.getpid(), _start_compile(op))
        if isinstance(state, tuple) and state[1] is not None:
            rc = state[1].poll()
            if rc is not None and rc != 0:
                _compiled[op] = state = "failed"
            elif rc == 0:
                # compiled: loaded from the disk cache (importing Numba too:
                # 0.3-0.7 s) by a thread, while the calls go on meanwhile
                _compiled[op] = (state[0], None)
                threading.Thread(target=_load, args=(op,), daemon=True,
                                 name=f"fastact-load-{op}").start()
    return None if state is True else other


def _load(op):
    try:
        get("numba").compile_op(op)
        _compiled[op] = True
    except Exception:                  # stays on the other backend
        _compiled[op] = "failed"


def _start_compile(op):
    import subprocess
    import sys
    code = ("import sys; from fastact import _dispatch; "
            "_dispatch.get('numba').compile_op(sys.argv[1])")
    return subprocess.Popen([sys.executable, "-c", code, op], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_compiled(op, timeout=None) -> bool:
    """Wait for the background compile of ``op``'s Numba kernels (see the
    module's docstring) and load them, if a compile was started; whether
    they are ready (the automatic choice takes Numba from then on)."""
    state = _compiled.get(op)
    if isinstance(state, tuple) and state[1] is not None:
        try:
            state[1].wait(timeout)
        except Exception:                 # subprocess.TimeoutExpired
            return False
    if isinstance(_compiled.get(op), tuple):
        _load(op)
    return _compiled.get(op) is True


def choose(backend, size, op=None):
    """The backend object for one call on host arrays (``op``: the registry
    entry, for the automatic choice of big arrays)."""
    name = backend
    if name is None:
        stack = _local.stack
        if stack:
            name = stack[-1]
        elif _ENV_BACKEND is not None:
            name = _ENV_BACKEND
            if name not in _FACTORIES:
                valid = ", ".join(repr(n) for n in config.BACKEND_NAMES)
                raise ValueError(f"FASTACT_BACKEND={name!r} is not a fastact backend; "
                                 f"valid names: {valid}")
        else:
            # 0: small, 1: large, 2: large and Numba first
            key = (1 + (op in _NUMBA_FIRST)) if size >= _PARALLEL_MIN else 0
            if key == 2 and _compiled.get(op) is not True and config.NUMBA_FIRST_BACKGROUND:
                b = _while_compiling(op)
                if b is not None:
                    return b
            b = _auto.get(key)
            if b is None:
                b = _auto[key] = _first_available(
                    (config.AUTO_SMALL, config.AUTO_LARGE, config.AUTO_LARGE_NUMBA)[key])
            return b
    b = _loaded.get(name)
    return b if b is not None else get(name)
