"""The training pieces of :mod:`fastact.nn` on CUDA device arrays: parameter
updates (SGD's rule, gradient accumulation, clearing) and the two losses.

Not activation math (that is the registry's): the arithmetic of
``fastact.nn``'s NumPy code, written as grid-stride ``numba.cuda`` kernels
in the same order of operations, so that a device step gives the host
step's values (bit for bit under numba's CUDA simulator; a GPU's compiler
may fuse a multiply and an add).  Compiled on first use; imported only when
a device array reaches fastact.nn.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda          # a module global: the simulator swaps it in kernels


@functools.lru_cache(maxsize=None)
def _kernels():
    @cuda.jit
    def fill(a, v):
        for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
            a[i] = v

    @cuda.jit
    def add(dst, src):
        for i in range(cuda.grid(1), dst.size, cuda.gridsize(1)):
            dst[i] = dst[i] + src[i]

    @cuda.jit
    def sgd(a, g, v, lr, mu, wd, decay):
        # host: g = g + wd a (decay only); v *= mu; v -= lr g; a += v
        for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
            gi = g[i] + wd * a[i] if decay else g[i]
            vi = v[i] * mu
            vi = vi - lr * gi
            v[i] = vi
            a[i] = a[i] + vi

    @cuda.jit
    def nll_rows(lp, t, out):
        # out[n] = -lp[n, t[n]] in float64
        for n in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[n] = -np.float64(lp[n, t[n]])

    @cuda.jit
    def ce_grad(lp, t, scale, g):
        # host: g = exp(lp); g[n, t[n]] -= 1; g *= scale
        cols = lp.shape[1]
        for i in range(cuda.grid(1), lp.size, cuda.gridsize(1)):
            n, c = i // cols, i % cols
            e = math.exp(lp[n, c])
            if c == t[n]:
                e = e - 1
            g[n, c] = e * scale

    @cuda.jit
    def sub_sq(x, t, d, sq):
        # d = x - t; sq = d**2 in float64 (the host's np.square(d, dtype=float64))
        for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
            di = x[i] - t[i]
            d[i] = di
            sq[i] = np.float64(di) * np.float64(di)

    @cuda.jit
    def scale(d, s, out):
        for i in range(cuda.grid(1), d.size, cuda.gridsize(1)):
            out[i] = d[i] * s

    total = cuda.reduce(lambda a, b: a + b)
    return {"fill": fill, "add": add, "sgd": sgd, "nll_rows": nll_rows,
            "ce_grad": ce_grad, "sub_sq": sub_sq, "scale": scale, "sum": total}


_BLOCK = 256


def _launch(name, n, *args):
    k = _kernels()[name]
    blocks = max(1, min((n + _BLOCK - 1) // _BLOCK, 1024))
    k[blocks, _BLOCK](*args)


def _flat(a):
    return a.reshape(a.size) if a.ndim != 1 else a


def to_device(a):
    return cuda.to_device(np.ascontiguousarray(a))


def zeros_like(a):
    z = cuda.device_array(a.shape, a.dtype)
    fill(z)
    return z


def fill(a, value=0):
    if a.size:
        _launch("fill", a.size, _flat(a), a.dtype.type(value))


def add_(dst, src):
    """dst += src (same shape and dtype)."""
    if dst.size:
        _launch("add", dst.size, _flat(dst), _flat(src))


def sgd_(data, grad, velocity, lr, momentum, weight_decay, decay):
    T = data.dtype.type
    if data.size:
        _launch("sgd", data.size, _flat(data), _flat(grad), _flat(velocity), T(lr),
                T(momentum), T(weight_decay), bool(decay and weight_decay))


def cross_entropy(lp, target):
    """(the mean loss as a host float64, the labels on the device)."""
    from ._api import _is_device
    t = target if _is_device(target) else cuda.to_device(
        np.ascontiguousarray(target, dtype=np.int64))
    rows = cuda.device_array(lp.shape[0], np.float64)
    _launch("nll_rows", lp.shape[0], lp, t, rows)
    return float(_kernels()["sum"](rows)) / lp.shape[0], t


def cross_entropy_grad(lp, t, scale):
    g = cuda.device_array(lp.shape, lp.dtype)
    _launch("ce_grad", lp.size, lp, t, lp.dtype.type(scale), g)
    return g


def mse(x, target):
    """(the mean squared error as a host float64, x - target on the device)."""
    d = cuda.device_array(x.shape, x.dtype)
    sq = cuda.device_array(x.size, np.float64)
    _launch("sub_sq", x.size, _flat(x), _flat(target), _flat(d), sq)
    return (float(_kernels()["sum"](sq)) / x.size if x.size else float("nan")), d


def scaled(d, s):
    out = cuda.device_array(d.shape, d.dtype)
    if d.size:
        _launch("scale", d.size, _flat(d), d.dtype.type(s), _flat(out))
    return out
