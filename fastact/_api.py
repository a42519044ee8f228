"""The public operations: validation, layout plumbing, then one backend call.

The op validates; the dispatcher routes; the backend computes.  Every error
message a user can see is written here, once.
"""
from __future__ import annotations

import math
import operator
import textwrap

import numpy as np

from . import _checks, _dask, _dispatch, _interop, _walk
from ._arrays import HOST, SUPPORTED
from ._narrow import compute_dtype, is_narrow
from ._registry import REGISTRY, REQUIRED, parallel_min


# --- validation ---------------------------------------------------------------

def _fail_dtype(op, arg, dtype):
    raise TypeError(f"fastact.{op}: {arg} has dtype {dtype}; "
                    "supported dtypes are float32 and float64, and the 16-bit float16 "
                    "and bfloat16")


def _supported(dtype):
    """float32, float64, and the narrow float16 and bfloat16."""
    return dtype in SUPPORTED or is_narrow(dtype)


def _is_device(a):
    # numba's CUDA simulator arrays stand for device arrays without the
    # interface; the cuda backend returns a subclass of them (SimArray)
    return hasattr(a, "__cuda_array_interface__") or any(
        t.__name__ == "FakeCUDAArray" for t in type(a).__mro__)


def _inputs(op, named, same_shape=True):
    """Validate the array arguments: one dtype, one shape (unless not
    ``same_shape``), one side (host/device)."""
    on_dev = [_is_device(a) for _, a in named]
    if any(on_dev):
        if not all(on_dev):
            dev = ", ".join(n for (n, _), d in zip(named, on_dev) if d)
            host = ", ".join(n for (n, _), d in zip(named, on_dev) if not d)
            raise TypeError(f"fastact.{op}: cannot mix device arrays ({dev}) with host "
                            f"arrays ({host}); move them to one side first")
        xp = _dispatch.get("cuda").arrays
    else:
        xp = HOST
    # a list or Python number has no dtype of its own: it takes the first
    # typed argument's (as a weight does), where that one is supported
    like = None if xp.device else next(
        (d for d in (getattr(a, "dtype", None) for _, a in named)
         if isinstance(d, np.dtype) and _supported(d.newbyteorder("="))), None)
    arrs = []
    for name, a in named:
        try:
            if like is not None and not hasattr(a, "dtype"):
                arr = np.asarray(a)
                if arr.dtype.kind in "fi":      # as a weight from Python numbers
                    arr = arr.astype(like.newbyteorder("="))
            else:
                arr = xp.asarray(a)
        except Exception as e:
            raise TypeError(f"fastact.{op}: {name} is not an array ({type(a).__name__}): {e}") from None
        if not _supported(arr.dtype):
            if not xp.device and not arr.dtype.isnative and \
                    _supported(arr.dtype.newbyteorder("=")):
                # byte-swapped data: computed on a native copy, returned native
                arr = arr.astype(arr.dtype.newbyteorder("="))
            elif xp.device or arr.dtype.kind not in "biu":
                _fail_dtype(op, name, arr.dtype)
        arrs.append(arr)
    if any(a.dtype.kind in "biu" for a in arrs):
        arrs = _promoted(op, named, arrs)
    first_name, first = named[0][0], arrs[0]
    for (name, _), arr in zip(named[1:], arrs[1:]):
        if arr.dtype != first.dtype:
            raise TypeError(f"fastact.{op}: {name} has dtype {arr.dtype} but "
                            f"{first_name} has dtype {first.dtype}; they must match")
        if same_shape and arr.shape != first.shape:
            raise ValueError(f"fastact.{op}: {name} has shape {arr.shape} but "
                             f"{first_name} has shape {first.shape}; they must match")
    return xp, arrs


def _promoted(op, named, arrs):
    """The arrays, one or more of them integer or boolean, in the dtype
    NumPy's ufuncs would compute them in: ``np.result_type`` of them all
    (int64 with float32 is float64, int8 with float16 float16), float64
    where all are integers or booleans."""
    dt = np.result_type(*(a.dtype for a in arrs))
    if dt.kind in "biu":
        dt = np.dtype(np.float64)
    if not _supported(dt):
        name = next(n for (n, _), a in zip(named, arrs) if a.dtype.kind not in "biu")
        _fail_dtype(op, name, next(a.dtype for a in arrs if a.dtype.kind not in "biu"))
    return [a if a.dtype == dt else a.astype(dt) for a in arrs]


def _check_out(op, xp, out, shape, dtype, name="out"):
    if out is None:
        return
    if _is_device(out) != xp.device:
        side = "a device" if xp.device else "a host"
        raise TypeError(f"fastact.{op}: {name} must be {side} array like the inputs")
    if not xp.device and not isinstance(out, np.ndarray):
        raise TypeError(f"fastact.{op}: {name} must be a numpy.ndarray, "
                        f"not {type(out).__name__}")
    out = xp.asarray(out)        # a device array of any kind: its numba view
    out_dtype = np.dtype(out.dtype)
    if out_dtype != dtype:
        raise TypeError(f"fastact.{op}: {name} has dtype {out_dtype}, expected {dtype}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"fastact.{op}: {name} has shape {tuple(out.shape)}, "
                         f"expected {tuple(shape)}")
    if not xp.writeable(out):
        raise ValueError(f"fastact.{op}: {name} is read-only")


_real = _checks.real


def _axis(op, axis, ndim):
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"fastact.{op}: axis must be an integer, not "
                        f"{type(axis).__name__}") from None
    n = max(ndim, 1)
    if not -n <= axis < n:
        raise np.exceptions.AxisError(f"fastact.{op}: axis {axis} is out of bounds "
                                      f"for an array of dimension {ndim}")
    return axis % n


def _backend(op, xp, backend, size, name=None, dtype=None):
    """The backend of a call; for narrow ``dtype`` its narrow methods
    (Backend.narrow)."""
    if dtype is not None and is_narrow(dtype):
        return _backend(op, xp, backend, size, name).narrow()
    if xp.device:
        if backend not in (None, "cuda"):
            _dispatch._check_name(backend)
            raise TypeError(f"fastact.{op}: device arrays run on the 'cuda' backend, "
                            f"not {backend!r}")
        return _dispatch.get("cuda")
    b = _dispatch.choose(backend, size, name)
    if b.name == "cuda":
        raise TypeError(f"fastact.{op}: the 'cuda' backend takes device arrays "
                        "(numba.cuda, CuPy, PyTorch CUDA); got host arrays. Copy "
                        "them to the device yourself: fastact never transfers silently")
    return b


def _check_stream(op, xp, stream):
    if stream is not None and not xp.device:
        raise TypeError(f"fastact.{op}: stream= applies to device arrays only")
    if xp.device:
        xp.use_stream(stream)    # layout copies of this call run on it too


# --- plumbing -------------------------------------------------------------------

def _finish(xp, out, shape, dtype, ins, compute, like):
    """Run ``compute(target)`` into ``out`` or a new array and return it.

    ``out`` is written directly when it is C-contiguous and shares memory with
    no input except exactly (in place); otherwise through a temporary.
    """
    if out is None:
        res = xp.empty(shape, dtype)
        compute(res)
        return xp.wrap(res, like)
    target = xp.asarray(out)     # the user's object is returned, its view written
    if xp.is_c_contiguous(target):
        o1 = target.reshape(-1)
        if not any(xp.overlaps(a, target) and not xp.same_buffer(a.reshape(-1), o1)
                   for a in ins):
            compute(target)
            return out
    tmp = xp.empty(shape, dtype)
    compute(tmp)
    xp.assign(target, tmp)
    return out


# The native float32 and float64 dtypes are singletons: `is` tells them apart
# from everything else (byte-swapped variants included) at the least cost.
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_ND = np.ndarray


def _cast_params(params, dtype):
    """Scalar parameters in the data's dtype (the RReLU key stays uint64)."""
    T = dtype.type
    if len(params) == 1:          # slope, alpha: without a generator's cost
        return (T(params[0]),)
    return tuple(v if isinstance(v, np.uint64) else T(v) for v in params)


_F32_MAX = float(np.finfo(np.float32).max)


def _fits32(params):
    """Whether the float parameters stay finite in float32 (or are inf or
    NaN already).  Backends that take Python floats (C) are then passed them
    as they are; else they get ``_cast_params``' cast, whose overflow warning
    every other backend gives too."""
    for v in params:
        if type(v) is float and not -_F32_MAX <= v <= _F32_MAX and v - v == 0:
            return False
    return True


_PARALLEL_MIN = {name: parallel_min(name) for name in REGISTRY}
_may_share, _empty_like, _choose = np.may_share_memory, np.empty_like, _dispatch.choose
# (backend, name, pass, dtype char, small) -> (f(*ins, out, params), typed_params)
_kernels: dict = {}


def _direct(arrays, out, narrow=False):
    """The fast paths' test: the dtype of ``arrays`` when they are NumPy
    arrays of one native float dtype (float32, float64; float16 and
    bfloat16 too where ``narrow``) and one shape, C-contiguous, and ``out``
    is None or such an array aliasing no input except by being it; else
    None (the general path validates and explains).  Two arrays that own
    their memory (base None) cannot overlap: may_share_memory costs more
    than a small kernel."""
    x = arrays[0]
    if type(x) is not _ND:
        return None
    dt = x.dtype
    if not (dt is _F32 or dt is _F64 or (narrow and dt.itemsize == 2 and is_narrow(dt))) \
            or not x.flags.c_contiguous:
        return None
    shape = x.shape
    for a in arrays[1:]:
        if not (type(a) is _ND and a.dtype is dt and a.shape == shape
                and a.flags.c_contiguous):
            return None
    if out is not None and not _out_fits(out, dt, shape, arrays):
        return None
    return dt


def _out_fits(out, dt, shape, arrays):
    """The fast paths' test of an ``out``: a writeable C-contiguous NumPy
    array of dtype ``dt`` and ``shape`` that aliases none of ``arrays``
    except by being one of them."""
    if not (type(out) is _ND and out.dtype is dt and out.shape == shape):
        return False
    f = out.flags
    if not (f.c_contiguous and f.writeable):
        return False
    own = out.base is None
    for a in arrays:
        if not (out is a or (own and a.base is None) or not _may_share(a, out)):
            return False
    return True


def _transposes(arrays, out):
    """``(arrays', out')``, the transposes of ``arrays`` and ``out``, where
    every one is a NumPy array of the first's dtype and shape in F order
    (``out`` may be None); else None."""
    x = arrays[0]
    dt, shape = x.dtype, x.shape
    for a in (*arrays[1:], *(() if out is None else (out,))):
        if not (type(a) is _ND and a.dtype is dt and a.shape == shape and a.flags.f_contiguous):
            return None
    return tuple(a.T for a in arrays), None if out is None else out.T


def _elementwise_strided(b, name, pass_, arrs, p, out):
    """An elementwise call on host operands of any layout (fastact._walk:
    steps, negative and zero strides, transposes, each operand its own): the
    result in the inputs' memory order (NumPy's ``order="K"``), or written
    into ``out`` as it lies where it overlaps no input but by being it;
    no operand is copied.  None where a stride is not a multiple of the
    item size (the caller copies)."""
    target = out
    if out is not None and any(_may_share(a, out) and not HOST.same_buffer(a, out)
                               for a in arrs):
        target = None
    if target is None:
        target = _walk.empty_like(arrs)
    w = _walk.walk([*arrs, target])
    if w is None:
        return None
    if w.contiguous():       # one dense layout (F order, a permutation): the flat kernels
        *flats, flat_out = w.flat()
        b.elementwise(name, pass_, flats, flat_out, p)
    else:
        b.elementwise_strided(name, pass_, w, p)
    if out is None:
        return target
    if target is not out:
        out[...] = target
    return out


def _on_dask(op, named, out, stream, same_shape=True):
    """The dask arrays of a call (fastact._dask), checked by this module's
    rules without computing anything."""
    _dask.refuse_out(op, out)
    _check_stream(op, HOST, stream)
    return _dask.arrays(op, named, lambda standins: _inputs(op, standins, False)[1],
                        same_shape)


def _pin(op, backend):
    """``pin(size, name)``: the name of the backend a single call on host
    arrays of ``size`` elements would take."""
    return lambda size, name: _backend(op, HOST, backend, size, name).name


def _elementwise_at(name, pass_, arrays, params, starts, backend):
    """An elementwise call on 2-D C-contiguous blocks whose row ``r`` sits
    at flat index ``starts[r]`` of the whole array (fastact._dask)."""
    out = np.empty(arrays[-1].shape, arrays[-1].dtype)
    _dispatch.get(backend).elementwise_rows(name, pass_, arrays, out,
                                            _cast_params(params, out.dtype), starts)
    return out


def _elementwise(op, name, pass_, arrays, params, out, backend, stream=None):
    """One elementwise call: ``arrays`` is ``(x,)`` forward, ``(grad, saved)``
    backward (named as the registry's ``saves`` says, for error messages)."""
    # The fast path, written for the call overhead of small arrays (every
    # test is one of the cheapest NumPy offers): NumPy arrays of one native
    # float dtype and shape, C-contiguous, and an ``out`` that is None or
    # such an array aliasing no input except by being it.  Anything else
    # takes the general path below, which validates and explains.  The
    # tests are _direct's, written out: calling it (and looping over the
    # arrays) cost 0.3 us more per call (relu, 1024 float32: 1.79 against
    # 1.48 us on the C backend).
    x = arrays[0]
    if stream is None and type(x) is _ND:
        dt = x.dtype
        if (dt is _F32 or dt is _F64) and not x.flags.c_contiguous and x.flags.f_contiguous:
            # F order (a transposed C array): the same call on the
            # transposes, which are C-contiguous, takes the fast path too
            # (the general path's walk cost 7 us more: relu on a 64 x 64 x.T)
            # (not the indexed ops: RReLU's slopes follow the C-order index)
            t = None if REGISTRY[name].indexed else _transposes(arrays, out)
            if t is not None:
                res = _elementwise(op, name, pass_, t[0], params, t[1], backend)
                return res.T if out is None else out
        elif (dt is _F32 or dt is _F64 or (dt.itemsize == 2 and is_narrow(dt))) \
                and x.flags.c_contiguous:
            # (float16 and bfloat16 too: the general path cost 12-17 us
            # against 1.2-1.4 for float32, relu on 1024 elements)
            unary = len(arrays) == 1
            fast = True
            if not unary:
                s = arrays[1]
                fast = (type(s) is _ND and s.dtype is dt and s.shape == x.shape
                        and s.flags.c_contiguous)
            if fast and out is not None:
                fast = type(out) is _ND and out.dtype is dt and out.shape == x.shape
                if fast:
                    f = out.flags
                    # two arrays that own their memory (base None) cannot
                    # overlap: may_share_memory costs more than the kernel
                    own = out.base is None
                    fast = f.c_contiguous and f.writeable and (
                        out is x or (own and x.base is None) or not _may_share(x, out)) and (
                        unary or out is s or (own and s.base is None)
                        or not _may_share(s, out))
            if fast:
                n = x.size
                b = _choose(backend, n, name)
                # dt.char hashes faster than the dtype; device backends
                # (cuda) have no entry and take the general path
                key = (b, name, pass_, dt.char, n < _PARALLEL_MIN[name])
                entry = _kernels.get(key)
                if entry is None and b.name != "cuda":
                    # a narrow dtype's kernels are its backend's narrow methods'
                    kb = b if dt.itemsize > 2 else b.narrow()
                    entry = _kernels[key] = (
                        kb.elementwise_kernel(name, pass_, dt.type, key[-1]), b.typed_params)
                if entry is not None:
                    k, typed = entry
                    if params:
                        pdt = dt if dt.itemsize > 2 else _F32     # the compute dtype
                        # the one-float case tested inline (a call costs 0.1 us)
                        if typed or (pdt is _F32 and not (
                                len(params) == 1 and -_F32_MAX <= params[0] <= _F32_MAX)
                                and not _fits32(params)):
                            params = _cast_params(params, pdt)
                    res = _empty_like(x) if out is None else out
                    if n:
                        if x.ndim != 1:
                            x, res1 = x.ravel(), res.ravel()
                        else:
                            res1 = res
                        if unary:
                            k(x, res1, params)
                        else:
                            k(x, s if s.ndim == 1 else s.ravel(), res1, params)
                    return res
    names = (("x",) if pass_ == "forward" else
             ("grad", "y" if pass_ == "backward_y" else REGISTRY[name].saves))
    named = list(zip(names, arrays))
    kind = _interop.foreign(op, named, out)
    if kind == "dask":
        arrs = _on_dask(op, named, out, stream)
        if REGISTRY[name].indexed:
            return _dask.indexed(op, arrs, _pin(op, backend), name, lambda blocks, starts, b:
                                 _elementwise_at(name, pass_, blocks, params, starts, b))
        return _dask.elementwise(op, arrs, _pin(op, backend), name, lambda blocks, b:
                                 _elementwise(op, name, pass_, tuple(blocks), params, None, b))
    if kind is not None:
        return _interop.elementwise(op, kind, named, out, lambda arrs, o: _elementwise(
            op, name, pass_, tuple(arrs), params, o, backend, stream))
    xp, arrs = _inputs(op, named)
    x = arrs[-1]
    shape, dtype = x.shape, x.dtype
    _check_out(op, xp, out, shape, dtype)
    _check_stream(op, xp, stream)
    b = _backend(op, xp, backend, x.size, name, dtype)
    p = _cast_params(params, compute_dtype(dtype))
    # the indexed ops (RReLU's slopes, keyed by the C-order index) are
    # computed on C-order copies, and so are the narrow dtypes
    if not xp.device and x.size and not REGISTRY[name].indexed and not is_narrow(dtype):
        res = _elementwise_strided(b, name, pass_, arrs, p, out)
        if res is not None:
            return res
    flats = [xp.flat(a) for a in arrs]
    kw = {"stream": stream} if xp.device else {}

    def compute(target):
        if x.size:
            b.elementwise(name, pass_, flats, target.reshape(-1), p, **kw)

    return _finish(xp, out, shape, dtype, flats, compute, named[0][1])


# --- the elementwise activations, generated from the registry ----------------------

_MISSING = object()


def _default_route(spec):
    """route(op, *values) for an entry without its own: every parameter a
    real number, then the entry's ``check``."""
    names, check, name = [p.name for p in spec.api], spec.check, spec.name
    if not names:
        return None
    if len(names) == 1:
        pname = names[0]

        def route(op, v):
            v = _real(op, pname, v)
            if check is not None:
                check(op, v)
            return name, (v,)
        return route

    def route(op, *values):
        vs = tuple(_real(op, n, v) for n, v in zip(names, values))
        if check is not None:
            check(op, *vs)
        return name, vs
    return route


def _define_rows(spec, pass_):
    """The public function of a row-wise entry's ``pass_`` (``axis`` keyword-only)."""
    fname = spec.api_name if pass_ == "forward" else spec.api_name + "_backward"
    if pass_ == "forward":
        sig, named = "x", '[("x", x)]'
    else:
        sig, named = f"grad, {spec.saves}", f'[("grad", grad), ("{spec.saves}", {spec.saves})]'
    src = (f"def {fname}({sig}, *, axis=-1, out=None, backend=None, stream=None, "
           "method=None):\n"
           f"    return _rowwise({fname!r}, {spec.name!r}, {pass_!r}, {named}, axis, out, "
           "backend, stream, method)\n")
    g = globals()
    exec(compile(src, f"<fastact.{fname}>", "exec"), g)
    fn = g[fname]
    fn.__doc__ = _docstring(spec, pass_)
    return fn


def _define_gated(spec, pass_):
    """The public function of a gated entry's ``pass_``: its parameters
    and ``axis`` keyword-only, the others routed as an elementwise entry's."""
    fname = spec.api_name if pass_ == "forward" else spec.api_name + "_backward"
    params = [p for p in spec.api if p.name != "axis"]
    keyword = [f"{p.name}=_d_{fname}_{p.name}" for p in params]
    sig = ", ".join((["x"] if pass_ == "forward" else ["grad", "x"]) + ["*"] + keyword
                    + ["axis=-1", "out=None", "backend=None", "stream=None"])
    named = '[("x", x)]' if pass_ == "forward" else '[("grad", grad), ("x", x)]'
    g = globals()
    if params:
        g[f"_route_{fname}"] = spec.route
        values = ", ".join(p.name for p in params)
        head = f"    name, _ = _route_{fname}({fname!r}, {values})\n"
    else:
        head = f"    name = {spec.name!r}\n"
    src = (f"def {fname}({sig}):\n" + head +
           f"    return _gated({fname!r}, name, {pass_!r}, {named}, axis, out, backend, "
           "stream)\n")
    g.update({f"_d_{fname}_{p.name}": p.default for p in params})
    exec(compile(src, f"<fastact.{fname}>", "exec"), g)
    fn = g[fname]
    fn.__doc__ = _docstring(spec, pass_)
    return fn


def _backward_pass(op, name, from_output, params):
    """The kernels' pass for ``from_output``: "backward" (the derivative
    from x; also from y where the formula reads both alike), or
    "backward_y"; refuses a non-bool and the parameters for which y does
    not determine the derivative (the entry's FromOutput.check)."""
    if not (from_output is True or from_output is False or isinstance(from_output, np.bool_)):
        raise TypeError(f"fastact.{op}: from_output must be a bool, not "
                        f"{type(from_output).__name__}")
    fo = REGISTRY[name].from_output
    if not from_output:
        return "backward"
    if fo is None:           # reached through a route to an entry without it
        raise ValueError(f"fastact.{op}: from_output=True is not offered for these parameters")
    if fo.check is not None:
        fo.check(op, *params)
    return "backward" if fo.build is None else "backward_y"


def _define(spec, pass_):
    """The public function of ``spec``'s ``pass_``: source text with the real
    signature (defaults, keyword-only parameters), compiled once, so that a
    call costs what a hand-written one does."""
    fname = spec.api_name if pass_ == "forward" else spec.api_name + "_backward"
    arrays = ["x"] if pass_ == "forward" else ["grad", spec.saves]
    positional, keyword = [], []
    taken = spec.api_of(pass_)
    for prm in taken:
        text = prm.name if prm.default is REQUIRED else f"{prm.name}=_d_{fname}_{prm.name}"
        (keyword if prm.kw_only else positional).append(text)
    offers_y = pass_ == "backward" and spec.from_output is not None
    if offers_y:
        keyword.append("from_output=False")
    sig = ", ".join(arrays + positional + ["*"] + keyword + ["out=None", "backend=None",
                                                            "stream=None"])
    # a parameter this pass does not take (Spec.backward_api) reaches the
    # route as its default, or its example where it has none
    fixed = {p.name: p.example if p.default is REQUIRED else p.default
             for p in spec.api if p not in taken}
    values = ", ".join(f"_d_{fname}_{p.name}" if p.name in fixed else p.name
                       for p in spec.api)
    route = spec.route or _default_route(spec)
    arrs = ", ".join(arrays)
    # compiled into this module's namespace (doctest collects a function
    # whose globals are its module's), its route and defaults under its own names
    g = globals()
    if route is None:            # no parameters: nothing to validate or route
        which = (f"{pass_!r} if from_output is False else "
                 f"_backward_pass({fname!r}, {spec.name!r}, from_output, ())" if offers_y
                 else repr(pass_))
        src = (f"def {fname}({sig}):\n"
               f"    return _elementwise({fname!r}, {spec.name!r}, {which}, ({arrs},), (), "
               "out, backend, stream)\n")
    else:
        g[f"_route_{fname}"] = route
        # from_output=True: the pass that reads y (_backward_pass)
        which = (f"{pass_!r} if from_output is False else "
                 f"_backward_pass({fname!r}, name, from_output, p)" if offers_y else repr(pass_))
        src = (f"def {fname}({sig}):\n"
               f"    name, p = _route_{fname}({fname!r}, {values})\n"
               f"    return _elementwise({fname!r}, name, {which}, ({arrs},), p, "
               "out, backend, stream)\n")
    g.update({f"_d_{fname}_{p.name}": p.default for p in spec.api if p.default is not REQUIRED})
    g.update({f"_d_{fname}_{k}": v for k, v in fixed.items()})
    exec(compile(src, f"<fastact.{fname}>", "exec"), g)
    fn = g[fname]
    fn.__doc__ = _docstring(spec, pass_)
    return fn


def _docstring(spec, pass_):
    d = spec.doc
    if pass_ == "forward":
        head = d.title
        math_, notes, example = d.forward, d.notes, d.example
    else:
        whose = "output ``y``" if spec.saves == "y" else "input ``x``"
        head = f"Gradient of :func:`{spec.api_name}` from its {whose}."
        math_, notes, example = d.backward, d.backward_notes, d.backward_example
    parts = [head, f".. math:: {math_}"]
    if notes:
        parts.append(notes)
    parts.append(textwrap.fill(_MEMORY[spec.kind], 84))
    parts.append(_arguments(spec, pass_))
    if example:
        parts.append(example)
    return textwrap.indent("\n\n".join(parts), "    ").lstrip() + "\n"


def _arguments(spec, pass_):
    """The ``Arguments:`` and ``Returns`` block of one public function."""
    gated = spec.kind == "gated"
    if pass_ == "forward":
        rows = [("x", _DOC_ARGS["x"])]
    else:
        saved = (spec.doc.saved_doc or ("the forward output" if spec.saves == "y"
                                        else "the forward input"))
        rows = [("grad", _DOC_ARGS["grad_gated" if gated else "grad"]), (spec.saves, saved)]
    rows += [(p.name, p.doc + (_AXIS_NAME if p.name == "axis" else ""))
             for p in spec.api_of(pass_)]
    if spec.kind == "rowwise":
        rows.append(("method", "dask arrays chunked along ``axis`` only: ``\"two-pass\"`` "
                     "(default: per-block maxima and sums combined, the chunks kept: "
                     "within 1 ULP of the single call) or ``\"rechunk\"`` (the axis made "
                     "one chunk: bit-identical)"))
    if pass_ == "backward" and spec.from_output is not None:
        rows.append(("from_output", "a bool: the saved array is the forward's output ``y`` "
                     "instead of its input (the forward may then run in place); "
                     + spec.from_output.doc))
    rows += [(k, _DOC_ARGS[k]) for k in ("out", "backend", "stream")]
    returns = _RETURNS_GATED if gated and pass_ == "forward" else _RETURNS
    if spec.kind == "rowwise":
        returns += ("; a masked array's masked entries are left out of their rows, and "
                    "their gradients are 0")
    return _argument_block(rows, returns)


def _argument_block(rows, returns):
    lines = ["Arguments:"]
    for name, text in rows:
        lines += textwrap.wrap(f"{name}: {text}", 84, initial_indent="  ",
                               subsequent_indent="    ")
    lines += textwrap.wrap(f"Returns {returns}.", 86)
    return "\n".join(lines)


#: the generated public functions, by name (forward and backward of every
#: public elementwise entry, in registration order)
GENERATED: dict = {}


def _generate():
    defines = {"elementwise": _define, "rowwise": _define_rows, "gated": _define_gated}
    for spec in REGISTRY.values():
        if spec.kind in defines and spec.public:
            define = defines[spec.kind]
            for pass_ in ("forward", "backward"):
                fn = define(spec, pass_)
                GENERATED[fn.__name__] = fn


# --- prelu ----------------------------------------------------------------------------

_SPLITS: dict = {}


def _split_at(shape, ax):
    """(outer, C, inner): ``shape`` around its axis ``ax`` (0 <= ax < ndim);
    remembered (a dict lookup costs a third of the products and slices,
    which small arrays' call overhead notices)."""
    key = (shape, ax)
    s = _SPLITS.get(key)
    if s is None:
        if len(_SPLITS) >= 4096:
            _SPLITS.clear()
        s = _SPLITS[key] = (math.prod(shape[:ax]), shape[ax], math.prod(shape[ax + 1:]))
    return s


def _prelu_layout(op, xp, x, weight, axis):
    """Validate ``weight`` and return it as (C,) plus the (outer, C, inner) shape."""
    if _is_device(weight) != xp.device:
        if xp.device:
            raise TypeError(f"fastact.{op}: x is a device array, so weight must be one too "
                            f"(got {type(weight).__name__}); fastact never copies to the "
                            "device silently")
        raise TypeError(f"fastact.{op}: weight is a device array but x is a host array; "
                        "move them to one side first")
    w = xp.asarray(weight)
    if not xp.device and not w.dtype.isnative and _supported(w.dtype.newbyteorder("=")):
        w = w.astype(w.dtype.newbyteorder("="))        # byte-swapped: a native copy
    # narrow x may take float32 slopes (parameters are float32 to them)
    if w.dtype != x.dtype and not (is_narrow(x.dtype) and w.dtype == np.float32):
        from_python = not (isinstance(weight, np.ndarray) or xp.device)
        if (from_python and w.dtype.kind == "f") or (not xp.device and w.dtype.kind in "biu"):
            # a Python number or list, or integer or boolean slopes
            w = np.asarray(w, dtype=x.dtype)
        elif not _supported(w.dtype):
            _fail_dtype(op, "weight", w.dtype)
        else:
            raise TypeError(f"fastact.{op}: weight has dtype {w.dtype} but x has dtype "
                            f"{x.dtype}; they must match")
    if x.ndim >= 2:
        ax = _axis(op, axis, x.ndim)     # checked even where a shared weight ignores it
    if w.size == 1:
        return xp.flat(w), (1, 1, x.size), w.shape
    if x.ndim < 2:
        raise ValueError(f"fastact.{op}: for x with {x.ndim} dimension(s) the weight must "
                         f"have size 1, got shape {tuple(w.shape)}")
    shape3 = _split_at(tuple(x.shape), ax)
    if tuple(w.shape) != shape3[1:2]:
        raise ValueError(f"fastact.{op}: weight has shape {tuple(w.shape)}; expected size 1 "
                         f"or ({shape3[1]},) for x of shape {tuple(x.shape)} with axis={axis}")
    return xp.flat(w), shape3, w.shape


def _prelu_dask(op, x, weight, axis):
    """``(channel axis, weight's shape)`` for a dask ``x``, the weight
    checked by _prelu_layout on stand-ins (nothing computed)."""
    def standin(a):
        return np.broadcast_to(np.empty((), a.dtype), a.shape)
    w = standin(weight) if _dask.is_dask(weight) else weight
    _, _, wshape = _prelu_layout(op, HOST, standin(x), w, axis)
    return (_axis(op, axis, x.ndim) if x.ndim >= 2 else 0), wshape


def _prelu_direct(x, weight, axis, out, grad=None):
    """The (outer, C, inner) shape for prelu's fast path (small arrays' call
    overhead): x (and grad) pass _direct with ``out``, the weight is a
    C-contiguous array of x's dtype with size 1 or shape (C,) on the default
    or another valid integer axis; else None (the general path validates)."""
    if type(x) is not _ND or type(weight) is not _ND or type(axis) is not int or not x.size:
        return None
    if _direct((x,) if grad is None else (grad, x), out) is None:
        return None
    if weight.dtype is not x.dtype or not weight.flags.c_contiguous:
        return None
    if out is not None and not (out.base is None and weight.base is None) and \
            _may_share(weight, out):
        return None
    nd = x.ndim
    if nd >= 2 and not -nd <= axis < nd:
        return None
    if weight.size == 1:
        return (1, 1, x.size)
    if nd < 2:
        return None
    shape3 = _split_at(x.shape, axis % nd)
    return shape3 if weight.shape == shape3[1:2] else None


def prelu(x, weight, *, axis=1, out=None, backend=None, stream=None):
    r"""Parametric ReLU (He et al., 2015) with a learnable slope per channel.

    .. math:: f(x)_{\dots c \dots} = x \text{ if } x > 0 \text{ else } w_c x

    ``weight`` has size 1 (one slope shared by all elements) or shape
    ``(x.shape[axis],)``; for ``x.ndim < 2`` it must have size 1.

    Memory: an input that is not C-contiguous is first copied to C order
    (one array of its size); float16 and bfloat16 host inputs are computed
    on float32 copies (for now), device arrays without them.

    >>> import numpy as np, fastact
    >>> fastact.prelu(np.array([[-1.0, -1.0], [2.0, -3.0]]), np.array([0.1, 0.5]))
    array([[-0.1, -0.5],
           [ 2. , -1.5]])
    """
    op = "prelu"
    if stream is None:
        shape3 = _prelu_direct(x, weight, axis, out)
        if shape3 is not None:
            b = _choose(backend, x.size, "prelu")
            if b.name != "cuda":
                res = _empty_like(x) if out is None else out
                w = weight if weight.ndim == 1 else weight.reshape(-1)
                b.prelu_forward(x.reshape(shape3), w, res.reshape(shape3))
                return res
    named = [("x", x), ("weight", weight)]
    kind = _interop.foreign(op, named, out)
    if kind == "dask":
        (xa,) = _on_dask(op, [("x", x)], out, stream)
        ax, _ = _prelu_dask(op, xa, weight, axis)
        return _dask.prelu(op, xa, weight, ax, _pin(op, backend),
                           lambda blocks, b: prelu(*blocks, axis=ax, backend=b))
    if kind is not None:
        axis = _interop.axis_of(op, axis, named)
        return _interop.prelu(op, kind, named, out, lambda arrs, o: prelu(
            *arrs, axis=axis, out=o, backend=backend, stream=stream))
    xp, (xa,) = _inputs(op, [("x", x)])
    _check_out(op, xp, out, xa.shape, xa.dtype)
    _check_stream(op, xp, stream)
    w, shape3, _ = _prelu_layout(op, xp, xa, weight, axis)
    b = _backend(op, xp, backend, xa.size, "prelu", xa.dtype)
    x3 = xp.flat(xa).reshape(shape3)
    kw = {"stream": stream} if xp.device else {}

    def compute(target):
        if xa.size:
            b.prelu_forward(x3, w, target.reshape(shape3), **kw)

    return _finish(xp, out, xa.shape, xa.dtype, [x3, w], compute, x)


def prelu_backward(grad, x, weight, *, axis=1, out=None, backend=None, stream=None):
    r"""Gradients of :func:`prelu`: returns ``(grad_x, grad_weight)``.

    .. math::
        \frac{\partial L}{\partial x} = g \text{ if } x > 0 \text{ else } w_c g, \qquad
        \frac{\partial L}{\partial w_c} = \sum_{i \in c,\ \lnot (x_i > 0)} g_i x_i

    The mask is ``x > 0`` (PyTorch): at ``x = 0`` the input gradient is
    ``w_c g``, and a NaN ``x_i`` is in the sum (making it NaN).  The sum is
    correctly rounded (its terms exact, summed in double-double, rounded
    once; float16 and bfloat16: rounded to float32, then to the dtype), so
    that it does not depend on the host backend, the thread count, or a
    dask array's chunks; inf and NaN terms give the IEEE sum.
    Memory: inputs that are not C-contiguous are first copied to C order;
    float16 and bfloat16 host inputs are computed on float32 copies (for
    now), device arrays without them.

    >>> import numpy as np, fastact
    >>> gx, gw = fastact.prelu_backward(np.ones(3), np.array([-1.0, -2.0, 3.0]), np.array([0.5]))
    >>> gx, gw
    (array([0.5, 0.5, 1. ]), array([-3.]))
    """
    op = "prelu_backward"
    if stream is None:
        out_x, out_w = out if type(out) is tuple and len(out) == 2 else (out, None)
        shape3 = _prelu_direct(x, weight, axis, out_x, grad) if type(out) is not _ND else None
        if shape3 is not None and (out_w is None or (
                type(out_w) is _ND and out_w.dtype is x.dtype and out_w.shape == weight.shape
                and out_w.flags.writeable)):
            b = _choose(backend, x.size, "prelu")
            if b.name != "cuda":
                gx = _empty_like(x) if out_x is None else out_x
                gw = np.empty(shape3[1], x.dtype)
                w = weight if weight.ndim == 1 else weight.reshape(-1)
                b.prelu_backward(grad.reshape(shape3), x.reshape(shape3), w,
                                 gx.reshape(shape3), gw)
                gw = gw.reshape(weight.shape)
                if out_w is not None:
                    out_w[...] = gw
                    gw = out_w
                return gx, gw
    named = [("grad", grad), ("x", x), ("weight", weight)]
    outs = out if isinstance(out, tuple) else (out,)
    kind = _interop.foreign(op, named + [(f"out[{k}]", o) for k, o in enumerate(outs)])
    if kind == "dask":
        ga, xa = _on_dask(op, named[:2], out, stream)
        ax, wshape = _prelu_dask(op, xa, weight, axis)
        return _dask.prelu_backward(op, ga, xa, weight, ax, wshape, _pin(op, backend),
                                    lambda blocks, b: prelu_backward(*blocks, axis=ax, backend=b))
    if kind is not None:
        axis = _interop.axis_of(op, axis, named)
        return _interop.prelu(op, kind, named, out, lambda arrs, o: prelu_backward(
            *arrs, axis=axis, out=o, backend=backend, stream=stream))
    xp, (ga, xa) = _inputs(op, [("grad", grad), ("x", x)])
    if out is None:
        out_x = out_w = None
    elif isinstance(out, tuple) and len(out) == 2:
        out_x, out_w = out
    else:
        raise TypeError(f"fastact.{op}: out must be None or a pair (grad_x_out, "
                        f"grad_weight_out), not {type(out).__name__}")
    _check_out(op, xp, out_x, xa.shape, xa.dtype, "out[0]")
    _check_stream(op, xp, stream)
    w, shape3, wshape = _prelu_layout(op, xp, xa, weight, axis)
    _check_out(op, xp, out_w, wshape, w.dtype, "out[1]")
    b = _backend(op, xp, backend, xa.size, "prelu", xa.dtype)
    g3, x3 = xp.flat(ga).reshape(shape3), xp.flat(xa).reshape(shape3)
    gw = xp.empty((shape3[1],), w.dtype)
    kw = {"stream": stream} if xp.device else {}

    def compute(target):
        if xa.size:
            b.prelu_backward(g3, x3, w, target.reshape(shape3), gw, **kw)
        else:
            gw[...] = 0

    gx = _finish(xp, out_x, xa.shape, xa.dtype, [g3, x3, w], compute, x)
    gw = gw.reshape(wshape)
    if out_w is not None:
        xp.assign(out_w, gw)
        gw = out_w
    else:
        gw = xp.wrap(gw, x)
    return gx, gw


# --- softmax --------------------------------------------------------------------------

def _rowwise(op, name, pass_, named, axis, out, backend, stream, how=None):
    """One row-wise call (the softmax family): registry entry ``name``'s
    ``pass_`` along ``axis``; ``named`` is ``[("x", x)]`` forward,
    ``[("grad", g), ("y", y)]`` backward; ``how``, the public ``method=``,
    matters to dask arrays only (fastact._dask)."""
    method = "rows_forward" if pass_ == "forward" else "rows_backward"
    # fast path (small arrays' call overhead): rows along the last axis of
    # arrays that pass _direct, on a host backend
    a0 = named[0][1]
    if stream is None and how is None and type(axis) is int and type(a0) is _ND and a0.size \
            and a0.ndim and (
            axis == -1 or axis == a0.ndim - 1):
        arrays = [a for _, a in named]
        # (float16 and bfloat16 too: the general path cost 10-12 us against
        # 2.1 for float32, softmax on 4 x 16 elements)
        dt = _direct(arrays, out, narrow=True)
        if dt is not None:
            b = _choose(backend, a0.size, name)
            if b.name != "cuda":
                if dt.itemsize == 2:
                    b = b.narrow()
                res = _empty_like(a0) if out is None else out
                if a0.ndim == 2:           # rows already: no reshapes
                    getattr(b, method)(name, *arrays, res)
                else:
                    n = a0.shape[-1]
                    getattr(b, method)(name, *[a.reshape(-1, n) for a in arrays],
                                       res.reshape(-1, n))
                return res
    kind = _interop.foreign(op, named, out)
    if how not in _dask.METHODS:
        raise ValueError(f"fastact.{op}: method must be 'two-pass' or 'rechunk', not "
                         f"{how!r}")
    if kind == "dask":
        arrs = _on_dask(op, named, out, stream)
        ax = _axis(op, axis, arrs[0].ndim)
        names = [n for n, _ in named]
        return _dask.rows(op, arrs, ax, how, _pin(op, backend), name, REGISTRY[name].row,
                          pass_ == "forward", lambda blocks, b: _rowwise(
                              op, name, pass_, list(zip(names, blocks)), ax, None, b, None))
    if kind is not None:
        axis = _interop.axis_of(op, axis, named)
        names = [n for n, _ in named]
        return _interop.rows(op, kind, name, pass_, named, out, lambda arrs, o: _rowwise(
            op, name, pass_, list(zip(names, arrs)), axis, o, backend, stream))
    xp, arrs = _inputs(op, named)
    a0 = arrs[0]
    shape, dtype = a0.shape, a0.dtype
    _check_out(op, xp, out, shape, dtype)
    _check_stream(op, xp, stream)
    ax = _axis(op, axis, a0.ndim)
    last = ax == max(a0.ndim, 1) - 1
    # along a middle axis the automatic choice asks for "<name>:inner"
    # (config.NUMBA_FIRST could send those to Numba; both CPU backends have
    # the inner-axis kernels)
    b = _backend(op, xp, backend, a0.size, name if last else name + ":inner", dtype)
    kw = {"stream": stream} if xp.device else {}
    if a0.ndim == 0:
        arrs = [a.reshape(1) for a in arrs]
    inner = None if last else getattr(
        b, "rows_inner_" + ("forward" if pass_ == "forward" else "backward"), None)
    if inner is not None:
        # along a middle axis: (outer, n, K) with no transpose (the backend's
        # kernels walk the rows of a block of columns)
        outer, n = math.prod(shape[:ax]), shape[ax]
        K = math.prod(shape[ax + 1:])
        cs = [xp.contiguous(a).reshape(outer, n, K) for a in arrs]

        def compute_inner(target):
            if a0.size:
                inner(name, *cs, target.reshape(outer, n, K))

        return _finish(xp, out, shape, dtype, [c.reshape(-1) for c in cs], compute_inner,
                       named[0][1])
    moved = [xp.contiguous(a if last else xp.moveaxis(a, ax, -1)) for a in arrs]
    n = moved[0].shape[-1] if moved[0].ndim else 1
    mshape = moved[0].shape
    rows2 = [m.reshape(-1, n) for m in moved] if n else None

    def compute(target):
        if not a0.size:
            return
        if last:
            getattr(b, method)(name, *rows2, target.reshape(-1, n), **kw)
        else:
            tmp = xp.empty(mshape, dtype)
            getattr(b, method)(name, *rows2, tmp.reshape(-1, n), **kw)
            xp.assign(xp.moveaxis(target, ax, -1), tmp)

    return _finish(xp, out, shape, dtype, moved, compute, named[0][1])


# --- the gated family ---------------------------------------------------------------

def _gated_shape(op, pass_, arrs, axis):
    """``(axis, x's shape with it halved)``, checked (``arrs``: x, or grad
    and x; any arrays with a shape)."""
    x = arrs[-1]
    if x.ndim == 0:
        raise ValueError(f"fastact.{op}: x is 0-d; a gated unit splits an axis of x "
                         "into two halves")
    ax = _axis(op, axis, x.ndim)
    L = x.shape[ax]
    if L % 2:
        raise ValueError(f"fastact.{op}: x has length {L} along axis {axis}; a gated unit "
                         "splits it into two halves, so it must be even")
    half = tuple(x.shape[:ax]) + (L // 2,) + tuple(x.shape[ax + 1:])
    if pass_ != "forward" and tuple(arrs[0].shape) != half:
        raise ValueError(f"fastact.{op}: grad has shape {tuple(arrs[0].shape)}, expected "
                         f"{half} (x's shape {tuple(x.shape)} with axis {ax} halved)")
    return ax, half


def _gated_direct(name, pass_, named, axis, out, backend, stream):
    """The gated call's fast path (small arrays' call overhead: glu on 4 x
    16 float32 elements cost 7.8 us through the general path, 2.3 here), or
    None: NumPy arrays of one float dtype, C-contiguous, an even length
    along an int ``axis``, grad of the halved shape, ``out`` None or of the
    result's shape aliasing no input (backward: or being x) on a host
    backend; anything else takes the general path, which validates and
    explains."""
    x = named[-1][1]
    if stream is not None or type(axis) is not int or type(x) is not _ND or not x.ndim:
        return None
    dt = x.dtype
    if not ((dt is _F32 or dt is _F64 or (dt.itemsize == 2 and is_narrow(dt)))
            and x.flags.c_contiguous and x.size):
        return None
    nd, shape = x.ndim, x.shape
    ax = axis + nd if -nd <= axis < 0 else axis
    if not 0 <= ax < nd or shape[ax] % 2:
        return None
    half = shape[:ax] + (shape[ax] // 2,) + shape[ax + 1:]
    ins = [x]
    if pass_ != "forward":
        g = named[0][1]
        if not (type(g) is _ND and g.dtype is dt and g.shape == half and g.flags.c_contiguous):
            return None
        ins.append(g)
    rshape = half if pass_ == "forward" else shape
    # (out can be x only in the backward, and never g: their shapes differ)
    if out is not None and not _out_fits(out, dt, rshape, ins):
        return None
    b = _choose(backend, x.size, name)
    if b.name == "cuda":
        return None
    if dt.itemsize == 2:
        b = b.narrow()
    res = np.empty(rshape, dt) if out is None else out
    outer, M = math.prod(shape[:ax]), math.prod(half[ax:])
    if pass_ == "forward":
        b.gated_forward(name, x.reshape(outer, 2, M), res.reshape(outer, M))
    else:
        b.gated_backward(name, ins[1].reshape(outer, M), x.reshape(outer, 2, M),
                         res.reshape(outer, 2, M))
    return res


def _gated(op, name, pass_, named, axis, out, backend, stream):
    """One gated call: registry entry ``name``'s ``pass_``, ``x`` split in
    halves along ``axis``; ``named`` is ``[("x", x)]`` forward, ``[("grad",
    g), ("x", x)]`` backward.  The kernels take C-contiguous ``x`` as
    ``(outer, 2, M)``: any axis is then runs of ``M`` contiguous elements."""
    res = _gated_direct(name, pass_, named, axis, out, backend, stream)
    if res is not None:
        return res
    kind = _interop.foreign(op, named, out)
    if kind == "dask":
        arrs = _on_dask(op, named, out, stream, same_shape=False)
        ax, _ = _gated_shape(op, pass_, arrs, axis)
        names = [n for n, _ in named]
        return _dask.gated(op, arrs, ax, pass_ == "forward", _pin(op, backend), name,
                           lambda blocks, b: _gated(op, name, pass_, list(zip(names, blocks)),
                                                    ax, None, b, None))
    if kind is not None:
        axis = _interop.axis_of(op, axis, named)
        names = [n for n, _ in named]
        return _interop.gated(op, kind, named, out, lambda arrs, o: _gated(
            op, name, pass_, list(zip(names, arrs)), axis, o, backend, stream))
    xp, arrs = _inputs(op, named, same_shape=False)
    x = arrs[-1]
    ax, half = _gated_shape(op, pass_, arrs, axis)
    shape, dtype = (half if pass_ == "forward" else x.shape), x.dtype
    _check_out(op, xp, out, shape, dtype)
    _check_stream(op, xp, stream)
    b = _backend(op, xp, backend, x.size, name, dtype)
    kw = {"stream": stream} if xp.device else {}
    outer, M = math.prod(x.shape[:ax]), math.prod(half[ax:])
    flats = [xp.flat(a) for a in arrs]
    x3 = flats[-1].reshape(outer, 2, M)

    def compute(target):
        if not x.size:
            return
        if pass_ == "forward":
            b.gated_forward(name, x3, target.reshape(outer, M), **kw)
        else:
            b.gated_backward(name, flats[0].reshape(outer, M), x3,
                             target.reshape(outer, 2, M), **kw)

    return _finish(xp, out, shape, dtype, flats, compute, named[-1][1])


# --- the arguments, documented once -----------------------------------------------------

_ARRAY = ("float32 or float64, or the 16-bit float16 or bfloat16 (``ml_dtypes``, or a "
          "PyTorch bfloat16 CUDA tensor; computed in float32, rounded once; host and device "
          "arrays alike; every array of a call in one dtype) "
          "(integers and booleans promoted to float64, as NumPy's ufuncs "
          "do), any shape and strides: a NumPy array or anything ``np.asarray`` accepts, a "
          "PyTorch CPU tensor (detached), an xarray DataArray, a masked array, or a CUDA "
          "device array")
#: what the axis of the row-wise and gated functions may also be
_AXIS_NAME = "; for a DataArray it may be a dimension name"
_DOC_ARGS = {
    "x": f"input: {_ARRAY}",
    "grad": "upstream gradient dL/d(output): the saved array's shape and dtype",
    "grad_gated": "upstream gradient dL/d(output): x's shape with ``axis`` halved, x's dtype",
    "x_saved": "the forward input",
    "weight": "the slopes: size 1 (shared), or shape ``(x.shape[axis],)`` (one per channel); "
              "a Python number or list takes x's dtype",
    "axis_prelu": "the channel axis of ``x`` (x.ndim >= 2; ignored for 1-D x)" + _AXIS_NAME,
    "out": "where to write the result: an array of its shape and dtype, writeable (it may be "
           "an input: in place; partial overlap is handled); default a new array",
    "backend": "``\"numpy\"``, ``\"numba\"``, ``\"c\"`` or ``\"cuda\"``; default the "
               "automatic choice (``use_backend``, ``FASTACT_BACKEND``, else by size; "
               "device arrays go to ``\"cuda\"``)",
    "stream": "a CUDA stream to run on (device arrays only)",
}
_KINDS = ("of the input's kind: a tensor, a DataArray with x's coordinates and attributes, "
          "a masked array masked where an input is, a device array")
_RETURNS = ("an array of x's shape and dtype: ``out`` where given, else a new one " +
            f"({_KINDS})")
_RETURNS_GATED = ("an array of x's dtype and shape with ``axis`` halved: ``out`` where "
                  f"given, else a new one ({_KINDS}; the halved dimension's coordinates "
                  "are dropped; masked arrays are refused)")
#: what each kind of op copies (issue #18: no path copies more than the
#: output it returns, except where the docstring says so)
_MEMORY = {
    "elementwise": "Memory: NumPy inputs of any layout (transposed, sliced, broadcast, "
                   "reversed) are read where they are, never copied; the result takes their "
                   "memory order (NumPy's ``order=\"K\"``). Copied to C order first: "
                   "RReLU's inputs in training that are not C-contiguous (its slopes follow "
                   "the C-order index), strides that are not a multiple of the item size, "
                   "float16 and bfloat16 inputs that are not C-contiguous, and device arrays "
                   "that are not contiguous.",
    "rowwise": "Memory: a reduction along the last axis or a middle one runs without "
               "transposes; an input that is not C-contiguous is first copied to C order "
               "(one array of its size); float16 and bfloat16 host inputs are computed on "
               "float32 copies (for now), device arrays without them.",
    "gated": "Memory: an input that is not C-contiguous is first copied to C order (one "
             "array of its size); float16 and bfloat16 host inputs are computed on float32 "
             "copies (for now), device arrays without them.",
}
#: the hand-written functions' arguments (the generated ones' come from the registry)
_SIGNATURES = {
    prelu: ("x", "weight", "axis_prelu"), prelu_backward: ("grad", "x_saved", "weight", "axis_prelu"),
}


def _document(fn, keys):
    """Insert the arguments and the return value before the examples of ``fn``'s docstring."""
    rows = [(key.split("_")[0] if key.startswith(("x_", "y_", "axis_")) else key, _DOC_ARGS[key])
            for key in keys + ("out", "backend", "stream")]
    returns = ("a pair ``(grad_x, grad_weight)``: grad_x as x, grad_weight with the shape of "
               "``weight``; ``out`` may be ``None`` or a pair of arrays (either ``None``)"
               if fn is prelu_backward else _RETURNS)
    doc = fn.__doc__
    at = doc.index("\n    >>>")
    fn.__doc__ = (doc[:at] + "\n" + textwrap.indent(_argument_block(rows, returns), "    ")
                  + "\n" + doc[at:])


for _fn, _keys in _SIGNATURES.items():
    _document(_fn, _keys)
_generate()
