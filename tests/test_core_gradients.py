"""Every backward pass against central finite differences of its forward (float64),
and forward/backward values and kink/NaN conventions against PyTorch."""
import numpy as np
import pytest

import fastact
from conftest import REGISTRY_OPS

H = 1e-6


def _fd(f, x, g):
    """d/dx sum(g * f(x)) by central differences, one element at a time (vectorized)."""
    n = x.size
    eye = np.eye(n).reshape((n,) + x.shape)
    out = np.empty(n)
    for i in range(n):
        out[i] = np.sum(g * (f(x + H * eye[i]) - f(x - H * eye[i]))) / (2 * H)
    return out.reshape(x.shape)


def _away_from_kinks(rng, shape, scale=2.0, kinks=(0.0,)):
    x = rng.standard_normal(shape) * scale
    for k in kinks:                      # finite differences straddling a kink measure nothing useful
        near = np.abs(x - k) < 1e-3
        x[near] = k + np.where(x[near] >= k, 0.01, -0.01)
    return x


ELEMENTWISE = {
    "sigmoid": (lambda x, b: fastact.sigmoid(x, backend=b),
                lambda g, x, b: fastact.sigmoid_backward(g, fastact.sigmoid(x, backend=b), backend=b)),
    "relu": (lambda x, b: fastact.relu(x, backend=b),
             lambda g, x, b: fastact.relu_backward(g, fastact.relu(x, backend=b), backend=b)),
    "leaky_relu": (lambda x, b: fastact.leaky_relu(x, 0.2, backend=b),
                   lambda g, x, b: fastact.leaky_relu_backward(g, x, 0.2, backend=b)),
    "rrelu_eval": (lambda x, b: fastact.rrelu(x, 0.1, 0.4, backend=b),
                   lambda g, x, b: fastact.rrelu_backward(g, x, 0.1, 0.4, backend=b)),
    "rrelu_train": (lambda x, b: fastact.rrelu(x, 0.1, 0.4, training=True, seed=8, backend=b),
                    lambda g, x, b: fastact.rrelu_backward(g, x, 0.1, 0.4, training=True, seed=8,
                                                           backend=b)),
    "elu": (lambda x, b: fastact.elu(x, 1.3, backend=b),
            lambda g, x, b: fastact.elu_backward(g, x, 1.3, backend=b)),
}
KINKS = {}
for _op in REGISTRY_OPS:         # the catalogue, from the registry
    ELEMENTWISE[_op.id] = (
        lambda x, b, o=_op: o.fwd(x, backend=b),
        lambda g, x, b, o=_op: o.bwd(g, o.fwd(x, backend=b) if o.saves == "y" else x, backend=b))
    KINKS[_op.id] = (0.0,) + _op.kinks


@pytest.mark.parametrize("op", sorted(ELEMENTWISE))
def test_elementwise_backward_matches_finite_differences(host_backend, op):
    fwd, bwd = ELEMENTWISE[op]
    rng = np.random.default_rng(0)
    x = _away_from_kinks(rng, (3, 7), kinks=KINKS.get(op, (0.0,)))
    g = rng.standard_normal(x.shape)
    want = _fd(lambda v: fwd(v, host_backend), x, g)
    got = bwd(g, x, host_backend)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_backward_matches_finite_differences(host_backend, axis):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5)) * 2
    g = rng.standard_normal(x.shape)
    want = _fd(lambda v: fastact.softmax(v, axis=axis, backend=host_backend), x, g)
    y = fastact.softmax(x, axis=axis, backend=host_backend)
    got = fastact.softmax_backward(g, y, axis=axis, backend=host_backend)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("shape,axis,C", [((4, 3, 5), 1, 3), ((6, 4), -1, 4), ((2, 3, 4), 0, 2),
                                          ((11,), 1, 1), ((3, 4), 1, 1)])
def test_prelu_backward_matches_finite_differences(host_backend, shape, axis, C):
    rng = np.random.default_rng(2)
    x = _away_from_kinks(rng, shape)
    g = rng.standard_normal(shape)
    w = rng.uniform(0.05, 0.5, C)
    gx, gw = fastact.prelu_backward(g, x, w, axis=axis, backend=host_backend)
    want_x = _fd(lambda v: fastact.prelu(v, w, axis=axis, backend=host_backend), x, g)
    want_w = _fd(lambda v: fastact.prelu(x, v, axis=axis, backend=host_backend), w, g)
    np.testing.assert_allclose(gx, want_x, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gw, want_w, rtol=1e-6, atol=1e-8)


# --- PyTorch parity ------------------------------------------------------------------------

SPECIAL = [np.nan, 0.0, -0.0, np.inf, -np.inf, -1.0, 1.0, -1e-3, 2.5, -30.0, 1e-300, -1e-300]


def _torch_pair(torch, fn, x, g):
    t = torch.tensor(x, requires_grad=True)
    y = fn(t)
    y.backward(torch.tensor(g))
    return y.detach().numpy(), t.grad.numpy()


def _torch_cases(torch, F):
    tf = torch.nn.functional
    return {
        "relu": (torch.relu, lambda x: F.relu(x),
                 lambda g, x: F.relu_backward(g, F.relu(x))),
        "relu_from_x": (torch.relu, lambda x: F.relu(x), lambda g, x: F.relu_backward(g, x)),
        "leaky_relu": (lambda t: tf.leaky_relu(t, 0.05), lambda x: F.leaky_relu(x, 0.05),
                       lambda g, x: F.leaky_relu_backward(g, x, 0.05)),
        "leaky_relu_default": (tf.leaky_relu, lambda x: F.leaky_relu(x),
                               lambda g, x: F.leaky_relu_backward(g, x)),
        "rrelu_eval": (lambda t: tf.rrelu(t, 0.1, 0.3, training=False),
                       lambda x: F.rrelu(x, 0.1, 0.3), lambda g, x: F.rrelu_backward(g, x, 0.1, 0.3)),
        "elu": (lambda t: tf.elu(t, 0.7), lambda x: F.elu(x, 0.7),
                lambda g, x: F.elu_backward(g, x, 0.7)),
        "elu_default": (tf.elu, lambda x: F.elu(x), lambda g, x: F.elu_backward(g, x)),
        "sigmoid": (torch.sigmoid, lambda x: F.sigmoid(x),
                    lambda g, x: F.sigmoid_backward(g, F.sigmoid(x))),
    }


@pytest.mark.parametrize("op", ["relu", "relu_from_x", "leaky_relu", "leaky_relu_default",
                                "rrelu_eval", "elu", "elu_default", "sigmoid"])
def test_matches_torch_at_kinks_and_nan(host_backend, torch, dtype, op):
    """Forward values and gradient conventions at 0, -0.0, +-inf and NaN, as PyTorch."""
    tfn, ffwd, fbwd = _torch_cases(torch, fastact)[op]
    x = np.array(SPECIAL, dtype)
    g = np.linspace(0.5, 2.0, x.size).astype(dtype)
    ty, tg = _torch_pair(torch, tfn, x, g)
    with fastact.use_backend(host_backend):
        y, gx = ffwd(x), fbwd(g, x)
    exact = op.startswith(("relu", "leaky", "rrelu"))
    rtol = 0 if exact else 8 * np.finfo(dtype).eps
    np.testing.assert_allclose(y, ty, rtol=rtol, atol=0, equal_nan=True, err_msg="forward")
    np.testing.assert_allclose(gx, tg, rtol=rtol, atol=0, equal_nan=True, err_msg="backward")


def test_prelu_matches_torch(host_backend, torch, dtype):
    x = np.resize(np.array(SPECIAL[1:], dtype), (2, 4, 6))
    x[1, 2, 3] = np.nan
    g = np.random.default_rng(3).uniform(0.5, 2, x.shape).astype(dtype)
    w = np.array([0.1, 0.25, 0.5, 0.0], dtype)
    t = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.prelu(t, tw)
    ty.backward(torch.tensor(g))
    y = fastact.prelu(x, w, backend=host_backend)
    gx, gw = fastact.prelu_backward(g, x, w, backend=host_backend)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(gx, t.grad.numpy())
    # the weight gradient is a sum: equal up to summation order; NaN where torch has NaN
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-5 if dtype == np.float32 else 1e-12,
                               equal_nan=True)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_matches_torch(host_backend, torch, dtype, axis):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((5, 6)) * 3).astype(dtype)
    x[0, 0] = -np.inf
    g = rng.standard_normal(x.shape).astype(dtype)
    t = torch.tensor(x, requires_grad=True)
    ty = torch.softmax(t, axis)
    ty.backward(torch.tensor(g))
    y = fastact.softmax(x, axis=axis, backend=host_backend)
    gx = fastact.softmax_backward(g, y, axis=axis, backend=host_backend)
    tol = 32 * np.finfo(dtype).eps
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=0)
    np.testing.assert_allclose(gx, t.grad.numpy(), rtol=tol, atol=tol)


def test_leaky_relu_default_slope_is_torch_default(torch):
    x = np.array([-3.0])
    assert fastact.leaky_relu(x)[0] == torch.nn.functional.leaky_relu(torch.tensor(x))[0].item()
    assert fastact.elu(x)[0] == pytest.approx(torch.nn.functional.elu(torch.tensor(x))[0].item())
    # rrelu's evaluation defaults: lower=1/8, upper=1/3
    r = torch.nn.functional.rrelu(torch.tensor(x), training=False)[0].item()
    assert fastact.rrelu(x)[0] == r
