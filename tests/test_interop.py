"""Every array kind answered in its own kind: integer and boolean input
promoted to float64, PyTorch CPU tensors, xarray DataArrays and masked
arrays, each checked against the NumPy reference backend."""
import numpy as np
import pytest

import fastact
from conftest import SINGLE_OUTPUT_CALLS, assert_bitwise_equal
from fastact._registry import REGISTRY

ROWWISE = [s.api_name for s in REGISTRY.values() if s.kind == "rowwise" and s.public]
GATED = [s.api_name for s in REGISTRY.values() if s.kind == "gated" and s.public]


def _half(g):
    """The first half of g along its last axis (a gated backward's gradient shape)."""
    if isinstance(g, list):
        return [row[: len(row) // 2] for row in g]
    return g[..., : g.shape[-1] // 2] if np.ndim(g) else g


def _gated_call(name, backward):
    f = getattr(fastact, name + ("_backward" if backward else ""))
    if not backward:
        return lambda x, **k: f(x, **k), 1
    return (lambda g, x, **k: f(_half(g), x, **k)), 2


#: name -> (callable, number of array arguments): every single-output public function
CALLS = dict(SINGLE_OUTPUT_CALLS)
for _n in ROWWISE:
    CALLS[_n] = (lambda x, f=getattr(fastact, _n), **k: f(x, **k), 1)
    CALLS[_n + "_backward"] = (lambda g, y, f=getattr(fastact, _n + "_backward"), **k:
                               f(g, y, **k), 2)
for _n in GATED:
    CALLS[_n] = _gated_call(_n, False)
    CALLS[_n + "_backward"] = _gated_call(_n, True)
NAMES = sorted(CALLS)


def _values(shape=(3, 4), seed=0):
    return np.random.default_rng(seed).uniform(-3, 3, shape).round(1)


def _ref(name, arrays, **kw):
    """The NumPy call ``name`` on ``arrays`` on the automatic backend (the
    one the foreign call takes, the sizes being alike), checked against the
    reference backend: bit for bit where the op is exact, else within
    tolerance (the accuracy tests bound the ULPs)."""
    fn, _ = CALLS[name]
    got = fn(*arrays, **kw)
    want = fn(*arrays, backend="numpy", **kw)
    tol = 1e-5 if got.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    return got


def _same(got, fn, *arrays, **kw):
    """``got`` bit for bit ``fn`` on NumPy ``arrays`` (automatic backend),
    itself close to the reference backend's result."""
    want = fn(*arrays, **kw)
    tol = 1e-5 if want.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(want, fn(*arrays, backend="numpy", **kw), rtol=tol, atol=tol)
    assert_bitwise_equal(got, want)


# --- integers and booleans -------------------------------------------------------

INT_DTYPES = [np.int8, np.int32, np.int64, np.uint16, np.bool_]


#: prelu's table entry takes a weight of x's dtype (0 for integer x): see test_prelu_integer_*
INT_NAMES = [n for n in NAMES if n != "prelu"]


@pytest.mark.parametrize("dt", INT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", INT_NAMES)
def test_integer_arrays_promote_to_float64(name, dt):
    fn, nargs = CALLS[name]
    ints = (np.random.default_rng(1).integers(-3, 4, (3, 4)) % (2 if dt is np.bool_ else 256))
    x = ints.astype(dt)
    got = fn(*([x] * nargs))
    assert got.dtype == np.float64
    assert_bitwise_equal(got, _ref(name, [x.astype(np.float64)] * nargs))


@pytest.mark.parametrize("name", INT_NAMES)
def test_lists_and_python_scalars_promote(name):
    fn, nargs = CALLS[name]
    rows = [[1, -2, 3, 0], [True, False, 2, -1]]
    want = _ref(name, [np.array(rows, np.float64)] * nargs)
    assert_bitwise_equal(fn(*([rows] * nargs)), want)
    if name.replace("_backward", "") not in GATED:
        got = fn(*([3] * nargs))
        assert_bitwise_equal(got, _ref(name, [np.float64(3.0)] * nargs))


@pytest.mark.parametrize("name", [n for n in NAMES if CALLS[n][1] == 2
                                  and n.replace("_backward", "") not in GATED])
def test_integers_promote_with_the_other_argument(name):
    fn, _ = CALLS[name]
    f32, i64, i8 = _values().astype(np.float32), np.ones((3, 4), np.int64), np.ones((3, 4), np.int8)
    # np.result_type: int64 with float32 is float64, int8 with float32 float32
    assert fn(i64, f32).dtype == np.float64
    assert_bitwise_equal(fn(i8, f32), _ref(name, [i8.astype(np.float32), f32]))
    # int8 with float16 is float16
    assert fn(i8, f32.astype(np.float16)).dtype == np.float16


@pytest.mark.parametrize("name", NAMES)
def test_integer_input_with_out(name):
    fn, nargs = CALLS[name]
    x = np.arange(-4, 8).reshape(3, 4)
    want = fn(*([x] * nargs))
    out = np.empty_like(want)
    assert fn(*([x] * nargs), out=out) is out
    assert_bitwise_equal(out, want)
    with pytest.raises(TypeError, match=f"fastact.{name}: out has dtype float32, expected float64"):
        fn(*([x] * nargs), out=np.empty(want.shape, np.float32))


def test_prelu_integer_weight_and_input():
    x = np.array([[-2, 3], [4, -5]])
    want = fastact.prelu(x.astype(np.float64), np.array([0.5, 2.0]), backend="numpy")
    assert_bitwise_equal(fastact.prelu(x, [0.5, 2]), want)
    # integer and boolean slopes take x's dtype
    assert_bitwise_equal(fastact.prelu(x.astype(np.float32), np.array([1, 2])),
                         fastact.prelu(x.astype(np.float32), np.array([1, 2], np.float32)))
    assert fastact.prelu(x.astype(np.float32), np.array([True])).dtype == np.float32
    gx, gw = fastact.prelu_backward(np.ones((2, 2), np.int64), x, np.array([1, 0]))
    wx, ww = fastact.prelu_backward(np.ones((2, 2)), x.astype(np.float64), np.array([1.0, 0.0]),
                                    backend="numpy")
    assert_bitwise_equal(gx, wx)
    assert_bitwise_equal(gw, ww)
    with pytest.raises(TypeError, match="weight has dtype float32 but x has dtype float64"):
        fastact.prelu(x, np.ones(2, np.float32))


# --- PyTorch CPU tensors -----------------------------------------------------------

@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_torch_tensors_in_and_out(torch, name, dt):
    fn, nargs = CALLS[name]
    arrays = [_values(seed=k).astype(dt) for k in range(nargs)]
    tensors = [torch.from_numpy(a) for a in arrays]
    got = fn(*tensors)
    assert isinstance(got, torch.Tensor) and got.dtype == getattr(torch, dt)
    want = _ref(name, arrays)
    assert_bitwise_equal(got.numpy(), want)
    out = torch.empty(tuple(want.shape), dtype=getattr(torch, dt))
    ptr = out.data_ptr()
    assert fn(*tensors, out=out) is out and out.data_ptr() == ptr
    assert_bitwise_equal(out.numpy(), want)


def test_torch_zero_copy(torch):
    t = torch.linspace(-3, 3, 12, dtype=torch.float64).reshape(3, 4)
    ptr = t.data_ptr()
    res = fastact.relu(t, out=t)          # in place: the tensor's own memory
    assert res is t and t.data_ptr() == ptr and bool((t >= 0).all())
    y = fastact.sigmoid(t)
    y.numpy()[0, 0] = 7.0                 # the result shares memory with its NumPy view
    assert float(y[0, 0]) == 7.0
    v = torch.linspace(-3, 3, 24).reshape(4, 6)[:, ::2]    # a strided view
    _same(fastact.elu(v).numpy(), fastact.elu, v.numpy())


@pytest.mark.parametrize("name", ["relu", "softmax", "glu", "prelu"])
def test_torch_requires_grad_is_refused(torch, name):
    x = torch.ones(2, 4, requires_grad=True)
    fn = (lambda a: fastact.prelu(a, torch.ones(1))) if name == "prelu" else getattr(fastact, name)
    with pytest.raises(TypeError, match=rf"fastact.{name}: x is a tensor that requires grad; "
                                        r".*pass x.detach\(\)"):
        fn(x)
    assert isinstance(fn(x.detach()), torch.Tensor)
    with pytest.raises(TypeError, match="out is a tensor that requires grad"):
        fastact.relu(torch.ones(2), out=torch.ones(2, requires_grad=True))
    with pytest.raises(TypeError, match="weight is a tensor that requires grad"):
        fastact.prelu(torch.ones(2, 3), torch.nn.Parameter(torch.ones(3)))


def test_torch_dtypes(torch):
    got = fastact.relu(torch.tensor([-1, 2, 3]))
    assert got.dtype == torch.float64 and got.tolist() == [0.0, 2.0, 3.0]
    with pytest.raises(TypeError, match="supported dtypes are float32 and float64"):
        fastact.relu(torch.ones(3, dtype=torch.complex64))
    for dt in (torch.float16, torch.bfloat16):      # the narrow dtypes, answered in theirs
        t = torch.tensor([-1.0, 0.5, 3.0], dtype=dt)
        got = fastact.relu(t)
        assert got.dtype == dt and got.tolist() == [0.0, 0.5, 3.0]
    with pytest.raises(TypeError, match="cannot mix a PyTorch tensor"):
        xr = pytest.importorskip("xarray")
        fastact.relu(torch.ones(2), out=xr.DataArray(np.ones(2)))


def test_torch_prelu_backward_pair(torch):
    x = torch.tensor([[-1.0, 2.0], [3.0, -4.0]])
    w = torch.tensor([0.25, 0.5])
    gx, gw = fastact.prelu_backward(torch.ones(2, 2), x, w)
    wx, ww = fastact.prelu_backward(np.ones((2, 2), np.float32), x.numpy(), w.numpy(),
                                    backend="numpy")
    assert isinstance(gx, torch.Tensor) and isinstance(gw, torch.Tensor)
    assert_bitwise_equal(gx.numpy(), wx)
    assert_bitwise_equal(gw.numpy(), ww)
    ox, ow = torch.empty(2, 2), torch.empty(2)
    assert fastact.prelu_backward(torch.ones(2, 2), x, w, out=(ox, ow)) == (ox, ow)
    assert_bitwise_equal(ow.numpy(), ww)


# --- xarray DataArrays --------------------------------------------------------------

@pytest.fixture(scope="module")
def xr():
    return pytest.importorskip("xarray")


def _da(xr, values, name="act"):
    return xr.DataArray(values, dims=("batch", "feature"),
                        coords={"batch": np.arange(values.shape[0]) * 10,
                                "feature": [f"f{k}" for k in range(values.shape[1])],
                                "weight": ("batch", np.ones(values.shape[0]))},
                        attrs={"units": "logits"}, name=name)


@pytest.mark.parametrize("name", NAMES)
def test_xarray_keeps_coordinates(xr, name):
    fn, nargs = CALLS[name]
    arrays = [_values((4, 6), seed=k) for k in range(nargs)]
    das = [_da(xr, a) for a in arrays]
    got = fn(*das)
    assert isinstance(got, xr.DataArray)
    want = _ref(name, arrays)
    assert_bitwise_equal(got.values, want)
    assert got.dims == ("batch", "feature") and got.name == "act"
    assert got.attrs == {"units": "logits"}
    assert np.array_equal(got["batch"], das[0]["batch"])
    assert np.array_equal(got["weight"], das[0]["weight"])
    if got.shape == das[-1].shape:
        assert np.array_equal(got["feature"], das[0]["feature"])
    else:        # a gated forward: the halved dimension's labels no longer apply
        assert "feature" not in got.coords
    out = _da(xr, np.empty(want.shape))
    assert fn(*das, out=out) is out
    assert_bitwise_equal(out.values, want)


@pytest.mark.parametrize("name", ROWWISE + GATED)
def test_xarray_axis_by_dimension_name(xr, name):
    f = getattr(fastact, name)
    x = _values((4, 6))
    for dim, axis in (("batch", 0), ("feature", 1)):
        got = f(_da(xr, x), axis=dim)
        _same(got.values, f, x, axis=axis)
    with pytest.raises(ValueError, match=rf"fastact.{name}: axis 'time' is not a dimension"):
        f(_da(xr, x), axis="time")
    with pytest.raises(TypeError, match=f"fastact.{name}: axis"):
        f(x, axis="batch")


def test_xarray_prelu(xr):
    x = _values((4, 3))
    w = xr.DataArray([0.1, 0.2, 0.3], dims="feature")
    got = fastact.prelu(_da(xr, x), w, axis="feature")
    assert_bitwise_equal(got.values, fastact.prelu(x, w.values, axis=1, backend="numpy"))
    gx, gw = fastact.prelu_backward(_da(xr, np.ones((4, 3))), _da(xr, x), w, axis="feature")
    wx, ww = fastact.prelu_backward(np.ones((4, 3)), x, w.values, backend="numpy")
    assert isinstance(gx, xr.DataArray) and isinstance(gw, xr.DataArray)
    assert_bitwise_equal(gx.values, wx)
    assert_bitwise_equal(gw.values, ww)


def test_xarray_dims_must_agree(xr):
    a = _da(xr, _values())
    with pytest.raises(ValueError, match="fastact does not transpose or align"):
        fastact.relu_backward(a, a.rename({"batch": "b2"}))


# --- masked arrays ------------------------------------------------------------------

def _masked(shape=(3, 5), seed=0):
    x = _values(shape, seed)
    mask = np.random.default_rng(seed + 7).random(shape) < 0.3
    mask[0] = False
    return np.ma.MaskedArray(x, mask=mask)


@pytest.mark.parametrize("name", [n for n in NAMES if n.replace("_backward", "")
                                  not in ROWWISE + GATED and not n.startswith("softmax")])
def test_masked_elementwise_keeps_mask(name):
    fn, nargs = CALLS[name]
    arrays = [_masked(seed=k) for k in range(nargs)]
    got = fn(*arrays)
    assert isinstance(got, np.ma.MaskedArray)
    mask = np.logical_or.reduce([np.ma.getmaskarray(a) for a in arrays])
    assert np.array_equal(np.ma.getmaskarray(got), mask)
    want = _ref(name, [a.data for a in arrays])
    assert_bitwise_equal(got.data[~mask], want[~mask])
    out = np.ma.MaskedArray(np.empty(want.shape))
    assert fn(*arrays, out=out) is out
    assert np.array_equal(np.ma.getmaskarray(out), mask)
    with pytest.raises(TypeError, match=f"fastact.{name}: the input is a masked array, so out "
                                        "must be one too"):
        fn(*arrays, out=np.empty(want.shape))


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("name", ROWWISE)
def test_masked_rows_leave_masked_entries_out(name, dt):
    f, fb = getattr(fastact, name), getattr(fastact, name + "_backward")
    x = _masked((4, 6)).astype(dt)
    g = np.ma.MaskedArray(_values((4, 6), seed=3).astype(dt))
    y, gx = f(x), fb(g, f(x))
    mask = np.ma.getmaskarray(x)
    assert np.array_equal(np.ma.getmaskarray(y), mask)
    assert np.array_equal(np.ma.getmaskarray(gx), mask)
    assert (gx.data[mask] == 0).all()
    for r in range(4):        # each row: the reference on its unmasked entries alone
        keep = ~mask[r]
        tol = 1e-6 if dt == np.float32 else 1e-14
        yr = f(x.data[r][keep], backend="numpy")
        np.testing.assert_allclose(y.data[r][keep], yr, rtol=tol, atol=tol)
        np.testing.assert_allclose(gx.data[r][keep], fb(g.data[r][keep], yr, backend="numpy"),
                                   rtol=tol, atol=tol)


def test_masked_prelu_excludes_masked_from_weight_gradient():
    x = _masked((4, 3))
    w = np.array([0.1, 0.2, 0.3])
    mask = np.ma.getmaskarray(x)
    y = fastact.prelu(x, w)
    assert np.array_equal(np.ma.getmaskarray(y), mask)
    gx, gw = fastact.prelu_backward(np.ma.MaskedArray(np.ones((4, 3))), x, w)
    assert np.array_equal(np.ma.getmaskarray(gx), mask) and (gx.data[mask] == 0).all()
    g0 = np.where(mask, 0.0, 1.0)
    wx, ww = fastact.prelu_backward(g0, np.where(mask, 0.0, x.data), w, backend="numpy")
    assert_bitwise_equal(gw, ww)
    assert_bitwise_equal(gx.data, wx)
    with pytest.raises(TypeError, match="weight is a masked array"):
        fastact.prelu(x, np.ma.MaskedArray(w))


@pytest.mark.parametrize("name", GATED)
def test_masked_gated_is_refused(name):
    x = _masked((4, 6))
    with pytest.raises(TypeError, match=f"fastact.{name}: masked arrays are not supported"):
        getattr(fastact, name)(x)
    with pytest.raises(TypeError, match="masked arrays are not supported"):
        getattr(fastact, name + "_backward")(np.ones((4, 3)), x)


def test_unmasked_masked_array_stays_masked_array():
    x = np.ma.MaskedArray(_values())
    got = fastact.sigmoid(x)
    assert isinstance(got, np.ma.MaskedArray) and not np.ma.getmaskarray(got).any()
    _same(got.data, fastact.sigmoid, x.data)
