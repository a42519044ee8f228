"""fastact.nn: layers against the functional API (bitwise, every host
backend), gradients by finite differences, SGD against its formula, PReLU
learning a slope, RReLU's seeds, both parameterizations and backends, the
losses."""
import math
import sys
import textwrap

import numpy as np
import pytest

import fastact
import fastact.nn as nn
from fastact._registry import REGISTRY

from conftest import assert_bitwise_equal
from early import EarlyProcess

HOST_BACKENDS = [b for b in ("numpy", "numba", "c") if fastact.backends()[b]["available"]]
SPEC = {s.api_name: s for s in REGISTRY.values() if s.public}
GENERATED = sorted(n for n in nn.LAYERS if n not in ("prelu", "rrelu"))


def _x(shape, dtype, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype) * 3
    x.flat[:4] = [0.0, -0.0, 1e-3, -1e-3]
    return x


def test_every_public_op_has_a_layer():
    assert fastact.nn is nn
    assert set(nn.LAYERS) == set(fastact.ACTIVATIONS)
    names = {c.__name__ for c in nn.LAYERS.values()}
    assert len(names) == len(nn.LAYERS)
    for want in ("Sigmoid", "ReLU", "LeakyReLU", "ELU", "PReLU", "RReLU", "Softmax",
                 "LogSoftmax", "SiLU", "GELU", "SwiGLU", "ReLU6"):
        assert want in names and hasattr(nn, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_layer_matches_functional_bitwise(backend, dtype):
    x = _x((6, 8), dtype)
    g = _x((6, 8), dtype, seed=1)
    for name in GENERATED:
        spec = SPEC[name]
        kw = spec.example_kwargs()
        bkw = spec.example_kwargs("backward")
        if spec.kind in ("rowwise", "gated"):
            kw["axis"] = bkw["axis"] = 0
        fwd, bwd = getattr(fastact, name), getattr(fastact, name + "_backward")
        layer = nn.LAYERS[name](**kw, backend=backend)
        y = layer.forward(x)
        want = fwd(x, **kw, backend=backend)
        assert_bitwise_equal(y, want)
        gy = g[: y.shape[0]]
        saved = want if spec.saves == "y" else x
        assert_bitwise_equal(layer.backward(gy), bwd(gy, saved, **bkw, backend=backend))
        if spec.saves == "y" or spec.from_output is not None:
            xi = x.copy()
            layer = nn.LAYERS[name](**kw, inplace=True, backend=backend)
            y = layer.forward(xi)
            assert y is xi and np.array_equal(y, want, equal_nan=True)
            fo = {"from_output": True} if spec.saves == "x" else {}
            assert_bitwise_equal(layer.backward(gy), bwd(gy, want, **bkw, **fo,
                                                          backend=backend))
        else:
            with pytest.raises(ValueError, match="inplace=True needs a backward"):
                nn.LAYERS[name](**kw, inplace=True)


@pytest.mark.parametrize("backend", HOST_BACKENDS)
def test_prelu_layer_matches_functional_and_accumulates(backend):
    x, g = _x((5, 3, 4), np.float32), _x((5, 3, 4), np.float32, seed=1)
    layer = nn.PReLU(3, init=0.3, backend=backend)
    w = np.full(3, 0.3, np.float32)
    assert_bitwise_equal(layer.forward(x), fastact.prelu(x, w, backend=backend))
    gx, gw = fastact.prelu_backward(g, x, w, backend=backend)
    assert_bitwise_equal(layer.backward(g), gx)
    assert_bitwise_equal(layer.grad, gw)
    layer.backward(g)                       # accumulates
    assert_bitwise_equal(layer.weight.grad, gw + gw)
    layer.zero_grad()
    assert not layer.grad.any()
    assert layer.parameters() == [layer.weight] and layer.weight.decay is False
    shared = nn.PReLU()
    shared.forward(x)
    shared.backward(g)
    assert shared.grad.shape == (1,)
    np.testing.assert_allclose(shared.grad[0], np.sum(np.where(x > 0, 0, g * x),
                                                       dtype=np.float64), rtol=1e-5)


def test_module_basics():
    layer = nn.LeakyReLU(0.2)
    assert repr(layer) == "LeakyReLU(negative_slope=0.2)"
    assert repr(nn.Softmax(axis=1, inplace=True)) == "Softmax(axis=1, inplace=True)"
    assert layer.training and not layer.eval().training and layer.train().training
    assert layer.parameters() == []
    with pytest.raises(RuntimeError, match="backward before forward"):
        layer.backward(np.ones(2))
    layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="grad has shape"):
        layer.backward(np.ones(3))
    with pytest.raises(TypeError):
        nn.LeakyReLU(0.1, nope=1)
    with pytest.raises(ValueError, match="alpha >= 0"):
        nn.ELU(-1.0, inplace=True)
    assert callable(nn.Threshold(0.5, 0.0))
    with pytest.raises(TypeError):
        nn.Threshold()


# --- gradients through a small network -----------------------------------------------

@pytest.mark.parametrize("act", ["sigmoid", "elu", "silu", "softplus", "gelu", "prelu",
                                 "swiglu", "log_softmax", "tanh", "mish"])
def test_finite_differences_through_a_network(act):
    rng = np.random.default_rng(3)
    width = 8
    layer = (nn.PReLU(width, dtype=np.float64) if act == "prelu"
             else nn.LAYERS[act]())
    inner = width // 2 if act == "swiglu" else width
    from fastact._demo import Linear          # the demo's NumPy layer
    net = [Linear(5, width, rng, np.float64), layer, Linear(inner, 3, rng, np.float64)]
    loss = nn.CrossEntropy()
    x = rng.standard_normal((7, 5))
    t = rng.integers(0, 3, 7)

    def run():
        h = x
        for m in net:
            h = m.forward(h)
        return float(loss.forward(h, t))

    run()
    g = loss.backward()
    for m in reversed(net):
        g = m.backward(g)
    params = [p for m in net for p in m.parameters()]
    eps = 1e-6
    for p in params:
        flat, grad = p.data.reshape(-1), p.grad.reshape(-1)
        for i in range(0, flat.size, max(1, flat.size // 6)):
            old = flat[i]
            flat[i] = old + eps
            up = run()
            flat[i] = old - eps
            down = run()
            flat[i] = old
            assert abs((up - down) / (2 * eps) - grad[i]) < 1e-6 + 1e-5 * abs(grad[i])


# --- SGD --------------------------------------------------------------------------------

def test_sgd_matches_the_formula_by_hand():
    rng = np.random.default_rng(0)
    w = nn.Parameter(rng.standard_normal(4))
    a = nn.Parameter(np.full(2, 0.25), decay=False)
    lr, mu, wd = 0.1, 0.9, 0.01
    opt = nn.SGD([w, a], lr, momentum=mu, weight_decay=wd)
    w_ref, a_ref = w.data.copy(), a.data.copy()
    dw, da = np.zeros(4), np.zeros(2)
    data_w, data_a = w.data, a.data
    for step in range(5):
        gw, ga = rng.standard_normal(4), rng.standard_normal(2)
        opt.zero_grad()
        w.grad += gw
        a.grad += ga
        opt.step()
        dw = mu * dw - lr * (gw + wd * w_ref)     # Δ := μΔ − ε(∂E/∂w + λw)
        w_ref = w_ref + dw
        da = mu * da - lr * ga                    # no decay on the PReLU slope a
        a_ref = a_ref + da
        np.testing.assert_allclose(w.data, w_ref, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(a.data, a_ref, rtol=1e-14, atol=1e-15)
    assert w.data is data_w and a.data is data_a          # in place
    assert "Delta" in nn.SGD.__doc__ or "Δ" in nn.SGD.__doc__


def test_prelu_slope_learns_what_the_regression_needs():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((256, 1)).astype(np.float32)
    target = np.where(x > 0, x, 0.6 * x)
    act, loss = nn.PReLU(), nn.MSE()
    opt = nn.SGD(act.parameters(), lr=0.2, momentum=0.9)
    for _ in range(100):
        opt.zero_grad()
        loss.forward(act.forward(x), target)
        act.backward(loss.backward())
        opt.step()
    assert abs(act.weight.data[0] - 0.6) < 1e-3


# --- losses ---------------------------------------------------------------------------

def test_cross_entropy_values_gradient_and_large_logits():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5))
    t = np.array([0, 4, 2, 2])
    ce = nn.CrossEntropy()
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    np.testing.assert_allclose(ce(x, t), -np.log(p[np.arange(4), t]).mean(), rtol=1e-13)
    onehot = np.eye(5)[t]
    np.testing.assert_allclose(ce.backward(), (p - onehot) / 4, rtol=1e-12, atol=1e-15)
    big = np.array([[1e4, 0.0, -1e4], [5e3, 5e3 + 1, 0.0]], np.float32)
    value = ce(big, np.array([1, 1]))
    assert np.isfinite(value)
    np.testing.assert_allclose(value, (1e4 + np.log1p(np.exp(-1.0))) / 2, rtol=1e-6)
    g = ce.backward()
    assert np.isfinite(g).all() and g.dtype == np.float32
    with pytest.raises(ValueError, match="logits of shape"):
        ce(x, t[:2])


def test_mse():
    m = nn.MSE()
    x, t = np.array([1.0, 2.0, 4.0]), np.array([0.0, 2.0, 1.0])
    assert m(x, t) == pytest.approx(10 / 3)
    np.testing.assert_array_equal(m.backward(), 2 * (x - t) / 3)


# --- RReLU ------------------------------------------------------------------------------

def test_rrelu_train_eval_and_the_counter():
    x = -np.abs(_x((3, 50), np.float64)) - 1
    layer = nn.RReLU(seed=7)
    y0 = layer.forward(x)
    assert layer.counter == 1
    assert_bitwise_equal(y0, fastact.rrelu(x, training=True, seed=layer.call_seed(0)))
    y1 = layer.forward(x)
    assert layer.counter == 2 and not np.array_equal(y0, y1)      # fresh slopes
    assert_bitwise_equal(y1, fastact.rrelu(x, training=True, seed=layer.call_seed(1)))
    assert_bitwise_equal(y0, nn.RReLU(seed=7).forward(x))          # the seed reproduces
    assert not np.array_equal(y0, nn.RReLU(seed=8).forward(x))
    slopes = y0 / x
    assert (slopes >= 1 / 8).all() and (slopes < 1 / 3).all()
    layer.eval()
    assert_bitwise_equal(layer.forward(x), fastact.rrelu(x))        # (lower + upper) / 2
    assert layer.counter == 2                                       # evaluation draws nothing
    layer.backward(np.ones_like(x))
    assert nn.RReLU().seed != nn.RReLU().seed                       # fresh entropy
    seq = np.random.SeedSequence(7)
    assert_bitwise_equal(nn.RReLU(seed=seq).forward(x), y0)        # a SeedSequence works too
    child = nn.RReLU(seed=seq.spawn(1)[0]).forward(x)
    assert not np.array_equal(child, y0)
    assert "seed=7" in repr(nn.RReLU(seed=7))


def test_rrelu_backward_uses_the_last_forwards_seed_and_shape():
    x = -np.abs(_x((4, 30), np.float32)) - 1
    layer = nn.RReLU(seed=3)
    layer.forward(x)
    layer.forward(x)          # backward differentiates this one (counter 1)
    g = np.ones_like(x)
    want = fastact.rrelu_backward(g, x, training=True, seed=layer.call_seed(1))
    assert_bitwise_equal(layer.backward(g), want)
    assert not np.array_equal(want, fastact.rrelu_backward(g, x, training=True,
                                                           seed=layer.call_seed(0)))
    with pytest.raises(ValueError, match="grad has shape"):
        layer.backward(g[:2])         # a slice of the output: refused, not other slopes


def test_rrelu_divisor_form_eval_and_mean_slope():
    x = -np.ones(1_000_000)
    layer = nn.RReLU(3.0, 8.0, seed=11, divide=True)
    slopes = -layer.forward(x)
    assert slopes.min() > 1 / 8 and slopes.max() <= 1 / 3
    # E[1/a] over a ~ U(3, 8) is ln(8/3)/5; the sample's standard error ~6e-5
    assert abs(slopes.mean() - math.log(8 / 3) / 5) < 4e-4
    assert_bitwise_equal(layer.backward(np.ones_like(x)), slopes)
    layer.eval()
    np.testing.assert_array_equal(layer.forward(np.array([-5.5, 2.0])), [-1.0, 2.0])
    with pytest.raises(ValueError, match="lower must be positive"):
        nn.RReLU(0.0, 8.0, divide=True)
    with pytest.raises(ValueError, match="given with training=False"):
        fastact.rrelu(x, 3.0, 8.0, seed=1, divide=True)


@pytest.mark.parametrize("divide", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rrelu_layer_bit_identical_across_host_backends(divide, dtype):
    x = _x((7, 301), dtype)
    g = _x((7, 301), dtype, seed=5)
    lo, up = (3.0, 8.0) if divide else (1 / 8, 1 / 3)
    got = []
    for b in HOST_BACKENDS:
        layer = nn.RReLU(lo, up, seed=2**70 + 5, divide=divide, backend=b)
        layer.forward(x)
        ys = layer.forward(x)        # the second draw
        got.append((ys, layer.backward(g)))
    for ys, gs in got[1:]:
        assert_bitwise_equal(ys, got[0][0])
        assert_bitwise_equal(gs, got[0][1])


def _simulated(name, script, timeout):
    """``script`` in a child under numba's CUDA simulator, started early
    (early.EarlyProcess); :func:`_check_simulated` reads it."""
    return EarlyProcess(name, [sys.executable, "-c", textwrap.dedent(script)],
                        env={"NUMBA_ENABLE_CUDASIM": "1"}, timeout=timeout)


def _check_simulated(child):
    """The child must print ok (a skip where the simulator is unavailable)."""
    res = child.result()
    if "CudaSupportError" in res.stderr or "No module named" in res.stderr:
        pytest.skip(f"numba's CUDA simulator unavailable: {res.stderr[-200:]}")
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-3000:]


RRELU_SIM = _simulated(
    "nn: rrelu under the cuda simulator", """
    import numpy as np, fastact, fastact.nn as nn
    from numba import cuda
    for dt in (np.float32, np.float64):
        x = (np.random.default_rng(0).standard_normal(257) * 3).astype(dt)
        g = np.random.default_rng(1).standard_normal(257).astype(dt)
        for kw in (dict(lower=0.1, upper=0.3), dict(lower=3.0, upper=8.0, divide=True)):
            kw.update(training=True, seed=99)
            d = fastact.rrelu(cuda.to_device(x), **kw).copy_to_host()
            r = fastact.rrelu(x, backend="numpy", **kw)
            assert d.tobytes() == r.tobytes(), (dt, kw)
            d = fastact.rrelu_backward(cuda.to_device(g), cuda.to_device(x), **kw)
            r = fastact.rrelu_backward(g, x, backend="numpy", **kw)
            assert d.copy_to_host().tobytes() == r.tobytes(), (dt, kw)
    # generated layers take device arrays as the functions do
    x = cuda.to_device(np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32))
    g = cuda.to_device(np.ones((4, 6), np.float32))
    for layer, fn in ((nn.Sigmoid(inplace=True), "sigmoid"), (nn.ELU(), "elu"),
                      (nn.Softmax(axis=0), "softmax")):
        y = layer.forward(cuda.to_device(x.copy_to_host()))
        want = getattr(fastact, fn)(x, **({"axis": 0} if fn == "softmax" else {}))
        assert y.copy_to_host().tobytes() == want.copy_to_host().tobytes(), fn
        layer.backward(g).copy_to_host()
    r = nn.RReLU(3.0, 8.0, seed=5, divide=True)
    a = r.forward(x).copy_to_host()
    assert a.tobytes() == nn.RReLU(3.0, 8.0, seed=5, divide=True, backend="numpy").forward(
        x.copy_to_host()).tobytes()
    print("ok")
""", timeout=120)


@pytest.mark.early(RRELU_SIM)
def test_rrelu_cuda_simulator_bit_identical_in_both_forms():
    """The CUDA kernels (numba's simulator, as CI runs them) give the
    reference's bits for both parameterizations."""
    _check_simulated(RRELU_SIM)


PRELU_SGD_SIM = _simulated(
    "nn: prelu, losses and sgd under the cuda simulator", """
    import numpy as np, fastact, fastact.nn as nn
    from numba import cuda
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        x = rng.standard_normal((8, 3, 5)).astype(dt)
        t = rng.standard_normal((8, 3, 5)).astype(dt)
        logits = rng.standard_normal((8, 4)).astype(dt) * 5
        labels = rng.integers(0, 4, 8)
        runs = {}
        for side in ("cpu", "cuda"):
            layer = nn.PReLU(3, dtype=dt).to(side)
            layer2 = nn.PReLU(1, dtype=dt)            # moved after the optimizer is built
            opt = nn.SGD(layer.parameters() + layer2.parameters(), lr=0.1, momentum=0.9,
                         weight_decay=0.01)
            layer2.to(side)
            dev = (lambda a: cuda.to_device(a)) if side == "cuda" else (lambda a: a)
            host = (lambda a: a.copy_to_host()) if side == "cuda" else (lambda a: a)
            mse, ce = nn.MSE(), nn.CrossEntropy()
            out = []
            for step in range(3):
                opt.zero_grad()
                y = layer2.forward(layer.forward(dev(x)))
                loss = mse.forward(y, dev(t))
                layer.backward(layer2.backward(mse.backward()))
                l2 = ce.forward(dev(logits), labels)
                gce = host(ce.backward())
                opt.step()
                out += [host(layer.weight.data).copy(), host(layer2.weight.data).copy(),
                        host(layer.weight.grad).copy(), np.array([loss, l2]), gce]
            runs[side] = out
        # (the CUDA backend's weight gradient sums in another order, and
        # exp rounds its own way: a few ULP, carried through the steps)
        eps = np.finfo(dt).eps
        for k, (a, b) in enumerate(zip(runs["cpu"], runs["cuda"])):
            # (the cross-entropy gradient exp(lp) - 1 at the label: an
            # absolute bound, the subtraction cancels)
            atol = eps if k % 5 == 4 else 0
            assert np.allclose(a, b, rtol=16 * eps, atol=atol), (dt, k, a, b)
        # SGD's update itself: the host's arithmetic, bit for bit
        for decay in (True, False):
            p_h = nn.Parameter(rng.standard_normal(37).astype(dt), decay=decay)
            p_d = nn.Parameter(p_h.data.copy(), decay=decay).to("cuda")
            opts = [nn.SGD([p], lr=0.05, momentum=0.9, weight_decay=0.01) for p in (p_h, p_d)]
            for step in range(4):
                gr = rng.standard_normal(37).astype(dt)
                p_h.grad[...] = gr
                p_d.grad = cuda.to_device(gr)
                for o in opts:
                    o.step()
                assert p_h.data.tobytes() == p_d.data.copy_to_host().tobytes(), (dt, step)
                opts[1].zero_grad()
                assert not p_d.grad.copy_to_host().any()
    layer = nn.PReLU(3)
    try:
        layer.forward(cuda.to_device(np.ones((2, 3), np.float32)))
    except ValueError as e:
        assert "layer.to('cuda')" in str(e), e
    else:
        raise SystemExit("no error for host slopes")
    print("ok")
""", timeout=300)


@pytest.mark.early(PRELU_SGD_SIM)
def test_prelu_losses_and_sgd_on_device_match_the_host_steps():
    """PReLU's slopes, both losses and SGD (momentum, weight decay) on CUDA
    device arrays (numba's simulator): several training steps give the host
    steps' slopes, losses and gradients (bit for bit, but the
    cross-entropy gradient's exponential: within 1 ULP); a device input
    meeting host slopes is an error that says to move the layer."""
    _check_simulated(PRELU_SGD_SIM)


def test_readme_training_example_runs_and_learns():
    import pathlib
    import re
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"## Training.*?```python\n(.*?)```", text, re.S).group(1)
    scope = {}
    exec(compile(code.replace("print(", "(lambda *a: None)("), "README", "exec"), scope)
    assert scope["value"] < 0.1                       # it learned the XOR-like target
    assert not np.allclose(scope["act"].weight.data, 0.25)     # and moved the slopes


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_layers_losses_and_sgd_take_the_narrow_dtypes(dtype):
    """float16 and bfloat16 (host): the layers give the functions' bits,
    PReLU's slopes and their gradient keep the dtype, SGD and the losses
    run in it."""
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dt = np.dtype(ml_dtypes.bfloat16)
    else:
        dt = np.dtype(np.float16)
    x = np.random.default_rng(0).standard_normal((8, 3, 5)).astype(dt)
    g = np.ones_like(x)
    layer = nn.PReLU(3, dtype=dt)
    y = layer.forward(x)
    gx = layer.backward(g)
    want_gx, want_gw = fastact.prelu_backward(g, x, layer.weight.data)
    assert y.tobytes() == fastact.prelu(x, layer.weight.data).tobytes()
    assert gx.tobytes() == want_gx.tobytes()
    assert layer.weight.grad.dtype == dt and layer.weight.grad.tobytes() == want_gw.tobytes()
    before = layer.weight.data.copy()
    nn.SGD(layer.parameters(), lr=0.5, momentum=0.9).step()
    assert layer.weight.data.dtype == dt and not np.array_equal(before, layer.weight.data)
    s = nn.Sigmoid()
    assert s.forward(x).tobytes() == fastact.sigmoid(x).tobytes()
    assert s.backward(g).tobytes() == fastact.sigmoid_backward(g, fastact.sigmoid(x)).tobytes()
    ce = nn.CrossEntropy()
    loss = ce.forward(x.reshape(8, 15), np.arange(8) % 15)
    assert np.isfinite(float(loss)) and ce.backward().dtype == dt
    m = nn.MSE()
    assert np.isfinite(float(m.forward(y, np.zeros_like(y)))) and m.backward().dtype == dt
