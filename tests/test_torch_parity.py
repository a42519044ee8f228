"""Every catalogue op against PyTorch's CPU implementation (autograd for the
backward), on special values, kinks and random data, float32 and float64:
the same function and conventions (NaN and infinities where PyTorch has
them, values to a relative tolerance; the family tests hold the values to
the registry's bounds).  Where fastact documents a
deviation (the registry's ``Torch.deviations``), ``Torch.skip`` marks the
inputs concerned: the one table of deviations, read here."""
import numpy as np
import pytest

from conftest import DTYPES, REGISTRY_OPS, special_values


def _inputs(op, dtype):
    rng = np.random.default_rng(5)
    kinks = np.array(op.kinks + (0.0,), dtype=np.float64)
    near = np.concatenate([kinks, np.nextafter(kinks, -np.inf), np.nextafter(kinks, np.inf)])
    x = np.concatenate([special_values(dtype).astype(np.float64), near,
                        rng.standard_normal(400) * 3, rng.standard_normal(100) * 30,
                        np.linspace(-12, 12, 241)]).astype(dtype)
    g = rng.standard_normal(x.size).astype(dtype)
    g[:4] = [1.0, -1.0, 0.5, 2.0]
    return x, g


def _torch_pair(torch, op, x, g):
    F = torch.nn.functional
    spec = op.spec
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = spec.torch.call(F, xt, *[op.kw[p.name] for p in spec.api])
    yt.backward(torch.from_numpy(g))
    return yt.detach().numpy(), xt.grad.numpy()


def _close(got, want, what, rtol_torch=0.0, atol=0.0):
    """The same function and conventions: NaN and +-inf exactly where PyTorch
    has them, finite values to a relative tolerance (each family's own test
    holds the values to their bounds, and the documented deviations)."""
    for kind in (np.isnan, np.isposinf, np.isneginf):
        bad = kind(got) != kind(want)
        assert not bad.any(), (f"{what}: {kind.__name__} differs from torch: got "
                               f"{got[bad][:4]}, torch {want[bad][:4]}")
    fin = np.isfinite(want)
    rtol = max(1e-4 if got.dtype == np.float32 else 1e-10, rtol_torch)
    tiny = np.finfo(got.dtype).tiny / np.finfo(got.dtype).eps
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=max(tiny, atol),
                               err_msg=what)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("op", [op for op in REGISTRY_OPS if op.spec.torch], ids=repr)
def test_matches_torch(torch, op, dtype):
    x, g = _inputs(op, dtype)
    y = op.fwd(x)
    gx = op.bwd(g, op.fwd(x) if op.saves == "y" else x)
    ty, tgx = _torch_pair(torch, op, x, g)
    keep = np.ones(x.size, bool)
    if op.spec.torch.skip is not None:
        keep = ~np.asarray(op.spec.torch.skip(x.astype(np.float64),
                                              *[op.kw[p.name] for p in op.spec.api]))
    _close(y[keep], ty[keep], f"{op.id} forward", op.spec.torch.rtol)
    # from the output the derivative's error is absolute, a few eps |g| (where
    # y has rounded to its limit, elu's -alpha, the derivative from y is 0)
    atol = (8 * np.finfo(dtype).eps * float(np.max(np.abs(g)))
            if op.id.endswith("_from_output") else 0.0)
    _close(gx[keep], tgx[keep], f"{op.id} backward", op.spec.torch.rtol, atol)


def test_every_catalogue_op_has_a_torch_counterpart():
    missing = [op.id for op in REGISTRY_OPS if op.spec.torch is None]
    assert not missing, missing
