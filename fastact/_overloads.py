"""fastact's public functions inside a user's ``@numba.njit`` code.

Each public function gets a ``numba.extending.overload`` generated from the
registry, with the function's own signature (defaults, keywords):

* the elementwise functions run the Numba backend's serial kernel (the
  registry's formula compiled as that backend compiles it) in native code:
  any shape and layout (a C-ordered copy where the input is not), integer
  and boolean input computed in float64, ``out=`` optional.  Their scalar
  parameters are validated and turned into the kernels' by the public
  layer's own route, called in object mode (once a call; functions without
  parameters need none); the flags that choose a formula (``training``,
  ``divide``, ``approximate``, ``from_output``) must be constants;
* the softmax family, the gated units and PReLU run the Numba backend's
  serial row, inner-axis, gated and PReLU kernels natively too (no object
  mode): ``fastact._overloads_rows``; a gated unit's ``approximate`` must
  be a constant, ``method=`` (dask's) a constant too, and prelu_backward
  takes no ``out=``.

``backend=`` must be left out (or None) and ``stream=`` too.  Registration
is cheap and happens once, when numba is present (:func:`register`): from
``import fastact`` where numba was imported first, else from numba's
``numba_extensions`` entry point (when numba compiles its first function)
or from ``import fastact.jit``.
"""
from __future__ import annotations

import functools
import inspect

import numpy as np

from . import _api
from ._registry import REGISTRY
from ._spec import REQUIRED

_done = False


def register():
    """Install the overloads of every public function (once a process)."""
    global _done
    if _done:
        return
    _done = True
    from numba.extending import overload
    for spec in REGISTRY.values():
        if not spec.public:
            continue
        for pass_ in ("forward", "backward"):
            fname = spec.api_name + ("_backward" if pass_ == "backward" else "")
            fn = _api.GENERATED.get(fname)
            if fn is None:
                continue
            overload(fn, prefer_literal=True)(_typing(fn, spec, pass_))
    for fn in (_api.prelu, _api.prelu_backward):
        overload(fn, prefer_literal=True)(_typing(fn, None, None))


def _numba_init():
    """numba's ``numba_extensions`` entry point: numba calls it before it
    compiles its first function."""
    register()


def _signature(fn):
    """``fn``'s parameter list as source text, defaults by name in ``ns``
    (keyword-only parameters made plain ones: numba folds no keyword-only
    arguments; keywords are still taken by name)."""
    parts, ns = [], {}
    for p in inspect.signature(fn).parameters.values():
        if p.default is p.empty:
            parts.append(p.name)
        else:
            ns[f"_d_{p.name}"] = p.default
            parts.append(f"{p.name}=_d_{p.name}")
    return ", ".join(parts), list(inspect.signature(fn).parameters), ns


def _typing(fn, spec, pass_):
    """The overload's typing function: same signature as ``fn``; returns the
    implementation for the argument types (None: not this overload)."""
    sig, names, ns = _signature(fn)
    native = spec is not None and spec.kind == "elementwise"
    build = functools.partial(_native if native else _rowwise_native, fn, spec, pass_,
                              sig, names, ns)
    ns = dict(ns, build=build)
    exec(f"def typing({sig}):\n    return build({', '.join(names)})\n", ns)
    return ns["typing"]


def _fail(fname, message):
    from numba.core.errors import TypingError
    raise TypingError(f"fastact.{fname}: {message}")


def _is_none(t):
    from numba import types
    return t is None or isinstance(t, (types.NoneType, types.Omitted)) and (
        not isinstance(t, types.Omitted) or t.value is None)


def _constant(t):
    """A literal or omitted argument's value; _MISSING where it is neither."""
    from numba import types
    if not isinstance(t, types.Type):      # an argument left out: its default itself
        return t
    if isinstance(t, types.Omitted):
        return t.value
    if isinstance(t, types.Literal):
        return t.literal_value
    if isinstance(t, types.NoneType):
        return None
    return _MISSING


_MISSING = object()


def _result_dtype(fname, arrays):
    from numba import types
    dts = []
    for name, t in arrays:
        if not isinstance(t, types.Array):
            _fail(fname, f"{name} must be an array inside numba code (got {t}); for scalars "
                         "use fastact.jit's formulas")
        dts.append(np.dtype(str(t.dtype)) if isinstance(t.dtype, (types.Float, types.Integer,
                                                                 types.Boolean)) else None)
        if dts[-1] is None:
            _fail(fname, f"{name} has dtype {t.dtype}; supported dtypes are float32 and float64")
    dt = np.result_type(*dts)
    if dt.kind in "biu":
        dt = np.dtype(np.float64)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        _fail(fname, f"the arrays compute in {dt}; supported dtypes are float32 and float64")
    return dt


def _host_only(fname, bound):
    for name in ("backend", "stream"):
        if name in bound and not _is_none(bound[name]):
            _fail(fname, f"{name}= is not supported inside numba code (the Numba backend "
                         "runs there)")


def _check_out_type(fname, out, dt):
    from numba import types
    if _is_none(out):
        return False
    if not (isinstance(out, types.Array) and np.dtype(str(out.dtype)) == dt
            and out.mutable):
        _fail(fname, f"out must be a writeable {dt} array (got {out})")
    return True


def _native(fn, spec, pass_, sig, names, defaults, *arg_types):
    """An elementwise function: the Numba backend's serial kernel in native code."""
    from numba import types
    fname = fn.__name__
    bound = dict(zip(names, arg_types))
    _host_only(fname, bound)
    arrays = names[:1] if pass_ == "forward" else names[:2]
    dt = _result_dtype(fname, [(a, bound[a]) for a in arrays])
    has_out = _check_out_type(fname, bound["out"], dt)
    # the route's inputs: constants where known, else a representative value
    api = spec.api_of(pass_)
    values = {}
    for p in spec.api:
        t = bound.get(p.name)
        v = _constant(t) if t is not None else _MISSING
        if v is _MISSING and isinstance(p.default, (bool, str)):
            _fail(fname, f"{p.name} must be a constant inside numba code (it chooses the "
                         "formula)")
        if v is _MISSING:
            v = p.example if p.default is REQUIRED else p.default
            if v is None and isinstance(t, types.Integer):
                v = 0            # an integer seed
        values[p.name] = v
    offers_y = pass_ == "backward" and spec.from_output is not None
    from_output = _constant(bound["from_output"]) if offers_y else False
    if from_output is _MISSING:
        _fail(fname, "from_output must be a constant inside numba code")
    try:
        entry, kpass, p = _kernel_params(fname, spec, pass_, from_output,
                                         [values[q.name] for q in spec.api], dt)
    except (TypeError, ValueError) as e:
        _fail(fname, str(e))
    import numba
    kernel = _kernel(entry, kpass, dt.type)
    ptype = numba.typeof(p)
    # the route's inputs known at run time only (else its result is a constant)
    runtime = [q.name for q in api if _constant(bound.get(q.name)) is _MISSING]
    ns = dict(defaults, numba=numba, kernel=kernel, ptype=ptype, np=np, T=dt.type,
              params=_kernel_params, fname=fname, spec=spec, pass_=pass_, entry=entry,
              kpass=kpass, P=p,
              run=_runner(tuple(bound[a].dtype != _nb_dtype(dt) for a in arrays), has_out))
    fixed = {q.name: repr(values[q.name]) for q in spec.api if q not in api}
    route_args = ", ".join(fixed.get(q.name, q.name) for q in spec.api)
    fo = "from_output" if offers_y else "False"
    lines = [f"def impl({sig}):"]
    if runtime:
        lines += ["    with numba.objmode(p=ptype):",
                  f"        p = params(fname, spec, pass_, {fo}, [{route_args}], T, entry, kpass)[2]"]
    else:
        lines.append("    p = P")
    ins = ", ".join(arrays)
    lines.append(f"    return run(kernel, T, {ins}, {'out, ' if has_out else ''}p)")
    exec("\n".join(lines) + "\n", ns)
    return ns["impl"]


def _nb_dtype(dt):
    from numba import types
    return types.float32 if dt == np.float32 else types.float64


def _kernel_params(fname, spec, pass_, from_output, values, dt, entry=None, kpass=None):
    """(registry entry, kernel pass, kernel parameters in ``dt``) as the public
    function computes them; ``entry`` and ``kpass`` (at run time) are what
    the compiled code was typed for."""
    route = spec.route or _api._default_route(spec)
    name, p = (spec.name, ()) if route is None else route(fname, *values)
    kp = pass_
    if pass_ == "backward" and from_output is not False:
        kp = _api._backward_pass(fname, name, from_output, p)
    if entry is not None and (name, kp) != (entry, kpass):
        raise ValueError(f"fastact.{fname}: these parameters choose another formula than "
                         "the compiled code was typed for")
    return name, kp, _api._cast_params(p, np.dtype(dt))


@functools.lru_cache(maxsize=None)
def _kernel(entry, kpass, dtype):
    from ._backends import numba_cpu
    return numba_cpu._elementwise_kernel(entry, kpass, dtype, False)


@functools.lru_cache(maxsize=None)
def _helpers():
    import numba

    @numba.njit
    def apart(a1, o1):
        """Whether ``o1`` can be written while ``a1`` is read (the same
        elements, or none in common)."""
        pa, po = a1.ctypes.data, o1.ctypes.data
        return pa == po or pa + a1.nbytes <= po or po + o1.nbytes <= pa

    @numba.njit
    def target(res, a1, b1):
        """``res`` flat where it is C-contiguous and overlaps no input but
        exactly, else a temporary (and False)."""
        if res.flags.c_contiguous:
            o1 = res.reshape(res.size)
            if apart(a1, o1) and apart(b1, o1):
                return o1, True
        return np.empty(res.size, res.dtype), False

    @numba.njit
    def scatter(res, o1):
        k = 0
        for idx in np.ndindex(res.shape):
            res[idx] = o1[k]
            k += 1

    return {"target": target, "scatter": scatter, "np": np}


@functools.lru_cache(maxsize=None)
def _runner(casts, has_out):
    """njit ``run(kernel, T, *arrays, [out,] params)``: the flat kernel on
    C-ordered views (or copies, in dtype T where ``casts`` says) of the
    inputs, into ``out`` or a new array."""
    import numba
    ins = ["x"] if len(casts) == 1 else ["g", "s"]
    lines = [f"def run(kernel, T, {', '.join(ins)}, {'out, ' if has_out else ''}p):"]
    for a, cast in zip(ins, casts):
        conv = f"{a}.astype(T)" if cast else f"np.ascontiguousarray({a})"
        lines.append(f"    {a}1 = {conv}.reshape({a}.size)")
    saved = ins[-1]
    if len(ins) == 2:
        lines += ["    if g.shape != s.shape:",
                  "        raise ValueError('fastact: grad and the saved array differ in shape')"]
    if has_out:
        lines += [f"    if out.shape != {saved}.shape:",
                  "        raise ValueError('fastact: out has another shape than the input')",
                  "    res = out"]
    else:
        lines.append(f"    res = np.empty({saved}.shape, T)")
    lines += [f"    o1, direct = target(res, {ins[0]}1, {saved}1)",
              f"    kernel({', '.join(a + '1' for a in ins)}, o1, p)",
              "    if not direct:",
              "        scatter(res, o1)",
              "    return res"]
    ns = dict(_helpers())
    exec("\n".join(lines) + "\n", ns)
    return numba.njit(ns["run"])


def _rowwise_native(fn, spec, pass_, sig, names, defaults, *arg_types):
    """The softmax family, the gated units and PReLU: the Numba backend's
    serial kernels in native code (fastact._overloads_rows)."""
    from . import _overloads_rows
    fname = fn.__name__
    bound = dict(zip(names, arg_types))
    _host_only(fname, bound)
    arrays = names[:2] if fname.endswith("_backward") else names[:1]
    dt = _result_dtype(fname, [(a, bound[a]) for a in arrays])
    casts = tuple(bound[a].dtype != _nb_dtype(dt) for a in arrays)
    if fname == "prelu_backward":
        if not _is_none(bound["out"]):
            _fail(fname, "out= is not supported inside numba code")
        has_out = False
    else:
        has_out = _check_out_type(fname, bound["out"], dt)
    t = bound.get("axis")
    if not (_is_none(t) or isinstance(_constant(t), int) or isinstance(t, types_integer())):
        _fail(fname, f"axis must be an integer inside numba code (got {t})")
    if spec is None:
        return _overloads_rows.prelu(fname, "backward" if fname.endswith("_backward") else
                                     "forward", sig, bound, dt, casts, has_out, defaults)
    if spec.kind == "rowwise":
        return _overloads_rows.rows(fname, spec.name, pass_, sig, bound, dt, casts, has_out,
                                    defaults)
    entry = spec.name
    params = [p for p in spec.api if p.name != "axis"]
    if params:
        values = []
        for p in params:
            v = _constant(bound.get(p.name)) if p.name in bound else p.default
            if v is _MISSING:
                _fail(fname, f"{p.name} must be a constant inside numba code (it chooses the "
                             "formula)")
            values.append(v)
        try:
            entry, _ = spec.route(fname, *values)
        except (TypeError, ValueError) as e:
            _fail(fname, str(e))
    return _overloads_rows.gated(fname, entry, pass_, sig, bound, dt, casts, has_out, defaults)


def types_integer():
    from numba import types
    return types.Integer
