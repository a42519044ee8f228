"""Narrow (float16, bfloat16) host arrays on a backend's float32 kernels.

:class:`Widened` wraps a backend: each call widens its narrow inputs to
float32 copies (fastact._narrow.widen), runs the backend's float32 method,
and rounds the float32 results once into the narrow outputs.  It is the
NumPy reference's narrow path, and the row-wise path (softmax family,
PReLU, gated units) of the compiled backends, whose elementwise kernels
convert in chunks instead.  A PReLU weight may be float32 (used as it is)
or of x's dtype; its gradient is returned in the weight's dtype.
"""
from __future__ import annotations

import numpy as np

from .._narrow import is_narrow, narrow_into, widen


def _f32(a):
    return widen(a) if is_narrow(a.dtype) else a


def _back(out, f32_out):
    if f32_out is not out:
        narrow_into(out, f32_out)


def _like(out):
    return np.empty(out.shape, np.float32) if is_narrow(out.dtype) else out


class Widened:
    """``backend``'s methods on narrow arrays, computed by its float32 ones."""

    def __init__(self, backend):
        self.backend = backend
        self.name = backend.name

    def _one_out(self, method, head, arrays, out, *tail):
        """``backend.method(*head, *arrays, out, *tail)`` on float32 copies."""
        o = _like(out)
        getattr(self.backend, method)(*head, *(_f32(a) for a in arrays), o, *tail)
        _back(out, o)

    def elementwise(self, name, pass_, ins, out, params):
        o = _like(out)
        self.backend.elementwise(name, pass_, [_f32(a) for a in ins], o, params)
        _back(out, o)

    def prelu_forward(self, x, w, out):
        self._one_out("prelu_forward", (), (x, w), out)

    def prelu_backward(self, g, x, w, gx, gw):
        ox, ow = _like(gx), _like(gw)
        self.backend.prelu_backward(_f32(g), _f32(x), _f32(w), ox, ow)
        _back(gx, ox)
        _back(gw, ow)

    def rows_forward(self, name, x, out):
        self._one_out("rows_forward", (name,), (x,), out)

    def rows_backward(self, name, g, y, out):
        self._one_out("rows_backward", (name,), (g, y), out)

    def gated_forward(self, name, x, out):
        self._one_out("gated_forward", (name,), (x,), out)

    def gated_backward(self, name, g, x, out):
        self._one_out("gated_backward", (name,), (g, x), out)
