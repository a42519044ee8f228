"""The gated family (glu, reglu, geglu, swiglu): values against the
high-precision oracles of ``oracles_gated.py`` on every host backend, both
dtypes and every axis, special values, layouts, ``out=`` and in place,
finite differences, PyTorch parity, and the errors a user can meet."""
from __future__ import annotations

import numpy as np
import pytest

import fastact
from conftest import (DTYPES, assert_bitwise_equal, contiguous_copy, make_layout,
                      mixed_values, special_values)
from oracles_gated import GATED, VARIANTS, check

CASES = [pytest.param(op, kw, id=op + ("-" + "-".join(map(str, kw.values())) if kw else ""))
         for op in GATED for kw in VARIANTS[op]]


def _fns(op, kw):
    f, fb = getattr(fastact, op), getattr(fastact, op + "_backward")
    return (lambda x, **k: f(x, **kw, **k)), (lambda g, x, **k: fb(g, x, **kw, **k))


def _grad(shape, dtype, seed=3):
    # |g| <= 1: g * v cannot overflow where v is finite (the backward's
    # first product; beyond it the result is +-inf, as the docstrings say)
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)


def _half(shape, axis):
    s = list(shape)
    s[axis] //= 2
    return tuple(s)


def test_registry_lists_the_family():
    for op in GATED:
        assert op in fastact.ACTIVATIONS and op + "_backward" in fastact.__all__


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("op,kw", CASES)
def test_values_every_axis(host_backend, op, kw, axis, dtype):
    """Mixed values (0, -0, +-inf, NaN, huge, tiny, subnormal, normal draws)."""
    shape = (6, 8, 10)
    x = mixed_values(dtype, 480, seed=axis + 7).reshape(shape)
    g = _grad(_half(shape, axis), dtype)
    f, fb = _fns(op, kw)
    y, dx = f(x, axis=axis, backend=host_backend), fb(g, x, axis=axis, backend=host_backend)
    assert y.shape == _half(shape, axis) and y.dtype == dtype
    assert dx.shape == shape and dx.dtype == dtype
    check(op, x, g, y, dx, axis, host_backend, **kw)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("op,kw", CASES)
def test_big_arrays_parallel_kernels(fast_backend, op, kw, dtype):
    """Arrays past the parallel and streaming thresholds, rows of odd lengths
    (a thread's block spans row ends), against the oracle and the serial
    kernels of small pieces."""
    # 61 rows of 1111: past config.PARALLEL_MIN (2**16) outputs
    x = (np.random.default_rng(5).standard_normal((61, 2 * 1111)) * 4).astype(dtype)
    g = _grad((61, 1111), dtype)
    f, fb = _fns(op, kw)
    y, dx = f(x, backend=fast_backend), fb(g, x, backend=fast_backend)
    check(op, x, g, y, dx, -1, fast_backend, **kw)
    for r in (0, 30, 60):         # one row alone takes the serial kernel
        assert_bitwise_equal(f(x[r:r + 1], backend=fast_backend), y[r:r + 1])
        assert_bitwise_equal(fb(g[r:r + 1], x[r:r + 1], backend=fast_backend), dx[r:r + 1])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("op,kw", CASES)
def test_special_pairs(host_backend, op, kw, dtype):
    """Every pair of special values as (a, b)."""
    sp = special_values(dtype)
    a, b = np.meshgrid(sp, sp, indexing="ij")
    x = np.concatenate([a.reshape(-1, 1), b.reshape(-1, 1)], axis=1)
    g = _grad((x.shape[0], 1), dtype)
    f, fb = _fns(op, kw)
    check(op, x, g, f(x, backend=host_backend), fb(g, x, backend=host_backend), -1,
          host_backend, **kw)


@pytest.mark.parametrize("layout", ["fortran", "slice", "negstride", "transposed", "nd"])
@pytest.mark.parametrize("op,kw", CASES)
def test_layouts_match_contiguous(host_backend, op, kw, layout):
    dtype = np.float32
    x = make_layout(layout, mixed_values(dtype, 400, seed=4), dtype, shape=(4, 6, 8))
    axis = 1 if x.shape[1] % 2 == 0 else -1
    if x.shape[axis] % 2:
        axis = next(k for k, n in enumerate(x.shape) if n % 2 == 0)
    g = _grad(_half(x.shape, axis), dtype)
    gs = g.T.copy().T                      # a non-C-contiguous gradient too
    f, fb = _fns(op, kw)
    xc = contiguous_copy(x)
    assert_bitwise_equal(f(x, axis=axis, backend=host_backend),
                         f(xc, axis=axis, backend=host_backend))
    assert_bitwise_equal(fb(gs, x, axis=axis, backend=host_backend),
                         fb(g, xc, axis=axis, backend=host_backend))


@pytest.mark.parametrize("op,kw", CASES)
def test_out_and_in_place(host_backend, op, kw):
    dtype = np.float64
    x = mixed_values(dtype, 240, seed=6).reshape(12, 20)
    g = _grad((12, 10), dtype)
    f, fb = _fns(op, kw)
    want_y, want_d = f(x, backend=host_backend), fb(g, x, backend=host_backend)
    out = np.empty((12, 10), dtype)
    assert f(x, out=out, backend=host_backend) is out
    assert_bitwise_equal(out, want_y)
    strided = np.empty((12, 20), dtype)[:, ::2]          # a non-contiguous out
    f(x, out=strided, backend=host_backend)
    assert_bitwise_equal(strided, want_y)
    xi = x.copy()                                         # the gradient over x
    assert fb(g, xi, out=xi, backend=host_backend) is xi
    assert_bitwise_equal(xi, want_d)
    big = (np.random.default_rng(1).standard_normal((40, 2 * 1700))).astype(dtype)
    gb = _grad((40, 1700), dtype)
    want = fb(gb, big, backend=host_backend)
    fb(gb, big, out=big, backend=host_backend)            # in place, parallel kernels
    assert_bitwise_equal(big, want)
    xo = x.copy()                                         # out overlapping x partly
    f(xo, out=xo[:, 5:15], backend=host_backend)
    assert_bitwise_equal(xo[:, 5:15], want_y)


@pytest.mark.parametrize("op,kw", CASES)
def test_finite_differences(op, kw):
    """The backward is the forward's derivative: central differences in
    float64 on inputs away from the kinks."""
    rng = np.random.default_rng(9)
    x = rng.uniform(0.2, 2.5, (3, 8)) * rng.choice([-1, 1], (3, 8))
    g = rng.standard_normal((3, 4))
    f, fb = _fns(op, kw)
    dx = fb(g, x)
    h = 1e-6
    num = np.empty_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        num[i] = np.sum(g * (f(x + e) - f(x - e))) / (2 * h)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("op,kw", CASES)
def test_torch_parity(torch, op, kw):
    """Against PyTorch's glu, and act(a) * b with PyTorch's act for the
    others (PyTorch has no fused op), float64, finite inputs."""
    from fastact._registry import REGISTRY
    spec = REGISTRY[op]
    x = np.random.default_rng(2).standard_normal((16, 40)) * 3
    for axis in (0, 1):
        gg = np.random.default_rng(3).standard_normal(_half(x.shape, axis))
        params = [kw.get(p.name, p.default) for p in spec.api if p.name != "axis"] + [axis]
        tx = torch.tensor(x, requires_grad=True)
        ty = spec.torch.call(torch.nn.functional, tx, *params)
        ty.backward(torch.tensor(gg))
        y = getattr(fastact, op)(x, axis=axis, **kw)
        dx = getattr(fastact, op + "_backward")(gg, x, axis=axis, **kw)
        # PyTorch's gelu cancels below x = -1 (the gelu entry's deviations):
        # there only absolutely close
        atol = 1e-14 if op == "geglu" else 1e-300
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-13, atol=atol)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=max(atol, 1e-15))


def test_empty_and_shapes():
    for op in GATED:
        f, fb = getattr(fastact, op), getattr(fastact, op + "_backward")
        x = np.empty((0, 6), np.float32)
        assert f(x).shape == (0, 3) and fb(np.empty((0, 3), np.float32), x).shape == (0, 6)
        x = np.empty((3, 0))
        assert f(x).shape == (3, 0)
        one = np.array([1.0, 2.0])                      # 1-D: axis 0
        assert f(one).shape == (1,)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_small_contiguous_calls_take_the_fast_path(host_backend, dtype, monkeypatch):
    """C-contiguous NumPy arrays skip the general path's validation (glu on
    4 x 16 float32 elements: 7.8 us a call, 2.0 without): the bits of the
    general path (the same calls on F-order copies), along any axis, with
    out= and in place (the backward's out being x)."""
    from fastact import _api
    x = mixed_values(dtype, 6 * 8 * 10, seed=9).reshape(6, 8, 10)
    cases = []
    for axis in (0, 1, -1):
        g = _grad(_half(x.shape, axis), dtype, seed=axis + 5)
        cases += [(fastact.glu, (x,), {"axis": axis}),
                  (fastact.geglu, (x,), {"axis": axis, "approximate": "tanh"}),
                  (fastact.swiglu_backward, (g, x), {"axis": axis}),
                  (fastact.reglu_backward, (g, x), {"axis": axis})]
    want = [fn(*(np.asfortranarray(a) for a in args), backend=host_backend, **kw)
            for fn, args, kw in cases]

    def refused(*a, **k):
        raise AssertionError("the general path")
    monkeypatch.setattr(fastact._api, "_inputs", refused)
    for (fn, args, kw), w in zip(cases, want):
        got = fn(*args, backend=host_backend, **kw)
        assert_bitwise_equal(got, w)
        out = np.empty_like(got)
        assert fn(*args, out=out, backend=host_backend, **kw) is out
        assert_bitwise_equal(out, w)
        if len(args) == 2:                                  # the gradient over x, in place
            xi = args[1].copy()
            assert fn(args[0], xi, out=xi, backend=host_backend, **kw) is xi
            assert_bitwise_equal(xi, w)
    assert _api._inputs is refused


@pytest.mark.parametrize("op", list(GATED))
def test_errors(op):
    f, fb = getattr(fastact, op), getattr(fastact, op + "_backward")
    x = np.zeros((4, 6))
    with pytest.raises(ValueError, match="must be even"):
        f(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="must be even"):
        fb(np.zeros((4, 2)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="0-d"):
        f(np.float64(1.0))
    with pytest.raises(np.exceptions.AxisError):
        f(x, axis=2)
    with pytest.raises(TypeError, match="axis must be an integer"):
        f(x, axis=1.0)
    with pytest.raises(ValueError, match=r"grad has shape \(4, 6\), expected \(4, 3\)"):
        fb(np.zeros((4, 6)), x)
    with pytest.raises(ValueError, match=r"out has shape"):
        f(x, out=np.zeros((4, 6)))
    with pytest.raises(ValueError, match=r"out has shape"):
        fb(np.zeros((4, 3)), x, out=np.zeros((4, 3)))
    with pytest.raises(TypeError, match="dtype"):
        fb(np.zeros((4, 3), np.float32), x)
    with pytest.raises(TypeError, match="dtype complex64"):
        f(np.zeros((4, 6), np.complex64))
    with pytest.raises(TypeError, match="unexpected keyword"):
        f(x, dim=1)


def test_geglu_approximate_checked():
    with pytest.raises(ValueError, match='approximate must be "none" or "tanh"'):
        fastact.geglu(np.zeros((2, 2)), approximate="erf")
    with pytest.raises(ValueError, match='approximate must be "none" or "tanh"'):
        fastact.geglu_backward(np.zeros((2, 1)), np.zeros((2, 2)), approximate=None)


@pytest.mark.parametrize("backend", ["numba", "c"])
@pytest.mark.parametrize("op,kw", CASES)
def test_hypothesis_shapes_axes_values(backend, op, kw):
    """Random shapes (1-D to 4-D, the split axis even), axes, strided views
    and values (every float, specials included) against the oracle."""
    from hypothesis import HealthCheck, given, settings, strategies as st
    from hypothesis.extra import numpy as hnp
    from conftest import require_backend
    require_backend(backend)

    @st.composite
    def cases(draw):
        dt = np.dtype(draw(st.sampled_from(DTYPES)))
        shape = list(draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)))
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        shape[axis] = 2 * draw(st.integers(0, 4))
        x = draw(hnp.arrays(dt, tuple(shape), elements=st.floats(
            width=32 if dt == np.float32 else 64, allow_subnormal=True)))
        if draw(st.booleans()) and x.ndim > 1:
            x = np.asfortranarray(x)
        g = draw(hnp.arrays(dt, _half(x.shape, axis), elements=st.floats(
            -1, 1, width=32 if dt == np.float32 else 64)))
        return x, g, axis

    @settings(max_examples=15, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(cases())
    def run(case):
        x, g, axis = case
        f, fb = _fns(op, kw)
        y, dx = f(x, axis=axis, backend=backend), fb(g, x, axis=axis, backend=backend)
        assert y.shape == g.shape and dx.shape == x.shape
        check(op, x, g, y, dx, axis, backend, **kw)

    run()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("half", [1111, 2048])
@pytest.mark.parametrize("out_kind", ["fresh", "offset"])
@pytest.mark.parametrize("op", ["glu", "reglu"])
def test_streamed_forward_matches_the_regular_path(monkeypatch, op, half, out_kind, dtype):
    """Numba's forward for big outputs (streaming stores from each run's
    first 64-byte boundary; runs of rows whose length is not a whole number
    of lines, an output off the boundary) gives the regular kernel's bits."""
    from conftest import require_backend
    from fastact import config
    require_backend("numba")
    x = (np.random.default_rng(8).standard_normal((77, 2 * half)) * 3).astype(dtype)
    monkeypatch.setattr(config, "STREAM_MIN_BYTES", -1)
    want = getattr(fastact, op)(x, backend="numba")
    monkeypatch.setattr(config, "STREAM_MIN_BYTES", 0)
    out = np.empty(77 * half + 1, dtype)[1:].reshape(77, half) if out_kind == "offset" else None
    got = getattr(fastact, op)(x, out=out, backend="numba")
    assert_bitwise_equal(got, want)
