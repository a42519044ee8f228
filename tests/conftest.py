"""Shared fixtures and test oracles for the core suite.

The oracles here are written independently of the library: high-precision
formulas in ``np.longdouble`` (for float64 results) and float64/longdouble
(for float32 results), a ULP measure built from ``frexp``, and the layouts
every op is exercised on.  The ``"numpy"`` backend is the library's own
reference; tests compare the other backends with it bit for bit where the
spec says so, and every backend with these oracles where the spec gives ULP
bounds.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import fastact
from fastact import config

import early

# The automatic choice's background compile (fastact._dispatch) would make
# which backend a big call of gelu takes depend on a child process's
# progress: off in the suite's process (tests/test_core_dispatch.py tests it
# in children of their own).
config.NUMBA_FIRST_BACKGROUND = False

HOST_BACKENDS = tuple(n for n in config.BACKEND_NAMES if n != "cuda")
DTYPES = (np.float32, np.float64)
WIDE = np.longdouble


@functools.lru_cache(maxsize=None)
def _status():
    return fastact.backends()


def require_backend(name):
    st = _status()[name]
    if not st["available"]:
        pytest.skip(f"backend {name!r} unavailable: {st['reason']}")
    return name


@pytest.fixture(params=HOST_BACKENDS)
def host_backend(request):
    """Every host backend name; skipped with the backend's own reason."""
    return require_backend(request.param)


@pytest.fixture(params=[b for b in HOST_BACKENDS if b != "numpy"])
def fast_backend(request):
    """Host backends other than the reference (compared against it)."""
    return require_backend(request.param)


@pytest.fixture
def restore_threads():
    """Puts fastact's thread count back after a test that changes it."""
    n = fastact.get_num_threads()
    yield
    fastact.set_num_threads(n)


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


# --- bit-level and ULP comparisons --------------------------------------------

def assert_bitwise_equal(got, want):
    """Same shape, dtype, NaN positions, and identical bits elsewhere (sign of zero included)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    got1, want1 = got.reshape(-1), want.reshape(-1)
    gn, wn = np.isnan(got1), np.isnan(want1)
    assert np.array_equal(gn, wn), f"NaN positions differ: got {got1[gn != wn]} want {want1[gn != wn]}"
    ui = np.uint32 if got.dtype == np.float32 else np.uint64
    g, w = got1[~gn], want1[~wn]
    bad = g.view(ui) != w.view(ui)
    if bad.any():
        raise AssertionError(f"{bad.sum()} of {got.size} elements differ bitwise; "
                             f"first: got {g[bad][:5]!r} want {w[bad][:5]!r}")


def ulp_of(exact, dtype):
    """ULP of the binade of each exact value in ``dtype`` (subnormal spacing at the bottom)."""
    dt = np.dtype(dtype)
    fi = np.finfo(dt)
    p = fi.nmant + 1
    _, e = np.frexp(np.abs(np.asarray(exact, dtype=WIDE)))
    ulp = np.ldexp(WIDE(1), (e - p).astype(np.int32))
    return np.maximum(ulp, WIDE(fi.smallest_subnormal))


def ulp_errors(got, exact, dtype=None):
    """|got - exact| in ULPs of ``got``'s dtype; 0 where both NaN or equal infinities,
    inf where NaN/inf patterns disagree."""
    got = np.asarray(got)
    dtype = np.dtype(dtype or got.dtype)
    exact = np.asarray(exact, dtype=WIDE)
    gw = got.astype(WIDE)
    both_nan = np.isnan(gw) & np.isnan(exact)
    with np.errstate(invalid="ignore", over="ignore"):
        rounded = exact.astype(dtype)      # beyond max by less than half an ULP rounds to max
        # An overflow to +-inf where the exact result is finite counts as the
        # value one ULP beyond max (where IEEE rounding starts to overflow):
        # a result within an ULP or two of the threshold may land either side.
        fi = np.finfo(dtype)
        beyond = WIDE(fi.max) + ulp_of(WIDE(fi.max), dtype)
        over = np.isinf(gw) & np.isfinite(rounded)
        gw = np.where(over, np.sign(gw) * beyond, gw)
        fin = np.isfinite(gw) & np.isfinite(rounded)
        err = np.full(got.shape, np.inf, dtype=WIDE)
        err[fin] = np.abs(gw[fin] - exact[fin]) / ulp_of(exact[fin], dtype)
        same_inf = np.isinf(gw) & (gw == rounded.astype(WIDE))
    err[both_nan | same_inf] = 0
    return err


def assert_ulp(got, exact, max_ulp, what=""):
    err = ulp_errors(got, exact)
    if err.size and err.max() > max_ulp:
        i = np.unravel_index(np.argmax(err), err.shape)
        ex = np.asarray(exact, dtype=WIDE)
        raise AssertionError(
            f"{what}: max error {float(err.max()):.3g} ULP > {max_ulp} "
            f"({int((err > max_ulp).sum())} elements); worst at {i}: "
            f"got {np.asarray(got)[i]!r}, exact {ex[i]!r}")


# --- high-precision oracles (independent of fastact's code) --------------------

def hp(a):
    return np.asarray(a).astype(WIDE)


def oracle_sigmoid(x):
    xw = hp(x)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        e = np.exp(-np.abs(xw))
        return np.where(xw >= 0, 1 / (1 + e), e / (1 + e))


def oracle_sigmoid_backward(g, y):
    gw, yw = hp(g), hp(y)
    return gw * (1 - yw) * yw


def oracle_elu(x, alpha):
    xw = hp(x)
    a = hp(np.asarray(alpha, dtype=np.asarray(x).dtype))
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(xw > 0, xw, a * np.expm1(np.minimum(xw, 0)))


def oracle_elu_backward(g, x, alpha):
    xw, gw = hp(x), hp(g)
    a = hp(np.asarray(alpha, dtype=np.asarray(x).dtype))
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        neg = gw * a * np.exp(np.minimum(xw, 0))
    return np.where(np.isnan(xw) | (xw > 0), gw, neg)


def oracle_elu_backward_y(g, y, alpha):
    """elu's derivative from its output: g (y + alpha) where y <= 0."""
    yw, gw = hp(y), hp(g)
    a = hp(np.asarray(alpha, dtype=np.asarray(y).dtype))
    return np.where(yw <= 0, gw * (yw + a), gw)


def oracle_softmax(x, axis=-1):
    xw = hp(x)
    if xw.ndim == 0:
        xw = xw.reshape(1)
        return oracle_softmax(xw)[0]
    with np.errstate(invalid="ignore", over="ignore", under="ignore", divide="ignore"):
        if xw.shape[axis] == 0:
            return xw.copy()
        m = np.max(xw, axis=axis, keepdims=True)
        e = np.exp(xw - m)
        return e / np.sum(e, axis=axis, keepdims=True)


def oracle_softmax_backward(g, y, axis=-1):
    gw, yw = hp(g), hp(y)
    if gw.ndim == 0:
        return (yw * (gw - gw * yw))
    return yw * (gw - np.sum(gw * yw, axis=axis, keepdims=True))


def softmax_backward_bound(g, y, axis=-1):
    """The spec's bound: 4 eps |y| (|g| + sum|g y|), plus half the smallest subnormal."""
    dt = np.asarray(y).dtype
    gw, yw = hp(g), hp(y)
    if gw.ndim == 0:
        s = np.abs(gw * yw)
    else:
        s = np.sum(np.abs(gw * yw), axis=axis, keepdims=True)
    fi = np.finfo(dt)
    return 4 * WIDE(fi.eps) * np.abs(yw) * (np.abs(gw) + s) + WIDE(fi.smallest_subnormal) / 2


# --- input values -----------------------------------------------------------------

def special_values(dtype):
    """0, -0.0, +-inf, NaN, huge, tiny normal, subnormal, and ordinary values."""
    fi = np.finfo(dtype)
    v = [0.0, -0.0, np.inf, -np.inf, np.nan, fi.max, -fi.max, fi.max / 3, -fi.max / 3,
         fi.tiny, -fi.tiny, fi.smallest_subnormal, -fi.smallest_subnormal,
         fi.smallest_subnormal * 7, -fi.tiny / 3, 1e4, -1e4, 1.0, -1.0, 0.5, -2.5, 40.0,
         -40.0, -100.0, -750.0, 1e-30, -1e-30]
    return np.array(v, dtype=np.float64).astype(dtype)


def mixed_values(dtype, n, seed=0):
    """``n`` values: the specials first, then normal(0, 3) draws."""
    rng = np.random.default_rng(seed)
    sp = special_values(dtype)
    v = np.concatenate([sp, (rng.standard_normal(max(n - sp.size, 0)) * 3)]).astype(dtype)
    return rng.permutation(v[:n]) if n < v.size else v


# --- layouts ------------------------------------------------------------------------

LAYOUTS = ("c", "fortran", "slice", "negstride", "broadcast", "transposed", "0d", "empty", "nd")


def make_layout(layout, values, dtype, shape=(3, 4, 5)):
    """An array of ``dtype`` in ``layout`` filled from ``values`` (cycled)."""
    dt = np.dtype(dtype)
    vals = np.asarray(values, dtype=dt).ravel()

    def take(n, off=0):
        if n == 0:
            return np.empty(0, dt)
        return np.resize(np.roll(vals, -off), n)

    if layout == "c":
        return take(int(np.prod(shape))).reshape(shape)
    if layout == "fortran":
        return np.asfortranarray(take(int(np.prod(shape))).reshape(shape))
    if layout == "slice":
        big = take(int(np.prod(shape)) * 6, 1).reshape(shape[0] * 2, shape[1] * 3, shape[2])
        a = big[1::2, ::3, :]
        assert not a.flags.c_contiguous and not a.flags.f_contiguous
        return a
    if layout == "negstride":
        big = take(int(np.prod(shape)) * 2, 2).reshape(shape[0], shape[1], shape[2] * 2)
        a = big[::-1, :, ::-2]
        assert a.strides[0] < 0 and a.strides[2] < 0
        return a
    if layout == "broadcast":
        row = take(shape[-1], 3)
        return np.broadcast_to(row, shape)
    if layout == "transposed":
        return take(int(np.prod(shape)), 4).reshape(shape[::-1]).transpose(2, 0, 1)
    if layout == "0d":
        return np.array(take(1, 5)[0], dtype=dt)
    if layout == "empty":
        return np.empty((0, shape[1]), dt)
    if layout == "nd":
        return take(2 * 1 * 3 * 2 * 4, 6).reshape(2, 1, 3, 2, 4)
    raise ValueError(layout)


def contiguous_copy(a):
    return np.array(a, order="C", copy=True)


@pytest.fixture
def torch():
    t = pytest.importorskip("torch")
    _warm_up_torch(t)
    return t


@functools.lru_cache(maxsize=None)
def _warm_up_torch(t):
    """Run every PyTorch counterpart of the registry once, forward and
    backward, float32 and float64, before a test reads one: PyTorch 2.13's
    first call of a CPU kernel in a process is sometimes wrong (its first
    torch.tanh of 5000 float32 values was 1493 ULP off in one fresh process
    of eight, and exact from the second call on; a parity test failed one
    run in four)."""
    from fastact._registry import REGISTRY
    F = t.nn.functional
    for spec in REGISTRY.values():
        if spec.torch is None or spec.api is None:
            continue
        kw = spec.torch.params(*spec.example_params())     # prelu's
        for dt in (t.float32, t.float64):
            x = t.linspace(-5, 5, 5000, dtype=dt).reshape(50, 100).requires_grad_()
            if spec.torch.name == "prelu":
                F.prelu(x, t.full((100,), 0.25, dtype=dt), **kw).sum().backward()
            else:
                spec.torch.call(F, x, *spec.example_params()).sum().backward()


# --- the operations, as uniform callables ---------------------------------------------

class Op:
    """One elementwise activation with its parameters, as the tests see it.

    ``bounds`` per pass: 0 = bit-identical to the reference backend; an int
    n = within n ULP of the oracle; "cond" (backward) = within
    ``4 eps |g| terms(s)`` of the oracle (the derivative's own conditioning
    near its zeros), ``terms`` the sum of the magnitudes of the formula's
    terms."""

    def __init__(self, id, fwd, bwd, saves, exact, oracle_fwd=None, oracle_bwd=None,
                 bounds=None, terms=None):
        self.id, self.fwd, self.bwd, self.saves = id, fwd, bwd, saves
        self.bounds = bounds or ((0, 0) if exact else (4, 4))
        self.exact = self.bounds == (0, 0)
        self.oracle_fwd, self.oracle_bwd, self.terms = oracle_fwd, oracle_bwd, terms

    def __repr__(self):
        return self.id

    def check(self, pass_, got, ins, what=""):
        """``got`` (from contiguous or strided ``ins``) against the spec's bound."""
        flat = [contiguous_copy(a) for a in ins]
        bound = self.bounds[pass_ == "backward"]
        what = what or f"{self.id} {pass_} {np.asarray(got).dtype}"
        if bound == 0:
            fn = self.fwd if pass_ == "forward" else self.bwd
            with np.errstate(all="ignore"):     # the oracle's own warnings are tested elsewhere
                want = fn(*flat, backend="numpy")
            assert_bitwise_equal(got, want)
            return
        oracle = self.oracle_fwd if pass_ == "forward" else self.oracle_bwd
        with np.errstate(all="ignore"):
            exact = oracle(*flat)
        if bound != "cond":
            assert_ulp(got, exact, bound, what)
            return
        g, s = flat
        dt = np.asarray(got).dtype
        fi = np.finfo(dt)
        with np.errstate(all="ignore"):
            tol = 4 * WIDE(fi.eps) * np.abs(hp(g)) * self.terms(s) + WIDE(fi.smallest_subnormal)
            err = np.abs(hp(got) - exact)
        same = (np.isnan(hp(got)) & np.isnan(exact)) | (hp(got) == exact)
        bad = ~same & ~(err <= np.maximum(tol, ulp_of(exact, dt) * 4))
        assert not bad.any(), (f"{what}: {int(bad.sum())} elements beyond 4 eps |g| terms; "
                               f"first at s = {s[bad][:3]}: got {np.asarray(got)[bad][:3]}, "
                               f"exact {exact[bad][:3]}")


F = fastact
ELEMENTWISE_OPS = [
    Op("sigmoid", lambda x, **k: F.sigmoid(x, **k),
       lambda g, s, **k: F.sigmoid_backward(g, s, **k), "y", False,
       oracle_sigmoid, oracle_sigmoid_backward),
    Op("relu", lambda x, **k: F.relu(x, **k),
       lambda g, s, **k: F.relu_backward(g, s, **k), "y", True),
    Op("relu_from_x", lambda x, **k: F.relu(x, **k),
       lambda g, s, **k: F.relu_backward(g, s, **k), "x", True),
    Op("leaky_relu", lambda x, **k: F.leaky_relu(x, 0.1, **k),
       lambda g, s, **k: F.leaky_relu_backward(g, s, 0.1, **k), "x", True),
    Op("leaky_relu_default", lambda x, **k: F.leaky_relu(x, **k),
       lambda g, s, **k: F.leaky_relu_backward(g, s, **k), "x", True),
    Op("leaky_relu_slope0", lambda x, **k: F.leaky_relu(x, 0.0, **k),
       lambda g, s, **k: F.leaky_relu_backward(g, s, 0.0, **k), "x", True),
    Op("rrelu_eval", lambda x, **k: F.rrelu(x, 0.1, 0.3, **k),
       lambda g, s, **k: F.rrelu_backward(g, s, 0.1, 0.3, **k), "x", True),
    Op("rrelu_train", lambda x, **k: F.rrelu(x, training=True, seed=1234, **k),
       lambda g, s, **k: F.rrelu_backward(g, s, training=True, seed=1234, **k), "x", True),
    Op("rrelu_div_train",
       lambda x, **k: F.rrelu(x, 3.0, 8.0, training=True, seed=1234, divide=True, **k),
       lambda g, s, **k: F.rrelu_backward(g, s, 3.0, 8.0, training=True, seed=1234,
                                          divide=True, **k), "x", True),
    Op("elu", lambda x, **k: F.elu(x, **k),
       lambda g, s, **k: F.elu_backward(g, s, **k), "x", False,
       lambda x: oracle_elu(x, 1.0), lambda g, s: oracle_elu_backward(g, s, 1.0)),
    Op("elu_alpha0.7", lambda x, **k: F.elu(x, 0.7, **k),
       lambda g, s, **k: F.elu_backward(g, s, 0.7, **k), "x", False,
       lambda x: oracle_elu(x, 0.7), lambda g, s: oracle_elu_backward(g, s, 0.7)),
    Op("elu_from_output", lambda x, **k: F.elu(x, 0.7, **k),
       lambda g, s, **k: F.elu_backward(g, s, 0.7, from_output=True, **k), "y", False,
       lambda x: oracle_elu(x, 0.7), lambda g, y: oracle_elu_backward_y(g, y, 0.7)),
]
#: the ops above, written out by hand; every other public elementwise entry
#: of the registry joins the matrix from it (registry_ops)
CLASSIC = {"sigmoid", "relu", "leaky_relu", "rrelu", "elu"}


def registry_ops():
    """An Op per public elementwise registry entry outside CLASSIC, and one
    per extra parameter set its oracle lists (tests/oracles.py): the
    registry's defaults (or the oracle's values for required parameters),
    its accuracy bounds and saved array."""
    from fastact._registry import REGISTRY, REQUIRED

    from oracles import ORACLES
    ops = []
    for spec in REGISTRY.values():
        if spec.kind != "elementwise" or not spec.public or spec.api_name in CLASSIC:
            continue
        orc = ORACLES[spec.api_name]
        fwd_fn = getattr(F, spec.api_name)
        bwd_fn = getattr(F, spec.api_name + "_backward")
        base = {p.name: p.default for p in spec.api if p.default is not REQUIRED}
        # the parameters the backward does not take (Spec.backward_api)
        dropped = {p.name for p in spec.api} - {p.name for p in spec.api_of("backward")}
        for suffix, kw in [("", {})] + list(orc.variants.items()):
            kw = {**base, **orc.required, **kw}
            bkw = {k: v for k, v in kw.items() if k not in dropped}
            ops.append(Op(
                spec.api_name + (f"_{suffix}" if suffix else ""),
                lambda x, f=fwd_fn, kw=kw, **k: f(x, **kw, **k),
                lambda g, s, f=bwd_fn, kw=bkw, **k: f(g, s, **kw, **k),
                spec.saves, False,
                lambda x, o=orc.forward, kw=kw: o(x, **kw),
                lambda g, s, o=orc.backward, kw=bkw: o(g, s, **kw),
                bounds=spec.accuracy,
                terms=(lambda s, t=orc.terms, kw=bkw: t(s, **kw)) if orc.terms else None))
            ops[-1].kinks = tuple(orc.kinks(**kw))
            ops[-1].spec, ops[-1].kw = spec, kw
            if spec.from_output is not None and not suffix:
                # the backward from y (from_output=True), the forward alike
                own = spec.from_output.build is not None
                oy = orc.backward_y if own else orc.backward
                ops.append(Op(
                    spec.api_name + "_from_output", ops[-1].fwd,
                    lambda g, s, f=bwd_fn, kw=bkw, **k: f(g, s, from_output=True, **kw, **k),
                    "y", False, ops[-1].oracle_fwd,
                    lambda g, y, o=oy, kw=bkw: o(g, y, **kw), bounds=spec.accuracy))
                ops[-1].kinks, ops[-1].spec, ops[-1].kw = tuple(orc.kinks(**kw)), spec, kw
    return ops


REGISTRY_OPS = registry_ops()
ELEMENTWISE_OPS += REGISTRY_OPS


def sampled_op_dtypes(stride=1):
    """(op, dtype) pairs for the tests that compile an op's parallel and
    blocked kernels (a second or more each): the classic ops in both
    dtypes; the catalogue's in one each, float32 and float64 alternating
    (the loop skeletons are the same for every op, and every op's serial
    kernels run in both dtypes everywhere else); with ``stride``, every
    stride-th of the catalogue's (the dtypes still alternating).  Keeps CI's
    compile time in bounds as the catalogue grows."""
    pairs = [pytest.param(op, np.dtype(dt), id=f"{op.id}-{np.dtype(dt).name}")
             for op in ELEMENTWISE_OPS[:len(ELEMENTWISE_OPS) - len(REGISTRY_OPS)] for dt in DTYPES]
    pairs += [pytest.param(op, np.dtype(DTYPES[k % 2]), id=f"{op.id}-{np.dtype(DTYPES[k % 2]).name}")
              for k, op in enumerate(REGISTRY_OPS[::stride])]
    return pairs
OPS_BY_ID = {op.id: op for op in ELEMENTWISE_OPS}


def _prelu_w(x):
    return np.array([0.25], dtype=np.asarray(x).dtype)


#: Every public function with array arguments only (parameters fixed), by name:
#: (callable, number of array arguments).  Backward functions take (grad, saved).
ALL_CALLS = {
    "sigmoid": (lambda x, **k: F.sigmoid(x, **k), 1),
    "sigmoid_backward": (lambda g, y, **k: F.sigmoid_backward(g, y, **k), 2),
    "relu": (lambda x, **k: F.relu(x, **k), 1),
    "relu_backward": (lambda g, y, **k: F.relu_backward(g, y, **k), 2),
    "leaky_relu": (lambda x, **k: F.leaky_relu(x, 0.1, **k), 1),
    "leaky_relu_backward": (lambda g, x, **k: F.leaky_relu_backward(g, x, 0.1, **k), 2),
    "rrelu": (lambda x, **k: F.rrelu(x, training=True, seed=3, **k), 1),
    "rrelu_backward": (lambda g, x, **k: F.rrelu_backward(g, x, training=True, seed=3, **k), 2),
    "elu": (lambda x, **k: F.elu(x, 0.7, **k), 1),
    "elu_backward": (lambda g, x, **k: F.elu_backward(g, x, 0.7, **k), 2),
    "prelu": (lambda x, **k: F.prelu(x, _prelu_w(x), **k), 1),
    "prelu_backward": (lambda g, x, **k: F.prelu_backward(g, x, _prelu_w(x), **k), 2),
    "softmax": (lambda x, **k: F.softmax(x, **k), 1),
    "softmax_backward": (lambda g, y, **k: F.softmax_backward(g, y, **k), 2),
}
for _op in REGISTRY_OPS:
    if getattr(F, _op.id, None) is not None:      # each entry's own Op, not its variants
        ALL_CALLS[_op.id] = (_op.fwd, 1)
        ALL_CALLS[_op.id + "_backward"] = (_op.bwd, 2)
SINGLE_OUTPUT_CALLS = {k: v for k, v in ALL_CALLS.items() if k != "prelu_backward"}


# --- child processes started early: tests/early.py's hooks --------------------------------

pytest_configure = early.pytest_configure
pytest_collection_finish = early.pytest_collection_finish
pytest_runtest_logstart = early.pytest_runtest_logstart
pytest_sessionfinish = early.pytest_sessionfinish
