"""Scalar primitives the activation formulas are written in.

The formulas in :mod:`fastact._registry` never call ``math.exp`` directly:
they receive a :class:`Prims` object for one (target, dtype) pair and use its
``exp``/``expm1`` and its typed constants.  Two families exist:

* ``cpu_prims(dtype)``: exponentials written as a range-reduced polynomial
  whose ``2**n`` factor is applied by ``vscalef`` where AVX-512 has it, else
  built from bits with a bit-cast intrinsic.  Unlike Numba's ``np.exp`` (a
  call into libm, without SVML on our machines) these inline and vectorize.
  They also carry ``row_max`` and ``exp_diff`` (exp of an exact difference)
  for the softmax row skeleton.
* ``math_prims(dtype)``: the ``math`` module, for CUDA (where ``expf`` is a
  fast hardware-assisted routine) and for numba's CUDA simulator, which runs
  kernels as plain Python.

Numba is imported lazily: importing fastact compiles nothing.
"""
from __future__ import annotations

import fractions
import functools
import hashlib
import math
import pathlib

import numpy as np


class Prims:
    """Typed constants and exponentials for one dtype on one target."""

    def __init__(self, dtype, exp, exp_neg_ratio, expm1, exp_mul, T, jit):
        self.dtype = np.dtype(dtype)
        self.exp = exp
        # exp_neg_ratio(x) = (q, s), both finite, q / s = exp(-x), s + q > 0
        # and within a few powers of two of max(q, s): a formula may divide
        # by s + q without overflow (x far out is clamped; NaN stays NaN)
        self.exp_neg_ratio = exp_neg_ratio
        self.expm1 = expm1
        self.exp_mul = exp_mul      # exp_mul(x, a, b) = a * b * exp(x), x <= 0
        # compiles a formula's own scalar helpers for the same target
        self.jit = jit
        # ``T(1.0)`` yields a scalar of the target dtype: formulas build their
        # constants with it so float32 arithmetic is never promoted to float64.
        self.T = T
        # float32 only: hash24(i, key) -> the 24 random bits of RReLU draw i
        # (fastact._rng), as a float32 holding that integer exactly
        self.hash24 = None
        # log1p(t), t > -1 (+inf, NaN pass); exp_split(v, vl) -> (q, nf)
        # with exp(v + vl) = q * 2**nf for v <= 0, q in [0.70, 1.42] (vl the
        # low part of a value carried in two parts); ldexp(m, nf) = m * 2**nf
        # rounded once; two_prod(a, b) -> (p, e), a * b = p + e exactly;
        # frexp2(b) -> (bm, kf), b = bm * 2**kf exactly (bm in [1, 2) for
        # normal b)
        self.log1p = self.exp_split = self.ldexp = self.two_prod = None
        # exp_split_in(v, vl) -> (q, n): exp_split for split_lo <= v <= 0
        # only (the caller clamps), without exp_split's clamp and select; n
        # an integer (int32 on the CPU), which ldexp and ldexp_normal take
        # without a conversion
        self.exp_split_in = None
        # ldexp_normal(m, nf): m * 2**nf where only a normal result matters
        # (cheaper without vscalef: one factor, nf raised to the normal range)
        self.frexp2 = self.ldexp_normal = None
        # erfcx(t) = erfc(t) exp(t**2) for t >= 0 (gelu); erfcx2(t) -> (y, c)
        # with erfcx(t) = y + c unrounded; fma(a, b, c) = a * b + c rounded
        # once (emulated with an exact product where there is no FMA)
        self.erfcx = self.erfcx2 = self.fma = None
        # float32 only: phi_ratio(a) = Phi(-a) exp(a**2 / 2) = erfcx(a /
        # sqrt 2) / 2 for 0 <= a <= 20, one division, within 2 ULP (gelu)
        self.phi_ratio = None


def _hash24_python(jit):
    """:func:`fastact._rng.hash24` in uint64 arithmetic masked to 32 bits
    (for the CUDA target and its simulator)."""
    from . import _rng
    U = np.uint64
    m32, k32, f1, f2 = U(_rng.MASK32), U(_rng.K32), U(_rng.F1), U(_rng.F2)
    s32, s16, s13, s8 = U(32), U(16), U(13), U(8)

    def hash24(i, key):
        h = ((i & m32) + (key & m32)) & m32
        h ^= (((i >> s32) + (key >> s32)) * k32) & m32
        h ^= h >> s16
        h = (h * f1) & m32
        h ^= h >> s13
        h = (h * f2) & m32
        h ^= h >> s16
        return np.float32(h >> s8)

    return jit(hash24)


def _identity(fn):
    return fn


@functools.lru_cache(maxsize=None)
def math_prims(dtype, jit=_identity) -> Prims:
    """``math.exp``/``math.expm1``; ``jit`` compiles helpers for the target
    (``numba.cuda.jit(device=True)`` on a GPU, nothing in the simulator)."""
    dt = np.dtype(dtype)
    # a * b * exp(x), x <= 0: the naive product loses all but a few bits
    # where exp(x) alone is subnormal and the product is not (elu_backward
    # with a large gradient), or where a is subnormal and b large, and
    # overflows where a * b alone does.  float32 works in float64 (one final
    # rounding).  float64 takes every factor apart into a normal mantissa and
    # a power of two, as the CPU kernels do: a = ma 2**ea, b = mb 2**eb
    # (frexp), exp(x) = exp(r) 2**n (Cody-Waite, ln2 in two parts), so that
    # (ma * (exp(r) * mb)) * 2**(ea + eb + n) is rounded in the two products
    # and, where the result is subnormal, once more by ldexp.
    if dt == np.float32:
        def exp_mul(x, a, b):
            return np.float32(np.float64(a) * np.float64(b) * math.exp(np.float64(x)))
    else:
        zero, half = np.float64(0.0), np.float64(0.5)
        log2e, ln2hi, ln2lo = (np.float64(_F64[k]) for k in ("log2e", "ln2hi", "ln2lo"))
        mul_lo = np.float64(_F64["mul_lo"])
        one, k_top, k_half = np.float64(1.0), 2000, 1000

        def exp_mul(x, a, b):
            xc = x if x < zero else zero        # x <= 0 (NaN: 0; callers select)
            xc = xc if xc > mul_lo else mul_lo  # below, the product is 0 anyway
            n = math.floor(xc * log2e + half)
            r = (xc - n * ln2hi) - n * ln2lo
            ma, ea = math.frexp(a)
            mb, eb = math.frexp(b)
            v = ma * (math.exp(r) * mb)         # in [0.17, 1.42]
            # 2**k applied in two steps where it is big: the result
            # overflows to inf (a range error in the simulator's math.ldexp)
            k = ea + eb + n
            k = k if k < k_top else k_top
            k1 = k if k < k_half else k_half
            return math.ldexp(v, k1) * math.ldexp(one, k - k1)

    one = dt.type(1.0)

    def exp_neg_ratio(x):
        # (q, s) = (exp(-x), 1) or (1, exp(x)): the exponential of -|x|,
        # which never overflows, placed by the sign
        e = math.exp(-abs(x))
        return (e, one) if x >= 0 else (one, e)

    prims = Prims(dt, math.exp, jit(exp_neg_ratio), math.expm1, jit(exp_mul), dt.type, jit)
    if dt == np.float32:
        prims.hash24 = _hash24_python(jit)
    _math_log_prims(prims, jit)
    return prims


def _math_log_prims(prims, jit):
    """``log1p``, ``exp_split``, ``ldexp``, ``two_prod``, ``frexp2``,
    ``ldexp_normal``, ``erfcx`` (see cpu_prims) from the ``math`` module: CUDA's libdevice routines on a GPU, Python's
    libm in the simulator."""
    dt = prims.dtype
    T = dt.type
    c = _F32 if dt == np.float32 else _F64
    log2e, ln2hi, ln2lo = (T(c[k]) for k in ("log2e", "ln2hi", "ln2lo"))
    lo = T(-210.0 if dt == np.float32 else -1500.0)     # cpu_prims' split_lo
    zero, half, one = T(0.0), T(0.5), T(1.0)
    K = 120 if dt == np.float32 else 1000
    # Dekker's splitter: 2**ceil(p/2) + 1
    split = T(4097.0 if dt == np.float32 else 134217729.0)

    def log1p(t):
        return T(math.log1p(t))

    def exp_split_in(v, vl):
        # exp_split for lo <= v <= 0, n an int (as cpu_prims'), the
        # reduction in the data's width; NaN (garbage for the caller to
        # select) as lo: math.floor raises on it
        vc = v if v >= lo else lo
        n = math.floor(vc * log2e + half)
        nf = T(n)
        return T(math.exp(((vc - nf * ln2hi) - nf * ln2lo) + vl)), n

    exp_split_in = jit(exp_split_in)

    def exp_split(v, vl):
        # exp(v + vl) = q * 2**nf for v <= 0; v below lo (and NaN, -inf)
        # clamped to lo, vl then dropped: callers select NaN themselves
        above = v > lo
        q, n = exp_split_in(v if above else lo, vl if above else zero)
        return q, T(n)

    def ldexp(m, nf):
        # in two factors, 2**k1 with |k1| <= K: a result that overflows is
        # inf (the simulator's math.ldexp raises a range error), one in the
        # subnormal range is rounded once
        k = int(nf)
        k1 = K if k > K else (-K if k < -K else k)
        return T(math.ldexp(m, k1) * math.ldexp(one, k - k1))

    def frexp2(b):
        m, e = math.frexp(b)
        return T(m + m), T(e - 1)

    def two_prod(a, b):
        # Dekker's exact product (kernels run without FMA contraction); an
        # error term that is not finite (|a| or |b| near overflow) is dropped
        p = a * b
        ca, cb = split * a, split * b
        ah, bh = ca - (ca - a), cb - (cb - b)
        al, bl = a - ah, b - bh
        e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
        return p, (e if abs(e) <= abs(p) else zero)

    two_prod = jit(two_prod)
    ex_K = T(_ERFCX_K32 if dt == np.float32 else _ERFCX_K64)
    ex_p = tuple(T(v) for v in (_ERFCX_P32 if dt == np.float32 else _ERFCX_P64))

    ex_ch = T(float(_ERFCX_C))
    ex_cl = T(float(fractions.Fraction(_ERFCX_C) - fractions.Fraction(float(ex_ch))))
    ip0, ip1 = T(1.28125), T(0.28125)
    erfcx_poly = _horner(jit, ex_p)

    def erfcx2(t):
        # cpu_prims' erfcx2, its exact products by Dekker's (CUDA kernels run
        # without FMA)
        q = (t - ex_K) / (t + ex_K)
        P = erfcx_poly(q)
        ct, ctl = two_prod(ex_ch, t)
        ctl = ctl + ex_cl * t
        s = one + ct
        sl = ((one - (s - ct)) if ct >= one else (ct - (s - one))) + ctl
        y = P / s
        ys, ye = two_prod(y, s)
        r = ((P - ys) - ye) - y * sl
        return y, r * (y * (ip0 + ip1 * q))

    erfcx2 = jit(erfcx2)

    def erfcx(t):
        y, c = erfcx2(t)
        return y + c

    def fma(a, b, c):
        # a * b + c with a * b exact (Dekker): one rounding but for the
        # rounding of e + c
        p, e = two_prod(a, b)
        return p + (e + c)

    ph_K, ph_2K = T(_PHI_K32), T(2 * _PHI_K32)
    phi_poly = _horner(jit, tuple(T(v) for v in _PHI_P32))

    def phi_ratio(a):
        # cpu_prims' phi_ratio, 0 <= a <= 20 (1 - s d by an exact product)
        s = a + ph_K
        sl = a - (s - ph_K)
        d = one / s
        sd, sde = two_prod(s, d)
        dl = d * (((one - sd) - sde) - sl * d)
        q = (one - ph_2K * d) - ph_2K * dl
        P = phi_poly(q)
        fh, fe = two_prod(P, d)
        return fh, fe + P * dl

    if dt == np.float32:
        prims.phi_ratio = jit(phi_ratio)

    prims.log1p, prims.exp_split = jit(log1p), jit(exp_split)
    prims.exp_split_in = exp_split_in
    prims.ldexp, prims.two_prod, prims.frexp2 = jit(ldexp), two_prod, jit(frexp2)
    prims.ldexp_normal, prims.erfcx = prims.ldexp, jit(erfcx)
    prims.erfcx2, prims.fma = erfcx2, jit(fma)


def _horner(jit, coefs, inline=None):
    """p(q) = coefs[0] q**(n-1) + ... + coefs[-1] in Horner form, written out
    (a loop over a long constant tuple is left a loop by LLVM, which keeps
    the kernel around it scalar)."""
    ns = {f"c{k}": v for k, v in enumerate(coefs)}
    ns["inline"] = inline
    lines = ["def horner(q):"] + (["    inline()"] if inline is not None else [])
    lines.append("    p = c0")
    lines += [f"    p = p * q + c{k}" for k in range(1, len(coefs))]
    lines.append("    return p")
    exec("\n".join(lines), ns)
    return jit(ns["horner"])


def inner_njit(**options):
    """``numba.njit`` for scalar helpers that kernels inline.  Not cached on
    their own: a kernel loaded from the disk cache does not need them."""
    import numba
    return numba.njit(error_model="numpy", **options)


# Sources whose text decides what a compiled kernel computes (the op
# families of _ops/ included).
_KERNEL_SOURCES = ("_prims.py", "_prims_narrow.py", "_spec.py", "_registry.py", "_rng.py", "config.py",
                   "_backends/__init__.py", "_backends/numba_cpu.py", "_backends/numba_walk.py",
                   "_backends/numba_*.py",
                   "_ops/*.py")


@functools.lru_cache(maxsize=None)
def _sources_fingerprint() -> str:
    h = hashlib.sha256()
    root = pathlib.Path(__file__).parent
    for pattern in _KERNEL_SOURCES:
        for path in sorted(root.glob(pattern)):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _kernel_cache_class():
    from numba.core.caching import FunctionCache

    class KernelCache(FunctionCache):
        """Keys a kernel by fastact's sources, not by its closure variables.

        Numba keys a cached closure by its pickled cell contents; a pickled
        dispatcher carries a random per-instance id, so our kernels (closures
        over compiled formulas) would miss the cache in every new process.
        """

        def _index_key(self, sig, codegen):
            return (sig, codegen.magic_tuple(), _sources_fingerprint())

    return KernelCache


def kernel_njit(tag, **options):
    """``numba.njit`` for a kernel called from Python, cached on disk.

    Numba files a cached function by qualified name and line; the factory
    closures share both, so each variant gets a unique ``tag`` in its name
    (its own index file: no two variants, or processes, write one file).
    """
    import numba

    def decorate(fn):
        fn.__qualname__ = f"{fn.__qualname__}__{tag}"
        disp = numba.njit(error_model="numpy", **options)(fn)
        disp._cache = _kernel_cache_class()(fn)      # what cache=True does
        return disp
    return decorate


@functools.lru_cache(maxsize=None)
def wide_vectors():
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def wide_vectors(typingctx):
        """No code: marks the enclosing function so that LLVM may use 512-bit
        vectors (it prefers 256 on AVX-512 CPUs by default, a tuning for
        mixed workloads; ours are long streaming loops)."""
        def codegen(context, builder, sig, args):
            try:       # string attributes are not in llvmlite's public API
                attrs = builder.function.attributes
                set.add(attrs, '"prefer-vector-width"="512"')
                set.add(attrs, '"min-legal-vector-width"="512"')
            except Exception:                 # pragma: no cover - newer llvmlite
                pass
            return context.get_dummy_value()
        return types.none(), codegen

    return wide_vectors


@functools.lru_cache(maxsize=None)
def always_inline():
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def always_inline(typingctx):
        """No code: marks the enclosing function ``alwaysinline`` for LLVM.
        Every primitive, formula and loop wrapper of the CPU kernels calls
        it first, so that none of them is left a call by LLVM's inlining
        threshold (a formula left a call kept its loop scalar: a blocked
        kernel at 2% of the copy).  tests/test_kernel_structure.py checks
        every kernel for such calls."""
        def codegen(context, builder, sig, args):
            builder.function.attributes.add("alwaysinline")
            return context.get_dummy_value()
        return types.none(), codegen

    return always_inline


def streaming_supported() -> bool:
    """Non-temporal stores are emitted on x86-64 only (``movnt*``)."""
    import platform
    return platform.machine().lower() in ("x86_64", "amd64")


@functools.lru_cache(maxsize=None)
def array_address():
    """``address(a)``: the address of an array's first element, an integer."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def address(typingctx, a):
        if not isinstance(a, types.Array):
            return None

        def codegen(context, builder, sig, args):
            data = context.make_array(sig.args[0])(context, builder, args[0]).data
            return builder.ptrtoint(data, ir.IntType(64))
        return types.int64(a), codegen

    return address


@functools.lru_cache(maxsize=None)
def pointers():
    """``(load, store)``: ``load(T, address, i)`` reads element ``i`` (any
    sign) of dtype ``T`` (a NumPy scalar type: float or int64) from an address (an integer:
    :func:`array_address` or NumPy's), ``store(address, i, v)`` writes ``v``
    there.  For loops that switch between arrays (an operand in place or a
    buffer): an array chosen at run time costs Numba a reference count per
    choice, an address nothing.  Alignment 1: NumPy data may sit at any
    byte; the caller keeps the memory alive."""
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def load(typingctx, ty, address, i):
        if not isinstance(ty, types.NumberClass) or not isinstance(address, types.Integer):
            return None
        dtype = ty.instance_type

        def codegen(context, builder, sig, args):
            ptr = builder.inttoptr(args[1], context.get_value_type(dtype).as_pointer())
            return builder.load(builder.gep(ptr, [args[2]]), align=1)
        return dtype(ty, address, types.intp), codegen

    @intrinsic
    def store(typingctx, address, i, v):
        if not isinstance(address, types.Integer) or not isinstance(v, (types.Float,
                                                                          types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            ptr = builder.inttoptr(args[0], context.get_value_type(sig.args[2]).as_pointer())
            builder.store(args[2], builder.gep(ptr, [args[1]]), align=1)
            return context.get_dummy_value()
        return types.none(address, types.intp, v), codegen

    return load, store


@functools.lru_cache(maxsize=None)
def prefetchers():
    """``(prefetch_read, prefetch_write)``: ``f(a, i)`` asks for the cache
    line of ``a[i]`` (1-D), to read or to write (``prefetchw``: the line
    arrives owned, so a store to it need not wait for it).  Hints only: they
    never fault and change no result."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    def make(rw):
        @intrinsic
        def prefetch(typingctx, a, i):
            if not isinstance(a, types.Array):
                return None

            def codegen(context, builder, sig, args):
                data = context.make_array(sig.args[0])(context, builder, args[0]).data
                i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
                fn = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                    "llvm.prefetch.p0")
                ptr = builder.bitcast(builder.gep(data, [args[1]]), i8p)
                # rw, locality 3 (keep in all levels), data cache
                builder.call(fn, [ptr, ir.Constant(i32, rw), ir.Constant(i32, 3),
                                  ir.Constant(i32, 1)])
                return context.get_dummy_value()
            return types.none(a, types.intp), codegen
        return prefetch

    return make(0), make(1)


@functools.lru_cache(maxsize=None)
def streaming():
    """``(stream_copy, store_fence, store_nt)`` intrinsics for kernels whose
    output is too big for the caches.

    ``stream_copy(dst, lo, src, m)`` copies ``src[:m]`` to ``dst[lo:lo+m]``
    (1-D, contiguous, same dtype) with non-temporal vector stores: the cache
    lines of ``dst`` are written without first being read (no read for
    ownership), which saves a third of the memory traffic of a copy.  The
    vector loop is written here in LLVM IR with explicit 64-byte alignment:
    a head of ordinary stores runs up to the first aligned element (all of
    ``dst`` if its address is not a multiple of the item size), whole
    64-byte vectors are streamed, and a tail of ordinary stores follows.
    ``store_nt(dst, i, v)`` streams one element, for loops that compute as
    they stream (see its docstring).
    ``store_fence()`` (``sfence``) orders a thread's streamed stores before
    anything it does next; kernels call it once per thread, before the
    parallel region ends.
    """
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def stream_copy(typingctx, dst, lo, src, m):
        if not (isinstance(dst, types.Array) and isinstance(src, types.Array)
                and dst.dtype == src.dtype and dst.ndim == src.ndim == 1):
            return None

        def codegen(context, builder, sig, args):
            dst_a = context.make_array(sig.args[0])(context, builder, args[0])
            src_a = context.make_array(sig.args[2])(context, builder, args[2])
            lo_v, m_v = args[1], args[3]
            i64 = ir.IntType(64)
            elt = context.get_data_type(sig.args[0].dtype)
            size = context.get_abi_sizeof(elt)
            lanes = 64 // size
            vty = ir.VectorType(elt, lanes)
            c = lambda v: ir.Constant(i64, v)      # noqa: E731
            dptr = builder.gep(dst_a.data, [lo_v])
            sptr = src_a.data
            addr = builder.ptrtoint(dptr, i64)
            fits = builder.icmp_unsigned("==", builder.and_(addr, c(size - 1)), c(0))
            head = builder.udiv(builder.and_(builder.sub(c(0), addr), c(63)), c(size))
            head = builder.select(fits, head, m_v)
            head = builder.select(builder.icmp_signed("<", head, m_v), head, m_v)
            nvec = builder.sdiv(builder.sub(m_v, head), c(lanes))
            vend = builder.add(head, builder.mul(nvec, c(lanes)))
            nt = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])

            def scalar(k):
                v = builder.load(builder.gep(sptr, [k]))
                builder.store(v, builder.gep(dptr, [k]))

            with cgutils.for_range(builder, head) as loop:
                scalar(loop.index)
            with cgutils.for_range(builder, nvec) as loop:
                k = builder.add(head, builder.mul(loop.index, c(lanes)))
                v = builder.load(builder.bitcast(builder.gep(sptr, [k]), vty.as_pointer()),
                                 align=size)
                st = builder.store(v, builder.bitcast(builder.gep(dptr, [k]), vty.as_pointer()),
                                   align=64)
                st.set_metadata("nontemporal", nt)
            with cgutils.for_range(builder, m_v, start=vend) as loop:
                scalar(loop.index)
            return context.get_dummy_value()
        return types.none(dst, types.intp, src, types.intp), codegen

    @intrinsic
    def store_nt(typingctx, dst, i, v):
        """``dst[i] = v`` (1-D, contiguous) as a non-temporal store that
        claims 64-byte alignment: in a loop over a range that starts at a
        64-byte boundary of ``dst``, LLVM vectorizes it into one aligned
        streaming store (``vmovntps``) per 64 bytes, interleaved with the
        arithmetic; any scalar remainder is an ordinary-width store, which
        needs no alignment.  Callers keep ranges that do not start at a
        64-byte boundary to ordinary stores."""
        if not (isinstance(dst, types.Array) and dst.ndim == 1):
            return None

        def codegen(context, builder, sig, args):
            data = context.make_array(sig.args[0])(context, builder, args[0]).data
            st = builder.store(context.cast(builder, args[2], sig.args[2], sig.args[0].dtype),
                               builder.gep(data, [args[1]]), align=64)
            st.set_metadata("nontemporal",
                            builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
            return context.get_dummy_value()
        return types.none(dst, types.uint64, dst.dtype), codegen

    @intrinsic
    def store_fence(typingctx):
        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse.sfence")
            builder.call(fn, [])
            return context.get_dummy_value()
        return types.none(), codegen

    return stream_copy, store_fence, store_nt


# --- polynomial exponentials for the CPU -----------------------------------

# Constants per dtype: log2(e), ln2 split hi/lo (Cody-Waite), exponent bias,
# mantissa bits, and clamps that keep the polynomial in range: below `lo`
# exp(x) rounds to 0, below `em1_lo` expm1(x) to -1, below `mul_lo` even
# c*exp(x) with c the largest float rounds to 0; above `hi` exp overflows to
# +inf through 2**n.
_F32 = dict(log2e=1.4426950408889634, ln2hi=0.693359375, ln2lo=-2.12194440e-4,
            bias=127, mbits=23, lo=-104.0, hi=89.0, em1_lo=-18.0, mul_lo=-200.0)
_F64 = dict(log2e=1.4426950408889634, ln2hi=6.93147180369123816490e-01,
            ln2lo=1.90821492927058770002e-10, bias=1023, mbits=52, lo=-746.0, hi=710.0,
            em1_lo=-38.0, mul_lo=-1460.0)


# erfcx(t) = erfc(t) exp(t**2) = P(q) / (1 + c t), c = 2 / sqrt(pi), q =
# (t - K) / (t + K) in [-1, 1) for t in [0, inf) (Juffa's change of variable;
# the factor 1 + c t makes P flat at both ends, P'(-1) = 0 and P(1) = 2/pi,
# so that q's roundings barely matter): P's coefficients, highest degree
# first, least-squares fits of (1 + c t) erfcx(t) on Chebyshev nodes of q
# (mpmath, 113 bits), rounded to the dtype; measured with FMA Horner on 4000
# points of q: 0.50 eps (float32, degree 11, K = 3), 0.72 eps (float64,
# degree 25, K = 3.5).  c_src/kernels.inc's N_(erfcx) holds the same numbers.
_ERFCX_K32 = 3.0
_ERFCX_P32 = (
    4.030561103718355e-05, -3.2322244805982336e-05, -0.0003927313955500722,
    0.000805933668743819, 0.0017199007561430335, -0.01155071146786213,
    0.027912572026252747, -0.03606021776795387, 0.007721821311861277,
    0.08020254224538803, -0.21869197487831116, 0.7849446535110474,
)
_ERFCX_K64 = 3.5
_ERFCX_P64 = (
    1.0825768966606122e-10, -2.3599231241160103e-11, -1.2951816006656889e-09,
    2.9305668378252013e-11, 9.03086917134394e-09, 1.663554913051919e-09,
    -5.322909105949552e-08, -1.6241593404243784e-08, 3.1505615456669325e-07,
    5.848625588575974e-08, -1.9921218223120564e-06, 6.515512718590448e-07,
    1.2978361151607621e-05, -1.8320840451337615e-05, -7.059293932341185e-05,
    0.00027131531021912556, -4.478101273391257e-05, -0.002261541116573507,
    0.008926831796789592, -0.02014696261486962, 0.02983736510201146,
    -0.023779730602904156, -0.015293751984939504, 0.09564533477514485,
    -0.2050564406883516, 0.7685990958080297,
)
# c = 2 / sqrt(pi) as hi + lo (float64; float32 splits its own)
_ERFCX_C = "1.128379167095512573896158903121545171688"

# float32 gelu's Mills ratio: F(a) = Phi(-a) exp(a**2 / 2) = erfcx(a / sqrt 2)
# / 2 = P(q) d, d = 1 / (a + K), q = (a - K) d = 1 - 2K d in [-1, 2/3] for a
# in [0, _PHI_A32 = 20] (beyond a = 20 no float32 gelu result, nor a
# gradient, is nonzero: callers clamp there).  One reciprocal (a division)
# serves both; K = 4 makes 2K d exact and 1 - 2K d exact for a <= 12
# (Sterbenz).  P's coefficients, highest degree first: a
# least-squares fit of the relative error on 3000 Chebyshev nodes of q
# (scipy's erfcx), rounded to float32 one coefficient at a time with the rest
# refitted, the last three then nudged by a few ULP: 0.34 * 2**-24 at most on
# 200001 points.  c_src/kernels.inc's N_(phi_ratio) holds the same numbers.
_PHI_K32 = 4.0
_PHI_A32 = 20.0
_PHI_P32 = (
    -3.562776691978797e-05, -0.00020010696607641876, 0.00017475026834290475,
    0.0016212121117860079, -0.0034978024195879698, -0.007539023645222187,
    0.06039988249540329, -0.18652193248271942, 0.38713714480400085,
    -0.607896625995636, 0.7552851438522339,
)
# The float32 polynomials (float64 takes Taylor's 1/k!), shared with the C
# primitives of c_src/kernels.inc, which write the same literals (a test
# compares them):
#: exp(r) = 1 + r + c2 r**2 + ... + c6 r**6 on |r| <= ln2/2, c6..c2: a
#: near-minimax fit of the relative error (3.1e-9), 0.71 ULP at most in
#: float32 Horner with FMA (checked on 2e6 points of the interval)
EXP_POLY_F32 = (1.3817227445542812e-3, 8.368715643882751e-3, 4.166834056377411e-2,
                1.666652113199234e-1, 4.999999403953552e-1)
#: expm1(r) = r + r**2 q(r), q of degree 4 (its coefficients from r**4 down):
#: a near-minimax fit of expm1's relative error on |r| <= ln2/2 (1.3e-8; 0.94
#: ULP at most in float32 with FMA, checked on 2e6 points), one FMA fewer than
#: Cephes' degree 5
EXPM1_POLY_F32 = (1.3882515486329794e-3, 8.366580121219158e-3, 4.166720062494278e-2,
                  1.666654348373413e-1, 4.999999701976776e-1)
#: exp_neg_ratio's upper clamp: 2**round(RATIO_HI / ln2) is finite
RATIO_HI = {"f32": 88.0, "f64": 709.0}


@functools.lru_cache(maxsize=None)
def _has_scalef() -> bool:
    """Whether Numba compiles for a CPU with AVX-512F, whose ``vscalef``
    scales by 2**n in one instruction (``llvm.ldexp`` is a library call per
    element elsewhere).  A CPU set with ``NUMBA_CPU_NAME`` /
    ``NUMBA_CPU_FEATURES`` (portable caches) is taken at its word."""
    from numba.core import config as nb_config
    feats = nb_config.CPU_FEATURES
    if feats is not None:
        return "+avx512f" in feats.split(",")
    if nb_config.CPU_NAME not in (None, "host"):
        return False
    from llvmlite import binding
    return bool(binding.get_host_cpu_features().get("avx512f", False))


@functools.lru_cache(maxsize=None)
def cpu_prims(dtype) -> Prims:
    """Vectorizable exp/expm1 for float32 or float64 (max error ~1 ULP;
    measured on the accuracy tests' whole-range grid: sigmoid 1.8, elu 1.3,
    elu_backward 2.1 ULP)."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    from . import _rng

    dt = np.dtype(dtype)
    T = dt.type
    f32 = dt == np.float32
    c = _F32 if f32 else _F64
    nb_f = types.float32 if f32 else types.float64
    nb_ord = types.int32 if f32 else types.int64

    bias, mbits = c["bias"], c["mbits"]
    i32 = ir.IntType(32)
    t_float = ir.FloatType() if f32 else ir.DoubleType()
    ity = ir.IntType(32 if f32 else 64)          # the float's own width

    # The exponent n of 2**n is an int32 (round_int); integer work on it is
    # done here, in LLVM IR: written in Python, Numba would widen int32 to
    # int64 and cost conversions in every vector lane.
    def _pow2(builder, n):
        """2**n from bits, n an i32 in the normal range."""
        n = n if f32 else builder.sext(n, ity)
        e = builder.shl(builder.add(n, ir.Constant(ity, bias)), ir.Constant(ity, mbits))
        return builder.bitcast(e, t_float)

    def _ldexp(builder, m, n):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(t_float, [t_float, i32]),
            f"llvm.ldexp.{'f32' if f32 else 'f64'}.i32")
        return builder.call(fn, [m, n])

    scalef = _has_scalef()

    def _exponent_i32(builder, v, ty):
        """An exponent argument as an int32: an integer-valued float by
        ``fptosi``, an integer as it is (Numba widens int32 arithmetic to
        int64; the values fit)."""
        if not isinstance(ty, types.Integer):
            return builder.fptosi(v, i32)
        if ty.bitwidth > 32:
            return builder.trunc(v, i32)
        return builder.sext(v, i32) if ty.bitwidth < 32 else v

    @intrinsic
    def round_int(typingctx, x):
        """x rounded to the nearest integer (ties to even), an int32
        (``llvm.lrint``: one ``vcvtps2dq`` a vector, where the shifter trick
        took an FMA, a subtraction and an integer subtraction; converted
        back, the same integer serves the reduction and, in ``vscalef``,
        the scaling).  |x| < 2**31."""
        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(i32, [t_float]),
                f"llvm.lrint.i32.{'f32' if f32 else 'f64'}")
            return builder.call(fn, [args[0]])
        return types.int32(nb_f), codegen

    @intrinsic
    def scale2n(typingctx, m, n):
        """m * 2**n (n int32), rounded once (subnormal results and overflow
        to inf included): ``llvm.ldexp``, one ``vscalefps/pd`` per vector
        where AVX-512 has it; elsewhere (m * 2**n1) * 2**(n-n1), two normal
        factors built from bits (|n| <= 2 * 126 / 2 * 1022)."""
        def codegen(context, builder, sig, args):
            m, n = args
            if scalef:
                return _ldexp(builder, m, n)
            n1 = builder.ashr(n, ir.Constant(i32, 1))
            s1, s2 = _pow2(builder, n1), _pow2(builder, builder.sub(n, n1))
            return builder.fmul(builder.fmul(m, s1), s2)
        return nb_f(nb_f, types.int32), codegen

    @intrinsic
    def ldexp_f(typingctx, m, nf):
        """m * 2**nf for an integer-valued float nf (after one conversion to
        int32, ``vcvttps2dq``) or an integer nf (exp_split_in's: no
        conversion, and vscalef's own conversion back is the reduction's),
        rounded once: ``llvm.ldexp`` (one
        ``vscalef``) where AVX-512 has it; elsewhere three normal factors
        2**e1 * 2**e2 * 2**e3 (e1 = n >> 2, e2 = (n - e1) >> 1, the rest),
        n first raised to ldexp_floor (-300 / -2200: any |m| < 2**128 /
        2**1024 then rounds to 0), n <= 300 / 2200; where the result is
        subnormal the product before the last factor is normal for |m| >=
        2**-40, so it is rounded once.  (c_src/kernels.inc: N_(ldexp).)"""
        def codegen(context, builder, sig, args):
            m, n = args[0], _exponent_i32(builder, args[1], nf)
            if scalef:
                return _ldexp(builder, m, n)
            floor = ir.Constant(i32, ldexp_floor)
            n = builder.select(builder.icmp_signed("<", n, floor), floor, n)
            e1 = builder.ashr(n, ir.Constant(i32, 2))
            e2 = builder.ashr(builder.sub(n, e1), ir.Constant(i32, 1))
            e3 = builder.sub(builder.sub(n, e1), e2)
            r = m
            for ek in (e1, e2, e3):
                r = builder.fmul(r, _pow2(builder, ek))
            return r
        return nb_f(nb_f, nf if isinstance(nf, types.Integer) else nb_f), codegen

    @intrinsic
    def ldexp_normal_f(typingctx, m, nf):
        """m * 2**nf where only normal results matter: ``vscalef`` where
        AVX-512 has it, else one factor 2**max(n, 1 - bias) built from bits
        (c_src/kernels.inc: N_(ldexp_normal)); nf an integer-valued float
        or an integer (as ldexp_f)."""
        def codegen(context, builder, sig, args):
            m, n = args[0], _exponent_i32(builder, args[1], nf)
            if scalef:
                return _ldexp(builder, m, n)
            lo_n = ir.Constant(i32, 1 - bias)
            n = builder.select(builder.icmp_signed("<", n, lo_n), lo_n, n)
            return builder.fmul(m, _pow2(builder, n))
        return nb_f(nb_f, nf if isinstance(nf, types.Integer) else nb_f), codegen

    @intrinsic
    def fma(typingctx, a, b, c):
        """a * b + c rounded once (``llvm.fma``: one ``vfmadd`` where the CPU
        has FMA, a libm call elsewhere): two_prod's exact error term."""
        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(t_float, [t_float] * 3),
                f"llvm.fma.{'f32' if f32 else 'f64'}")
            return builder.call(fn, list(args))
        return nb_f(nb_f, nb_f, nb_f), codegen

    # log1p's reduction (musl's log1pf / fdlibm's log1p): the bits of u plus
    # one_bits - sqrth_bits carry the exponent k of u with its mantissa taken
    # into [sqrt(2)/2, sqrt(2)); kernels.inc's N_(log1p) does the same
    ldexp_floor = -300 if f32 else -2200
    sqrth_bits = 0x3F3504F3 if f32 else 0x3FE6A09E667F3BCD
    one_bits = 0x3F800000 if f32 else 0x3FF0000000000000
    mant_mask = (1 << mbits) - 1

    @intrinsic
    def log_split(typingctx, u):
        """(m, kf, s) for u > 0 (finite, normal): u = m * 2**k with m in
        [sqrt(2)/2, sqrt(2)) exact, kf = float(k), s = 2**-min(k, bias - 1).
        Integer work on the float's own width, no branches (+inf: a finite m
        and k = bias + 1; callers select)."""
        def codegen(context, builder, sig, args):
            C = lambda v: ir.Constant(ity, v)           # noqa: E731
            ix = builder.add(builder.bitcast(args[0], ity), C(one_bits - sqrth_bits))
            k = builder.sub(builder.lshr(ix, C(mbits)), C(bias))
            m = builder.bitcast(builder.add(builder.and_(ix, C(mant_mask)), C(sqrth_bits)),
                                t_float)
            k32 = k if f32 else builder.trunc(k, i32)
            kf = builder.sitofp(k32, t_float)
            top = ir.Constant(i32, bias - 1)
            kc = builder.select(builder.icmp_signed(">", k32, top), top, k32)
            s = _pow2(builder, builder.neg(kc))
            return context.make_tuple(builder, sig.return_type, [m, kf, s])
        return types.UniTuple(nb_f, 3)(nb_f), codegen

    @intrinsic
    def scale2nk(typingctx, m, n, ka, kb):
        """m * 2**(n + ka + kb) (int32 n, ka, kb): rounded once
        (``llvm.ldexp``, one ``vscalefps/pd``) where AVX-512 has it;
        elsewhere by three normal factors 2**e1 * 2**e2 * 2**e3, the
        exponent first raised to ``floor`` (-280 in float32, -1900 in
        float64; exp_mul's |m| < 2**67 / 2**515, so the result rounds to zero
        either way), rounded once more at most per factor in the subnormal
        range."""
        def codegen(context, builder, sig, args):
            e = builder.add(builder.add(args[1], args[2]), args[3])
            if scalef:
                return _ldexp(builder, args[0], e)
            floor = ir.Constant(i32, -280 if f32 else -1900)
            e = builder.select(builder.icmp_signed("<", e, floor), floor, e)
            e1 = builder.ashr(e, ir.Constant(i32, 2))
            e2 = builder.ashr(builder.sub(e, e1), ir.Constant(i32, 1))
            e3 = builder.sub(builder.sub(e, e1), e2)
            r = args[0]
            for ek in (e1, e2, e3):
                r = builder.fmul(r, _pow2(builder, ek))
            return r
        return nb_f(nb_f, types.int32, types.int32, types.int32), codegen

    @intrinsic
    def ordered(typingctx, x):
        """The float's bits as a signed int whose order is the float order
        (NaNs land beyond +-inf); it is its own inverse (see `unordered`)."""
        def codegen(context, builder, sig, args):
            ity = ir.IntType(32 if f32 else 64)
            b = builder.bitcast(args[0], ity)
            sign = builder.ashr(b, ir.Constant(ity, (32 if f32 else 64) - 1))
            mask = builder.lshr(sign, ir.Constant(ity, 1))
            return builder.xor(b, mask)
        return nb_ord(nb_f), codegen

    @intrinsic
    def unordered(typingctx, k):
        def codegen(context, builder, sig, args):
            ity = ir.IntType(32 if f32 else 64)
            sign = builder.ashr(args[0], ir.Constant(ity, (32 if f32 else 64) - 1))
            mask = builder.lshr(sign, ir.Constant(ity, 1))
            return builder.bitcast(builder.xor(args[0], mask), t_float)
        return nb_f(nb_ord), codegen

    @intrinsic
    def exponent(typingctx, v):
        """v's binary exponent from its bits, clamped into [2 - bias,
        bias - 1] (an int32 e): v * 2**-e is then exact and |v * 2**-e| in
        [1, 2) for normal v, [2**-(mbits+1), 1) near and below the smallest
        normal, [2, 4) for the largest exponent; 0, inf and NaN stay
        themselves.  No branches: the loop around it stays vectorizable."""
        def codegen(context, builder, sig, args):
            b = builder.bitcast(args[0], ity)
            field = builder.and_(builder.lshr(b, ir.Constant(ity, mbits)),
                                 ir.Constant(ity, 2 * bias + 1))
            e = builder.sub(field, ir.Constant(ity, bias))
            e = e if f32 else builder.trunc(e, i32)
            lo_e, hi_e = ir.Constant(i32, 2 - bias), ir.Constant(i32, bias - 1)
            e = builder.select(builder.icmp_signed("<", e, lo_e), lo_e, e)
            return builder.select(builder.icmp_signed(">", e, hi_e), hi_e, e)
        return types.int32(nb_f), codegen

    @intrinsic
    def pow2n(typingctx, n):
        """2**n (n int32, normal range only): ``vscalef`` of 1 where AVX-512
        has it (one instruction: the float n it needs is the reduction's),
        else built from bits (an add and a shift)."""
        def codegen(context, builder, sig, args):
            if scalef:
                return _ldexp(builder, ir.Constant(t_float, 1.0), args[0])
            return _pow2(builder, args[0])
        return nb_f(types.int32), codegen

    log2e, ln2hi, ln2lo = T(c["log2e"]), T(c["ln2hi"]), T(c["ln2lo"])
    lo, hi, em1_lo, mul_lo = T(c["lo"]), T(c["hi"]), T(c["em1_lo"]), T(c["mul_lo"])
    one, zero = T(1.0), T(0.0)
    hi_ratio = T(RATIO_HI["f32" if f32 else "f64"])
    S = 64 if f32 else 512                # exp_mul's scaling step
    two_S, two_mS = T(2.0 ** S), T(2.0 ** -S)
    kS, kmS = np.int32(S), np.int32(-S)
    if f32:
        p = tuple(T(v) for v in EXP_POLY_F32)
    else:
        # Taylor coefficients 1/13! ... 1/2!; truncation error < 5e-18 on |r| <= ln2/2
        p = tuple(T(1.0 / math.factorial(k)) for k in range(13, 1, -1))
    # expm1's polynomial: r + r**2 * q(r), which keeps its accuracy near 0
    if f32:
        pm = tuple(T(v) for v in EXPM1_POLY_F32)
    else:
        pm = p

    # FMA contraction only inside the primitives: it makes them faster and no
    # less accurate, and it never reaches the formulas (RReLU is bit-exact).
    njit = inner_njit(fastmath={"contract"})
    inline = always_inline()

    @njit
    def _reduce(x):
        inline()
        # x = n ln2 + r, |r| <= ln2/2 (a hair more where x / ln2 rounds to a
        # tie): Cody-Waite with ln2 in two parts, n an int32
        n = round_int(x * log2e)
        nf = T(n)
        r = (x - nf * ln2hi) - nf * ln2lo
        return r, n

    @njit
    def _exp_poly(r):
        inline()
        # exp(r) on |r| <= ln2/2 in plain Horner form: one FMA a coefficient
        q = p[0]
        for k in range(1, len(p)):
            q = q * r + p[k]
        q = q * r + one
        return q * r + one

    @njit
    def _expm1_poly(r):
        inline()
        # expm1(r) = r + r**2 * (1/2 + r/6 + ...) on |r| <= ln2/2
        q = pm[0]
        for k in range(1, len(pm)):
            q = q * r + pm[k]
        return r + (r * r) * q

    @njit
    def exp(x):
        inline()
        xc = hi if x > hi else x
        xc = lo if xc < lo else xc          # NaN passes through both tests
        r, n = _reduce(xc)
        return scale2n(_exp_poly(r), n)

    @njit
    def exp_neg_ratio(x):
        """(q, s) with q / s = exp(-x): s = 2**m with m = round(x / ln2), and
        q = exp(m ln2 - x) in [0.70, 1.42] (the polynomial on the reduced
        argument).  x is clamped into [lo, hi_ratio] first (NaN passes), so
        s stays finite (2**127 / 2**1023 at most) and is 0 below about
        -103.3 / -744.4.  Against exp(-|x|) and a select on the sign, this
        takes no absolute value, compare or blend: the clamp is the only
        extra (sigmoid forward, float32: 4.65 -> 4.43 ns a vector).

        With ``vscalef`` (AVX-512) the clamp is one-sided: any x below lo
        gives s = 0 (x / ln2 beyond the int32 range rounds to -2**31, x86's
        "integer indefinite"; vscalef of 1 by -2**31 is 0) and q finite or
        +inf, so s / (s + q) is 0 as it should be, with one instruction
        fewer a vector (4.37-5.77 -> 4.29-5.72 ns, in-process A/B, three
        runs; bit-identical results).  The bit-built 2**m needs m in range."""
        inline()
        xc = hi_ratio if x > hi_ratio else x
        if not scalef:
            xc = lo if xc < lo else xc      # NaN passes through both tests
        m = round_int(xc * log2e)
        mf = T(m)
        t = (mf * ln2hi - xc) + mf * ln2lo  # -(xc - m ln2), Cody-Waite
        return _exp_poly(t), scale2n(one, m)

    @njit
    def exp_mul(x, a, b):
        """a * b * exp(x) for x <= 0, accurate (within ~2 ULP) also where
        exp(x) alone is subnormal or a * b alone overflows but the product
        is neither."""
        inline()
        xc = zero if x > zero else x
        xc = mul_lo if xc < mul_lo else xc
        r, n = _reduce(xc)
        # (a' * (exp(r) * b')) * 2**(n + ka + kb), rounded once in the
        # product and once by the scaling (scale2nk): within ~2 ULP.  With
        # S = 64 (float32) or 512 (float64): a' = a * 2**-S (ka = S) if
        # |a| >= 1, else a * 2**S (ka = -S), so |a'| is in [2**-85, 2**64)
        # (float32; [2**-562, 2**512) in float64) or 0, inf, NaN; b' is b
        # over 2**kb, kb its own exponent (|b'| in [2**-23, 4); b, alpha, is
        # the same for every element, and this leaves the loop).  The
        # product is then normal and finite whenever a and b are: nothing
        # overflows or loses bits to the subnormal range before the one
        # scaling.  (float32 through float64 cost 15 instructions a vector
        # in conversions.)
        kb = exponent(b)
        bs = b * pow2n(-kb)
        big = abs(a) >= one
        ka = kS if big else kmS
        as_ = a * (two_mS if big else two_S)
        return scale2nk(as_ * (_exp_poly(r) * bs), n, ka, kb)

    @njit
    def expm1(x):
        """exp(x) - 1 accurate near 0; valid for x <= ln(max float) - 1."""
        inline()
        xc = em1_lo if x < em1_lo else x
        r, n = _reduce(xc)
        e = _expm1_poly(r)
        s = pow2n(n)
        # 2**n * expm1(r) + (2**n - 1): exact scaling, one rounding in the sum
        return s * e + (s - one)

    # --- log1p, exp_split, two_prod (softplus, logsigmoid; c_src/kernels.inc
    # ports them line for line, with the same constants) ----------------------
    if f32:
        # musl's logf/log1pf Lg4..Lg1: R(z) = z (Lg1 + z (Lg2 + z (Lg3 + z Lg4)))
        # with z = s**2, s = f / (2 + f), |s| <= 0.1716; under 1 ULP
        lg = tuple(T(v) for v in (0xF89E26 / 2 ** 26, 0x91E9EE / 2 ** 25,
                                  0xCCCE13 / 2 ** 25, 0xAAAAAA / 2 ** 24))
    else:
        # fdlibm's log1p Lp7..Lp1 (|error of the fit| < 2**-58.45)
        lg = tuple(T(v) for v in (1.479819860511658591e-01, 1.531383769920937332e-01,
                                  1.818357216161805012e-01, 2.222219843214978396e-01,
                                  2.857142874366239149e-01, 3.999999999940941908e-01,
                                  6.666666666666735130e-01))
    two, half, inf = T(2.0), T(0.5), T(np.inf)
    split_lo = T(-210.0 if f32 else -1500.0)

    @njit
    def log1p(t):
        """log(1 + t) for t > -1 (+inf and NaN pass through; t <= -1 is not
        handled): within 1 ULP.  u = 1 + t rounded, its rounding error c
        (exact) carried along: 1 + t = (m + c 2**-k) 2**k with m in
        [sqrt(2)/2, sqrt(2)) (log_split), so log1p(t) = k ln2 + log1p(f),
        f = (m - 1) + c 2**-k (m - 1 exact, one rounding in the sum);
        log1p(f) = f - f**2/2 + s (f**2/2 + R(s**2)), s = f / (2 + f)
        (fdlibm's form), k ln2 in two parts (Cody-Waite)."""
        inline()
        u = one + t
        m, kf, s = log_split(u)
        c = (one - (u - t)) if kf >= two else (t - (u - one))
        f = (m - one) + c * s
        sd = f / (two + f)
        z = sd * sd
        R = lg[0]
        for k in range(1, len(lg)):
            R = R * z + lg[k]
        R = R * z
        hfsq = half * f * f
        r = kf * ln2hi - ((hfsq - (sd * (hfsq + R) + kf * ln2lo)) - f)
        return r if t < inf else t

    @njit
    def exp_split_in(v, vl):
        """exp_split for split_lo <= v <= 0 (callers clamp): no clamp, no
        select (a NaN v gives garbage: callers select); n an int32 here,
        which ldexp takes without a conversion."""
        inline()
        r, n = _reduce(v)
        return _exp_poly(r + vl), n

    @njit
    def exp_split(v, vl):
        """(q, nf) with exp(v + vl) = q * 2**nf, q in [0.70, 1.42] (the
        polynomial on the reduced argument, vl added after the reduction,
        where it is not swamped: vl is the low part of v = hi + lo), nf an
        integer-valued float; for v <= 0.  v is clamped at split_lo (-210 /
        -1500: exp(v) 2**(mbits + 1 - emin) still rounds to 0 there, so
        that q 2**nf divided by the smallest subnormal does too) and vl then
        dropped (-inf; vl NaN); NaN passes (nf is then garbage: callers
        select)."""
        inline()
        below = v < split_lo
        q, n = exp_split_in(split_lo if below else v, zero if below else vl)
        return q, T(n)

    ex_K = T(_ERFCX_K32 if f32 else _ERFCX_K64)
    ex_p = tuple(T(v) for v in (_ERFCX_P32 if f32 else _ERFCX_P64))

    ex_ch = T(float(_ERFCX_C))
    ex_cl = T(float(fractions.Fraction(_ERFCX_C) - fractions.Fraction(float(ex_ch))))
    # 1/P ~ 1.28125 + 0.28125 q within 6% (P falls from 1 to 2/pi)
    ip0, ip1 = T(1.28125), T(0.28125)

    erfcx_poly = _horner(njit, ex_p, inline)

    @njit
    def erfcx2(t):
        """(y, c) with erfc(t) exp(t**2) = y + c (c < 2 ULP of y), for t >= 0,
        finite (t <= 2**60, say): P(q) /
        (1 + c t), q = (t - K) / (t + K), Horner with FMA (the fit: 0.50 /
        0.72 eps).  1 + c t = s + sl exactly (c in two parts, c t by FMA,
        Fast2Sum); y = P / s rounded, r = P - y (s + sl) (FMA: exact but for
        the small y sl), c = r / s with 1 / s ~ y / P, 1 / P by a line in q
        (6%: the correction, about an ULP of y, is off by 0.06 ULP at most).
        Error of y + c: the fit's."""
        inline()
        q = (t - ex_K) / (t + ex_K)
        P = erfcx_poly(q)
        ct = ex_ch * t
        ctl = fma(ex_ch, t, -ct) + ex_cl * t
        s = one + ct
        sl = ((one - (s - ct)) if ct >= one else (ct - (s - one))) + ctl
        y = P / s
        r = fma(-y, s, P) - y * sl
        return y, r * (y * (ip0 + ip1 * q))

    ph_K, ph_2K = T(_PHI_K32), T(2 * _PHI_K32)
    phi_poly = _horner(njit, tuple(T(v) for v in _PHI_P32), inline)

    @njit
    def phi_ratio(a):
        """float32: (fh, fl) with F(a) = Phi(-a) exp(a**2 / 2) = erfcx(a /
        sqrt 2) / 2 = fh + fl unrounded, for 0 <= a <= 20 (callers clamp;
        NaN gives garbage: callers select).  F = P(q) / (a + K), q = (a - K)
        / (a + K) = 1 - 2K / (a + K), P by Horner (the fit: 0.34 * 2**-24).
        a + K = s + sl exactly (s - K is exact for a <= 20, and so is a -
        (s - K), the sum's rounding error); d = 1 / s, correctly rounded (one
        vector division: its throughput, 10 cycles a vector, is below the
        rest of the formula's), and dl = d (1 - s d - sl d) its correction,
        1 - s d exact in one FMA because d is correctly rounded: 1 / (s + sl)
        = d + dl to about 2**-46 (q's error would otherwise act as an error
        of a of K ULP: 4 ULP of F at a = 0); 1 - 2K d is exact for a <= 12,
        so q is rounded once.  fh + fl: P's error and the fit's."""
        inline()
        s = a + ph_K
        sl = a - (s - ph_K)
        d = one / s
        dl = d * (fma(-s, d, one) - sl * d)
        q = (one - ph_2K * d) - ph_2K * dl
        P = phi_poly(q)
        fh, fe = two_prod(P, d)
        return fh, fe + P * dl

    @njit
    def erfcx(t):
        """erfcx2's y + c, rounded once."""
        inline()
        y, c = erfcx2(t)
        return y + c

    @njit
    def frexp2(b):
        """(bm, kf) with b = bm * 2**kf exactly, bm in [1, 2) for normal b
        (exp_mul's split: in [2**-(mbits+1), 1) for a subnormal b, still
        exact); b finite and nonzero."""
        inline()
        kb = exponent(b)
        return b * pow2n(-kb), T(kb)

    @njit
    def two_prod(a, b):
        """(p, e): p = a * b rounded and its error e = a * b - p, exact
        (one FMA) while p is finite and not below the normal range."""
        inline()
        p_ = a * b
        return p_, fma(a, b, -p_)

    wide = wide_vectors()

    U = np.uint64

    @njit
    def row_max(x1, base, n):
        """Largest of ``x1[base:base + n]`` (a flat array addressed by offset:
        no slice, whose reference counting parallel loops pay for); vectorizes
        as an integer max.  If the row holds a NaN the result may or may not
        be NaN: callers that feed ``x - max`` to exp get NaN either way."""
        inline()
        m = ordered(T(-np.inf))
        for j in range(n):
            wide()
            k = ordered(x1[U(base) + U(j)])
            m = k if k > m else m
        return unordered(m)

    @njit
    def row_min(x1, base, n):
        """Smallest of ``x1[base:base + n]``, as row_max (NaN: either way)."""
        inline()
        m = ordered(T(np.inf))
        for j in range(n):
            wide()
            k = ordered(x1[U(base) + U(j)])
            m = k if k < m else m
        return unordered(m)

    @njit
    def exp_diff(x, m):
        """exp(x - m) for x <= m, as if x - m were exact: the rounding error of
        the difference (TwoSum, which contraction leaves exact) is added
        after the range reduction, where it is no longer swamped."""
        inline()
        d = x - m
        bb = d - x
        err = (x - (d - bb)) + (-m - bb)
        dc = lo if d < lo else d
        err = zero if d < lo else err        # also the NaN of -inf - -inf
        r, n = _reduce(dc)
        return scale2n(_exp_poly(r + err), n)

    @intrinsic
    def hash24(typingctx, i, key):
        """fastact._rng.hash24 on 32-bit integers (uint64 i and key in,
        float32 out): vectorizes on 32-bit lanes."""
        def codegen(context, builder, sig, args):
            i32, i64 = ir.IntType(32), ir.IntType(64)

            def c32(v):
                return ir.Constant(i32, v)

            def halves(v):
                return (builder.trunc(v, i32),
                        builder.trunc(builder.lshr(v, ir.Constant(i64, 32)), i32))

            (lo, hi), (k0, k1) = halves(args[0]), halves(args[1])
            h = builder.xor(builder.add(lo, k0),
                            builder.mul(builder.add(hi, k1), c32(_rng.K32)))
            h = builder.xor(h, builder.lshr(h, c32(16)))
            h = builder.mul(h, c32(_rng.F1))
            h = builder.xor(h, builder.lshr(h, c32(13)))
            h = builder.mul(h, c32(_rng.F2))
            h = builder.xor(h, builder.lshr(h, c32(16)))
            return builder.uitofp(builder.lshr(h, c32(8)), ir.FloatType())
        return types.float32(types.uint64, types.uint64), codegen

    # formula helpers get no contraction: RReLU slopes must stay bit-exact
    # (formula helpers inlined by Numba itself: a helper left a call by
    # LLVM kept the plain loops of gelu float64 scalar)
    prims = Prims(dt, exp, exp_neg_ratio, expm1, exp_mul, T, inner_njit(inline="always"))
    prims.row_max, prims.row_min, prims.exp_diff = row_max, row_min, exp_diff
    prims.log1p, prims.exp_split, prims.ldexp, prims.two_prod = log1p, exp_split, ldexp_f, two_prod
    prims.exp_split_in = exp_split_in
    prims.frexp2, prims.ldexp_normal, prims.erfcx = frexp2, ldexp_normal_f, erfcx
    prims.erfcx2, prims.fma = erfcx2, fma
    if f32:
        prims.phi_ratio = phi_ratio
    if f32:
        prims.hash24 = hash24
    return prims
