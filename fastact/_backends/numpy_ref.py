"""The reference backend: the registry's NumPy expressions, nothing else.

Slow and obvious on purpose; it is the oracle of the test suite.
"""
from __future__ import annotations

import numpy as np

from .._registry import REGISTRY
from . import Backend


class NumpyBackend(Backend):
    name = "numpy"

    def elementwise(self, name, pass_, ins, out, params):
        spec = REGISTRY[name]
        fn = spec.reference_forward if pass_ == "forward" else spec.reference_backward
        out[...] = fn(*ins, *params)

    def prelu_forward(self, x, w, out):
        out[...] = REGISTRY["prelu"].reference_forward(x, w[None, :, None])

    def prelu_backward(self, g, x, w, gx, gw):
        gx_val = REGISTRY["prelu"].reference_backward(g, x, w[None, :, None])
        wide = np.longdouble if x.dtype == np.float64 else np.float64
        terms = np.where(x > 0, 0, g.astype(wide) * x.astype(wide))
        gw[...] = terms.sum(axis=(0, 2)).astype(x.dtype)
        gx[...] = gx_val

    def softmax_forward(self, x, out):
        out[...] = REGISTRY["softmax"].reference_forward(x)

    def softmax_backward(self, g, y, out):
        out[...] = REGISTRY["softmax"].reference_backward(g, y)

    def describe(self):
        return {"numpy": np.__version__}
