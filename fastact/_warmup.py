"""``fastact.warmup()``: compile every Numba kernel into the disk cache ahead
of time (for images and CI), so that no later process waits for a compile.

Driven by the registry: each public op, forward and backward (and the
backward from the output where offered), in each dtype, through the public
API on the Numba backend, once per kernel variant the backend has (serial
for small arrays, parallel, the blocked / streamed kernels of big outputs,
reached by lowering ``config.STREAM_MIN_BYTES`` for the call, and the walk
kernels of strided operands, reached with every other element of an array).
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

from . import config

#: the kernel variants and the config they are reached under
VARIANTS = ("serial", "parallel", "streamed", "strided")


@contextlib.contextmanager
def _variant(variant):
    saved = config.STREAM_MIN_BYTES
    config.STREAM_MIN_BYTES = 0 if variant == "streamed" else -1
    try:
        yield
    finally:
        config.STREAM_MIN_BYTES = saved


def _calls(spec, dtype, n, strided=False):
    """(label, call) pairs running ``spec``'s public functions on about
    ``n`` elements of ``dtype`` on the Numba backend; ``strided``: the
    elementwise ones' on every other element of an array (their walk
    kernels; none for the other kinds)."""
    import fastact
    name = spec.api_name
    f, fb = getattr(fastact, name), getattr(fastact, name + "_backward")
    kw, kwb = spec.example_kwargs(), spec.example_kwargs("backward")
    rng = np.random.default_rng(0)
    nb = {"backend": "numba"}
    if strided and spec.kind != "elementwise":
        return []
    if spec.kind == "prelu":
        out = []
        for shape in ((max(n // 1024, 1), 4, 256), (max(n // 32, 1), 8, 4)):
            x = rng.standard_normal(shape).astype(dtype)
            w = np.full(shape[1], 0.25, dtype)
            out += [("forward", lambda x=x, w=w: f(x, w, **nb)),
                    ("backward", lambda x=x, w=w: fb(x, x, w, **nb))]
        return out
    if spec.kind in ("rowwise", "gated"):
        x = rng.standard_normal((max(n // 256, 1), 256)).astype(dtype)
        g = rng.standard_normal(x.shape if spec.kind == "rowwise" else (x.shape[0], 128))
        g = g.astype(dtype)
        calls = [("forward", lambda: f(x, **kw, **nb))]
        if spec.kind == "rowwise":
            calls.append(("backward", lambda: fb(g, f(x, **kw, **nb), **kwb, **nb)))
        else:
            calls += [("backward", lambda: fb(g, x, **kwb, **nb)),
                      ("backward in place", lambda: fb(g, x.copy(), **kwb, **nb))]
        return calls
    x = rng.standard_normal(2 * n if strided else n).astype(dtype)[::2 if strided else 1]
    # rrelu's training kernels, both parameterizations (divide: Xu et al.'s)
    train = [{"training": True, "seed": 1}, {"training": True, "seed": 1, "lower": 3.0,
                                               "upper": 8.0, "divide": True}]
    variants = [kw] if name != "rrelu" else [kw] + [{**kw, **t} for t in train]
    calls = []
    for k in variants:
        kb = {**kwb, **{key: v for key, v in k.items() if key != "training" or v}}
        # the saved array made in the step (listing the steps runs nothing)
        saved = (lambda k=k: f(x, **k, **nb)) if spec.saves == "y" else (lambda: x)
        calls += [("forward", lambda k=k: f(x, **k, **nb)),
                  ("backward", lambda kb=kb, s=saved: fb(x, s(), **kb, **nb))]
    if spec.from_output is not None and spec.from_output.build is not None:
        calls.append(("backward from y",
                      lambda: fb(x, f(x, **kw, **nb), **kwb, from_output=True, **nb)))
    return calls


#: the dtypes warmup takes (the 16-bit ones compile the narrow kernels;
#: bfloat16 needs ml_dtypes)
DTYPES = ("float32", "float64", "float16", "bfloat16")


def dtype_of(name):
    """The NumPy dtype called ``name`` (one of :data:`DTYPES`)."""
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def warmup(dtypes=("float32", "float64"), ops=None, progress=None) -> dict:
    """Compile every Numba kernel of ``ops`` (default: every activation) in
    ``dtypes`` (names of :data:`DTYPES`) into Numba's disk cache
    (``NUMBA_CACHE_DIR`` or beside the package).  ``progress(label)``, if
    given, is called before each step.  Returns ``{"steps": n, "seconds":
    s}``; raises ValueError for a dtype outside :data:`DTYPES` (an integer
    one would silently warm float64's kernels) and the backend's
    BackendUnavailable where Numba does not load."""
    import fastact
    from ._dispatch import get
    from ._registry import REGISTRY
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise ValueError(f"fastact.warmup: dtypes must be names among {', '.join(DTYPES)}, "
                         f"not {bad}")
    get("numba")
    specs = [s for s in REGISTRY.values() if s.public and (ops is None or s.api_name in ops)]
    t0, steps = time.perf_counter(), 0
    for spec in specs:
        for dt in dtypes:
            for variant in VARIANTS:
                n = 256 if variant == "serial" else max(config.PARALLEL_MIN, 1 << 16)
                with _variant(variant), np.errstate(all="ignore"):
                    for label, call in _calls(spec, dtype_of(dt), n, variant == "strided"):
                        if progress is not None:
                            progress(f"{spec.api_name} {label} {dt} {variant}")
                        call()
                        steps += 1
    fastact._api._kernels.clear()       # kernels looked up under the lowered config
    return {"steps": steps, "seconds": time.perf_counter() - t0}
