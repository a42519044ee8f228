"""Narrow (float16, bfloat16) host arrays on a backend's float32 kernels.

:class:`Widened` wraps a backend: each call widens its narrow inputs to
float32 copies (fastact._narrow.widen), runs the backend's float32 method,
and rounds the float32 results once into the narrow outputs.  It is the
NumPy reference's narrow path; the compiled backends' kernels convert
elements, chunks, rows or runs themselves (c_src/narrow.inc,
numba_cpu._narrow_kernel and _prelu_kernels, numba_narrow.py).  A PReLU
weight may be float32 (used as it is) or of x's dtype; its gradient is
returned in the weight's dtype.
"""
from __future__ import annotations

import numpy as np

from .._narrow import is_narrow, narrow_into, widen
from . import Backend


def _like(out):
    return np.empty(out.shape, np.float32) if is_narrow(out.dtype) else out


def c_conversions():
    """``(widen, narrow_into)`` by the C backend's SIMD conversions
    (fa_narrow_convert: the same bits as fastact._narrow's, 90x faster at
    narrowing 2**24 float32: 13 ms against 1.7 s), or None where the C
    backend does not load."""
    from .. import _dispatch
    try:
        c = _dispatch.get("c")
    except _dispatch.BackendUnavailable:
        return None

    def widen_c(a):
        return c.narrow_convert(a.dtype, True, a.view(np.uint16))

    def narrow_into_c(out, y):
        out.view(np.uint16)[...] = c.narrow_convert(out.dtype, False, y).reshape(out.shape)
    return widen_c, narrow_into_c


class Widened:
    """``backend``'s methods on narrow arrays, computed by its float32 ones;
    ``conversions``: ``(widen, narrow_into)``, by default fastact._narrow's
    (NumPy: the reference's own)."""

    def __init__(self, backend, conversions=None):
        self.backend = backend
        self.name = backend.name
        self._widen, self._narrow_into = conversions or (widen, narrow_into)

    def _f32(self, a):
        return self._widen(a) if is_narrow(a.dtype) else a

    def _back(self, out, f32_out):
        if f32_out is not out:
            self._narrow_into(out, f32_out)

    def _one_out(self, method, head, arrays, out, *tail):
        """``backend.method(*head, *arrays, out, *tail)`` on float32 copies."""
        o = _like(out)
        getattr(self.backend, method)(*head, *(self._f32(a) for a in arrays), o, *tail)
        self._back(out, o)

    #: ``k(x, out, params)`` / ``k(g, s, out, params)`` on flat C-contiguous
    #: narrow arrays (fastact._api's fast path), float32 parameters: the
    #: backends' closure over ``elementwise``
    elementwise_kernel = Backend.elementwise_kernel

    def elementwise(self, name, pass_, ins, out, params):
        o = _like(out)
        self.backend.elementwise(name, pass_, [self._f32(a) for a in ins], o, params)
        self._back(out, o)

    def prelu_forward(self, x, w, out):
        self._one_out("prelu_forward", (), (x, w), out)

    def prelu_backward(self, g, x, w, gx, gw):
        ox, ow = _like(gx), _like(gw)
        self.backend.prelu_backward(self._f32(g), self._f32(x), self._f32(w), ox, ow)
        self._back(gx, ox)
        self._back(gw, ow)

    def rows_forward(self, name, x, out):
        self._one_out("rows_forward", (name,), (x,), out)

    def rows_backward(self, name, g, y, out):
        self._one_out("rows_backward", (name,), (g, y), out)

    def gated_forward(self, name, x, out):
        self._one_out("gated_forward", (name,), (x,), out)

    def gated_backward(self, name, g, x, out):
        self._one_out("gated_backward", (name,), (g, x), out)
