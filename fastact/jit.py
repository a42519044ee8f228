"""Each activation's scalar formulas, for your own ``@numba.njit`` and ``@cuda.jit`` code.

For every elementwise and gated registry entry ``name`` (``fastact._registry``):

* ``name_fwd(x, *params)``: the forward;
* ``name_bwd(g, s, *params)``: the backward, ``s`` the forward's input ``x``
  or output ``y`` as the entry saves (``SAVES[name]``);
* ``name_bwd_y(g, y, *params)``: the backward from the output, where the
  entry has a formula of its own for it (ELU, SELU, CELU);
* gated entries: ``name_fwd(a, b)`` and ``name_bwd(g, a, b) -> (da, db)``.

``params`` are the kernels' parameters (``PARAMS[name]``); :func:`params`
turns a public function's keyword arguments into them.  Each function
computes in the dtype of its first argument (float32, else float64), its
parameters cast to it.  Inside ``@numba.njit`` code it is the formula the
Numba backend's kernels compile (the vectorizable exponentials of
``fastact._prims.cpu_prims``), inlined into your loop, so that a fused loop
vectorizes as the library's own do; inside ``@cuda.jit`` kernels it is the
CUDA backend's device function; called from Python, and in numba's CUDA
simulator, it runs the CUDA backend's formula as Python.

>>> import numpy as np, numba, fastact, fastact.jit as fj
>>> @numba.njit
... def bias_gelu(x, b, out):
...     for i in range(x.shape[0]):
...         out[i] = fj.gelu_fwd(x[i] + b[i])
>>> x = np.linspace(-2, 2, 5, dtype=np.float32)
>>> out = np.empty_like(x)
>>> bias_gelu(x, np.ones_like(x), out)
>>> bool(np.allclose(out, fastact.gelu(x + 1), rtol=1e-6))
True
"""
from __future__ import annotations

import functools
import inspect

import numpy as np
from numba import types
from numba.extending import overload

from . import _overloads
from ._prims import always_inline, math_prims
from ._registry import REGISTRY

_PASSES = {"forward": "fwd", "backward": "bwd", "backward_y": "bwd_y"}


def _entries():
    """(entry name, pass) of every scalar formula offered."""
    for name, spec in REGISTRY.items():
        if spec.kind == "elementwise":
            yield from ((name, p) for p in spec.passes())
        elif spec.kind == "gated":
            yield from ((name, p) for p in ("forward", "backward"))


def _compose(name, pass_, prims, compile_=lambda f: f):
    """Entry ``name``'s ``pass_`` built over ``prims``, each function compiled
    by ``compile_`` (a gated entry's act formulas first, as the backends do)."""
    spec = REGISTRY[name]
    if pass_ == "backward_y":
        return compile_(spec.from_output.build(prims))
    if spec.kind == "gated":
        act = tuple(compile_(h) for h in REGISTRY[spec.gated.act].build(prims))
        fns = spec.build(prims, *act)
    else:
        fns = spec.build(prims)
    return compile_(fns[pass_ != "forward"])


@functools.lru_cache(maxsize=None)
def _python(name, pass_, dtype):
    """The formula as plain Python (the CUDA backend's, as its simulator runs it)."""
    return _compose(name, pass_, math_prims(dtype))


@functools.lru_cache(maxsize=None)
def _cpu(name, pass_, dtype):
    """The Numba backend's compiled formula (always inlined)."""
    from ._backends import numba_cpu
    if REGISTRY[name].kind == "gated":
        return numba_cpu._gate_formulas(name, dtype)[pass_ != "forward"]
    return numba_cpu._formula(name, pass_, dtype)


@functools.lru_cache(maxsize=None)
def _cuda(name, pass_, dtype):
    """The CUDA backend's device formula."""
    from ._backends import cuda
    return _compose(name, pass_, cuda._prims(dtype), cuda._device)


def _casts(argnames):
    """The type each argument is cast to: "T" (the data's dtype) or "U" (uint64:
    a flat index, RReLU's key)."""
    return ["U" if a in ("i", "key") else "T" for a in argnames]


def _dtype_of(t):
    return np.float32 if isinstance(t, types.Float) and t.bitwidth == 32 else np.float64


def _define(name, pass_):
    fname = f"{name}_{_PASSES[pass_]}"
    argnames = list(inspect.signature(_python(name, pass_, np.float64)).parameters)
    sig = ", ".join(argnames)
    casts = _casts(argnames)
    ns = {"np": np, "python": _python, "name": name, "pass_": pass_, "U": np.uint64}
    # from Python (and the CUDA simulator): the dtype of the first argument
    exec(f"def {fname}({sig}):\n"
         f"    T = np.float32 if isinstance({argnames[0]}, np.float32) else np.float64\n"
         f"    return python(name, pass_, T)("
         + ", ".join(f"{c}({a})" for c, a in zip(casts, argnames)) + ")\n", ns)
    stub = ns[fname]
    stub.__module__ = __name__
    stub.__doc__ = (f"Registry entry {name!r}'s {pass_} formula: ``{fname}({sig})`` "
                    "(see :mod:`fastact.jit`).")

    def typer(compiled):
        def impl_for(*arg_types):
            if not all(isinstance(t, (types.Float, types.Integer, types.Boolean))
                       for t in arg_types):
                return None
            T = _dtype_of(arg_types[0])
            f = compiled(name, pass_, T)
            body = {"f": f, "T": T, "U": np.uint64, "inline": always_inline()}
            exec(f"def impl({sig}):\n    inline()\n    return f("
                 + ", ".join(f"{c}({a})" for c, a in zip(casts, argnames)) + ")\n", body)
            return body["impl"]
        tns = {"impl_for": impl_for}
        exec(f"def typing({sig}):\n    return impl_for({sig})\n", tns)
        return tns["typing"]

    overload(stub, target="cpu")(typer(_cpu))
    try:
        overload(stub, target="cuda")(typer(_cuda))
    except Exception:           # numba without its CUDA target: the CPU and Python forms
        pass
    return fname, stub


#: entry -> the kernels' parameter names, in order (the formulas' trailing arguments)
PARAMS = {n: tuple(s.params) for n, s in REGISTRY.items() if s.kind in ("elementwise", "gated")}
#: entry -> what its backward reads besides the gradient: "x" or "y"
SAVES = {n: s.saves for n, s in REGISTRY.items() if s.kind in ("elementwise", "gated")}


def params(op, **kwargs):
    """``(entry, params)`` for the public function ``op`` called with
    ``kwargs``: the registry entry whose ``*_fwd``/``*_bwd`` take them and
    its kernels' parameters, validated as the public function validates
    them (floats; RReLU's key a uint64).

    >>> import fastact.jit as fj
    >>> fj.params("leaky_relu", negative_slope=0.2)
    ('leaky_relu', (0.2,))
    >>> fj.params("gelu", approximate="tanh")
    ('gelu_tanh', ())
    """
    from ._spec import REQUIRED
    spec = next((s for s in REGISTRY.values() if s.public and s.api_name == op), None)
    if spec is None or spec.kind not in ("elementwise", "gated"):
        raise ValueError(f"fastact.jit.params: {op!r} is not a public elementwise or gated "
                         "activation")
    from . import _api
    values = []
    for p in spec.api:
        if p.name == "axis":
            continue
        if p.name in kwargs:
            values.append(kwargs.pop(p.name))
        elif p.default is REQUIRED:
            raise TypeError(f"fastact.jit.params: {op} needs {p.name}=")
        else:
            values.append(p.default)
    if kwargs:
        raise TypeError(f"fastact.jit.params: {op} takes no parameter {next(iter(kwargs))!r}")
    # a gated entry's route takes its parameters but the axis (_api._define_gated)
    route = spec.route if spec.kind == "gated" else spec.route or _api._default_route(spec)
    if route is None:
        return spec.name, ()
    entry, p = route(op, *values)
    cast = tuple(v if isinstance(v, np.uint64) else float(v) for v in p)
    return entry, cast


_FUNCTIONS = dict(_define(n, p) for n, p in _entries())
_overloads.register()       # fastact's array functions in numba code too
globals().update(_FUNCTIONS)
__all__ = sorted(_FUNCTIONS) + ["PARAMS", "SAVES", "params"]
