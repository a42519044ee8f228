"""Parallel CPU backend: the registry's formulas compiled by Numba.

Loop skeletons only.  Each registry formula is compiled with the polynomial
primitives of :func:`fastact._prims.cpu_prims` and inlined into a
``prange`` loop (large arrays) or a plain loop (small arrays).  Kernels are
compiled lazily on first use, release the GIL, and are cached on disk.
"""
from __future__ import annotations

import functools
import threading

import numpy as np

from .. import _threads, config
from .._prims import cpu_prims
from .._registry import REGISTRY
from . import Backend

# A parallel region entered from two Python threads at once is not safe on
# every Numba threading layer (workqueue aborts); a caller that finds the
# pool busy runs the serial kernel on its own thread instead.
_pool_lock = threading.Lock()


def _numba():
    import numba
    return numba


def _jit(parallel):
    return _numba().njit(parallel=parallel, nogil=True, error_model="numpy", cache=True)


def _scalar(fn):
    return _numba().njit(error_model="numpy", cache=True)(fn)


@functools.lru_cache(maxsize=None)
def _formulas(name, dtype):
    return tuple(_scalar(f) for f in REGISTRY[name].build(cpu_prims(dtype)))


# --- loop skeletons -----------------------------------------------------------

def _make_unary(f, indexed, parallel):
    prange = _numba().prange if parallel else range
    if indexed:
        def loop(x, out, params):
            for i in prange(x.shape[0]):
                out[i] = f(x[i], i, *params)
    else:
        def loop(x, out, params):
            for i in prange(x.shape[0]):
                out[i] = f(x[i], *params)
    return _jit(parallel)(loop)


def _make_binary(f, indexed, parallel):
    prange = _numba().prange if parallel else range
    if indexed:
        def loop(g, s, out, params):
            for i in prange(g.shape[0]):
                out[i] = f(g[i], s[i], i, *params)
    else:
        def loop(g, s, out, params):
            for i in prange(g.shape[0]):
                out[i] = f(g[i], s[i], *params)
    return _jit(parallel)(loop)


@functools.lru_cache(maxsize=None)
def _elementwise_kernel(name, pass_, dtype, parallel):
    fwd, bwd = _formulas(name, dtype)
    indexed = REGISTRY[name].indexed
    if pass_ == "forward":
        return _make_unary(fwd, indexed, parallel)
    return _make_binary(bwd, indexed, parallel)


@functools.lru_cache(maxsize=None)
def _prelu_kernels(dtype, parallel):
    fwd, bwd, wterm = _formulas("prelu", dtype)
    nb = _numba()
    prange = nb.prange if parallel else range
    W = np.float64
    zero = W(0.0)
    # float32 terms summed in float64 are exact enough; float64 sums need Kahan
    compensated = np.dtype(dtype) == np.float64

    def forward(x, w, out):
        outer, C, inner = x.shape
        for r in prange(outer * C):
            o, c = r // C, r % C
            wc = w[c]
            for j in range(inner):
                out[o, c, j] = fwd(x[o, c, j], wc)

    def backward(g, x, w, gx, rowsum):
        outer, C, inner = x.shape
        for r in prange(outer * C):
            o, c = r // C, r % C
            wc = w[c]
            acc = zero
            comp = zero
            for j in range(inner):
                gj, xj = g[o, c, j], x[o, c, j]
                gx[o, c, j] = bwd(gj, xj, wc)
                v = W(wterm(gj, xj))
                if compensated:
                    y = v - comp
                    t = acc + y
                    comp = (t - acc) - y
                    acc = t
                else:
                    acc += v
            rowsum[r] = acc - comp

    return _jit(parallel)(forward), _jit(parallel)(backward)


@functools.lru_cache(maxsize=None)
def _softmax_kernels(dtype, parallel):
    """Row skeletons; float32 works in float64, float64 sums compensated."""
    nb = _numba()
    prange = nb.prange if parallel else range
    T = np.dtype(dtype).type
    W = np.float64
    exp = cpu_prims(np.float64).exp
    L = config.REDUCTION_LANES
    neg_inf = W(-np.inf)
    compensated = np.dtype(dtype) == np.float64

    @_scalar
    def row_max(xr, n):
        lanes = np.full(L, neg_inf)
        nb_ = n - n % L
        for j in range(0, nb_, L):
            for k in range(L):
                v = W(xr[j + k])
                lanes[k] = v if v > lanes[k] else lanes[k]
        m = neg_inf
        for k in range(L):
            m = lanes[k] if lanes[k] > m else m
        for j in range(nb_, n):
            v = W(xr[j])
            m = v if v > m else m
        return m

    @_scalar
    def lane_sum(acc, comp):
        # Neumaier's sum of the lanes, corrected by their Kahan compensations
        s = W(0.0)
        c = W(0.0)
        for k in range(L):
            v = acc[k]
            t = s + v
            c += ((s - t) + v) if abs(s) >= abs(v) else ((v - t) + s)
            s = t
        for k in range(L):
            c -= comp[k]
        return s + c

    @_scalar
    def add(acc, comp, k, v):
        if compensated:      # Kahan per lane: vectorizes, unlike Neumaier
            y = v - comp[k]
            t = acc[k] + y
            comp[k] = (t - acc[k]) - y   # minus the part lost
            acc[k] = t
        else:
            acc[k] += v

    def forward(x, out):
        rows, n = x.shape
        for r in prange(rows):
            xr, orow = x[r], out[r]
            m = row_max(xr, n)
            acc = np.zeros(L)
            comp = np.zeros(L)
            nb_ = n - n % L
            for j in range(0, nb_, L):
                for k in range(L):
                    e = exp(W(xr[j + k]) - m)
                    orow[j + k] = T(e)
                    add(acc, comp, k, e)
            for j in range(nb_, n):
                e = exp(W(xr[j]) - m)
                orow[j] = T(e)
                add(acc, comp, j - nb_, e)
            inv = W(1.0) / lane_sum(acc, comp)
            for j in range(n):
                orow[j] = T(W(orow[j]) * inv)

    def backward(g, y, out):
        rows, n = y.shape
        for r in prange(rows):
            gr, yr, orow = g[r], y[r], out[r]
            acc = np.zeros(L)
            comp = np.zeros(L)
            nb_ = n - n % L
            for j in range(0, nb_, L):
                for k in range(L):
                    add(acc, comp, k, W(gr[j + k]) * W(yr[j + k]))
            for j in range(nb_, n):
                add(acc, comp, j - nb_, W(gr[j]) * W(yr[j]))
            dot = lane_sum(acc, comp)
            for j in range(n):
                orow[j] = T(W(yr[j]) * (W(gr[j]) - dot))

    return _jit(parallel)(forward), _jit(parallel)(backward)


# --- the backend ------------------------------------------------------------------

class NumbaBackend(Backend):
    name = "numba"

    def load(self):
        nb = _numba()          # ImportError says why
        self._nb = nb
        return self

    def _run(self, n, get_kernel, *args):
        if n >= config.PARALLEL_MIN and _pool_lock.acquire(blocking=False):
            try:
                want = _threads.get_num_threads()
                if self._nb.get_num_threads() != want:
                    self._nb.set_num_threads(want)
                get_kernel(True)(*args)
            finally:
                _pool_lock.release()
        else:
            get_kernel(False)(*args)

    def elementwise(self, name, pass_, ins, out, params):
        dt = out.dtype.type
        self._run(out.size,
                  lambda par: _elementwise_kernel(name, pass_, dt, par),
                  *ins, out, params)

    def prelu_forward(self, x, w, out):
        self._run(x.size, lambda par: _prelu_kernels(x.dtype.type, par)[0], x, w, out)

    def prelu_backward(self, g, x, w, gx, gw):
        outer, C, _ = x.shape
        rowsum = np.empty(outer * C, dtype=np.float64)
        self._run(x.size, lambda par: _prelu_kernels(x.dtype.type, par)[1],
                  g, x, w, gx, rowsum)
        gw[...] = rowsum.reshape(outer, C).sum(axis=0)

    def softmax_forward(self, x, out):
        self._run(x.size, lambda par: _softmax_kernels(x.dtype.type, par)[0], x, out)

    def softmax_backward(self, g, y, out):
        self._run(y.size, lambda par: _softmax_kernels(y.dtype.type, par)[1], g, y, out)

    def describe(self):
        nb = _numba()
        return {"numba": nb.__version__, "threads": nb.get_num_threads(),
                "threading_layer": nb.config.THREADING_LAYER}
