"""Layers, losses and an optimizer for training with fastact's kernels.

One layer class per public activation, generated from the registry as the
functions of :mod:`fastact` are: ``forward(x)`` keeps what the registry
says the backward reads (``x`` or ``y``), ``backward(grad)`` returns the
input gradient and adds parameter gradients to ``Parameter.grad``.  Layers
where the backward can read the output (``saves="y"``, or a
``from_output`` entry) take ``inplace=True``: the forward then overwrites
its input.  ``backend=`` is passed through to every call.  The generated
layers, :class:`RReLU`, the losses and :class:`SGD` take host and CUDA
device arrays, as the functions do; a layer's parameters (:class:`PReLU`'s
slopes) live on one side, the host until ``layer.to("cuda")`` moves them
(fastact never transfers data for you: a device input meeting host slopes
is an error that says so).

>>> import numpy as np, fastact.nn as nn
>>> act = nn.PReLU()
>>> y = act.forward(np.array([[-2.0, 3.0]], np.float32))
>>> gx = act.backward(np.ones((1, 2), np.float32))
>>> y, gx, act.weight.grad
(array([[-0.5,  3. ]], dtype=float32), array([[0.25, 1.  ]], dtype=float32), array([-2.], dtype=float32))
"""
from __future__ import annotations

import inspect

import numpy as np

from . import _api
from ._registry import REGISTRY

__all__ = ["Module", "Parameter", "SGD", "CrossEntropy", "MSE", "PReLU", "RReLU", "LAYERS"]


class Parameter:
    """A trainable array ``data`` with its gradient ``grad`` (zeros of its
    shape, accumulated by the layers' ``backward``).  ``decay``: whether
    :class:`SGD`'s weight decay applies (PReLU's slopes: no)."""

    def __init__(self, data, *, decay=True):
        self.data = data
        self.grad = _zeros_like(data)
        self.decay = decay

    @property
    def device(self) -> str:
        """Where ``data`` and ``grad`` live: ``"cpu"`` or ``"cuda"``."""
        return "cuda" if _api._is_device(self.data) else "cpu"

    def to(self, device):
        """Move ``data`` and ``grad`` to ``device`` (``"cpu"`` or ``"cuda"``),
        in place of the old arrays; returns self."""
        if device not in ("cpu", "cuda"):
            raise ValueError(f"fastact.nn: device must be 'cpu' or 'cuda', got {device!r}")
        if device != self.device:
            if device == "cuda":
                from . import _nn_cuda
                self.data, self.grad = _nn_cuda.to_device(self.data), \
                    _nn_cuda.to_device(self.grad)
            else:
                self.data, self.grad = self.data.copy_to_host(), self.grad.copy_to_host()
        return self

    def __repr__(self):
        return (f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype}, "
                f"device={self.device!r})")


def _zeros_like(a):
    if _api._is_device(a):
        from . import _nn_cuda
        return _nn_cuda.zeros_like(a)
    return np.zeros_like(a)


def _clear(a):
    if _api._is_device(a):
        from . import _nn_cuda
        _nn_cuda.fill(a, 0)
    else:
        a[...] = 0


def _accumulate(dst, src):
    """dst += src, on the host or the device (both on one side)."""
    if _api._is_device(dst):
        from . import _nn_cuda
        _nn_cuda.add_(dst, src)
    else:
        dst += src


class Module:
    """What every layer has: ``training`` with ``train()`` / ``eval()``,
    ``parameters()``, ``zero_grad()``; ``__call__`` is ``forward``."""
    training = True

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def parameters(self):
        return [v for v in vars(self).values() if isinstance(v, Parameter)]

    def zero_grad(self):
        for p in self.parameters():
            _clear(p.grad)

    def to(self, device):
        """Move the parameters to ``device`` (``"cpu"`` or ``"cuda"``); returns
        self.  An optimizer built before keeps working: its state follows."""
        for p in self.parameters():
            p.to(device)
        return self

    def __call__(self, x):
        return self.forward(x)

    def _saved_or_fail(self):
        saved = getattr(self, "_saved", None)
        if saved is None:
            raise RuntimeError(f"fastact.nn.{type(self).__name__}: backward before forward")
        return saved


def _check_grad(layer, grad, shape):
    if tuple(grad.shape) != tuple(shape):
        raise ValueError(f"fastact.nn.{type(layer).__name__}: grad has shape "
                         f"{tuple(grad.shape)}, the last forward's output {tuple(shape)}")


# --- the generated layers ----------------------------------------------------------

#: spellings of the registry names' words in class names (others: capitalized)
_WORDS = {"relu": "ReLU", "relu6": "ReLU6", "elu": "ELU", "selu": "SELU", "celu": "CELU",
          "silu": "SiLU", "gelu": "GELU", "glu": "GLU", "reglu": "ReGLU", "geglu": "GEGLU",
          "swiglu": "SwiGLU", "prelu": "PReLU", "rrelu": "RReLU", "logsigmoid": "LogSigmoid"}


def class_name(api_name: str) -> str:
    """The layer class of public op ``api_name``: ``leaky_relu`` -> ``LeakyReLU``."""
    return "".join(_WORDS.get(w, w.capitalize()) for w in api_name.split("_"))


class Activation(Module):
    """A generated layer: registry entry ``_spec``, its public pair
    ``_forward`` / ``_backward``; the constructor takes the forward's
    parameters (and ``axis`` for the softmax family), ``inplace`` and
    ``backend``."""
    _spec = None
    _forward = _backward = None
    _signature = None

    def __init__(self, *args, inplace=False, backend=None, **kwargs):
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        self.kwargs = dict(bound.arguments)
        spec = self._spec
        self.inplace = bool(inplace)
        self.backend = backend
        # from y: the backward reads the output, so the forward may overwrite x
        self._from_output = spec.saves == "x" and spec.from_output is not None and inplace
        if inplace:
            if spec.saves != "y" and spec.from_output is None:
                raise ValueError(f"fastact.nn.{type(self).__name__}: inplace=True needs a "
                                 f"backward from the output; {spec.api_name}'s reads x")
            if self._from_output:     # refused where y does not determine the derivative
                route = spec.route or _api._default_route(spec)
                if route is not None:
                    name, p = route(spec.api_name, *(self.kwargs[q.name] for q in spec.api))
                    _api._backward_pass(spec.api_name + "_backward", name, True, p)
        bw = set(p.name for p in spec.api_of("backward")) | {"axis"}
        self._bkwargs = {k: v for k, v in self.kwargs.items() if k in bw}
        self._saved = None

    def forward(self, x):
        out = x if self.inplace else None
        y = type(self)._forward(x, **self.kwargs, out=out, backend=self.backend)
        saved = y if (self._spec.saves == "y" or self._from_output) else x
        self._saved = (saved, tuple(y.shape))
        return y

    def backward(self, grad):
        saved, shape = self._saved_or_fail()
        _check_grad(self, grad, shape)
        kw = {"from_output": True} if self._from_output else {}
        return type(self)._backward(grad, saved, **self._bkwargs, **kw, backend=self.backend)

    def __repr__(self):
        parts = [f"{k}={v!r}" for k, v in self.kwargs.items()]
        if self.inplace:
            parts.append("inplace=True")
        if self.backend is not None:
            parts.append(f"backend={self.backend!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _layer(spec):
    fwd = _api.GENERATED[spec.api_name]
    params = list(inspect.signature(fwd).parameters.values())[1:]
    # (method=: the softmax family's choice for dask arrays, not a layer's)
    params = [p for p in params if p.name not in ("out", "backend", "stream", "method")]
    sig = inspect.Signature(params)
    name = class_name(spec.api_name)
    doc = (f"Layer of :func:`fastact.{spec.api_name}` (generated from the registry).\n\n"
           f"    Parameters as the function's: {sig}; ``inplace=True`` "
           + ("overwrites x (the backward reads the output)." if spec.saves == "y" or
              spec.from_output is not None else "is refused (the backward reads x).")
           + "\n    ``backend=`` is passed through.\n")
    cls = type(name, (Activation,), {
        "_spec": spec, "_forward": staticmethod(fwd),
        "_backward": staticmethod(_api.GENERATED[spec.api_name + "_backward"]),
        "_signature": sig, "__doc__": doc, "__module__": __name__})
    cls.__init__ = _with_signature(Activation.__init__, sig)
    return cls


def _with_signature(init, sig):
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d)
             for n, d in (("inplace", False), ("backend", None))]
    ps = list(sig.parameters.values())
    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + ps + extra)
    return __init__


# --- PReLU ------------------------------------------------------------------------------

class PReLU(Module):
    r"""Parametric ReLU (He et al., 2015): ``y = x`` where ``x > 0``, else
    ``a_c x``, with slopes ``a`` learned (``weight``, a :class:`Parameter`).

    ``num_parameters=1`` shares one slope; ``C`` gives one per channel along
    ``axis`` (of size ``C``).  The slopes start at ``init`` (0.25 in the
    paper).  ``backward`` adds :func:`fastact.prelu_backward`'s weight
    gradient, already summed over the batch, to ``weight.grad`` (also
    ``grad``).  The slopes take no weight decay (``weight.decay`` False),
    as in the paper."""

    def __init__(self, num_parameters=1, init=0.25, *, axis=1, dtype=np.float32,
                 backend=None):
        if int(num_parameters) < 1:
            raise ValueError("fastact.nn.PReLU: num_parameters must be at least 1")
        self.weight = Parameter(np.full(int(num_parameters), init, dtype=dtype), decay=False)
        self.axis = axis
        self.backend = backend
        self._saved = None

    @property
    def grad(self):
        return self.weight.grad

    def forward(self, x):
        self._check_side(x)
        y = _api.prelu(x, self.weight.data, axis=self.axis, backend=self.backend)
        self._saved = (x, tuple(y.shape))
        return y

    def backward(self, grad):
        x, shape = self._saved_or_fail()
        _check_grad(self, grad, shape)
        self._check_side(grad)
        gx, gw = _api.prelu_backward(grad, x, self.weight.data, axis=self.axis,
                                     backend=self.backend)
        _accumulate(self.weight.grad, gw)
        return gx

    def _check_side(self, a):
        side = "cuda" if _api._is_device(a) else "cpu"
        if side != self.weight.device:
            where = "a CUDA device array" if side == "cuda" else "a host array"
            raise ValueError(f"fastact.nn.PReLU: the input is {where} but the slopes are on "
                             f"{self.weight.device!r}: move the layer first "
                             f"(layer.to({side!r}))")

    def __repr__(self):
        return (f"PReLU(num_parameters={self.weight.data.size}, axis={self.axis}, "
                f"dtype={np.dtype(self.weight.data.dtype).name})")


# --- RReLU ------------------------------------------------------------------------------

class RReLU(Module):
    r"""Randomized leaky ReLU (Xu et al., 2015) with a fresh draw per forward.

    In training each forward draws new slopes ``a ~ U[lower, upper]``
    (:func:`fastact.rrelu` with ``training=True``): the call's seed comes
    from the layer's ``seed`` (an int or a :class:`numpy.random.SeedSequence`;
    a fresh one's entropy when None) and a counter advanced by one per
    training forward, ``SeedSequence(seed, spawn_key=(counter,))``.  ``backward`` uses the
    last forward's seed and shape: it always differentiates the last
    forward (a grad of another shape is a ``ValueError``), so no slice or
    interleaving can give it other slopes.  In evaluation the slope is
    ``(lower + upper) / 2``.

    ``divide=True`` is Xu et al.'s own parameterization: ``y = x / a`` with
    ``a ~ U[lower, upper]`` in training (``RReLU(3, 8, divide=True)`` as in
    the paper), ``y = x 2 / (lower + upper)`` in evaluation."""

    def __init__(self, lower=1 / 8, upper=1 / 3, *, seed=None, divide=False, inplace=False,
                 backend=None):
        if inplace:
            raise ValueError("fastact.nn.RReLU: inplace=True needs a backward from the "
                             "output; rrelu's reads x")
        _api.GENERATED["rrelu"](np.zeros(1), lower, upper, divide=divide)   # validates
        self.lower, self.upper, self.divide = lower, upper, bool(divide)
        seq = seed if isinstance(seed, np.random.SeedSequence) else \
            np.random.SeedSequence(seed)
        self.seed, self._spawn_key = seq.entropy, tuple(seq.spawn_key)
        self.counter = 0
        self.backend = backend
        self._saved = None

    def call_seed(self, counter):
        """The seed of training forward number ``counter`` (0, 1, ...)."""
        seq = np.random.SeedSequence(self.seed, spawn_key=self._spawn_key + (counter,))
        return int(seq.generate_state(2, np.uint32).view(np.uint64)[0])

    def _kw(self, seed):
        kw = dict(training=seed is not None, divide=self.divide, backend=self.backend)
        if seed is not None:
            kw["seed"] = seed
        return kw

    def forward(self, x):
        seed = None
        if self.training:
            seed = self.call_seed(self.counter)
            self.counter += 1
        y = _api.GENERATED["rrelu"](x, self.lower, self.upper, **self._kw(seed))
        self._saved = (x, seed, tuple(y.shape))
        return y

    def backward(self, grad):
        x, seed, shape = self._saved_or_fail()
        _check_grad(self, grad, shape)
        return _api.GENERATED["rrelu_backward"](grad, x, self.lower, self.upper,
                                                **self._kw(seed))

    def __repr__(self):
        div = ", divide=True" if self.divide else ""
        return f"RReLU(lower={self.lower!r}, upper={self.upper!r}, seed={self.seed!r}{div})"


# --- losses ------------------------------------------------------------------------------

class CrossEntropy(Module):
    r"""Mean cross-entropy of logits ``x`` (batch, classes) against integer
    labels: ``L = -mean_n log_softmax(x)_{n, t_n}``.  The log-softmax shifts
    by the row maximum, so large logits neither overflow nor lose the loss;
    ``backward()`` returns the fused gradient ``(softmax(x) - onehot(t)) /
    N`` (times ``grad``, default 1)."""

    def __init__(self, *, backend=None):
        self.backend = backend
        self._saved = None

    def forward(self, x, target):
        device = _api._is_device(x)
        if not device:
            target = np.asarray(target)
        if x.ndim != 2 or tuple(target.shape) != tuple(x.shape[:1]):
            raise ValueError(f"fastact.nn.CrossEntropy: logits of shape (N, C) and N labels, "
                             f"got {tuple(x.shape)} and {tuple(target.shape)}")
        lp = _api.GENERATED["log_softmax"](x, axis=-1, backend=self.backend)
        if device:          # the loss comes back to the host; labels go to the device
            from . import _nn_cuda
            loss, t = _nn_cuda.cross_entropy(lp, target)
            self._saved = (lp, t, None)
            return lp.dtype.type(loss)
        rows = np.arange(x.shape[0])
        self._saved = (lp, target, rows)
        return lp.dtype.type(-lp[rows, target].mean(dtype=np.float64))

    def backward(self, grad=1.0):
        lp, target, rows = self._saved_or_fail()
        if rows is None:
            from . import _nn_cuda
            return _nn_cuda.cross_entropy_grad(lp, target, grad / lp.shape[0])
        g = np.exp(lp)
        g[rows, target] -= 1
        g *= lp.dtype.type(grad / lp.shape[0])
        return g

    def __call__(self, x, target):
        return self.forward(x, target)

    def __repr__(self):
        return "CrossEntropy()"


class MSE(Module):
    r"""Mean squared error ``L = mean((x - t)^2)``; ``backward()`` returns
    ``2 (x - t) / x.size`` (times ``grad``, default 1)."""

    def __init__(self):
        self._saved = None

    def forward(self, x, target):
        if _api._is_device(x):          # the loss comes back to the host
            from . import _nn_cuda
            if not _api._is_device(target) or target.shape != x.shape or \
                    target.dtype != x.dtype:
                raise ValueError("fastact.nn.MSE: a device x needs a device target of its "
                                 "shape and dtype")
            loss, self._saved = _nn_cuda.mse(x, target)
            return x.dtype.type(loss)
        d = x - np.asarray(target, dtype=x.dtype)
        self._saved = d
        return x.dtype.type(np.mean(np.square(d, dtype=np.float64)))

    def backward(self, grad=1.0):
        d = self._saved_or_fail()
        if _api._is_device(d):
            from . import _nn_cuda
            return _nn_cuda.scaled(d, 2 * grad / d.size)
        return d * d.dtype.type(2 * grad / d.size)

    def __call__(self, x, target):
        return self.forward(x, target)

    def __repr__(self):
        return "MSE()"


# --- the optimizer ----------------------------------------------------------------------

class SGD:
    r"""Stochastic gradient descent with momentum, the rule of He et al.
    (2015) for PReLU's slopes, applied to every parameter:

    .. math::
        \Delta \leftarrow \mu \Delta - \varepsilon \left(\frac{\partial E}{\partial a}
        + \lambda a\right), \qquad a \leftarrow a + \Delta

    with ``lr`` = ε, ``momentum`` = μ, ``weight_decay`` = λ (only for the
    parameters whose ``decay`` is true: He et al. apply none to the slopes
    ``a``, so PReLU's weight is exempt); Δ starts at 0.  ``step()`` updates
    ``Parameter.data`` in place (the arrays the layers hold), ``zero_grad()``
    clears the gradients."""

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0):
        self.params = list(params)
        if not lr > 0 or not momentum >= 0 or not weight_decay >= 0:
            raise ValueError("fastact.nn.SGD: lr must be positive, momentum and "
                             "weight_decay non-negative")
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocity = [_zeros_like(p.data) for p in self.params]

    def step(self):
        """One update of every parameter, where it lives (host or device;
        the velocity follows a parameter moved by ``to``)."""
        for k, (p, v) in enumerate(zip(self.params, self.velocity)):
            if _api._is_device(p.data):
                from . import _nn_cuda
                if not _api._is_device(v):
                    v = self.velocity[k] = _nn_cuda.to_device(v)
                _nn_cuda.sgd_(p.data, p.grad, v, self.lr, self.momentum, self.weight_decay,
                              p.decay)
                continue
            if _api._is_device(v):
                v = self.velocity[k] = v.copy_to_host()
            g = p.grad
            if self.weight_decay and p.decay:
                g = g + p.data.dtype.type(self.weight_decay) * p.data
            v *= p.data.dtype.type(self.momentum)
            v -= p.data.dtype.type(self.lr) * g
            p.data += v

    def zero_grad(self):
        for p in self.params:
            _clear(p.grad)


# --- one class per public op ------------------------------------------------------------

#: the layer class of every public activation, by its function's name
LAYERS: dict = {}
for _spec in REGISTRY.values():
    if not _spec.public:
        continue
    if _spec.api_name == "prelu":
        LAYERS["prelu"] = PReLU
    elif _spec.api_name == "rrelu":
        LAYERS["rrelu"] = RReLU
    else:
        _cls = _layer(_spec)
        LAYERS[_spec.api_name] = _cls
        globals()[_cls.__name__] = _cls
        __all__.append(_cls.__name__)
del _spec
