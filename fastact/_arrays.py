"""Host-array helpers used by the public layer.

The public layer is written against a small namespace of array operations so
that the same validation and plumbing serves NumPy arrays (this module) and
device arrays (the ``arrays`` attribute of the CUDA backend).
"""
from __future__ import annotations

import numpy as np

SUPPORTED = (np.dtype(np.float32), np.dtype(np.float64))


class HostArrays:
    """Operations on NumPy arrays."""

    device = False

    @staticmethod
    def asarray(a):
        return np.asarray(a)

    @staticmethod
    def flat(a):
        """C-contiguous 1-D view, or copy when the layout needs one."""
        return a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)

    @staticmethod
    def contiguous(a):
        return a if a.flags.c_contiguous else np.ascontiguousarray(a)

    @staticmethod
    def empty(shape, dtype):
        return np.empty(shape, dtype)

    @staticmethod
    def assign(dst, src):
        dst[...] = src.reshape(dst.shape)

    @staticmethod
    def overlaps(a, b):
        return np.may_share_memory(a, b)

    @staticmethod
    def same_buffer(a, b):
        """True when ``a`` and ``b`` view exactly the same elements alike."""
        return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
                and a.strides == b.strides and a.shape == b.shape)

    @staticmethod
    def writeable(a):
        return a.flags.writeable

    @staticmethod
    def is_c_contiguous(a):
        return a.flags.c_contiguous

    @staticmethod
    def moveaxis(a, src, dst):
        return np.moveaxis(a, src, dst)

    @staticmethod
    def wrap(result, like):
        return result


HOST = HostArrays()
