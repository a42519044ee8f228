"""GPU check for the ``cuda`` backend: correctness on large arrays, then bandwidth.

Run on a machine with an NVIDIA GPU (``pip install -e ".[cuda]"``)::

    python benchmarks/gpu_check.py            # about a minute, mostly compilation
    python benchmarks/gpu_check.py --quick    # smaller arrays

Under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) ``--quick`` runs
every entry on arrays of a few thousand elements, once: a smoke test of the
script, with no meaning in its figures.

1. Every kernel (each op, both passes, float32 and float64) runs on device
   arrays of ~16M elements and is compared with the ``"numpy"`` reference on
   host copies: bit for bit where the spec says so (relu, leaky_relu, rrelu
   in both modes, prelu), within the spec's ULP bounds otherwise.  RReLU's
   training slopes are also compared bit for bit with the ``"numba"`` CPU
   backend (this is where FMA contraction would show).  The same for float16
   and bfloat16 (ml_dtypes) device arrays: within 1 ULP of the narrow type
   of the reference (which also computes in float32 and rounds once), bit
   for bit for the exact ops, PReLU with float32 slopes.
2. Each kernel is timed with CUDA events over back-to-back calls through the
   public API with ``out=`` and ``stream=`` on arrays of up to 2**28 elements;
   achieved GB/s (bytes read + written once) is printed next to the device's
   theoretical memory bandwidth (memory clock x bus width x 2), with CuPy's
   own elementwise kernels for relu and sigmoid when CuPy is installed, and
   PyTorch's float16 and bfloat16 relu, sigmoid and softmax when PyTorch
   has CUDA.  The narrow dtypes' GB/s count 2 bytes an element.

Targets: elementwise kernels >= 85% of peak, softmax >= 70%.  Exit status:
0 all good, 1 a correctness failure, 2 correct but a bandwidth target missed.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import fastact
from fastact._bench import NARROW_DTYPES, dtype_of

ELEMENTWISE_TARGET = 0.85
SOFTMAX_TARGET = 0.70


def _cuda():
    from numba import cuda
    return cuda


def _simulating():
    from numba.core import config
    return bool(config.ENABLE_CUDASIM)


def _narrow(dtype):
    return np.dtype(dtype).name in NARROW_DTYPES


def _finfo(dtype):
    if np.dtype(dtype).name == "bfloat16":
        import ml_dtypes
        return ml_dtypes.finfo(dtype)
    return np.finfo(dtype)


# --- what to check ---------------------------------------------------------------------
# name: (call(ins, **kw), number of array inputs, saved tensor for backward, exact)

def _calls():
    F = fastact
    rr = dict(training=True, seed=2024)
    return {
        "sigmoid": (lambda a, **k: F.sigmoid(*a, **k), 1, False),
        "sigmoid_backward": (lambda a, **k: F.sigmoid_backward(*a, **k), 2, False),
        "relu": (lambda a, **k: F.relu(*a, **k), 1, True),
        "relu_backward": (lambda a, **k: F.relu_backward(*a, **k), 2, True),
        "leaky_relu": (lambda a, **k: F.leaky_relu(*a, 0.1, **k), 1, True),
        "leaky_relu_backward": (lambda a, **k: F.leaky_relu_backward(*a, 0.1, **k), 2, True),
        "rrelu_eval": (lambda a, **k: F.rrelu(*a, 0.1, 0.3, **k), 1, True),
        "rrelu_train": (lambda a, **k: F.rrelu(*a, **rr, **k), 1, True),
        "rrelu_train_backward": (lambda a, **k: F.rrelu_backward(*a, **rr, **k), 2, True),
        # Xu et al.'s parameterization: y = x / a, a ~ U(3, 8)
        "rrelu_train_div": (lambda a, **k: F.rrelu(*a, 3.0, 8.0, divide=True, **rr, **k),
                            1, True),
        "rrelu_train_div_backward": (lambda a, **k: F.rrelu_backward(
            *a, 3.0, 8.0, divide=True, **rr, **k), 2, True),
        "elu": (lambda a, **k: F.elu(*a, 0.7, **k), 1, False),
        "elu_backward": (lambda a, **k: F.elu_backward(*a, 0.7, **k), 2, False),
        "prelu": (lambda a, **k: F.prelu(*a, **k), 1, True),
        "prelu_backward": (lambda a, **k: F.prelu_backward(*a, **k)[0], 2, True),
        "softmax": (lambda a, **k: F.softmax(*a, **k), 1, False),
        "softmax_backward": (lambda a, **k: F.softmax_backward(*a, **k), 2, False),
        **_catalogue_calls(),
    }


def _catalogue_calls():
    """The catalogue's ops, from the registry: their example parameters; the
    third field is the registry's bound (0 bit-exact, n ULP, "cond")."""
    from fastact._bench import registry_entry
    calls = {}
    for op in fastact.ACTIVATIONS:
        spec = registry_entry(op)
        if spec is None or op in ("sigmoid", "relu", "leaky_relu", "elu") or \
                spec.kind == "gated":           # check_gated, bench_gated
            continue
        if op == "softmax":
            continue
        p, pb = spec.example_kwargs(), spec.example_kwargs("backward")
        f, fb = getattr(fastact, op), getattr(fastact, op + "_backward")
        fwd_bound, bwd_bound = spec.accuracy
        calls[op] = (lambda a, f=f, p=p, **k: f(*a, **p, **k), 1, fwd_bound == 0)
        # the softmax family's backwards have their own bound (_compare)
        cond = bwd_bound == "cond" and spec.kind == "elementwise"
        calls[op + "_backward"] = (lambda a, f=fb, p=pb, **k: f(*a, **p, **k), 2,
                                   "cond" if cond else bwd_bound == 0)
    return calls


def _ulp_diff(got, want):
    """|got - want| in ULPs of ``want`` (0 where both NaN or equal)."""
    dt = got.dtype
    g, w = got.astype(np.longdouble), want.astype(np.longdouble)
    with np.errstate(all="ignore"):
        both = (np.isnan(g) & np.isnan(w)) | (g == w)
        spacing = np.abs(np.spacing(want.astype(dt))).astype(np.longdouble)
        spacing = np.maximum(spacing, np.longdouble(np.finfo(dt).smallest_subnormal))
        d = np.abs(g - w) / spacing
    d[both] = 0
    d[np.isnan(d)] = np.inf
    return d


def _rowwise(name):
    """The softmax family (forward or backward)."""
    from fastact._bench import registry_entry
    spec = registry_entry(name.removesuffix("_backward"))
    return name.startswith("softmax") or (spec is not None and spec.kind == "rowwise")


def _shape(name, n):
    """Rows of 4096 (rows of n / 2 for a smaller n), prelu's (outer, 64, 256)
    (a shorter inner axis for a smaller n)."""
    if _rowwise(name):
        cols = min(4096, n // 2)
        return (max(n // cols, 2), cols)
    if name.startswith("prelu"):
        inner = min(256, max(n // 64, 1))
        return (max(n // (64 * inner), 1), 64, inner)
    return (n,)


def _inputs(name, n, dtype, rng):
    """Host inputs of ~n elements: specials mixed with normal(0, 3) draws."""
    fi = _finfo(dtype)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, fi.max, -fi.max, fi.tiny,
                         fi.smallest_subnormal, -1e4, 1e4, -100.0, 40.0]).astype(dtype)
    x = (rng.standard_normal(_shape(name, n)) * 3).astype(dtype)
    if name.startswith("softmax"):
        x[0, 1], x[1, :] = np.nan, -np.inf        # a NaN row and an all -inf row
    else:
        x.reshape(-1)[:specials.size] = specials
    if not name.endswith("backward"):
        return (x,)
    g = (rng.standard_normal(x.shape) * 2).astype(dtype)
    if name == "softmax_backward":
        with np.errstate(all="ignore"):
            return g, fastact.softmax(x, backend="numpy")
    from fastact._bench import registry_entry
    spec = registry_entry(name[:-len("_backward")])
    if spec is not None and spec.saves == "y":
        with np.errstate(all="ignore"):
            return g, getattr(fastact, spec.api_name)(x, **spec.example_kwargs(), backend="numpy")
    return g, x


def _uint(dtype):
    return {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]


def _slopes(dtype, n=64):
    """PReLU's weight: x's dtype, float32 for the narrow dtypes."""
    return np.linspace(-0.3, 0.3, n).astype(np.float32 if _narrow(dtype) else dtype)


def check(n, dtypes):
    cuda = _cuda()
    rng = np.random.default_rng(0)
    failures = []
    for dtype in dtypes:
        for name, (call, _, exact) in _calls().items():
            t0 = time.perf_counter()
            ins = _inputs(name, n, dtype, rng)
            w_dev, w_host = {}, {}
            if name.startswith("prelu"):
                w = _slopes(dtype)
                w_dev, w_host = {"weight": cuda.to_device(w)}, {"weight": w}
            dev = [cuda.to_device(a) for a in ins]
            got = call(dev, **w_dev).copy_to_host()
            with np.errstate(all="ignore"):
                want = call(list(ins), backend="numpy", **w_host)
            ok, detail = _compare(name, exact, got, want, ins)
            if name.startswith("rrelu_train"):
                cpu = call(list(ins), backend="numba")
                same = np.array_equal(got.view(_uint(dtype)), cpu.view(_uint(dtype)))
                ok, detail = ok and same, detail + ("" if same else "; differs from numba bitwise")
            if name == "prelu_backward":
                gw_ok, gw_detail = _check_prelu_weight_grad(dev, ins, w_dev, w_host, dtype)
                ok, detail = ok and gw_ok, detail + "; " + gw_detail
            status = "ok  " if ok else "FAIL"
            print(f"  {status} {name:22s} {np.dtype(dtype).name:8s} {got.size:>10d} el  "
                  f"{detail}  ({time.perf_counter() - t0:.1f} s)", flush=True)
            if not ok:
                failures.append((name, np.dtype(dtype).name, detail))
    return failures


def _ordinal(a):
    """Narrow bits as integers in the order of their values."""
    h = a.view(np.uint16).astype(np.int32)
    return np.where(h & 0x8000, -(h & 0x7FFF), h & 0x7FFF)


def _compare_narrow(exact, got, want, ins):
    """float16/bfloat16: the NaNs where the reference's are; elsewhere bit
    for bit (exact ops) or within 1 ULP (both computed in float32, rounded
    once), "cond" backward bounds as float32's conditioning allows."""
    from fastact._narrow import widen
    gw, ww = widen(got), widen(want)
    gn, wn = np.isnan(gw), np.isnan(ww)
    if not np.array_equal(gn, wn):
        return False, f"NaN at {int((gn != wn).sum())} other places"
    d = np.abs(_ordinal(got) - _ordinal(want))[~gn]
    if exact is True:
        bad = d > 0
    elif exact == "cond":
        eps = np.finfo(np.float16).eps if got.dtype == np.float16 else 2.0 ** -7
        err = np.abs(gw - ww.astype(np.float64))[~gn]
        bad = (d > 1) & ~(err <= eps * np.abs(ww[~gn]) + 1e-3 * np.abs(widen(ins[0])[~gn]))
    else:
        bad = d > 1
    what = "bitwise" if exact is True else "1 ULP"
    return not bad.any(), (f"{what} (max {int(d.max(initial=0))} ULP)" if not bad.any()
                           else f"{int(bad.sum())} beyond {what}")


def _compare(name, exact, got, want, ins):
    dt = got.dtype
    if _narrow(dt):
        return _compare_narrow(exact, got, want, ins)
    if exact == "cond":
        # near the derivative's zeros: the registry's bound is 4 eps |g| times
        # the formula's term magnitudes, here taken as 16 eps |g| (1 + |s|)
        g, s = (a.astype(np.longdouble) for a in ins)
        with np.errstate(all="ignore"):
            err = np.abs(got.astype(np.longdouble) - want.astype(np.longdouble))
            bound = 16 * np.finfo(dt).eps * np.abs(g) * (1 + np.abs(s))
        d = _ulp_diff(got, want)
        bad = ~((err <= bound) | (d <= 5) | (np.isnan(got) & np.isnan(want)))
        return not bad.any(), f"{int(bad.sum())} beyond 16 eps |g| (1 + |s|) and 5 ULP"
    if exact is True:
        gn, wn = np.isnan(got), np.isnan(want)
        same = np.array_equal(gn, wn) and np.array_equal(
            got[~gn].view(_uint(dt)), want[~wn].view(_uint(dt)))
        return same, "bitwise" if same else f"{int((got != want).sum())} elements differ"
    if name in ("softmax_backward", "softmin_backward", "log_softmax_backward"):
        g, y = (a.astype(np.longdouble) for a in ins)
        if name == "log_softmax_backward":     # g - exp(y) sum g
            terms = np.abs(g) + np.exp(y) * np.sum(np.abs(g), axis=-1, keepdims=True)
        else:
            terms = np.abs(y) * (np.abs(g) + np.sum(np.abs(g * y), axis=-1, keepdims=True))
        bound = 4 * np.finfo(dt).eps * terms + np.finfo(dt).smallest_subnormal
        with np.errstate(all="ignore"):
            err = np.abs(got.astype(np.longdouble) - want.astype(np.longdouble))
        bad = ~((err <= 2 * bound) | (np.isnan(got) & np.isnan(want)))
        return not bad.any(), f"{int(bad.sum())} beyond 2x the spec bound"
    # the reference is itself within ~1 ULP: one more than the spec's bound
    tol = 16 if (_rowwise(name) and dt == np.float64) else 4
    d = _ulp_diff(got, want)
    return bool(d.max() <= tol + 1), f"max {float(d.max()):.2f} ULP from the reference (tol {tol}+1)"


def _check_prelu_weight_grad(dev, ins, w_dev, w_host, dtype):
    _, gw = fastact.prelu_backward(*dev, **w_dev)
    with np.errstate(all="ignore"):
        _, rw = fastact.prelu_backward(*ins, backend="numpy", **w_host)
    gw = gw.copy_to_host()
    g, x = (a.astype(np.float32) if _narrow(a.dtype) else a for a in ins)
    dtype = gw.dtype
    with np.errstate(all="ignore"):
        scale = np.abs(g.astype(np.float64) * x).sum(axis=(0, 2))
        err = np.abs(gw.astype(np.float64) - rw) / np.maximum(scale, 1e-300)
    err[(gw == rw) | (np.isnan(gw) & np.isnan(rw))] = 0      # infinities from the specials
    ok = bool(err.max() <= 8 * np.finfo(dtype).eps)
    return ok, f"weight grad rel. err {err.max():.2e}"


# --- the gated family ---------------------------------------------------------------

def _gated_ops():
    from fastact._bench import registry_entry
    return [op for op in fastact.ACTIVATIONS
            if getattr(registry_entry(op), "kind", None) == "gated"]


def check_gated(n, dtypes):
    """Each gated op and parameter set on device arrays of ~n elements (rows
    of 4096 split in halves) against the test suite's oracle and bounds
    (tests/oracles_gated.py, which needs the test extras)."""
    import pathlib
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
    from oracles_gated import VARIANTS
    from oracles_gated import check as within_bounds
    cuda, failures = _cuda(), []
    rng = np.random.default_rng(7)
    cols = min(4096, n // 2)
    for dtype in dtypes:
        for op in _gated_ops():
            for kw in VARIANTS[op]:
                x = (rng.standard_normal((max(n // cols, 1), cols)) * 3).astype(dtype)
                x.reshape(-1)[:5] = np.array([0.0, np.inf, -np.inf, np.nan, -100.0]).astype(dtype)
                g = rng.uniform(-1, 1, (x.shape[0], cols // 2)).astype(dtype)
                y = getattr(fastact, op)(cuda.to_device(x), **kw).copy_to_host()
                dx = getattr(fastact, op + "_backward")(
                    cuda.to_device(g), cuda.to_device(x), **kw).copy_to_host()
                label = f"{op}{kw or ''}"
                try:
                    if _narrow(dtype):        # the reference's, computed in float32 too
                        for got, want in ((y, getattr(fastact, op)(x, **kw, backend="numpy")),
                                          (dx, getattr(fastact, op + "_backward")(
                                              g, x, **kw, backend="numpy"))):
                            ok, detail = _compare_narrow(False, got, want, (g, x))
                            assert ok, detail
                    else:
                        within_bounds(op, x, g, y, dx, -1, "cuda", **kw)
                    print(f"  {label:22s} {np.dtype(dtype).name:8s} ok "
                          + ("(1 ULP of the reference)" if _narrow(dtype) else "(oracle bounds)"))
                except AssertionError as e:
                    failures.append((label, np.dtype(dtype).name, str(e)[:300]))
                    print(f"  {label:22s} {np.dtype(dtype).name:8s} FAIL {str(e)[:200]}")
    return failures


def bench_gated(n, dtypes, peak):
    """GB/s of each gated op: forward reads x, writes half of it; backward
    reads the half-size gradient and x, writes x's size."""
    cuda, rows = _cuda(), []
    stream = cuda.stream()
    for dtype in dtypes:
        item = np.dtype(dtype).itemsize
        cols = min(4096, n // 2)
        x = cuda.to_device((np.random.default_rng(1).standard_normal(n) * 3).astype(dtype)
                           .reshape(-1, cols))
        g = cuda.device_array((x.shape[0], cols // 2), dtype)
        g.copy_to_device(np.ones(g.shape, dtype))
        y, dx = cuda.device_array(g.shape, dtype), cuda.device_array(x.shape, dtype)
        for op in _gated_ops():
            f, fb = getattr(fastact, op), getattr(fastact, op + "_backward")
            for name, fn, traffic in (
                    (op, lambda: f(x, out=y, stream=stream), 1.5 * x.size * item),
                    (op + "_backward", lambda: fb(g, x, out=dx, stream=stream),
                     2.5 * x.size * item)):
                ms = _time(fn, stream)
                gbs = traffic / (ms * 1e-3) / 1e9
                rows.append((name, np.dtype(dtype).name, ms, gbs, ELEMENTWISE_TARGET))
                verdict = "ok" if gbs >= ELEMENTWISE_TARGET * peak else "BELOW TARGET"
                print(f"  {name:22s} {np.dtype(dtype).name:8s} {ms:8.3f} ms {gbs:8.1f} GB/s "
                      f"{gbs / peak:6.1%} of peak (target {ELEMENTWISE_TARGET:.0%}) {verdict}",
                      flush=True)
    return rows


# --- bandwidth ---------------------------------------------------------------------------

def peak_bandwidth():
    """Theoretical DRAM bandwidth in GB/s from the device attributes, or None."""
    if _simulating():
        return None
    dev = _cuda().get_current_device()
    try:
        clock_khz = dev.MEMORY_CLOCK_RATE
        bus_bits = dev.GLOBAL_MEMORY_BUS_WIDTH
    except Exception:
        return None
    if not clock_khz or not bus_bits:
        return None
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9


def copy_bandwidth(nbytes):
    """Device-to-device copy GB/s (read + write): a practical ceiling."""
    cuda = _cuda()
    a = cuda.device_array(nbytes // 4, np.float32)
    b = cuda.device_array(nbytes // 4, np.float32)
    b.copy_to_device(a)
    ms = _time(lambda: b.copy_to_device(a), 0)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def _time(fn, stream, reps=None):
    cuda = _cuda()
    reps = reps or (1 if _simulating() else 10)
    fn()
    start, end = cuda.event(), cuda.event()
    start.record(stream)
    for _ in range(reps):
        fn()
    end.record(stream)
    end.synchronize()
    return max(start.elapsed_time(end), 1e-6) / reps


def bench(n, dtypes, peak):
    cuda = _cuda()
    stream = cuda.stream()
    rows = []
    rng = np.random.default_rng(1)
    for dtype in dtypes:
        item = np.dtype(dtype).itemsize
        # one pair of inputs per dtype, reshaped for each kernel (n is a multiple of 2**14)
        xs = cuda.to_device((rng.standard_normal(n, dtype=np.float32) * 3).astype(dtype))
        gs = cuda.to_device(rng.standard_normal(n, dtype=np.float32).astype(dtype))
        outs = cuda.device_array(n, dtype)
        w = cuda.to_device(_slopes(dtype))
        gw = cuda.device_array(64, w.dtype)
        for name, (call, n_in, _) in _calls().items():
            shp = _shape(name, n)
            x, g, out = xs.reshape(*shp), gs.reshape(*shp), outs.reshape(*shp)
            ins = [x] if n_in == 1 else [g, x]
            kw = dict(stream=stream)
            if name == "prelu":
                fn = lambda: fastact.prelu(x, w, out=out, **kw)                    # noqa: E731
            elif name == "prelu_backward":
                fn = lambda: fastact.prelu_backward(g, x, w, out=(out, gw), **kw)  # noqa: E731
            else:
                fn = lambda: call(ins, out=out, **kw)                              # noqa: E731
            ms = _time(fn, stream)
            gbs = (n_in + 1) * out.size * item / (ms * 1e-3) / 1e9
            target = SOFTMAX_TARGET if name.startswith("softmax") else ELEMENTWISE_TARGET
            rows.append((name, np.dtype(dtype).name, ms, gbs, target))
            verdict = "ok" if gbs >= target * peak else "BELOW TARGET"
            print(f"  {name:22s} {np.dtype(dtype).name:8s} {ms:8.3f} ms {gbs:8.1f} GB/s "
                  f"{gbs / peak:6.1%} of peak (target {target:.0%}) {verdict}", flush=True)
        del xs, gs, outs
    return rows


def bench_cupy(n, peak):
    try:
        import cupy
    except ImportError:
        print("  CuPy not installed: no comparison")
        return
    relu = cupy.ElementwiseKernel("T x", "T y", "y = x > 0 ? x : (T)0", "ref_relu")
    sigmoid = cupy.ElementwiseKernel("T x", "T y", "y = 1 / (1 + exp(-x))", "ref_sigmoid")
    for dtype in (np.float32, np.float64):
        x = cupy.random.standard_normal(n, dtype=np.float64).astype(dtype)
        y = cupy.empty_like(x)
        for label, k in (("relu", relu), ("sigmoid", sigmoid)):
            k(x, y)
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            for _ in range(10):
                k(x, y)
            end.record()
            end.synchronize()
            ms = cupy.cuda.get_elapsed_time(start, end) / 10
            gbs = 2 * x.nbytes / (ms * 1e-3) / 1e9
            print(f"  cupy {label:17s} {np.dtype(dtype).name:8s} {ms:8.3f} ms {gbs:8.1f} GB/s "
                  f"{gbs / peak:6.1%} of peak", flush=True)


def bench_torch(n, peak):
    """PyTorch's own float16 and bfloat16 kernels, where it has CUDA."""
    try:
        import torch
    except ImportError:
        print("  PyTorch not installed: no comparison")
        return
    if not torch.cuda.is_available():
        print("  PyTorch without CUDA: no comparison")
        return
    F = torch.nn.functional
    for dt in (torch.float16, torch.bfloat16):
        x = torch.randn(n, device="cuda").to(dt)
        y = torch.empty_like(x)
        for label, fn in (("relu", lambda: F.relu(x)),
                          ("sigmoid", lambda: torch.sigmoid(x, out=y)),
                          ("softmax", lambda: torch.softmax(x.view(-1, 4096), -1))):
            fn()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(10):
                fn()
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end) / 10
            gbs = 2 * x.numel() * 2 / (ms * 1e-3) / 1e9
            print(f"  torch {label:16s} {str(dt)[6:]:8s} {ms:8.3f} ms {gbs:8.1f} GB/s "
                  f"{gbs / peak:6.1%} of peak", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller arrays (checks and timing)")
    ap.add_argument("--peak-gbs", type=float, help="override the theoretical bandwidth")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    st = fastact.backends()["cuda"]
    if not st["available"]:
        print(f"cuda backend unavailable: {st['reason']}")
        return 1
    cuda = _cuda()
    dev = None if _simulating() else cuda.get_current_device()
    print(f"device: {st.get('device')}  cc {st.get('compute_capability')}  "
          f"SMs {getattr(dev, 'MULTIPROCESSOR_COUNT', '?')}  numba.cuda: {st.get('numba_cuda')}")
    free, total = cuda.current_context().get_memory_info()
    check_n = 1 << (22 if args.quick else 24)
    bench_n = 1 << (24 if args.quick else 28)
    if _simulating():
        if not args.quick:
            print("under the simulator: --quick only (a smoke test)")
            return 1
        check_n = bench_n = 1 << 10
    # four arrays of float64 must fit (backward: g, s, out, plus the allocator's slack)
    while bench_n * 8 * 5 > free and bench_n > 1 << 16:
        bench_n >>= 1
    dtypes = [np.float32, np.float64]
    for name in NARROW_DTYPES:
        try:
            dtypes.append(dtype_of(name))
        except ImportError:
            print(f"  {name}: ml_dtypes is not installed, not checked")

    print(f"\n1. correctness against the reference on {check_n} elements per array")
    failures = check(check_n, dtypes)
    failures += check_gated(min(check_n, 1 << 18), dtypes)

    copy = copy_bandwidth(min(bench_n * 4, 1 << 30))
    peak = args.peak_gbs or peak_bandwidth()
    print(f"\n2. bandwidth on {bench_n} elements per array: device-to-device copy "
          f"{copy:.0f} GB/s; theoretical peak "
          + (f"{peak:.0f} GB/s" if peak else "unknown (the copy is used; pass --peak-gbs)"))
    peak = peak or copy
    rows = bench(bench_n, dtypes, peak)
    rows += bench_gated(bench_n, dtypes, peak)
    bench_cupy(bench_n, peak)
    bench_torch(bench_n, peak)

    if _simulating():        # the figures mean nothing there
        print(f"\n{len(failures)} correctness failure(s) under the simulator")
        for f in failures:
            print("  FAIL", *f)
        return 1 if failures else 0
    missed = [r for r in rows if r[3] < r[4] * peak]
    print(f"\n{len(failures)} correctness failure(s), {len(missed)} kernel(s) below "
          f"target; {time.perf_counter() - t0:.0f} s in all")
    for f in failures:
        print("  FAIL", *f)
    return 1 if failures else (2 if missed else 0)


if __name__ == "__main__":
    sys.exit(main())
