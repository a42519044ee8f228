"""Benchmark machinery shared by ``fastact bench``, ``benchmarks/`` and the regression check.

A *case* is one kernel: (op, pass, implementation, dtype, size).  Each case
is timed interleaved with a parallel memory copy of the same size and dtype,
so its throughput can be stated as a fraction of what this machine can move
right now (the copy "roofline").  That fraction, not the absolute time, is
what the regression check compares with ``benchmarks/baseline.json``:
absolute times drift between runs and machines; the ratio to a copy measured
in the same moment mostly does not.

Memory traffic is nominal and the same for every implementation of one op:
forward reads ``x`` and writes ``y``; backward reads ``grad`` and the saved
tensor and writes ``grad_x``; PReLU also reads the weights and its backward
writes their gradient; a gated op's ``y`` and ``grad`` are half of ``x``.  What an implementation moves beyond that (PyTorch's
RReLU noise tensor, a second pass over a softmax row, NumPy temporaries) is
its cost, not extra credit.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import platform
import statistics
import time

import numpy as np

from ._warmup import dtype_of     # the NumPy dtype of a name (bfloat16: ml_dtypes)

PASSES = ("forward", "backward")
DTYPES = ("float32", "float64")
#: the 16-bit storage dtypes (``--dtype float16|bfloat16``; not in "all")
NARROW_DTYPES = ("float16", "bfloat16")


def _bits(a):
    """A narrow array's uint16 view (what the Numba copy kernels move), else ``a``."""
    return a.view(np.uint16) if a.dtype.name in NARROW_DTYPES else a


def _torch_view(a):
    """``torch.from_numpy`` that takes bfloat16 (ml_dtypes) too."""
    import torch
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)
REFERENCES = ("numpy-expr", "torch")     # comparison columns, not fastact backends

#: Element count of the full benchmarks (``fastact bench`` and ``benchmarks/``).
DEFAULT_SIZE = 1 << 24
#: ``--quick`` (the CI regression check): 16 MiB float32 arrays, still far
#: beyond the 2 MiB per-core L2 of the build machine, on one thread.  On a
#: shared 2-core machine a 2-thread parallel region waits for whichever core
#: is busy with someone else: measured under load, every parallel kernel and
#: the parallel copy alike took one 8 ms scheduler slice, whatever its work,
#: while one thread kept within 10% from run to run.
QUICK_SIZE = 1 << 22
QUICK_THREADS = 1
#: ``--quick`` (without ``--dtype``) also times these ops in this narrow
#: dtype, so that the regression check covers the narrow kernels (their
#: conversions, the row kernels' buffers): a memory-bound op, a
#: compute-bound one and a row-wise one, at the main size only.
QUICK_NARROW_DTYPE = "float16"
QUICK_NARROW_OPS = ("relu", "sigmoid", "softmax")
DEFAULT_REPEAT = 5
QUICK_REPEAT = 9
#: Softmax row length of the main case, and the sweep of ``benchmarks/``.
SOFTMAX_ROW = 4096
SOFTMAX_ROWS_SWEEP = (16, 128, 1024, 4096, 16384, 65536)
#: Channel-row lengths of the PReLU sweep of ``benchmarks/``: (N, C)
#: activations (1) and short rows (8), beside the main case's long ones.
PRELU_ROWS_SWEEP = (1, 8)
#: PReLU layout: (batch, channels, spatial) with one slope per channel.
PRELU_CHANNELS = 64
PRELU_BATCH = 16
RRELU_LOWER, RRELU_UPPER, RRELU_SEED = 1 / 8, 1 / 3, 0
#: RReLU's other parameterization (Xu et al.: y = x / a, a ~ U(3, 8)),
#: timed as the bench-only op "rrelu_div" beside "rrelu" (PyTorch has none)
RRELU_DIV_LOWER, RRELU_DIV_UPPER = 3.0, 8.0
#: bench rows an op of fastact.ACTIVATIONS brings along
EXTRA_ROWS = {"rrelu": ("rrelu_div",)}


def expand_ops(ops):
    """``ops`` with the extra rows of EXTRA_ROWS after their op."""
    return [r for op in ops for r in (op, *EXTRA_ROWS.get(op, ()))]
#: Default allowed drop of a kernel's copy-normalized throughput.
MAX_REGRESSION = 0.25
#: Arrays of the benchmark's size a run holds at once, at the least: the
#: base inputs (x, grad), the output, the saved tensor, the copy's output,
#: and NumPy's and PyTorch's results and temporaries.
ARRAYS_HELD = 8
#: Below this many elements the arrays stay in the caches and the parallel
#: copy is mostly thread start-up: "% copy" is not a memory roofline there.
ROOFLINE_MIN_SIZE = 1 << 20


# --- workloads ------------------------------------------------------------------

def shape_for(op, n, row=None):
    """The array shape a case of ``op`` uses for (about) ``n`` elements."""
    spec = registry_entry(op)
    if spec is not None and spec.kind in ("rowwise", "gated"):
        # gated: x's rows split in halves along the last axis
        L = min(row or SOFTMAX_ROW, n)
        return (max(n // L, 1), L)
    if op == "prelu" and row is not None:        # (samples, channels, row)
        return (max(n // (PRELU_CHANNELS * row), 1), PRELU_CHANNELS, row)
    if op == "prelu":
        C = PRELU_CHANNELS if n >= PRELU_CHANNELS else 1
        B = PRELU_BATCH if n >= PRELU_BATCH * C * 16 else 1
        return (B, C, max(n // (B * C), 1))
    return (n,)


@dataclasses.dataclass
class Workload:
    """Synthetic inputs and preallocated outputs of one (op, dtype, shape)."""
    op: str
    dtype: np.dtype
    shape: tuple
    x: np.ndarray           # forward input
    y: np.ndarray           # forward output (the saved tensor of backward from y)
    g: np.ndarray           # upstream gradient
    out: np.ndarray         # preallocated result
    w: np.ndarray | None = None      # prelu slopes
    gw: np.ndarray | None = None     # prelu weight gradient
    noise: np.ndarray | None = None  # rrelu slopes, for implementations that store them
    out_backward: np.ndarray | None = None  # the backward's result where not out's shape (gated)

    @property
    def size(self):
        return self.x.size

    def result(self, pass_):
        """The preallocated result of ``pass_``."""
        return self.out if pass_ == "forward" or self.out_backward is None else self.out_backward

    def traffic(self, pass_):
        """Nominal bytes moved by one call (see the module docstring)."""
        item = self.dtype.itemsize
        arrays = 2 if pass_ == "forward" else 3
        if self.out_backward is not None:     # gated: x, half its size out (g in)
            arrays = 1.5 if pass_ == "forward" else 2.5
        extra = 0
        if self.w is not None:
            extra = self.w.size * item * (1 if pass_ == "forward" else 2)
        return int(arrays * self.size * item) + extra


@functools.lru_cache(maxsize=4)
def _base_data(dtype, n):
    # A standard normal mix with a few large values: half the elements take
    # each branch of every activation, and exp sees a realistic range.
    rng = np.random.default_rng(12345)
    x = rng.standard_normal(n, dtype=np.float64) * 2.0
    dt = dtype_of(dtype)
    return x.astype(dt), rng.standard_normal(n, dtype=np.float64).astype(dt)


def make_workload(op, dtype, n, row=None):
    import fastact
    dtype = dtype_of(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    shape = shape_for(op, n, row)
    m = math.prod(shape)
    xb, gb = _base_data(dtype.name, m)
    x, g = xb.reshape(shape), gb.reshape(shape)
    out = np.empty(shape, dtype)
    w = gw = noise = out_backward = None
    spec = registry_entry(op)
    if spec is not None and spec.kind == "gated":
        half = shape[:-1] + (shape[-1] // 2,)
        g, out_backward = gb[:math.prod(half)].reshape(half), out
        out = np.empty(half, dtype)
    if spec is not None:
        y = getattr(fastact, op)(x, **spec.example_kwargs()) if spec.saves == "y" else x
    elif op == "prelu":
        w = np.linspace(0.05, 0.5, shape[1], dtype=dtype)
        gw = np.empty_like(w)
        y = fastact.prelu(x, w)
    elif op == "rrelu":
        from . import _registry, _rng
        # narrow dtypes: float32's slopes, as their kernels draw them
        wide = dtype if dtype.itemsize >= 4 else np.dtype(np.float32)
        noise = _registry.reference_rrelu_slopes(m, _rng.seed_key(RRELU_SEED), RRELU_LOWER,
                                                 RRELU_UPPER, wide).reshape(shape)
        xw = x.astype(wide)
        y = np.where(xw > 0, xw, xw * noise).astype(dtype)
        noise = noise.astype(dtype)
    elif op == "rrelu_div":        # the divisors, for NumPy's expression only
        noise = np.random.default_rng(RRELU_SEED).uniform(
            RRELU_DIV_LOWER, RRELU_DIV_UPPER, shape).astype(dtype)
        y = np.where(x > 0, x, x / noise)
    else:
        y = x
    return Workload(op, dtype, shape, x, y, g, out, w, gw, noise, out_backward)


# --- implementations ---------------------------------------------------------------

def registry_entry(op):
    """The registry entry of ``op`` where the bench times it from the
    registry alone (every public elementwise and row-wise op but rrelu,
    whose training slopes PyTorch keeps in a noise tensor); else None."""
    from ._registry import REGISTRY
    for spec in REGISTRY.values():
        if spec.kind in ("elementwise", "rowwise", "gated") and spec.public and \
                spec.api_name == op != "rrelu":
            return spec
    return None


def _saved(wl, spec):
    return wl.y if spec.saves == "y" else wl.x


def fastact_call(wl, pass_, backend):
    """A zero-argument callable running fastact's ``op`` on ``backend``."""
    import fastact
    x, g, out, b = wl.x, wl.g, wl.result(pass_), backend
    op, fwd = wl.op, pass_ == "forward"
    spec = registry_entry(op)
    if spec is not None:
        kw, s = spec.example_kwargs(pass_), _saved(wl, spec)
        f, fb = getattr(fastact, op), getattr(fastact, op + "_backward")
        return (lambda: f(x, **kw, out=out, backend=b)) if fwd else \
               (lambda: fb(g, s, **kw, out=out, backend=b))
    if op in ("rrelu", "rrelu_div"):
        kw = dict(training=True, seed=RRELU_SEED, out=out, backend=b)
        lo, up = RRELU_LOWER, RRELU_UPPER
        if op == "rrelu_div":
            kw["divide"], lo, up = True, RRELU_DIV_LOWER, RRELU_DIV_UPPER
        return (lambda: fastact.rrelu(x, lo, up, **kw)) if fwd else \
               (lambda: fastact.rrelu_backward(g, x, lo, up, **kw))
    if op == "prelu":
        w, gw = wl.w, wl.gw
        return (lambda: fastact.prelu(x, w, out=out, backend=b)) if fwd else \
               (lambda: fastact.prelu_backward(g, x, w, out=(out, gw), backend=b))
    raise ValueError(f"unknown op {op!r}")


def numpy_expr_call(wl, pass_):
    """NumPy's own expression of the op, written the way a user would."""
    x, g = wl.x, wl.g
    op, fwd = wl.op, pass_ == "forward"
    spec = registry_entry(op)
    if spec is not None:
        p, s = spec.example_params(pass_), _saved(wl, spec)
        ef, eb = spec.numpy_forward, spec.numpy_backward
        f = (lambda: ef(x, *p)) if fwd else (lambda: eb(g, s, *p))
    elif op in ("rrelu", "rrelu_div"):
        # slopes a (rrelu: y = a x) or divisors a (rrelu_div: y = x / a)
        div = op == "rrelu_div"
        lo, up = (RRELU_DIV_LOWER, RRELU_DIV_UPPER) if div else (RRELU_LOWER, RRELU_UPPER)
        rng = np.random.default_rng(RRELU_SEED)
        noise = wl.noise

        def forward():
            a = rng.uniform(lo, up, x.shape).astype(x.dtype)
            return np.where(x > 0, x, x / a if div else a * x)
        f = forward if fwd else (
            lambda: np.where(x > 0, g, g / noise if div else noise * g))
    elif op == "prelu":
        w = wl.w[:, None]

        def backward():
            gx = np.where(x > 0, g, w * g)
            return gx, np.where(x > 0, 0, g * x).sum(axis=(0, 2))
        f = (lambda: np.where(x > 0, x, w * x)) if fwd else backward
    else:
        raise ValueError(f"unknown op {op!r}")

    def call():
        with np.errstate(all="ignore"):
            return f()
    return call


def torch_available():
    try:
        import torch  # noqa: F401
        return True
    except Exception:
        return False


def torch_call(wl, pass_):
    """PyTorch's CPU kernel for the op, writing into ``out`` where ATen has an out= form."""
    import torch
    import fastact
    torch.set_num_threads(fastact.get_num_threads())
    A = torch.ops.aten
    t = _torch_view
    x, g, out = t(wl.x), t(wl.g), t(wl.result(pass_))
    op, fwd = wl.op, pass_ == "forward"
    spec = registry_entry(op)
    if spec is not None:
        p, s = spec.example_params(pass_), t(_saved(wl, spec))
        tf, tb = spec.torch.forward_out, spec.torch.backward_out
        return (lambda: tf(A, x, out, *p)) if fwd else (lambda: tb(A, g, s, out, *p))
    if op == "rrelu":
        # PyTorch draws the slopes into a stored noise tensor in the forward
        # pass and reads it back in the backward pass.
        noise = t(wl.noise.copy())
        lo, up = RRELU_LOWER, RRELU_UPPER
        return (lambda: A.rrelu_with_noise.out(x, noise, lo, up, True, None, out=out)) if fwd \
            else (lambda: A.rrelu_with_noise_backward.out(g, x, noise, lo, up, True, False,
                                                          out=out))
    if op == "rrelu_div":           # no such parameterization in PyTorch
        return None
    if op == "prelu":
        w = t(wl.w).view(-1, 1)     # ATen's kernel takes the weight broadcastable to x
        # no out= form: these include allocating the result(s)
        return (lambda: A._prelu_kernel(x, w)) if fwd else \
               (lambda: A._prelu_kernel_backward(g, x, w))
    raise ValueError(f"unknown op {op!r}")


def make_call(wl, pass_, impl):
    if impl == "numpy-expr":
        return numpy_expr_call(wl, pass_)
    if impl == "torch":
        call = torch_call(wl, pass_)
        try:
            if call is not None:
                call()
        except (NotImplementedError, RuntimeError):
            return None             # no kernel for this dtype ("not implemented for 'Half'")
        return call
    return fastact_call(wl, pass_, impl)


# --- the roofline ------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _copy_kernel():
    """The parallel elementwise kernel of the identity (the Numba backend's,
    on the threads its kernels run on: fastact's pool, or Numba's own)."""
    from ._backends import numba_cpu
    from ._prims import inner_njit
    return numba_cpu._make_unary("bench_copy_plain", inner_njit()(lambda x: x), False, True)


def copy_call(dtype, n):
    """A parallel read+write copy of ``n`` elements: the roofline of a parallel kernel.

    ``np.copyto`` is single-threaded and may use non-temporal stores, which
    no elementwise kernel here uses; the parallel kernel of the identity
    moves data the way the kernels do, on the same threads (two pools
    spinning side by side would slow each other).
    """
    import fastact
    src = _bits(_base_data(np.dtype(dtype).name, n)[0])
    dst = np.empty_like(src)
    kernel = _copy_kernel()
    threads = fastact.get_num_threads()

    def call():
        kernel(threads, src, dst, ())
    return call


@functools.lru_cache(maxsize=None)
def _stream_copy_kernel(dtype):
    from ._backends import numba_cpu
    from ._prims import inner_njit
    return numba_cpu._make_blocked("bench_copy", inner_njit()(lambda x: x), False, False,
                                   np.dtype(dtype).type)


def stream_copy_gbs(dtype, n, repeat=DEFAULT_REPEAT):
    """GB/s of a parallel copy written with streaming stores, the way the
    elementwise kernels write large outputs (the blocked kernel of an
    identity), best of ``4 * repeat``;
    None where streaming stores are not used (not x86-64)."""
    import fastact
    from ._prims import streaming_supported
    if not streaming_supported():
        return None
    src = _bits(_base_data(np.dtype(dtype).name, n)[0])
    dst = np.empty_like(src)
    kernel, threads = _stream_copy_kernel(src.dtype.name), fastact.get_num_threads()

    def call():
        kernel(threads, src, dst, ())
    call()
    # a few times the rounds: one 5-call sample proved too noisy (20-32 GB/s)
    return copy_traffic(dtype, n) / min(_seconds(call) for _ in range(4 * max(repeat, 1))) / 1e9


#: the call-overhead case: relu on this many float32 elements, out= given
OVERHEAD_SIZE = 1024


def overhead_calls(backends):
    """``{name: call}`` for the call-overhead line: relu on ``OVERHEAD_SIZE``
    float32 elements into a preallocated output, through each backend,
    through the automatic choice, PyTorch (if installed) and NumPy's
    ``np.maximum`` (the floor of a Python-level NumPy call)."""
    import fastact
    x = _base_data("float32", OVERHEAD_SIZE)[0]
    out = np.empty_like(x)
    calls = {b: (lambda b=b: fastact.relu(x, out=out, backend=b)) for b in backends}
    calls["automatic"] = lambda: fastact.relu(x, out=out)
    if torch_available():
        import torch
        tx, tout = torch.from_numpy(x), torch.from_numpy(out)
        clamp_min = torch.ops.aten.clamp_min.out      # relu with out=, as in torch_call
        calls["torch"] = lambda: clamp_min(tx, 0, out=tout)
    calls["np.maximum"] = lambda: np.maximum(x, 0, out=out)
    return calls


def call_overhead(backends, rounds=7, number=2000):
    """Microseconds per call of :func:`overhead_calls`, each the best of
    ``rounds`` rounds of ``number`` calls, the rounds interleaved."""
    import timeit
    calls = overhead_calls(backends)
    for fn in calls.values():
        fn()                        # compile, load, warm
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, fn in calls.items():
            best[name] = min(best[name], timeit.timeit(fn, number=number) / number)
    return {name: t * 1e6 for name, t in best.items()}


def copy_traffic(dtype, n):
    return 2 * n * np.dtype(dtype).itemsize


# --- timing ---------------------------------------------------------------------------

def clock_name():
    """``"cpu"`` on one thread, else ``"wall"``: the clock the timings use.

    On one thread the process's CPU time is the kernel's own time: another
    job taking the core away for a while (the common noise on a shared
    machine) does not count, while everything the kernel does, memory
    stalls included, does.  Several threads need the wall clock.
    """
    import fastact
    return "cpu" if fastact.get_num_threads() == 1 else "wall"


def _seconds(fn):
    clock = time.process_time if clock_name() == "cpu" else time.perf_counter
    t0 = clock()
    fn()
    return clock() - t0


@dataclasses.dataclass
class Samples:
    """Times of one kernel and of the copy run just before each of them."""
    kernel: list = dataclasses.field(default_factory=list)
    copy: list = dataclasses.field(default_factory=list)

    def add(self, fn, copy_fn=None):
        if copy_fn is not None:
            self.copy.append(_seconds(copy_fn))
        self.kernel.append(_seconds(fn))

    @property
    def seconds(self):
        return min(self.kernel)

    @property
    def median_seconds(self):
        return statistics.median(self.kernel)

    @property
    def copy_seconds(self):
        return min(self.copy)

    @property
    def ratio(self):
        """copy time / kernel time, best of each.

        On a shared machine noise only ever adds time, so the fastest of
        several samples is the stable estimate of what the code can do, for
        the kernel and for the copy alike; samples are spread over rounds so
        that one busy moment cannot spoil all of one kernel's samples.
        """
        return min(self.copy) / min(self.kernel)

    @property
    def paired_ratio(self):
        """The median over the rounds of (the copy's time / the kernel's time
        right after it): each pair sees one state of the machine, so a
        change in the memory's speed between rounds (this 2-core machine's
        copy moves 12 to 52 GB/s from minute to minute) does not enter the
        figure, where the best of each may come from different moments."""
        return statistics.median(c / k for c, k in zip(self.copy, self.kernel))


def timed(fn, copy_fn=None, repeat=DEFAULT_REPEAT):
    """Time ``fn`` (after a warm-up call) ``repeat`` times, each after a ``copy_fn``."""
    fn()
    if copy_fn is not None:
        copy_fn()
    s = Samples()
    for _ in range(max(repeat, 1)):
        s.add(fn, copy_fn)
    return s


# --- cases and results ---------------------------------------------------------------

def case_key(op, pass_, impl, dtype, size, threads):
    return f"{op}/{pass_}/{impl}/{dtype}/{size}/t{threads}"


@dataclasses.dataclass
class Result:
    op: str
    pass_: str
    backend: str
    dtype: str
    size: int
    shape: tuple
    seconds: float             # best of the rounds; every figure below uses it
    median_seconds: float
    bytes: int
    gbs: float                 # GB/s of nominal memory traffic
    elements_per_s: float
    copy_gbs: float            # the parallel copy, same size and dtype, same rounds
    roofline: float            # gbs / copy_gbs
    threads: int = 1
    paired: float | None = None  # the same, as the median of each round's own ratio
    numpy_speedup: float | None = None
    torch_speedup: float | None = None

    @property
    def key(self):
        return case_key(self.op, self.pass_, self.backend, self.dtype, self.size, self.threads)

    def to_json(self):
        d = dataclasses.asdict(self)
        d["pass"] = d.pop("pass_")
        d["shape"] = list(self.shape)
        d["key"] = self.key
        return d


def result(wl, pass_, impl, s):
    import fastact
    n = wl.size
    nbytes = wl.traffic(pass_)
    ct = copy_traffic(wl.dtype, n)
    return Result(wl.op, pass_, impl, wl.dtype.name, n, wl.shape, s.seconds, s.median_seconds,
                  nbytes, nbytes / s.seconds / 1e9, n / s.seconds,
                  ct / s.copy_seconds / 1e9, s.ratio * nbytes / ct, fastact.get_num_threads(),
                  s.paired_ratio * nbytes / ct)


def measure(wl, pass_, impl, repeat=DEFAULT_REPEAT, copy_fn=None):
    """Time one case interleaved with the copy; return a :class:`Result`."""
    if copy_fn is None:
        copy_fn = copy_call(wl.dtype, wl.size)
    return result(wl, pass_, impl, timed(make_call(wl, pass_, impl), copy_fn, repeat))


def plan(ops, backends, dtypes):
    """The (op, pass, backend, dtype) tuples of a run, in table order."""
    return [(op, p, b, d) for d in dtypes for op in ops for p in PASSES for b in backends]


def run(ops, backends, dtypes, size, repeat, references=REFERENCES, progress=None):
    """Measure every case in ``repeat`` rounds; return the list of :class:`Result`.

    Each round times every kernel once, right after a copy of the same size,
    so a kernel's samples are spread over the whole run.  References
    (NumPy's expression, PyTorch) get at most 3 rounds: they only feed the
    speed-up columns.  ``progress(label)`` is called before each step.
    """
    refs = [r for r in references if r != "torch" or torch_available()]
    cases = []          # (workload, pass, impl, call, copy_fn, samples)
    for dtype in dtypes:
        copies = {}
        for op in ops:
            wl = make_workload(op, dtype, size)
            if wl.size not in copies:
                copies[wl.size] = copy_call(dtype, wl.size)
            for pass_ in PASSES:
                for impl in list(backends) + refs:
                    call = make_call(wl, pass_, impl)
                    if call is not None:        # (PyTorch: no rrelu_div, no float16 rrelu)
                        cases.append((wl, pass_, impl, call, copies[wl.size], Samples()))
    rounds = max(repeat, 1)
    for r in range(rounds + 1):         # round 0 is the warm-up
        for wl, pass_, impl, call, copy_fn, s in cases:
            is_ref = impl in REFERENCES
            if is_ref and r > min(rounds, 3):
                continue
            if progress:
                progress(f"{wl.op} {pass_} {impl} {wl.dtype.name}"
                         + (" (warm-up)" if r == 0 else f" ({r}/{rounds})"))
            if r == 0:
                if impl != "numpy-expr":      # nothing to compile; allocates anew anyway
                    call()
                    copy_fn()
            else:
                s.add(call, None if is_ref else copy_fn)
    results, ref_times = [], {}
    for wl, pass_, impl, call, copy_fn, s in cases:
        if impl in REFERENCES:
            ref_times[(wl.op, pass_, wl.dtype.name, impl)] = s.seconds
        else:
            results.append(result(wl, pass_, impl, s))
    for res in results:
        t = ref_times.get((res.op, res.pass_, res.dtype, "numpy-expr"))
        res.numpy_speedup = t / res.seconds if t else None
        t = ref_times.get((res.op, res.pass_, res.dtype, "torch"))
        res.torch_speedup = t / res.seconds if t else None
    return results


def compile_cases(ops, backends, dtypes, sizes, progress=None):
    """Call each fastact case :func:`run` would time at each of ``sizes``
    once, and the copies, the streamed copy and the call-overhead calls
    beside them: the Numba kernels of a bench compile into the disk cache
    (``NUMBA_CACHE_DIR`` or beside the package), from which a later bench
    loads them.  Times nothing; returns the number of calls."""
    import fastact
    from ._prims import streaming_supported
    calls = 0
    for size in sizes:
        for dtype in dtypes:
            for op in ops:
                wl = make_workload(op, dtype, size)
                copy_call(dtype, wl.size)()
                for pass_ in PASSES:
                    for b in backends:
                        if progress:
                            progress(f"{op} {pass_} {b} {dtype} {size}")
                        make_call(wl, pass_, b)()
                        calls += 1
    if streaming_supported():
        for dtype in dtypes:
            src = _bits(_base_data(np.dtype(dtype).name, 1024)[0])
            _stream_copy_kernel(src.dtype.name)(fastact.get_num_threads(), src,
                                                np.empty_like(src), ())
    for fn in overhead_calls(backends).values():
        fn()
    return calls


def steps(ops, backends, dtypes, repeat, references=REFERENCES):
    refs = [r for r in references if r != "torch" or torch_available()]
    per = len(dtypes) * len(ops) * len(PASSES)
    return per * (len(backends) * (repeat + 1) + len(refs) * (min(repeat, 3) + 1))


# --- layouts: the arrays users have beside C-ordered ones ----------------------------

#: Element count of the in-cache table of ``fastact bench`` (4 MiB of
#: float32: outputs below the streaming threshold stay in the caches).
IN_CACHE_SIZE = 1 << 20
#: Side of the square arrays of the layout table at the default size (the
#: side is the square root of ``--size``), and its number of cases.
LAYOUT_SIDE = 4096
LAYOUT_CASES = 5


def layout_cases(dtype, side=LAYOUT_SIDE):
    """The layout table's cases: ``[(label, call(backend), torch_call(),
    contiguous(backend))]``: fastact on the layout (its result preallocated
    in the layout fastact returns, NumPy's ``order="K"``), PyTorch on the same
    strided views, and fastact on C-ordered arrays of the same shape."""
    import fastact
    dtype = np.dtype(dtype)
    xb, gb = _base_data(dtype.name, side * side)
    x, g = xb.reshape(side, side), gb.reshape(side, side)
    y = fastact.sigmoid(x)
    out, out_t = np.empty_like(x), np.empty_like(x).T
    m = 512 if side >= LAYOUT_SIDE else max(side // 2, 1)
    cube = xb[:side * side // (m * m) * m * m].reshape(-1, m, m)
    out3 = np.empty_like(cube)

    def ours(name, *args, o, **kw):
        fn = getattr(fastact, name)
        return lambda b: (lambda: fn(*args, out=o, backend=b, **kw))

    def theirs(name, *args, dim=None):
        """PyTorch's ATen kernel on the same views, into an output of the
        same layout (the registry's out= forms, as the main table's)."""
        def make():
            import torch
            torch.set_num_threads(fastact.get_num_threads())
            ts = [torch.from_numpy(a) for a in args]     # the same views, strides kept
            o = torch.empty_like(ts[-1])          # keeps a dense layout
            A, t = torch.ops.aten, registry_entry(name).torch
            if dim is not None:
                return lambda: A._softmax.out(ts[0], dim, False, out=o)
            if len(ts) == 1:
                return lambda: t.forward_out(A, ts[0], o)
            return lambda: t.backward_out(A, ts[0], ts[1], o)
        return make

    return [
        ("sigmoid(x.T)", ours("sigmoid", x.T, o=out_t),
         theirs("sigmoid", x.T), ours("sigmoid", x, o=out)),
        ("relu(x.T)", ours("relu", x.T, o=out_t),
         theirs("relu", x.T), ours("relu", x, o=out)),
        ("sigmoid_backward(g.T, y.T)", ours("sigmoid_backward", g.T, y.T, o=out_t),
         theirs("sigmoid", g.T, y.T), ours("sigmoid_backward", g, y, o=out)),
        ("softmax(x, axis=0)", ours("softmax", x, o=out, axis=0),
         theirs("softmax", x, dim=0), ours("softmax", x, o=out)),
        ("softmax(x, axis=1) of (64, 512, 512)", ours("softmax", cube, o=out3, axis=1),
         theirs("softmax", cube, dim=1), ours("softmax", cube, o=out3)),
    ]


def run_layouts(backends, dtype, repeat, side=LAYOUT_SIDE, progress=None):
    """``[(label, {backend: (seconds, contiguous seconds)}, torch seconds or
    None)]``: medians over ``repeat`` interleaved rounds (every call of a
    case in each round, each right after an untimed call of its own, in an
    order rotated by one each round), after a warm-up round."""
    with_torch = torch_available()
    rows = []
    for label, ours, theirs, contiguous in layout_cases(dtype, side):
        calls = {}
        for b in backends:
            calls[(b, "layout")] = ours(b)
            calls[(b, "contiguous")] = contiguous(b)
        if with_torch:
            calls[("torch", "layout")] = theirs()
        times = {k: [] for k in calls}
        keys = list(calls)
        for r in range(max(repeat, 1) + 1):
            if progress:
                progress(f"layouts: {label}" + (" (warm-up)" if r == 0 else f" ({r}/{repeat})"))
            # each call timed right after an untimed one of its own, in an
            # order rotated round by round: the first call after another
            # library's (or after the process idled) ran up to 1.7x slower,
            # whichever call it was (numba relu on x.T: 4.3 ms right after
            # PyTorch's call, 2.5 ms elsewhere; sigmoid on 4096**2 after a
            # 0.1 s sleep: 10.7 ms, 3.0 without; both backends alike)
            for k in keys[r % len(keys):] + keys[:r % len(keys)]:
                calls[k]()
                t = _seconds(calls[k])
                if r:
                    times[k].append(t)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append((label, {b: (med[(b, "layout")], med[(b, "contiguous")]) for b in backends},
                     med.get(("torch", "layout"))))
    return rows


def layout_table(rows, backends):
    head = ["case"] + [f"{b}: torch/ours" for b in backends] + \
        [f"{b}: contiguous/ours" for b in backends]
    body = []
    for label, by_backend, t_torch in rows:
        body.append([label]
                    + ["-" if t_torch is None else f"{t_torch / by_backend[b][0]:.2f}"
                       for b in backends]
                    + [f"{by_backend[b][1] / by_backend[b][0]:.2f}" for b in backends])
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in body])


# --- reports ---------------------------------------------------------------------------

def _fmt_speedup(v):
    return "-" if v is None else f"{v:.2f}x"


def table(results, with_torch=True):
    """The results as one plain-text table."""
    head = ["op", "pass", "backend", "dtype", "GB/s", "% copy", "paired", "vs NumPy"]
    if with_torch:
        head.append("vs torch")
    rows = []
    for r in results:
        paired = "-" if r.paired is None else f"{100 * r.paired:.0f}%"
        row = [r.op, r.pass_, r.backend, r.dtype, f"{r.gbs:.2f}", f"{100 * r.roofline:.0f}%",
               paired, _fmt_speedup(r.numpy_speedup)]
        if with_torch:
            row.append(_fmt_speedup(r.torch_speedup))
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(head)]
    right = {4, 5, 6, 7, 8}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    out = [line(head), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    return "\n".join(out)


def copy_summary(results):
    seen = {}
    for r in results:
        seen.setdefault((r.dtype, r.size), []).append(r.copy_gbs)
    return "; ".join(f"{d} x {n}: {statistics.median(v):.2f} GB/s"
                     for (d, n), v in seen.items())


def metadata(size, repeat, quick):
    import fastact
    import numba
    meta = {
        "fastact": fastact.__version__, "numpy": np.__version__, "numba": numba.__version__,
        "python": platform.python_version(), "machine": platform.machine(),
        "processor": _cpu_name(), "threads": fastact.get_num_threads(),
        "size": size, "repeat": repeat, "quick": quick, "clock": clock_name(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if torch_available():
        import torch
        meta["torch"] = torch.__version__
    return meta


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def dump(results, meta):
    return {"meta": meta, "results": [r.to_json() for r in results]}


def machine_key(processor=None) -> str:
    """The file-name form of a processor's name (``/proc/cpuinfo``'s model
    name): ``"AMD EPYC"`` -> ``"amd-epyc"``."""
    import re
    name = _cpu_name() if processor is None else processor
    return re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)", "", name.lower())).strip("-") or "unknown"


def baseline_sibling(path, processor=None):
    """``<stem>.<machine_key>.json`` beside ``path``: the baseline file of
    ``processor`` (default this machine's)."""
    import pathlib
    path = pathlib.Path(path)
    return path.with_name(f"{path.stem}.{machine_key(processor)}{path.suffix}")


def baseline_for(path, processor=None):
    """``(file, processors)``: the regression baseline made on this machine's
    processor (``processor``, default this one's), ``path`` itself or its
    sibling ``<stem>.<machine_key>.json``, or None; ``processors``: what the
    baselines there were made on.  Figures are fractions of a copy's
    throughput, which holds between machines of one kind only: a kernel
    bound by its arithmetic is a smaller fraction of a faster memory's copy,
    and arrays that outgrow one machine's caches fit another's (2**22
    float32 elements, 16 MiB an array: an AMD EPYC's 32 MiB L3 holds most of
    a kernel's two, its copy 68-74 GB/s against 28 on the Xeon of
    baseline.json, and 80 of 260 kernels fell below that file's figures).
    A file without a processor (a results file, or a list) is taken as
    made here."""
    import pathlib
    name = _cpu_name() if processor is None else processor
    path = pathlib.Path(path)
    candidates = [path, baseline_sibling(path, name)]
    seen = []
    for c in candidates:
        try:
            with open(c) as f:
                data = json.load(f)
        except FileNotFoundError:
            continue
        made_on = data.get("meta", {}).get("processor") if isinstance(data, dict) else None
        if made_on is None or made_on == name:
            return c, seen
        seen.append(made_on)
    return None, seen


def load_figures(path):
    """``{key: roofline}`` from a results or baseline JSON file (a ValueError
    where it holds none).  A baseline row made of several runs (``spread``:
    its lowest and highest) gives its lowest run: a kernel whose own runs
    ranged far below their median (geglu backward, Numba, 2**22 on an AMD
    EPYC: 67% of it) failed the check on noise alone, the margin below the
    median smaller than the noise the baseline itself recorded."""
    with open(path) as f:
        data = json.load(f)
    rows = data["results"] if isinstance(data, dict) else data
    figures = {r["key"]: float(min(r["roofline"], r["spread"][0]) if r.get("spread")
                               else r["roofline"]) for r in rows}
    if not figures:
        raise ValueError("no results in it")
    return figures


@dataclasses.dataclass
class Regression:
    key: str
    baseline: float
    current: float

    @property
    def drop(self):
        return 1 - self.current / self.baseline

    def __str__(self):
        return (f"{self.key}: {100 * self.current:.1f}% of copy now, baseline "
                f"{100 * self.baseline:.1f}% ({100 * self.drop:.0f}% slower)")


def compare(current, baseline, max_regression=MAX_REGRESSION):
    """Kernels whose copy-normalized throughput fell more than ``max_regression``.

    ``current`` and ``baseline`` map case keys to fractions of the copy
    roofline; kernels in only one of them are not compared.
    """
    out = []
    for key, now in current.items():
        base = baseline.get(key)
        if base is not None and now < base * (1 - max_regression):
            out.append(Regression(key, base, now))
    return out


_SHORT = {"forward": "fwd", "backward": "bwd"}


def plot_results(results, path):
    """A bar chart: each kernel's fraction of the copy roofline, by backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = []
    for r in results:
        lab = f"{r.op} {_SHORT[r.pass_]} {r.dtype}"
        if lab not in labels:
            labels.append(lab)
    backends = list(dict.fromkeys(r.backend for r in results))
    vals = {(f"{r.op} {_SHORT[r.pass_]} {r.dtype}", r.backend): r for r in results}
    width = 0.8 / max(len(backends), 1)
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(labels) * max(1, len(backends) / 2)), 5))
    for i, b in enumerate(backends):
        xs = [j + i * width for j, lab in enumerate(labels) if (lab, b) in vals]
        ys = [100 * vals[(lab, b)].roofline for lab in labels if (lab, b) in vals]
        ax.bar(xs, ys, width, label=b)
    torch_pts = [(j + 0.4 - width / 2, 100 * vals[(lab, b)].roofline
                  * vals[(lab, b)].torch_speedup ** -1)
                 for j, lab in enumerate(labels) for b in backends[:1]
                 if (lab, b) in vals and vals[(lab, b)].torch_speedup]
    if torch_pts:
        ax.scatter(*zip(*torch_pts), marker="_", s=400, color="k", zorder=3,
                   label="PyTorch")
    ax.axhline(100, color="gray", linestyle="--", linewidth=1)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))])
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("% of parallel memory-copy throughput")
    ax.set_title(f"fastact kernels vs the copy roofline ({results[0].size:,} elements)")
    top = max([100] + [100 * r.roofline for r in results] + [y for _, y in torch_pts])
    ax.set_ylim(0, 1.2 * top)
    ax.legend(fontsize=8, ncol=len(backends) + 1, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
