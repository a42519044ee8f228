"""Numba conversions between the narrow dtypes' bits (uint16) and float32.

Numba types neither float16 nor ``ml_dtypes.bfloat16`` arrays: the kernels
see their uint16 bits and convert each element with these intrinsics, in
the convention of :mod:`fastact._narrow` (F16C's).  Written as LLVM IR so
that the integer work stays in 32-bit vector lanes (Numba widens uint32
arithmetic to 64 bits: a bfloat16 sigmoid took 10 ms against 3).

float16 uses LLVM's ``half`` (``fpext``/``fptrunc``: ``vcvtph2ps`` and
``vcvtps2ph``) where the compile target has F16C; without it LLVM calls
``__extendhfsf2``/``__truncsfhf2``, which Numba's JIT does not resolve (a
segfault, not an error), so the integer versions are used instead.
"""
from __future__ import annotations

import functools


def f16c_target() -> bool:
    """Whether the CPU Numba compiles for has F16C: the host's features,
    unless NUMBA_CPU_NAME / NUMBA_CPU_FEATURES name another target."""
    from numba.core import config
    features = config.CPU_FEATURES
    if features is None:
        if config.CPU_NAME not in (None, "host"):
            return False          # a named CPU (generic): its features are unknown here
        from llvmlite import binding
        features = binding.get_host_cpu_features().flatten()
    return "+f16c" in features.split(",")


@functools.lru_cache(maxsize=None)
def converters(kind, hardware=None, quiet=True):
    """``(widen, narrow)`` for ``kind`` ("float16" or "bfloat16"): Numba
    intrinsics uint16 bits -> float32 and float32 -> uint16 bits.
    ``hardware`` (float16 only): LLVM's half conversions, default where
    :func:`f16c_target`.  ``quiet=False`` (bfloat16): the widening leaves a
    signaling NaN signaling, for kernels whose results are narrowed (which
    quiets every NaN, its payload kept) and whose arithmetic quiets one as
    the widening would (x86: the first NaN operand, made quiet): the same
    bits, and two instructions fewer a vector (in 512-bit code every one
    competes for two ports: a bfloat16 relu backward cost 0.19 ns an
    element against float16's 0.07)."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i16, i32, f32 = ir.IntType(16), ir.IntType(32), ir.FloatType()

    def C(v):
        return ir.Constant(i32, v)

    def bits_to_f32(b, h):
        """The float32 bits of narrow bits ``h`` (i16)."""
        u = b.zext(h, i32)
        if kind == "bfloat16" and not quiet:
            return b.shl(u, C(16))
        if kind == "bfloat16":
            nan = b.icmp_unsigned(">", b.and_(u, C(0x7FFF)), C(0x7F80))
            return b.or_(b.shl(u, C(16)), b.select(nan, C(0x00400000), C(0)))
        em, s = b.and_(u, C(0x7FFF)), b.shl(b.and_(u, C(0x8000)), C(16))
        # subnormals (and 0): em * 2**-24, exact in float32
        sub = b.bitcast(b.fmul(b.uitofp(em, f32), ir.Constant(f32, 2.0 ** -24)), i32)
        normal = b.add(b.shl(em, C(13)), C(0x38000000))          # rebias 15 -> 127
        special = b.or_(b.or_(b.shl(em, C(13)), C(0x7F800000)),
                        b.select(b.icmp_unsigned(">", em, C(0x7C00)), C(0x00400000), C(0)))
        r = b.select(b.icmp_unsigned("<", em, C(0x400)), sub,
                     b.select(b.icmp_unsigned("<", em, C(0x7C00)), normal, special))
        return b.or_(r, s)

    def f32_to_bits(b, f):
        """The narrow bits (i16) of float32 ``f``, rounded to nearest even."""
        u = b.bitcast(f, i32)
        a = b.and_(u, C(0x7FFFFFFF))
        nan = b.icmp_unsigned(">", a, C(0x7F800000))
        if kind == "bfloat16":
            hi = b.lshr(u, C(16))
            rounded = b.lshr(b.add(b.add(u, C(0x7FFF)), b.and_(hi, C(1))), C(16))
            return b.trunc(b.select(nan, b.or_(hi, C(0x40)), rounded), i16)
        s = b.and_(b.lshr(u, C(16)), C(0x8000))
        # below 2**-14: adding 0.5 aligns the 10 bits at the bottom of the
        # float, rounded to nearest even by the addition
        sub = b.sub(b.bitcast(b.fadd(b.bitcast(a, f32), ir.Constant(f32, 0.5)), i32),
                    C(0x3F000000))
        # normal: rebias 127 -> 15, round to nearest even on the 13 dropped bits
        nrm = b.lshr(b.add(b.add(a, C(0xC8000FFF)), b.and_(b.lshr(a, C(13)), C(1))), C(13))
        big = b.select(nan, b.or_(C(0x7E00), b.and_(b.lshr(a, C(13)), C(0x3FF))), C(0x7C00))
        r = b.select(b.icmp_unsigned(">=", a, C(0x47800000)), big,
                     b.select(b.icmp_unsigned("<", a, C(0x38800000)), sub, nrm))
        return b.trunc(b.or_(r, s), i16)

    if hardware is None:
        hardware = kind == "float16" and f16c_target()

    def widen_ir(b, v):
        if hardware:
            return b.fpext(b.bitcast(v, ir.HalfType()), f32)
        return b.bitcast(bits_to_f32(b, v), f32)

    def narrow_ir(b, v):
        if hardware:
            return b.bitcast(b.fptrunc(v, ir.HalfType()), i16)
        return f32_to_bits(b, v)

    def conversion(arg_kind, width, result, emit):
        """An intrinsic ``result(a)`` of ``emit``; ``a`` of ``arg_kind``
        (an integer or a float) and a wider one than ``width`` bits first
        truncated to that."""
        @intrinsic
        def convert(typingctx, a):
            if not isinstance(a, arg_kind):
                return None

            def codegen(context, builder, sig, args):
                v = args[0]
                if a.bitwidth > width:
                    v = (builder.trunc(v, i16) if arg_kind is types.Integer
                         else builder.fptrunc(v, f32))
                return emit(builder, v)
            return result(a), codegen
        return convert

    return (conversion(types.Integer, 16, types.float32, widen_ir),
            conversion(types.Float, 32, types.uint16, narrow_ir))
