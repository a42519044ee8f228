"""Dask arrays, lazily: every public function given a dask array returns one.

The graph is built, never computed: each block is computed by the same
public function on NumPy blocks, so that the results are the single call's,
bit for bit, under any chunking:

* One backend for the whole graph, chosen from the whole array's size (as
  the single call chooses it), named in every block's call: blocks below
  ``config.PARALLEL_MIN`` elements would otherwise go to another backend,
  whose last bits may differ.
* RReLU in training keys its slopes by the element's flat C-order index in
  the whole array: each block is computed as rows at their global starts
  (``Backend.elementwise_rows``).
* The softmax family along a chunked axis: by default
  (``method="two-pass"``) the chunks are kept: per block and row, the max
  ``m_b`` and the sum ``s_b`` of ``exp(x - m_b)`` in float64; combined as
  ``M = max m_b``, ``S = sum s_b exp(m_b - M)``, in long double; then every
  element normalised as the row kernels do, with ``M`` and ``S``.  float64
  takes a first pass for ``M``, so that the blocks sum the single call's own
  exponentials ``exp(x - M)``, in double-double as the single call sums
  them, ``S`` rounded once as it rounds its own.  The per-block work is
  compiled (_backends.numba_twopass: the Numba kernels' own exponentials;
  NumPy where numba is absent or the dtype narrow).  Within 1 ULP of the
  single call (float64: bit-identical in the tests; the sums can round
  apart only where a row's sum lies within about n eps**2 of a rounding
  boundary), not bit for bit.  Its backward likewise, with per-block dot
  products (sums of ``g``).  ``method="rechunk"`` makes the axis one chunk:
  bit-identical, at the cost of whole rows in a worker's memory (device
  blocks always take it).
* The gated units along a chunked axis: the halves are paired block by
  block (each block computes ``x[..., a-part]`` with its ``b-part``), so
  the axis is never one chunk; bit-identical.
* PReLU's weight gradient: per block and channel, the exact terms
  (_backends.prelu_weight_terms) summed in double-double, the pairs of all
  blocks added exactly (``math.fsum``) and rounded once: the correctly
  rounded sum, as the single call's kernels compute it (their own
  double-double sums, rounded once); identical unless the exact sum lies
  within about ``2**-100`` of the channel's absolute sum from a rounding
  boundary.  float16 and bfloat16: rounded to float32, then to the dtype,
  as the single call (computed in float32) rounds it.

dask is never imported here until a dask array arrives: it is recognised by
the module of its type, so it stays optional (``pip install fastact[dask]``).
``out=`` is refused: a lazy result has no memory to write into (store it
with ``dask.array.store`` instead).
"""
from __future__ import annotations

import functools
import math

import numpy as np

#: the values of the softmax family's ``method=``
METHODS = (None, "two-pass", "rechunk")


def is_dask(a):
    t = type(a)
    return t.__name__ == "Array" and t.__module__.startswith("dask.array")


def _da():
    import dask.array as da
    return da


def _meta(a, dtype):
    """An empty block like ``a``'s (NumPy, or whatever the blocks are)."""
    return np.empty((0,) * a.ndim, dtype) if type(a._meta) is np.ndarray else \
        a._meta.astype(dtype)


def _host(a):
    return type(a._meta) is np.ndarray


def refuse_out(op, out):
    if out is not None:
        raise TypeError(f"fastact.{op}: out= is not supported with dask arrays: the result "
                        "is a lazy dask array with no memory to write into (write it with "
                        "dask.array.store, or compute the NumPy array first)")


def arrays(op, named, inputs, same_shape=True):
    """``named`` as dask arrays of the one dtype fastact's rules give them:
    ``inputs(named)`` (the public layer's checks) sees a zero-size stand-in
    of each dask array and the others themselves, so nothing is computed."""
    da = _da()
    standins = [(n, np.empty((0,), a.dtype) if is_dask(a) else a) for n, a in named]
    checked = inputs(standins)
    res = []
    for (n, a), c in zip(named, checked):
        a = a if is_dask(a) else da.asarray(c)
        res.append(a if a.dtype == c.dtype else a.astype(c.dtype))
    if same_shape:
        first = named[0][0], res[0].shape
        for (n, _), a in zip(named[1:], res[1:]):
            if a.shape != first[1]:
                raise ValueError(f"fastact.{op}: {n} has shape {a.shape} but {first[0]} has "
                                 f"shape {first[1]}; they must match")
        # blocks paired one to one: the last array's chunks (x's, or the saved one's)
        res = [a if a.chunks == res[-1].chunks else a.rechunk(res[-1].chunks) for a in res]
    return res


def _pinned(arrs, pin, size, name):
    """The backend's name every block's call names (None for blocks that
    are not NumPy arrays: their own call chooses)."""
    return pin(size, name) if all(_host(a) for a in arrs) else None


# --- elementwise ----------------------------------------------------------------

def elementwise(op, arrs, pin, name, run):
    """``run(blocks, backend)``: the public call on NumPy blocks."""
    x = arrs[-1]
    b = _pinned(arrs, pin, x.size, name)
    return _da().map_blocks(_Blocks(run, b), *arrs, dtype=x.dtype, meta=_meta(x, x.dtype),
                            token="fastact-" + name)


class _Blocks:
    """``run(blocks, backend)`` as a picklable block function."""

    def __init__(self, run, backend):
        self.run, self.backend = run, backend

    def __call__(self, *blocks):
        return self.run(blocks, self.backend)


def row_starts(location, shape):
    """``(rows, m, starts)``: a block at ``location`` (``(start, stop)`` per
    axis) of a C-order array of ``shape``, as ``rows`` runs of ``m``
    elements contiguous in the whole array (the block's trailing axes merged
    where those after them are whole), run ``r`` at flat index
    ``starts[r]``."""
    nd = len(shape)
    if nd == 0:
        return 1, 1, np.zeros(1, np.int64)
    ext = [e - s for s, e in location]
    k = nd - 1
    while k > 0 and ext[k] == shape[k]:
        k -= 1
    strides = np.cumprod((1,) + tuple(shape[:0:-1]), dtype=np.int64)[::-1]
    starts = np.full((), location[k][0] * strides[k], np.int64)
    for d in range(k):
        along = np.arange(location[d][0], location[d][1], dtype=np.int64) * strides[d]
        starts = starts[..., None] + along if d else along + starts
    return math.prod(ext[:k]), math.prod(ext[k:]), starts.reshape(-1)


def indexed(op, arrs, pin, name, run_at):
    """An indexed op (RReLU in training): ``run_at(blocks2d, starts,
    backend)`` computes rows at their global flat starts."""
    x = arrs[-1]
    b = _pinned(arrs, pin, x.size, name)
    if b is None:
        raise TypeError(f"fastact.{op}: in training, dask arrays of NumPy blocks only "
                        f"(got blocks of {type(x._meta).__name__})")
    shape = x.shape

    def block(*blocks, block_info=None):
        loc = block_info[None]["array-location"]
        out_shape = tuple(e - s for s, e in loc)
        if not math.prod(out_shape):
            return np.empty(out_shape, x.dtype)
        rows, m, starts = row_starts(loc, shape)
        flat = [np.ascontiguousarray(a).reshape(rows, m) for a in blocks]
        return run_at(flat, starts, b).reshape(out_shape)

    return _da().map_blocks(block, *arrs, dtype=x.dtype, meta=_meta(x, x.dtype),
                            token="fastact-" + name)


# --- the softmax family -------------------------------------------------------------

def rows(op, arrs, ax, method, pin, name, row, forward, run):
    """``run(blocks, backend)``: the public call along ``ax`` on NumPy
    blocks; ``row``: the registry entry's Row (negate, log)."""
    x = arrs[0]
    last = ax == max(x.ndim, 1) - 1
    b = _pinned(arrs, pin, x.size, name if last else name + ":inner")
    whole = x.ndim == 0 or len(x.chunks[ax]) == 1
    # the default: "two-pass" (a worker holds blocks, never whole rows:
    # memory stays bounded; speed is mixed: README, "Cluster against one
    # process"); "rechunk" for bit-identity, and for device blocks
    if not whole and (method == "rechunk" or not all(_host(a) for a in arrs)):
        arrs = [a.rechunk({ax: -1}) for a in arrs]
        whole = True
    if whole:
        return elementwise(op, arrs, lambda n, nm: b, name, run)
    if forward:
        return _two_pass_forward(x, ax, row, name)
    return _two_pass_backward(*arrs, ax, row, name)


#: rows per block row of the stats: the max, the count of exponentials
#: equal to 1, the sum of the others as a pair (high, low)
_NSTATS = 4


def _stats_block(xb, ax, sg, M=None):
    """Per row of the block: the max ``m`` (of ``sg x``; ``M``, the whole
    rows', where given), the count of exponentials equal to 1 and the sum of
    the others (a pair, its low part 0 here), in float64, stacked along
    ``ax``."""
    with np.errstate(all="ignore"):
        xw = sg * xb.astype(np.float64)
        if xb.shape[ax] == 0:
            shape = list(xb.shape)
            shape[ax] = 1
            z = np.zeros(shape)
            return np.concatenate([z - np.inf, z, z, z], axis=ax)
        m = np.max(xw, axis=ax, keepdims=True) if M is None else np.broadcast_to(
            M, xw.shape[:ax] + (1,) + xw.shape[ax + 1:]).copy()
        e = np.exp(xw - m)
        ones = np.sum(e == 1, axis=ax, keepdims=True).astype(np.float64)
        rest = np.sum(np.where(e == 1, 0.0, e), axis=ax, keepdims=True)
        # a block of -inf (beside finite ones elsewhere) adds nothing
        empty = m == -np.inf
        ones[empty], rest[empty] = 0.0, 0.0
    return np.concatenate([m, ones, rest, np.zeros_like(rest)], axis=ax)


def _combine_block(stats, ax, dtype=np.float64, log_=True):
    """(M, ones, rest) of whole rows, stacked along ``ax``, from the blocks'
    stats (all of a row's in this block): M = max m_b, the 1s of the blocks
    whose max is M, every other exponential scaled by exp(m_b - M); a
    block's part below half the least subnormal of ``dtype`` (the data's)
    dropped, as the single call's exponentials, in that dtype, underflow to
    0 there (log_softmax's 0 would otherwise turn into -0).  In long double
    where it is wider (x86: 64-bit significands), each sum rounded once to
    float64: softmax's whole ``ones + rest`` (``ones`` then 0), as the
    single call rounds its double-double sum once."""
    def take(k):
        idx = [slice(None)] * stats.ndim
        idx[ax] = slice(k, None, _NSTATS)
        return stats[tuple(idx)]
    m, ones, hi, lo = take(0), take(1), take(2), take(3)
    with np.errstate(all="ignore"):
        M = np.max(m, axis=ax, keepdims=True)
        at_max = m == M
        tot_ones = np.sum(np.where(at_max, ones, 0.0), axis=ax, keepdims=True)
        if at_max.all():
            # every block against the same max (float64's first pass): the
            # pairs (and softmax's 1s) added in double-double, rounded once
            # (long double, then float64, rounded twice: 2 columns in 4096
            # missed the single call by 2 ULP)
            from ._backends import pair_sum, round_pairs
            h, lw = (hi, lo) if log_ else (np.concatenate([hi, ones], axis=ax),
                                           np.concatenate([lo, np.zeros_like(ones)], axis=ax))
            tot = np.expand_dims(round_pairs(*pair_sum(h, lw, ax), np.float64), ax)
            if not log_:
                tot_ones = np.zeros_like(tot_ones)
            return np.concatenate([M, tot_ones, tot], axis=ax)
        L = np.longdouble
        rest = hi.astype(L) + lo.astype(L)
        scaled = (ones.astype(L) + rest) * np.exp(m.astype(L) - M.astype(L))
        wide = dtype if np.dtype(dtype) == np.float64 else np.float32   # narrow: in float32
        scaled[scaled < float(np.finfo(wide).smallest_subnormal) / 2] = 0.0
        tot_rest = np.sum(np.where(at_max, rest, scaled), axis=ax, keepdims=True)
        if not log_:
            tot_rest, tot_ones = tot_rest + tot_ones, np.zeros_like(tot_ones)
    return np.concatenate([M, tot_ones, tot_rest.astype(np.float64)], axis=ax)


def _normalise_block(xb, M, ones, rest, sg, log_, dtype):
    with np.errstate(all="ignore"):
        xw = sg * xb.astype(np.float64)
        d = xw - M
        if log_:
            y = d - np.log1p((ones - 1.0) + rest)
        else:
            # float64 x: exp(d + err), err what x - M lost (exact in float64
            # for float32 x); exp(err) = 1 + err (the kernels' exp_diff)
            bb = d - xw
            err = (xw - (d - bb)) + (-M - bb)
            y = np.exp(d) * (1.0 + np.where(np.isfinite(err), err, 0.0)) / (ones + rest)
    return y.astype(dtype)


def _compiled(name, dtype):
    """The compiled per-block functions (_backends.numba_twopass) for
    float32 and float64 blocks where numba is present, else None (the NumPy
    ones here)."""
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        return None
    try:
        from ._backends.numba_twopass import twopass_kernels
        return twopass_kernels(name, np.dtype(dtype).type)
    except ImportError:
        return None


def _split3(shape, ax):
    return math.prod(shape[:ax]), shape[ax], math.prod(shape[ax + 1:])


def _stats_fast(xb, M, ax, sg, name):
    """_stats_block, compiled where it can be; ``M``: the whole rows' max
    for every block (the exponentials then the single call's own), or None
    (each block's own)"""
    k = _compiled(name, xb.dtype)
    if k is None or not xb.size:
        return _stats_block(xb, ax, sg, M)
    outer, n, K = _split3(xb.shape, ax)
    st = np.empty((outer, _NSTATS, K))
    if M is not None:
        st[:, 0, :] = np.broadcast_to(M, xb.shape[:ax] + (1,) + xb.shape[ax + 1:]).reshape(outer, K)
    k[0](np.ascontiguousarray(xb).reshape(outer, n, K), st, M is not None)
    shape = list(xb.shape)
    shape[ax] = _NSTATS
    return st.reshape(shape)


def _max_block(xb, ax, sg, name):
    """Per row of the block, the max of ``sg x`` (NaN skipped, -inf for
    none; compiled where it can be), along ``ax`` (length 1)."""
    shape = list(xb.shape)
    shape[ax] = 1
    k = _compiled(name, xb.dtype)
    if k is None or not xb.size:
        with np.errstate(all="ignore"):
            xw = sg * xb.astype(np.float64)
            xw[np.isnan(xw)] = -np.inf
            return np.max(xw, axis=ax, keepdims=True, initial=-np.inf)
    outer, n, K = _split3(xb.shape, ax)
    mx = np.empty((outer, 1, K))
    k[4](np.ascontiguousarray(xb).reshape(outer, n, K), mx)
    return mx.reshape(shape)


def _normalise_fast(xb, M, ones, rest, sg, log_, dtype, ax, name):
    """_normalise_block, compiled where it can be"""
    k = _compiled(name, dtype)
    if k is None or not xb.size:
        return _normalise_block(xb, M, ones, rest, sg, log_, dtype)
    outer, n, K = _split3(xb.shape, ax)
    st = np.stack([np.broadcast_to(a, xb.shape[:ax] + (1,) + xb.shape[ax + 1:])
                   .reshape(outer, K) for a in (M, ones, rest)], axis=1)
    out = np.empty(xb.shape, dtype)
    k[1](np.ascontiguousarray(xb).reshape(outer, n, K), st, out.reshape(outer, n, K))
    return out


def _two_pass_forward(x, ax, row, name):
    da = _da()
    sg = -1.0 if row.negate else 1.0
    chunks = list(x.chunks)
    chunks[ax] = (_NSTATS,) * len(x.chunks[ax])
    meta = np.empty((0,) * x.ndim)
    if x.dtype == np.float64:
        # float64: a pass for the rows' max M first, so that the blocks sum
        # the single call's own exponentials exp(x - M), not exp(x - m_b)
        # exp(m_b - M) (which moved S, and every y, by up to 3 ULP): with
        # both sums correctly rounded, within 1 ULP of the single call, for
        # one more read of x
        one = list(x.chunks)
        one[ax] = (1,) * len(x.chunks[ax])
        mx = x.map_blocks(_max_block, ax, sg, name, chunks=tuple(one), dtype=np.float64,
                          meta=meta, token=f"fastact-{name}-max")
        one[ax] = (1,)
        M = mx.rechunk({ax: -1}).map_blocks(np.max, axis=ax, keepdims=True, chunks=tuple(one),
                                            dtype=np.float64, meta=meta)
    else:
        M = None
    stats = da.map_blocks(_stats_fast, x, M, ax, sg, name, chunks=tuple(chunks),
                          dtype=np.float64, meta=meta, token=f"fastact-{name}-stats")
    stats = stats.rechunk({ax: -1})
    chunks[ax] = (3,)
    comb = stats.map_blocks(_combine_block, ax, x.dtype, row.log, chunks=tuple(chunks),
                            dtype=np.float64, meta=meta, token=f"fastact-{name}-combine")

    def part(k):
        idx = [slice(None)] * x.ndim
        idx[ax] = slice(k, k + 1)
        return comb[tuple(idx)]
    return da.map_blocks(_normalise_fast, x, part(0), part(1), part(2), sg, row.log, x.dtype,
                         ax, name, dtype=x.dtype, meta=_meta(x, x.dtype),
                         token="fastact-" + name)


def _dot_block(gb, yb, ax, log_, name):
    """Per row of the block: the float64 sum of ``g y`` (``g`` for
    log_softmax), products in the data's dtype as the kernels take them
    (compiled where it can be: float64 data's compensated)."""
    k = _compiled(name, yb.dtype)
    if k is not None and yb.size:
        outer, n, K = _split3(yb.shape, ax)
        d = np.empty((outer, 1, K))
        k[2](np.ascontiguousarray(gb).reshape(outer, n, K),
             np.ascontiguousarray(yb).reshape(outer, n, K), d)
        return d.reshape(yb.shape[:ax] + (1,) + yb.shape[ax + 1:])
    with np.errstate(all="ignore"):
        t = gb if log_ else gb * yb
        return np.sum(t.astype(np.float64), axis=ax, keepdims=True)


def _grad_block(gb, yb, dot, negate, log_, ax, name):
    k = _compiled(name, yb.dtype)
    if k is not None and yb.size:
        outer, n, K = _split3(yb.shape, ax)
        d = np.ascontiguousarray(np.broadcast_to(dot, yb.shape[:ax] + (1,) + yb.shape[ax + 1:]),
                                 np.float64).reshape(outer, 1, K)
        out = np.empty(yb.shape, yb.dtype)
        k[3](np.ascontiguousarray(gb).reshape(outer, n, K),
             np.ascontiguousarray(yb).reshape(outer, n, K), d, out.reshape(outer, n, K))
        return out
    d = dot.astype(yb.dtype)
    with np.errstate(all="ignore"):
        if log_:
            return gb - np.exp(yb) * d
        return yb * (d - gb) if negate else yb * (gb - d)


def _two_pass_backward(g, y, ax, row, name):
    da = _da()
    chunks = list(y.chunks)
    chunks[ax] = (1,) * len(y.chunks[ax])
    dots = da.map_blocks(_dot_block, g, y, ax, row.log, name, chunks=tuple(chunks),
                         dtype=np.float64, meta=np.empty((0,) * y.ndim),
                         token=f"fastact-{name}-dot")
    dot = dots.sum(axis=ax, keepdims=True)
    return da.map_blocks(_grad_block, g, y, dot, row.negate, row.log, ax, name, dtype=y.dtype,
                         meta=_meta(y, y.dtype), token="fastact-" + name + "-backward")


# --- the gated family ------------------------------------------------------------------

def gated(op, arrs, ax, forward, pin, name, run):
    """``run(blocks, backend)``: the public call on NumPy blocks, x's axis
    ``ax`` whole in each.  Where ``ax`` is chunked, the halves of x are
    paired block by block instead: x as ``concat(a_blk, b_blk)``."""
    da = _da()
    x = arrs[-1]
    b = _pinned(arrs, pin, x.size, name)
    if len(x.chunks[ax]) == 1:
        return elementwise(op, arrs, lambda n, nm: b, name, run)
    half = x.shape[ax] // 2
    cut = [slice(None)] * x.ndim
    cut[ax] = slice(None, half)
    a_half = x[tuple(cut)]
    cut[ax] = slice(half, None)
    b_half = x[tuple(cut)].rechunk(a_half.chunks)
    meta = _meta(x, x.dtype)
    if forward:
        return da.map_blocks(_Paired(run, b, ax, forward), a_half, b_half, dtype=x.dtype,
                             meta=meta, token="fastact-" + name)
    g = arrs[0].rechunk(a_half.chunks)
    chunks = ((2,),) + a_half.chunks
    both = da.map_blocks(_Paired(run, b, ax, forward), g, a_half, b_half, dtype=x.dtype,
                         chunks=chunks, new_axis=0, meta=np.empty((0,) * (x.ndim + 1), x.dtype),
                         token="fastact-" + name)
    return da.concatenate([both[0], both[1]], axis=ax)


class _Paired:
    """The block function of a gated call on a chunked axis."""

    def __init__(self, run, backend, ax, forward):
        self.run, self.backend, self.ax, self.forward = run, backend, ax, forward

    def __call__(self, *blocks):
        ax = self.ax
        x = np.concatenate(blocks[-2:], axis=ax)
        if self.forward:
            return self.run((x,), self.backend)
        gx = self.run((blocks[0], x), self.backend)
        return np.stack(np.split(gx, 2, axis=ax))


# --- prelu -------------------------------------------------------------------------------

def _weight(weight, x, ax, dtype):
    """The weight as a dask array broadcast against x's axes: size 1 on
    every axis, or ``(C,)`` along ``ax``."""
    da = _da()
    w = weight if is_dask(weight) else da.asarray(np.asarray(weight))
    w = w.astype(dtype) if w.dtype != dtype else w
    if w.size == 1:
        return w.reshape((1,) * x.ndim)
    shape = [1] * x.ndim
    shape[ax] = w.size
    return w.reshape(shape).rechunk({ax: x.chunks[ax]})


def prelu(op, x, weight, ax, pin, run):
    """``run((x_blk, w_blk), backend)``: the public prelu on a block and its
    channels' slopes."""
    b = _pinned([x], pin, x.size, "prelu")
    wb = _weight(weight, x, ax, x.dtype)
    return _da().map_blocks(_PreluBlock(run, b), x, wb, dtype=x.dtype,
                            meta=_meta(x, x.dtype), token="fastact-prelu")


class _PreluBlock:
    def __init__(self, run, backend):
        self.run, self.backend = run, backend

    def __call__(self, *blocks):
        *arrays, w = blocks
        return self.run((*arrays, w.reshape(-1)), self.backend)


def prelu_backward(op, g, x, weight, ax, wshape, pin, run):
    """``(grad_x, grad_weight)``.  One task a block computes both (its
    input gradient and its partial weight gradient: ``run((g_blk, x_blk,
    w_blk), backend)`` for the former); grad_x and grad_weight take their
    parts from it, so computed together they share it."""
    da = _da()
    b = _pinned([g, x], pin, x.size, "prelu")
    wb = _weight(weight, x, ax, x.dtype)
    shared = wb.size == 1
    pairs = da.map_blocks(_PreluBackwardBlock(run, b, ax, shared), g, x, wb, dtype=object,
                          meta=np.empty((0,) * x.ndim, object),
                          token="fastact-prelu-backward")
    gx = pairs.map_blocks(_first, dtype=x.dtype, meta=_meta(x, x.dtype),
                          token="fastact-prelu-backward-x")
    # per block a float64 pair (axis 0) of shape 1 on every axis but the channels'
    chunks = [(1,) * len(c) for c in x.chunks]
    if not shared:
        chunks[ax] = x.chunks[ax]
    parts = pairs.map_blocks(_second, chunks=((2,),) + tuple(chunks), new_axis=0,
                             dtype=np.float64, meta=np.empty((0,) * (x.ndim + 1)),
                             token="fastact-prelu-backward-w")
    axes = (0,) + tuple(d + 1 for d in range(x.ndim) if shared or d != ax)
    # all pairs of a channel block in one task: an exact sum, once rounded
    wide = np.float64 if x.dtype == np.float64 else np.float32
    gw = da.reduction(parts, _identity, functools.partial(_exact_sum, dtype=wide), axis=axes,
                      dtype=np.float64, split_every={d: max(1, parts.numblocks[d]) for d in axes},
                      concatenate=True, meta=np.empty((0,)))
    return gx, gw.astype(x.dtype).reshape(wshape)


class _PreluBackwardBlock:
    def __init__(self, run, backend, ax, shared):
        self.run, self.backend, self.ax, self.shared = run, backend, ax, shared

    def __call__(self, gb, xb, wb):
        from ._backends import pair_sum, prelu_weight_terms
        gx, _ = self.run((gb, xb, wb.reshape(-1)), self.backend)
        p, e = prelu_weight_terms(gb, xb)
        shape = [1] * xb.ndim
        if self.shared or not xb.ndim:
            p, e = p.reshape(1, -1), e.reshape(1, -1)
        else:
            C = shape[self.ax] = xb.shape[self.ax]
            m = xb.size // C if C else 0
            p, e = (np.moveaxis(a, self.ax, 0).reshape(C, m) for a in (p, e))
        hi, lo = pair_sum(p, e, 1)
        return gx, np.stack([hi.reshape(shape), lo.reshape(shape)])


def _first(pair):
    return pair[0]


def _second(pair):
    return pair[1]


def _identity(a, axis=None, keepdims=None):
    return a


def _exact_sum(a, axis=None, keepdims=False, dtype=np.float64):
    """The pairs of ``a`` (its axis 0: high parts, low ones) summed along
    ``axis`` (0 among them) exactly (math.fsum: the sum and its remainder)
    and rounded once to ``dtype`` (round_pairs), as float64; where a term
    is not finite, the IEEE sum of the high parts (inf, NaN)."""
    from ._backends import round_pairs
    a = np.asarray(a, np.float64)
    moved = np.moveaxis(a, axis, range(-len(axis), 0))
    keep = moved.shape[:moved.ndim - len(axis)]
    flat = moved.reshape(keep + (2, math.prod(moved.shape[len(keep) + 1:])))
    hi, lo = np.empty(keep), np.zeros(keep)
    for i in np.ndindex(keep):
        terms = flat[i].ravel().tolist()
        try:
            hi[i] = math.fsum(terms)
            lo[i] = math.fsum(terms + [-hi[i]])
        except (OverflowError, ValueError):
            with np.errstate(all="ignore"):
                hi[i] = np.sum(flat[i][0])
    out = round_pairs(hi, lo, dtype).astype(np.float64)
    if keepdims:
        out = np.expand_dims(out, axis)
    return out


# --- workers ------------------------------------------------------------------------------

def worker_plugin(nthreads=None):
    """A ``distributed.WorkerPlugin`` that sets fastact's threads on each
    worker (``client.register_plugin(fastact.dask_worker_plugin())``):
    ``nthreads``, default the worker's own thread count (its concurrent
    tasks share fastact's pool: a call made while another task's call
    holds it runs on its own thread)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class FastactThreads(WorkerPlugin):
        name = "fastact-threads"

        def __init__(self, n):
            self.n = n

        def setup(self, worker):
            from fastact import set_num_threads
            set_num_threads(self.n or worker.state.nthreads)

    return FastactThreads(nthreads)
