"""The catalogue's ops against PyTorch (torch.nn.functional and its autograd),
forward and backward, on special values, the kinks and their neighbours, and
random data: within 1 ULP (most are bit for bit) except where the registry
entry's ``Torch.deviations`` says otherwise; the documented values at those
points are checked here too."""
import numpy as np
import pytest

import fastact
from conftest import DTYPES, special_values, ulp_errors
from fastact._registry import REGISTRY, REQUIRED

# op -> parameter sets (the public parameters by name; {} the defaults)
CLAMPS = {
    "hardtanh": [{}, dict(min_val=-2.0, max_val=3.5), dict(min_val=0.25, max_val=0.25),
                 dict(min_val=-np.inf, max_val=0.0)],
    "relu6": [{}],
    "hardsigmoid": [{}],
    "hardswish": [{}],
    "hardshrink": [{}, dict(lambd=2.0), dict(lambd=0.0), dict(lambd=-1.0)],
    "softshrink": [{}, dict(lambd=0.0), dict(lambd=1.5)],
    "threshold": [dict(threshold=0.1, value=20.0), dict(threshold=-1.0, value=-np.inf),
                  dict(threshold=0.0, value=-0.0)],
    "softsign": [{}],
}
CASES = [(op, kw) for op, kws in CLAMPS.items() for kw in kws]


def _inputs(dtype, kw):
    rng = np.random.default_rng(11)
    params = [v for v in kw.values() if np.isfinite(v)]
    kinks = np.array([-6, -3, -1.5, -1, -0.5, 0, 0.5, 1, 3, 6] + params + [-v for v in params],
                     dtype)
    near = np.concatenate([kinks, np.nextafter(kinks, dtype.type(np.inf)),
                           np.nextafter(kinks, dtype.type(-np.inf))])
    with np.errstate(over="ignore"):
        rand = np.concatenate([rng.standard_normal(3000) * 4, rng.standard_normal(300) * 1e-3,
                               np.exp(rng.uniform(-700, 700, 300)) * rng.choice([-1, 1], 300)]
                              ).astype(dtype)
    x = np.concatenate([special_values(dtype), near, rand])
    g = rng.standard_normal(x.size).astype(dtype)
    g[:3] = [1.0, -0.0, 2.5]
    return x, g


def _torch(torch, op, kw, x, g):
    spec = REGISTRY[op]
    t = torch.tensor(x, requires_grad=True)
    y = spec.torch.call(torch.nn.functional, t, *[kw.get(p.name, p.default) for p in spec.api])
    y.backward(torch.from_numpy(g))
    return y.detach().numpy(), t.grad.numpy()


def _ours(op, kw, x, g, backend):
    spec = REGISTRY[op]
    full = {p.name: kw.get(p.name, p.default) for p in spec.api}
    bkw = {p.name: full[p.name] for p in spec.api_of("backward")}
    return (getattr(fastact, op)(x, **full, backend=backend),
            getattr(fastact, op + "_backward")(g, x, **bkw, backend=backend))


def _backward_tolerance(op, dtype, x):
    """ULP of PyTorch's backward, where its formula is not ours (Torch.deviations)."""
    if op == "hardsigmoid" and dtype == np.float64:
        return 2.0 ** 29          # PyTorch: g * float(1/6) in float64 too
    if op == "softsign":
        # PyTorch's g/d - g (x/d)/d sgn(x) cancels: its error grows with d = 1 + |x|
        with np.errstate(over="ignore"):
            return 4 + 4 * (1 + np.abs(x.astype(np.float64)))
    return 1


@pytest.mark.parametrize("op,kw", CASES, ids=[f"{o}-{k}" for o, k in CASES])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_matches_torch(host_backend, torch, op, kw, dtype):
    dtype = np.dtype(dtype)
    x, g = _inputs(dtype, kw)
    ty, tg = _torch(torch, op, kw, x, g)
    y, gx = _ours(op, kw, x, g, host_backend)
    spec = REGISTRY[op]
    skip = spec.torch.skip
    params = [kw.get(p.name, p.example if p.default is REQUIRED else p.default) for p in spec.api]
    keep = ~skip(x.astype(np.float64), *params) if skip else np.ones(x.shape, bool)
    ef = ulp_errors(y[keep], ty[keep].astype(np.longdouble))
    assert ef.max() <= 1, (op, kw, x[keep][ef > 1][:5], y[keep][ef > 1][:5], ty[keep][ef > 1][:5])
    tol = np.broadcast_to(_backward_tolerance(op, dtype, x), x.shape)[keep]
    eb = ulp_errors(gx[keep], tg[keep].astype(np.longdouble))
    bad = eb > tol
    assert not bad.any(), (op, kw, x[keep][bad][:5], gx[keep][bad][:5], tg[keep][bad][:5])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_documented_deviations(host_backend, dtype):
    """The values fastact gives where PyTorch's differ (Torch.deviations)."""
    f = fastact
    b = host_backend
    inf, nan = np.inf, np.nan
    big = np.finfo(dtype).max
    x = np.array([-inf, -3.0, 3.0, big / 2, big, inf, nan], dtype)
    y = f.hardswish(x, backend=b)
    assert np.array_equal(y[:2], [0.0, 0.0]) and np.signbit(y[:2]).all()
    assert np.array_equal(y[2:6], x[2:6]) and np.isnan(y[6])
    x = np.array([-inf, inf, nan, -big, big], dtype)
    y = f.softsign(x, backend=b)
    assert np.array_equal(y[:2], [-1.0, 1.0]) and np.isnan(y[2])
    assert np.array_equal(y[3:], [-1.0, 1.0])
    gx = f.softsign_backward(np.full(5, 3.0, dtype), x, backend=b)
    assert np.array_equal(gx[[0, 1, 3, 4]], [0.0] * 4) and np.isnan(gx[2])
    # a NaN input passes g (PyTorch's scalar loop) in a long array too
    xn = np.full(67, nan, dtype)
    g = np.linspace(1, 2, 67).astype(dtype)
    for name, kw in (("hardtanh", {}), ("relu6", {}), ("hardshrink", {}), ("softshrink", {}),
                     ("hardswish", {}), ("threshold", dict(threshold=0.0))):
        assert np.array_equal(getattr(f, name + "_backward")(g, xn, **kw, backend=b), g), name
        fwd_kw = dict(kw, value=1.0) if name == "threshold" else kw
        assert np.isnan(getattr(f, name)(xn, **fwd_kw, backend=b)).all(), name
    assert np.array_equal(f.hardsigmoid_backward(g, xn, backend=b), np.zeros(67, dtype))
    # softshrink's band is +0.0, negative x included
    y = f.softshrink(np.array([-0.5, -0.25, -0.0, 0.0, 0.5], dtype), backend=b)
    assert np.array_equal(y, np.zeros(5)) and not np.signbit(y).any()


@pytest.mark.parametrize("call,match", [
    (lambda: fastact.hardtanh(np.ones(2), 1.0, -1.0), "min_val"),
    (lambda: fastact.hardtanh(np.ones(2), np.nan, 1.0), "min_val"),
    (lambda: fastact.hardtanh_backward(np.ones(2), np.ones(2), -1.0, np.nan), "max_val"),
    (lambda: fastact.hardshrink(np.ones(2), np.nan), "lambd"),
    (lambda: fastact.softshrink(np.ones(2), np.nan), "lambd"),
    (lambda: fastact.softshrink(np.ones(2), -0.5), "lambd must be >= 0"),
    (lambda: fastact.softshrink_backward(np.ones(2), np.ones(2), -0.5), "lambd must be >= 0"),
    (lambda: fastact.threshold(np.ones(2), np.nan, 0.0), "threshold"),
    (lambda: fastact.threshold_backward(np.ones(2), np.ones(2), np.nan), "threshold"),
])
def test_clamps_parameter_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_threshold_backward_takes_no_value():
    import inspect
    assert list(inspect.signature(fastact.threshold_backward).parameters)[:3] == [
        "grad", "x", "threshold"]
    with pytest.raises(TypeError):
        fastact.threshold_backward(np.ones(2), np.ones(2), 0.0, 1.0)
    with pytest.raises(TypeError):
        fastact.threshold(np.ones(2), 0.0)
