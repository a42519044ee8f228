"""The dispatcher (backend=, use_backend, FASTACT_BACKEND, automatic choice,
unavailable backends), fastact.backends(), threads, and import cost."""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastact
from fastact import _dispatch, config
from conftest import HOST_BACKENDS, assert_bitwise_equal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("elementwise", "elementwise_strided", "prelu_forward", "prelu_backward",
           "rows_forward", "rows_backward")


def _available():
    st = fastact.backends()
    return [n for n in HOST_BACKENDS if st[n]["available"]]


@pytest.fixture
def calls(monkeypatch):
    """Records, per thread, the name of every backend that computed something."""
    log = []

    # the public layer keeps elementwise kernels from `elementwise_kernel`:
    # start from an empty cache so that every call goes through the spies,
    # and log only the outermost spied call of a thread (a backend's kernel
    # may call its own `elementwise`)
    monkeypatch.setattr(fastact._api, "_kernels", {})
    depth = threading.local()

    def logging(fn, name):
        def spied(*a, **k):
            d = getattr(depth, "n", 0)
            if d == 0:
                log.append((threading.get_ident(), name))
            depth.n = d + 1
            try:
                return fn(*a, **k)
            finally:
                depth.n = d
        return spied

    for name in _available():
        b = _dispatch.get(name)
        for m in METHODS:
            monkeypatch.setattr(b, m, logging(getattr(b, m), name))

        def kernel_spy(*a, _orig=b.elementwise_kernel, _name=name, **k):
            return logging(_orig(*a, **k), _name)
        monkeypatch.setattr(b, "elementwise_kernel", kernel_spy)

    def names(clear=True):
        me = threading.get_ident()
        out = [n for t, n in log if t == me]
        if clear:
            log.clear()
        return out
    names.log = log
    return names


def _all_ops(x, **kw):
    """One call of every kind of kernel."""
    fastact.relu(x, **kw)
    fastact.softmax(x, **kw)
    fastact.prelu(x, np.array([0.5], x.dtype), **kw)
    fastact.prelu_backward(x, x, np.array([0.5], x.dtype), **kw)
    fastact.softmax_backward(x, x, **kw)


def test_backend_argument_selects(calls):
    x = np.ones((2, 3))
    for name in _available():
        _all_ops(x, backend=name)
        assert calls() == [name] * 5
        _all_ops(x[:, ::2], backend=name)           # the general (validating) path too
        assert calls() == [name] * 5


def test_precedence_call_over_context_over_env(calls, monkeypatch):
    avail = _available()
    if len(avail) < 2:
        pytest.skip("needs two host backends")
    a, b = "numpy", avail[1]
    x = np.ones(5)
    monkeypatch.setattr(_dispatch, "_ENV_BACKEND", a)      # what FASTACT_BACKEND set at import
    fastact.sigmoid(x)
    assert calls() == [a]
    with fastact.use_backend(b):
        fastact.sigmoid(x)
        assert calls() == [b]                               # context beats env
        fastact.sigmoid(x, backend=a)
        assert calls() == [a]                               # call beats context
    fastact.sigmoid(x, backend=b)
    assert calls() == [b]                                   # call beats env
    fastact.sigmoid(x)
    assert calls() == [a]


def test_use_backend_nests_and_restores(calls):
    avail = _available()
    x = np.ones(5)
    fastact.relu(x)
    auto = calls()
    assert auto and auto[0] != "numpy"
    with fastact.use_backend("numpy"):
        fastact.relu(x)
        assert calls() == ["numpy"]
        with fastact.use_backend(avail[-1]):
            fastact.relu(x)
            assert calls() == [avail[-1]]
            with fastact.use_backend("numpy"):
                fastact.softmax(x)
                assert calls() == ["numpy"]
            fastact.relu(x)
            assert calls() == [avail[-1]]
        fastact.relu(x)
        assert calls() == ["numpy"]
    fastact.relu(x)
    assert calls() == auto


def test_use_backend_restores_after_exception(calls):
    x = np.ones(3)
    fastact.relu(x)
    auto = calls()
    with pytest.raises(KeyError):
        with fastact.use_backend("numpy"):
            raise KeyError("boom")
    fastact.relu(x)
    assert calls() == auto


def test_use_backend_is_per_thread(calls):
    x = np.ones(7)
    seen = {}
    inside = threading.Event()
    done = threading.Event()

    def other():
        inside.wait(10)
        fastact.relu(x)
        seen["other"] = calls(clear=False)
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with fastact.use_backend("numpy"):
        inside.set()
        done.wait(10)
        fastact.relu(x)
        mine = calls(clear=False)
    t.join()
    assert mine == ["numpy"]
    assert seen["other"] and seen["other"][0] != "numpy"


def test_unknown_backend_name():
    x = np.ones(3)
    for call in (lambda: fastact.relu(x, backend="gpu"),
                 lambda: fastact.softmax(x, backend="NumPy"),
                 lambda: fastact.prelu(x, 0.1, backend="torch"),
                 lambda: fastact.use_backend("bogus").__enter__()):
        with pytest.raises(ValueError) as e:
            call()
        msg = str(e.value)
        assert "unknown fastact backend" in msg
        for n in config.BACKEND_NAMES:
            assert repr(n) in msg


def test_unavailable_backend_raises_with_reason():
    st = fastact.backends()
    missing = [n for n in config.BACKEND_NAMES if not st[n]["available"]]
    if not missing:
        pytest.skip("every backend loads here (the subprocess test covers this path)")
    x = np.ones(3)
    for name in missing:
        with pytest.raises(fastact.BackendUnavailable) as e:
            fastact.sigmoid(x, backend=name)
        err = e.value
        assert isinstance(err, RuntimeError)
        assert err.reason == st[name]["reason"] and err.name == name
        assert name in str(err) and err.reason in str(err)
        with fastact.use_backend(name):            # entering is fine; computing is not
            with pytest.raises(fastact.BackendUnavailable):
                fastact.softmax(x)


def _run_py(code, env=None, timeout=120):
    e = dict(os.environ)
    e.pop("FASTACT_BACKEND", None)
    e.pop("FASTACT_NUM_THREADS", None)
    e.pop("OMP_NUM_THREADS", None)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    r = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", textwrap.dedent(code)],
                       capture_output=True, text=True, env=e, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_without_numba_the_reference_still_works():
    """A backend that cannot load says why; its absence breaks nothing else."""
    out = _run_py("""
        import sys
        sys.modules["numba"] = None          # as if numba were not installed
        import numpy as np, fastact
        st = fastact.backends()
        assert st["numpy"]["available"]
        assert not st["numba"]["available"]
        assert "numba" in st["numba"]["reason"], st["numba"]["reason"]
        x = np.array([-1.0, 0.0, 2.0])
        assert fastact.relu(x).tolist() == [0.0, 0.0, 2.0]
        assert abs(fastact.softmax(x).sum() - 1) < 1e-15
        try:
            fastact.relu(x, backend="numba")
        except fastact.BackendUnavailable as e:
            assert e.reason == st["numba"]["reason"]
            print("OK", e.reason)
        else:
            raise SystemExit("no BackendUnavailable")
        fastact.set_num_threads(1)
    """)
    assert out.startswith("OK")


def test_env_var_sets_default_backend():
    code = """
        import numpy as np, fastact
        from fastact import _dispatch
        used = []
        for name in ("numpy", "numba"):
            b = _dispatch.get(name)
            orig = b.elementwise_kernel     # what the public layer calls for these arrays

            def spy(*a, _o=orig, _n=name):
                kernel = _o(*a)
                return lambda *args: (used.append(_n), kernel(*args))
            b.elementwise_kernel = spy
        fastact.relu(np.ones(3))
        fastact.relu(np.ones(3), backend="numba")
        with fastact.use_backend("numba"):
            fastact.relu(np.ones(3))
        print(",".join(used))
    """
    assert _run_py(code, {"FASTACT_BACKEND": "numpy"}).strip() == "numpy,numba,numba"
    assert _run_py(code, {"FASTACT_BACKEND": " NumPy "}).strip() == "numpy,numba,numba"
    assert _run_py(code, {"FASTACT_BACKEND": "numba"}).strip() == "numba,numba,numba"
    assert _run_py(code, {"FASTACT_BACKEND": ""}).strip().split(",")[0] != "numpy"


def test_env_var_unknown_name_is_a_clear_error():
    out = _run_py("""
        import numpy as np, fastact
        try:
            fastact.relu(np.ones(3))
        except ValueError as e:
            print(e)
        fastact.relu(np.ones(3), backend="numpy")     # an explicit choice still works
    """, {"FASTACT_BACKEND": "gpu"})
    assert "FASTACT_BACKEND" in out and "'gpu'" in out and "'numpy'" in out and "'numba'" in out


def test_import_compiles_nothing():
    out = _run_py("""
        import sys, time
        t = time.perf_counter()
        import fastact
        dt = time.perf_counter() - t
        heavy = [m for m in ("numba", "llvmlite", "cffi", "torch", "numba.cuda") if m in sys.modules]
        print(heavy, dt)
    """)
    heavy, dt = out.rsplit("]", 1)
    assert heavy.strip() == "[", f"import fastact imported {heavy}]"
    assert float(dt) < 5.0      # generous: the point is that nothing compiles


def test_backends_structure():
    st = fastact.backends()
    assert list(st) == list(config.BACKEND_NAMES)
    for name, info in st.items():
        assert isinstance(info, dict)
        assert isinstance(info["available"], bool)
        if info["available"]:
            assert info["reason"] is None
        else:
            assert isinstance(info["reason"], str) and info["reason"]
    assert st["numpy"]["available"] and st["numba"]["available"]
    assert st == fastact.backends()      # stable


@pytest.mark.parametrize("n", [10, config.PARALLEL_MIN - 1, config.PARALLEL_MIN, 1 << 16])
def test_automatic_choice_is_not_the_reference(calls, n):
    x = np.linspace(-1, 1, n)
    _all_ops(x)
    got = calls()
    assert len(got) == 5 and "numpy" not in got, got
    assert set(got) <= {"numba", "c"}


# --- threads ------------------------------------------------------------------------

def test_set_num_threads_validation(restore_threads):
    from fastact import _threads
    hi = _threads.max_threads()
    for bad in (0, -1, hi + 1, 10**6):
        with pytest.raises(ValueError, match=f"between 1 and {hi}"):
            fastact.set_num_threads(bad)
    for bad in (1.0, "2", None, True, np.float64(2)):
        with pytest.raises(TypeError, match="n must be an int"):
            fastact.set_num_threads(bad)
    fastact.set_num_threads(1)
    assert fastact.get_num_threads() == 1
    fastact.set_num_threads(hi)
    assert fastact.get_num_threads() == hi


def test_num_threads_reaches_numba(restore_threads, monkeypatch):
    """The thread count reaches the Numba backend's parallel kernels (run
    on fastact's pool, or on Numba's threading layer without it)."""
    nb = pytest.importorskip("numba")
    from fastact._backends import numba_pool
    seen, real = [], numba_pool.PoolKernel.__call__

    def spy(self, nthreads, *args):
        seen.append(nthreads)
        return real(self, nthreads, *args)
    monkeypatch.setattr(numba_pool.PoolKernel, "__call__", spy)
    x = np.ones(config.PARALLEL_MIN * 2)
    fastact.set_num_threads(1)
    fastact.sigmoid(x, backend="numba")
    hi = fastact.get_num_threads.__globals__["max_threads"]()
    fastact.set_num_threads(hi)
    fastact.sigmoid(x, backend="numba")
    assert seen == [1, hi]
    if numba_pool.pool_in_use() == "numba":
        assert nb.get_num_threads() == hi


def test_env_num_threads():
    out = _run_py("import fastact; print(fastact.get_num_threads())", {"FASTACT_NUM_THREADS": "1"})
    assert out.strip() == "1"


@pytest.mark.parametrize("value, want", [("1", "1"), ("1,4", "1"), (" 1 ", "1"),
                                         ("1000", "hi"), ("abc", "affinity"), ("", "affinity")])
def test_omp_num_threads_is_the_default(value, want):
    """Without FASTACT_NUM_THREADS, OMP_NUM_THREADS (its first entry; Dask's
    nanny sets it to 1) is the count, at most the threads available; a
    value that is no positive integer leaves the affinity mask's CPUs."""
    code = ("import os, fastact; from fastact._threads import max_threads, _cgroup_quota; "
            "aff = min(len(os.sched_getaffinity(0)), _cgroup_quota() or 10**6, max_threads()); "
            "print(fastact.get_num_threads(), max_threads(), aff)")
    n, hi, aff = _run_py(code, {"OMP_NUM_THREADS": value}).split()
    assert n == {"hi": hi, "affinity": aff}.get(want, want)
    both = _run_py("import fastact; print(fastact.get_num_threads())",
                   {"OMP_NUM_THREADS": "1", "FASTACT_NUM_THREADS": hi})
    assert both.strip() == hi                     # FASTACT_NUM_THREADS first


@pytest.mark.parametrize("files, want", [
    ({"cpu.max": "150000 100000\n"}, 2), ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "50000 100000\n"}, 1),
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None)])
def test_cgroup_cpu_quota(tmp_path, files, want):
    from fastact._threads import _cgroup_quota
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _cgroup_quota(str(tmp_path)) == want


_ENV_THREADS = """
import warnings, numpy as np, fastact
from fastact._threads import default_threads, max_threads
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    n = fastact.get_num_threads()
    fastact.relu(np.ones(1 << 20, np.float32))      # parallel kernels run with n threads
    fastact.get_num_threads()                      # warned once, not at each read
print(n, max_threads(), default_threads(), len(w), w[0].category.__name__ if w else "",
      w[0].message if w else "")
"""


@pytest.mark.parametrize("value, kind", [("1000000", "high"), ("abc", "bad"), ("0", "bad"),
                                         ("-2", "bad"), ("2.5", "bad")])
def test_env_num_threads_out_of_range_warns(value, kind):
    """A count above the available threads is lowered to them (it made the
    parallel kernels raise from inside Numba); one that is not a positive
    integer is ignored; each says so once, in a RuntimeWarning."""
    n, hi, default, nwarn, cat, msg = _run_py(
        _ENV_THREADS, {"FASTACT_NUM_THREADS": value}).split(" ", 5)
    assert n == (hi if kind == "high" else default) and nwarn == "1" and cat == "RuntimeWarning"
    assert f"FASTACT_NUM_THREADS={value!r}" in msg if kind == "bad" else f"={value} is more" in msg


def _heavy_ops(rng, dtype, backend):
    """(call, expected) pairs on arrays above the parallel threshold; the expectations are
    the reference backend's results (bit-exact ops) or this backend's own results computed
    alone (sigmoid, softmax: within 2 ULP, serial and parallel kernels may round apart)."""
    n = config.PARALLEL_MIN * 2
    x = (rng.standard_normal(n) * 4).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    rows = (x / 4).reshape(64, -1)
    w = np.array([0.2], dtype)
    ops = [
        ("ulp", lambda b: fastact.sigmoid(x, backend=b)),
        ("ulp", lambda b: fastact.softmax(rows, backend=b)),
        ("ulp", lambda b: fastact.elu_backward(g, x, backend=b)),
        ("bits", lambda b: fastact.relu(x, backend=b)),
        ("bits", lambda b: fastact.leaky_relu_backward(g, x, 0.1, backend=b)),
        ("bits", lambda b: fastact.rrelu(x, training=True, seed=3, backend=b)),
        ("bits", lambda b: fastact.prelu(x, w, backend=b)),
    ]
    return [(lambda f=f: f(backend), kind, f(backend if kind == "ulp" else "numpy"))
            for kind, f in ops]


@pytest.mark.parametrize("dtype_", [np.float32, np.float64])
def test_concurrent_calls_from_many_threads(host_backend, dtype_):
    """Kernels release the GIL and share a thread pool: concurrent calls stay correct."""
    work = [_heavy_ops(np.random.default_rng(s), dtype_, host_backend) for s in range(6)]
    errors = []
    barrier = threading.Barrier(len(work))

    def worker(ops):
        try:
            barrier.wait(30)
            for _ in range(3):
                for call, kind, want in ops:
                    got = call()
                    if kind == "bits":
                        assert_bitwise_equal(got, want)
                    else:
                        np.testing.assert_array_max_ulp(got, want, 2)
        except BaseException as e:       # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(ops,)) for ops in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]


def test_compiled_kernels_are_cached_on_disk():
    """A second process loads the kernels this one compiled instead of compiling again."""
    x = np.linspace(-3, 3, config.PARALLEL_MIN)
    script = """
        import numpy as np, fastact
        from fastact import config
        x = np.linspace(-3, 3, config.PARALLEL_MIN)
        for n in (100, config.PARALLEL_MIN):
            fastact.sigmoid(x[:n], backend="numba")
            fastact.softmax(x[:n].reshape(-1, 4), backend="numba")
    """
    _run_py(script)        # compiles, or loads what is there, and saves
    for n in (100, config.PARALLEL_MIN):
        fastact.sigmoid(x[:n], backend="numba")
    out = _run_py(script, {"NUMBA_DEBUG_CACHE": "1"})
    assert "data loaded" in out, out[-2000:]
    saved = [ln for ln in out.splitlines() if "data saved" in ln]
    assert not saved, "second process compiled again:\n" + "\n".join(saved[:10])


def test_results_do_not_depend_on_thread_count(fast_backend, restore_threads):
    """Elementwise results and softmax rows are bit-identical for 1 and all threads;
    PReLU's weight gradient (a reduction split across threads) within its sum bound."""
    from fastact import _threads
    n = 3 * config.PARALLEL_MIN + 5
    rng = np.random.default_rng(12)
    x = rng.standard_normal(n)
    g = rng.standard_normal(n)
    w = np.array([0.1, 0.3, 0.7])
    rows = x[: n - n % 21].reshape(-1, 21)
    x3, g3 = x[: n - n % 3].reshape(-1, 3), g[: n - n % 3].reshape(-1, 3)
    runs = []
    for k in (1, _threads.max_threads()):
        fastact.set_num_threads(k)
        runs.append([
            fastact.rrelu(x, training=True, seed=4, backend=fast_backend),
            fastact.elu_backward(g, x, backend=fast_backend),
            fastact.sigmoid(x.astype(np.float32), backend=fast_backend),
            fastact.softmax(rows, backend=fast_backend),
            fastact.prelu_backward(g, x, w[:1], backend=fast_backend)[0],
            fastact.prelu_backward(g3, x3, w, backend=fast_backend)[1],    # last: a reduction
        ])
    for a, b in zip(runs[0][:-1], runs[1][:-1]):
        assert_bitwise_equal(a, b)
    np.testing.assert_allclose(runs[0][-1], runs[1][-1], rtol=1e-13)


def test_kernels_release_the_gil(fast_backend, restore_threads):
    """While a long kernel runs on one thread, another Python thread keeps running."""
    import time
    fastact.set_num_threads(1)              # one core for the kernel, one for the counter
    x = np.linspace(-5, 5, 1 << 22)
    rows = x.reshape(-1, 1024)
    fastact.sigmoid(x, backend=fast_backend)  # compiled, warm
    fastact.softmax(rows, backend=fast_backend)
    count = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=spin)
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    t.start()
    try:
        time.sleep(0.05)
        c0, t0 = count[0], time.perf_counter()
        time.sleep(0.1)                      # GIL free: the counter's rate
        free_rate = (count[0] - c0) / (time.perf_counter() - t0)
        for call in (lambda: fastact.sigmoid(x, backend=fast_backend),
                     lambda: fastact.softmax(rows, backend=fast_backend)):
            got, spent = 0, 0.0
            while spent < 0.3:
                c0, t0 = count[0], time.perf_counter()
                call()
                got += count[0] - c0
                spent += time.perf_counter() - t0
            # held GIL: the counter only runs in the gaps between calls (~switch interval)
            # (measured on 2 busy cores: ~0.04 of the free rate when held, ~0.2-0.9 when released)
            assert got > 0.1 * free_rate * spent, (got, free_rate * spent)
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)


_FORK = """
import multiprocessing as mp, numpy as np, fastact
from fastact import _dispatch
before = %s
backends = [b for b in ("numba", "c") if fastact.backends()[b]["available"]]
x = np.linspace(-3, 3, 1 << 20).astype(np.float32)
mid = x[:30000].copy()                       # the C backend's threads, below Numba's range
if not before:
    for b in backends:                       # the parent runs parallel regions first
        fastact.relu(x, backend=b)
        fastact.sigmoid(mid, backend=b)

def child(q):
    out = [fastact.get_num_threads()]
    for b in backends + [None]:
        ok = np.array_equal(fastact.relu(x, backend=b), np.maximum(x, 0))
        s = fastact.sigmoid(mid, backend=b)
        ok = ok and np.allclose(s, 1 / (1 + np.exp(-mid.astype(np.float64))), rtol=1e-6)
        out.append(bool(ok))
    q.put(out)

ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
p.join(60)
alive = p.is_alive()
if alive:
    p.kill()
print(alive, p.exitcode, q.get(timeout=5) if not alive and p.exitcode == 0 else None)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_process_forked_after_parallel_kernels_runs_serially():
    """OpenMP's pool does not survive fork(): a child forked after the parent
    ran parallel kernels hung in the C backend's threads, or was killed by
    Numba's omp layer ("fork() called from a process already using GNU
    OpenMP"); it now runs every kernel on its own thread, correctly."""
    out = _run_py(_FORK % "False", timeout=180).split(" ", 2)
    assert out[:2] == ["False", "0"], out
    assert out[2].strip() == "[1" + ", True" * (out[2].count("True")) + "]", out
    assert out[2].count("True") >= 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_process_forked_before_any_parallel_kernel_keeps_its_threads():
    out = _run_py(_FORK % "True", timeout=180).split(" ", 2)
    assert out[:2] == ["False", "0"], out
    from fastact._threads import max_threads
    assert out[2].startswith(f"[{max_threads()},") and "False" not in out[2], out
