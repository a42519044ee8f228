"""Child processes started early (the test suite's own plumbing, no
fastact import: the scripts the tests run as children import it too).

Some tests read the result of a child process that compiles for half a
minute or more (the kernel-structure scan, the accuracy tests compiled for
Haswell, the CUDA tests under the simulator, ...).  A session starts those
of its selected tests once collection is done (the hooks below, which
conftest takes), in the order the tests will run, on the cores the suite's
own process leaves idle (it mostly runs one thread: Numba's compiles) and
at a lower priority; the test then only reads the result.  A test run
without a session that started its child (FASTACT_EARLY_PROCESSES=0, or
a session without these hooks) starts it when it asks.  Output goes to
files: no pipe to fill.  Children run in process groups of their own,
killed when the session ends, however it ends (failure, -x, Ctrl-C,
SIGTERM): no orphans.
"""
from __future__ import annotations

import os
import pathlib
import subprocess

#: the niceness of a child started ahead of its test
EARLY_NICE = 10


class EarlyProcess:
    """A child process a test reads the result of (:meth:`result`, a
    ``subprocess.CompletedProcess`` with text output), started early where
    a session selects a test marked ``@pytest.mark.early(this)``.

    ``env`` is added to the environment (a None value removes the
    variable); ``own_cache``: an empty
    ``NUMBA_CACHE_DIR`` of its own; ``timeout``: seconds :meth:`result`
    waits (then the child is killed and ``subprocess.TimeoutExpired``
    raised, as by ``subprocess.run``)."""

    _queue: list = []          # started at collection, not yet running, in test order
    _running: list = []
    _all: list = []
    _dir = None

    def __init__(self, name, argv, env=None, cwd=None, timeout=600, own_cache=False):
        self.name, self.argv, self.env, self.cwd = name, [str(a) for a in argv], env or {}, cwd
        self.timeout, self.own_cache = timeout, own_cache
        self.proc = self._result = None

    def __repr__(self):
        return f"EarlyProcess({self.name!r})"

    def start(self, nice=0):
        import re
        import tempfile
        cls = EarlyProcess
        if cls._dir is None:
            cls._dir = pathlib.Path(tempfile.mkdtemp(prefix="fastact_early_"))
        work = cls._dir / re.sub(r"[^\w.-]+", "_", self.name)
        work.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, FASTACT_EARLY_PROCESSES="0")
        for k, v in self.env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        if self.own_cache:
            env["NUMBA_CACHE_DIR"] = str(work / "numba_cache")
        self.out, self.err = work / "stdout", work / "stderr"
        with open(self.out, "w") as fo, open(self.err, "w") as fe:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=fo,
                                         stderr=fe, env=env, cwd=self.cwd,
                                         start_new_session=True)
        cls._all.append(self)
        cls._running.append(self)
        if nice:
            try:
                os.setpriority(os.PRIO_PROCESS, self.proc.pid, nice)
            except (AttributeError, OSError):
                pass

    def result(self):
        """The child's ``CompletedProcess``: waits for it (starting it now
        if the session has not)."""
        import time
        if self._result is not None:
            return self._result
        if self.proc is None:
            if self in EarlyProcess._queue:
                EarlyProcess._queue.remove(self)
            self.start()
        t0 = time.monotonic()
        while self.proc.poll() is None:
            pump(waiting=True)      # this process idles: every core to the children
            if time.monotonic() - t0 > self.timeout:
                self.kill()
                raise subprocess.TimeoutExpired(self.argv, self.timeout,
                                                self.out.read_text(), self.err.read_text())
            time.sleep(0.05)
        self._result = subprocess.CompletedProcess(self.argv, self.proc.returncode,
                                                   self.out.read_text(), self.err.read_text())
        return self._result

    def kill(self):
        """Kill the child and its own children (its process group)."""
        import signal
        p = self.proc
        if p is None or p.returncode is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            p.kill()
        p.wait()


def pump(waiting=False):
    """Start queued children while fewer run than the cores this process
    leaves idle (all of them while it waits for one)."""
    cls = EarlyProcess
    cls._running[:] = [p for p in cls._running if p.proc.poll() is None]
    if not cls._queue:
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    slots = cores if waiting else max(cores - 1, 1)
    while cls._queue and len(cls._running) < slots:
        cls._queue.pop(0).start(nice=EARLY_NICE)


def end_all():
    """Kill every child still running; remove their files."""
    import shutil
    cls = EarlyProcess
    cls._queue.clear()
    for p in cls._all:
        p.kill()
    cls._all.clear()
    cls._running.clear()
    if cls._dir is not None:
        shutil.rmtree(cls._dir, ignore_errors=True)
        cls._dir = None


def _skipped_at_collection(item):
    """Whether a skip or skipif mark with a true (non-string) condition
    skips ``item`` (its child would be wasted)."""
    if item.get_closest_marker("skip") is not None:
        return True
    for m in item.iter_markers("skipif"):
        conds = m.args or ((m.kwargs["condition"],) if "condition" in m.kwargs else ())
        if not conds or any(not isinstance(c, str) and c for c in conds):
            return True
    return False


def start_for(items):
    """Queue the children of ``items`` (a session's selected tests, in the
    order they run; ``@pytest.mark.early``) and start what the idle cores
    take; from then on until :func:`end_all`, SIGTERM kills them first."""
    import atexit
    import signal
    if os.environ.get("FASTACT_EARLY_PROCESSES") == "0":
        return
    queue = EarlyProcess._queue
    for item in items:
        if _skipped_at_collection(item):
            continue
        for m in item.iter_markers("early"):
            queue += [p for p in m.args if p.proc is None and p not in queue]
    if not queue:
        return
    atexit.register(end_all)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        def on_term(signum, frame):
            end_all()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        signal.signal(signal.SIGTERM, on_term)
    pump()


# --- the hooks (conftest; ``-p early`` elsewhere) --------------------------------------------

def pytest_configure(config):
    config.addinivalue_line(
        "markers", "early(process, ...): the test reads these early.EarlyProcess children, "
        "started once the tests are collected")


def pytest_collection_finish(session):
    """The children of the selected tests (after -k / -m deselection)
    start now, on the cores this process leaves idle."""
    if not session.config.option.collectonly:
        start_for(session.items)


def pytest_runtest_logstart(nodeid, location):
    pump()


def pytest_sessionfinish(session, exitstatus):
    end_all()
