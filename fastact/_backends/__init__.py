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
