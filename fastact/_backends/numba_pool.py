"""The Numba backend's parallel kernels on fastact's own thread pool.

Numba's threading layers (omp, workqueue, tbb) split a ``prange`` into one
share a thread and return when every thread has finished its share: a
thread the scheduler leaves off its core (another job on the machine, a CPU
quota) stalls the call (fastact issue #18).  So each parallel kernel is
written as a range worker, ``body(lo, hi, *args)`` over work units ``[lo,
hi)`` (elements, rows, blocks), and run on the C backend's pool
(``fa_pool_run``, c_src/pool.c): the calling thread and the pool's workers
take chunks of the units as each is free, and the call returns when they are
done, not when every worker has woken up.

The pieces: a ``numba.cfunc`` per kernel and argument layout,
``void(int64 lo, int64 hi, voidptr args)``, which unpacks the arguments and
calls the body; and a driver, compiled with Numba like any kernel, which
packs the arguments into a struct on its stack (arrays as data pointer and
shape, scalars as themselves) and calls ``fa_pool_run`` with the cfunc's
address.  Arrays are rebuilt in the cfunc without a reference count (no
atomic counters shared between threads); the driver's caller holds them for
the whole call.  Where the C backend is not built (or
``FASTACT_NUMBA_POOL=numba``), the same bodies run under Numba's own
``prange``, one chunk a thread.
"""
from __future__ import annotations

import functools
import hashlib
import os

from .._prims import kernel_njit


@functools.lru_cache(maxsize=None)
def _c_pool():
    """(address of fa_pool_run, the C library) or (None, reason)."""
    if os.environ.get("FASTACT_NUMBA_POOL", "").strip().lower() == "numba":
        return None, "FASTACT_NUMBA_POOL=numba"
    try:
        from . import c as cb
        mod = cb._import_extension()
        if not mod.lib.fa_threads_built():
            return None, "the C backend was built without threads"
        ffi = mod.ffi
        return int(ffi.cast("uintptr_t", ffi.addressof(mod.lib, "fa_pool_run"))), mod.lib
    except Exception as e:                     # not built: Numba's own threads
        return None, f"{type(e).__name__}: {e}"


def pool_in_use() -> str:
    """What runs the parallel Numba kernels: ``"fastact"`` (the C pool) or
    ``"numba"`` (its threading layer)."""
    return "fastact" if _c_pool()[0] is not None else "numba"


# --- packing the arguments -------------------------------------------------------

def _fields(ty):
    """The scalar fields a value of Numba type ``ty`` is packed into: an
    array (C-contiguous: the worker rebuilds it so) as its data pointer and
    shape, a tuple as its items'; a scalar as itself."""
    from numba import types
    if isinstance(ty, types.Array):
        if ty.layout != "C":
            raise TypeError(f"fastact pool: a range worker takes C-contiguous arrays, not {ty}")
        return ["ptr"] + ["i64"] * ty.ndim
    if isinstance(ty, types.BaseTuple):
        return [f for t in ty for f in _fields(t)]
    if isinstance(ty, (types.Integer, types.Float, types.Boolean)):
        return [ty]
    raise TypeError(f"fastact pool: cannot pass a {ty} to a range worker")


def layout_key(types_) -> str:
    """A text naming how ``types_`` are packed and rebuilt (the worker's):
    arrays by dtype and dimensions (read-only or not, one layout), scalars
    by type."""
    from numba import types

    def key(t):
        if isinstance(t, types.Array):
            return f"a{t.ndim}{t.dtype}"
        if isinstance(t, types.BaseTuple):
            return "(" + ",".join(key(u) for u in t) + ")"
        return str(t)
    return ",".join(key(t) for t in types_)


def layout_hash(types_) -> int:
    return int.from_bytes(hashlib.sha256(layout_key(types_).encode()).digest()[:7], "little")


def _struct(context, types_):
    from llvmlite import ir
    out = []
    for f in (f for t in types_ for f in _fields(t)):
        if f == "ptr":
            out.append(ir.IntType(8).as_pointer())
        elif f == "i64":
            out.append(ir.IntType(64))
        else:
            out.append(context.get_value_type(f))
    return ir.LiteralStructType(out)


@functools.lru_cache(maxsize=None)
def _intrinsics():
    """``pack(args) -> address``, ``layout(args) -> hash`` and ``call_pool(
    entry, worker, address, units, grain, min_units, nthreads) -> int32``."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    def flatten(context, builder, ty, val, out):
        if isinstance(ty, types.Array):
            ary = context.make_array(ty)(context, builder, val)
            out.append(builder.bitcast(ary.data, ir.IntType(8).as_pointer()))
            out.extend(cgutils.unpack_tuple(builder, ary.shape, ty.ndim))
        elif isinstance(ty, types.BaseTuple):
            for k, t in enumerate(ty):
                flatten(context, builder, t, builder.extract_value(val, k), out)
        else:
            out.append(val)

    @intrinsic
    def pack(typingctx, args):
        if not isinstance(args, types.BaseTuple):
            return None
        _fields(args)                          # TypeError for what cannot pass

        def codegen(context, builder, sig, llargs):
            st = _struct(context, list(args))
            fields = []
            for k, t in enumerate(args):
                flatten(context, builder, t, builder.extract_value(llargs[0], k), fields)
            slot = cgutils.alloca_once(builder, st)
            for k, v in enumerate(fields):
                builder.store(v, cgutils.gep_inbounds(builder, slot, 0, k))
            return builder.ptrtoint(slot, ir.IntType(64))
        return types.int64(args), codegen

    @intrinsic
    def layout(typingctx, args):
        if not isinstance(args, types.BaseTuple):
            return None
        h = layout_hash(list(args))

        def codegen(context, builder, sig, llargs):
            return ir.Constant(ir.IntType(64), h)
        return types.int64(args), codegen

    @intrinsic
    def call_pool(typingctx, entry, worker, address, units, grain, min_units, nthreads):
        i64, i32 = ir.IntType(64), ir.IntType(32)
        i8p = ir.IntType(8).as_pointer()

        def codegen(context, builder, sig, llargs):
            cb = ir.FunctionType(ir.VoidType(), [i64, i64, i8p]).as_pointer()
            fnty = ir.FunctionType(i32, [cb, i8p, i64, i64, i64, i32])
            vals = [context.cast(builder, v, t, types.int64)
                    for v, t in zip(llargs, sig.args)]
            fn = builder.inttoptr(vals[0], fnty.as_pointer())
            return builder.call(fn, [builder.inttoptr(vals[1], cb),
                                     builder.inttoptr(vals[2], i8p), vals[3], vals[4],
                                     vals[5], builder.trunc(vals[6], i32)])
        return types.int32(entry, worker, address, units, grain, min_units, nthreads), codegen

    return pack, layout, call_pool


def _unpacker(types_):
    """``unpack(address)``: the tuple of ``types_`` that ``pack`` stored
    there, arrays rebuilt C-contiguous and without a reference count."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    types_ = tuple(types.Array(t.dtype, t.ndim, "C") if isinstance(t, types.Array) else t
                   for t in types_)
    result = types.Tuple(types_)

    def rebuild(context, builder, ty, fields):
        if isinstance(ty, types.Array):
            data, shape = fields.pop(0), [fields.pop(0) for _ in range(ty.ndim)]
            ary = context.make_array(ty)(context, builder)
            itemsize = context.get_abi_sizeof(context.get_data_type(ty.dtype))
            strides, step = [], ir.Constant(ir.IntType(64), itemsize)
            for s in reversed(shape):
                strides.insert(0, step)
                step = builder.mul(step, s)
            context.populate_array(
                ary, data=builder.bitcast(data, ary.data.type),
                shape=cgutils.pack_array(builder, shape),
                strides=cgutils.pack_array(builder, strides),
                itemsize=context.get_constant(types.intp, itemsize), meminfo=None)
            return ary._getvalue()
        if isinstance(ty, types.BaseTuple):
            return context.make_tuple(builder, ty, [rebuild(context, builder, t, fields)
                                                    for t in ty])
        return fields.pop(0)

    @intrinsic
    def unpack(typingctx, address):
        def codegen(context, builder, sig, llargs):
            st = _struct(context, list(types_))
            if isinstance(sig.args[0], types.Integer):
                slot = builder.inttoptr(llargs[0], st.as_pointer())
            else:                                   # the cfunc's voidptr
                slot = builder.bitcast(llargs[0], st.as_pointer())
            fields = [builder.load(cgutils.gep_inbounds(builder, slot, 0, k))
                      for k in range(len(st.elements))]
            return context.make_tuple(builder, result, [rebuild(context, builder, t, fields)
                                                        for t in types_])
        return result(address), codegen

    return unpack


# --- the kernels -----------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _no_alias():
    """The ``alias`` of a kernel without cases: 0."""
    from .._prims import inner_njit

    @inner_njit()
    def no_alias(*args):
        return 0
    return no_alias


class PoolKernel:
    """A parallel kernel: ``kernel(nthreads, *args)`` runs ``body(lo, hi,
    *args)`` over the ``n`` units of ``(n, least) = units(*args)`` in chunks
    (multiples of ``grain`` units, at least ``least``) on the calling thread
    and up to ``nthreads - 1`` workers of the pool.  ``body`` and ``units``
    are Numba functions; ``body`` should be inlined (``always_inline``).

    ``alias`` (optional), a Numba function ``alias(*args) -> case``: which
    input the output is (0: none), and ``body`` then a function ``body(case)
    -> Numba body``, that case's loops, whose worker is compiled when a call
    first has that case.  A loop is compiled for in-place calls with one
    array for both (numba_cpu._same_address), and compiled in one kernel
    with the others, that doubled or tripled a kernel's compile (the CI's
    compile step 364 -> 530-560 s), for calls that few programs make."""

    def __init__(self, tag, body, units, grain=1, alias=None):
        self.tag, self.body, self.units = tag, body, units
        self.grain, self.alias = grain, alias
        self._workers = {}                  # (layout hash, case) -> cfunc
        self._last = (0, 0)                 # (key, worker address)
        self._drive = None
        self._par = {}                      # case -> prange kernel

    # -- the C pool
    def _driver(self):
        if self._drive is None:
            pack, layout, call_pool = _intrinsics()
            units, alias = self.units, self.alias or _no_alias()

            def drive(entry, worker, want, grain, nthreads, *args):
                # want: the worker's key, its layout's hash and case
                if layout(args) * 4 + alias(*args) != want:
                    return -2
                n, least = units(*args)
                return call_pool(entry, worker, pack(args), n, grain, least, nthreads)
            self._drive = kernel_njit(self.tag + "_drive", nogil=True)(drive)
        return self._drive

    def case(self, args) -> int:
        """The case of ``args``: ``alias(*args)``, else 0."""
        return 0 if self.alias is None else int(self.alias(*args))

    def _body(self, case):
        return self.body if self.alias is None else self.body(case)

    def _tag(self, case):
        """The tag of ``case``'s compiled code (its disk-cache name)."""
        return self.tag if case == 0 else f"{self.tag}_a{case}"

    def worker(self, args, case=0):
        """The range worker (a ``numba.cfunc``) for arguments like ``args``
        of ``case``, and its key."""
        import numba
        types_ = [numba.typeof(a) for a in args]
        h = layout_hash(types_)
        w = self._workers.get((h, case))
        if w is None:
            w = self._workers[h, case] = _make_worker(self._tag(case), self._body(case),
                                                      tuple(types_))
        return h * 4 + case, w

    def __call__(self, nthreads, *args):
        entry, _ = _c_pool()
        if entry is None:
            return self._numba(nthreads, *args)
        drive = self._driver()
        key, address = self._last
        rc = drive(entry, address, key, self.grain, nthreads, *args)
        if rc == -2:                        # arguments of another layout or case
            key, w = self.worker(args, self.case(args))
            self._last = (key, w.address)
            rc = drive(entry, w.address, key, self.grain, nthreads, *args)
        if rc != 0:
            raise RuntimeError(f"fastact: the pool refused {self.tag} ({rc})")

    @property
    def stats(self):
        """Disk-cache hits and misses of the driver and the range workers
        (a dispatcher's ``stats``, summed: what ``fastact warmup`` filled)."""
        from types import SimpleNamespace
        hits, misses = [], []
        for d in (self._drive, *self._par.values()):
            if d is not None:
                hits += list(d.stats.cache_hits)
                misses += list(d.stats.cache_misses)
        for k, w in self._workers.items():
            (hits if w.cache_hits else misses).append(("worker", k))
        return SimpleNamespace(cache_hits=hits, cache_misses=misses)

    def inspect_llvm(self):
        """``{name: LLVM IR}`` of what ran: the range workers (the C pool)
        or the ``prange`` kernel, as a dispatcher's ``inspect_llvm``."""
        if self._par:
            return {f"{k}_{c}": ir for c, p in self._par.items()
                    for k, ir in p.inspect_llvm().items()}
        return {k: w.inspect_llvm() for k, w in self._workers.items()}

    # -- Numba's own threads (no C pool)
    def _numba(self, nthreads, *args):
        import numba
        case = self.case(args)
        par = self._par.get(case)
        if par is None:
            par = self._par[case] = _prange_kernel(self._tag(case), self._body(case),
                                                   self.units, len(args))
        # the caller holds numba_cpu's lock of Numba's pool
        if numba.get_num_threads() != nthreads:
            numba.set_num_threads(nthreads)
        par(nthreads, *args)


def _prange_kernel(tag, body, units, arity):
    """``par(nchunks, a0, ..)``: ``body`` over ``nchunks`` equal chunks of
    the units, a ``prange`` over the chunks.  Written out for the arity (a
    parallel loop cannot take the arrays in a ``*args`` tuple), in this
    file's name so that Numba can cache it."""
    import numba
    names = ", ".join(f"a{k}" for k in range(arity))
    src = (f"def par(nchunks, {names}):\n"
           f"    n = units({names})[0]\n"
           f"    for c in prange(nchunks):\n"
           f"        body(c * n // nchunks, (c + 1) * n // nchunks, {names})\n")
    ns = {"__name__": __name__, "units": units, "body": body, "prange": numba.prange}
    exec(compile(src, __file__, "exec"), ns)
    return kernel_njit(tag + "_prange", parallel=True, nogil=True)(ns["par"])


def _make_worker(tag, body, types_):
    """The cfunc ``void(int64 lo, int64 hi, voidptr args)`` calling ``body(lo,
    hi, *args)``, cached on disk like the kernels (prims.kernel_njit)."""
    from numba import types
    from numba.core.ccallback import CFunc

    from .._prims import _kernel_cache_class
    unpack = _unpacker(types_)

    def work(lo, hi, address):
        body(lo, hi, *unpack(address))

    h = hashlib.sha256(layout_key(types_).encode()).hexdigest()[:12]
    work.__qualname__ = f"{work.__qualname__}__{tag}_w{h}"
    sig = ((types.int64, types.int64, types.voidptr), types.void)
    cf = CFunc(work, sig, locals={}, options={"error_model": "numpy", "nogil": True})
    cf._cache = _kernel_cache_class()(work)
    cf.compile()
    return cf
