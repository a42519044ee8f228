"""float16 and bfloat16 (issue #15): storage narrow, arithmetic in float32,
one rounding.

Every unary forward op on all 65536 bit patterns of each narrow dtype, on
every host backend, against the float64 oracle rounded correctly once: at
most 1 ULP, and a floor on the correctly rounded rate; the ReLU family and
RReLU bit for bit against the NumPy reference.  Then the conversions
(every implementation against the others and ml_dtypes), backward passes,
the row-wise ops, mixed dtypes, and the C baseline in a subprocess.
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastact
from conftest import ELEMENTWISE_OPS, HOST_BACKENDS, mixed_values, require_backend
from fastact import _narrow

from early import EarlyProcess

try:
    import ml_dtypes
    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:                               # optional: the float16 tests still run
    ml_dtypes = BF16 = None

NARROW = [pytest.param(np.dtype(np.float16), id="float16"),
          pytest.param(BF16, id="bfloat16", marks=pytest.mark.skipif(
              BF16 is None, reason="ml_dtypes is not installed"))]
ALL_BITS = np.arange(1 << 16, dtype=np.uint16)
#: the correctly rounded rate floor of the inexact ops (measured on every
#: backend: 99.81% or more, the lowest bfloat16 elu with alpha 0.7, whose
#: alpha the kernels take in float32; the others' misses are double
#: roundings, 99.986% or more)
RATE_FLOOR = 0.995
#: ops whose forward differs only in parameters the kernels take at run
#: time; one of each family compiles once per dtype
FORWARD_OPS = [op for op in ELEMENTWISE_OPS
               if not op.id.endswith("_from_output") and op.id != "relu_from_x"]


@pytest.fixture(params=HOST_BACKENDS)
def backend(request):
    return require_backend(request.param)


#: set in the child that runs the Numba narrow row-kernel tests
ROWS_CHILD = os.environ.get("FASTACT_NARROW_ROWS_CHILD") == "1"
#: The row-wise tests on Numba compile its narrow row kernels (about 70 s,
#: most of this file's time): in a child started early, on the core the
#: suite leaves idle (tests/early.py); test_numba_rows_in_a_child reads it.
NUMBA_ROWS = EarlyProcess(
    "narrow: the Numba row kernels",
    [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.abspath(__file__),
     "-k", "rowwise and numba"],
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    env={"FASTACT_NARROW_ROWS_CHILD": "1"})


def _rows_backend(backend):
    """``backend``, where this process runs its row-wise tests: Numba's run
    in the child (NUMBA_ROWS)."""
    if backend == "numba" and not ROWS_CHILD:
        pytest.skip("run in a child: test_numba_rows_in_a_child")
    return backend


def _ordinal(bits):
    """Narrow bits as integers in the order of their values (-0 and +0 alike)."""
    h = bits.astype(np.int32)
    return np.where(h & 0x8000, -(h & 0x7FFF), h & 0x7FFF)


def _is_nan(bits, dtype):
    return (bits & 0x7FFF) > (0x7C00 if dtype == np.float16 else 0x7F80)


def correctly_rounded(exact, dtype):
    """The bits of float64 ``exact`` rounded once to ``dtype``: float16 by
    NumPy's direct conversion; bfloat16 through float32 rounded to odd
    (exact for 8 bits from 24), then to nearest even."""
    exact = np.asarray(exact, np.float64)
    with np.errstate(all="ignore"):
        if dtype == np.float16:
            return exact.astype(np.float16).view(np.uint16)
        f = exact.astype(np.float32)
        toward0 = np.where(np.abs(f.astype(np.float64)) > np.abs(exact),
                           np.nextafter(f, np.float32(0)), f)
        inexact = np.isfinite(exact) & (toward0.astype(np.float64) != exact)
        odd = toward0.view(np.uint32) | inexact.astype(np.uint32)
    return _narrow.narrow_bits(odd.view(np.float32), dtype)


def _chunked(fn, x, n=8192):
    """fn over ``x`` in pieces below every op's parallel threshold: the
    serial kernels only (one compile per op and dtype)."""
    return np.concatenate([fn(x[k:k + n]) for k in range(0, x.size, n)])


def pattern_errors(op, dtype, backend):
    """(ULP distances, correctly rounded mask) of ``op``'s forward on every
    bit pattern of ``dtype`` against its oracle, NaN positions checked;
    None for the exact ops (checked bit for bit against the reference)."""
    x = ALL_BITS.view(dtype)
    got = _chunked(lambda c: op.fwd(c, backend=backend), x)
    assert got.dtype == dtype
    gb = got.view(np.uint16)
    if op.exact:
        want = _chunked(lambda c: op.fwd(c, backend="numpy"), x).view(np.uint16)
        gn, wn = _is_nan(gb, dtype), _is_nan(want, dtype)
        assert np.array_equal(gn, wn), f"{op.id}: NaN positions differ"
        bad = (gb != want) & ~gn
        assert not bad.any(), (f"{op.id} {dtype}: {bad.sum()} differ from the reference, "
                               f"first at x = {x[bad][:4]}: {got[bad][:4]} vs {want[bad][:4]}")
        return None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # the oracles' constants
        exact = np.asarray(op.oracle_fwd(_narrow.widen(x).astype(np.float64)), np.float64)
    want = correctly_rounded(exact, dtype)
    gn, wn = _is_nan(gb, dtype), _is_nan(want, dtype)
    assert np.array_equal(gn, wn), (f"{op.id} {dtype}: NaN positions differ at x = "
                                    f"{x[gn != wn][:4]}")
    dist = np.abs(_ordinal(gb) - _ordinal(want))[~gn]
    return dist, x[~gn], got[~gn]


@pytest.mark.parametrize("dtype", NARROW)
@pytest.mark.parametrize("op", FORWARD_OPS, ids=lambda op: op.id)
def test_every_bit_pattern(op, dtype, backend):
    res = pattern_errors(op, dtype, backend)
    if res is None:
        return
    dist, x, got = res
    bad = dist > 1
    assert not bad.any(), (f"{op.id} {dtype.name} on {backend}: {bad.sum()} results beyond "
                           f"1 ULP, first at x = {x[bad][:4]}: {got[bad][:4]}")
    rate = float(np.mean(dist == 0))
    assert rate >= RATE_FLOOR, f"{op.id} {dtype.name}: {rate:.4%} correctly rounded"


# --- conversions ------------------------------------------------------------------

def _c_levels():
    """The C backend and the instruction-set levels this CPU runs."""
    c = fastact._dispatch.get(require_backend("c"))
    return c, list(range(c._lib.fa_best_isa() + 1))


def _float32_cases():
    """float32 values around every rounding decision of both narrow types:
    ties, one bit either side, overflow thresholds, subnormal results,
    NaNs with payloads, plus random bits."""
    rng = np.random.default_rng(5)
    base = rng.integers(0, 1 << 32, 1 << 16, dtype=np.uint64).astype(np.uint32)
    ties = [(base & ~np.uint32(m)) | np.uint32(t)
            for m, t in ((0x1FFF, 0x1000), (0xFFFF, 0x8000))]          # f16 and bf16 ties
    near = [t + d for t in ties for d in (np.uint32(1), np.uint32(0xFFFFFFFF))]
    exp = rng.integers(0x30000000, 0x48000000, 1 << 14, dtype=np.uint32) & ~np.uint32(0xFFF)
    named = np.array([65504.0, 65519.996, 65520.0, 65536.0, 2.0 ** -24, 2.0 ** -25,
                      3 * 2.0 ** -26, 2.0 ** -14, 2.0 ** -14 - 2.0 ** -25, 1e-45,
                      np.finfo(np.float32).max, np.inf], np.float32).view(np.uint32)
    nans = np.uint32(0x7F800000) | rng.integers(1, 1 << 23, 256, dtype=np.uint32)
    u = np.concatenate([base, *ties, *near, exp, named, nans])
    return np.concatenate([u, u | np.uint32(0x80000000)]).view(np.float32)


@pytest.mark.parametrize("dtype", NARROW)
def test_reference_conversions(dtype):
    # widening: exact, NaNs quiet with their payloads
    x = ALL_BITS.view(dtype)
    w = _narrow.widen(x)
    nan = _is_nan(ALL_BITS, dtype)
    assert np.array_equal(w[~nan], x[~nan].astype(np.float32))
    assert np.isnan(w[nan]).all() and (w.view(np.uint32)[nan] & 0x00400000).all()
    # narrowing: as NumPy (float16) and ml_dtypes (bfloat16) round, NaNs quiet
    f = _float32_cases()
    got = _narrow.narrow_bits(f, dtype)
    fnan = np.isnan(f)
    with np.errstate(all="ignore"):
        want = f[~fnan].astype(dtype).view(np.uint16)
    assert np.array_equal(got[~fnan], want)
    assert _is_nan(got[fnan], dtype).all()
    quiet = 0x0200 if dtype == np.float16 else 0x0040
    assert (got[fnan] & quiet).all()
    # the ties and thresholds by name
    if dtype == np.float16:
        vals = np.array([65504.0, 65519.0, 65520.0, 2.0 ** -25, 3 * 2.0 ** -25, 2.0 ** -26],
                        np.float32)
        assert _narrow.narrowed(vals, dtype).astype(np.float64).tolist() == [
            65504.0, 65504.0, np.inf, 0.0, 2.0 ** -23, 0.0]


@pytest.mark.parametrize("dtype", NARROW)
def test_c_conversions_every_level(dtype):
    c, levels = _c_levels()
    lib = c._lib
    was = lib.fa_isa()
    f = _float32_cases()
    try:
        for level in levels:
            lib.fa_set_isa(level)
            w = c.narrow_convert(dtype, True, ALL_BITS)
            assert np.array_equal(w.view(np.uint32), _narrow.widen(ALL_BITS.view(dtype))
                                  .view(np.uint32)), f"widening at level {level}"
            n = c.narrow_convert(dtype, False, f)
            assert np.array_equal(n, _narrow.narrow_bits(f, dtype)), f"narrowing at level {level}"
    finally:
        lib.fa_set_isa(was)


@pytest.mark.parametrize("hardware", [False, True], ids=["software", "f16c"])
@pytest.mark.parametrize("dtype", NARROW)
def test_numba_conversions(dtype, hardware):
    numba = pytest.importorskip("numba")
    from fastact._prims_narrow import converters, f16c_target
    if hardware and (dtype != np.float16 or not f16c_target()):
        pytest.skip("LLVM's half conversions: float16 on a target with F16C")
    widen, narrow = converters(dtype.name, hardware)

    @numba.njit
    def run(bits, f, wout, nout):
        for i in range(bits.size):
            wout[i] = widen(bits[i])
        for i in range(f.size):
            nout[i] = narrow(f[i])

    f = _float32_cases()
    w, n = np.empty(ALL_BITS.size, np.float32), np.empty(f.size, np.uint16)
    run(ALL_BITS, f, w, n)
    assert np.array_equal(w.view(np.uint32), _narrow.widen(ALL_BITS.view(dtype)).view(np.uint32))
    assert np.array_equal(n, _narrow.narrow_bits(f, dtype))


# --- every pass on special and random values ----------------------------------------

def _values(dtype, n=2000, seed=0):
    """Specials (0, -0, +-inf, NaN, the largest finite, subnormals) among
    normal(0, 3) draws, in ``dtype``."""
    fi = np.finfo(np.float16)
    extra = np.array([fi.max, -fi.max, fi.smallest_subnormal, -fi.smallest_subnormal * 3,
                      -89.5, -92.0, 3.0e38], np.float32)
    v = np.concatenate([extra, mixed_values(np.float32, n, seed)])
    with np.errstate(over="ignore"):
        return _narrow.narrowed(v, dtype)


def _close(got, want, dtype, what):
    """Same NaN positions; within 1 ULP of the reference's result elsewhere
    (both computed in float32 and rounded once: they differ where their
    float32 results straddle a rounding boundary)."""
    assert got.dtype == want.dtype == dtype, what
    gb, wb = got.view(np.uint16).ravel(), want.view(np.uint16).ravel()
    gn, wn = _is_nan(gb, dtype), _is_nan(wb, dtype)
    assert np.array_equal(gn, wn), f"{what}: NaN positions differ"
    dist = np.abs(_ordinal(gb) - _ordinal(wb))[~gn]
    assert dist.max(initial=0) <= 1, f"{what}: {int((dist > 1).sum())} beyond 1 ULP"


def check_against_reference(op, pass_, got, want, g, dtype):
    """``op``'s ``pass_`` result ``got`` against the reference's ``want``
    (``g``: the backward's gradient): the exact ops bit for bit (NaNs
    aside), the others within 1 ULP, "cond" backward bounds as float32's
    conditioning allows."""
    what = f"{op.id} {pass_} {dtype.name}"
    if op.exact:
        _close(got, want, dtype, what)
        gb, wb = got.view(np.uint16), want.view(np.uint16)
        assert np.array_equal(gb[~_is_nan(gb, dtype)], wb[~_is_nan(gb, dtype)]), what
    elif pass_ == "forward" or op.bounds[1] != "cond":
        _close(got, want, dtype, what)
    else:      # near the derivative's zeros: float32's conditioning, as for float32
        gw, ww = _narrow.widen(got), _narrow.widen(want)
        fin = np.isfinite(ww)
        err = np.abs(gw[fin].astype(np.float64) - ww[fin])
        eps = np.finfo(np.float16).eps if dtype == np.float16 else 2.0 ** -7
        assert (err <= eps * np.abs(ww[fin]) + 1e-3 * np.abs(_narrow.widen(g)[fin])).all(), what


@pytest.mark.parametrize("dtype", NARROW)
def test_backward_passes(dtype, backend):
    rng = np.random.default_rng(1)
    x = _values(dtype)
    g = _narrow.narrowed(rng.standard_normal(x.size).astype(np.float32), dtype)
    for op in ELEMENTWISE_OPS:
        s = op.fwd(x, backend="numpy") if op.saves == "y" else x
        check_against_reference(op, "backward", op.bwd(g, s, backend=backend),
                                op.bwd(g, s, backend="numpy"), g, dtype)


def check_rowwise(dtype, run, shape=(6, 40)):
    """The softmax family, PReLU and the gated units run by ``run(fn, *arrays,
    **kw)`` (host results) on arrays of ``shape`` (rows, a multiple of 4):
    the reference's results within 1 ULP, the softmax against its oracle."""
    rng = np.random.default_rng(2)
    x = _narrow.narrowed(rng.standard_normal(shape).astype(np.float32) * 4, dtype)
    g = _narrow.narrowed(rng.standard_normal(shape).astype(np.float32), dtype)
    rows, n = shape
    for name in ("softmax", "log_softmax", "softmin"):
        fwd, bwd = getattr(fastact, name), getattr(fastact, name + "_backward")
        for axis in (-1, 0):
            y = run(fwd, x, axis=axis)
            _close(y, fwd(x, axis=axis, backend="numpy"), dtype, f"{name} axis {axis}")
            _close(run(bwd, g, y, axis=axis),
                   bwd(g, y, axis=axis, backend="numpy"), dtype, f"{name}_backward")
    with np.errstate(all="ignore"):
        xs = _narrow.widen(x).astype(np.float64)
        exact = np.exp(xs - xs.max(axis=1, keepdims=True))
        exact /= exact.sum(axis=1, keepdims=True)
    dist = np.abs(_ordinal(run(fastact.softmax, x).view(np.uint16))
                  - _ordinal(correctly_rounded(exact, dtype)))
    assert dist.max() <= 1
    x3 = x.reshape(rows, 4, n // 4)
    for w in (np.float32([0.25, -0.5, 0.1, 2.0]), _narrow.narrowed(np.float32([0.25] * 4), dtype)):
        _close(run(fastact.prelu, x3, w), fastact.prelu(x3, w, backend="numpy"),
               dtype, "prelu")
        gx, gw = run(fastact.prelu_backward, g.reshape(x3.shape), x3, w)
        rx, rw = fastact.prelu_backward(g.reshape(x3.shape), x3, w, backend="numpy")
        _close(gx, rx, dtype, "prelu_backward")
        assert gw.dtype == w.dtype and rw.dtype == w.dtype
        np.testing.assert_allclose(gw.astype(np.float64), rw.astype(np.float64), rtol=1e-2)
    for name in ("glu", "swiglu", "geglu"):
        fwd, bwd = getattr(fastact, name), getattr(fastact, name + "_backward")
        y = run(fwd, x)
        _close(y, fwd(x, backend="numpy"), dtype, name)
        gh = g[:, :n // 2]
        _close(run(bwd, gh, x), bwd(gh, x, backend="numpy"), dtype, name + " bwd")


@pytest.mark.early(NUMBA_ROWS)
def test_numba_rows_in_a_child():
    """test_rowwise_ops and test_rowwise_layouts on Numba, in the child."""
    require_backend("numba")
    r = NUMBA_ROWS.result()
    tail = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, tail
    summary = tail.strip().splitlines()[-1]
    want = 4 if BF16 is not None else 2
    assert int(summary.split(" passed")[0].split()[-1]) >= want, summary


@pytest.mark.parametrize("dtype", NARROW)
def test_rowwise_ops(dtype, backend):
    backend = _rows_backend(backend)
    check_rowwise(dtype, lambda fn, *arrays, **kw: fn(*arrays, backend=backend, **kw))


def _narrow_normal(shape, dtype, seed, scale=4.0):
    rng = np.random.default_rng(seed)
    return _narrow.narrowed(rng.standard_normal(shape).astype(np.float32) * scale, dtype)


def _same_as_float32(fn, backend, dtype, what, *arrays, **kw):
    """``fn(*arrays, backend=backend, **kw)`` on narrow arrays: the bits of
    the backend's float32 kernels on widened copies, rounded once (what the
    narrow row kernels compute piece by piece); returns the narrow result."""
    got = fn(*arrays, backend=backend, **kw)
    wide = fn(*(_narrow.widen(a) if _narrow.is_narrow(a.dtype) else a for a in arrays),
              backend=backend, **kw)
    for r, w in zip(got if isinstance(got, tuple) else (got,),
                    wide if isinstance(wide, tuple) else (wide,)):
        want = _narrow.narrowed(w, dtype) if _narrow.is_narrow(r.dtype) else w
        assert r.dtype == want.dtype, what
        assert np.array_equal(r.view(np.uint8), want.view(np.uint8)), what
    return got


@pytest.mark.parametrize("dtype", NARROW)
def test_rowwise_layouts(dtype, backend):
    """The narrow row kernels (rows or blocks widened into float32 buffers,
    not whole arrays) give the bits of the float32 kernels on widened
    copies, rounded once, and forward within 1 ULP of the reference: rows
    longer than their stack buffers, many short rows to a buffer, a middle
    axis with more rows than a block holds, transposed and sliced inputs, in
    place, sizes the pool splits; PReLU's long and short channel rows; gated
    rows longer than a run."""
    backend = _rows_backend(backend)
    shapes = [((3, 5000), -1), ((700, 24), -1), ((2, 300, 33), 1), ((20000, 2), 0),
              ((64, 3, 17), 1), ((5, 37), 0)]
    for shape, axis in shapes:
        x, g = _narrow_normal(shape, dtype, 4), _narrow_normal(shape, dtype, 5, 1.0)
        for name in ("softmax", "log_softmax", "softmin"):
            fwd, bwd = getattr(fastact, name), getattr(fastact, name + "_backward")
            what = f"{name} {shape} axis {axis}"
            y = _same_as_float32(fwd, backend, dtype, what, x, axis=axis)
            _close(y, fwd(x, axis=axis, backend="numpy"), dtype, what)
            _same_as_float32(bwd, backend, dtype, what + " backward", g, y, axis=axis)
    x = _narrow_normal((40, 3000), dtype, 6)
    for v in (x.T, x[:, ::2], x[::-1]):           # not C-contiguous
        for axis in (-1, 0):
            y = _same_as_float32(fastact.softmax, backend, dtype, "view", v, axis=axis)
            _close(y, fastact.softmax(v, axis=axis, backend="numpy"), dtype, f"view {axis}")
    want = fastact.log_softmax(x, backend=backend)
    y = x.copy()
    assert fastact.log_softmax(y, out=y, backend=backend) is y      # in place
    assert np.array_equal(y.view(np.uint16), want.view(np.uint16))
    for shape in [(50, 8, 300), (3000, 24, 1), (7, 5, 3)]:
        x, g = _narrow_normal(shape, dtype, 7), _narrow_normal(shape, dtype, 8, 1.0)
        w = np.linspace(-0.5, 2.0, shape[1]).astype(np.float32)
        y = _same_as_float32(fastact.prelu, backend, dtype, f"prelu {shape}", x, w)
        _close(y, fastact.prelu(x, w, backend="numpy"), dtype, f"prelu {shape}")
        _same_as_float32(fastact.prelu_backward, backend, dtype, f"prelu_backward {shape}",
                         g, x, w)
    for shape in [(3, 2 * 1300), (4000, 2 * 7), (2, 6, 2 * 520)]:
        x, g = _narrow_normal(shape, dtype, 9), _narrow_normal(shape, dtype, 10, 1.0)
        gh = g[..., :shape[-1] // 2]
        for name in ("glu", "swiglu", "geglu", "reglu"):
            fwd, bwd = getattr(fastact, name), getattr(fastact, name + "_backward")
            y = _same_as_float32(fwd, backend, dtype, f"{name} {shape}", x)
            _close(y, fwd(x, backend="numpy"), dtype, f"{name} {shape}")
            _same_as_float32(bwd, backend, dtype, f"{name}_backward {shape}", gh, x)
        _same_as_float32(fastact.glu, backend, dtype, "glu of a reversed view", x[..., ::-1])


@pytest.mark.parametrize("dtype", NARROW)
def test_parallel_kernels_match_serial(dtype, backend):
    """Large arrays (the pool's chunks, RReLU's slopes keyed by the index)
    and views of any layout give the serial results."""
    x = _narrow.narrowed(np.random.default_rng(3).standard_normal(300_001).astype(np.float32),
                         dtype)
    for fn in (fastact.relu, fastact.sigmoid,
               lambda a, **k: fastact.rrelu(a, training=True, seed=9, **k)):
        big = fn(x, backend=backend)
        if fn is not fastact.sigmoid:          # exact: the reference's bits
            assert np.array_equal(big.view(np.uint16), fn(x, backend="numpy").view(np.uint16))
        else:                                  # the serial kernel's bits
            assert np.array_equal(big.view(np.uint16), _chunked(
                lambda c: fn(c, backend=backend), x).view(np.uint16))
        _close(big, fn(x, backend="numpy"), dtype, "large")
        v = x[::-3]
        _close(fn(v, backend=backend), fn(np.ascontiguousarray(v), backend="numpy"), dtype,
               "strided")
    out = np.empty_like(x)
    assert fastact.relu(x, out=out, backend=backend) is out
    assert fastact.relu(x, out=x, backend=backend) is x          # in place


# --- the public layer ------------------------------------------------------------------

@pytest.mark.skipif(BF16 is None, reason="ml_dtypes is not installed")
def test_bfloat16_signaling_nans_as_if_quieted_first(backend):
    """The compiled kernels widen bfloat16 without setting a signaling
    NaN's quiet bit (the narrowing and the arithmetic set it): every pass
    gives the bits it gives where the inputs were quieted first, as the
    widening did before, through a select (relu), arithmetic (sigmoid,
    gelu), a row (softmax) and PReLU; NaNs in g, x or both, payloads 0x01,
    0x15, 0x3f, either sign."""
    snan = np.array([0x7F81, 0xFF95, 0x7FBF], np.uint16)
    base = _values(BF16, 61, 12)[:64].view(np.uint16).copy()
    x, g = base.copy(), base[::-1].copy()
    x[[3, 10, 20]] = snan
    g[[3, 11, 21]] = snan[::-1]
    quiet = [(a | np.where((a & 0x7FFF) > 0x7F80, 0x40, 0)).astype(np.uint16) for a in (x, g)]
    w = np.linspace(-0.5, 2.0, 8).astype(np.float32)
    cases = [(fastact.relu, 1), (fastact.relu_backward, 2), (fastact.sigmoid, 1),
             (fastact.sigmoid_backward, 2), (fastact.gelu, 1), (fastact.gelu_backward, 2),
             (lambda a, **k: fastact.softmax(a.reshape(8, 8), **k), 1),
             (lambda a, b, **k: fastact.prelu_backward(a.reshape(8, 8), b.reshape(8, 8), w,
                                                       **k)[0], 2)]
    for fn, arity in cases:
        args = (x,) if arity == 1 else (g, x)
        qargs = (quiet[0],) if arity == 1 else (quiet[1], quiet[0])
        with np.errstate(all="ignore"):
            got = fn(*(a.view(BF16) for a in args), backend=backend)
            want = fn(*(a.view(BF16) for a in qargs), backend=backend)
        assert np.array_equal(np.asarray(got).view(np.uint16), np.asarray(want).view(np.uint16))


@pytest.mark.parametrize("dtype", NARROW)
def test_small_contiguous_calls_take_the_fast_path(dtype, backend, monkeypatch):
    """C-contiguous narrow arrays of one dtype skip the general path's
    validation (as float32's do: it cost 12-17 us a call): the same bits
    as the general path, parameters in float32, and the general path's
    errors still where the arrays do not fit."""
    from fastact import _api
    x = _values(dtype, 1000, 10)[:1000].reshape(10, 100)
    g = _values(dtype, 1000, 11)[:1000].reshape(10, 100)
    cases = [(fastact.sigmoid, (x,), {}), (fastact.elu, (x,), {"alpha": 0.3}),
             (fastact.softplus_backward, (g, x), {"beta": 1.7, "threshold": 9.0}),
             (fastact.rrelu, (x,), {"training": True, "seed": 4}),
             (fastact.gelu_backward, (g, x), {}),
             # the softmax family's rows and the gated units too (10-12 us a
             # call through the general path, against 2-3 for float32)
             (fastact.softmax, (x,), {}), (fastact.log_softmax_backward, (g, x), {}),
             (fastact.glu, (x,), {}), (fastact.swiglu_backward, (g[:, :50].copy(), x), {})]
    # the general path: the same calls on F-order copies
    want = [fn(*(np.asfortranarray(a) for a in args), backend=backend, **kw)
            for fn, args, kw in cases]
    general = _api._inputs

    def refused(*a, **k):
        raise AssertionError("the general path")
    monkeypatch.setattr(_api, "_inputs", refused)
    monkeypatch.setattr(_api, "_kernels", {})
    for (fn, args, kw), w in zip(cases, want):
        got = fn(*args, backend=backend, **kw)
        assert got.dtype == dtype and got.shape == w.shape
        assert np.array_equal(got.view(np.uint16), np.ascontiguousarray(w).view(np.uint16)), fn
        out = np.empty_like(got)
        assert fn(*args, out=out, backend=backend, **kw) is out
        assert np.array_equal(out.view(np.uint16), got.view(np.uint16)), fn
    monkeypatch.setattr(_api, "_inputs", general)
    with pytest.raises(TypeError, match="must match|has dtype"):
        fastact.sigmoid_backward(g, x.astype(np.float32), backend=backend)
    with pytest.raises(TypeError, match="expected"):
        fastact.sigmoid(x, out=np.empty(x.shape, np.float32), backend=backend)


@pytest.mark.parametrize("dtype", NARROW)
def test_one_dtype_per_call(dtype):
    x = _values(dtype, 10)[:10]
    with pytest.raises(TypeError, match=f"float32 but grad has dtype {dtype.name}"):
        fastact.relu_backward(x, x.astype(np.float32))
    with pytest.raises(TypeError, match=f"out has dtype float32, expected {dtype.name}"):
        fastact.sigmoid(x, out=np.empty(x.shape, np.float32))
    with pytest.raises(TypeError, match=f"weight has dtype float64 but x has dtype {dtype.name}"):
        fastact.prelu(x.reshape(2, 5), np.ones(5))
    other = np.float16 if dtype != np.float16 else BF16
    if other is not None:
        with pytest.raises(TypeError, match="must match"):
            fastact.sigmoid_backward(x, np.zeros(x.shape, other))
    assert fastact.elu(x, 0.5).dtype == dtype
    assert fastact.softmax(x).dtype == dtype


def test_bfloat16_needs_no_import():
    """float16 alone does not import ml_dtypes."""
    code = ("import sys, numpy as np, fastact; fastact.relu(np.ones(3, np.float16)); "
            "fastact.softmax(np.ones(3, np.float16)); assert 'ml_dtypes' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())


def _env(**extra):
    env = dict(os.environ, **extra)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastact.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    return env


_SUBPROCESS_CHECK = """
import numpy as np, fastact
from fastact import _narrow
bits = np.arange(1 << 16, dtype=np.uint16)
dts = [np.dtype(np.float16)]
try:
    import ml_dtypes; dts.append(np.dtype(ml_dtypes.bfloat16))
except ImportError:
    pass
for dt in dts:
    x = bits.view(dt)
    for fn in (fastact.relu, fastact.sigmoid, fastact.elu):
        got = fn(x, backend=BACKEND).view(np.uint16)
        want = fn(x, backend="numpy").view(np.uint16)
        nan = (want & 0x7FFF) > (0x7C00 if dt == np.float16 else 0x7F80)
        d = np.abs(got.astype(np.int32) - want.astype(np.int32))[~nan]
        assert d.max() <= 1, (dt, fn)
print("ok")
"""


C_BASELINE = EarlyProcess("narrow: the C baseline",
                          [sys.executable, "-c", _SUBPROCESS_CHECK.replace("BACKEND", "'c'")],
                          env=_env(FASTACT_C_ISA="baseline"))
NUMBA_GENERIC = EarlyProcess(
    "narrow: numba without F16C",
    [sys.executable, "-c", _SUBPROCESS_CHECK.replace("BACKEND", "'numba'")],
    env=_env(NUMBA_CPU_NAME="generic"))


@pytest.mark.early(C_BASELINE)
def test_c_baseline_subprocess():
    """FASTACT_C_ISA=baseline: the software conversions of plain C."""
    require_backend("c")
    r = C_BASELINE.result()
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


@pytest.mark.early(NUMBA_GENERIC)
def test_numba_without_f16c_subprocess():
    """A generic CPU target (no F16C): the software conversions, no crash."""
    require_backend("numba")
    r = NUMBA_GENERIC.result()
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


@pytest.mark.parametrize("dtype", NARROW)
def test_softmax_backward_in_place_on_the_pool(dtype, restore_threads):
    """The Numba narrow softmax-family backward (numba_cpu._row_kernels'
    ``kind``: the row kernels on the bits) above PARALLEL_MIN, into another
    array and in place on g and on y, one thread and two: the same bits."""
    require_backend("numba")
    shape = (64, 2048)
    assert shape[0] * shape[1] >= fastact.config.PARALLEL_MIN
    x, g = _narrow_normal(shape, dtype, 9), _narrow_normal(shape, dtype, 10, 1.0)
    for name in ("softmax", "log_softmax", "softmin"):
        y = getattr(fastact, name)(x, backend="numba")
        bwd = getattr(fastact, name + "_backward")
        for threads in (1, 2):
            fastact.set_num_threads(threads)
            want = bwd(g, y, backend="numba")
            _close(want, bwd(g, y, backend="numpy"), dtype, name)
            for k in (0, 1):
                work = [g.copy(), y.copy()]
                assert bwd(*work, out=work[k], backend="numba") is work[k]
                assert np.array_equal(work[k].view(np.uint16), want.view(np.uint16)), (name, k)
