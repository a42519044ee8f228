"""The softmax family along a chunked axis (fastact._dask's two-pass plan): the
per-block work, compiled.

Each function takes a block as ``(outer, n, K)`` (the softmax axis in the
middle, C order) and walks its ``n`` rows vectorized across the ``K``
columns, with the row kernels' own primitives (``exp_diff``, ``exp``), so
that an element's exponential is the single call's where the max is:

* ``stats(x3, st, given)``: per row (column ``k`` of sample ``o``), in
  ``st[o, :, k]``: the max ``m`` of ``sg x`` (sg = -1: softmin; ``given``:
  the whole row's, read from ``st[o, 0, k]``), the count of exponentials
  ``exp_diff(sg x, m)`` equal to 1 and the float64 sum of the others, as a
  pair (high, low: float64 data's double-double; float32's low part 0; all
  0 where ``m`` is -inf);
* ``maxes(x3, mx)``: the block rows' maxima of ``sg x`` in ``mx[o, 0, k]``
  (NaN skipped, -inf for none);
* ``normalise(x3, st, out3)``: with ``st`` the whole rows' (M, ones, rest):
  softmax ``exp_diff(sg x, M) / S`` as the row kernels scale (``S = ones +
  rest``, its reciprocal split in two values of the data's width),
  log_softmax ``(sg x - M) - log1p((ones - 1) + rest)`` in float64;
* ``dots(g3, y3, d)``: per row the float64 sum of ``g y`` (``g`` for
  log_softmax; float64 data: Kahan's compensation);
* ``grads(g3, y3, d, out3)``: the row kernels' input gradient with ``d`` the
  whole rows' sums (rounded to the data's width, as they round theirs).
"""
from __future__ import annotations

import functools

import numpy as np

from .._prims import cpu_prims, inner_njit, kernel_njit
from .._registry import REGISTRY


@functools.lru_cache(maxsize=None)
def twopass_kernels(name, dtype):
    """``(stats, normalise, dots, grads, maxes)`` of the registry entry ``name``."""
    T, W = np.dtype(dtype).type, np.float64
    prims = cpu_prims(dtype)
    exp_diff, exp = prims.exp_diff, prims.exp
    row = REGISTRY[name].row
    negate, log = row.negate, row.log
    sg = T(-1.0) if negate else T(1.0)
    zero, one, ninf = W(0.0), W(1.0), T(-np.inf)
    t_one = T(1.0)
    compensated = T is np.float64
    tag = f"twopass_{name}_{np.dtype(dtype).name}"
    from .numba_cpu import _double_double, _kahan

    kahan, add_exact = _kahan(), _double_double()[2]

    def stats(x3, st, given):
        outer, n, K = x3.shape
        m = np.empty(K, T)
        c = np.empty(K, W)
        r = np.empty(K, W)
        rc = np.empty(K, W)
        for o in range(outer):
            for k in range(K):
                m[k] = T(st[o, 0, k]) if given else ninf
                c[k] = zero
                r[k] = zero
                rc[k] = zero
            if not given:
                row_maxes(x3, o, n, K, m)
            for j in range(n):
                for k in range(K):
                    e = exp_diff(sg * x3[o, j, k], m[k])
                    if e == t_one:
                        c[k] += one
                    elif compensated:
                        # double-double: the single call's sum (numba_cpu's
                        # lane_sums) is correctly rounded but for n eps**2
                        r[k], rc[k] = add_exact(r[k], rc[k], W(e))
                    else:
                        r[k] += W(e)
            for k in range(K):
                empty = m[k] == ninf
                st[o, 0, k] = W(m[k])
                st[o, 1, k] = zero if empty else c[k]
                st[o, 2, k] = zero if empty else r[k]
                st[o, 3, k] = zero if empty else rc[k]

    @inner_njit()
    def row_maxes(x3, o, n, K, m):
        """m[k] = max(m[k], the max of sg x over row k of sample o); a NaN
        is never taken (it reaches the sum through exp_diff)"""
        for j in range(n):
            for k in range(K):
                v = sg * x3[o, j, k]
                m[k] = v if v > m[k] else m[k]

    def maxes(x3, mx):
        outer, n, K = x3.shape
        m = np.empty(K, T)
        for o in range(outer):
            for k in range(K):
                m[k] = ninf
            row_maxes(x3, o, n, K, m)
            for k in range(K):
                mx[o, 0, k] = W(m[k])

    @inner_njit(fastmath={"contract"})
    def scale(out3, o, n, K, hi, lo):
        # the row kernels' scale: o * inv with inv split in the data's width
        for j in range(n):
            for k in range(K):
                v = out3[o, j, k]
                out3[o, j, k] = v * hi[k] + v * lo[k]

    def normalise(x3, st, out3):
        outer, n, K = x3.shape
        M = np.empty(K, T)
        hi = np.empty(K, T)
        lo = np.empty(K, T)
        lse = np.empty(K, W)
        for o in range(outer):
            for k in range(K):
                M[k] = T(st[o, 0, k])
                if log:
                    lse[k] = np.log1p((st[o, 1, k] - one) + st[o, 2, k])
                else:
                    inv = one / (st[o, 1, k] + st[o, 2, k])
                    hi[k] = T(inv)
                    lo[k] = T(inv - W(hi[k]))
            for j in range(n):
                for k in range(K):
                    if log:
                        out3[o, j, k] = T((W(sg * x3[o, j, k]) - W(M[k])) - lse[k])
                    else:
                        out3[o, j, k] = exp_diff(sg * x3[o, j, k], M[k])
            if not log:
                scale(out3, o, n, K, hi, lo)

    def dots(g3, y3, d):
        outer, n, K = y3.shape
        s = np.empty(K, W)
        comp = np.empty(K, W)
        for o in range(outer):
            for k in range(K):
                s[k] = zero
                comp[k] = zero
            for j in range(n):
                for k in range(K):
                    t = W(g3[o, j, k]) if log else W(g3[o, j, k]) * W(y3[o, j, k])
                    if compensated:
                        s[k], comp[k] = kahan(s[k], comp[k], t)
                    else:
                        s[k] += t
            for k in range(K):
                d[o, 0, k] = s[k] - comp[k] if compensated else s[k]

    def grads(g3, y3, d, out3):
        outer, n, K = y3.shape
        dt = np.empty(K, T)
        for o in range(outer):
            for k in range(K):
                dt[k] = T(d[o, 0, k])
            for j in range(n):
                for k in range(K):
                    gk, yk = g3[o, j, k], y3[o, j, k]
                    if log:
                        out3[o, j, k] = gk - exp(yk) * dt[k]
                    elif negate:
                        out3[o, j, k] = yk * (dt[k] - gk)
                    else:
                        out3[o, j, k] = yk * (gk - dt[k])

    return tuple(kernel_njit(f"{tag}_{f.__name__}", nogil=True)(f)
                 for f in (stats, normalise, dots, grads, maxes))
