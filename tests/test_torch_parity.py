"""Every catalogue op against PyTorch's CPU implementation (autograd for the
backward), on special values, kinks and random data, float32 and float64:
bit for bit where the registry says the op is exact, else within the
registry's bound plus PyTorch's own error.  Where fastact documents a
deviation (the registry's ``Torch.deviations``), ``Torch.skip`` marks the
inputs concerned: the one table of deviations, read here."""
import numpy as np
import pytest

from conftest import (DTYPES, REGISTRY_OPS, WIDE, assert_bitwise_equal, hp, special_values,
                      ulp_of)


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
    kw = spec.torch.params(*[op.kw[p.name] for p in spec.api])
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = getattr(F, spec.torch.name)(xt, **kw)
    yt.backward(torch.from_numpy(g))
    return yt.detach().numpy(), xt.grad.numpy()


def _close(got, want, bound, what, g=None, s=None):
    if bound == 0:
        assert_bitwise_equal(got, want)
        return
    with np.errstate(all="ignore"):
        err = np.abs(hp(got) - hp(want))
        tol = (8 if bound == "cond" else bound + 4) * ulp_of(hp(want), got.dtype)
        if bound == "cond":      # the derivative's own conditioning near its zeros
            tol = np.maximum(tol, 16 * WIDE(np.finfo(got.dtype).eps) * np.abs(hp(g))
                             * (1 + np.abs(hp(s))))
    same = (np.isnan(got) & np.isnan(want)) | (got == want)
    bad = ~same & ~(err <= tol)
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {got.size} differ from torch beyond "
                           f"the bound; first: got {got[bad][:4]}, torch {want[bad][:4]}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("op", [op for op in REGISTRY_OPS if op.spec.torch], ids=repr)
def test_matches_torch(torch, op, dtype):
    x, g = _inputs(op, dtype)
    s = op.fwd(x, backend="numpy") if op.saves == "y" else x
    y = op.fwd(x)
    gx = op.bwd(g, op.fwd(x) if op.saves == "y" else x)
    ty, tgx = _torch_pair(torch, op, x, g)
    keep = np.ones(x.size, bool)
    if op.spec.torch.skip is not None:
        keep = ~np.asarray(op.spec.torch.skip(x.astype(np.float64),
                                              *[op.kw[p.name] for p in op.spec.api]))
    _close(y[keep], ty[keep], op.bounds[0], f"{op.id} forward")
    _close(gx[keep], tgx[keep], op.bounds[1], f"{op.id} backward", g[keep], s[keep])


def test_every_catalogue_op_has_a_torch_counterpart():
    missing = [op.id for op in REGISTRY_OPS if op.spec.torch is None]
    assert not missing, missing
