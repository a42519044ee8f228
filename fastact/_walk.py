"""The N-d walk of an elementwise call over strided operands, set up as
NumPy's ``nditer`` and PyTorch's ``TensorIterator`` set theirs up.

The operands (inputs, then the output) share one shape and any strides:
steps, negative strides, broadcast (zero) strides, transposes, each its own.
:func:`walk` orders the axes by the operands' strides (the leading operand's
memory order outermost first), flips the axes the leading operand runs
backwards along, drops axes of length 1 and merges neighbours that every
operand walks as one, leaving ``(outer axes..., inner axis)`` with one
element stride per operand and axis.  The backends walk the outer axes
(rows) and run their vectorized loops along the inner one: contiguous rows
in place, other rows gathered into a small buffer (:func:`plan`).  Nothing
is copied whole.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import config


class Walk(NamedTuple):
    """``dims``: the extents, outer axes first, the inner axis last (at least
    one); ``strides``: per operand, its element stride along each of them;
    ``starts``: per operand, the offset in elements from its data pointer to
    the walk's first element; ``plan``: its tiles (:class:`Plan`);
    ``arrays``: the operands (inputs, then the output)."""
    dims: tuple
    strides: tuple
    starts: tuple
    plan: "Plan"
    arrays: tuple

    @property
    def size(self):
        return math.prod(self.dims)

    def address(self, k):
        """The address of operand ``k``'s first element in the walk."""
        a = self.arrays[k]
        return a.__array_interface__["data"][0] + self.starts[k] * a.itemsize

    def contiguous(self):
        """Whether every operand is one run of consecutive elements, walked
        forwards: the flat kernels then take them as 1-D arrays."""
        return len(self.dims) == 1 and all(s[0] == 1 for s in self.strides)

    def flat(self):
        """The operands as 1-D arrays in the walk's order, where it is
        :meth:`contiguous` (ravel's order "K" is then a view, the cheapest
        one; operands walked against their strides need :meth:`span`)."""
        if any(s < 0 for a in self.arrays for s in a.strides):
            return [self.span(k)[0] for k in range(len(self.arrays))]
        return [a.ravel(order="K") for a in self.arrays]

    def span(self, k):
        """``(view, origin)``: a 1-D contiguous view of the memory operand
        ``k`` spans, from its lowest address, and the index in it of the
        walk's first element (every element the walk visits lies in it).
        The view is flagged writeable whatever the operand is (a broadcast
        view is not): the kernels never write their inputs, and Numba
        compiles a kernel apart for read-only arrays."""
        a = self.arrays[k]
        low = sum((d - 1) * s for d, s in zip(self.dims, self.strides[k]) if s < 0)
        high = sum((d - 1) * s for d, s in zip(self.dims, self.strides[k]) if s > 0)
        start = self.address(k) + low * a.itemsize
        view = np.asarray(_Memory({"shape": (high - low + 1,), "typestr": a.dtype.str,
                                   "data": (start, False), "version": 3}, a))
        return view, -low


class _Memory:
    """An ``__array_interface__`` holder keeping the array it views alive."""
    __slots__ = ("__array_interface__", "base")

    def __init__(self, interface, base):
        self.__array_interface__ = interface
        self.base = base


def _outer_first(strides, shape):
    """The axes of length > 1, outermost first: an axis goes outside another
    where the first operand with nonzero strides along both that differ
    says it is the longer step (NumPy's order "K"); undecided, C order."""
    axes = []
    for b in range(len(shape)):
        if shape[b] == 1:
            continue
        at = len(axes)
        while at > 0:
            a = axes[at - 1]
            verdict = 0
            for st in strides:
                sa, sb = abs(st[a]), abs(st[b])
                if sa and sb and sa != sb:
                    verdict = 1 if sb > sa else -1
                    break
            if verdict <= 0:
                break
            at -= 1
        axes.insert(at, b)
    return axes


#: layouts seen: (shape, itemsize, strides of each operand) -> the walk's
#: geometry (dims, strides, starts, plan), or None; and (shape, strides of
#: the inputs) -> a new output's shape in memory order and the transpose
#: back (None for C order)
_GEOMETRY: dict = {}
_ORDER: dict = {}
_CACHE_MAX = 4096


def empty_like(arrays):
    """A new array of the operands' shape and dtype, laid out in their memory
    order (positive strides: NumPy's ``empty_like(order="K")`` for several
    operands, the first leading)."""
    a0 = arrays[0]
    shape = a0.shape
    key = (shape, *[a.strides for a in arrays])
    order = _ORDER.get(key, False)
    if order is False:
        axes = _outer_first([a.strides for a in arrays], shape)
        order = None
        if axes != sorted(axes):
            perm = axes + [k for k in range(len(shape)) if shape[k] == 1]
            order = tuple(shape[k] for k in perm), tuple(perm.index(k) for k in range(len(perm)))
        if len(_ORDER) >= _CACHE_MAX:
            _ORDER.clear()
        _ORDER[key] = order
    if order is None:
        return np.empty(shape, a0.dtype)
    return np.empty(order[0], a0.dtype).transpose(order[1])


def walk(arrays):
    """The :class:`Walk` of ``arrays`` (one shape and dtype, the output
    last), or None where a stride is not a multiple of the item size.
    The geometry of a layout is worked out once (config.WALK_* read then)."""
    a0 = arrays[0]
    key = (a0.shape, a0.itemsize, *[a.strides for a in arrays])
    geo = _GEOMETRY.get(key, False)
    if geo is False:
        geo = _geometry(a0.shape, a0.itemsize, [a.strides for a in arrays])
        if len(_GEOMETRY) >= _CACHE_MAX:
            _GEOMETRY.clear()
        _GEOMETRY[key] = geo
    return None if geo is None else Walk(*geo, tuple(arrays))


def _geometry(shape, size, byte_strides):
    strides = []
    for st in byte_strides:
        if any(s % size for s in st):
            return None
        strides.append([s // size for s in st])
    axes = _outer_first(strides, shape)
    starts = [0] * len(strides)
    # the leading operand (the first with a nonzero stride there) walks
    # each axis forwards
    for ax in axes:
        lead = next((st[ax] for st in strides if st[ax]), 0)
        if lead < 0:
            for k, st in enumerate(strides):
                starts[k] += (shape[ax] - 1) * st[ax]
                st[ax] = -st[ax]
    dims = [shape[ax] for ax in axes]
    per_op = [[st[ax] for ax in axes] for st in strides]
    # merge an axis into the next inner one where every operand steps over
    # the inner one's whole extent exactly
    i = len(dims) - 1
    while i > 0:
        if all(st[i - 1] == st[i] * dims[i] for st in per_op):
            dims[i - 1:i + 1] = [dims[i - 1] * dims[i]]
            for st in per_op:
                st[i - 1:i + 1] = [st[i]]
        i -= 1
    if not dims:
        dims, per_op = [1], [[1] for _ in per_op]
    dims, per_op = tuple(dims), tuple(tuple(st) for st in per_op)
    return dims, per_op, tuple(starts), plan(dims, per_op, size)


class Plan(NamedTuple):
    """How the backends cut a walk's rows into tiles: ``rows`` by ``cols``
    elements of the inner axis.  ``direct[k]``: operand ``k`` is read or
    written where it lies (unit inner stride, long rows); the others go
    through a buffer of ``rows * cols`` elements, gathered (scattered)
    ``by_col[k]``: column by column, for an operand whose memory runs
    along the outer axis (a transpose)."""
    rows: int
    cols: int
    direct: tuple
    by_col: tuple

    def flags(self, binary):
        """The kernels' flags (c_src/fastact.h: fa_elementwise_strided):
        bit k operand k (input 0, input 1, the output) in place, bit k + 4
        gathered by columns; a unary walk's second input has none."""
        ops = (0, 1, 2) if binary else (0, None, 1)
        return sum((self.direct[k] << j) | (self.by_col[k] << (j + 4))
                   for j, k in enumerate(ops) if k is not None)


def plan(dims, strides, itemsize):
    """The tiles of a walk of ``dims`` and ``strides`` (config.WALK_*)."""
    m = dims[-1]
    buf = config.WALK_TILE_BYTES // itemsize
    direct = tuple(st[-1] == 1 and m >= config.WALK_DIRECT_MIN for st in strides)
    by_col = tuple(not d and len(st) > 1 and abs(st[-2]) < abs(st[-1])
                   for d, st in zip(direct, strides))
    if all(direct):
        # no buffer: a tile is a row, or a part of a long one
        return Plan(1, min(m, config.WALK_DIRECT_SPAN), direct, by_col)
    if any(by_col):
        rows = config.WALK_COLUMN_ROWS
        cols = buf // rows
    else:
        cols = min(m, buf)
        rows = max(1, min(config.WALK_TILE_ROWS, buf // cols))
    if cols < config.WALK_DIRECT_MIN:
        direct = (False,) * len(direct)
    return Plan(rows, cols, direct, by_col)
