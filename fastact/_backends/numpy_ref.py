"""The reference backend: the registry's NumPy expressions, nothing else.

Slow and obvious on purpose; it is the oracle of the test suite.  Like the
compiled backends it raises no floating-point warnings: IEEE results
(inf * 0 = NaN, exp(-1000) = 0) are the specification, not accidents.
"""
from __future__ import annotations

import math

import numpy as np

from .._registry import REGISTRY
from . import Backend, prelu_weight_terms, round_pairs


def _quiet(method):
    def run(*args, **kwargs):
        with np.errstate(all="ignore"):
            return method(*args, **kwargs)
    run.__name__ = method.__name__
    return run


class NumpyBackend(Backend):
    name = "numpy"

    @_quiet
    def elementwise(self, name, pass_, ins, out, params):
        spec = REGISTRY[name]
        fn = {"forward": spec.reference_forward, "backward": spec.reference_backward}.get(
            pass_) or spec.from_output.reference
        out[...] = fn(*ins, *params)

    @_quiet
    def elementwise_rows(self, name, pass_, ins, out, params, starts):
        spec = REGISTRY[name]
        fn = {"forward": spec.reference_forward, "backward": spec.reference_backward}.get(
            pass_) or spec.from_output.reference
        if not spec.indexed:
            out[...] = fn(*ins, *params)
            return
        index = starts.astype(np.uint64)[:, None] + np.arange(out.shape[1], dtype=np.uint64)
        out[...] = fn(*ins, *params, index=index)

    def elementwise_strided(self, name, pass_, walk, params):
        # the expressions take the operands as they lie
        self.elementwise(name, pass_, walk.arrays[:-1], walk.arrays[-1], params)

    @_quiet
    def prelu_forward(self, x, w, out):
        out[...] = REGISTRY["prelu"].reference_forward(x, w[None, :, None])

    @_quiet
    def prelu_backward(self, g, x, w, gx, gw):
        gx_val = REGISTRY["prelu"].reference_backward(g, x, w[None, :, None])
        gw[...] = exact_channel_sums(g, x, gw.dtype)
        gx[...] = gx_val

    @_quiet
    def rows_forward(self, name, x, out):
        out[...] = REGISTRY[name].reference_forward(x)

    @_quiet
    def rows_backward(self, name, g, y, out):
        out[...] = REGISTRY[name].reference_backward(g, y)

    @_quiet
    def gated_forward(self, name, x, out):
        out[...] = REGISTRY[name].reference_forward(x)

    @_quiet
    def gated_backward(self, name, g, x, out):
        out[...] = REGISTRY[name].reference_backward(g, x)

    def describe(self):
        return {"numpy": np.__version__}


def exact_channel_sums(g, x, dtype):
    """PReLU's weight gradient of ``(outer, C, inner)`` arrays, each
    channel's sum exactly rounded to ``dtype``: its exact terms
    (:func:`prelu_weight_terms`) added by ``math.fsum`` (the sum and the
    exact remainder, rounded once by :func:`round_pairs`); NumPy's sum where
    a term is not finite (inf, NaN: their IEEE sum)."""
    p, e = prelu_weight_terms(g, x)
    C = x.shape[1]
    hi, lo = np.zeros(C), np.zeros(C)
    for c in range(C):
        terms = np.concatenate([p[:, c].ravel(), e[:, c].ravel()]).tolist()
        try:
            hi[c] = math.fsum(terms)
            lo[c] = math.fsum(terms + [-hi[c]])
        except (OverflowError, ValueError):
            with np.errstate(all="ignore"):
                hi[c] = np.sum(p[:, c])
    return round_pairs(hi, lo, dtype)
