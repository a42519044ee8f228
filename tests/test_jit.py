"""fastact inside users' compiled code: the public functions inside
``@numba.njit`` (fastact._overloads) and the scalar formulas of fastact.jit
in ``@njit`` loops and ``@cuda.jit`` kernels (the simulator in a child
process), against the NumPy reference backend."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import fastact
from conftest import assert_bitwise_equal, mixed_values
from fastact._registry import REGISTRY
from test_kernel_structure import fastact_calls, vector_exp, vectorized

fj = pytest.importorskip("fastact.jit")
DTYPES = [np.float32, np.float64]
dtypes = pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])


def _close(got, want):
    tol = 1e-5 if np.asarray(want).dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


# --- the public functions inside @njit -------------------------------------------------

ELEMENTWISE_PUBLIC = [s.api_name for s in REGISTRY.values()
                      if s.kind == "elementwise" and s.public]


def _example_kwargs(name, pass_):
    spec = next(s for s in REGISTRY.values() if s.public and s.api_name == name)
    kw = spec.example_kwargs(pass_)
    if name == "rrelu":
        kw.update(training=True, seed=7)
    return kw


def _compiled(name, pass_, kw, out):
    """@njit f(arrays..., [out]) calling fastact.<name>[_backward] with ``kw``
    as constants (the source names each keyword: numba sees literals)."""
    fname = name + ("_backward" if pass_ == "backward" else "")
    args = "x" if pass_ == "forward" else "g, s"
    kws = "".join(f", {k}={v!r}" for k, v in kw.items())
    src = (f"def f({args}{', o' if out else ''}):\n"
           f"    return fastact.{fname}({args}{kws}{', out=o' if out else ''})\n")
    ns = {"fastact": fastact}
    exec(src, ns)
    return numba.njit(ns["f"])


def _alternating(names, passes):
    """(name, pass, dtype) with the dtypes alternating (each compile costs
    about a second: the loop is the same for every op, the formulas are
    compiled in both dtypes by the formula tests)."""
    cases = [(n, p) for n in names for p in passes]
    return [pytest.param(n, p, np.dtype(DTYPES[k % 2]), id=f"{n}-{p}-{np.dtype(DTYPES[k % 2])}")
            for k, (n, p) in enumerate(cases)]


#: the ops whose njit calls are also checked with out= and transposed input
_LAYOUT_CHECKED = ("relu", "elu", "sigmoid", "rrelu", "gelu")


#: the ops whose public functions are called inside @njit here: one of each
#: kind of parameter handling (none, one float, several, a key and flags, a
#: mode, an own output-based backward); the overloads are generated alike
#: for all, and fastact.jit's formula tests cover every op (each case
#: costs CI a compile of a second or more)
NJIT_OPS = ["sigmoid", "relu", "leaky_relu", "rrelu", "elu", "hardtanh", "threshold",
            "silu", "celu", "softplus", "gelu", "squareplus"]


@pytest.mark.parametrize("name, pass_, dtype",
                         _alternating(NJIT_OPS, ["forward", "backward"]))
def test_elementwise_in_njit_matches_the_library(name, pass_, dtype):
    kw = _example_kwargs(name, pass_)
    fname = name + ("_backward" if pass_ == "backward" else "")
    x = mixed_values(dtype, 60).reshape(3, 4, 5)
    arrays = [x] if pass_ == "forward" else [np.linspace(-2, 2, 60).astype(dtype).reshape(3, 4, 5), x]
    pub = getattr(fastact, fname)
    want = pub(*arrays, **kw, backend="numba")
    with np.errstate(all="ignore"):
        ref = pub(*arrays, **kw, backend="numpy")
    got = _compiled(name, pass_, kw, False)(*arrays)
    assert got.dtype == dtype and got.shape == x.shape
    assert_bitwise_equal(got, want)            # the Numba backend's own kernel
    # the reference where nothing is near overflow (the accuracy tests bound the rest)
    fair = np.isfinite(ref) & np.isfinite(got) & (np.abs(ref) < 1e30)
    _close(got[fair], ref[fair])
    if name not in _LAYOUT_CHECKED:
        return
    # out=, and strided (transposed) input: the runner's layout handling is
    # the same for every op (two more compiles a case: a few ops suffice)
    out = np.empty_like(want)
    assert _compiled(name, pass_, kw, True)(*arrays, out) is not None
    assert_bitwise_equal(out, want)
    tr = [a.transpose(2, 0, 1) for a in arrays]
    assert_bitwise_equal(_compiled(name, pass_, kw, False)(*tr), pub(*tr, **kw, backend="numba"))


@pytest.mark.parametrize("name", ["relu", "elu", "sigmoid"])
def test_njit_in_place_and_integers(name):
    f = getattr(fastact, name)
    run = numba.njit(lambda x, o: f(x, out=o))
    x = np.linspace(-3, 3, 64)
    want = f(x.copy(), backend="numba")
    run(x, x)                                  # in place
    assert_bitwise_equal(x, want)
    ints = np.arange(-5, 5)
    got = numba.njit(lambda a: f(a))(ints)
    assert got.dtype == np.float64
    assert_bitwise_equal(got, f(ints.astype(np.float64), backend="numba"))
    # partial overlap goes through a temporary
    y = np.linspace(-3, 3, 65)
    want = f(y[1:].copy(), backend="numba")
    run(y[1:], y[:-1])
    assert_bitwise_equal(y[:-1], want)


def test_njit_parameters_are_validated_at_run_time():
    run = numba.njit(lambda x, lo, hi: fastact.hardtanh(x, lo, hi))
    x = np.linspace(-3, 3, 7)
    assert_bitwise_equal(run(x, -0.5, 0.5), fastact.hardtanh(x, -0.5, 0.5, backend="numpy"))
    with pytest.raises(ValueError, match=r"fastact.hardtanh: min_val \(1.0\) must not exceed "
                                         r"max_val \(0.0\)"):
        run(x, 1.0, 0.0)
    seeded = numba.njit(lambda x, seed: fastact.rrelu(x, training=True, seed=seed))
    assert_bitwise_equal(seeded(x, 5), fastact.rrelu(x, training=True, seed=5, backend="numba"))


def test_njit_errors_are_clear():
    x = np.ones(4)
    with pytest.raises(numba.core.errors.TypingError, match="must be a constant inside numba"):
        numba.njit(lambda x, t: fastact.rrelu(x, training=t, seed=1))(x, True)
    with pytest.raises(numba.core.errors.TypingError, match="needs an integer seed"):
        numba.njit(lambda x: fastact.rrelu(x, training=True))(x)
    with pytest.raises(numba.core.errors.TypingError, match="out must be a writeable float64"):
        numba.njit(lambda x, o: fastact.relu(x, out=o))(x, np.ones(4, np.float32))
    with pytest.raises(numba.core.errors.TypingError, match="backend= is not supported"):
        numba.njit(lambda x: fastact.relu(x, backend="c"))(x)
    with pytest.raises(numba.core.errors.TypingError, match="supported dtypes"):
        numba.njit(lambda x: fastact.relu(x))(np.ones(4, np.complex128))
    with pytest.raises(ValueError, match="out has another shape"):
        numba.njit(lambda x, o: fastact.relu(x, out=o))(x, np.ones(5))


ROWWISE_GATED = ["softmax", "log_softmax", "softmin", "glu", "reglu", "geglu", "swiglu"]


@pytest.mark.parametrize("name, pass_, dtype", _alternating(ROWWISE_GATED, ["both"]))
def test_rowwise_and_gated_in_njit(name, pass_, dtype):
    """Native (the Numba backend's serial kernels): that backend's bits on
    every axis of a 3-D array (the row kernels on the last, the inner-axis
    or gated kernels on the others), an axis known only at run time."""
    f, fb = getattr(fastact, name), getattr(fastact, name + "_backward")
    rowwise = name in ("softmax", "log_softmax", "softmin")
    x = mixed_values(dtype, 4 * 6 * 8).reshape(4, 6, 8)
    fwd = numba.njit(lambda x, axis: f(x, axis=axis))
    bwd = numba.njit(lambda g, s, axis: fb(g, s, axis=axis))
    for axis in (0, 1, 2, -1):
        with np.errstate(all="ignore"):
            y = f(x, axis=axis, backend="numba")
            assert_bitwise_equal(fwd(x, axis), y)
            ref = f(x, axis=axis, backend="numpy")
        fair = np.isfinite(ref)
        _close(y[fair], ref[fair])
        g = np.cos(np.arange(y.size)).astype(dtype).reshape(y.shape)
        saved = y if rowwise else x
        with np.errstate(all="ignore"):
            assert_bitwise_equal(bwd(g, saved, axis), fb(g, saved, axis=axis, backend="numba"))


def _takes_the_gil(fn):
    """Whether a compiled body (not the Python wrapper numba adds) takes the
    GIL: object mode does (numba_gil_ensure)."""
    bodies, cur = set(), None
    for line in "".join(fn.inspect_llvm().values()).splitlines():
        if line.startswith("define"):
            cur = line
        elif "call" in line and "@numba_gil_ensure" in line and "@cfunc." not in cur:
            bodies.add(cur)
    return bool(bodies)


def test_rowwise_gated_prelu_in_njit_are_native_and_checked():
    x = np.linspace(-3, 3, 48).reshape(6, 8)
    w = np.linspace(0.1, 0.6, 6)
    sm = numba.njit(lambda x, o: fastact.softmax(x, axis=0, out=o))
    gl = numba.njit(lambda x: fastact.geglu(x, approximate="tanh"))
    pb = numba.njit(lambda g, x, w, axis: fastact.prelu_backward(g, x, w, axis=axis))
    # out=, in place, transposed input, integers
    want = fastact.softmax(x, axis=0, backend="numba")
    out = np.empty_like(x)
    sm(x, out)
    assert_bitwise_equal(out, want)
    z = x.copy()
    sm(z, z)
    assert_bitwise_equal(z, want)
    xt = np.ascontiguousarray(x.T).T
    assert_bitwise_equal(sm(xt, np.empty_like(x)), want)
    ints = np.arange(48).reshape(6, 8) % 7 - 3
    assert_bitwise_equal(numba.njit(lambda a: fastact.softmax(a))(ints),
                         fastact.softmax(ints.astype(np.float64), backend="numba"))
    assert_bitwise_equal(gl(x), fastact.geglu(x, approximate="tanh", backend="numba"))
    gx, gw = pb(np.cos(x), x, w, 0)
    wx, ww = fastact.prelu_backward(np.cos(x), x, w, axis=0, backend="numba")
    assert_bitwise_equal(gx, wx)
    assert_bitwise_equal(gw, ww)
    for fn in (sm, gl, pb):
        assert not _takes_the_gil(fn)
    # the public function's checks: at run time ...
    with pytest.raises(ValueError, match="axis is out of bounds"):
        numba.njit(lambda x, a: fastact.softmax(x, axis=a))(x, 2)
    with pytest.raises(ValueError, match="must be even"):
        numba.njit(lambda x: fastact.glu(x, axis=-1))(x[:, :7])
    with pytest.raises(ValueError, match="grad and y differ in shape"):
        numba.njit(lambda g, y: fastact.softmax_backward(g, y))(x[:3], x)
    with pytest.raises(ValueError, match="weight must have size 1 or"):
        pb(x, x, w, 1)
    # ... and when compiled
    errors = numba.core.errors.TypingError
    with pytest.raises(errors, match="approximate must be a constant"):
        numba.njit(lambda x, a: fastact.geglu(x, approximate=a))(x, "tanh")
    with pytest.raises(errors, match="weight has dtype float32 but x has dtype float64"):
        numba.njit(lambda x, w: fastact.prelu(x, w))(x, w.astype(np.float32))
    with pytest.raises(errors, match="out= is not supported"):
        numba.njit(lambda g, x, w, o: fastact.prelu_backward(g, x, w, out=o))(x, x, w, (x, w))


@dtypes
def test_prelu_in_njit(dtype):
    """Both of the kernels' shapes (long channel rows; short rows, e.g. (N,
    C)), a shared weight and a number; the weight gradient is the Numba
    backend's, bit for bit (one helper adds its partial sums for both).
    float64 on 3-D arrays only (each number of dimensions is a compile)."""
    fwd = numba.njit(lambda x, w, axis: fastact.prelu(x, w, axis=axis))
    bwd = numba.njit(lambda g, x, w, axis: fastact.prelu_backward(g, x, w, axis=axis))
    rng = np.random.default_rng(3)
    cases = [((3, 4, 40), 1, 4), ((5, 2, 3), 0, 5), ((4, 3, 2), -1, 1)]
    if dtype == np.float32:
        cases += [((50, 3), 1, 3), ((7, 9), -1, 1), ((30,), 1, 1)]
    for shape, axis, wsize in cases:
        x = rng.standard_normal(shape).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        w = np.linspace(0.1, 0.9, wsize).astype(dtype)
        assert_bitwise_equal(fwd(x, w, axis), fastact.prelu(x, w, axis=axis, backend="numba"))
        gx, gw = bwd(g, x, w, axis)
        wx, ww = fastact.prelu_backward(g, x, w, axis=axis, backend="numba")
        assert_bitwise_equal(gx, wx)
        assert_bitwise_equal(gw, ww)
        _close(gw, fastact.prelu_backward(g, x, w, axis=axis, backend="numpy")[1])
    x = np.linspace(-2, 2, 12, dtype=dtype).reshape(2, 3, 2)
    gx, gw = numba.njit(lambda g, x: fastact.prelu_backward(g, x, 0.25))(np.ones_like(x), x)
    wx, ww = fastact.prelu_backward(np.ones_like(x), x, 0.25, backend="numba")
    assert gw.shape == ww.shape == ()
    assert_bitwise_equal(gx, wx)
    assert_bitwise_equal(gw, ww)


def test_import_fastact_does_not_import_numba():
    code = "import sys, fastact; print('numba' in sys.modules, 'torch' in sys.modules, " \
           "'xarray' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ))
    assert res.stdout.split() == ["False", "False", "False"], res.stderr


# --- fastact.jit: the scalar formulas ---------------------------------------------------

FORMULAS = sorted(n for n in fj.__all__ if n.endswith(("_fwd", "_bwd", "_bwd_y")))


def _entry_pass(fname):
    for suffix, pass_ in (("_bwd_y", "backward_y"), ("_bwd", "backward"), ("_fwd", "forward")):
        if fname.endswith(suffix):
            return fname[: -len(suffix)], pass_


#: the internal entries: the public function and keywords that reach them
_REACHED_BY = {"rrelu_train": ("rrelu", dict(training=True, seed=3)),
               "rrelu_div_train": ("rrelu", dict(training=True, seed=3, divide=True,
                                                 lower=3.0, upper=8.0)),
               "gelu_tanh": ("gelu", dict(approximate="tanh")),
               "geglu_tanh": ("geglu", dict(approximate="tanh"))}


def _param_values(entry):
    """The kernels' parameters for ``entry`` at the public defaults."""
    spec = REGISTRY[entry]
    op, kw = _REACHED_BY.get(entry, (spec.api_name, None))
    if kw is None:
        kw = {k: v for k, v in spec.example_kwargs().items() if k != "axis"}
    got_entry, p = fj.params(op, **kw)
    assert got_entry == entry
    return p


@pytest.mark.parametrize("fname, dtype", [
    pytest.param(f, np.dtype(DTYPES[(k + (k // 2)) % 2]), id=f"{f}-{np.dtype(DTYPES[(k + k // 2) % 2])}")
    for k, f in enumerate(FORMULAS)])
def test_formulas_in_njit_loops_match_the_kernels(fname, dtype):
    entry, pass_ = _entry_pass(fname)
    spec = REGISTRY[entry]
    f = getattr(fj, fname)
    p = _param_values(entry)
    dtype = dtype.type
    x = mixed_values(dtype, 64)
    g = np.linspace(-2, 2, 64).astype(dtype)
    nargs = 1 if pass_ == "forward" else 2
    if spec.kind == "gated":
        nargs += 1                       # (a, b), (g, a, b)
    arrays = [x, x[::-1].copy(), g][:nargs] if pass_ == "forward" else [g, x, x[::-1].copy()][:nargs]
    idx = spec.indexed
    # a loop calling the formula per element, its arguments built by exec
    data = ", ".join(f"a{k}[i]" for k in range(nargs))
    extra = (", i" if idx else "") + "".join(f", p[{k}]" for k in range(len(p)))
    outs = "o[i], o2[i] = " if spec.kind == "gated" and pass_ == "backward" else "o[i] = "
    ns = {"f": f}
    exec(f"def loop({', '.join(f'a{k}' for k in range(nargs))}, p, o, o2):\n"
         f"    for i in range(o.shape[0]):\n        {outs}f({data}{extra})\n", ns)
    o, o2 = np.empty_like(x), np.empty_like(x)
    cast = tuple(v if isinstance(v, np.uint64) else dtype(v) for v in p)
    numba.njit(ns["loop"])(*arrays, cast, o, o2)
    # the same formulas as the Numba backend's kernels: bit for bit
    from fastact._backends import numba_cpu
    if spec.kind == "gated":
        M = 64
        xg = np.concatenate([arrays[-2], arrays[-1]])[None]       # (1, 2M): a, then b
        if pass_ == "forward":
            assert_bitwise_equal(o, getattr(fastact, spec.api_name if spec.public else "geglu")(
                xg, backend="numba", **({} if spec.public else {"approximate": "tanh"}))[0])
        else:
            d = np.empty((1, 2, M), dtype)
            numba_cpu._gated_kernels(entry, dtype, False)[1](
                g.copy(), xg.reshape(-1).copy(), d.reshape(-1), M, M)
            assert_bitwise_equal(o, d[0, 0])
            assert_bitwise_equal(o2, d[0, 1])
        return
    want = np.empty_like(x)
    numba_cpu._elementwise_kernel(entry, pass_, dtype, False)(*arrays, want, cast)
    assert_bitwise_equal(o, want)


@dtypes
@pytest.mark.parametrize("fname", FORMULAS)
def test_formulas_from_python_match_the_reference(fname, dtype):
    """Called from Python (the CUDA simulator's way): the CUDA backend's
    formula, within the op's accuracy of the reference backend."""
    entry, pass_ = _entry_pass(fname)
    spec = REGISTRY[entry]
    if spec.kind == "gated" or spec.indexed:
        pytest.skip("checked in njit and in the simulator")
    p = _param_values(entry)
    x = np.linspace(-4, 4, 9).astype(dtype)
    g = np.full_like(x, 0.75)
    f = getattr(fj, fname)
    with np.errstate(all="ignore"):
        got = np.array([f(*(([xi] if pass_ == "forward" else [gi, xi]) + list(p)))
                        for gi, xi in zip(g, x)])
        ref = np.empty_like(x)
        from fastact._backends.numpy_ref import NumpyBackend
        NumpyBackend().elementwise(entry, pass_, [x] if pass_ == "forward" else [g, x], ref,
                                   tuple(v if isinstance(v, np.uint64) else dtype(v) for v in p))
    assert got.dtype == dtype
    _close(got, ref)


@dtypes
def test_fused_bias_gelu_vectorizes(dtype):
    @numba.njit
    def bias_gelu(x, b, out):
        for i in range(x.shape[0]):
            out[i] = fj.gelu_fwd(x[i] + b[i])

    x = mixed_values(dtype, 1000)
    x = np.where(np.isfinite(x), x, 0).astype(dtype)
    b = np.full_like(x, 0.25)
    out = np.empty_like(x)
    bias_gelu(x, b, out)
    assert_bitwise_equal(out, fastact.gelu(x + b, backend="numba"))
    ir = bias_gelu.inspect_llvm(bias_gelu.signatures[0])
    assert vectorized(ir, dtype), "the fused loop stayed scalar"
    assert not fastact_calls(ir), fastact_calls(ir)      # every formula inlined


def test_fused_sigmoid_exponential_is_vector_code():
    @numba.njit
    def scaled_sigmoid(x, out):
        for i in range(x.shape[0]):
            out[i] = 2 * fj.sigmoid_fwd(x[i])

    x = np.linspace(-5, 5, 256).astype(np.float32)
    out = np.empty_like(x)
    scaled_sigmoid(x, out)
    ir = scaled_sigmoid.inspect_llvm(scaled_sigmoid.signatures[0])
    assert vector_exp(ir, np.float32)


def test_params_validates_as_the_public_function():
    assert fj.params("elu", alpha=0.5) == ("elu", (0.5,))
    assert fj.params("rrelu")[0] == "leaky_relu"
    with pytest.raises(ValueError, match="fastact.hardtanh: min_val"):
        fj.params("hardtanh", min_val=2.0, max_val=1.0)
    with pytest.raises(TypeError, match="takes no parameter 'beta'"):
        fj.params("relu", beta=1.0)
    with pytest.raises(ValueError, match="not a public elementwise or gated"):
        fj.params("softmax")


_SIM = r"""
import numpy as np
from numba import cuda
import fastact, fastact.jit as fj

@cuda.jit
def bias_gelu(x, b, out):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        out[i] = fj.gelu_fwd(x[i] + b[i])

@cuda.jit
def elu_grad(g, x, out, alpha):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        out[i] = fj.elu_bwd(g[i], x[i], alpha)

for dt in (np.float32, np.float64):
    x = np.linspace(-4, 4, 64).astype(dt)
    b = np.full_like(x, 0.5)
    out = cuda.device_array_like(x)
    bias_gelu[2, 32](cuda.to_device(x), cuda.to_device(b), out)
    want = fastact.gelu(cuda.to_device(x + b), backend="cuda").copy_to_host()
    assert np.array_equal(out.copy_to_host(), want), dt
    ref = fastact.gelu(x + b, backend="numpy")
    assert np.allclose(out.copy_to_host(), ref, rtol=1e-5 if dt == np.float32 else 1e-12)
    out2 = cuda.device_array_like(x)
    elu_grad[2, 32](cuda.to_device(np.ones_like(x)), cuda.to_device(x), out2, dt(0.7))
    assert np.allclose(out2.copy_to_host(), fastact.elu_backward(np.ones_like(x), x, 0.7,
                       backend="numpy"), rtol=1e-5 if dt == np.float32 else 1e-12)
print("ok")
"""


def test_formulas_in_cuda_kernels_under_the_simulator():
    res = subprocess.run([sys.executable, "-c", _SIM], capture_output=True, text=True,
                         env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1"), timeout=600)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]
