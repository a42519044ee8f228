"""The Numba backend's row-wise kernels on narrow arrays (float16, bfloat16).

Numba types neither narrow dtype: the kernels take their uint16 bits.  Each
widens a piece of its operands into float32 buffers (fastact._prims_narrow's
conversions), runs the float32 kernel's range body on them (numba_cpu's
``"bodies"``), and rounds that result once into the narrow output, piece by
piece, so no whole-array float32 copy is made and the float32 body's later
passes read a cached copy:

- the softmax family's forward: whole rows, as many as
  ``config.NARROW_ROW_ELEMS`` elements hold (at least one); its backward is
  numba_cpu's row kernel on the bits, widening each element it reads;
- the softmax family along a middle axis: a task's block of ``n`` rows by
  ``NARROW_ROW_ELEMS / n`` columns (at least 16), gathered into a dense block;
- the gated units: runs within one row half of at most ``config.NARROW_CHUNK``
  outputs, the halves side by side.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import config
from .._prims import inner_njit, wide_vectors
from . import numba_cpu


@functools.lru_cache(maxsize=None)
def _moves(kind):
    """``(load, store)``: ``load(a1, i, buf1, j, m)`` widens ``a1[i:i+m]``
    (bits) into ``buf1[j:j+m]``; ``store(buf1, j, a1, i, m)`` rounds back."""
    from .._prims_narrow import converters
    widen, narrow = converters(kind, quiet=False)

    U = np.uint64
    wide = wide_vectors()

    # unsigned indices: no negative-index wraparound to keep the loops scalar
    @inner_njit()
    def load(a1, i, buf1, j, m):
        for k in range(m):
            wide()
            buf1[U(j) + U(k)] = widen(a1[U(i) + U(k)])

    @inner_njit()
    def store(buf1, j, a1, i, m):
        for k in range(m):
            wide()
            a1[U(i) + U(k)] = narrow(buf1[U(j) + U(k)])
    return load, store


def _make(tag, body, units, parallel):
    return (numba_cpu._pooled if parallel else numba_cpu._serial)(tag, body, units)


@functools.lru_cache(maxsize=None)
def row_kernels(name, kind, parallel):
    """``(forward(x, out), backward(g, y, out))`` of the softmax-family entry
    ``name`` on 2-D ``(rows, n)`` uint16 bits of ``kind``; ``parallel``:
    the pool's kernels (called with the thread count first), else serial."""
    fwd, fwd_units = numba_cpu._row_kernels(name, np.float32, "bodies")
    load, store = _moves(kind)
    per = config.NARROW_ROW_ELEMS
    f32 = np.float32

    # the float32 body runs in place on its (first) input's buffer, as C's
    # (c_src/narrow.inc): one buffer fewer to keep in the caches
    @inner_njit()
    def forward(lo, hi, x, out):
        rows, n = x.shape
        g = max(1, per // max(n, 1))
        b = np.empty((g, n), f32)
        x1, out1, b1 = x.reshape(rows * n), out.reshape(rows * n), b.reshape(g * n)
        for r in range(lo, hi, g):
            m = min(g, hi - r)
            load(x1, r * n, b1, 0, m * n)
            fwd(0, m, b, b)
            store(b1, 0, out1, r * n, m * n)

    # the backward reads the narrow arrays themselves (numba_cpu._row_kernels'
    # ``kind``): its two passes, the row's dot product and the gradients,
    # each widen what they read
    tag = f"{name}_{kind}_rows"
    return (_make(tag + "_fwd", forward, fwd_units, parallel),
            numba_cpu._row_kernels(name, np.float32, bool(parallel), kind)[1])


@functools.lru_cache(maxsize=None)
def inner_kernels(name, kind, parallel):
    """``(forward(x1, o1, outer, n, K, cols), backward(g1, y1, o1, outer,
    n, K, cols))`` of the softmax family along the middle axis of flat
    ``(outer, n, K)`` uint16 bits (numba_cpu._row_inner_kernels' arguments)."""
    fwd, bwd, units = numba_cpu._row_inner_kernels(name, np.float32, "bodies")
    load, store = _moves(kind)
    per = config.NARROW_ROW_ELEMS
    f32 = np.float32

    @inner_njit()
    def gather(a1, base, K, buf1, n, w):
        for j in range(n):
            load(a1, base + j * K, buf1, j * w, w)

    @inner_njit()
    def scatter(buf1, a1, base, K, n, w):
        for j in range(n):
            store(buf1, j * w, a1, base + j * K, w)

    @inner_njit()
    def columns(n, K, cols, task):
        """(its outer index's first element, first column, end) of ``task``"""
        nc = (K + cols - 1) // cols
        o = task // nc
        c0 = (task - o * nc) * cols
        return o * n * K, c0, min(c0 + cols, K)

    @inner_njit()
    def forward(lo, hi, x1, o1, outer, n, K, cols):
        cw = min(cols, max(16, per // n))
        b, o = np.empty(n * cw, f32), np.empty(n * cw, f32)
        for task in range(lo, hi):
            base, c0, c1 = columns(n, K, cols, task)
            for c in range(c0, c1, cw):
                w = min(cw, c1 - c)
                gather(x1, base + c, K, b, n, w)
                fwd(0, 1, b, o, 1, n, w, w)
                scatter(o, o1, base + c, K, n, w)

    @inner_njit()
    def backward(lo, hi, g1, y1, o1, outer, n, K, cols):
        cw = min(cols, max(16, per // n))
        bg, by, o = np.empty(n * cw, f32), np.empty(n * cw, f32), np.empty(n * cw, f32)
        for task in range(lo, hi):
            base, c0, c1 = columns(n, K, cols, task)
            for c in range(c0, c1, cw):
                w = min(cw, c1 - c)
                gather(g1, base + c, K, bg, n, w)
                gather(y1, base + c, K, by, n, w)
                bwd(0, 1, bg, by, o, 1, n, w, w)
                scatter(o, o1, base + c, K, n, w)

    tag = f"inner_{name}_{kind}"
    return (_make(tag + "_fwd", forward, units, parallel),
            _make(tag + "_bwd", backward, units, parallel))


@functools.lru_cache(maxsize=None)
def gated_kernels(name, kind, parallel):
    """``(forward, backward)`` of the gated entry ``name``, called ``k(a1,
    b1, c1, M, total)`` on flat uint16 bits as numba_cpu._gated_kernels'
    (``(x1, o1, o1)`` forward, ``(g1, x1, d1)`` backward, ``d1`` may be
    ``x1``: each run is read whole before it is written)."""
    fwd_run, bwd_run = numba_cpu._gated_kernels(name, np.float32, "bodies")
    load, store = _moves(kind)
    block = config.NARROW_CHUNK
    f32 = np.float32

    @inner_njit()
    def units(a1, b1, c1, M, total):
        return (total + block - 1) // block, max(1, numba_cpu._CHUNK_MIN // block)

    @inner_njit()
    def forward(lo, hi, x1, o1, _, M, total):
        bx, bo = np.empty(2 * block, f32), np.empty(block, f32)
        for t in range(lo, hi):
            k, e = t * block, min(t * block + block, total)
            while k < e:
                r = k // M
                n = min(M - (k - r * M), e - k)
                xk = k + r * M               # 2 r M + (k - r M)
                load(x1, xk, bx, 0, n)
                load(x1, xk + M, bx, n, n)
                fwd_run(bx, bo, bo, 0, 0, n, n)
                store(bo, 0, o1, k, n)
                k += n

    @inner_njit()
    def backward(lo, hi, g1, x1, d1, M, total):
        bg, bx, bd = np.empty(block, f32), np.empty(2 * block, f32), np.empty(2 * block, f32)
        for t in range(lo, hi):
            k, e = t * block, min(t * block + block, total)
            while k < e:
                r = k // M
                n = min(M - (k - r * M), e - k)
                xk = k + r * M
                load(g1, k, bg, 0, n)
                load(x1, xk, bx, 0, n)
                load(x1, xk + M, bx, n, n)
                bwd_run(bg, bx, bd, 0, 0, n, n)
                store(bd, 0, d1, xk, n)
                store(bd, n, d1, xk + M, n)
                k += n

    tag = f"gated_{name}_{kind}"
    return (_make(tag + "_fwd", forward, units, parallel),
            _make(tag + "_bwd", backward, units, parallel))
