"""Accuracy bounds of the special family (softplus, logsigmoid) over the
whole input range, every host backend, against the oracles of
tests/oracles_special.py."""
import numpy as np
import pytest

import fastact
from conftest import assert_ulp
from oracles_special import logsigmoid, logsigmoid_backward, softplus, softplus_backward
from test_core_accuracy import whole_range

SOFTPLUS_PARAMS = [dict(), dict(beta=2.0, threshold=10.0), dict(beta=0.7, threshold=np.inf),
                   dict(beta=3.1, threshold=np.inf), dict(beta=1e-3, threshold=np.inf),
                   dict(beta=250.0)]


def _grid(dtype, beta=1.0):
    """whole_range, plus a dense grid where beta * x makes results subnormal."""
    dt = np.dtype(dtype)
    sub = 110.0 if dt == np.float32 else 750.0
    extra = np.linspace(-sub / beta, sub / beta, 20000)
    return np.concatenate([whole_range(dt), extra.astype(dt)])


def _gradients(x, seed):
    return np.random.default_rng(seed).uniform(-4, 4, x.size).astype(x.dtype)


@pytest.mark.parametrize("kw", SOFTPLUS_PARAMS, ids=str)
def test_softplus_4ulp(host_backend, dtype, kw):
    x = _grid(dtype, kw.get("beta", 1.0))
    got = fastact.softplus(x, **kw, backend=host_backend)
    assert_ulp(got, softplus(x, **kw), 4, f"softplus {kw}")


@pytest.mark.parametrize("kw", SOFTPLUS_PARAMS, ids=str)
def test_softplus_backward_4ulp(host_backend, dtype, kw):
    x = _grid(dtype, kw.get("beta", 1.0))
    for g in (_gradients(x, 1), np.ones_like(x)):
        got = fastact.softplus_backward(g, x, **kw, backend=host_backend)
        assert_ulp(got, softplus_backward(g, x, **kw), 4, f"softplus_backward {kw}")


def test_logsigmoid_4ulp(host_backend, dtype):
    x = _grid(dtype)
    assert_ulp(fastact.logsigmoid(x, backend=host_backend), logsigmoid(x), 4, "logsigmoid")


def test_logsigmoid_backward_4ulp(host_backend, dtype):
    x = _grid(dtype)
    for g in (_gradients(x, 2), np.ones_like(x)):
        got = fastact.logsigmoid_backward(g, x, backend=host_backend)
        assert_ulp(got, logsigmoid_backward(g, x), 4, "logsigmoid_backward")


def test_grid_reaches_subnormal_results(dtype):
    x = _grid(dtype)
    y = np.abs(logsigmoid(x).astype(dtype))
    tiny = np.finfo(dtype).tiny
    assert ((y > 0) & (y < tiny)).sum() > 100


# --- gelu ------------------------------------------------------------------------------

from conftest import WIDE, hp, ulp_of  # noqa: E402
from oracles_special import gelu, gelu_backward, gelu_terms  # noqa: E402


def _gelu_grid(dtype):
    """Both signs over the whole range (coarser than whole_range: the oracle is
    mpmath), dense where the results go subnormal and around the derivative's
    zero near -0.75."""
    dt = np.dtype(dtype)
    fi = np.finfo(dt)
    lo, hi = np.log10(float(fi.smallest_subnormal)), np.log10(float(fi.max))
    with np.errstate(over="ignore"):
        mags = np.logspace(lo, hi, 600)[:-1]
    tail = 16.0 if dt == np.float32 else 40.0
    rng = np.random.default_rng(3)
    parts = [mags, -mags, np.linspace(-tail, 6, 6000), rng.uniform(-1.2, -0.3, 1000),
             rng.uniform(-1e-3, 1e-3, 200), [0.0, -0.0, fi.max, -fi.max, fi.tiny, -fi.tiny]]
    with np.errstate(over="ignore"):
        return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts]).astype(dt)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_4ulp(host_backend, dtype, approximate):
    x = _gelu_grid(dtype)
    got = fastact.gelu(x, approximate=approximate, backend=host_backend)
    assert_ulp(got, gelu(x, approximate), 4, f"gelu {approximate}")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_backward_cond(host_backend, dtype, approximate):
    """Within 4 eps |g| (sum of the terms' magnitudes), or 4 ULP."""
    x = _gelu_grid(dtype)
    fi = np.finfo(dtype)
    terms = gelu_terms(x, approximate)
    for g in (_gradients(x, 4), np.ones_like(x)):
        got = fastact.gelu_backward(g, x, approximate=approximate, backend=host_backend)
        exact = gelu_backward(g, x, approximate)
        with np.errstate(all="ignore"):
            err = np.abs(hp(got) - exact)
            tol = np.maximum(4 * WIDE(fi.eps) * np.abs(hp(g)) * terms
                             + WIDE(fi.smallest_subnormal), 4 * ulp_of(exact, dtype))
        same = (np.isnan(hp(got)) & np.isnan(exact)) | (hp(got) == exact)
        bad = ~same & ~(err <= tol)
        assert not bad.any(), (f"gelu_backward {approximate}: {int(bad.sum())} beyond the bound;"
                               f" first at x = {x[bad][:3]}: got {got[bad][:3]}, "
                               f"exact {exact[bad][:3]}, ratio {(err / tol)[bad][:3]}")


def test_gelu_grid_reaches_subnormal_results(dtype):
    x = _gelu_grid(dtype)
    y = np.abs(np.asarray(gelu(x), dtype=np.float64).astype(dtype))
    assert ((y > 0) & (y < np.finfo(dtype).tiny)).sum() > 20


# --- the C primitives are ports of the Python ones ------------------------------------

def test_c_special_primitives_are_ports_of_the_python_ones():
    """c_src/kernels.inc's erfcx coefficients and K, float32 gelu's
    phi_ratio coefficients, K, clamp and reciprocal seed, log1p's polynomial
    and exp_split's clamp are _prims.py's (the same values, in the same
    order)."""
    import pathlib
    import re

    from fastact import _prims
    text = (pathlib.Path(__file__).resolve().parent.parent / "c_src" / "kernels.inc").read_text()
    i = text.index("FA_INLINE T N_(erfcx2)")
    block = text[i:text.index("\n}\n", i)]
    f32, f64 = block.split("#else")[0], block.split("#else")[1].split("#endif")[0]
    c32 = [float(v) for v in re.findall(r"p = FMA\(p, q, \(T\)([-+0-9.e]+)\)", f32)]
    c64 = [float(v) for v in re.findall(r"p = FMA\(p, q, ([-+0-9.e]+)\)", f64)]
    first32 = float(re.search(r"T p = \(T\)([-+0-9.e]+);", f32).group(1))
    first64 = float(re.search(r"T p = ([-+0-9.e]+);", f64).group(1))
    assert [first32] + c32 == list(_prims._ERFCX_P32)
    assert [first64] + c64 == list(_prims._ERFCX_P64)
    assert float(re.search(r"const T K = \(T\)([0-9.]+)", f32).group(1)) == _prims._ERFCX_K32
    assert float(re.search(r"const T K = ([0-9.]+)", f64).group(1)) == _prims._ERFCX_K64
    i = text.index("FA_INLINE T N_(phi_ratio)")
    block = text[i:text.index("\n}\n", i)]
    p32 = [float(re.search(r"T p = \(T\)([-+0-9.e]+);", block).group(1))]
    p32 += [float(v) for v in re.findall(r"p = FA_PFMA\(p, q, \(T\)([-+0-9.e]+)\)", block)]
    assert p32 == list(_prims._PHI_P32)
    consts = re.search(r"const T K = \(T\)([0-9.]+), K2 = \(T\)([0-9.]+);", block)
    assert [float(v) for v in consts.groups()] == [_prims._PHI_K32, 2 * _prims._PHI_K32]
    # phi_ratio's domain, [0, _PHI_A32], is its callers' clamp (gelu's
    # backward clamps there, its forward inside it)
    forms = (pathlib.Path(__file__).resolve().parent.parent / "c_src" / "formulas_special.inc").read_text()
    a = _prims._PHI_A32
    assert f"N_(clamp_bits)(x, (T)-{a:g}, (T){a:g})" in forms
    assert "N_(clamp_bits)(x, (T)-15, (T)10)" in forms and 10 < a
    i = text.index("FA_INLINE T N_(log1p)")
    block = text[i:text.index("\n}\n", i)]
    lg32 = [eval(v) for v in re.findall(r"\(T\)\((0x[0-9A-F]+ / [0-9.]+)\)", block)]
    assert lg32 == [0xF89E26 / 2 ** 26, 0x91E9EE / 2 ** 25, 0xCCCE13 / 2 ** 25, 0xAAAAAA / 2 ** 24]
    lg64 = [float(v) for v in re.findall(r"R = (?:FMA\(R, z, )?([0-9.]+e-01)", block)]
    assert len(lg64) == 7 and lg64[0] == 1.479819860511658591e-01 and lg64[-1] == 6.666666666666735130e-01
    assert "#define C_SPLIT_LO ((T)-210.0)" in text and "#define C_SPLIT_LO ((T)-1500.0)" in text
