"""The softmax family, the gated units and PReLU inside a user's ``@numba.njit``.

Each implementation runs the Numba backend's serial kernels in native code
(no object mode, no GIL), the public function's route with them: the row
kernels along the last axis, the inner-axis kernels along any other (as
``backend="numba"`` does, so the results are that call's, bit for bit);
the gated kernels on x as ``(outer, 2, M)``; PReLU's kernels on ``(outer,
C, inner)``, its weight gradient's partial sums added up by channel by the
backend's own helper.  Inputs of any layout are taken in C order (a copy
where they are not; integers and booleans in float64), ``out=`` is written
directly where it is C-contiguous and overlaps no input but exactly, else
through a temporary.  The public function's checks are made: the dtypes
and the flags that choose a formula when the function is compiled (a
``TypingError``), the shapes and the axis when it runs (``ValueError``).
"""
from __future__ import annotations

import functools

import numpy as np

from . import config
from ._backends import prelu_run


def _fail(fname, message):
    from numba.core.errors import TypingError
    raise TypingError(f"fastact.{fname}: {message}")


@functools.lru_cache(maxsize=None)
def _tools():
    """njit helpers shared by the implementations."""
    import numba
    cols_min, cols_bytes = 16, config.INNER_BYTES

    @numba.njit
    def axis_of(axis, ndim):
        n = max(ndim, 1)
        if not -n <= axis < n:
            raise ValueError("fastact: axis is out of bounds for the array's dimension")
        return axis % n

    @numba.njit
    def split(shape, ax):
        """(outer, n, K) of ``shape`` around its axis ``ax``"""
        outer, n, K = 1, 1, 1
        for d in range(len(shape)):
            if d < ax:
                outer *= shape[d]
            elif d == ax:
                n = shape[d]
            else:
                K *= shape[d]
        return outer, n, K

    @numba.njit
    def columns(outer, K, itemsize):
        """_backends.inner_columns with one thread (the serial kernels')"""
        cols = max(cols_min, cols_bytes // itemsize)
        while cols > cols_min and outer * ((K + cols - 1) // cols) < 2:
            cols //= 2
        return min(cols, K)

    @numba.njit
    def disjoint(a1, o1):
        pa, po = a1.ctypes.data, o1.ctypes.data
        return pa + a1.nbytes <= po or po + o1.nbytes <= pa

    @numba.njit
    def same(a1, o1):
        return a1.ctypes.data == o1.ctypes.data and a1.size == o1.size

    @numba.njit
    def target(res, a1, b1, exact_ok):
        """``res`` flat where it is C-contiguous and shares no memory with
        the inputs (or, ``exact_ok``, exactly theirs), else a temporary
        (and False)"""
        if res.flags.c_contiguous:
            o1 = res.reshape(res.size)
            if (disjoint(a1, o1) or (exact_ok and same(a1, o1))) and \
                    (disjoint(b1, o1) or (exact_ok and same(b1, o1))):
                return o1, True
        return np.empty(res.size, res.dtype), False

    from ._overloads import _helpers
    return dict(axis_of=axis_of, split=split, columns=columns, target=target,
                scatter=_helpers()["scatter"], same=same, np=np, run_len=numba.njit(prelu_run))


def _flat(name, cast):
    """source: ``name`` flat in C order, in dtype T (a copy where needed)"""
    conv = f"{name}.astype(T)" if cast else f"np.ascontiguousarray({name})"
    return f"    {name}1 = {conv}.reshape({name}.size)"


def _compile(lines, ns):
    exec("\n".join(lines) + "\n", ns)
    return ns["impl"]


def _out_lines(has_out, shape_expr, like):
    if has_out:
        return [f"    if out.shape != {shape_expr}:",
                "        raise ValueError('fastact: out has another shape than the result')",
                "    res = out"]
    return [f"    res = np.empty({shape_expr}, T)"]


def _tail():
    return ["    if not direct:",
            "        scatter(res, o1)",
            "    return res"]


def rows(fname, entry, pass_, sig, bound, dt, casts, has_out, defaults):
    """softmax, log_softmax, softmin and their backwards."""
    from ._backends import numba_cpu
    from ._dask import METHODS
    from ._overloads import _constant, _MISSING
    method = _constant(bound.get("method"))
    if method is _MISSING or method not in METHODS:
        _fail(fname, f"method must be a constant, one of {METHODS} (it matters to dask "
                     "arrays only)")
    ins = ["x"] if pass_ == "forward" else ["grad", "y"]
    ndim = bound[ins[-1]].ndim
    k = 0 if pass_ == "forward" else 1
    T = dt.type
    ns = dict(defaults, **_tools(), T=T, ndim=ndim, itemsize=dt.itemsize,
              rows_k=numba_cpu._row_kernels(entry, T, False)[k],
              inner_k=numba_cpu._row_inner_kernels(entry, T, False)[k])
    axis = _constant(bound.get("axis"))
    last = None if axis is _MISSING else (axis % max(ndim, 1) == max(ndim, 1) - 1
                                          if -max(ndim, 1) <= axis < max(ndim, 1) else None)
    lines = [f"def impl({sig}):"] + [_flat(a, c) for a, c in zip(ins, casts)]
    saved = ins[-1]
    if len(ins) == 2:
        lines += ["    if grad.shape != y.shape:",
                  "        raise ValueError('fastact: grad and y differ in shape')"]
    lines += ["    ax = axis_of(axis, ndim)",
              f"    outer, n, K = split({saved}.shape, ax)"]
    lines += _out_lines(has_out, f"{saved}.shape", saved)
    a, b = (ins[0] + "1", ins[-1] + "1")
    lines += [f"    o1, direct = target(res, {a}, {b}, True)",
              f"    if {saved}.size:"]
    args = ", ".join(x + "1" for x in ins)
    rows_call = ("        rows_k(" + ", ".join(f"{x}1.reshape(outer * K, n)" for x in ins)
                 + ", o1.reshape(outer * K, n))")
    inner_call = f"        inner_k({args}, o1, outer, n, K, columns(outer, K, itemsize))"
    if last is True:
        lines.append(rows_call)
    elif last is False:
        lines.append(inner_call)
    else:
        lines += ["      if ax == max(ndim, 1) - 1:", "  " + rows_call,
                  "      else:", "  " + inner_call]
    return _compile(lines + _tail(), ns)


def gated(fname, entry, pass_, sig, bound, dt, casts, has_out, defaults):
    """glu, reglu, geglu, swiglu and their backwards: x as (outer, 2, M)."""
    from ._backends import numba_cpu
    ins = ["x"] if pass_ == "forward" else ["grad", "x"]
    ndim = bound["x"].ndim
    if ndim == 0:
        _fail(fname, "x is 0-d; a gated unit splits an axis of x into two halves")
    fwd, bwd, bwd_same = numba_cpu._gated_kernels(entry, dt.type, False)
    ns = dict(defaults, **_tools(), T=dt.type, ndim=ndim, fwd=fwd, bwd=bwd, bwd_same=bwd_same)
    half = "(" + "".join(f"x.shape[{d}] // 2 if ax == {d} else x.shape[{d}], "
                         for d in range(ndim)) + ")"
    lines = [f"def impl({sig}):"] + [_flat(a, c) for a, c in zip(ins, casts)]
    lines += ["    ax = axis_of(axis, ndim)",
              "    if x.shape[ax] % 2:",
              "        raise ValueError('fastact: x has an odd length along axis; a gated "
              "unit splits it into two halves, so it must be even')",
              f"    half = {half}",
              "    outer, n, K = split(x.shape, ax)",
              "    M = n // 2 * K"]
    if pass_ == "forward":
        lines += _out_lines(has_out, "half", "x")
        lines += ["    o1, direct = target(res, x1, x1, False)",
                  "    if x.size:",
                  "        fwd(x1, o1, o1, M, outer * M)"]
    else:
        lines += ["    if grad.shape != half:",
                  "        raise ValueError('fastact: grad must have the shape of x with axis "
                  "halved')"]
        lines += _out_lines(has_out, "x.shape", "x")
        lines += ["    if res.flags.c_contiguous and same(x1, res.reshape(res.size)):",
                  "        o1, direct = res.reshape(res.size), True",
                  "        if x.size:",
                  "            bwd_same(grad1, o1, o1, M, outer * M)",
                  "    else:",
                  "        o1, direct = target(res, grad1, x1, False)",
                  "        if x.size:",
                  "            bwd(grad1, x1, o1, M, outer * M)"]
    return _compile(lines + _tail(), ns)


def prelu(fname, pass_, sig, bound, dt, casts, has_out, defaults):
    """prelu and prelu_backward: (outer, C, inner), the weight of size 1 or (C,)."""
    from numba import types
    from ._backends import numba_cpu
    w = bound["weight"]
    if isinstance(w, (types.Float, types.Integer, types.Boolean)):
        wexpr = "np.full(1, weight, T)"
        wshape = "()"
    elif isinstance(w, types.Array) and isinstance(w.dtype, (types.Float, types.Integer,
                                                             types.Boolean)):
        wdt = np.dtype(str(w.dtype))
        if wdt.kind == "f" and wdt != dt:
            _fail(fname, f"weight has dtype {wdt} but x has dtype {dt}; they must match")
        wexpr = "np.ascontiguousarray(weight).reshape(weight.size)" if wdt == dt else \
            "weight.astype(T).reshape(weight.size)"
        wshape = "weight.shape"
    else:
        _fail(fname, f"weight must be an array or a number inside numba code (got {w})")
    ins = ["x"] if pass_ is None or pass_ == "forward" else ["grad", "x"]
    ndim = bound["x"].ndim
    fwd_k, bwd_k = numba_cpu._prelu_kernels(dt.type, False)
    ns = dict(defaults, **_tools(), T=dt.type, ndim=ndim, fwd_k=fwd_k, bwd_k=bwd_k,
              sums=numba_cpu.prelu_channel_sums(), row_min=config.PRELU_ROW_MIN,
              blocks=config.PRELU_BLOCKS)
    lines = [f"def impl({sig}):"] + [_flat(a, c) for a, c in zip(ins, casts)]
    lines += [f"    w = {wexpr}",
              "    ax = axis_of(axis, ndim) if ndim >= 2 else 0"]
    if ndim >= 2:
        lines += ["    if w.size == 1:",
                  "        outer, C, inner = 1, 1, x.size",
                  "    else:",
                  "        outer, C, inner = split(x.shape, ax)",
                  "        if w.size != C:",
                  "            raise ValueError('fastact: weight must have size 1 or "
                  "x.shape[axis]')"]
    else:
        lines += ["    if w.size != 1:",
                  "        raise ValueError('fastact: for x with fewer than 2 dimensions the "
                  "weight must have size 1')",
                  "    outer, C, inner = 1, 1, x.size"]
    if len(ins) == 1:
        lines += _out_lines(has_out, "x.shape", "x")
        lines += ["    o1, direct = target(res, x1, w, True)",
                  "    if x.size:",
                  "        fwd_k(x1.reshape(outer, C, inner), w, o1.reshape(outer, C, inner))"]
        return _compile(lines + _tail(), ns)
    lines += ["    if grad.shape != x.shape:",
              "        raise ValueError('fastact: grad and x differ in shape')",
              "    gx = np.empty(x.shape, T)",
              "    gw = np.zeros(C, T)",
              "    if x.size:",
              "        if inner >= row_min:",
              "            partial = np.empty((outer * C, 2))",
              "        else:",
              "            L = run_len(C * inner)",
              "            partial = np.empty((min((x.size + L - 1) // L, blocks), 2 * L))",
              "        bwd_k(grad1, x1, w, gx.reshape(x.size), partial, outer, C, inner)",
              "        sums(partial, outer, C, inner, gw)",
              f"    return gx, gw.reshape({wshape})"]
    return _compile(lines, ns)
