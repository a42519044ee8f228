"""Parallel CPU backend: the registry's formulas compiled by Numba.

Loop skeletons only.  Each registry formula is compiled with the polynomial
primitives of :func:`fastact._prims.cpu_prims` and inlined into a range
worker run on fastact's thread pool (large arrays: numba_pool) or a plain
loop (small arrays).  Kernels are
compiled lazily on first use, release the GIL, and are cached on disk.
"""
from __future__ import annotations

import functools
import math
import threading

import numpy as np

from .. import _threads, config
from .._prims import (always_inline, array_address, cpu_prims, inner_njit, kernel_njit,
                      prefetchers, streaming, streaming_supported, wide_vectors)
from .._registry import REGISTRY, parallel_min, streamed
from . import Backend, inner_columns, prelu_run
from .widened import Widened, c_conversions

# A parallel region entered from two Python threads at once is not safe on
# every Numba threading layer (workqueue aborts); a caller that finds the
# pool busy runs the serial kernel on its own thread instead.
_pool_lock = threading.Lock()


def _numba():
    import numba
    return numba


def _jit(tag, parallel):
    return kernel_njit(f"{tag}_{'par' if parallel else 'ser'}", parallel=parallel, nogil=True)


def _inlined(f):
    """``f`` compiled for the kernels, always inlined: its body inlined (by
    Numba) into a shim of the same arity that LLVM must inline (the
    registry's formulas stay math only, and cannot call the intrinsic
    themselves)."""
    import inspect
    names = ", ".join(f"a{k}" for k in range(len(inspect.signature(f).parameters)))
    ns = {"f": inner_njit(inline="always")(f), "inline": always_inline()}
    exec(f"def {f.__name__}({names}):\n    inline()\n    return f({names})\n", ns)
    return inner_njit()(ns[f.__name__])


@functools.lru_cache(maxsize=None)
def _formulas(name, dtype):
    return tuple(_inlined(f) for f in REGISTRY[name].build(cpu_prims(dtype)))


@functools.lru_cache(maxsize=None)
def _formula(name, pass_, dtype):
    """The compiled scalar formula of an elementwise entry's pass."""
    if pass_ == "backward_y":
        return _inlined(REGISTRY[name].from_output.build(cpu_prims(dtype)))
    return _formulas(name, dtype)[pass_ != "forward"]


@functools.lru_cache(maxsize=None)
def _guarded(name, pass_, dtype):
    """``(fast, ok)``, compiled for the kernels, of a pass the registry names
    in ``guarded`` (the formula's variant for its common domain and the guard
    of that domain; fastact/_spec.py: Spec.guarded), else None."""
    spec = REGISTRY[name]
    if pass_ not in spec.guarded:
        return None
    p = cpu_prims(dtype)
    fast = spec.build(p, fast=True)[pass_ != "forward"]
    return _inlined(fast), _inlined(spec.guard(p)[pass_])


def _guard_block(dtype):
    """Elements in one guarded block: 1 KiB, as C's FA_STREAM_CHUNK."""
    return 1024 // np.dtype(dtype).itemsize


def _scanner(ok, binary):
    """``scan(a, b, lo, hi, params)``: whether every element of ``[lo, hi)``
    is in a guarded formula's common domain (``ok``; b is a again where
    unary)."""
    wide, U = wide_vectors(), np.uint64
    oki = _one_shape(ok, False, binary)         # oki(a, b, i, *params): one shape

    # unsigned offsets, as the kernels' loops: no negative-index check, so
    # the reduction vectorizes (a boolean and: counting the misses instead
    # took twice as long)
    @inner_njit(inline="always")
    def scan(a, b, lo, hi, params):
        good = True
        for j in range(hi - lo):
            wide()
            k = U(lo) + U(j)
            good &= oki(a[k], b[k], k, *params)
        return good
    return scan


def _guarded_body(body, body_fast, scan, block):
    """``body(lo, hi, a, b, out, params)`` worked through in blocks of
    ``block`` elements, each written by ``body_fast`` where ``scan`` finds all
    of its elements in the common domain, else by ``body`` (the same bits
    there: see Spec.guarded).  A block is read before it is written: in place
    stays correct."""
    @inner_njit(inline="always")
    def guarded(lo, hi, a, b, out, params):
        s = lo
        while s < hi:
            e = min(hi, s + block)
            if scan(a, b, s, e, params):
                body_fast(s, e, a, b, out, params)
            else:
                body(s, e, a, b, out, params)
            s = e
    return guarded


# --- loop skeletons -----------------------------------------------------------

#: the largest array whose flat indices all fit in 32 bits
_INDEX32 = 1 << 32


@functools.lru_cache(maxsize=None)
def _same_address():
    """``same(a, b)``, compiled: whether arrays ``a`` and ``b`` start at one
    address.

    An output that is an input (in place; fastact passes kernels no other
    overlap) gets the loop compiled for that case, the input array passed
    as the output too: LLVM vectorizes a loop over arrays that may overlap
    behind a check of their address ranges, whose scalar fallback an
    in-place call took (Numba float32 gelu forward 6.8 ns an element in
    place, 0.77 into another array; sigmoid 2.4 against 0.33).  The loops so
    dispatched are inlined by Numba (``inline="always"``), so that LLVM
    sees one array in the in-place branch before it vectorizes."""
    address = array_address()

    @inner_njit(inline="always")
    def same(a, b):
        return address(a) == address(b)
    return same


@functools.lru_cache(maxsize=None)
def _case_of():
    """``case_of(out, a, b)``, compiled: the in-place case of a call (a pool
    kernel's ``alias``): 1 where ``out`` is ``a``, 2 where it is ``b``, else
    0 (unary kernels pass ``a`` twice)."""
    same = _same_address()

    @inner_njit(inline="always")
    def case_of(out, a, b):
        return 1 if same(out, a) else (2 if same(out, b) else 0)
    return case_of


def _make_unary(tag, f, indexed, parallel, guard=None):
    """The serial (``parallel`` False) or pooled kernel of a unary formula;
    ``guard`` (the pooled one only): see _pooled_elementwise."""
    if parallel:
        return _pooled_elementwise(tag, f, indexed, False, guard)
    wide = wide_vectors()
    loop = _unary_loop(f, indexed, wide)
    body, same = inner_njit(inline="always")(loop), _same_address()

    def kernel(x, out, params):           # in place: see _same_address
        if same(out, x):
            body(x, x, params)
        else:
            body(x, out, params)
    return _jit(tag, False)(kernel)


def _unary_loop(f, indexed, wide):
    if indexed:
        U, U32 = np.uint64, np.uint32

        def loop(x, out, params):
            n = x.shape[0]
            if n <= _INDEX32:
                # indices below 2**32: their high half is 0, which LLVM sees
                # (the hash's high-half product leaves the loop)
                for i in range(n):
                    wide()
                    out[i] = f(x[i], U(U32(i)), *params)
            else:
                for i in range(n):
                    wide()
                    out[i] = f(x[i], i, *params)
    else:
        def loop(x, out, params):
            for i in range(x.shape[0]):
                wide()
                out[i] = f(x[i], *params)
    return loop


def _make_binary(tag, f, indexed, parallel, guard=None):
    """_make_unary's binary twin."""
    if parallel:
        return _pooled_elementwise(tag, f, indexed, True, guard)
    wide = wide_vectors()
    body, same = inner_njit(inline="always")(_binary_loop(f, indexed, wide)), _same_address()

    def kernel(g, s, out, params):           # in place: see _same_address
        if same(out, g):
            body(g, s, g, params)
        elif same(out, s):
            body(g, s, s, params)
        else:
            body(g, s, out, params)
    return _jit(tag, False)(kernel)


def _binary_loop(f, indexed, wide):
    if indexed:
        U, U32 = np.uint64, np.uint32

        def loop(g, s, out, params):
            n = g.shape[0]
            if n <= _INDEX32:                 # as in _make_unary
                for i in range(n):
                    wide()
                    out[i] = f(g[i], s[i], U(U32(i)), *params)
            else:
                for i in range(n):
                    wide()
                    out[i] = f(g[i], s[i], i, *params)
    else:
        def loop(g, s, out, params):
            for i in range(g.shape[0]):
                wide()
                out[i] = f(g[i], s[i], *params)
    return loop


#: elements a chunk of a parallel kernel takes at least (pool.c's
#: FA_CHUNK_MIN_ELEMS: a claim costs a compare-and-swap on a line that all
#: threads share)
_CHUNK_MIN = config.POOL_CHUNK_MIN_ELEMS


def _pooled(tag, body, units, grain=1, alias=None):
    """The parallel kernel ``k(nthreads, *args)`` of ``body(lo, hi, *args)``
    over the units of ``units(*args) -> (n, least)`` (numba_pool.PoolKernel:
    the chunks go to whichever of the calling thread and the pool's workers
    is free; with ``alias``, ``body(case)`` is the body of a case)."""
    from .numba_pool import PoolKernel
    return PoolKernel(tag + "_pool", body, units, grain, alias)


def _serial(tag, body, units, **options):
    """The serial kernel ``k(*args)``: ``body`` over all the units."""
    def serial(*args):
        body(0, units(*args)[0], *args)
    return kernel_njit(tag + "_ser", nogil=True, **options)(serial)


def _pooled_elementwise(tag, f, indexed, binary, guard=None):
    """The parallel elementwise kernel (arrays within the caches; bigger
    ones take _make_blocked's): ``k(nthreads, x, out, params)`` or
    ``k(nthreads, g, s, out, params)``, elements in chunks of multiples of
    16 (whole 64-byte lines of float32).  ``guard``: ``(fast, ok, block)``
    of a guarded pass (_guarded, _guarded_body)."""
    body = _pool_body(f, indexed, binary)
    if guard is not None:
        fast, ok, block = guard
        body = _guarded_body(body, _pool_body(fast, indexed, binary), _scanner(ok, binary),
                             block)

    @inner_njit()
    def count(out):
        return out.shape[0], _CHUNK_MIN

    return _pooled_arity(tag, _alias_cases(body, binary), count, binary, grain=16)


def _pool_body(f, indexed, binary):
    """``body(lo, hi, a, b, out, params)``: ``out[k] = f(...)`` for ``lo <= k <
    hi`` (b is a again where unary; i the index of an indexed formula)."""
    wide, inline = wide_vectors(), always_inline()
    U, U32 = np.uint64, np.uint32
    # one shape for both arities (b is a again where unary), i the index
    # of an indexed formula
    if indexed and binary:
        @inner_njit()
        def fi(a, b, k, i, params):
            inline()
            return f(a[k], b[k], i, *params)
    elif indexed:
        @inner_njit()
        def fi(a, b, k, i, params):
            inline()
            return f(a[k], i, *params)
    elif binary:
        @inner_njit()
        def fi(a, b, k, i, params):
            inline()
            return f(a[k], b[k], *params)
    else:
        @inner_njit()
        def fi(a, b, k, i, params):
            inline()
            return f(a[k], *params)

    @inner_njit(inline="always")
    def body(lo, hi, a, b, out, params):
        if out.shape[0] <= _INDEX32:
            # indices below 2**32: their high half is 0, which LLVM sees
            # (an indexed formula's hash: the high-half product leaves the loop)
            for j in range(hi - lo):
                wide()
                k = U(lo) + U(j)
                out[k] = fi(a, b, k, U(U32(k)), params)
        else:
            for j in range(hi - lo):
                wide()
                k = U(lo) + U(j)
                out[k] = fi(a, b, k, k, params)
    return body


def _alias_cases(body, binary):
    """``runs[case](lo, hi, a, b, out, params)``: ``body`` (Numba-inlined)
    with the output replaced by the input it is (see _same_address): case
    0 none, 1 ``a``, 2 ``b`` (``binary``: ``b`` is another array; unary
    kernels pass ``a`` twice, and have cases 0 and 1)."""
    inline = always_inline()

    @inner_njit()
    def apart(lo, hi, a, b, out, params):
        inline()
        body(lo, hi, a, b, out, params)

    @inner_njit()
    def on_a(lo, hi, a, b, out, params):
        inline()
        body(lo, hi, a, b, a, params)

    @inner_njit()
    def on_b(lo, hi, a, b, out, params):
        inline()
        body(lo, hi, a, b, b, params)
    return (apart, on_a, on_b) if binary else (apart, on_a)


def _cases(body_of):
    """``body_of`` (a case's body) made once a case (PoolKernel's ``body``)."""
    return functools.lru_cache(maxsize=None)(body_of)


def _pooled_arity(tag, runs, count, binary, grain=1):
    """The parallel kernel of ``runs[case](lo, hi, a, b, out, params)`` (see
    _alias_cases; each case's worker compiled when a call first has it) over
    the units of ``count(out) -> (n, least)``, called ``k(nthreads, g, s,
    out, params)`` where ``binary``, else ``k(nthreads, x, out, params)``
    (``b`` is ``x`` again)."""
    inline, case_of = always_inline(), _case_of()
    if binary:
        def wrap(run):
            @inner_njit()
            def body(lo, hi, g, s, out, params):
                inline()
                run(lo, hi, g, s, out, params)
            return body

        @inner_njit()
        def units(g, s, out, params):
            return count(out)

        @inner_njit()
        def alias(g, s, out, params):
            return case_of(out, g, s)
    else:
        def wrap(run):
            @inner_njit()
            def body(lo, hi, x, out, params):
                inline()
                run(lo, hi, x, x, out, params)
            return body

        @inner_njit()
        def units(x, out, params):
            return count(out)

        @inner_njit()
        def alias(x, out, params):
            return case_of(out, x, x)
    return _pooled(tag, _cases(lambda case: wrap(runs[case])), units, grain, alias=alias)


def _block_elems(dtype):
    """Elements in one block of the big-output kernels (config.STREAM_BLOCK_BYTES)."""
    return max(64, config.STREAM_BLOCK_BYTES // np.dtype(dtype).itemsize)


@functools.lru_cache(maxsize=None)
def _stream_blocks(dtype):
    """``(block, blocks, span)`` for streamed outputs of ``dtype``: thread
    ``t`` of ``nthreads`` takes blocks ``b0 <= b < b1`` of ``out``, where
    ``(first, b0, b1) = blocks(out, t, nthreads)``, and block ``b`` is
    ``out[lo:hi]``, ``(lo, hi) = span(b, first, n)``.  Blocks of ``block``
    elements start at 64-byte boundaries of ``out`` (block 0 is what comes
    before the first one), so the streamed stores need no unaligned head."""
    size = np.dtype(dtype).itemsize
    block = _block_elems(dtype)
    address = array_address()
    to_boundary = _to_boundary()

    @inner_njit()
    def blocks(out, t, nthreads):
        n = out.shape[0]
        first = max(0, to_boundary(address(out), n, size))
        nblk = 1 + (n - first + block - 1) // block
        return first, t * nblk // nthreads, (t + 1) * nblk // nthreads

    @inner_njit()
    def span(b, first, n):
        return (0 if b == 0 else first + (b - 1) * block), min(n, first + b * block)

    return block, blocks, span


@functools.lru_cache(maxsize=None)
def _store(nt):
    """``put(dst, i, v)``: ``dst[i] = v``, or with ``nt`` a streaming store
    (``store_nt``: ranges so written must start at a 64-byte boundary)."""
    if nt:
        return streaming()[2]

    @inner_njit(inline="always")
    def put(dst, i, v):
        dst[i] = v
    return put


@functools.lru_cache(maxsize=None)
def _kahan():
    """``kahan(acc, comp, v)``: ``(acc + v, comp)`` with Kahan's compensation
    (float64), the compensation dropped once the sum is infinite (it is then
    inf - inf, NaN, and would turn the infinite sum into NaN).  Callers are
    compiled without reassociation, which would undo it."""
    W = np.float64
    inf, zero = W(np.inf), W(0.0)

    @inner_njit()
    def kahan(acc, comp, v):
        y = v - comp
        t = acc + y
        c = (t - acc) - y
        return t, (c if abs(c) < inf else zero)
    return kahan


@functools.lru_cache(maxsize=None)
def _double_double():
    """``(add_term, round_pair, add_exact)``, float64 scalars, as
    fastact._backends's pair_sum and round_pairs compute them:
    ``add_term(hi, lo, p, e)`` is the pair ``(hi, lo)`` plus ``p + e`` (the
    two-sum of ``hi`` and ``p``, its error and ``e`` added to ``lo``);
    ``add_exact(hi, lo, p)`` the same for an exact term (e = 0, without
    its addition, as C's fa_add_exact); ``round_pair(hi, lo)`` the pair
    rounded to float64,
    and to the float64 of odd last bit where it is not one (round to odd:
    then rounded to float32, no double rounding); ``hi`` itself where it is
    not finite.  Callers are compiled without reassociation."""
    W = np.float64
    zero, inf = W(0.0), W(np.inf)
    inline = always_inline()

    @inner_njit()
    def add_term(hi, lo, p, e):
        inline()
        s = hi + p
        t = s - hi
        return s, lo + (((hi - (s - t)) + (p - t)) + e)

    @inner_njit()
    def add_exact(hi, lo, p):
        inline()
        s = hi + p
        t = s - hi
        return s, lo + ((hi - (s - t)) + (p - t))

    @inner_njit()
    def round_pair(hi, lo):
        if not abs(hi) < inf:
            return hi, hi
        s = hi + lo
        t = s - hi
        r = (hi - (s - t)) + (lo - t)
        odd = s
        half = math.ldexp(math.frexp(s)[0], 52)      # the significand over 2
        if r != zero and half == math.floor(half):
            odd = np.nextafter(s, inf if r > zero else -inf)
        return s, odd

    return add_term, round_pair, add_exact


@functools.lru_cache(maxsize=None)
def _to_boundary():
    """``to_boundary(a, n, size)``: how many of ``n`` elements of ``size``
    bytes from address ``a`` come before the first 64-byte boundary (``n``
    at most); -1 where ``a`` is not a multiple of ``size`` (the elements then
    never reach a boundary)."""
    @inner_njit()
    def to_boundary(a, n, size):
        return min(n, (-a & 63) // size) if a % size == 0 else -1
    return to_boundary


def _block_runs(fi, indexed, nt=False):
    """``run(a, b, dst, d0, lo, hi, base, params)``: ``dst[d0 + k - lo] =
    fi(a[k - base], b[k - base], k, *params)`` for ``lo <= k < hi`` (the
    blocked kernels pass ``base = 0``; the tests a ``base`` near 2**32).
    ``nt``: the stores are streaming stores, interleaved with the arithmetic
    (``store_nt``); ``dst[d0]`` must then start at a 64-byte boundary.

    Unsigned offsets index the arrays (no negative-index check: the loops
    vectorize) instead of block slices, which cost reference counting.
    For an indexed formula the range is cut at multiples of 2**32 and each
    run's index written as ``(high half << 32) | uint32(k)``: LLVM then sees
    the high half constant in the loop (the counter hash's high-half product
    leaves it) and counts the low half in 32-bit vector lanes."""
    wide = wide_vectors()
    U = np.uint64
    # inlined by Numba, not left to LLVM: a call passes the arrays with an
    # atomic reference count each, per block, on counters both threads share
    # (relu forward ran at a third of its speed)
    njit = inner_njit(inline="always")
    put = _store(nt)
    if indexed:
        U32 = np.uint32

        @njit
        def run(a, b, dst, d0, lo, hi, base, params):
            s = lo
            while s < hi:
                e = min(hi, (s | 0xFFFFFFFF) + 1)
                top = (U(s) >> U(32)) << U(32)
                for k in range(U(s), U(e)):        # k itself the loop's induction
                    wide()
                    put(dst, U(d0) - U(lo) + k,
                        fi(a[k - U(base)], b[k - U(base)], top | U(U32(k)), *params))
                s = e
    else:
        @njit
        def run(a, b, dst, d0, lo, hi, base, params):
            for j in range(hi - lo):
                wide()
                k = U(lo) + U(j)
                put(dst, U(d0) + U(j), fi(a[k - U(base)], b[k - U(base)], lo + j, *params))
    return run


def _one_shape(f, indexed, binary):
    """``f`` in one formula shape for both arities, ``fi(a, b, i, *params)``:
    the index is dead code where the formula takes none, and so is b for a
    unary formula (whose kernel passes x as both), both removed by LLVM."""
    inline = always_inline()
    if binary and indexed:
        return f
    if binary:
        @inner_njit()
        def fi(g, s, i, *params):
            inline()
            return f(g, s, *params)
    elif indexed:
        @inner_njit()
        def fi(x, b, i, *params):
            inline()
            return f(x, i, *params)
    else:
        @inner_njit()
        def fi(x, b, i, *params):
            inline()
            return f(x, *params)
    return fi


def _make_blocked(tag, f, indexed, binary, dtype, guard=None):
    """The parallel loop for outputs too big for the caches: one task per
    thread, each taking its share in blocks of ``config.STREAM_BLOCK_BYTES``
    of output, written in place while the input lines
    ``config.PREFETCH_BLOCKS`` blocks ahead are prefetched, which keeps the
    arithmetic and the memory traffic overlapping.  Every block but the head
    (which runs up to the first 64-byte boundary) is written with streaming
    stores as its vectors are computed (``store_nt``), which spares the read
    of the output's lines.  Each element is read before it is written, so
    in-place calls are correct.

    Every elementwise kernel takes this path.  The memory-bound ones used to
    compute a block into an L1-resident buffer and stream the buffer out; in
    place, with the input prefetched, they run faster: % of the copy at
    2**24 float32 / 2**23 float64, 2 threads, buffer / in place, two
    processes: relu forward 111-113 / 117-118 (float64 99-115 / 127-128),
    relu backward 120-121 / 125 (115-140 / 125-140), leaky_relu forward
    103-106 / 126-129 (102-111 / 131-139), leaky_relu backward 116-121 /
    126-137, sigmoid backward 116-122 / 122-127 (115-134 / 129-135); a
    streamed copy (the identity) 36.9-45.9 / 46.1-48.6 GB/s, three
    processes.  The compute-bound ones
    (sigmoid forward, elu, rrelu in training) had come out 71-73 / 87-88
    (sigmoid forward, copy at 46-52 GB/s) through the buffer, whose streamed
    stores came in bursts that stalled the arithmetic.

    ``guard``: ``(fast, ok, block)`` of a guarded pass: each block is
    scanned first and written by ``fast`` where all of it is in the common
    domain (see _guarded_body; the blocks here are its size)."""
    block, blocks, span = _stream_blocks(dtype)
    line = 64 // np.dtype(dtype).itemsize
    ahead = config.PREFETCH_BLOCKS * block
    fi = _one_shape(f, indexed, binary)
    fence = streaming()[1]
    pf_read = prefetchers()[0]

    @inner_njit()
    def prefetch(a, b, n, lo):
        pf = lo + ahead
        if pf + block <= n:
            for q in range(0, block, line):
                pf_read(a, pf + q)
                if binary:               # a unary kernel's b is a again
                    pf_read(b, pf + q)

    # the head block (up to the output's first 64-byte boundary, all of it
    # where the output is aligned to its element size only) is stored as
    # usual, every other block streamed
    run, run_nt = _block_runs(fi, indexed), _block_runs(fi, indexed, nt=True)
    address, size = array_address(), np.dtype(dtype).itemsize
    if guard is None:
        # the guard's branch below, folded away
        @inner_njit(inline="always")
        def scan(a, b, lo, hi, params):
            return False
        run_f, run_f_nt = run, run_nt
    else:
        fast, ok, _ = guard
        scan = _scanner(ok, binary)
        ff = _one_shape(fast, indexed, binary)
        run_f, run_f_nt = _block_runs(ff, indexed), _block_runs(ff, indexed, nt=True)

    @inner_njit(inline="always")
    def chunk_blocks(lo, hi, a, b, out, params):
        """Blocks ``lo <= blk < hi`` of ``out``."""
        first = blocks(out, 0, 1)[0]
        aligned = address(out) % size == 0
        for blk in range(lo, hi):
            s, e = span(blk, first, out.shape[0])
            prefetch(a, b, out.shape[0], s)
            if scan(a, b, s, e, params):
                if blk == 0 or not aligned:
                    run_f(a, b, out, s, s, e, 0, params)
                else:
                    run_f_nt(a, b, out, s, s, e, 0, params)
            elif blk == 0 or not aligned:
                run(a, b, out, s, s, e, 0, params)
            else:
                run_nt(a, b, out, s, s, e, 0, params)
        fence()            # the streamed stores drained before the chunk counts done

    # the output's blocks, a chunk at least 16 of them (16 KiB)
    @inner_njit()
    def count(out):
        return blocks(out, 0, 1)[2], 16

    return _pooled_arity(tag + "_prefetch", _alias_cases(chunk_blocks, binary), count, binary)


@functools.lru_cache(maxsize=None)
def _blocked_kernel(name, pass_, dtype):
    """The big-output kernel of ``name``'s ``pass_`` (see _make_blocked)."""
    guard = _guard_of(name, pass_, dtype)
    return _make_blocked(_kernel_tag(name, pass_, dtype, guard), _formula(name, pass_, dtype),
                         REGISTRY[name].indexed, pass_ != "forward", dtype, guard)


def _guard_of(name, pass_, dtype, on=None):
    """``(fast, ok, block)`` for the kernels of a guarded pass, else None;
    ``on`` (default config.NUMBA_GUARDED) False: None."""
    if not (config.NUMBA_GUARDED if on is None else on):
        return None
    g = _guarded(name, pass_, dtype)
    return None if g is None else (*g, _guard_block(dtype))


def _kernel_tag(name, pass_, dtype, guard):
    """A kernel's tag (its disk-cache name): a guarded kernel has its own."""
    return f"{name}_{pass_}_{np.dtype(dtype).name}" + ("_guarded" if guard else "")


@functools.lru_cache(maxsize=None)
def _elementwise_kernel(name, pass_, dtype, parallel):
    f, indexed = _formula(name, pass_, dtype), REGISTRY[name].indexed
    # the serial kernels (arrays below PARALLEL_MIN_COMPUTE) take the full
    # formula: a guarded kernel compiles both (about twice the time), for
    # microseconds there
    guard = _guard_of(name, pass_, dtype) if parallel else None
    tag = _kernel_tag(name, pass_, dtype, guard)
    if pass_ == "forward":
        return _make_unary(tag, f, indexed, parallel, guard)
    return _make_binary(tag, f, indexed, parallel, guard)


@functools.lru_cache(maxsize=None)
def _narrow_formula(name, pass_, kind):
    """The float32 formula of ``name``'s ``pass_`` between the conversions
    of fastact._prims_narrow: its array arguments uint16 bits of ``kind``
    ("float16" or "bfloat16"), its result too.  (The guarded passes' fast
    variants are left to the float kernels here: in the narrow kernels they
    gained 0-25% in the caches for twice the compile time.)"""
    import inspect

    from .._prims_narrow import converters
    f = _formula(name, pass_, np.float32)
    widen, narrow = converters(kind, quiet=False)
    arrays = 1 if pass_ == "forward" else 2
    names = [f"a{k}" for k in range(len(inspect.signature(f.py_func).parameters))]
    call = ", ".join(f"widen({a})" if k < arrays else a for k, a in enumerate(names))
    ns = {"f": f, "widen": widen, "narrow": narrow, "inline": always_inline()}
    exec(f"def narrowed({', '.join(names)}):\n    inline()\n    return narrow(f({call}))\n", ns)
    return inner_njit()(ns["narrowed"])


@functools.lru_cache(maxsize=None)
def _narrow_kernel(name, pass_, kind, parallel):
    """The kernel of ``name``'s ``pass_`` on the uint16 bits of narrow
    arrays (``kind`` "float16" or "bfloat16"): the float32 formula between
    the conversions (_narrow_formula), in the same loop skeletons, the
    blocked one (``parallel`` "stream") included: through the plain
    parallel loop a 2**24-element bfloat16 tanh ran at 1.5 ns an element
    against 0.6 with its arrays in the caches (the float32 kernels took
    the blocked loop for the same reason)."""
    fn, indexed = _narrow_formula(name, pass_, kind), REGISTRY[name].indexed
    tag = f"{name}_{pass_}_{kind}"
    if parallel == "stream":
        return _make_blocked(tag, fn, indexed, pass_ != "forward", np.uint16)
    if pass_ == "forward":
        return _make_unary(tag, fn, indexed, parallel)
    return _make_binary(tag, fn, indexed, parallel)


def _bits(a):
    return a.view(np.uint16)


# a narrow dtype's kind by its character: dtype.name cost about 1.5 us a call
# (float16 softmax on 4 x 16 elements: 6.1 us a call)
_KIND = {"e": "float16", "E": "bfloat16"}


def _prelu_partial(x):
    """The PReLU backward kernel's ``partial`` for x of shape (outer, C,
    inner): a double-double pair per channel row, or per short-row block
    ``2 L`` lanes (_prelu_kernels)."""
    outer, C, inner = x.shape
    if inner >= config.PRELU_ROW_MIN:
        return np.empty((outer * C, 2))
    L = prelu_run(C * inner)
    return np.empty((min(-(-x.size // L), config.PRELU_BLOCKS), 2 * L))


class _Narrow(Widened):
    """The Numba backend on narrow arrays: the kernels read and write their
    uint16 bits, the elementwise ones converting each element
    (_narrow_kernel), the softmax family and the gated units rows or runs
    at a time around the float32 bodies (numba_narrow), PReLU in its own
    kernels with the conversions at each element's load and store
    (_prelu_kernels' ``kind``: widening whole arrays first, as Widened does,
    ran at 4% of the copy)."""

    def prelu_forward(self, x, w, out):
        w32, kind = self._f32(w), _KIND[out.dtype.char]
        self.backend._run(x.size, parallel_min("prelu"),
                          lambda par: _prelu_kernels(np.float32, bool(par), kind)[0],
                          _bits(x), w32, _bits(out))

    def prelu_backward(self, g, x, w, gx, gw):
        outer, C, inner = x.shape
        partial, kind = _prelu_partial(x), _KIND[gx.dtype.char]
        self.backend._run(x.size, parallel_min("prelu"),
                          lambda par: _prelu_kernels(np.float32, bool(par), kind)[1],
                          _bits(g).reshape(-1), _bits(x).reshape(-1), self._f32(w),
                          _bits(gx).reshape(-1), partial, outer, C, inner)
        ow = np.empty(gw.shape, np.float32) if gw.dtype != np.float32 else gw
        prelu_channel_sums()(partial, outer, C, inner, ow)
        self._back(gw, ow)

    def elementwise_kernel(self, name, pass_, dtype, small):
        kind, U16 = np.dtype(dtype).name, np.uint16
        if small:
            k = _narrow_kernel(name, pass_, kind, False)
            if pass_ == "forward":
                def run(x, out, params):
                    k(x.view(U16), out.view(U16), params)
            else:
                def run(g, s, out, params):
                    k(g.view(U16), s.view(U16), out.view(U16), params)
            return run
        # elementwise's work with the names looked up once (dtype.name alone
        # cost about 1.5 us a call)
        threshold, run_ = parallel_min(name), self.backend._run

        def kernel(variant):
            return _narrow_kernel(name, pass_, kind, variant)

        def run(*args):
            *ins, out, params = args
            o16 = out.view(U16)
            run_(o16.shape[0], threshold, kernel, *(a.view(U16) for a in ins), o16, params,
                 big_out=o16)
        return run

    def elementwise(self, name, pass_, ins, out, params):
        self.elementwise_kernel(name, pass_, out.dtype, False)(*ins, out, params)

    def rows_forward(self, name, x, out):
        from .numba_narrow import row_kernels
        kind = _KIND[out.dtype.char]
        self.backend._run(x.size, parallel_min(name),
                          lambda par: row_kernels(name, kind, bool(par))[0], _bits(x), _bits(out))

    def rows_backward(self, name, g, y, out):
        from .numba_narrow import row_kernels
        kind = _KIND[out.dtype.char]
        self.backend._run(y.size, parallel_min(name),
                          lambda par: row_kernels(name, kind, bool(par))[1],
                          _bits(g), _bits(y), _bits(out))

    def rows_inner_forward(self, name, x, out):
        outer, n, K = x.shape
        self._rows_inner(name, 0, x.size, _bits(x).reshape(-1), _bits(out).reshape(-1),
                         outer, n, K, _KIND[out.dtype.char])

    def rows_inner_backward(self, name, g, y, out):
        outer, n, K = y.shape
        self._rows_inner(name, 1, y.size, _bits(g).reshape(-1), _bits(y).reshape(-1),
                         _bits(out).reshape(-1), outer, n, K, _KIND[out.dtype.char])

    def _rows_inner(self, name, k, size, *args):
        from .numba_narrow import inner_kernels
        *args, kind = args
        outer, K = args[-3], args[-1]
        nt = _threads.get_num_threads() if size >= parallel_min(name) else 1
        # a task's columns are float32 ones in the float32 body
        self.backend._run(size, parallel_min(name),
                          lambda par: inner_kernels(name, kind, bool(par))[k],
                          *args, inner_columns(outer, K, 4, nt))

    def gated_forward(self, name, x, out):
        from .numba_narrow import gated_kernels
        o1 = _bits(out).reshape(-1)
        self.backend._run(out.size, parallel_min(name),
                          lambda par: gated_kernels(name, _KIND[out.dtype.char], bool(par))[0],
                          _bits(x).reshape(-1), o1, o1, x.shape[2], out.size)

    def gated_backward(self, name, g, x, out):
        from .numba_narrow import gated_kernels
        self.backend._run(g.size, parallel_min(name),
                          lambda par: gated_kernels(name, _KIND[out.dtype.char], bool(par))[1],
                          _bits(g).reshape(-1), _bits(x).reshape(-1), _bits(out).reshape(-1),
                          x.shape[2], g.size)


@functools.lru_cache(maxsize=None)
def _walk_kernel(name, pass_, dtype):
    """The parallel kernel of ``name``'s ``pass_`` over strided operands
    (numba_walk.make_walk)."""
    from .numba_walk import make_walk
    return make_walk(f"{name}_{pass_}_{np.dtype(dtype).name}", _formula(name, pass_, dtype),
                     pass_ != "forward", dtype)


@functools.lru_cache(maxsize=None)
def _prelu_kernels(dtype, parallel, kind=None):
    """(forward, backward) PReLU kernels: serial (``parallel`` False),
    parallel (True), or ``"stream"`` (big outputs).  ``kind`` ("float16",
    "bfloat16"; dtype then float32, parallel not "stream"): x, g and the
    outputs are that kind's uint16 bits, each element widened as it is
    read and rounded once as it is written (fastact._prims_narrow), the
    weights float32, the weight gradient's sums as float32's."""
    fwd, bwd, wterm = _formulas("prelu", dtype)
    if kind is None:
        @inner_njit(inline="always")
        def load(v):
            return v
        store_v = load
    else:
        from .._prims_narrow import converters
        load, store_v = converters(kind, quiet=False)
    W = np.float64
    zero = W(0.0)
    # the weight gradient: every term exact (float32 products are exact in
    # float64; float64 ones carry their error), summed in double-double
    exact_products = np.dtype(dtype) == np.float64
    wide, inline = wide_vectors(), always_inline()
    U = np.uint64
    add_term = _double_double()[0]
    two_prod, inf = cpu_prims(np.float64).two_prod, W(np.inf)
    # row_span's lanes: enough independent two-sums to hide their latency
    # (4 lanes kept in registers ran at half the speed)
    lanes_n = 16

    @inner_njit()
    def term(gj, xj):
        """the weight-gradient term of an element as an exact pair (p, e)"""
        inline()
        p = wterm(W(gj), W(xj))
        if exact_products:
            e = two_prod(W(gj), W(xj))[1]
            return p, (e if p != zero and abs(e) < inf else zero)
        return p, zero

    def row_span(put):
        """Long rows: the terms of elements ``k0 .. k0+m-1`` added to the
        double-double lanes ``(hl[i], ll[i])`` (element j to lane j %
        ``lanes_n``), their gradients written by ``put``, in one pass
        vectorized across the lanes.  Inlined."""
        @inner_njit(inline="always")
        def step(g1, x1, o1, k, wc, hl, ll, i):
            gk, xk = load(g1[k]), load(x1[k])
            p, e = term(gk, xk)
            hl[i], ll[i] = add_term(hl[i], ll[i], p, e)
            put(o1, k, store_v(bwd(gk, xk, wc)))

        @inner_njit(inline="always")
        def span(g1, x1, o1, k0, m, wc, hl, ll):
            full = m - m % lanes_n
            for j0 in range(0, full, lanes_n):
                for i in range(lanes_n):        # a constant count: unrolled, vectorized
                    wide()
                    step(g1, x1, o1, U(k0) + U(j0) + U(i), wc, hl, ll, i)
            for i in range(m - full):
                step(g1, x1, o1, U(k0) + U(full) + U(i), wc, hl, ll, i)
        return span

    rows_store, rows_nt = row_span(_store(False)), row_span(_store(True))

    def lanes(put):
        """Short rows: elements ``base + j``, ``j0 <= j < j1``, of a run:
        each term added to its own double-double lane ``(p1[pb + j], p1[pb
        + L + j])``, each gradient (against the spread weight ``ws[j]``)
        written by ``put``.  Inlined by Numba."""
        @inner_njit(inline="always")
        def run(g1, x1, o1, base, j0, j1, ws, p1, pb, L):
            for i in range(j1 - j0):
                wide()
                j = U(j0) + U(i)
                k, q = U(base) + j, pb + j
                gk, xk = load(g1[k]), load(x1[k])
                p, e = term(gk, xk)
                p1[q], p1[q + U(L)] = add_term(p1[q], p1[q + U(L)], p, e)
                put(o1, k, store_v(bwd(gk, xk, ws[j])))
        return run

    lanes_store, lanes_nt = lanes(_store(False)), lanes(_store(True))

    @inner_njit(inline="always")
    def short_runs(w, C, inner, n, partial):
        """Short rows' backward: (blocks, run length L, the weights spread
        to L, runs, partial flat): a block's lanes are its row of partial,
        the L high parts, then the L low ones"""
        nblocks, L2 = partial.shape
        L = L2 // 2
        return nblocks, L, spread(w, C, inner, L), (n + L - 1) // L, partial.reshape(nblocks * L2)

    @inner_njit(inline="always")
    def clear(a, start, m):
        for j in range(m):
            a[start + U(j)] = zero

    run_len = inner_njit()(prelu_run)

    @inner_njit()
    def spread(w, C, inner, L):
        """the weights repeated over L elements (whole samples of C * inner):
        ws[q] = w[(q // inner) % C]"""
        ws = np.zeros(L, w.dtype)
        for s in range(0, L if C * inner > 0 else 0, max(C * inner, 1)):
            for c in range(C):
                for j in range(inner):
                    ws[s + c * inner + j] = w[c]
        return ws

    # Two shapes of work: long channel rows (inner >= ROW_MIN: one row per
    # task) or short ones, e.g. (N, C) activations (a block of `outer` per
    # task, vectorized across channels, the weight gradient summed per block).
    row_min = config.PRELU_ROW_MIN

    @inner_njit()
    def fwd_units(x, w, out):
        outer, C, inner = x.shape
        if inner >= row_min:
            return outer * C, max(1, _CHUNK_MIN // inner)
        L = run_len(C * inner)
        return (outer * C * inner + L - 1) // L, max(1, _CHUNK_MIN // L)

    # In place (out is x; gx is g or x), the loops are compiled for that
    # case too, the flat input passed as the flat output, as the
    # elementwise kernels' (_same_address): in place, the float32 forward
    # ran at 0.37 ns an element against 0.20 into another array.
    # Each body is made for a ``case``, as _row_kernels' (-1: told apart at
    # run time, the serial kernels; else the pool's case).
    same = _same_address()

    def forward_of(case):
        @inner_njit()
        def forward(lo, hi, x, w, out):
            """channel rows (or short rows' runs) lo .. hi - 1"""
            inline()
            n = x.size
            x1 = x.reshape(n)
            if case == 1 or (case < 0 and same(out, x)):
                forward_flat(lo, hi, x1, w, x1, x.shape)
            else:
                forward_flat(lo, hi, x1, w, out.reshape(n), x.shape)
        return forward

    case_of = _case_of()

    @inner_njit()
    def fwd_alias(x, w, out):
        return case_of(out, x, x)

    @inner_njit()
    def bwd_alias(g1, x1, w, o1, partial, outer, C, inner):
        return case_of(o1, g1, x1)

    @inner_njit(inline="always")
    def forward_flat(lo, hi, x1, w, o1, shape):
        outer, C, inner = shape
        if inner >= row_min:
            # channel rows, addressed by offset
            for r in range(lo, hi):
                wc, base = w[r % C], r * inner
                for j in range(inner):
                    wide()
                    k = U(base) + U(j)
                    o1[k] = store_v(fwd(load(x1[k]), wc))
        else:
            # short rows: the flat arrays (addressed by offset: no slices in
            # the loop) in runs of L elements, whole samples, each one
            # vectorized loop against the weights spread to that length
            n = outer * C * inner
            L = run_len(C * inner)
            ws = spread(w, C, inner, L)
            for r in range(lo, hi):
                base = r * L
                for j in range(min(L, n - base)):
                    wide()
                    k = U(base) + U(j)
                    o1[k] = store_v(fwd(load(x1[k]), ws[j]))

    tag = f"prelu_{kind or np.dtype(dtype).name}"
    # The backward, one skeleton for both kinds of output.  Long rows
    # (inner >= ROW_MIN): one channel row a unit, summed while its
    # gradients are written, in one pass (an element is read before it is
    # written: gx may be g or x); partial is (outer * C, 2), each row's
    # double-double pair.  Short rows (e.g. (N, C) activations): blocks of
    # the forward's runs of L elements (whole samples), each run one
    # vectorized loop against the spread weights, every position's terms
    # summed down the block in its own double-double lane: partial is
    # (blocks, 2 L), the caller adds it up by channel (prelu_channel_sums:
    # the correctly rounded sum, whatever the blocks or threads).  The flat arrays
    # are addressed by offset, no row slices (each costs atomic reference
    # counts on counters both threads share).
    # ``nt`` (big outputs): a row's (or run's) gradients between its first
    # and last 64-byte boundaries are streamed as they are computed
    # (store_nt), the head and the tail stored as usual, the sums running on
    # through all three, and each row or block fences its streamed stores;
    # else the whole row or run is stored as usual (an empty streamed part,
    # no fence).
    address, size, to_boundary = array_address(), np.dtype(dtype).itemsize, _to_boundary()
    line = 64 // np.dtype(dtype).itemsize

    @inner_njit()
    def bwd_units(g1, x1, w, o1, partial, outer, C, inner):
        if inner < row_min:
            return partial.shape[0], 1
        return outer * C, max(1, _CHUNK_MIN // inner)

    def backward_kernel(nt):
        if nt:
            rows_body, lanes_body, fence = rows_nt, lanes_nt, streaming()[1]

            @inner_njit(inline="always")
            def split(a0, base, m):
                """(head, body): elements base + [head, body) of the output
                at a0 lie between its first and last 64-byte boundaries in
                [base, base + m) (whole lines: streamed)"""
                head = to_boundary(a0 + base * size, m, size)
                head = m if head < 0 else head
                return head, head + (m - head) // line * line
        else:
            rows_body, lanes_body = rows_store, lanes_store

            @inner_njit(inline="always")
            def fence():
                pass

            @inner_njit(inline="always")
            def split(a0, base, m):
                return m, m

        def backward(lo, hi, g1, x1, w, o1, partial, outer, C, inner):
            """blocks (short rows) or channel rows lo .. hi - 1 of the flat
            arrays (views made here, by reshape, kept reference counts in
            the row loop, where the arguments do not)"""
            inline()
            n = outer * C * inner
            a0 = address(o1)
            if inner < row_min:
                nblocks, L, ws, nruns, p1 = short_runs(w, C, inner, n, partial)
                for b in range(lo, hi):
                    pb = U(b * 2 * L)
                    clear(p1, pb, 2 * L)
                    for r in range(b * nruns // nblocks, (b + 1) * nruns // nblocks):
                        base = r * L
                        m = min(L, n - base)
                        head, body = split(a0, base, m)
                        lanes_store(g1, x1, o1, base, 0, head, ws, p1, pb, L)
                        lanes_body(g1, x1, o1, base, head, body, ws, p1, pb, L)
                        lanes_store(g1, x1, o1, base, body, m, ws, p1, pb, L)
                    fence()
                return
            hl, ll = np.empty(lanes_n), np.empty(lanes_n)
            for r in range(lo, hi):
                wc, base = w[r % C], r * inner
                head, body = split(a0, base, inner)
                clear(hl, 0, lanes_n)
                clear(ll, 0, lanes_n)
                rows_store(g1, x1, o1, base, head, wc, hl, ll)
                rows_body(g1, x1, o1, base + head, body - head, wc, hl, ll)
                rows_store(g1, x1, o1, base + body, inner - body, wc, hl, ll)
                acc, comp = zero, zero
                for i in range(lanes_n):
                    acc, comp = add_term(acc, comp, hl[i], ll[i])
                partial[r, 0], partial[r, 1] = acc, comp
                fence()

        kind = "stream" if nt else ("par" if parallel else "ser")
        # no reassociation: it would undo the two-sums
        flat = inner_njit(inline="always")(backward)

        def backward_of(case):
            @inner_njit()
            def dispatch(lo, hi, g1, x1, w, o1, partial, outer, C, inner):
                if case == 1 or (case < 0 and same(o1, g1)):
                    flat(lo, hi, g1, x1, w, g1, partial, outer, C, inner)
                elif case == 2 or (case < 0 and same(o1, x1)):
                    flat(lo, hi, g1, x1, w, x1, partial, outer, C, inner)
                else:
                    flat(lo, hi, g1, x1, w, o1, partial, outer, C, inner)
            return dispatch
        if parallel:
            return _pooled(f"{tag}_bwd_{kind}", _cases(backward_of), bwd_units, alias=bwd_alias)
        return _serial(f"{tag}_bwd", backward_of(-1), bwd_units)

    if parallel != "stream":
        if parallel:
            return (_pooled(tag + "_fwd", _cases(forward_of), fwd_units, alias=fwd_alias),
                    backward_kernel(False))
        return _serial(tag + "_fwd", forward_of(-1), fwd_units), backward_kernel(False)

    # Streamed forward (big outputs): the flat output taken in the
    # elementwise kernels' blocks, which start at 64-byte boundaries of the
    # output (no line is written partly by streaming stores and partly by
    # ordinary ones, as blocks cut at row starts were: rows of 4096 float32
    # ran at 83-85% of the copy); a block is computed into a buffer (one a
    # chunk), run by run (a channel row, or short rows' runs of whole
    # samples against the spread weights), and streamed out.
    stream, fence = streaming()[:2]
    T = np.dtype(dtype).type
    block, blocks, span = _stream_blocks(dtype)

    @inner_njit()
    def stream_units(x, w, out):
        return blocks(out.reshape(out.size), 0, 1)[2], 16

    @inner_njit()
    def forward_stream(lo, hi, x, w, out):
        inline()
        outer, C, inner = x.shape
        n = outer * C * inner
        # flat views made once, addressed by offset (no slices in the loop:
        # each costs atomic reference counts both threads share)
        x1, o1 = x.reshape(n), out.reshape(n)
        short = inner < row_min
        L = run_len(C * inner) if short else inner
        ws = spread(w, C, inner, L if short else 0)
        buf = np.empty(block, T)
        first = blocks(o1, 0, 1)[0]
        for blk in range(lo, hi):
            b0, b1 = span(blk, first, n)
            s = b0
            while s < b1:
                r = s // L
                e = min(b1, (r + 1) * L)
                if short:
                    off = s - r * L
                    for j in range(e - s):
                        wide()
                        buf[U(s - b0) + U(j)] = fwd(x1[U(s) + U(j)], ws[U(off) + U(j)])
                else:
                    wc = w[r % C]
                    for j in range(e - s):
                        wide()
                        buf[U(s - b0) + U(j)] = fwd(x1[U(s) + U(j)], wc)
                s = e
            stream(o1, b0, buf, b1 - b0)
        fence()

    return _pooled(tag + "_fwd_stream", forward_stream, stream_units), backward_kernel(True)


@functools.lru_cache(maxsize=None)
def prelu_channel_sums():
    """``sums(partial, outer, C, inner, gw)``: the PReLU backward kernel's
    double-double partial sums (``partial``: ``(outer * C, 2)`` channel
    rows' pairs, or ``(blocks, 2 L)`` short rows' lanes, ``L`` whole
    samples, high parts then low ones) added up by channel, each rounded
    once into ``gw`` (the correctly rounded sum, but where it lies within
    about ``2**-100`` of the channel's absolute sum from a rounding
    boundary: the same bits whatever the split)."""
    row_min = config.PRELU_ROW_MIN
    add_term, round_pair = _double_double()[:2]

    def sums(partial, outer, C, inner, gw):
        hi, lo = np.zeros(C), np.zeros(C)
        if inner >= row_min:
            for o in range(outer):
                for c in range(C):
                    r = o * C + c
                    hi[c], lo[c] = add_term(hi[c], lo[c], partial[r, 0], partial[r, 1])
        elif inner > 0:
            L = partial.shape[1] // 2
            for b in range(partial.shape[0]):
                for q in range(L):
                    c = (q // inner) % C
                    hi[c], lo[c] = add_term(hi[c], lo[c], partial[b, q], partial[b, L + q])
        for c in range(C):
            s, odd = round_pair(hi[c], lo[c])
            gw[c] = s if gw.itemsize == 8 else odd
    return kernel_njit("prelu_sums", nogil=True)(sums)


@functools.lru_cache(maxsize=None)
def _row_kernels(name, dtype, parallel, kind=None):
    """The softmax family's row skeletons, specialized for the registry
    entry ``name`` (its ``row``: softmin takes the rows of ``-x``,
    log_softmax writes log-probabilities): max shift, exp, sum, scale (or
    log); sums in float64.
    ``parallel``: False (serial), True (the pool, rows in chunks) or
    ``"stream"`` (the backward only: rows streamed out of a row buffer);
    ``"bodies"``: the forward's range body (in place) and unit count.
    ``kind`` ("float16" or "bfloat16"; ``dtype`` float32, ``parallel``
    False or True): ``(None, backward)`` on the uint16 bits of that kind,
    each element widened as it is read and rounded once as it is written,
    the arithmetic float32's (its two passes over the rows read the narrow
    arrays themselves: through float32 row buffers, widened first and
    narrowed last, the bfloat16 backward ran at 0.61-0.73x PyTorch's speed).

    The sums are the only code compiled with reassociation allowed, so that
    LLVM can keep several vector accumulators (a pairwise-like sum, more
    accurate than one running sum); the max is an integer max over the
    float bits.  A NaN anywhere reaches the sum through ``exp(x - m)`` and
    turns the whole row into NaN, as it should.
    """
    T = np.dtype(dtype).type
    W = np.float64
    prims = cpu_prims(dtype)
    exp_diff, exp = prims.exp_diff, prims.exp
    row = REGISTRY[name].row
    negate, log = row.negate, row.log
    # the max of -x is minus the min of x; the rows' elements enter as sg * x
    sg = T(-1.0) if negate else T(1.0)
    if negate:
        row_min = prims.row_min

        @inner_njit()
        def row_max(x1, base, n):
            return -row_min(x1, base, n)
    else:
        row_max = prims.row_max
    tag = f"{name}_{kind or np.dtype(dtype).name}"
    zero, one = W(0.0), W(1.0)
    wide = wide_vectors()
    if kind is None:
        inline_ = always_inline()

        @inner_njit()
        def ld(v):
            inline_()
            return v
        st = ld
    else:
        from .._prims_narrow import converters
        ld, st = converters(kind, quiet=False)

    U = np.uint64

    # Rows are addressed by offset in flat views made once: a row slice in a
    # parallel loop costs atomic reference counts on counters both threads
    # share.
    @inner_njit(fastmath={"reassoc"})
    def wide_sum(o1, base, n):
        s = zero
        for j in range(n):
            wide()
            s += W(o1[U(base) + U(j)])
        return s

    @inner_njit(fastmath={"contract"})
    def scale(o1, base, n, inv):
        # o1 * inv with inv split into two values of the data's width, so the
        # loop stays in that width: hi*r is exact inside the fused multiply-add
        hi = T(inv)
        lo = T(inv - W(hi))
        for j in range(n):
            wide()
            k = U(base) + U(j)
            o1[k] = o1[k] * hi + o1[k] * lo

    @inner_njit(fastmath={"reassoc", "contract"})
    def dot_run(g1, y1, base, n):
        """sum g1[base + j] * y1[base + j], j < n, in float64 (flat arrays),
        in vector partial sums; for log_softmax sum g1[base + j] (its
        backward's reduction)"""
        s = zero
        for j in range(n):
            wide()
            k = U(base) + U(j)
            s += W(ld(g1[k])) if log else W(ld(g1[k])) * W(ld(y1[k]))
        return s

    @inner_njit()
    def grad(gk, yk, d):
        """the input gradient of one element, d the row's reduction"""
        if log:
            return gk - exp(yk) * d
        return yk * (d - gk) if negate else yk * (gk - d)

    if np.dtype(dtype) == np.float64:
        # float64 rows: runs of SOFTMAX_DOT_RUN products (dot_run, compiled
        # apart with reassociation: the compensation below must not be
        # reassociated away), the run sums added with Kahan's compensation
        # (dropped once the sum is infinite), in two chains, even and odd
        # runs, so that their dependent additions overlap
        run, kahan = config.SOFTMAX_DOT_RUN, _kahan()

        @inner_njit()
        def dot_at(g1, y1, base, n):
            a0 = c0 = a1 = c1 = zero
            for lo in range(0, n, 2 * run):
                a0, c0 = kahan(a0, c0, dot_run(g1, y1, base + lo, min(run, n - lo)))
                if lo + run < n:
                    a1, c1 = kahan(a1, c1, dot_run(g1, y1, base + lo + run,
                                                   min(run, n - lo - run)))
            a0, c0 = kahan(a0, c0, a1)
            a0, c0 = kahan(a0, c0, -c1)
            return a0 - c0
    else:
        dot_at = dot_run            # float32 products are exact in float64

    # The parallel forward (big arrays, bound by its exponentials) asks, while
    # it works on a row, for the next row's lines: x's to read, out's to
    # write (see _make_blocked).  Spread over the row in chunks of `block`.
    pf_read, pf_write = prefetchers()
    line = 64 // np.dtype(dtype).itemsize
    block = _block_elems(dtype)

    @inner_njit(inline="always")
    def exp_block(x1, o1, base, lo, hi, m, nxt):
        """o1 = exp(x1 - m) over elements lo .. hi - 1 of the row at
        ``base``, in the data's own width; the same lines of the row at
        ``nxt`` asked for meanwhile (parallel kernels).  Inlined by Numba:
        left a call, the float64 forward ran 14% slower."""
        if parallel:
            for q in range(lo, hi, line):
                pf_read(x1, nxt + q)
                pf_write(o1, nxt + q)
        for j in range(hi - lo):
            wide()
            k = U(base + lo) + U(j)
            o1[k] = exp_diff(sg * x1[k], m)

    @inner_njit(inline="always")
    def exp_row(x1, o1, base, n, m, nxt):
        """exp_block over the row at ``base``, block by block"""
        for lo in range(0, n, block):
            exp_block(x1, o1, base, lo, min(lo + block, n), m, nxt)

    compensated = np.dtype(dtype) == np.float64
    lanes = config.LOG_SOFTMAX_LANES
    if compensated and block % lanes:
        # exp_row_sum's blocks must be whole runs of lanes (row_sum's bits)
        raise ValueError(f"config.STREAM_BLOCK_BYTES gives float64 blocks of {block} "
                         f"elements, not a multiple of LOG_SOFTMAX_LANES = {lanes}")
    t_one, t_zero = T(1.0), T(0.0)

    @inner_njit(fastmath={"reassoc"})
    def exp_terms(x1, k0, n, m, buf):
        """buf[:n] = exp(x - m) of the ``n`` elements from ``k0``, 0 where it
        is 1; returns the count of those 1s (exact: n <= block).  In the
        data's width (float32: 16 lanes a vector, where the float64 sum
        beside it made 8); the exponentials are exp_diff's own, compiled
        apart: the reassociation allowed here (for the count) does not
        reach their range reduction, which LLVM inlines with its flags."""
        c = t_zero
        for j in range(n):
            wide()
            e = exp_diff(sg * x1[U(k0) + U(j)], m)
            # e - 1 where e is 1 is 0, exactly (a select there kept the
            # loop scalar)
            ones = t_one if e == t_one else t_zero
            c += ones
            buf[j] = e - ones
        return W(c)

    add_pair, _, add_exact = _double_double()

    @inner_njit()
    def lane_sums(buf, k0, n, acc, comp):
        """buf[k0:k0 + n] added to ``lanes`` double-double sums (acc, comp),
        element j to lane j % lanes: the lanes are the vector, and 4
        vectors' latencies overlap (runs of 8 terms compensated one after
        another left the loop scalar).  Kahan's compensation, cheaper, left
        the sum up to 2 ULP off: Dask's two-pass plan missed the single call
        by as much."""
        # four terms a lane between its load and store (the same order of
        # additions): a lane stored by one pass and loaded back by the next
        # waited on the store (2.2 ms of the 17 of float64 softmax at 2**24)
        q = 4 * lanes
        full = n - n % q
        for i in range(0, full, q):
            for k in range(lanes):
                wide()
                b = U(k0) + U(i) + U(k)
                a, c = add_exact(acc[k], comp[k], buf[b])
                a, c = add_exact(a, c, buf[b + U(lanes)])
                a, c = add_exact(a, c, buf[b + U(2 * lanes)])
                acc[k], comp[k] = add_exact(a, c, buf[b + U(3 * lanes)])
        for i in range(full, n, lanes):
            for k in range(min(lanes, n - i)):
                wide()
                acc[k], comp[k] = add_exact(acc[k], comp[k], buf[U(k0) + U(i) + U(k)])

    @inner_njit()
    def lanes_total(acc, comp):
        """the lanes' pairs added up in double-double and rounded once: the
        row's sum correctly rounded but for about n eps**2 of its terms
        (C's rows_fwd alike), so that Dask's two-pass plan, summing the same
        exponentials, meets it to the last bit nearly always"""
        a = zero
        ca = zero
        for k in range(lanes):
            a, ca = add_pair(a, ca, acc[k], comp[k])
        return a + ca if abs(a) < np.inf else a

    @inner_njit()
    def row_sum(o1, base, n, acc, comp):
        """the float64 sum of the row at ``base``: float32 rows in vector
        partial sums; float64 rows by lane_sums (plain partial sums missed
        by 26 ULP at rows of 20000, N(0, 10**2))"""
        if not compensated:
            return wide_sum(o1, base, n)
        for k in range(lanes):
            acc[k] = zero
            comp[k] = zero
        lane_sums(o1, base, n, acc, comp)
        return lanes_total(acc, comp)

    @inner_njit(inline="always")
    def exp_row_sum(x1, o1, base, n, m, nxt, acc, comp):
        """float64 rows: exp_row and row_sum in one pass, block by block
        (as C's rows_fwd), each block summed while it is in L1 (the row's
        own pass read it back from L2: 1 ms of 15 at 2**24); element j to
        lane j % lanes as row_sum's (blocks are whole runs of lanes): the
        same bits"""
        for k in range(lanes):
            acc[k] = zero
            comp[k] = zero
        for lo in range(0, n, block):
            hi = min(lo + block, n)
            exp_block(x1, o1, base, lo, hi, m, nxt)
            lane_sums(o1, base + lo, hi - lo, acc, comp)
        return lanes_total(acc, comp)

    @inner_njit()
    def exp_rest(x1, buf, acc, comp, base, n, m, nxt):
        """(count of exp(x - m) == 1, sum of the others) over the row at
        ``base``, block by block through ``buf``, nothing stored in the
        output (log_softmax's may be its input): float32 rows in float64
        vector partial sums; float64 rows by lane_sums (the max's output
        is -log1p(rest): rest's relative error shows whole, and a plain
        float64 sum of 4096 terms missed by 1700 ULP).  The next row's
        lines asked for meanwhile."""
        c = zero
        rest = zero
        if compensated:
            for k in range(lanes):
                acc[k] = zero
                comp[k] = zero
        for lo in range(0, n, block):
            hi = min(lo + block, n)
            if parallel:
                for q in range(lo, hi, line):
                    pf_read(x1, nxt + q)
            c += exp_terms(x1, base + lo, hi - lo, m, buf)
            if compensated:
                lane_sums(buf, 0, hi - lo, acc, comp)
            else:
                rest += wide_sum(buf, 0, hi - lo)
        if compensated:
            rest = lanes_total(acc, comp)
        return c, rest

    @inner_njit(inline="always")
    def log_row(x1, o1, base, n, m, lse):
        """o1 = (x - m) - lse over the row: both terms <= 0, in float64"""
        for j in range(n):
            wide()
            k = U(base) + U(j)
            o1[k] = T((W(sg * x1[k]) - W(m)) - lse)

    inline = always_inline()

    @inner_njit()
    def fwd_units(x, out):
        return x.shape[0], max(1, _CHUNK_MIN // max(x.shape[1], 1))

    @inner_njit()
    def bwd_units(g, y, out):
        return y.shape[0], max(1, _CHUNK_MIN // max(y.shape[1], 1))

    # In place (out is x, or g or y): the rows' loops are compiled for that
    # case too, the flat input passed as the flat output (a reshaped array's
    # data may be a copy's, as far as LLVM knows: its loops over x1 and o1
    # were vectorized behind a check that they do not overlap, whose scalar
    # fallback in-place calls took: softmax forward 3.1-3.4 ns an element
    # against 0.45-0.57).  The helpers that read one array and write the
    # other are inlined by Numba, so that LLVM sees the one array.  Each
    # body is made for a ``case`` (_alias_cases): -1 tells the cases apart
    # at run time (the serial kernels), else it is the pool's case, a
    # constant that Numba prunes the other branches by.
    same = _same_address()

    def forward_of(case):
        @inner_njit()
        def forward(lo, hi, x, out):
            """rows lo .. hi - 1"""
            inline()
            rows, n = x.shape
            x1 = x.reshape(rows * n)
            # log_softmax's float64 rows' terms, one a chunk (and the lanes
            # of float64 sums; float32's: unused)
            buf = np.empty(block if log else 1, T)
            acc = np.empty(lanes if compensated else 1, W)
            comp = np.empty_like(acc)
            if case == 1 or (case < 0 and same(out, x)):
                row_loops(lo, hi, x1, x1, n, buf, acc, comp)
            else:
                row_loops(lo, hi, x1, out.reshape(rows * n), n, buf, acc, comp)
        return forward

    @inner_njit(inline="always")
    def forward_rows(lo, hi, x1, o1, n, buf, acc, comp):
        for r in range(lo, hi):
            base = r * n
            m = row_max(x1, base, n)
            nxt = min(r + 1, hi - 1) * n
            if compensated:
                s = exp_row_sum(x1, o1, base, n, m, nxt, acc, comp)
            else:
                exp_row(x1, o1, base, n, m, nxt)
                s = row_sum(o1, base, n, acc, comp)
            scale(o1, base, n, W(1.0) / s)

    @inner_njit(inline="always")
    def log_rows(lo, hi, x1, o1, n, buf, acc, comp):
        # the exponentials summed as they are computed (as the C backend's
        # rows_fwd), the output written once
        for r in range(lo, hi):
            base, nxt = r * n, min(r + 1, hi - 1) * n
            m = row_max(x1, base, n)
            # log of the sum as log1p of its part beside the max's 1s
            # (a sum near 1 rounds that part away: row [0, -30])
            c, rest = exp_rest(x1, buf, acc, comp, base, n, m, nxt)
            log_row(x1, o1, base, n, m, math.log1p((c - one) + rest))

    def backward_of(case):
        @inner_njit()
        def backward(lo, hi, g, y, out):
            inline()
            rows, n = y.shape
            # flat views made once, rows addressed by offset (as backward_stream)
            g1, y1 = g.reshape(rows * n), y.reshape(rows * n)
            if case == 1 or (case < 0 and same(out, g)):
                backward_rows(lo, hi, g1, y1, g1, n)
            elif case == 2 or (case < 0 and same(out, y)):
                backward_rows(lo, hi, g1, y1, y1, n)
            else:
                backward_rows(lo, hi, g1, y1, out.reshape(rows * n), n)
        return backward

    case_of = _case_of()

    @inner_njit()
    def fwd_alias(x, out):
        return case_of(out, x, x)

    @inner_njit()
    def bwd_alias(g, y, out):
        return case_of(out, g, y)

    @inner_njit(inline="always")
    def backward_rows(lo, hi, g1, y1, o1, n):
        for r in range(lo, hi):
            base = r * n
            # the dot product in float64, the rest in the data's width: the
            # rounding of d is within the bound 4 eps |y| (|g| + sum |g y|)
            d = T(dot_at(g1, y1, base, n))
            for j in range(n):
                wide()
                k = U(base) + U(j)
                o1[k] = st(grad(ld(g1[k]), ld(y1[k]), d))

    if kind is not None:
        if parallel:
            return None, _pooled(tag + "_bwd", _cases(backward_of), bwd_units, alias=bwd_alias)
        return None, _serial(tag + "_bwd", backward_of(-1), bwd_units)
    row_loops = log_rows if log else forward_rows
    if parallel == "bodies":       # for the narrow kernels (numba_narrow): in place
        return forward_of(1), fwd_units
    if not parallel:
        return (_serial(tag + "_fwd", forward_of(-1), fwd_units),
                _serial(tag + "_bwd", backward_of(-1), bwd_units))
    if parallel != "stream":
        return (_pooled(tag + "_fwd", _cases(forward_of), fwd_units, alias=fwd_alias),
                _pooled(tag + "_bwd", _cases(backward_of), bwd_units, alias=bwd_alias))

    # Streaming variant (outputs too big for the caches): each row computed
    # block by block into a buffer (one a chunk) and streamed out.  A row's
    # blocks start at 64-byte boundaries of the output (a head block runs up
    # to the first), so no line is written partly streamed and partly not;
    # the arrays are flat views made once, addressed by offset (row slices
    # in the loop cost atomic reference counts both threads share).
    stream, fence = streaming()[:2]
    address, size, to_boundary = array_address(), np.dtype(dtype).itemsize, _to_boundary()

    @inner_njit()
    def backward_stream(lo, hi, g, y, out):
        inline()
        rows, n = y.shape
        total = rows * n
        g1, y1, o1 = g.reshape(total), y.reshape(total), out.reshape(total)
        a0 = address(o1)
        buf = np.empty(block, T)
        for r in range(lo, hi):
            base, nxt = r * n, min(r + 1, hi - 1) * n
            d = T(dot_at(g1, y1, base, n))
            head = max(0, to_boundary(a0 + base * size, n, size))
            b0 = 0
            while b0 < n:
                b1 = head if b0 == 0 and head > 0 else min(n, b0 + block)
                # while the next row's lines are asked for
                for q in range(b0, b1, line):
                    pf_read(g1, nxt + q)
                    pf_read(y1, nxt + q)
                for j in range(b1 - b0):
                    wide()
                    k = U(base + b0) + U(j)
                    buf[j] = grad(g1[k], y1[k], d)
                stream(o1, base + b0, buf, b1 - b0)
                b0 = b1
        fence()

    # the forward is not streamed: its exponentials, not memory, bound it
    return None, _pooled(tag + "_bwd_stream", backward_stream, bwd_units)



# --- the backend ------------------------------------------------------------------

# --- the softmax family along an inner axis ------------------------------------------

@functools.lru_cache(maxsize=None)
def _row_inner_kernels(name, dtype, parallel):
    """``forward(x1, o1, outer, n, K, cols)`` and ``backward(g1, y1, o1,
    outer, n, K, cols)`` of the softmax family along the middle axis of flat
    ``(outer, n, K)`` views, with no transpose: each task takes ``cols``
    columns of one outer index (``fastact._backends.inner_columns``) and
    walks its ``n`` rows three times (max, exp and sum, scale; the backward
    twice), vectorized across the columns, whose per-column max and sums sit
    in buffers allocated once a chunk of tasks (float32 data: sums in
    float64; float64 data: Kahan's compensation per column) (PyTorch's
    inner-size path).  log_softmax's second walk counts the exponentials
    equal to 1 and sums the others (nothing stored: the output may be the
    input), its third writes ``(x - m) - log1p((ones - 1) + rest)`` in
    float64, as the row kernels do; its backward is ``g - exp(y) sum(g)``.
    Parallel kernels take the thread count first (_pooled)."""
    T = np.dtype(dtype).type
    W = np.float64
    f32 = T is np.float32
    prims = cpu_prims(dtype)
    exp_diff, exp = prims.exp_diff, prims.exp
    row = REGISTRY[name].row
    negate, log = row.negate, row.log
    t_one = T(1.0)
    sg = T(-1.0) if negate else T(1.0)
    wide = wide_vectors()
    inline = always_inline()
    U = np.uint64
    zero, one = W(0.0), W(1.0)
    tag = f"{name}_{np.dtype(dtype).name}"

    @inner_njit()
    def col_max(x1, m, base, n, K, w):
        inline()
        for c in range(w):
            wide()
            m[c] = sg * x1[U(base) + U(c)]
        for j in range(1, n):
            r = U(base) + U(j) * U(K)
            for c in range(w):
                wide()
                v = sg * x1[r + U(c)]
                m[c] = v if v > m[c] else m[c]

    kahan = _kahan()

    @inner_njit()
    def add(s, e2, c, v):
        """s[c] += v in float64; float64 data: Kahan's (_kahan: the
        compensation dropped once the sum is infinite), e2 the compensation"""
        inline()
        if f32:
            s[c] += v
        else:
            s[c], e2[c] = kahan(s[c], e2[c], v)

    add_exact = _double_double()[2]

    @inner_njit()
    def add_dd(s, e2, c, v):
        """s[c] += v in float64; float64 data: in double-double (e2 the low
        part), as the row kernels' lane sums, so that a column's sum is
        correctly rounded but for about n eps**2 of its terms"""
        inline()
        if f32:
            s[c] += v
        else:
            s[c], e2[c] = add_exact(s[c], e2[c], v)

    @inner_njit()
    def exp_sum(x1, o1, m, s, e2, ones, base, n, K, w):
        """o1 = exp(sg x - m) down the columns, their sums in s; log_softmax:
        nothing stored (its output may be its input), the exponentials
        equal to 1 counted in ones, the others summed"""
        inline()
        for c in range(w):
            s[c] = zero
            e2[c] = zero
            if log:
                ones[c] = zero
        for j in range(n):
            r = U(base) + U(j) * U(K)
            for c in range(w):
                wide()
                e = exp_diff(sg * x1[r + U(c)], m[c])
                if log:
                    is_one = e == t_one
                    ones[c] += one if is_one else zero
                    add_dd(s, e2, c, zero if is_one else W(e))
                else:
                    o1[r + U(c)] = e
                    add_dd(s, e2, c, W(e))
        if not f32:
            for c in range(w):
                s[c] = s[c] + e2[c]     # the pair rounded once

    @inner_njit()
    def scale(o1, s, base, n, K, w):
        inline()
        for c in range(w):
            s[c] = one / s[c]
        for j in range(n):
            r = U(base) + U(j) * U(K)
            for c in range(w):
                wide()
                o1[r + U(c)] = T(W(o1[r + U(c)]) * s[c])

    @inner_njit()
    def log_write(x1, o1, m, s, e2, ones, base, n, K, w):
        inline()
        for c in range(w):
            s[c] = math.log1p((ones[c] - one) + s[c])
        for j in range(n):
            r = U(base) + U(j) * U(K)
            for c in range(w):
                wide()
                k = r + U(c)
                o1[k] = T((W(sg * x1[k]) - W(m[c])) - s[c])

    @inner_njit()
    def col_dot(g1, y1, s, e2, base, n, K, w):
        """d per column: sum g y (softmax, softmin) or sum g (log_softmax),
        in float64 (float64 data: Kahan)"""
        inline()
        for c in range(w):
            s[c] = zero
            e2[c] = zero
        for j in range(n):
            r = U(base) + U(j) * U(K)
            for c in range(w):
                wide()
                k = r + U(c)
                if f32:
                    add(s, e2, c, W(g1[k]) if log else W(g1[k]) * W(y1[k]))
                else:
                    add(s, e2, c, g1[k] if log else g1[k] * y1[k])

    @inner_njit()
    def col_grad(g1, y1, o1, s, base, n, K, w):
        """softmax y (g - d), softmin y (d - g), log_softmax g - exp(y) d"""
        inline()
        for j in range(n):
            r = U(base) + U(j) * U(K)
            for c in range(w):
                wide()
                k = r + U(c)
                d = T(s[c])
                if log:
                    o1[k] = g1[k] - exp(y1[k]) * d
                else:
                    o1[k] = y1[k] * (d - g1[k]) if negate else y1[k] * (g1[k] - d)

    @inner_njit()
    def units(a1, b1, *rest):
        outer, n, K, cols = rest[-4:]
        return outer * ((K + cols - 1) // cols), max(1, _CHUNK_MIN // max(n * cols, 1))

    @inner_njit()
    def forward(lo, hi, x1, o1, outer, n, K, cols):
        """tasks lo .. hi - 1: ``cols`` columns of one outer index each"""
        inline()
        nc = (K + cols - 1) // cols
        m = np.empty(cols, T)
        s = np.empty(cols, W)
        e2 = np.empty(cols, W)
        ones = np.empty(cols if log else 1, W)
        for task in range(lo, hi):
            o = task // nc
            c0 = (task - o * nc) * cols
            w = min(cols, K - c0)
            base = o * n * K + c0
            col_max(x1, m, base, n, K, w)
            exp_sum(x1, o1, m, s, e2, ones, base, n, K, w)
            if log:
                log_write(x1, o1, m, s, e2, ones, base, n, K, w)
            else:
                scale(o1, s, base, n, K, w)

    @inner_njit()
    def backward(lo, hi, g1, y1, o1, outer, n, K, cols):
        inline()
        nc = (K + cols - 1) // cols
        s = np.empty(cols, W)
        e2 = np.empty(cols, W)
        for task in range(lo, hi):
            o = task // nc
            c0 = (task - o * nc) * cols
            w = min(cols, K - c0)
            base = o * n * K + c0
            col_dot(g1, y1, s, e2, base, n, K, w)
            col_grad(g1, y1, o1, s, base, n, K, w)

    if parallel == "bodies":       # for the narrow kernels (numba_narrow)
        return forward, backward, units
    make = _pooled if parallel else _serial
    return make(f"inner_fwd_{tag}", forward, units), make(f"inner_bwd_{tag}", backward, units)


# --- the gated family --------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _gate_formulas(name, dtype):
    """A gated entry's ``forward(a, b)`` and ``backward(g, a, b) -> (da,
    db)``, composed by the registry's ``build`` from its act's compiled
    formulas."""
    spec = REGISTRY[name]
    f, fb = _formulas(spec.gated.act, dtype)
    return tuple(_inlined(h) for h in spec.build(cpu_prims(dtype), f, fb))


@functools.lru_cache(maxsize=None)
def _gated_kernels(name, dtype, parallel):
    """``forward``, ``backward`` and ``backward_same`` of a gated entry, each
    called ``k(a1, b1, c1, M, total)`` on flat views: ``(x1, o1, o1)``
    forward, ``(g1, x1, d1)`` backward, ``(g1, x1, x1)`` in place, with
    ``x1`` and ``d1`` of ``(outer, 2, M)``, ``o1`` and ``g1`` of ``(outer,
    M)``, ``total = outer M``.  The output's (gradient's) flat range is cut
    into blocks (the threads' tasks, whatever ``outer`` and ``M`` are), each
    block walked in runs within one row half.  ``backward_same`` writes over
    ``x`` (in place), which LLVM vectorizes without the overlap check that
    would send two distinct-looking arrays to its scalar loop.
    ``parallel="stream"``: ``(forward,)``, the forward for outputs too big
    for the caches (:func:`_gated_stream`)."""
    fwd, bwd = _gate_formulas(name, dtype)
    wide = wide_vectors()
    U = np.uint64
    tag = f"{name}_{np.dtype(dtype).name}"

    # The run helpers are inlined into the kernels: a call left between a
    # parallel kernel and a closure compiled in another process (both loaded
    # from the disk cache) went to the other op's closure of the same
    # generated name.  Each: run(a1, b1, c1, k, xk, M, n), k the run's first
    # flat output index, xk its first element in x's half a
    inline = always_inline()

    @inner_njit()
    def fwd_run(x1, o1, _, k, xk, M, n):
        inline()
        for j in range(n):
            wide()
            i = U(xk) + U(j)
            o1[U(k) + U(j)] = fwd(x1[i], x1[i + U(M)])

    @inner_njit()
    def bwd_run(g1, x1, d1, k, xk, M, n):
        inline()
        for j in range(n):
            wide()
            i = U(xk) + U(j)
            da, db = bwd(g1[U(k) + U(j)], x1[i], x1[i + U(M)])
            d1[i] = da
            d1[i + U(M)] = db

    @inner_njit()
    def bwd_run_same(g1, x1, _, k, xk, M, n):
        inline()
        for j in range(n):
            wide()
            i = U(xk) + U(j)
            da, db = bwd(g1[U(k) + U(j)], x1[i], x1[i + U(M)])
            x1[i] = da
            x1[i + U(M)] = db

    if parallel == "bodies":       # for the narrow kernels (numba_narrow)
        return fwd_run, bwd_run
    if parallel == "stream":
        return (_gated_stream(name, dtype, fwd_run),)
    return tuple(_gated_walk(run, f"gated_{what}_{tag}", parallel, dtype)
                 for run, what in ((fwd_run, "fwd"), (bwd_run, "bwd"),
                                   (bwd_run_same, "bwd_same")))


def _gated_walk(run, tag, parallel, dtype):
    """The kernel ``loop(a1, b1, c1, M, total)`` calling ``run`` on each run
    of output elements within one row half, over blocks of the flat output
    (the units of the parallel kernel's chunks)."""
    block = _block_elems(dtype)
    inline = always_inline()

    @inner_njit()
    def units(a1, b1, c1, M, total):
        return (total + block - 1) // block, max(1, _CHUNK_MIN // block)

    @inner_njit()
    def walk(lo, hi, a1, b1, c1, M, total):
        inline()
        for t in range(lo, hi):
            k = t * block
            e = min(k + block, total)
            while k < e:
                r = k // M
                j0 = k - r * M
                n = min(M - j0, e - k)
                run(a1, b1, c1, k, 2 * r * M + j0, M, n)
                k += n
    return (_pooled if parallel else _serial)(tag, walk, units)


def _gated_stream(name, dtype, fwd_run):
    """The gated forward for big outputs, ``forward(nthreads, x1, o1, o1,
    M, total)``: the output's blocks (as _make_blocked's), each run within
    a row half stored with streaming stores from the output's first 64-byte
    boundary in it (the memory-bound gates read 2 and write 1: the write's
    read for ownership is a third of the traffic)."""
    fwd = _gate_formulas(name, dtype)[0]
    block, blocks, span = _stream_blocks(dtype)
    fence, put = streaming()[1], _store(True)
    address, size = array_address(), np.dtype(dtype).itemsize
    inline, wide = always_inline(), wide_vectors()
    U = np.uint64

    @inner_njit()
    def fwd_run_nt(x1, o1, k, xk, M, n):
        inline()
        for j in range(n):
            wide()
            i = U(xk) + U(j)
            put(o1, U(k) + U(j), fwd(x1[i], x1[i + U(M)]))

    @inner_njit()
    def units(x1, o1, _, M, total):
        return blocks(o1, 0, 1)[2], 16

    @inner_njit()
    def chunk_blocks(lo, hi, x1, o1, _, M, total):
        inline()
        first = blocks(o1, 0, 1)[0]
        base = address(o1)
        aligned = base % size == 0
        for blk in range(lo, hi):
            b0, b1 = span(blk, first, total)
            k = b0
            while k < b1:
                r = k // M
                j0 = k - r * M
                n = min(M - j0, b1 - k)
                # the head, up to out's next 64-byte boundary, stored as usual
                h = min(n, (-(base + k * size) & 63) // size) if aligned else n
                if h > 0:
                    fwd_run(x1, o1, o1, k, 2 * r * M + j0, M, h)
                if n > h:
                    fwd_run_nt(x1, o1, k + h, 2 * r * M + j0 + h, M, n - h)
                k += n
        fence()            # the streamed stores drained before the chunk counts done

    return _pooled(f"gated_fwd_stream_{name}_{np.dtype(dtype).name}", chunk_blocks, units)


_STREAMING = streaming_supported()


def _big(out):
    """Whether ``out`` is big enough for the blocked kernels (streamed or
    prefetched; config.STREAM_MIN_BYTES)."""
    return _STREAMING and 0 <= config.STREAM_MIN_BYTES <= out.nbytes


class NumbaBackend(Backend):
    name = "numba"

    def load(self):
        nb = _numba()          # ImportError says why
        self._nb = nb
        from .numba_pool import pool_in_use
        self._c_pool = pool_in_use() == "fastact"
        return self

    def _run(self, n, threshold, get_kernel, *args, big_out=None):
        """``get_kernel(True)``, the parallel kernel, from ``threshold``
        elements on; ``get_kernel("stream")``, the blocked kernel, where
        ``big_out`` is big (``_big``); both called with the thread count
        first.  Else, or in a process forked after its parent ran parallel
        kernels (see fastact._threads), ``get_kernel(False)``, the serial
        kernel; so too while another thread's call holds Numba's pool, where
        the kernels run on it (the C pool runs such a call on its own
        thread itself)."""
        if n >= threshold and not _threads.forked_serial():
            kernel = get_kernel("stream" if big_out is not None and _big(big_out) else True)
            if self._c_pool:
                kernel(_threads.team_size(), *args)
                return
            if _pool_lock.acquire(blocking=False):
                try:
                    kernel(_threads.team_size(), *args)
                finally:
                    _pool_lock.release()
                return
        get_kernel(False)(*args)

    def elementwise(self, name, pass_, ins, out, params):
        n = out.shape[0]
        self.elementwise_kernel(name, pass_, out.dtype.type, n < parallel_min(name))(
            *ins, out, params)

    def compile_op(self, name):
        """Compile (or load from the disk cache) every kernel a big call of
        the elementwise entry ``name`` can take: the parallel, blocked (big
        outputs), walk (strided operands) and serial (a busy pool) kernels
        of each pass, float32 and float64, each run once on a few elements
        with the argument types of a real call (the automatic choice's
        background compile: fastact._dispatch)."""
        spec = REGISTRY[name]
        for dt in (np.float32, np.float64):
            v = np.zeros(1 << 16, dt)
            p = tuple(np.uint64(1) if k == "key" else dt(0.5) for k in spec.params)
            for pass_ in spec.passes():
                ins, o = ((v,) if pass_ == "forward" else (v, v)), v.copy()
                _elementwise_kernel(name, pass_, dt, False)(*ins, o, p)
                _elementwise_kernel(name, pass_, dt, True)(1, *ins, o, p)
                if _STREAMING:
                    _blocked_kernel(name, pass_, dt)(1, *ins, o, p)
                # (v and o stay referenced through the call)
                _walk_kernel(name, pass_, dt)(
                    1, v.ctypes.data, v.ctypes.data, o.ctypes.data, np.array([64], np.int64),
                    np.ones((3, 2), np.int64), 64, 4, 16, 0x1, p)

    def elementwise_kernel(self, name, pass_, dtype, small):
        if small:             # the low-overhead path: the compiled loop itself
            return _elementwise_kernel(name, pass_, dtype, False)

        threshold = parallel_min(name)

        def kernel(variant):
            if variant == "stream":          # big outputs: the blocked kernel
                return _blocked_kernel(name, pass_, dtype)
            return _elementwise_kernel(name, pass_, dtype, variant)

        def run(*args):
            # args: inputs..., out, params
            self._run(args[-2].shape[0], threshold, kernel, *args,
                      big_out=args[-2])
        return run

    def elementwise_rows(self, name, pass_, ins, out, params, starts):
        from .numba_rows import rows_kernel
        a = ins[0].reshape(-1)
        b = ins[1].reshape(-1) if len(ins) > 1 else a
        self._run(out.size, parallel_min(name),
                  lambda variant: rows_kernel(name, pass_, out.dtype.type, bool(variant)),
                  a, b, out.reshape(-1), starts, out.shape[1], params)

    def _narrow_methods(self):
        return _Narrow(self, c_conversions())

    def elementwise_strided(self, name, pass_, walk, params):
        """Big walks: the parallel walk kernel; small ones (and those that
        find Numba's pool busy, or run in a forked child) through the base
        class's chunks and the serial flat kernel, which every op has
        compiled already (a walk kernel is one more compile per op)."""
        if walk.size < parallel_min(name) or _threads.forked_serial():
            return super().elementwise_strided(name, pass_, walk, params)
        out, plan, binary = walk.arrays[-1], walk.plan, pass_ != "forward"
        # (a, b, out): a unary kernel's b is a again
        ops = (0, 1, 2) if binary else (0, 0, 1)
        # walk.arrays keeps the operands alive through the call
        args = (*(walk.address(k) for k in ops), np.array(walk.dims[:-1], np.int64),
                np.array([walk.strides[k] for k in ops], np.int64), walk.dims[-1],
                plan.rows, plan.cols, plan.flags(binary), params)
        kernel = _walk_kernel(name, pass_, out.dtype.type)
        if self._c_pool:
            kernel(_threads.team_size(), *args)
        elif _pool_lock.acquire(blocking=False):
            try:
                kernel(_threads.team_size(), *args)
            finally:
                _pool_lock.release()
        else:
            super().elementwise_strided(name, pass_, walk, params)

    def prelu_forward(self, x, w, out):
        self._run(x.size, parallel_min("prelu"),
                  lambda v: _prelu_kernels(x.dtype.type, v)[0], x, w, out,
                  big_out=out if streamed("prelu", "forward") else None)

    def prelu_backward(self, g, x, w, gx, gw):
        outer, C, inner = x.shape
        partial = _prelu_partial(x)
        self._run(x.size, parallel_min("prelu"),
                  lambda par: _prelu_kernels(x.dtype.type, par)[1], g.reshape(-1),
                  x.reshape(-1), w, gx.reshape(-1), partial, outer, C, inner, big_out=gx)
        prelu_channel_sums()(partial, outer, C, inner, gw)

    def rows_forward(self, name, x, out):
        self._run(x.size, parallel_min(name),
                  lambda par: _row_kernels(name, x.dtype.type, par)[0], x, out,
                  big_out=out if streamed(name, "forward") else None)

    def rows_backward(self, name, g, y, out):
        self._run(y.size, parallel_min(name),
                  lambda par: _row_kernels(name, y.dtype.type, par)[1], g, y, out,
                  big_out=out if streamed(name, "backward") else None)

    def rows_inner_forward(self, name, x, out):
        outer, n, K = x.shape
        self._rows_inner(name, 0, x.size, x.reshape(-1), out.reshape(-1), outer, n, K)

    def rows_inner_backward(self, name, g, y, out):
        outer, n, K = y.shape
        self._rows_inner(name, 1, y.size, g.reshape(-1), y.reshape(-1), out.reshape(-1),
                         outer, n, K)

    def _rows_inner(self, name, k, size, *args):
        """The softmax family along a middle axis (_row_inner_kernels): its
        kernels take the columns of a task too (inner_columns)."""
        outer, K, dt = args[-3], args[-1], args[0].dtype
        nt = _threads.get_num_threads() if size >= parallel_min(name) else 1
        self._run(size, parallel_min(name),
                  lambda par: _row_inner_kernels(name, dt.type, par)[k],
                  *args, inner_columns(outer, K, dt.itemsize, nt))

    def gated_forward(self, name, x, out):
        o1 = out.reshape(-1)
        self._run(out.size, parallel_min(name),
                  lambda par: _gated_kernels(name, x.dtype.type, par)[0],
                  x.reshape(-1), o1, o1, x.shape[2], out.size, big_out=out)

    def gated_backward(self, name, g, x, out):
        # in place: the public layer passes out as x's own buffer or apart from it
        same = out.__array_interface__["data"][0] == x.__array_interface__["data"][0]
        self._run(g.size, parallel_min(name),
                  lambda par: _gated_kernels(name, x.dtype.type, par)[2 if same else 1],
                  g.reshape(-1), x.reshape(-1), out.reshape(-1), x.shape[2], g.size)

    def describe(self):
        # fastact's thread count: numba.get_num_threads() would start Numba's
        # pool, after which a forked child may not run a parallel region
        nb = _numba()
        from .numba_pool import pool_in_use
        # the parallel kernels run on fastact's pool (c_src/pool.c) where the
        # C backend is built, else on Numba's threading layer
        return {"numba": nb.__version__, "threads": _threads.get_num_threads(),
                "pool": pool_in_use(), "threading_layer": nb.config.THREADING_LAYER}
