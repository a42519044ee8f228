"""The gated family (see fastact._ops): GLU (Dauphin et al., 2017) and the
variants of Shazeer (2020) that transformer MLPs run (ReGLU, GEGLU,
SwiGLU, as NVIDIA's Transformer Engine names them).

``x`` is split along ``axis`` into halves ``a`` (first) and ``b``; the
output has half the length there.  A gated entry composes an elementwise
entry's formulas (:class:`fastact._spec.Gated`): ``y = act(u) v``, the
gradients ``dL/du = act'(u) (g v)`` (the act's backward with upstream
gradient ``g v``) and ``dL/dv = g act(u)``, ``(u, v) = (a, b)``, or
``(b, a)`` for GLU's ``a sigmoid(b)``.  Each backend compiles the act's
formulas and hands them to :func:`_gate`; the kernels walk the
``(outer, 2, M)`` view of ``x`` (``M`` = half the axis times the axes after
it), so any axis is contiguous runs.
"""
from __future__ import annotations

import numpy as np

from .._spec import REGISTRY, Doc, Gated, Param, Spec, Torch, register
from .._spec import wide as _wide


def _gate(gated):
    """``build(p, f, fb)`` of a gated entry: ``forward(a, b)`` and
    ``backward(g, a, b) -> (da, db)`` from the act's compiled formulas:
    ``dL/du = fb(g v, s)`` (``s`` as the act saves: ``u`` or ``f(u)``), or,
    where ``gated.complement`` (sigmoid), ``(g v) f(u) f(-u)``: for float32
    data the three products in float64, rounded once (the float32 products
    were up to 4.05 ULP off, with the two sigmoids' own errors)."""
    saves_y = REGISTRY[gated.act].saves == "y"
    swap, complement = gated.swap, gated.complement

    def build(p, f, fb):
        T = p.T
        W = np.float64 if T is np.float32 else T

        # swap, complement and saves_y are constants of the compiled code
        def forward(a, b):
            return a * f(b) if swap else f(a) * b

        def backward(g, a, b):
            u = b if swap else a
            gv = g * (a if swap else b)
            fu = f(u)
            if complement:
                du = T((W(g) * W(a if swap else b)) * (W(fu) * W(f(-u))))
            else:
                du = fb(gv, fu if saves_y else u)
            dv = g * fu
            return (dv, du) if swap else (du, dv)
        return forward, backward
    return build


def _reference(gated):
    """The reference pair on the ``(outer, 2, M)`` view: the act's own
    references in the wider type, one rounding at the end."""
    A = REGISTRY[gated.act]
    saves_y, swap = A.saves == "y", gated.swap

    def halves(x3):
        W = _wide(x3.dtype)
        a, b = x3[:, 0].astype(W), x3[:, 1].astype(W)
        return (b, a) if swap else (a, b)

    def forward(x3):
        u, v = halves(x3)
        return (A.reference_forward(u) * v).astype(x3.dtype)

    def backward(g2, x3):
        u, v = halves(x3)
        gw = g2.astype(u.dtype)
        fu = A.reference_forward(u)
        if gated.complement:
            du = (gw * v) * (fu * A.reference_forward(-u))
        else:
            du = A.reference_backward(gw * v, fu if saves_y else u)
        dv = gw * fu
        da, db = (dv, du) if swap else (du, dv)
        return np.stack([da, db], axis=1).astype(x3.dtype)
    return forward, backward


_AXIS = Param("axis", -1, "the axis split into the halves ``a`` (first) and ``b``; "
              "x's length along it must be even", kw_only=True)


def _torch_gated(act_fwd, act_bwd, names=()):
    """The PyTorch expression of ``act(a) * b`` (PyTorch has no fused op),
    with the act's own PyTorch kernels: ``function(F, x, axis, **kw)`` for
    the parity tests, and the ATen calls the bench times, which take the
    public parameters in order (``names``, then ``axis``)."""
    def function(F, x, axis, **kw):
        a, b = x.chunk(2, axis)
        return getattr(F, act_fwd)(a, **kw) * b

    def forward_out(A, x, out, *p):
        kw, axis = dict(zip(names, p[:-1])), p[-1]
        a, b = x.chunk(2, axis)
        A.mul.out(getattr(A, act_fwd)(a, **kw), b, out=out)

    def backward_out(A, g, x, out, *p):
        kw, axis = dict(zip(names, p[:-1])), p[-1]
        a, b = x.chunk(2, axis)
        da, db = out.chunk(2, axis)
        A.mul.out(g, getattr(A, act_fwd)(a, **kw), out=db)
        act_bwd(A, A.mul(g, b), a, da, **kw)
    return function, forward_out, backward_out


def _register(name, act, *, title, forward, backward, notes, example, backward_example,
              swap=False, complement=False, api=(_AXIS,), route=None,
              compute_bound=("forward", "backward"), public=True, torch=None,
              numpy_pair=(None, None), accuracy=None):
    gated = Gated(act, swap, complement)
    ref_fwd, ref_bwd = _reference(gated)
    A = REGISTRY[act]
    bound = accuracy or (4, "cond" if A.accuracy[1] == "cond" else 4)
    register(Spec(
        name, "gated", saves="x", build=_gate(gated), gated=gated,
        reference_forward=ref_fwd, reference_backward=ref_bwd,
        compute_bound=compute_bound, accuracy=bound,
        api=api if public else None, route=route,
        doc=Doc(title, forward, backward, notes=notes, example=example,
                backward_example=backward_example,
                backward_notes=(_COMPLEMENT_NOTES if complement else _BACKWARD_NOTES).format(act=A.public_name or act,
                                                      u="b" if swap else "a",
                                                      v="a" if swap else "b"))
        if public else None,
        torch=torch, numpy_forward=numpy_pair[0], numpy_backward=numpy_pair[1]))


_NOTES = """``x``'s length along ``axis`` must be even (a ValueError otherwise); the
output is ``x``'s shape with that length halved.  {how}  Within 4 ULP of
the exact value where the act's result is a normal number (the act within
its own bound, the product rounded once); where it is subnormal, within 4
of its ULPs times ``|b|`` (the product magnifies them).  Special values
follow the product: ``0 * inf`` is NaN, also where the act's result
underflows to 0.  The backward's first product is ``g`` times the other
half: where it overflows, that half's gradient is ``+-inf`` or NaN."""

_BACKWARD_NOTES = """Returns the gradient of the whole input, ``x``'s shape: ``dL/da`` in the
first half along ``axis``, ``dL/db`` in the second.  ``dL/d{v} = g
{act}({u})`` within 4 ULP; ``dL/d{u}`` is ``{act}_backward`` of the upstream
gradient ``g {v}`` (rounded once), within that function's bound."""
_COMPLEMENT_NOTES = """Returns the gradient of the whole input, ``x``'s shape: ``dL/da`` in the
first half along ``axis``, ``dL/db`` in the second.  ``dL/d{v} = g
{act}({u})`` within 4 ULP; ``dL/d{u} = (g {v}) {act}({u}) {act}(-{u})``
from ``x`` (not ``1 - y``, which cancels where ``y`` nears 1), the products
in float64 for float32 data, within 5 ULP (the two sigmoids' errors add:
3.6 ULP seen in float32, 4.0 in float64)."""


def _glu_torch():
    return Torch("glu", lambda axis: {"dim": axis},
                 forward_out=lambda A, x, out, axis: A.glu.out(x, axis, out=out),
                 backward_out=lambda A, g, x, out, axis: A.glu_backward.grad_input(
                     g, x, axis, grad_input=out))


def _np_pair(act, act_grad, swap=False):
    """The bench's NumPy expressions of ``act(u) v`` and its gradient, as a
    NumPy user would write them: ``act(u, *p)`` and ``act_grad(g, u, *p)``
    (the act's own expressions), ``p`` the parameters before ``axis``."""
    def halves(x, axis):
        a, b = np.split(x, 2, axis=axis)
        return (b, a) if swap else (a, b)

    def forward(x, *p):
        u, v = halves(x, p[-1])
        return act(u, *p[:-1]) * v

    def backward(g, x, *p):
        u, v = halves(x, p[-1])
        du, dv = act_grad(g * v, u, *p[:-1]), g * act(u, *p[:-1])
        return np.concatenate([dv, du] if swap else [du, dv], axis=p[-1])
    return forward, backward


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


_register(
    "glu", "sigmoid", swap=True, complement=True, accuracy=(4, 5),
    title="Gated linear unit (Dauphin et al., 2017) along ``axis``: ``a * sigmoid(b)``.",
    forward=r"\mathrm{glu}(x) = a \odot \sigma(b), \quad x = [a, b] \text{ along the axis}",
    backward=r"\frac{\partial L}{\partial a} = g\,\sigma(b), \quad \frac{\partial L}"
             r"{\partial b} = (g a)\,\sigma(b)\,\sigma(-b)",
    notes=_NOTES.format(how="As ``torch.nn.functional.glu``."),
    example=""">>> import numpy as np, fastact
>>> fastact.glu(np.array([[1.0, 2.0, 0.0, -1.0]]))
array([[0.5       , 0.53788284]])""",
    backward_example=""">>> import numpy as np, fastact
>>> fastact.glu_backward(np.ones((1, 2)), np.array([[1.0, 2.0, 0.0, -1.0]]))
array([[0.5       , 0.26894142, 0.25      , 0.39322387]])""",
    torch=_glu_torch(),
    numpy_pair=_np_pair(_np_sigmoid, lambda g, u: g * _np_sigmoid(u) * (1 - _np_sigmoid(u)),
                        swap=True),
)


_reglu_fn, _reglu_fwd, _reglu_bwd = _torch_gated(
    "relu", lambda A, gb, a, da: A.threshold_backward.grad_input(gb, a, 0, grad_input=da))
_register(
    "reglu", "relu", compute_bound=(),
    title="ReLU-gated linear unit (Shazeer, 2020) along ``axis``: ``relu(a) * b``.",
    forward=r"\mathrm{reglu}(x) = \mathrm{relu}(a) \odot b, \quad x = [a, b] "
            r"\text{ along the axis}",
    backward=r"\frac{\partial L}{\partial a} = (g b)\,[a > 0], \quad \frac{\partial L}"
             r"{\partial b} = g\,\mathrm{relu}(a)",
    notes=_NOTES.format(how="As Transformer Engine's ``ReGLU``; ``relu'(0) = 0``."),
    example=""">>> import numpy as np, fastact
>>> fastact.reglu(np.array([[1.0, -2.0, 3.0, 4.0]]))
array([[3., 0.]])""",
    backward_example=""">>> import numpy as np, fastact
>>> fastact.reglu_backward(np.ones((1, 2)), np.array([[1.0, -2.0, 3.0, 4.0]]))
array([[3., 0., 1., 0.]])""",
    torch=Torch("reglu: relu(a) * b", lambda axis: {"axis": axis}, function=_reglu_fn,
                forward_out=_reglu_fwd, backward_out=_reglu_bwd),
    numpy_pair=_np_pair(lambda u: np.maximum(u, 0), lambda g, u: np.where(u > 0, g, 0)),
)


def _geglu_route(op, approximate):
    if isinstance(approximate, str):
        if approximate == "none":
            return "geglu", ()
        if approximate == "tanh":
            return "geglu_tanh", ()
    raise ValueError(f'fastact.{op}: approximate must be "none" or "tanh", got '
                     f"{approximate!r}")


def _gelu_bwd(A, gb, a, da, approximate="none"):
    A.gelu_backward.grad_input(gb, a, approximate=approximate, grad_input=da)


_geglu_fn, _geglu_fwd, _geglu_bwd = _torch_gated("gelu", _gelu_bwd, ("approximate",))


def _np_gelu_pair():
    from .special import _numpy_gelu_bwd, _numpy_gelu_fwd
    return _np_pair(_numpy_gelu_fwd, _numpy_gelu_bwd)


_register(
    "geglu", "gelu",
    api=(Param("approximate", "none", '``"none"`` (GELU with erf) or ``"tanh"`` (its tanh '
               'approximation, as Transformer Engine)', kw_only=True), _AXIS),
    route=_geglu_route,
    title="GELU-gated linear unit (Shazeer, 2020) along ``axis``: ``gelu(a) * b``.",
    forward=r"\mathrm{geglu}(x) = \mathrm{gelu}(a) \odot b, \quad x = [a, b] "
            r"\text{ along the axis}",
    backward=r"\frac{\partial L}{\partial a} = (g b)\,\mathrm{gelu}'(a), \quad "
             r"\frac{\partial L}{\partial b} = g\,\mathrm{gelu}(a)",
    notes=_NOTES.format(how='``approximate`` as for :func:`gelu` (``"tanh"`` is '
                            "Transformer Engine's ``GeGLU``)."),
    example=""">>> import numpy as np, fastact
>>> fastact.geglu(np.array([[1.0, -1.0, 2.0, 2.0]]))
array([[ 1.68268949, -0.31731051]])""",
    backward_example=""">>> import numpy as np, fastact
>>> fastact.geglu_backward(np.ones((1, 2)), np.array([[1.0, -1.0, 2.0, 2.0]]))
array([[ 2.16663094, -0.16663094,  0.84134475, -0.15865525]])""",
    torch=Torch("geglu: gelu(a) * b",
                lambda approximate, axis: {"axis": axis, "approximate": approximate},
                function=_geglu_fn, forward_out=_geglu_fwd, backward_out=_geglu_bwd),
    numpy_pair=_np_gelu_pair(),
)
_register("geglu_tanh", "gelu_tanh", public=False, title="", forward="", backward="",
          notes="", example="", backward_example="")


_swiglu_fn, _swiglu_fwd, _swiglu_bwd = _torch_gated(
    "silu", lambda A, gb, a, da: A.silu_backward.grad_input(gb, a, grad_input=da))
_register(
    "swiglu", "silu",
    title="SiLU-gated linear unit (Shazeer, 2020) along ``axis``: ``silu(a) * b``.",
    forward=r"\mathrm{swiglu}(x) = \mathrm{silu}(a) \odot b, \quad x = [a, b] "
            r"\text{ along the axis}",
    backward=r"\frac{\partial L}{\partial a} = (g b)\,\mathrm{silu}'(a), \quad "
             r"\frac{\partial L}{\partial b} = g\,\mathrm{silu}(a)",
    notes=_NOTES.format(how="As Transformer Engine's ``SwiGLU`` (the LLaMA MLP's gate)."),
    example=""">>> import numpy as np, fastact
>>> fastact.swiglu(np.array([[1.0, -1.0, 2.0, 2.0]]))
array([[ 1.46211716, -0.53788284]])""",
    backward_example=""">>> import numpy as np, fastact
>>> fastact.swiglu_backward(np.ones((1, 2)), np.array([[1.0, -1.0, 2.0, 2.0]]))
array([[ 1.85534102,  0.14465898,  0.73105858, -0.26894142]])""",
    torch=Torch("swiglu: silu(a) * b", lambda axis: {"axis": axis}, function=_swiglu_fn,
                forward_out=_swiglu_fwd, backward_out=_swiglu_bwd),
    numpy_pair=_np_pair(lambda u: u / (1 + np.exp(-u)),
                        lambda g, u: g * _np_sigmoid(u) * (1 + u * (1 - _np_sigmoid(u)))),
)
