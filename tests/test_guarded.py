"""Guarded passes (fastact/_spec.py: Spec.guarded): the C kernels and
Numba's parallel ones write a block of 1 KiB with the formula's fast
variant where every element of the block is in its common domain (the
guard), else with the full formula.  The variant is the formula with the
selects that are constant on the domain left out, so both must give the
same bits there: a result never depends on its neighbours.  These tests put
an out-of-domain element into every block and compare the others' bits
with a run where (nearly) every block takes the variant, on every kernel
path (serial, pool, blocked / prefetched; the narrow types through C's
float32 workers), in place too, and check the outsiders' special values.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import fastact
from conftest import assert_bitwise_equal
from fastact._registry import REGISTRY
from fastact._spec import PASS_SUFFIX

try:
    import ml_dtypes
    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:                               # optional
    BF16 = None

GUARDED = [(name, pass_) for name, spec in REGISTRY.items() for pass_ in spec.guarded]
DTYPES = [np.float32, np.float64]
#: the narrow kernels take the float32 variant between the conversions
ALL_DTYPES = [pytest.param(np.dtype(np.float32), id="float32"),
              pytest.param(np.dtype(np.float64), id="float64"),
              pytest.param(np.dtype(np.float16), id="float16"),
              pytest.param(BF16, id="bfloat16", marks=pytest.mark.skipif(
                  BF16 is None, reason="ml_dtypes is not installed"))]
#: serial (Numba) / regular stores (C); the pool; blocked (Numba) / prefetched (C)
SIZES = {"small": 4001, "pool": (1 << 16) + 5, "big": (1 << 20) + 37}


def _params_to_try(spec):
    """Keyword sets: the defaults, and each parameter set away from it."""
    tries = [{}]
    for p in spec.api_of("backward"):
        if isinstance(p.default, (int, float)) and not isinstance(p.default, bool):
            tries.append({p.name: p.default * 0.7})
    return tries


def _inputs(dtype, n, seed):
    """x within every guard's domain (|x| < 39), g of magnitudes 2**-40..2**40
    (2**-10..2**10 in the narrow types)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-39, 39, n).astype(dtype)
    x[::7] = (rng.standard_normal(x[::7].size) * 2).astype(dtype)    # the busy middle
    e = 40 if np.dtype(dtype).itemsize > 2 else 10
    g = (rng.standard_normal(n) * np.exp2(rng.uniform(-e, e, n))).astype(dtype)
    return g, x


def _outsiders(g, x):
    """Copies with an element out of every guard's domain in each block of 1
    KiB (x = -1e4 every 97th, g = inf every 89th), and the mask of the others."""
    g2, x2 = g.copy(), x.copy()
    x2[::97] = -1e4
    g2[1::89] = np.inf
    keep = np.ones(x.size, bool)
    keep[::97] = keep[1::89] = False
    return g2, x2, keep


def _same_bits(got, want):
    """The same bits, element for element (any float width; NaNs included)."""
    u = np.dtype(f"u{got.dtype.itemsize}")
    assert got.dtype == want.dtype and got.shape == want.shape
    diff = np.flatnonzero(got.view(u) != want.view(u))
    assert diff.size == 0, (diff[:5], got[diff[:5]], want[diff[:5]])


def _backward(name):
    spec = REGISTRY[name]
    return getattr(fastact, spec.api_name + "_backward")


def test_guarded_entries_are_complete():
    """Each guarded pass has a guard for each pass named, and a build that
    takes ``fast``; C has its variant and guard (N_(<stem>_fast), _ok)."""
    from fastact._prims import cpu_prims
    import pathlib
    c = "".join(p.read_text() for p in
                pathlib.Path(__file__).resolve().parents[1].joinpath("c_src").glob("formulas*.inc"))
    assert GUARDED
    for name, pass_ in GUARDED:
        spec = REGISTRY[name]
        assert spec.kind == "elementwise" and pass_ in spec.passes()
        assert "fast" in inspect.signature(spec.build).parameters, name
        for dt in DTYPES:
            assert set(spec.guard(cpu_prims(dt))) == set(spec.guarded), name
        stem = f"{name}_{PASS_SUFFIX[pass_]}"
        assert f"N_({stem}_fast)" in c and f"N_({stem}_ok)" in c, stem


@pytest.fixture
def numba_guarded(monkeypatch):
    """Numba's kernels built with the guards (config.NUMBA_GUARDED), for one
    test: the kernel caches cleared before and after (a guarded kernel has
    its own name, so its own disk-cache entry)."""
    from fastact import config
    from fastact._backends import numba_cpu as nc
    caches = (nc._elementwise_kernel, nc._blocked_kernel)
    for c in caches:
        c.cache_clear()
    monkeypatch.setattr(config, "NUMBA_GUARDED", True)
    yield
    monkeypatch.setattr(config, "NUMBA_GUARDED", False)
    for c in caches:
        c.cache_clear()


#: C: every dtype and size; Numba with its guards on (config.NUMBA_GUARDED,
#: off by default): float32, the pool and blocked sizes (each guarded kernel
#: compiles twice the code: CI time)
CASES = ([pytest.param("c", d.values[0], size, id=f"c-{d.id}-{size}", marks=d.marks)
          for d in ALL_DTYPES for size in SIZES]
         + [pytest.param("numba", np.dtype(np.float32), size, id=f"numba-float32-{size}")
            for size in ("pool", "big")])


@pytest.mark.parametrize("backend,dtype,size", CASES)
@pytest.mark.parametrize("name,pass_", GUARDED, ids=[f"{n}-{p}" for n, p in GUARDED])
def test_a_result_does_not_depend_on_its_block(name, pass_, backend, dtype, size,
                                               restore_threads, request):
    if not fastact.backends()[backend]["available"]:
        pytest.skip(f"{backend} unavailable")
    if backend == "numba":
        request.getfixturevalue("numba_guarded")
    fastact.set_num_threads(2)          # the blocks split between threads
    if dtype.itemsize == 2 and size == "big":
        pytest.skip("the narrow kernels convert chunks for the float32 workers: "
                    "the small and pool sizes take them")
    f = _backward(name)
    n = SIZES[size]
    g, x = _inputs(dtype, n, seed=n)
    g2, x2, keep = _outsiders(g, x)
    for kw in _params_to_try(REGISTRY[name]):
        clean = f(g, x, backend=backend, **kw)
        mixed = f(g2, x2, backend=backend, **kw)
        _same_bits(mixed[keep], clean[keep])
        if dtype != np.float32 or size != "pool" or (backend == "numba" and name != "celu"):
            continue                    # (each in-place case compiles its own worker)
        # in place on each input: the block is read before it is written
        for i in range(2):
            ins = [g2.copy(), x2.copy()]
            f(*ins, out=ins[i], backend=backend, **kw)
            _same_bits(ins[i], mixed)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name,pass_", GUARDED, ids=[f"{n}-{p}" for n, p in GUARDED])
def test_outsiders_keep_the_full_formula(name, pass_, dtype):
    """The out-of-domain elements themselves (-1e4, inf, NaN, huge and tiny
    g) get the reference's values (within the op's bounds: here the special
    cases, which are exact), on both CPU backends."""
    f = _backward(name)
    x = np.array([-1e4, -np.inf, np.inf, np.nan, -300.0, 1e30, -0.0, 0.0, -1.5], dtype)
    g = np.array([1.0, np.inf, -np.inf, 1.0, 1e30, 2.0, 1e-40 if dtype == np.float64 else 1e-30,
                  np.inf, -3.0], dtype)
    # one block of such elements, then a block in the domain: both paths in one call
    gx, xx = _inputs(dtype, 512, seed=3)
    g, x = np.concatenate([np.resize(g, 512), gx]), np.concatenate([np.resize(x, 512), xx])
    want = f(g, x, backend="numpy")
    for backend in ("c", "numba"):
        if not fastact.backends()[backend]["available"]:
            continue
        got = f(g, x, backend=backend)
        special = ~np.isfinite(x) | ~np.isfinite(g)
        assert np.array_equal(np.isnan(got[special]), np.isnan(want[special])), backend
        ok = special & ~np.isnan(want)
        assert_bitwise_equal(got[ok], want[ok])
        rel = np.abs(got[~special] - want[~special]) / np.maximum(np.abs(want[~special]),
                                                                np.finfo(dtype).tiny)
        assert float(np.max(rel)) < 1e-3, (backend, float(np.max(rel)))


# --- log_softmax backward's exponential (C: row_grad_fast) ---------------------------

@pytest.mark.parametrize("rows,n", [(6, 4096), (64, 300), (3, 10000)],
                         ids=["rows4096", "short", "long"])
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_log_softmax_backward_does_not_depend_on_its_chunk(dtype, rows, n):
    """C's log_softmax backward computes exp(y) without its clamps and
    subnormal scaling in a chunk whose y are all in [-86, 88] (float64 [-700,
    709]), where the results are normal: the same bits as the full
    exponential.  The odd rows are the even ones with an outsider (y = -100,
    -1e4, 100, -inf, NaN) in every chunk of 128 elements; g is the same, so
    is each row's reduction sum g, and every other element keeps its bits.
    The outsiders get the reference's values."""
    if not fastact.backends()["c"]["available"]:
        pytest.skip("the C backend is not built")
    rng = np.random.default_rng(rows + n)
    g = rng.standard_normal((rows // 2, n)).astype(dtype)
    y = rng.uniform(-30, 0, (rows // 2, n)).astype(dtype)
    y[:, ::5] = -rng.uniform(60, 86, y[:, ::5].shape).astype(dtype)   # near the edge
    y2 = y.copy()
    specials = np.array([-100.0, -1e4, 100.0, -np.inf, np.nan])
    y2[:, 3::128] = np.resize(specials, y2[:, 3::128].shape).astype(dtype)
    G, Y = np.repeat(g, 2, axis=0), np.empty((rows // 2 * 2, n), dtype)
    Y[0::2], Y[1::2] = y, y2
    got = fastact.log_softmax_backward(G, Y, backend="c")
    keep = np.ones(n, bool)
    keep[3::128] = False
    _same_bits(got[1::2][:, keep], got[0::2][:, keep])
    want = fastact.log_softmax_backward(G[1::2], Y[1::2], backend="numpy")
    out, ref = got[1::2][:, ~keep].astype(np.float64), want[:, ~keep].astype(np.float64)
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    inf = np.isinf(ref)
    assert np.array_equal(out[inf], ref[inf])
    fin = np.isfinite(ref)
    # within a few ULP of the result or of exp(y) sum |g| (the reduction's error)
    term = np.exp(Y[1::2][:, ~keep].astype(np.float64)) \
        * np.abs(g.astype(np.float64)).sum(axis=1, keepdims=True)
    scale = np.abs(ref[fin]) + term[fin]
    assert np.all(np.abs(out[fin] - ref[fin]) <= 4 * np.finfo(dtype).eps * scale)


# --- the C guards and the Python ones: the same domains -------------------------------

def _c_sources():
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1] / "c_src"
    return {p.name: p.read_text() for p in root.glob("formulas*.inc")}


def _c_number(text):
    text = text.strip()
    return float.fromhex(text) if "0x" in text else float(text)


def _c_ok_bounds():
    """The domains' bounds as c_src's formulas write them: per dtype name
    (float32 first in each #if FA_F32 ... #else pair) and per literal."""
    import re
    src = _c_sources()
    exp_, special = src["formulas_exponential.inc"], src["formulas_special.inc"]
    cut = [float(v) for v in re.findall(r"#define XP_CUT1 \(\(T\)([-0-9.e]+)\)", exp_)]
    gs = [float(v) for v in re.findall(r"#define GS_FAST \(\(T\)([-0-9.e]+)\)", special)]
    silu = exp_[exp_.index("N_(silu_bwd_ok)"):]
    silu = silu[:silu.index("\n}")]
    celu = exp_[exp_.index("N_(celu_bwd_ok)"):]
    celu = celu[:celu.index("\n}")]
    lit = r"\(T\)(-?0x[0-9a-f.]+p[-+]?[0-9]+|[-0-9.e]+)"
    assert len(cut) == 2 and len(gs) == 2
    return {"xp_cut1": dict(zip(("float32", "float64"), cut)),
            "gs_fast": dict(zip(("float32", "float64"), gs)),
            "silu_hi": _c_number(re.search(r"x <= " + lit, silu).group(1)),
            "celu_lo": _c_number(re.search(r"x >= " + lit, celu).group(1)),
            "celu_glo": _c_number(re.search(r"ag >= " + lit, celu).group(1)),
            "celu_ghi": _c_number(re.search(r"ag <= " + lit, celu).group(1))}


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_c_and_python_guards_have_the_same_domains(dtype):
    """Each guard of the registry (Python, the Numba kernels') accepts the
    bounds that c_src's N_(<stem>_ok) writes and refuses the next value
    beyond: the two backends take their fast variants on the same domain."""
    from fastact._prims import cpu_prims
    T, b = np.dtype(dtype).type, _c_ok_bounds()
    key = np.dtype(dtype).name

    def below(v):
        return np.nextafter(T(v), T(-np.inf))

    def above(v):
        return np.nextafter(T(v), T(np.inf))

    def oks(name):
        return REGISTRY[name].guard(cpu_prims(dtype))["backward"]

    one, inf, nan = T(1.0), T(np.inf), T(np.nan)
    silu, lo, hi = oks("silu"), b["xp_cut1"][key], b["silu_hi"]
    assert silu(one, T(lo)) and not silu(one, below(lo))
    assert silu(one, T(hi)) and not silu(one, above(hi))
    assert not silu(inf, one) and not silu(nan, one) and not silu(one, nan)

    celu, a1 = oks("celu"), (T(1.0), T(1.0), T(0.0))
    lo, glo, ghi = b["celu_lo"], b["celu_glo"], b["celu_ghi"]
    assert celu(one, T(lo), *a1) and not celu(one, below(lo), *a1)
    assert celu(T(glo), one, *a1) and not celu(below(glo), one, *a1)
    assert celu(T(ghi), one, *a1) and not celu(above(ghi), one, *a1)
    assert celu(T(0.0), one, *a1) and celu(T(-ghi), one, *a1)
    assert not celu(one, one, T(0.7), T(1 / 0.7), T(0.0)) and not celu(one, nan, *a1)

    lim = b["gs_fast"][key]
    softplus, logsigmoid = oks("softplus"), oks("logsigmoid")
    for x in (T(lim), T(-lim)):
        assert softplus(one, x, one, T(20.0)) and logsigmoid(one, x)
    for x in (above(lim), below(-lim), nan):
        assert not softplus(one, x, one, T(20.0)) and not logsigmoid(one, x)
    assert softplus(one, T(lim / 2), T(2.0), T(20.0))
    assert not softplus(one, above(lim / 2), T(2.0), T(20.0))
