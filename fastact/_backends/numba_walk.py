"""The Numba backend's loop over strided operands (fastact._walk): the
parallel kernel of an elementwise pass whose operands are not one dense
layout.  Loop skeleton only: the formula comes from numba_cpu's registry
compile, as every other kernel's does.

The kernel mirrors the C backend's (c_src/walk.inc): it takes each
operand's address (its first element in the walk), the outer extents, each
operand's strides in elements and the tile plan (``Walk.plan``).  The pool's
threads take chunks of consecutive tiles (numba_pool); a tile's row offsets
are counted up from its unravelled first row; operands not used in place
are gathered into a per-chunk buffer (column by column for a transposed one) and the output
scattered from it, so that the loop the formula sits in runs over
consecutive elements and vectorizes as the flat kernels' do.  Inside the
parallel loop everything is reached through addresses (_prims.pointers):
an array passed to a helper, or chosen at run time between an operand and
its buffer, costs Numba an atomic reference count on a counter the threads
share, each time.
"""
from __future__ import annotations

import functools

import numpy as np

from .._prims import (always_inline, array_address, inner_njit, kernel_njit, pointers,
                      wide_vectors)

I64 = np.int64


@functools.lru_cache(maxsize=None)
def _helpers(dtype):
    """``(move, offsets)`` for elements of ``dtype``: the same for every op."""
    inline = always_inline()
    load, store = pointers()
    T = np.dtype(dtype).type

    @inner_njit()
    def move(buf, base, offs, nr, c0, w, s, by_col, scatter):
        """Element (r, c) of the tile, r < nr, c < w: buf[r w + c] and
        base[offs[r] + (c0 + c) s], copied one way (gather) or the other
        (``scatter``); column by column where ``by_col`` (all addresses)."""
        inline()
        if by_col:
            for c in range(w):
                for r in range(nr):
                    i = load(I64, offs, r) + (c0 + c) * s
                    if scatter:
                        store(base, i, load(T, buf, r * w + c))
                    else:
                        store(buf, r * w + c, load(T, base, i))
        else:
            for r in range(nr):
                i0 = load(I64, offs, r) + c0 * s
                if scatter:
                    for c in range(w):
                        store(base, i0 + c * s, load(T, buf, r * w + c))
                else:
                    for c in range(w):
                        store(buf, r * w + c, load(T, base, i0 + c * s))

    @inner_njit()
    def offsets(dims, nd, st, r0, nr, offs, tr, idx):
        """offs[k tr + r]: the offset of row r0 + r (r < nr) of operand k
        from its first element, st[k (nd + 1) + q] its stride along outer
        axis q of extent dims[q]; idx: the outer index, counted up (all
        addresses of int64 elements)."""
        inline()
        o0 = I64(0)
        o1 = I64(0)
        o2 = I64(0)
        rest = r0
        for q in range(nd - 1, -1, -1):
            d = load(I64, dims, q)
            i = rest % d
            rest //= d
            store(idx, q, i)
            o0 += i * load(I64, st, q)
            o1 += i * load(I64, st, nd + 1 + q)
            o2 += i * load(I64, st, 2 * (nd + 1) + q)
        for r in range(nr):
            store(offs, r, o0)
            store(offs, tr + r, o1)
            store(offs, 2 * tr + r, o2)
            q = nd - 1
            while q >= 0:
                s0 = load(I64, st, q)
                s1 = load(I64, st, nd + 1 + q)
                s2 = load(I64, st, 2 * (nd + 1) + q)
                d = load(I64, dims, q)
                i = load(I64, idx, q) + 1
                if i < d:
                    store(idx, q, i)
                    o0 += s0
                    o1 += s1
                    o2 += s2
                    break
                store(idx, q, I64(0))
                o0 -= s0 * (d - 1)
                o1 -= s1 * (d - 1)
                o2 -= s2 * (d - 1)
                q -= 1

    return move, offsets


def make_walk(tag, f, binary, dtype):
    """``kernel(nthreads, pa, pb, po, dims, st, m, tr, tc, flags, params)``
    (a numba_pool.PoolKernel: chunks of tiles to whichever thread is free):
    ``f(a, *params)`` (``f(a, b, *params)`` where ``binary``) at every
    element of the walk, into ``o``: ``pa``, ``pb``, ``po`` the operands'
    addresses (a unary kernel passes ``pa`` twice), ``dims`` the outer
    extents, ``st[k]`` operand ``k``'s strides (outer axes, then the inner
    one, of extent ``m``), tiles of ``tr`` rows by ``tc`` columns,
    ``flags`` bit ``k`` operand ``k`` used in place (unit inner stride),
    bit ``k + 4`` gathered by columns (c_src/fastact.h:
    fa_elementwise_strided)."""
    T = np.dtype(dtype).type
    size = np.dtype(dtype).itemsize
    wide, inline = wide_vectors(), always_inline()
    load, store = pointers()
    address = array_address()
    move, offsets = _helpers(dtype)

    if binary:
        @inner_njit()
        def fi(x, y, params):
            inline()
            return f(x, y, *params)
    else:
        @inner_njit()
        def fi(x, y, params):
            inline()
            return f(x, *params)

    @inner_njit()
    def compute(pa, pb, po, n, params):
        inline()
        for j in range(n):
            wide()
            store(po, j, fi(load(T, pa, j), load(T, pb, j), params))

    @inner_njit()
    def tile(pa, pb, po, dims, nd, st, m, tr, tc, flags, params, tl, ncols, rows,
             buf, offs, idx):
        """Tile ``tl``: its three buffers of tr tc elements from address
        ``buf``, its row offsets at ``offs``, its outer index at ``idx``."""
        inline()
        da, db, do = flags & 1, (flags >> 1) & 1, (flags >> 2) & 1
        rb = tl // ncols
        r0, c0 = rb * tr, (tl - rb * ncols) * tc
        nr, w = min(tr, rows - r0), min(tc, m - c0)
        ba, bb, bo = buf, buf + tr * tc * size, buf + 2 * tr * tc * size
        ob, oo = offs + tr * 8, offs + 2 * tr * 8
        offsets(dims, nd, st, r0, nr, offs, tr, idx)
        if not da:
            move(ba, pa, offs, nr, c0, w, load(I64, st, nd), (flags >> 4) & 1, False)
        if binary and not db:
            move(bb, pb, ob, nr, c0, w, load(I64, st, 2 * nd + 1), (flags >> 5) & 1, False)
        # every operand buffered: the tile in one run, else row by row
        packed = not da and not (binary and db) and not do
        runs, n = (1, nr * w) if packed else (nr, w)
        for r in range(runs):
            xa = pa + (load(I64, offs, r) + c0) * size if da else ba + r * w * size
            xb = pb + (load(I64, ob, r) + c0) * size if db else bb + r * w * size
            xo = po + (load(I64, oo, r) + c0) * size if do else bo + r * w * size
            compute(xa, xb if binary else xa, xo, n, params)
        if not do:
            move(bo, po, oo, nr, c0, w, load(I64, st, 3 * nd + 2), (flags >> 6) & 1, True)

    @inner_njit()
    def units(pa, pb, po, dims, st, m, tr, tc, flags, params):
        """(tiles, least): a chunk takes whole tiles, at least one"""
        rows = 1
        for q in range(dims.shape[0]):
            rows *= dims[q]
        return (rows + tr - 1) // tr * ((m + tc - 1) // tc), 1

    @inner_njit()
    def body(lo, hi, pa, pb, po, dims, st, m, tr, tc, flags, params):
        """tiles lo .. hi - 1, through buffers of this chunk's own"""
        inline()
        nd = dims.shape[0]
        rows = 1
        for q in range(nd):
            rows *= dims[q]
        ncols = (m + tc - 1) // tc
        # the chunk's buffers, row offsets and outer index
        bufs = np.empty(3 * tr * tc, T)
        offs = np.empty(3 * tr, I64)
        idx = np.empty(max(nd, 1), I64)
        b0, o0, i0 = address(bufs), address(offs), address(idx)
        pd, ps = address(dims), address(st)
        for tl in range(lo, hi):
            tile(pa, pb, po, pd, nd, ps, m, tr, tc, flags, params, tl, ncols, rows,
                 b0, o0, i0)
        # used after the loop: Numba frees an array after its last use,
        # which the addresses the loop writes through are not
        return bufs.size + offs.size + idx.size

    from .numba_pool import PoolKernel
    return PoolKernel(f"walk_{tag}", body, units)
