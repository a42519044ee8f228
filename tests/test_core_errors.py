"""Error paths of the public layer: dtypes, shapes, parameters, device/host mixing."""
import numpy as np
import pytest

import fastact
from conftest import ALL_CALLS

NAMES = sorted(ALL_CALLS)
# integer and boolean arrays are promoted (tests/test_interop.py)
BAD_DTYPES = [np.complex64, np.complex128, np.longdouble, object, "U3"]


def _ok(dtype, shape=(2, 3)):
    return np.full(shape, 0.5, dtype)


@pytest.mark.parametrize("bad", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_unsupported_dtype(name, bad):
    fn, nargs = ALL_CALLS[name]
    arr = np.zeros((2, 3), dtype=bad) if np.dtype(bad) != object else np.full((2, 3), 0.5, object)
    for pos in range(nargs):
        args = [_ok(np.float64) for _ in range(nargs)]
        args[pos] = arr
        with pytest.raises(TypeError, match="supported dtypes are float32 and float64") as e:
            fn(*args)
        assert np.dtype(bad).name in str(e.value) or str(np.dtype(bad)) in str(e.value)
        assert f"fastact.{name}" in str(e.value)


@pytest.mark.parametrize("name", NAMES)
def test_python_ints_are_promoted(name):
    fn, nargs = ALL_CALLS[name]
    got = fn(*([[1, 2, 3, 4]] * nargs))
    res = got[0] if isinstance(got, tuple) else got
    assert res.dtype == np.float64


@pytest.mark.parametrize("name", [n for n in NAMES if ALL_CALLS[n][1] == 2])
def test_mismatched_grad_and_saved(name):
    fn, _ = ALL_CALLS[name]
    g32, x64 = _ok(np.float32), _ok(np.float64)
    with pytest.raises(TypeError, match="has dtype float64 but grad has dtype float32; they must match"):
        fn(g32, x64)
    with pytest.raises(TypeError, match="must match"):
        fn(x64, g32)
    with pytest.raises(ValueError, match=r"has shape \(3, 2\) but grad has shape \(2, 3\); they must match"):
        fn(_ok(np.float64), _ok(np.float64, (3, 2)))
    with pytest.raises(ValueError, match="must match"):
        fn(_ok(np.float64, (6,)), _ok(np.float64))
    # no broadcasting of grad against the saved array either
    with pytest.raises(ValueError, match="must match"):
        fn(_ok(np.float64, (1, 3)), _ok(np.float64))


@pytest.mark.parametrize("name", NAMES)
def test_not_an_array(name):
    fn, nargs = ALL_CALLS[name]
    with pytest.raises(TypeError):
        fn(*(["a", "b"],) * nargs)
    with pytest.raises(TypeError):
        fn(*(None,) * nargs)


@pytest.mark.parametrize("call,param", [
    (lambda v: fastact.leaky_relu(np.ones(2), v), "negative_slope"),
    (lambda v: fastact.leaky_relu_backward(np.ones(2), np.ones(2), v), "negative_slope"),
    (lambda v: fastact.elu(np.ones(2), v), "alpha"),
    (lambda v: fastact.elu_backward(np.ones(2), np.ones(2), v), "alpha"),
    (lambda v: fastact.rrelu(np.ones(2), v, 2.0), "lower"),
    (lambda v: fastact.rrelu_backward(np.ones(2), np.ones(2), 0.0, v), "upper"),
])
def test_scalar_parameter_types(call, param):
    for bad in ("0.1", None, True, [0.1], 1j):
        with pytest.raises(TypeError, match=f"{param} must be a real number"):
            call(bad)
    # any real number is accepted: ints, numpy scalars, fractions
    from fractions import Fraction
    for good in (0, 1, np.float32(0.25), np.int64(1), Fraction(1, 4)):
        call(good)


def test_cuda_backend_with_host_arrays_is_a_clear_error():
    x = np.ones(4)
    st = fastact.backends()["cuda"]
    if st["available"]:
        with pytest.raises(TypeError, match="device arrays"):
            fastact.relu(x, backend="cuda")
        with pytest.raises(TypeError, match="device arrays"):
            fastact.softmax(x, backend="cuda")
        with pytest.raises(TypeError, match="device arrays"):
            with fastact.use_backend("cuda"):
                fastact.sigmoid(x)
    else:
        for call in (lambda: fastact.relu(x, backend="cuda"),
                     lambda: fastact.softmax(x, backend="cuda"),
                     lambda: fastact.prelu(x, 0.1, backend="cuda")):
            with pytest.raises(fastact.BackendUnavailable) as e:
                call()
            assert e.value.reason == st["reason"] and "cuda" in str(e.value)


class _FakeDevice:
    """Quacks like a device array (has __cuda_array_interface__)."""
    __cuda_array_interface__ = {"shape": (4,), "typestr": "<f8", "data": (0, False), "version": 3}
    shape, dtype = (4,), np.dtype(np.float64)


def test_device_and_host_arrays_cannot_mix():
    with pytest.raises(TypeError, match=r"cannot mix device arrays \(grad\) with host arrays \(y\)"):
        fastact.relu_backward(_FakeDevice(), np.ones(4))
    with pytest.raises(TypeError, match=r"cannot mix device arrays \(y\) with host arrays \(grad\)"):
        fastact.sigmoid_backward(np.ones(4), _FakeDevice())


def test_stream_only_for_device_arrays():
    with pytest.raises(TypeError, match="stream= applies to device arrays only"):
        fastact.relu(np.ones(3), stream=0)
    with pytest.raises(TypeError, match="stream= applies to device arrays only"):
        fastact.softmax(np.ones(3), stream=0)


def test_keyword_only_arguments():
    x = np.ones(3)
    with pytest.raises(TypeError):
        fastact.softmax(x, -1)
    with pytest.raises(TypeError):
        fastact.prelu(x, 0.1, 1)
    with pytest.raises(TypeError):
        fastact.relu(x, None)
    with pytest.raises(TypeError):
        fastact.rrelu(x, 0.1, 0.3, True)


@pytest.mark.parametrize("call", [
    lambda t: fastact.rrelu(np.array([-1.0]), training=t, seed=0),
    lambda t: fastact.rrelu_backward(np.ones(1), np.array([-1.0]), training=t, seed=0),
])
def test_rrelu_training_must_be_a_bool(call):
    """Any truthy object meant training (the string "False" among them); an
    array raised NumPy's ambiguous-truth error, which named neither fastact
    nor the argument."""
    for bad in ("False", 1, 0, None, np.array([True, False]), [True]):
        with pytest.raises(TypeError, match="training must be a bool"):
            call(bad)
    assert np.array_equal(call(np.bool_(True)), call(True))
    for off in (np.bool_(False), False):     # a seed without training: refused
        with pytest.raises(ValueError, match="given with training=False"):
            call(off)


def test_parameter_beyond_the_float_range_or_nan_bounds():
    with pytest.raises(ValueError, match="negative_slope is too large for a float"):
        fastact.leaky_relu(np.ones(2), 10 ** 400)
    with pytest.raises(ValueError, match="alpha is too large for a float"):
        fastact.elu(np.ones(2), -(10 ** 400))
    for lo, up in ((np.nan, 0.3), (0.1, np.nan)):
        with pytest.raises(ValueError, match="lower and upper must be numbers"):
            fastact.rrelu(np.ones(2), lo, up)


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("call", [
    lambda x, b: fastact.leaky_relu(x, 1e300, backend=b),
    lambda x, b: fastact.elu(x, -1e300, backend=b),
    lambda x, b: fastact.leaky_relu_backward(x, x, 1e300, backend=b),
], ids=["leaky_relu", "elu", "leaky_relu_backward"])
def test_float32_parameter_overflow_warns_alike_everywhere(host_backend, call, layout):
    """A parameter beyond float32 is cast (to +-inf) with NumPy's overflow
    warning on every backend and layout: the C backend's fast path passed the
    Python float and said nothing, while its general path warned."""
    x = np.array([-1.0, 2.0, -3.0, 4.0], np.float32)
    x = x if layout == "contiguous" else x[::2]
    with pytest.warns(RuntimeWarning, match="overflow"):
        got = call(x, host_backend)
    with np.errstate(over="ignore"):
        want = call(x, "numpy")
    assert np.array_equal(got, want, equal_nan=True)
    for b in (host_backend, None):       # and the automatic choice
        with np.errstate(over="ignore"):
            assert np.array_equal(call(x, b), want, equal_nan=True)


@pytest.mark.parametrize("name", [n for n in NAMES if ALL_CALLS[n][1] == 2
                                  and n != "prelu_backward"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lists_take_the_dtype_of_the_typed_argument(name, dtype):
    """A list or Python number has no dtype of its own: like a PReLU weight,
    it takes the other argument's (a list grad became float64 and was then
    refused against float32 data)."""
    fn, _ = ALL_CALLS[name]
    typed = np.array([-1.0, 0.5, 2.0], dtype)
    as_list = [1.0, -2.0, 3.0]
    want = fn(np.array(as_list, dtype), typed)
    for got in (fn(as_list, typed), fn(np.array(as_list, dtype), typed.tolist())):
        assert got.dtype == dtype and np.array_equal(got, want, equal_nan=True)
    # booleans are promoted as NumPy promotes them: with float32 data, to float32
    got = fn([True, False, True], typed)
    assert got.dtype == dtype
    assert np.array_equal(got, fn(np.array([1.0, 0.0, 1.0], dtype), typed), equal_nan=True)


def test_prelu_backward_list_grad_takes_the_dtype_of_x():
    x = np.array([[-1.0, 2.0]], np.float32)
    gx, gw = fastact.prelu_backward([[1.0, 1.0]], x, np.full(2, 0.5, np.float32))
    assert gx.dtype == gw.dtype == np.float32 and gw.tolist() == [-1.0, 0.0]
