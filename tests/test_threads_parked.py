"""Parallel calls do not wait for a worker that is not running (issue #18).

On a busy machine (shared CI runners, CPU quotas, Dask workers) an OpenMP
region waited for its second thread to be scheduled: 12-16 ms for calls
whose one-thread time was 0.003-0.35 ms, because a region ends at a barrier
that every thread of its team must reach.  fastact's pool (c_src/pool.c),
which runs both CPU backends' parallel kernels, cuts a call into chunks that
the calling thread and the workers take as each is free, and returns when
the chunks are done.

The stall cannot be produced on demand, so these tests make it happen: a
test-only hook (``fa_test_park_worker``) parks the pool's worker, which then
blocks once woken for a job, before it claims any chunk.  With it parked, 2
threads, calls on 2**16 to 2**20 elements, softmax (256, 1000), a strided
input and softmax along axis 0 must
return the one-thread call's bits within twice its median time.  They run in
a child process under a timeout, with a watchdog that unparks the worker
after a few seconds: a pool that waited for it would return only then, and
fail.  The control (``fa_test_barrier``: the call also waits for every
worker to look at its job, as an OpenMP region's closing barrier does) shows
that the test sees such a wait.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fastact
from fastact import config

from early import EarlyProcess

WATCHDOG_S = 8.0


def _lib():
    """The C library, or a skip: the hook lives there."""
    st = fastact.backends()["c"]
    if not st["available"]:
        pytest.skip(f"C backend unavailable: {st['reason']}")
    if not st["pool"]:
        pytest.skip("C backend built without threads")
    from fastact import _dispatch
    return _dispatch.get("c")._lib


# --- in the child process -----------------------------------------------------------

def _cases(rng):
    """(label, backend, call) for every case: relu, sigmoid forward and
    backward on 2**16, 2**18, 2**20 float32, softmax (256, 1000) forward and
    backward; both CPU backends (Numba's through the same pool)."""
    out = []
    backends = ["c"]
    if fastact.backends()["numba"]["available"] and \
            fastact.backends()["numba"].get("pool") == "fastact":
        backends.append("numba")
    for b in backends:
        for n in (16, 18, 20):
            x = rng.standard_normal(1 << n).astype(np.float32)
            g = rng.standard_normal(1 << n).astype(np.float32)
            y = fastact.sigmoid(x, backend="numpy")
            o = np.empty_like(x)
            out += [(f"{b} relu 2**{n}", b,
                     lambda x=x, o=o, b=b: fastact.relu(x, out=o, backend=b)),
                    (f"{b} sigmoid 2**{n}", b,
                     lambda x=x, o=o, b=b: fastact.sigmoid(x, out=o, backend=b)),
                    (f"{b} sigmoid_backward 2**{n}", b,
                     lambda g=g, y=y, o=o, b=b: fastact.sigmoid_backward(g, y, out=o, backend=b))]
        x = rng.standard_normal((256, 1000)).astype(np.float32)
        g = rng.standard_normal((256, 1000)).astype(np.float32)
        y = fastact.softmax(x, backend="numpy")
        o = np.empty_like(x)
        out += [(f"{b} softmax (256, 1000)", b,
                 lambda x=x, o=o, b=b: fastact.softmax(x, out=o, backend=b)),
                (f"{b} softmax_backward (256, 1000)", b,
                 lambda g=g, y=y, o=o, b=b: fastact.softmax_backward(g, y, out=o, backend=b))]
        # the layouts' own parallel kernels: the strided walk (every other
        # column) and the softmax family along a middle axis
        xt = rng.standard_normal((256, 2048)).astype(np.float32)[:, ::2]
        ot = np.empty(xt.shape, np.float32)
        xm = rng.standard_normal((1000, 256)).astype(np.float32)
        om = np.empty_like(xm)
        out += [(f"{b} sigmoid x[:, ::2] (256, 1024)", b,
                 lambda x=xt, o=ot, b=b: fastact.sigmoid(x, out=o, backend=b)),
                (f"{b} softmax axis 0 (1000, 256)", b,
                 lambda x=xm, o=om, b=b: fastact.softmax(x, axis=0, out=o, backend=b))]
    return out


def _median_us(call, reps, times=None):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        r = call()
        ts.append(time.perf_counter() - t0)
    if times is not None:
        times.extend(ts)
    return float(np.median(ts)) * 1e6, r


def _reps(call):
    """Calls in a median: about 20 ms of them, 9 to 101"""
    t, _ = _median_us(call, 3)
    return int(min(101, max(9, 20000 / max(t, 1.0))))


def _child(mode):
    from fastact import _dispatch
    lib = _dispatch.get("c")._lib
    fired = threading.Event()

    def watchdog():
        fired.set()
        lib.fa_test_park_worker(1, 0)

    rng = np.random.default_rng(18)
    res = {"cases": {}}
    if mode == "control":
        cases = [c for c in _cases(rng) if c[0] == "c relu 2**18"]
        watch_s = 2.0
    else:
        cases = _cases(rng)
        watch_s = WATCHDOG_S
    fastact.set_num_threads(2)
    for label, _, call in cases:
        call()                                   # compiled, pool started
    for label, _, call in cases:
        for attempt in range(2):                 # a noisy machine: one retry
            fastact.set_num_threads(1)
            reps = _reps(call)
            t1, r1 = _median_us(call, reps)
            ref = r1.copy()
            fastact.set_num_threads(2)
            lib.fa_test_park_worker(1, 1)
            for _ in range(2000):                # woken for a job, it parks
                call()
                if lib.fa_test_worker_parked(1):
                    break
                time.sleep(0.001)
            before = lib.fa_pool_chunks_run(1)
            if mode == "control":
                # an OpenMP-like closing barrier: the call waits for the worker
                lib.fa_test_barrier(1)
            dog = threading.Timer(watch_s, watchdog)
            dog.start()
            times = []
            tp, rp = _median_us(call, reps, times)
            parked = bool(lib.fa_test_worker_parked(1))
            dog.cancel()
            taken = lib.fa_pool_chunks_run(1) - before
            lib.fa_test_park_worker(1, 0)
            same = bool(np.array_equal(rp.view(np.uint32), ref.view(np.uint32)))
            res["cases"][label] = {"one_thread_us": t1, "parked_us": tp, "reps": reps,
                                   "same_bits": same, "worker_parked": parked,
                                   "worker_chunks": int(taken), "slowest_s": max(times),
                                   "attempts": attempt + 1}
            if tp <= 2 * t1 or fired.is_set():
                break
    res["watchdog_fired"] = fired.is_set()
    lib.fa_test_barrier(0)
    return res


def _run_child(mode):
    env = dict(os.environ, FASTACT_NUM_THREADS="2", NUMBA_NUM_THREADS="2",
               PYTHONPATH=os.pathsep.join(
                   [str(pathlib.Path(fastact.__file__).resolve().parents[1])] +
                   [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.pop("FASTACT_BACKEND", None)
    r = subprocess.run([sys.executable, str(pathlib.Path(__file__).resolve()), mode],
                       capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


# --- the tests ----------------------------------------------------------------------

def test_a_parked_worker_does_not_hold_up_a_call():
    """With the worker parked, every call returns the one-thread call's
    bits within 2x its median time, the worker parked and running no chunk
    (the watchdog, which would unpark it, never fires)."""
    _lib()
    res = _run_child("--parked")
    assert not res["watchdog_fired"], "a call waited for the parked worker"
    cases = res["cases"]
    assert any(k.startswith("c ") for k in cases) and len(cases) >= 11, sorted(cases)
    for label, c in cases.items():
        assert c["same_bits"], f"{label}: not the one-thread result"
        assert c["worker_parked"] and c["worker_chunks"] == 0, f"{label}: worker not parked: {c}"
    slow = {k: (round(c["one_thread_us"], 1), round(c["parked_us"], 1))
            for k, c in cases.items() if c["parked_us"] > 2 * c["one_thread_us"]}
    assert not slow, f"slower than twice the one-thread median (us, 1 thread / parked): {slow}"


def test_a_pool_with_a_closing_barrier_would_wait_for_it():
    """The control: a call that also waits for every worker to look at its
    job (fa_test_barrier, as an OpenMP region does) returns only when the
    watchdog unparks the worker (2 s), and the test above would fail."""
    _lib()
    res = _run_child("--control")
    assert res["watchdog_fired"]
    c = res["cases"]["c relu 2**18"]
    assert c["slowest_s"] >= 1.5, c


def test_chunk_minimum_is_the_same_in_c_and_python():
    src = (pathlib.Path(__file__).resolve().parents[1] / "c_src" / "fastact.c").read_text()
    import re
    m = re.search(r"#define FA_CHUNK_MIN_ELEMS (\d+)", src)
    assert m and int(m.group(1)) == config.POOL_CHUNK_MIN_ELEMS


def test_pool_reports_its_workers_and_chunks(restore_threads):
    """Both threads take chunks of a call on a quiet machine (at least once
    in a few tries: the worker may be off its core), and a worker slot
    beyond the pool is refused by the hook."""
    lib = _lib()
    if fastact._threads.max_threads() < 2:
        pytest.skip("one thread here")
    fastact.set_num_threads(2)
    x = np.ones(1 << 20, np.float32)
    before = lib.fa_pool_chunks_run(1)
    for _ in range(200):
        fastact.sigmoid(x, backend="c")
        if lib.fa_pool_chunks_run(1) > before:
            break
    assert lib.fa_pool_workers() >= 1
    assert lib.fa_pool_chunks_run(1) > before, "the worker never took a chunk"
    assert lib.fa_test_park_worker(0, 1) == -1 and lib.fa_test_park_worker(10**6, 1) == -1


#: relu, sigmoid and softmax on Numba's own threads (FASTACT_NUMBA_POOL=numba):
#: the pool's name and the SHA-256 of the results' bytes
_NUMBA_POOL_CODE = """if True:
    import hashlib, numpy as np, fastact
    fastact.set_num_threads(2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(1 << 17).astype(np.float32)
    s = rng.standard_normal((256, 1000)).astype(np.float32)
    out = [fastact.relu(x, backend="numba"), fastact.sigmoid(x, backend="numba"),
           fastact.softmax(s, backend="numba").ravel()]
    print(fastact.backends()["numba"]["pool"], hashlib.sha256(np.concatenate(out)).hexdigest())
    """
NUMBA_POOL = EarlyProcess("threads: numba kernels on numba's own threads",
                          [sys.executable, "-c", _NUMBA_POOL_CODE], timeout=240,
                          env={"FASTACT_NUMBA_POOL": "numba", "NUMBA_NUM_THREADS": "2",
                               "FASTACT_NUM_THREADS": None})


@pytest.mark.early(NUMBA_POOL)
def test_numba_without_the_pool_runs_on_its_own_threads():
    """With FASTACT_NUMBA_POOL=numba (as without the C backend) the Numba
    kernels' range workers run under Numba's prange and compute the same
    bits as on the pool."""
    import hashlib
    st = fastact.backends()["numba"]
    if not st["available"]:
        pytest.skip(f"numba unavailable: {st['reason']}")
    r = NUMBA_POOL.result()
    assert r.returncode == 0, r.stderr[-4000:]
    pool, digest = r.stdout.split()[-2:]
    assert pool == "numba"
    rng = np.random.default_rng(3)
    x = rng.standard_normal(1 << 17).astype(np.float32)
    s = rng.standard_normal((256, 1000)).astype(np.float32)
    want = np.concatenate([fastact.relu(x, backend="numba"), fastact.sigmoid(x, backend="numba"),
                           fastact.softmax(s, backend="numba").ravel()])
    assert digest == hashlib.sha256(want).hexdigest(), "not the bits of the pool's kernels"


# --- determinism under dynamic chunks ------------------------------------------------

def _bits(a):
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@pytest.mark.parametrize("backend", ["c", "numba"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_results_do_not_depend_on_threads_or_runs(backend, dtype, restore_threads):
    """PReLU's weight gradient (a sum over the batch, summed chunk by
    chunk) and the softmax family are bit-identical with 1 and 2 threads
    and from run to run, whichever thread takes which chunk."""
    st = fastact.backends()[backend]
    if not st["available"]:
        pytest.skip(f"{backend} unavailable: {st['reason']}")
    if fastact._threads.max_threads() < 2:
        pytest.skip("one thread here")
    rng = np.random.default_rng(7)
    cases = []
    for shape, axis in (((64, 32, 256), 1), ((8192, 48), 1), ((2048, 24, 3), 1)):
        x = rng.standard_normal(shape).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        w = rng.uniform(0.1, 0.3, shape[1]).astype(dtype)
        cases.append((f"prelu_backward {shape}",
                      lambda g=g, x=x, w=w: fastact.prelu_backward(g, x, w, backend=backend)))
    s = rng.standard_normal((256, 1000)).astype(dtype)
    gs = rng.standard_normal((256, 1000)).astype(dtype)
    for op in ("softmax", "log_softmax"):
        f, fb = getattr(fastact, op), getattr(fastact, op + "_backward")
        cases.append((op, lambda f=f: f(s, backend=backend)))
        cases.append((op + "_backward", lambda fb=fb: fb(gs, f(s, backend="numpy"),
                                                         backend=backend)))
    for label, call in cases:
        fastact.set_num_threads(1)
        one = call()
        one = one if isinstance(one, tuple) else (one,)
        fastact.set_num_threads(2)
        for _ in range(4):
            two = call()
            two = two if isinstance(two, tuple) else (two,)
            for a, b in zip(one, two):
                assert np.array_equal(_bits(a), _bits(b)), f"{label}: 1 and 2 threads differ"


if __name__ == "__main__" and sys.argv[1:2] in (["--parked"], ["--control"]):
    print(json.dumps(_child(sys.argv[1][2:])))
