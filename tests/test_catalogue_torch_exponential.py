"""The exponential family against PyTorch: forward and autograd backward on
special values and random data, within a few ULP of PyTorch's result (with
the conditioning of PyTorch's own formulas where they cancel), skipping the
deviations the registry documents (Torch.skip)."""
import numpy as np
import pytest

import fastact
from fastact._registry import REGISTRY

SPECIAL = [np.nan, 0.0, -0.0, np.inf, -np.inf, -1.0, 1.0, -1e-3, 1e-3, 2.5, -2.5, -30.0, 30.0,
           1e-30, -1e-30, -1.2785, -1.1924, 0.5, -0.5, 9.0, -9.0]

# op id -> (public name, params, magnitude of the terms PyTorch's forward and
# backward formulas cancel: M_fwd(x), M_bwd(x, y))
CASES = {
    "silu": ("silu", {}, lambda x: 0 * x,
             lambda x, y: 1 / (1 + np.exp(-x)) * (1 + np.abs(x))),
    "tanh": ("tanh", {}, lambda x: 0 * x, lambda x, y: 1 + y * y),
    "selu": ("selu", {}, lambda x: 0 * x, lambda x, y: 0 * x),
    "celu": ("celu", {}, lambda x: 0 * x, lambda x, y: 0 * x),
    "celu_alpha0.5": ("celu", {"alpha": 0.5}, lambda x: 0 * x, lambda x, y: 0 * x),
    "celu_alpha2": ("celu", {"alpha": 2.0}, lambda x: 0 * x, lambda x, y: 0 * x),
    "mish": ("mish", {}, lambda x: 0 * x, lambda x, y: 1 + 2 * np.abs(x)),
    "tanhshrink": ("tanhshrink", {}, lambda x: np.abs(x), lambda x, y: 1 + 0 * x),
}


def _inputs(dtype):
    rng = np.random.default_rng(7)
    x = np.concatenate([SPECIAL, rng.standard_normal(3000) * 4, rng.uniform(-20, 20, 2000)])
    return x.astype(dtype)


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch(host_backend, torch, dtype, case):
    name, kw, m_fwd, m_bwd = CASES[case]
    spec = REGISTRY[name]
    x = _inputs(dtype)
    g = np.random.default_rng(8).uniform(0.5, 2.0, x.size).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    params = tuple(kw.get(q.name, q.default) for q in spec.api)
    ty = spec.torch.call(torch.nn.functional, tx, *params)
    ty.backward(torch.tensor(g))
    want_y, want_g = ty.detach().numpy(), tx.grad.numpy()
    y = getattr(fastact, name)(x, **kw, backend=host_backend)
    s = y if spec.saves == "y" else x
    gx = getattr(fastact, name + "_backward")(g, s, **kw, backend=host_backend)
    keep = np.ones(x.size, bool) if spec.torch.skip is None else \
        ~spec.torch.skip(x.astype(np.float64))
    eps = np.finfo(dtype).eps
    tiny = np.finfo(dtype).smallest_subnormal
    with np.errstate(all="ignore"):
        xw = x.astype(np.float64)
        for what, got, want, m in (("forward", y, want_y, m_fwd(xw)),
                                   ("backward", gx, want_g,
                                    g.astype(np.float64) * m_bwd(xw, y.astype(np.float64)))):
            got, want, m = got[keep], want[keep], np.abs(m[keep])
            assert np.array_equal(np.isnan(got), np.isnan(want)), (
                what, x[keep][np.isnan(got) != np.isnan(want)][:5])
            fin = np.isfinite(want)
            assert np.array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)]), what
            err = np.abs(got[fin].astype(np.float64) - want[fin])
            tol = 8 * eps * (np.abs(want[fin]) + m[fin]) + 4 * tiny
            bad = err > tol
            assert not bad.any(), (what, x[keep][fin][bad][:5], got[fin][bad][:5],
                                   want[fin][bad][:5])


def test_documented_deviations(torch):
    """Where fastact and PyTorch differ on purpose, fastact gives the limits."""
    x = np.array([-np.inf, np.inf])
    tx = torch.tensor(x)
    assert np.isnan(torch.nn.functional.silu(tx).numpy()[0])
    assert np.isnan(torch.nn.functional.mish(tx).numpy()[0])
    assert np.array_equal(fastact.silu(x), [-0.0, np.inf])
    assert np.array_equal(fastact.mish(x), [-0.0, np.inf])
    assert np.array_equal(fastact.silu_backward(np.ones(2), x), [0.0, 1.0])
    assert np.array_equal(fastact.mish_backward(np.ones(2), x), [0.0, 1.0])
    with pytest.raises(ValueError):
        fastact.celu(x, alpha=0.0)
    with pytest.raises(ValueError):
        fastact.celu(x, alpha=float("nan"))
    with pytest.raises(ValueError):
        fastact.celu(x, alpha=-1.0)
