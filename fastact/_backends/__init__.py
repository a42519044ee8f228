"""Backend interface.

A backend computes; it never validates.  The public layer (:mod:`fastact._api`)
hands it only C-contiguous arrays of one supported dtype (strided ones only
through ``elementwise_strided``'s walk), already allocated outputs, and
parameters already cast to that dtype (the RReLU key as ``np.uint64``).  The
methods:

``elementwise(name, pass_, ins, out, params)``
    ``name`` is a registry entry of kind ``"elementwise"``; ``pass_`` is
    ``"forward"`` (``ins == (x,)``) or ``"backward"`` (``ins == (g, s)``).
    Arrays are 1-D; for an ``indexed`` spec the flat index is the position.
``elementwise_rows(name, pass_, ins, out, params, starts)``
    ``elementwise`` on 2-D ``(rows, m)`` arrays whose row ``r`` sits at
    flat index ``starts[r]`` (int64) of a larger C-order array: an
    ``indexed`` spec keys element ``k`` of row ``r`` by ``starts[r] + k``
    (the blocks of a chunked dask array, fastact._dask).
``prelu_forward(x, w, out)`` / ``prelu_backward(g, x, w, gx, gw)``
    ``x`` has shape ``(outer, C, inner)``, ``w`` and ``gw`` shape ``(C,)``.
    ``gw`` is the correctly rounded sum of each channel's terms (the sums
    in double-double, :func:`round_pairs`), so that any split of the sum
    (threads, chunks, dask blocks) gives the same bits.
``rows_forward(name, x, out)`` / ``rows_backward(name, g, y, out)``
    ``name`` is a registry entry of kind ``"rowwise"`` (the softmax family,
    its ``row`` the variant); rows along the last axis of 2-D arrays.
``rows_inner_forward(name, x, out)`` / ``rows_inner_backward(name, g, y, out)`` (optional)
    The softmax family along the middle axis of 3-D ``(outer,
    n, K)`` arrays, with no transposes (:func:`inner_columns`).
``gated_forward(name, x, out)`` / ``gated_backward(name, g, x, out)``
    ``name`` is a registry entry of kind ``"gated"``; ``x`` (and the
    backward's ``out``) has shape ``(outer, 2, M)``: the halves ``a =
    x[:, 0]`` and ``b = x[:, 1]``; ``g`` and the forward's ``out`` have
    shape ``(outer, M)``.

``elementwise_strided(name, pass_, walk, params)``
    ``elementwise`` on operands of one shape and any strides, described by
    ``walk`` (:class:`fastact._walk.Walk`: its arrays are the inputs, then
    the output; none overlaps the output unless it is the output).  No
    operand may be copied whole.  By default NumPy's buffered ``nditer``
    feeds ``elementwise_kernel``'s small kernel chunks of
    ``config.WALK_CHUNK`` elements.

``elementwise_kernel(name, pass_, dtype, small)`` (optional)
    A callable ``f(*ins, out, params)`` doing what ``elementwise`` does, for
    the public layer to keep and call directly: the per-call overhead of
    small arrays.  ``small`` says the arrays have fewer than
    ``_registry.parallel_min(name)`` elements.

``narrow()``
    The same methods for arrays of a narrow dtype (float16, bfloat16),
    parameters as float32: computed in float32, rounded once.

``load()`` returns the ready backend or raises an exception whose message
says why it is unavailable; ``describe()`` returns a dict for ``fastact info``.
"""
from __future__ import annotations

import numpy as np

from .. import config


def two_prod(a, b):
    """``(p, e)``: ``p = a * b`` rounded and its error ``e``, ``p + e = a b``
    exactly (Dekker's product, float64, no FMA needed; ``e`` is 0 where
    ``p`` is 0 or the splitting overflows, ``|a|`` or ``|b|`` over about
    2**996).  NumPy arrays, elementwise."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        p = a * b
        ca, cb = _SPLIT * a, _SPLIT * b
        ah, bh = ca - (ca - a), cb - (cb - b)
        al, bl = a - ah, b - bh
        e = (((ah * bh - p) + ah * bl) + al * bh) + al * bl
    return p, np.where((p != 0) & (np.abs(e) < np.inf), e, 0.0)


def prelu_weight_terms(g, x):
    """PReLU's weight-gradient terms ``g x`` where not ``x > 0`` (else 0)
    as exact float64 pairs ``(p, e)``: float32 (and narrower) products are
    exact in float64 (``e`` 0), float64 ones are :func:`two_prod`."""
    g, x = np.asarray(g), np.asarray(x)
    with np.errstate(all="ignore"):
        if x.dtype == np.float64:
            p, e = two_prod(g, x)
        else:
            p = g.astype(np.float64) * x.astype(np.float64)
            e = np.zeros(p.shape)
    keep = ~(x > 0)
    return np.where(keep, p, 0.0), np.where(keep, e, 0.0)


#: Dekker's splitting constant, 2**27 + 1
_SPLIT = 134217729.0


def pair_sum(hi, lo, axis):
    """The double-double sum ``(hi, lo)`` of the pairs ``hi + lo`` along
    ``axis`` (an int), pairwise with exact two-sums (error about ``log2(n)
    2**-106`` of the absolute sum).  Where a partial sum is not finite,
    ``hi`` carries its IEEE value (and ``lo`` is meaningless)."""
    hi = np.moveaxis(np.asarray(hi, np.float64), axis, -1)
    lo = np.moveaxis(np.asarray(lo, np.float64), axis, -1)
    if hi.shape[-1] == 0:
        return np.zeros(hi.shape[:-1]), np.zeros(hi.shape[:-1])
    with np.errstate(over="ignore", invalid="ignore"):
        while hi.shape[-1] > 1:
            if hi.shape[-1] % 2:
                pad = [(0, 0)] * (hi.ndim - 1) + [(0, 1)]
                hi, lo = np.pad(hi, pad), np.pad(lo, pad)
            a, b = hi[..., 0::2], hi[..., 1::2]
            s = a + b
            t = s - a
            lo = (lo[..., 0::2] + lo[..., 1::2]) + ((a - (s - t)) + (b - t))
            hi = s
    return hi[..., 0], lo[..., 0]


def round_pairs(hi, lo, dtype):
    """``hi + lo`` rounded once to ``dtype``, to nearest: float64 by one
    addition; float32 through round-to-odd (the pair's exact sum, where it
    is not a float64, replaced by the float64 of odd last bit next to it,
    then rounded to float32: no double rounding); float16 and bfloat16 as
    float32, then to the dtype (as the float32 kernels that compute them
    round).  Where ``hi`` is not finite, ``hi`` (inf or NaN, the sum's IEEE
    value).  The C backend's pairs are rounded here; Numba's kernels round
    theirs alike (numba_cpu._double_double)."""
    hi, lo = np.asarray(hi, np.float64), np.asarray(lo, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        s = hi + lo
        t = s - hi
        r = (hi - (s - t)) + (lo - t)
        if np.dtype(dtype) == np.float64:
            return np.where(np.isfinite(hi), s, hi)
        half = np.ldexp(np.frexp(s)[0], 52)           # the significand over 2
        even = half == np.floor(half)
        s = np.where((r != 0) & even, np.nextafter(s, np.copysign(np.inf, r)), s)
        return np.where(np.isfinite(hi), s, hi).astype(np.float32).astype(dtype)


def prelu_run(ci):
    """Short PReLU rows (``ci = C * inner`` elements a sample, rows under
    ``config.PRELU_ROW_MIN``): the length of the runs the CPU kernels take
    them in, whole samples, at least ``config.PRELU_RUN_MIN`` elements
    (short runs do not vectorize well)."""
    return ci * -(-config.PRELU_RUN_MIN // ci) if ci > 0 else 1


def inner_columns(outer, K, itemsize, nthreads):
    """Columns a task of the inner-axis softmax kernels takes:
    ``config.INNER_BYTES`` of a row, fewer where that would leave a thread
    without two tasks (whole rows where K is narrower)."""
    cols = max(16, config.INNER_BYTES // itemsize)
    while cols > 16 and outer * -(-K // cols) < 2 * nthreads:
        cols //= 2
    return min(cols, K)


class Backend:
    name = "?"
    #: whether the kernels of ``elementwise_kernel`` want their scalar
    #: parameters as scalars of the data's dtype (Numba compiles one kernel
    #: per argument type); the C kernels take Python floats and round them to
    #: the dtype themselves, exactly as the cast would
    typed_params = True

    def load(self) -> "Backend":
        return self

    def describe(self) -> dict:
        return {}

    def narrow(self):
        """This backend's methods for narrow arrays (float16, bfloat16: the
        public layer's ``_backend``), with those of the base interface;
        by default its float32 methods on widened copies (widened.Widened)."""
        n = self.__dict__.get("_narrow")
        if n is None:
            n = self._narrow = self._narrow_methods()
        return n

    def _narrow_methods(self):
        from .widened import Widened
        return Widened(self)

    def elementwise_kernel(self, name, pass_, dtype, small):
        elementwise = self.elementwise

        def run(*args):
            elementwise(name, pass_, args[:-2], args[-2], args[-1])
        return run

    def elementwise_strided(self, name, pass_, walk, params):
        *ins, out = walk.arrays
        kernel = self.elementwise_kernel(name, pass_, out.dtype.type, True)
        # the iterator's input chunks are read-only arrays, which a Numba
        # kernel is compiled for apart: they are copied into writeable ones
        n = min(walk.size, config.WALK_CHUNK)
        bufs = [np.empty(n, out.dtype) for _ in ins]
        it = np.nditer(walk.arrays, flags=["external_loop", "buffered", "zerosize_ok"],
                       op_flags=[["readonly", "contig"]] * len(ins) + [["writeonly", "contig"]],
                       order="K", buffersize=n)
        with it:
            for *chunks, o in it:
                k = o.shape[0]
                for b, c in zip(bufs, chunks):
                    b[:k] = c
                kernel(*(b[:k] for b in bufs), o, params)
