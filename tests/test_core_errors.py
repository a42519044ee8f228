"""Error paths of the public layer: dtypes, shapes, parameters, device/host mixing."""
import numpy as np
import pytest

import fastact
from conftest import ALL_CALLS

NAMES = sorted(ALL_CALLS)
BAD_DTYPES = [np.int32, np.int64, np.uint8, np.bool_, np.complex64, np.complex128, np.float16,
              np.longdouble, object, "U3"]


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
def test_python_ints_are_rejected_not_cast(name):
    fn, nargs = ALL_CALLS[name]
    with pytest.raises(TypeError, match="int64"):
        fn(*([[1, 2, 3]] * nargs))


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
