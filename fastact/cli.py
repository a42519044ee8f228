"""The ``fastact`` command: ``bench``, ``info``, ``plot``, ``warmup`` and ``demo``.

Importing this module imports nothing heavy; NumPy, Numba, PyTorch and
matplotlib are imported by the subcommand that needs them.  Exit status: 0
on success, 1 when ``bench --compare`` finds a regression, 2 for a bad
option or a missing optional dependency.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys

CHARTS_HINT = "pip install fastact[cli]"
DEMO_HINT = "pip install fastact[demo] (scikit-learn, matplotlib)"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # one line and status 2, like argparse, but with the subcommand's name
        self.exit(2, f"{self.prog}: error: {message}\n")


def _count_size(text):
    """A size or 0."""
    return 0 if text.strip() == "0" else _size(text)


def _size(text):
    t = text.strip().lower().replace("_", "")
    try:
        if "**" in t:
            base, exp = t.split("**")
            v = int(base) ** int(exp)
        elif t and t[-1] in "kmg":
            v = int(float(t[:-1]) * {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[t[-1]])
        else:
            v = int(float(t))
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (examples: 65536, 2**20, 4M)")
    if v < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return v


def _int_at_least(lo):
    """An argparse type: an integer of at least ``lo``."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {v}")
        return v
    return parse


_positive_int, _count = _int_at_least(1), _int_at_least(0)


def _fraction(text):
    t = text.strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid fraction {text!r} (examples: 0.25, 25%)") \
            from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text!r}")
    return v


def _names(text):
    """A comma list, repeats dropped (first kept); an empty one is an error
    (it would otherwise mean "the default", silently)."""
    names = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"empty list {text!r}")
    return names


def _writable(path, option):
    """Fail before the work, not after it, where ``path`` cannot be written:
    its folder missing or read-only, or ``path`` itself a folder."""
    import os
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise _UsageError(f"{option} {path}: folder {folder} does not exist")
    if os.path.isdir(path):
        raise _UsageError(f"{option} {path}: is a folder")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise _UsageError(f"{option} {path}: not writable")


def _parser():
    p = _Parser(prog="fastact", description="fastact activation kernels: benchmarks, "
                "environment report and activation plots.")
    sub = p.add_subparsers(dest="command", metavar="{bench,info,plot,warmup,demo}", parser_class=_Parser)
    sub.required = True

    b = sub.add_parser("bench", help="benchmark the kernels against the memory-copy roofline, "
                       "NumPy and PyTorch",
                       description="Time every activation's forward and backward kernels on "
                       "synthetic arrays, next to a parallel memory copy of the same size "
                       "(the roofline), NumPy's own expression and PyTorch (if installed).")
    b.add_argument("--ops", type=_names, metavar="LIST",
                   help="comma-separated activations (default: all)")
    b.add_argument("--backends", type=_names, metavar="LIST",
                   help="comma-separated CPU backends (default: the compiled ones that load: "
                   "numba, c)")
    b.add_argument("--dtype", default=None, metavar="DTYPE",
                   help="float32, float64, float16, bfloat16 (ml_dtypes), a comma list, or "
                   "'all' (float32 and float64; default: float32)")
    b.add_argument("--size", type=_size, metavar="N",
                   help="elements per array, e.g. 2**24 or 16M (default: 2**24; --quick: 2**22)")
    b.add_argument("--in-cache", type=_count_size, default=None, metavar="N",
                   help="a second table at N elements, which stay in the caches (default: "
                   "2**20 where --size is larger; 0: none)")
    b.add_argument("--no-layouts", action="store_true",
                   help="no layout table (transposed arrays, softmax along axis 0 and 1, "
                   "float32 of --size elements, against PyTorch; --quick has none)")
    b.add_argument("--repeat", type=_positive_int, metavar="R",
                   help="rounds: each times every kernel once, right after a copy; the best "
                   "round counts (default: 5; --quick: 9)")
    b.add_argument("--threads", type=_positive_int, metavar="T",
                   help="threads of the parallel kernels, the copy and PyTorch (default: all; "
                   "--quick: 1)")
    b.add_argument("--quick", action="store_true",
                   help="the CI regression check's short run: 2**22 float32 elements, one "
                   "thread, compiled backends only")
    b.add_argument("--json", metavar="FILE", help="write machine-readable results to FILE")
    b.add_argument("--compare", metavar="FILE",
                   help="compare each kernel's fraction of the copy roofline with FILE "
                   "(e.g. benchmarks/baseline.json); exit 1 on a regression")
    b.add_argument("--max-regression", type=_fraction, default=None, metavar="F",
                   help="allowed drop below the baseline, 0.25 or 25%% (default: 0.25)")
    b.add_argument("--retries", type=_count, default=3, metavar="K",
                   help="re-measure a kernel that looks regressed up to K more times, with "
                   "twice the rounds, before failing it (default: 3)")
    b.add_argument("--plot", metavar="FILE.png", help="save a bar chart of the results")
    b.add_argument("--compile-only", action="store_true",
                   help="run each kernel of the run (but the layout table's) once, compiling "
                   "it into Numba's disk cache, and time nothing (CI compiles the "
                   "regression check's kernels beside the tests)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    sub.add_parser("info", help="versions, backends and why any is unavailable, threads, "
                   "CUDA devices")

    pl = sub.add_parser("plot", help="plot every activation and its derivative")
    pl.add_argument("file", metavar="FILE.png")

    w = sub.add_parser("warmup", help="compile every Numba kernel into the disk cache now "
                       "(for images and CI; NUMBA_CACHE_DIR says where)")
    w.add_argument("--dtype", type=_names, default=["float32", "float64"],
                   help="comma-separated dtypes: float32, float64, float16, bfloat16 "
                   "(needs ml_dtypes) (default: float32,float64)")
    w.add_argument("--ops", type=_names, help="comma-separated activations (default: all)")
    w.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    d = sub.add_parser("demo", help="train small MLPs on scikit-learn's 8x8 digits with "
                       "every seed activation and check the survey's claims",
                       description="Train NumPy MLPs with fastact's layers on the bundled "
                       "digits (no download): a table of test accuracy, loss, epochs to 90%%, "
                       "the learned PReLU slope and time per epoch, the per-layer gradient "
                       "norms of a deep sigmoid net against a ReLU one, and which of the "
                       f"survey's claims the run supports.  Needs {DEMO_HINT}.")
    d.add_argument("--quick", action="store_true",
                   help="the CI run: 3 epochs, one seed (a few seconds)")
    d.add_argument("--epochs", type=_positive_int, metavar="N",
                   help="epochs per network (default: 20; --quick: 3)")
    d.add_argument("--seeds", type=_positive_int, metavar="K",
                   help="seeds 0..K-1, the table their mean (default: 3; --quick: 1)")
    d.add_argument("--plot", metavar="FILE.png",
                   help="save the loss curves and the deep nets' gradient norms")
    return p


def main(argv=None) -> int:
    """Run the ``fastact`` command line; return the exit status.

    >>> from fastact.cli import main
    >>> main(["bench", "--ops", "swish"])      # the one-line error goes to stderr
    2
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        if args.command == "bench":
            return _bench(parser, args)
        if args.command == "info":
            return _info()
        if args.command == "warmup":
            return _warmup(args)
        if args.command == "demo":
            return _demo(args)
        return _plot(args.file)
    except _UsageError as e:
        print(f"fastact {args.command}: error: {e}", file=sys.stderr)
        return 2


class _UsageError(Exception):
    pass


# --- bench ---------------------------------------------------------------------------

def _choose(args):
    import fastact
    from . import _bench
    from .config import BACKEND_NAMES

    ops = args.ops or list(fastact.ACTIVATIONS)      # an empty --ops is a parse error
    for op in ops:
        if op not in fastact.ACTIVATIONS:
            raise _UsageError(f"unknown op {op!r}; choose from {', '.join(fastact.ACTIVATIONS)}")
    ops = _bench.expand_ops(ops)        # rrelu brings its divisor form along

    status = _backend_status()
    if args.backends:
        backends = args.backends
        for b in backends:
            if b not in BACKEND_NAMES:
                raise _UsageError(f"unknown backend {b!r}; choose from "
                                  f"{', '.join(n for n in BACKEND_NAMES if n != 'cuda')}")
            if b == "cuda":
                raise _UsageError("fastact bench times host arrays; for the 'cuda' backend "
                                  "run benchmarks/gpu_check.py")
            if not status[b]["available"]:
                raise _UsageError(f"backend {b!r} is unavailable: {status[b]['reason']}")
    else:
        # the compiled backends; the NumPy reference backend is ~20x slower at
        # these sizes (ask for it with --backends numpy), and the "vs NumPy"
        # column already says how NumPy fares
        backends = [n for n in BACKEND_NAMES if n not in ("cuda", "numpy")
                    and status[n]["available"]] or ["numpy"]

    if args.dtype in (None, ""):
        dtypes = ["float32"]
    elif args.dtype == "all":
        dtypes = list(_bench.DTYPES)
    else:
        try:
            dtypes = _names(args.dtype)
        except argparse.ArgumentTypeError as e:
            raise _UsageError(f"--dtype: {e}") from None
        for d in dtypes:
            if d not in _bench.DTYPES + _bench.NARROW_DTYPES:
                raise _UsageError(f"unknown dtype {d!r}; choose from float32, float64, "
                                  "float16, bfloat16, all")
        _require_ml_dtypes(dtypes)
    size = args.size or (_bench.QUICK_SIZE if args.quick else _bench.DEFAULT_SIZE)
    need = _bench.ARRAYS_HELD * size * max(8 if d == "float64" else 4 for d in dtypes)
    have = _memory_bytes()
    if have and need > have:
        raise _UsageError(f"--size {size:,}: at least {need / 2**30:.1f} GiB of arrays "
                          f"({_bench.ARRAYS_HELD} of {size:,} elements), more than this "
                          f"machine's {have / 2**30:.1f} GiB")
    repeat = args.repeat or (_bench.QUICK_REPEAT if args.quick else _bench.DEFAULT_REPEAT)
    threads = args.threads or (_bench.QUICK_THREADS if args.quick else None)
    if threads is not None:
        try:
            fastact.set_num_threads(threads)
        except ValueError as e:
            raise _UsageError(f"--threads: {e}") from None
    return ops, backends, dtypes, size, repeat


class _Progress:
    """A progress bar on stderr: tqdm where installed and stderr is a terminal,
    else a plain line per tenth of the work; nothing when disabled."""

    def __init__(self, total, enabled, what="fastact bench"):
        self.total, self.n, self.bar, self.shown = total, 0, None, -1
        self.what = what
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        if enabled and self.tty:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, file=sys.stderr, unit="step", leave=False,
                                dynamic_ncols=True)
            except ImportError:
                pass

    def __call__(self, label):
        if not self.enabled:
            return
        if self.bar is not None:
            if self.n:
                self.bar.update(1)
            self.bar.set_description(label)
        elif self.tty:
            print(f"[{self.n + 1}/{self.total}] {label}".ljust(60), end="\r", file=sys.stderr,
                  flush=True)
        elif 10 * self.n // self.total > self.shown:
            self.shown = 10 * self.n // self.total
            print(f"{self.what}: {100 * self.n // self.total}% ({label})", file=sys.stderr,
                  flush=True)
        self.n += 1

    def close(self):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.close()
        elif self.enabled and self.tty:
            print(" " * 70, end="\r", file=sys.stderr, flush=True)


def _require_ml_dtypes(dtypes):
    """A usage error where ``dtypes`` (names) hold bfloat16 and ml_dtypes,
    an optional dependency, does not import."""
    if "bfloat16" in dtypes:
        try:
            importlib.import_module("ml_dtypes")
        except ImportError:
            raise _UsageError("bfloat16 needs ml_dtypes (pip install ml_dtypes)") from None


def _warmup(args):
    import fastact
    from ._warmup import DTYPES, VARIANTS, _calls, dtype_of
    from ._registry import REGISTRY
    bad = [d for d in args.dtype if d not in DTYPES]
    unknown = [o for o in args.ops or () if o not in fastact.ACTIVATIONS]
    if bad or unknown:
        raise _UsageError(f"unknown dtype(s) {bad}" if bad else f"unknown op(s) {unknown}")
    specs = [s for s in REGISTRY.values() if s.public and (not args.ops or s.api_name in args.ops)]
    _require_ml_dtypes(args.dtype)
    dts = [dtype_of(d) for d in args.dtype]
    total = sum(len(_calls(s, dt, 256, v == "strided"))
                for s in specs for dt in dts for v in VARIANTS)
    bar = _Progress(total, not args.no_progress, "fastact warmup")
    try:
        res = fastact.warmup(tuple(args.dtype), args.ops, bar)
    except fastact.BackendUnavailable as e:
        print(f"fastact warmup: {e}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    print(f"fastact warmup: {res['steps']} kernel calls in {res['seconds']:.1f} s")
    return 0


def _memory_bytes():
    """Physical memory, or None where the OS does not say."""
    import os
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _bench(parser, args):
    from . import _threads
    saved = dict(_threads._setting)
    torch_threads = _torch_threads()
    try:
        return _bench_run(args)
    finally:
        # --threads and --quick change the thread count for this command only
        _threads._setting.update(saved)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(torch_threads or _threads.get_num_threads())


def _torch_threads():
    torch = sys.modules.get("torch")
    return None if torch is None else torch.get_num_threads()


def _bench_run(args):
    import fastact
    from . import _bench, config

    ops, backends, dtypes, size, repeat = _choose(args)
    if args.compile_only:
        return _compile_only(args, ops, backends, dtypes, size)
    max_reg = args.max_regression if args.max_regression is not None else _bench.MAX_REGRESSION
    baseline = None
    unchecked = None            # why --compare finds no baseline for this machine
    if args.compare:
        try:
            path, seen = _bench.baseline_for(args.compare)
            if path is None and not seen:
                raise FileNotFoundError(f"no such file: {args.compare}")
            if path is None:
                unchecked = (f"regression check NOT RUN: no baseline made on this processor "
                             f"({_bench._cpu_name()}); {args.compare} and its siblings were "
                             f"made on: {', '.join(seen)}.  A copy-relative figure does not "
                             "carry between processors; make this one's: python "
                             "benchmarks/make_baseline.py --runs 8 (it writes "
                             f"{_bench.baseline_sibling(args.compare).name})")
            else:
                baseline = _bench.load_figures(path)
                args.compare = str(path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise _UsageError(f"cannot read baseline {args.compare}: {e}") from None
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            _writable(path, option)
    if args.plot and not _has_matplotlib():
        raise _UsageError(f"--plot needs matplotlib: {CHARTS_HINT}")

    in_cache = _in_cache_size(args, size)
    side = max(math.isqrt(size) // 2 * 2, 2)
    layouts = not (args.no_layouts or args.quick)
    narrow_ops, narrow_dtypes = _quick_narrow(args, ops)
    steps = _bench.steps(ops, backends, dtypes, repeat) * (2 if in_cache else 1)
    steps += _bench.steps(narrow_ops, backends, narrow_dtypes, repeat) if narrow_ops else 0
    steps += _bench.LAYOUT_CASES * (repeat + 1) if layouts else 0
    progress = _Progress(steps, not args.no_progress)
    try:
        results = _bench.run(ops, backends, dtypes, size, repeat, progress=progress)
        if narrow_ops:
            results += _bench.run(narrow_ops, backends, narrow_dtypes, size, repeat,
                                  progress=progress)
        cached = (_bench.run(ops, backends, dtypes, in_cache, repeat, progress=progress)
                  if in_cache else [])
        layout_rows = (_bench.run_layouts(backends, "float32", repeat, side, progress=progress)
                       if layouts else [])
    finally:
        progress.close()
    with_torch = _bench.torch_available()

    print(f"fastact {fastact.__version__} bench: {size:,} elements per array "
          f"(softmax rows of {min(size, _bench.SOFTMAX_ROW)}), {repeat} rounds, "
          f"{fastact.get_num_threads()} thread(s), {_bench.clock_name()} clock")
    print(f"parallel copy roofline: {_bench.copy_summary(results)}")
    streamed = {d: _bench.stream_copy_gbs(d, size, repeat) for d in dtypes}
    if all(v is not None for v in streamed.values()):
        print("the same copy with streaming stores (how the elementwise kernels write "
              f"outputs of at least {config.STREAM_MIN_BYTES >> 20} MiB): "
              + "; ".join(f"{d}: {v:.2f} GB/s" for d, v in streamed.items()))
    print(_bench.table(results, with_torch))
    if cached:
        print(f"\nin cache: {in_cache:,} elements per array (streaming stores from "
              f"{config.STREAM_MIN_BYTES / 2**20:g} MiB of output); parallel copy roofline: "
              f"{_bench.copy_summary(cached)}")
        print(_bench.table(cached, with_torch))
    if layout_rows:
        print(f"\nlayouts: float32, {side}**2 elements (the cube too), outputs "
              "preallocated in the result's layout, medians of the rounds (each call "
              "timed right after an untimed one of its own); torch/ours: PyTorch's "
              "time on the same views over ours; contiguous/ours: our time on "
              "C-ordered arrays (softmax: along the last axis) over ours on the layout")
        print(_bench.layout_table(layout_rows, backends))
    if size < _bench.ROOFLINE_MIN_SIZE:
        print(f"note: at {size:,} elements the arrays stay in the caches and the parallel "
              "copy is mostly its threads' start-up: '% copy' does not measure memory "
              f"speed below {_bench.ROOFLINE_MIN_SIZE:,} elements.")
    overhead = _bench.call_overhead(backends)
    print(f"call overhead, relu on {_bench.OVERHEAD_SIZE} float32 elements with out= "
          "(microseconds, best of 7 interleaved rounds): "
          + ", ".join(f"{k} {v:.2f}" for k, v in overhead.items()))
    print("GB/s: nominal traffic (forward: read x + write y; backward: read grad + saved + "
          "write grad_x) over the best time of the rounds; % copy: that over the best "
          "time of a parallel copy of the same size, timed just before the kernel in each "
          "round; paired: the median over the rounds of each round's own copy-to-kernel "
          "ratio (steadier where the memory's speed changes between rounds); vs NumPy / "
          "vs torch: their time over fastact's.")
    if not with_torch:
        print("PyTorch is not installed: no 'vs torch' column.")

    status = 0
    results = results + cached
    if baseline is not None:
        status = _check(results, baseline, max_reg, args.retries, repeat, args.compare)
    elif unchecked:
        print("\n" + unchecked)

    if args.json:
        meta = _bench.metadata(size, repeat, args.quick)
        meta["in_cache_size"] = in_cache
        meta["call_overhead_us"] = {k: round(v, 3) for k, v in overhead.items()}
        out = _bench.dump(results, meta)
        out["layouts"] = [{"case": label, "torch_seconds": t,
                           "backends": {b: {"seconds": v[0], "contiguous_seconds": v[1]}
                                        for b, v in by.items()}}
                          for label, by, t in layout_rows]
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"results written to {args.json}")
    if args.plot:
        _bench.plot_results(results, args.plot)
        print(f"chart written to {args.plot}")
    elif not _has_matplotlib():
        print(f"(for a chart of these results: {CHARTS_HINT}, then --plot FILE.png)")
    return status


def _in_cache_size(args, size):
    """The in-cache table's size: where the main size is beyond it, unless asked for."""
    from . import _bench
    in_cache = (args.in_cache if args.in_cache is not None
                else _bench.IN_CACHE_SIZE if size > _bench.IN_CACHE_SIZE else 0)
    return in_cache if in_cache != size else 0


def _quick_narrow(args, ops):
    """(ops, dtypes) of the regression check's narrow rows (--quick without
    --dtype; else none)."""
    from . import _bench
    narrow_ops = ([op for op in ops if op in _bench.QUICK_NARROW_OPS]
                  if args.quick and args.dtype in (None, "") else [])
    return narrow_ops, [_bench.QUICK_NARROW_DTYPE]


def _compile_only(args, ops, backends, dtypes, size):
    import time

    from . import _bench
    for option in ("compare", "json", "plot"):
        if getattr(args, option):
            raise _UsageError(f"--compile-only times nothing: --{option} does not apply")
    sizes = [size] + [n for n in [_in_cache_size(args, size)] if n]
    t0 = time.perf_counter()
    narrow_ops, narrow_dtypes = _quick_narrow(args, ops)
    progress = _Progress(len(_bench.PASSES) * len(backends)
                         * (len(sizes) * len(dtypes) * len(ops) + len(narrow_ops)),
                         not args.no_progress, "fastact bench --compile-only")
    try:
        calls = _bench.compile_cases(ops, backends, dtypes, sizes, progress)
        if narrow_ops:
            calls += _bench.compile_cases(narrow_ops, backends, narrow_dtypes, [size], progress)
    finally:
        progress.close()
    print(f"fastact bench --compile-only: {calls} kernel calls on {', '.join(map(str, sizes))} "
          f"elements in {time.perf_counter() - t0:.1f} s")
    return 0


def _check(results, baseline, max_reg, retries, repeat, path):
    """Compare with the baseline; re-measure suspects before failing them."""
    from . import _bench

    current = {r.key: r for r in results}
    figures = {k: r.roofline for k, r in current.items()}
    common = [k for k in figures if k in baseline]
    print()
    if not common:
        print(f"regression check FAILED: no kernel of this run is in {path} "
              "(compare runs of the same --size and dtype; --quick matches the baseline)")
        return 1
    suspects = _bench.compare(figures, baseline, max_reg)
    for _ in range(max(retries, 0)):
        if not suspects:
            break
        # Noise on a shared machine only ever slows a kernel down, so the best
        # of several medians is the honest figure for "did it get slower".
        for s in suspects:
            r = current[s.key]
            wl = _bench.make_workload(r.op, r.dtype, r.size)
            again = _bench.measure(wl, r.pass_, r.backend, 2 * repeat)
            figures[s.key] = max(figures[s.key], again.roofline)
        suspects = _bench.compare({s.key: figures[s.key] for s in suspects}, baseline, max_reg)
    unmatched = [k for k in figures if k not in baseline]
    if unmatched:
        print(f"not in the baseline (not checked): {', '.join(unmatched)}")
    sizes = {r.size for r in current.values()}
    missing = [k for k in baseline if k not in figures
               and any(f"/{n}/" in k for n in sizes)]
    if missing:
        print(f"in the baseline but not run here (a backend missing or not selected): "
              f"{len(missing)} kernels, e.g. {missing[0]}")
    if suspects:
        print(f"regression check FAILED: {len(suspects)} of {len(common)} kernels fell more "
              f"than {100 * max_reg:.0f}% below {path} (figures: % of the copy roofline)")
        for s in suspects:
            print(f"  {s}")
        return 1
    print(f"regression check passed: {len(common)} kernels within {100 * max_reg:.0f}% of "
          f"{path}")
    return 0


def _backend_status():
    """``fastact.backends()``, or the same built one backend at a time if it fails."""
    import fastact
    from . import _dispatch
    from .config import BACKEND_NAMES
    try:
        return fastact.backends()
    except Exception:
        pass
    out = {}
    for name in BACKEND_NAMES:
        try:
            b = _dispatch.get(name)
        except Exception as e:
            out[name] = {"available": False, "reason": getattr(e, "reason", str(e))}
            continue
        try:
            details = b.describe()
        except Exception as e:
            details = {"describe": f"failed ({type(e).__name__}: {e})"}
        out[name] = {"available": True, "reason": None, **details}
    return out


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


# --- info --------------------------------------------------------------------------

def _info():
    import platform

    import fastact
    import numpy
    from . import _bench

    lines = [f"fastact {fastact.__version__}", f"Python {platform.python_version()} "
             f"({platform.machine()}, {_bench._cpu_name()})", f"NumPy {numpy.__version__}"]
    try:
        import numba
        lines.append(f"Numba {numba.__version__}")
    except ImportError:
        lines.append("Numba not installed")
    try:
        import torch
        lines.append(f"PyTorch {torch.__version__} (reference for fastact bench)")
    except Exception:
        lines.append("PyTorch not installed (fastact bench runs without its column)")

    lines.append("backends:")
    status = _backend_status()
    for name, st in status.items():
        if st["available"]:
            details = {k: v for k, v in st.items() if k not in ("available", "reason")}
            extra = ", ".join(f"{k}={v}" for k, v in details.items())
            lines.append(f"  {name:<6} available" + (f" ({extra})" if extra else ""))
        else:
            lines.append(f"  {name:<6} unavailable: {st['reason']}")
    c = status.get("c", {})
    isa = next((c[k] for k in ("isa", "simd", "instruction_set", "ISA") if k in c), None)
    if c.get("available"):
        lines.append(f"C backend instruction set: {isa or 'not reported'}")
    lines.append(f"threads: {fastact.get_num_threads()} (set_num_threads / FASTACT_NUM_THREADS)")
    lines.append(f"CUDA devices: {_cuda_devices(status.get('cuda', {}))}")
    print("\n".join(lines))
    return 0


def _cuda_devices(st):
    if st.get("available"):
        for k in ("devices", "device", "gpus"):
            if k in st:
                return str(st[k])
    try:
        from numba import cuda
        if not cuda.is_available():
            return "none (no CUDA driver or device found)"
        return ", ".join(f"{i}: {d.name.decode() if isinstance(d.name, bytes) else d.name}"
                         for i, d in enumerate(cuda.gpus)) or "none"
    except Exception as e:
        return f"none ({type(e).__name__}: {e})"


# --- demo --------------------------------------------------------------------------

def _demo(args):
    if args.plot:
        _writable(args.plot, "--plot")
        if not _has_matplotlib():
            raise _UsageError(f"--plot needs matplotlib: {DEMO_HINT}")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise _UsageError(f"the demo's data set is scikit-learn's digits: {DEMO_HINT}") \
            from None
    from . import _demo
    seeds = range(args.seeds) if args.seeds else None
    _demo.run(quick=args.quick, epochs=args.epochs, seeds=seeds, plot=args.plot)
    return 0


# --- plot -------------------------------------------------------------------------

def _plot(path):
    _writable(path, "FILE")
    if not _has_matplotlib():
        raise _UsageError(f"plotting needs matplotlib: {CHARTS_HINT}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import fastact

    with fastact.use_backend("numpy"):      # the reference: nothing to compile
        return _plot_grid(path, plt, np, fastact)


def _plot_grid(path, plt, np, fastact):
    x = np.linspace(-4, 4, 801)
    one = np.ones_like(x)
    lo, up = 1 / 8, 1 / 3
    w = np.array([0.25])
    sm_x = np.stack([x, np.zeros_like(x), np.ones_like(x)], axis=1)
    sm_y = fastact.softmax(sm_x)
    e0 = np.zeros_like(sm_x)
    e0[:, 0] = 1
    panels = [
        ("sigmoid", r"$\sigma(x) = 1/(1+e^{-x})$", fastact.sigmoid(x),
         fastact.sigmoid_backward(one, fastact.sigmoid(x))),
        ("relu", r"$\max(x, 0)$", fastact.relu(x), fastact.relu_backward(one, x)),
        ("leaky_relu", "slope 0.1 (default 0.01)", fastact.leaky_relu(x, 0.1),
         fastact.leaky_relu_backward(one, x, 0.1)),
        ("prelu", "learned slope w = 0.25", fastact.prelu(x, w),
         fastact.prelu_backward(one, x, w)[0]),
        ("rrelu", f"evaluation slope {(lo + up) / 2:.3g}; band: training U[{lo:.3g}, {up:.3g}]",
         fastact.rrelu(x, lo, up), fastact.rrelu_backward(one, x, lo, up)),
        ("elu", r"$\alpha(e^x - 1)$ for $x \leq 0$, $\alpha = 1$", fastact.elu(x),
         fastact.elu_backward(one, x)),
        ("softmax", r"$y_0$ of softmax$(x, 0, 1)$", sm_y[:, 0],
         fastact.softmax_backward(e0, sm_y)[:, 0]),
    ]
    from ._bench import registry_entry
    drawn = {p[0] for p in panels}
    for name in fastact.ACTIVATIONS:         # the catalogue, from the registry
        spec = registry_entry(name)
        if name in drawn or spec is None:
            continue
        f, fb = getattr(fastact, name), getattr(fastact, name + "_backward")
        if spec.kind == "rowwise":           # as softmax: y_0 of rows (x, 0, 1)
            y = f(sm_x)
            panels.append((name, f"$y_0$ of {name}$(x, 0, 1)$", y[:, 0],
                           fb(e0, y)[:, 0]))
            continue
        if spec.kind == "gated":             # the act's half x, the other 1
            k = 1 if spec.gated.swap else 0
            xx = np.stack([np.ones_like(x)] * 2, axis=1)
            xx[:, k] = x
            halves = "(1, x)" if k else "(x, 1)"
            panels.append((name, f"{name}$({halves})$ halves (a, b)", f(xx)[:, 0],
                           fb(np.ones((x.size, 1)), xx)[:, k]))
            continue
        kw = spec.example_kwargs()
        y = f(x, **kw)
        dy = fb(one, y if spec.saves == "y" else x, **spec.example_kwargs("backward"))
        args = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in kw.items())
        panels.append((name, args or spec.doc.title.rstrip("."), y, dy))
    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.3 * rows))
    axes = axes.ravel()
    for ax, (name, formula, y, dy) in zip(axes, panels):
        ax.axhline(0, color="0.8", linewidth=0.8)
        ax.axvline(0, color="0.8", linewidth=0.8)
        if name == "rrelu":
            neg = x <= 0
            ax.fill_between(x[neg], up * x[neg], lo * x[neg], color="C0", alpha=0.2,
                            label="training range")
            ax.fill_between(x[neg], lo, up, color="C1", alpha=0.2)
        ax.plot(x, y, color="C0", label="f(x)")
        ax.plot(x, dy, color="C1", linestyle="--", label="f'(x)")
        ax.set_title(f"{name}\n{formula}", fontsize=10)
        ax.set_xlim(x[0], x[-1])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("fastact activations (solid) and their derivatives (dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
