"""SIMD C backend: the kernels of ``c_src/`` compiled through cffi by ``build.py``.

The one backend whose formulas are written again (in C, from
:mod:`fastact._registry` and :mod:`fastact._prims`); the differential tests
against the reference keep them honest.  Every kernel is compiled for AVX-512,
AVX2+FMA and a portable baseline; the first call picks the best one the CPU
supports, capped by ``FASTACT_C_ISA=avx512|avx2|baseline``.  ``describe()``
reports the choice.  Calls release the GIL (cffi's out-of-line API mode);
arrays of at least ``config.C_PARALLEL_MIN`` elements are cut into chunks
that the calling thread and the workers of fastact's pool (c_src/pool.c,
``fastact.get_num_threads()`` threads in all) take as each is free.  The memory-bound kernels write
outputs of at least ``config.STREAM_MIN_BYTES`` bytes with non-temporal
(streaming) stores, which skip reading the output's cache lines before
writing them: faster once the output no longer fits the caches, the same
results.

The elementwise kernels are called through ``_cfastcall`` (``c_src/fastcall.c``),
a small CPython extension that reads the arrays' pointers with the NumPy C API
and calls ``fa_elementwise`` directly: relu on 1024 float32 with ``out=``,
the kernel call alone, 0.2 us against 1.0 through cffi's ``from_buffer`` and
0.5 for the Numba backend's dispatcher.  Where it is not built (or
``FASTACT_C_FASTCALL=0``) they are called through cffi.

``FASTACT_C_LIBRARY=/path/to/_cfastact*.so`` loads another build of the
extension (the sanitizer build of the tests) instead of the installed one.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import pathlib

import numpy as np

from .. import _threads, config
from .._narrow import is_bfloat16
from .._registry import REGISTRY, rowwise
from .._spec import PASS_SUFFIX, gated
from . import Backend, inner_columns, pair_sum, prelu_run, round_pairs
from .widened import Widened, c_conversions

ISA_LEVELS = ("baseline", "avx2", "avx512")
_MODULE = "fastact._backends._cfastact"
_UNBUILT_NOTE = pathlib.Path(__file__).with_name("_cfastact.unbuilt")

_FASTCALL_MODULE = "fastact._backends._cfastcall"

def _kernel_id_name(name, pass_):
    """The C kernel id of a registry entry's pass (c_src/ops.h, generated
    from the registry): ``FA_K_<NAME>_<FWD|BWD>``."""
    return f"FA_K_{name.upper()}_{PASS_SUFFIX[pass_].upper()}"


_SUFFIX = {"f": "f32", "d": "f64"}
# the row-wise kernels' dtypes by NumPy's character: float32, float64, and
# the narrow float16 and bfloat16 (ml_dtypes), whose bits go to C as uint16
_ROW_DTYPES = {"f": "FA_F32_IDX", "d": "FA_F64_IDX", "e": "FA_F16_IDX", "E": "FA_BF16_IDX"}
# the row-wise kernels: op -> (inputs, arrays) of its call, extents after them
_ROWWISE = {"prelu_fwd": (2, 3), "prelu_bwd": (3, 5),
            **{f"{n}_{p}": (k, k + 1) for n in rowwise() + gated()
               for p, k in (("fwd", 1), ("bwd", 2))}}
_CTYPE = {"f": "float[]", "d": "double[]"}


def _c_params(params, indexed):
    """fa_elementwise's (p0, p1, p2, key): the floats padded to three, the key apart."""
    key, floats = (int(params[0]), params[1:]) if indexed else (0, params)
    return (*floats, *(0.0,) * (3 - len(floats)), key)


class _Narrow(Widened):
    """The C backend on narrow arrays: every kernel reads their bits and
    converts chunks or rows to float32 itself (c_src/narrow.inc), the
    float32 kernel between the conversions.  PReLU's weights enter as
    float32 and its weight gradient is summed as float32's, then rounded
    once to the weight's dtype."""

    def elementwise(self, name, pass_, ins, out, params):
        self.backend._narrow_elementwise(name, pass_, ins, out, params)

    def elementwise_kernel(self, name, pass_, dtype, small):
        if self.backend._fastcall is not None:     # fastcall.c takes both narrow dtypes
            return self.backend._fast_kernel(name, pass_, np.dtype(dtype))
        return super().elementwise_kernel(name, pass_, dtype, small)

    def prelu_forward(self, x, w, out):
        self.backend.prelu_forward(x, self._f32(w), out)

    def prelu_backward(self, g, x, w, gx, gw):
        gw32 = gw if gw.dtype == np.float32 else np.empty(gw.shape, np.float32)
        self.backend.prelu_backward(g, x, self._f32(w), gx, gw32)
        self._back(gw, gw32)

    def rows_forward(self, name, x, out):
        self.backend.rows_forward(name, x, out)

    def rows_backward(self, name, g, y, out):
        self.backend.rows_backward(name, g, y, out)

    def rows_inner_forward(self, name, x, out):
        self.backend.rows_inner_forward(name, x, out)

    def rows_inner_backward(self, name, g, y, out):
        self.backend.rows_inner_backward(name, g, y, out)

    def gated_forward(self, name, x, out):
        self.backend.gated_forward(name, x, out)

    def gated_backward(self, name, g, x, out):
        self.backend.gated_backward(name, g, x, out)


def _requested_isa():
    v = os.environ.get("FASTACT_C_ISA", "").strip()
    if v and v not in ISA_LEVELS:
        raise ValueError(f"FASTACT_C_ISA={v!r} is not one of {', '.join(ISA_LEVELS)}")
    return v or None


def _import_extension():
    path = os.environ.get("FASTACT_C_LIBRARY", "").strip()
    try:
        if path:
            spec = importlib.util.spec_from_file_location(_MODULE, path)
            if spec is None:
                raise ImportError(f"FASTACT_C_LIBRARY={path!r} is not an extension module")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod
        return importlib.import_module(_MODULE)
    except ImportError as e:
        why = _UNBUILT_NOTE.read_text().strip() if _UNBUILT_NOTE.exists() else str(e)
        raise ImportError(f"not built: {why} (run `python build.py` or reinstall "
                          "with a C compiler)") from e


def _import_fastcall():
    """The ``_cfastcall`` module, or the reason it is not used."""
    if os.environ.get("FASTACT_C_FASTCALL", "").strip() == "0":
        return None, "disabled by FASTACT_C_FASTCALL=0"
    try:
        return importlib.import_module(_FASTCALL_MODULE), None
    except ImportError as e:
        return None, f"not built: {e}"


class CBackend(Backend):
    name = "c"
    typed_params = False      # C converts a double parameter to float itself

    def load(self):
        requested = _requested_isa()
        mod = _import_extension()
        self._ffi, lib = mod.ffi, mod.lib
        self._lib = lib
        if requested is not None:
            lib.fa_set_isa(ISA_LEVELS.index(requested))
        lib.fa_isa()                       # resolve now: describe() is then exact
        lib.fa_set_stream_min(config.STREAM_MIN_BYTES)
        fb = self._ffi.from_buffer
        self._from_buffer = fb
        self._ctype = {ch: self._ffi.typeof(t) for ch, t in _CTYPE.items()}
        self._fastcall, self._fastcall_reason = _import_fastcall()
        self._fast_kernels = {}
        self._walks = {}          # fa_elementwise_strided's arguments by layout
        # (op, dtype char) -> k(*arrays, *extents): through _cfastcall where
        # it loads (about 1 us less a call than cffi's from_buffer per array);
        # float32's and float64's made here, the narrow dtypes' by _row
        self._dtype_ids = {ch: getattr(lib, name) for ch, name in _ROW_DTYPES.items()}
        self._rowwise = {(op, ch): self._row_kernel(op, ch) for op in _ROWWISE for ch in _SUFFIX}
        return self

    def _row(self, op, dtype):
        """The row kernel ``op`` of ``dtype`` from ``_rowwise``; a narrow
        dtype's made when first asked for, so that bfloat16's dtype is at
        hand for _cfastcall (float16 softmax on 4 x 16 elements: 2.5 us a
        call, against 4.9 through cffi)."""
        k = self._rowwise.get((op, dtype.char))
        if k is None:
            k = self._rowwise[op, dtype.char] = self._row_kernel(op, dtype.char, dtype)
        return k

    def _row_kernel(self, op, ch, dtype=None):
        """``k(*arrays, *extents)`` for a PReLU, softmax or gated kernel (the
        arrays and extents of ``fa_rowwise`` in c_src/fastact.h); raises
        MemoryError where PReLU backward cannot allocate its sums.
        _cfastcall's for float32 and float64, and for a narrow ``dtype``
        where given (but PReLU's, whose weights are float32 there)."""
        ninputs, narrays = _ROWWISE[op]
        name = f"fastact C {op}"
        if self._fastcall is not None and (
                ch in _SUFFIX or (dtype is not None and not op.startswith("prelu"))):
            ffi, lib = self._ffi, self._lib
            address = int(ffi.cast("uintptr_t", ffi.addressof(lib, "fa_rowwise")))
            return self._fastcall.make_row_kernel(
                address, getattr(lib, "FA_K_" + op.upper()),
                np.dtype(ch) if dtype is None else dtype,
                config.C_PARALLEL_MIN, _threads.team_size, name)
        fn, buf = self._lib.fa_rowwise, self._buffer
        kid, null = getattr(self._lib, "FA_K_" + op.upper()), self._ffi.NULL
        dtid = getattr(self._lib, _ROW_DTYPES[ch])
        threads = self._threads

        def call(*args):
            bufs = [buf(a, i >= ninputs) for i, a in enumerate(args[:narrays])]
            ins = bufs[:ninputs] + [null] * (3 - ninputs)
            outs = bufs[ninputs:] + [null] * (2 - (narrays - ninputs))
            dims = list(args[narrays:]) + [0] * (3 - len(args[narrays:]))
            rc = fn(dtid, kid, *ins, *outs, *dims, threads(args[0].size))
            if rc == -1 and op.startswith("prelu"):
                raise MemoryError(f"{name}: could not allocate its {args[narrays + 1]}-channel "
                                  "partial sums")
            if rc == -1:
                raise MemoryError(f"{name}: could not allocate the float32 buffers of its "
                                  f"rows of {args[narrays + 1]}")
            if rc != 0:
                raise RuntimeError(f"{name}: fa_rowwise refused the call ({rc})")
        return call

    def _buffer(self, a, writeable=False):
        """cffi's buffer of array ``a``; a narrow one's uint16 bits (NumPy
        exports no buffer of bfloat16)."""
        return self._from_buffer("char[]", a.view(np.uint16) if a.itemsize == 2 else a,
                                 writeable)

    @staticmethod
    def _threads(n):
        return _threads.team_size() if n >= config.C_PARALLEL_MIN else 1

    def elementwise(self, name, pass_, ins, out, params):
        self.elementwise_kernel(name, pass_, out.dtype.type, False)(*ins, out, params)

    def elementwise_kernel(self, name, pass_, dtype, small):
        if self._fastcall is not None:
            return self._fast_kernel(name, pass_, np.dtype(dtype))
        # everything looked up once: a call is the from_buffer of each array
        # (about 0.25 us apiece) and the C call itself
        dt = np.dtype(dtype)
        fn, ct = self._lib.fa_elementwise, self._ctype[dt.char]
        kid, dtid = getattr(self._lib, _kernel_id_name(name, pass_)), int(dt.itemsize == 8)
        fb, threads = self._from_buffer, _threads.team_size
        cmin, indexed, null = config.C_PARALLEL_MIN, REGISTRY[name].indexed, self._ffi.NULL

        if pass_ == "forward":
            def run(x, out, params):
                n = out.shape[0]
                fn(dtid, kid, fb(ct, x), null, fb(ct, out, True), n, *_c_params(params, indexed),
                   1 if n < cmin else threads())
        else:
            def run(g, s, out, params):
                n = out.shape[0]
                fn(dtid, kid, fb(ct, g), fb(ct, s), fb(ct, out, True), n,
                   *_c_params(params, indexed), 1 if n < cmin else threads())
        return run

    def elementwise_rows(self, name, pass_, ins, out, params, starts):
        rows, m = out.shape
        indexed = REGISTRY[name].indexed
        key, floats = (int(params[0]), params[1:]) if indexed else (0, params)
        fb, ct = self._from_buffer, self._ctype[out.dtype.char]
        rc = self._lib.fa_elementwise_rows(
            int(out.dtype.itemsize == 8), getattr(self._lib, _kernel_id_name(name, pass_)),
            fb(ct, ins[0]), fb(ct, ins[1]) if len(ins) > 1 else self._ffi.NULL,
            fb(ct, out, True), rows, m, self._ffi.from_buffer("int64_t[]", starts),
            *(float(v) for v in floats), *(0.0,) * (3 - len(floats)), key,
            self._threads(out.size))
        if rc != 0:
            raise RuntimeError(f"fastact C {name}: fa_elementwise_rows refused the call ({rc})")

    def _narrow_methods(self):
        return _Narrow(self, c_conversions())

    def _narrow_elementwise(self, name, pass_, ins, out, params):
        """fa_elementwise on float16 or bfloat16 arrays (their uint16 bits)."""
        lib, fb, n = self._lib, self._from_buffer, out.shape[0]
        dtid = lib.FA_BF16_IDX if is_bfloat16(out.dtype) else lib.FA_F16_IDX
        bufs = [fb("uint16_t[]", a.view(np.uint16)) for a in ins]
        if len(bufs) == 1:
            bufs.append(self._ffi.NULL)
        lib.fa_elementwise(dtid, getattr(lib, _kernel_id_name(name, pass_)), *bufs,
                           fb("uint16_t[]", out.view(np.uint16), True), n,
                           *_c_params(params, REGISTRY[name].indexed), self._threads(n))

    def narrow_convert(self, dtype, to_f32, a):
        """Tests: ``a`` converted by the current level's conversions
        (fa_narrow_convert): narrow ``dtype`` bits (uint16) to float32 where
        ``to_f32``, else float32 to those bits."""
        dtid = self._lib.FA_BF16_IDX if is_bfloat16(np.dtype(dtype)) else self._lib.FA_F16_IDX
        a = np.ascontiguousarray(a, np.uint16 if to_f32 else np.float32)
        out = np.empty(a.shape, np.float32 if to_f32 else np.uint16)
        fb = self._from_buffer
        self._lib.fa_narrow_convert(dtid, int(to_f32), fb("char[]", a), fb("char[]", out, True),
                                    a.size)
        return out

    def elementwise_strided(self, name, pass_, walk, params):
        out = walk.arrays[-1]
        layout = (name, pass_, out.itemsize, walk.dims, walk.strides)
        args = self._walks.get(layout)
        if args is None:
            args = self._walk_args(name, pass_, out.itemsize, walk)
            if len(self._walks) >= 4096:
                self._walks.clear()
            self._walks[layout] = args
        head, tail, indexed, nin = args
        key, floats = (int(params[0]), params[1:]) if indexed else (0, params)
        if self._fastcall is not None:
            addresses = self._fastcall.addresses(walk.arrays, walk.starts)
        else:
            addresses = [walk.address(k) for k in range(nin + 1)]
        if nin == 1:
            addresses.insert(1, 0)
        rc = self._lib.fa_elementwise_strided(*head, addresses, *tail, *floats,
                                              *(0.0,) * (3 - len(floats)), key,
                                              self._threads(walk.size))
        if rc != 0:
            raise RuntimeError(f"fastact C {name}: fa_elementwise_strided refused the "
                               f"call ({rc})")

    def _walk_args(self, name, pass_, itemsize, walk):
        """The arguments of fa_elementwise_strided for a walk's geometry:
        (before the addresses, after them up to the parameters, indexed,
        inputs)."""
        ffi, lib, plan = self._ffi, self._lib, walk.plan
        ndim, binary = len(walk.dims), pass_ != "forward"
        # (in0, in1, out): a forward has no in1
        ops = (0, 1, 2) if binary else (0, None, 1)
        strides = [s for k in ops for s in ((0,) * ndim if k is None else walk.strides[k])]
        head = (int(itemsize == 8), getattr(lib, _kernel_id_name(name, pass_)))
        tail = (ndim, ffi.new("int64_t[]", walk.dims), ffi.new("int64_t[]", strides),
                plan.rows, plan.cols, plan.flags(binary))
        return head, tail, REGISTRY[name].indexed, 1 if pass_ == "forward" else 2

    def _fast_kernel(self, name, pass_, dtype):
        """The ``_cfastcall`` kernel object: called as the closures above."""
        key = (name, pass_, dtype.char)
        k = self._fast_kernels.get(key)
        if k is None:
            kid = getattr(self._lib, _kernel_id_name(name, pass_))
            nparams = len(REGISTRY[name].params)
            address = int(self._ffi.cast("uintptr_t",
                                         self._ffi.addressof(self._lib, "fa_elementwise")))
            k = self._fast_kernels[key] = self._fastcall.make_kernel(
                address, kid, dtype, pass_ != "forward", nparams, REGISTRY[name].indexed,
                config.C_PARALLEL_MIN, _threads.team_size,
                f"fastact C {name}_{PASS_SUFFIX[pass_]}")
        return k

    @staticmethod
    def _short_rows(x, w):
        """The kernels' calls for a PReLU of ``x`` (outer, C, inner), as
        (lo, hi, weights, outer, C, inner) over samples ``lo:hi``.  Channel
        rows shorter than ``config.PRELU_ROW_MIN`` go to the kernels'
        ``inner == 1`` path, vectorized across the positions of ``k``
        samples, the Numba kernels' runs (:func:`prelu_run`: at least
        ``config.PRELU_RUN_MIN`` positions), against the weights repeated to
        that length; where ``k`` does not divide the batch, the samples left
        over are one more, shorter run.  Segments of a few elements, one per
        channel, do not vectorize ((2**18, 64, 8) float32 ran at a twentieth
        of the copy; (2**20 + 1, 4) at a twelfth of (2**20, 4) while runs
        had to divide the batch)."""
        outer, C, inner = x.shape
        ci = C * inner
        if inner >= config.PRELU_ROW_MIN or ci == 0 or outer == 0:
            return [(0, outer, w, outer, C, inner)]
        k = min(outer, prelu_run(ci) // ci)
        if k == 1 and inner == 1:
            return [(0, outer, w, outer, C, 1)]
        row = np.repeat(w, inner)
        main = outer - outer % k
        calls = [(0, main, np.tile(row, k), main // k, k * ci, 1)]
        if main < outer:
            rest = outer - main
            calls.append((main, outer, np.tile(row, rest), 1, rest * ci, 1))
        return calls

    def prelu_forward(self, x, w, out):
        kernel = self._row("prelu_fwd", out.dtype)
        calls = self._short_rows(x, w)
        if len(calls) == 1:
            kernel(x, calls[0][2], out, *calls[0][3:])
            return
        for lo, hi, ws, *shape in calls:
            kernel(x[lo:hi], ws, out[lo:hi], *shape)

    def prelu_backward(self, g, x, w, gx, gw):
        kernel = self._row("prelu_bwd", gx.dtype)
        calls = self._short_rows(x, w)
        C, inner = x.shape[1], x.shape[2]
        if calls[0][2] is w:
            pairs = np.empty(2 * C)
            kernel(g, x, w, gx, pairs, *calls[0][3:])
            # round_pairs in C: its dozen NumPy calls, right after a kernel
            # that streamed the caches full, took 30-60 us ((16, 64, 1024)
            # float32, 1 thread: a tenth of the kernel's time)
            fb = self._from_buffer
            if gw.flags.c_contiguous and gw.dtype.char in "fd":
                self._lib.fa_round_pairs(self._dtype_ids[gw.dtype.char], fb("double[]", pairs),
                                         C, fb(gw, require_writable=True))
            else:
                gw[...] = round_pairs(pairs[:C], pairs[C:], gw.dtype)
            return
        # short rows: one pair per position, added up by channel here
        his, los = [], []
        for lo, hi, ws, *shape in calls:
            pairs = np.empty(2 * ws.size)
            kernel(g[lo:hi], x[lo:hi], ws, gx[lo:hi], pairs, *shape)
            for part, into in ((pairs[:ws.size], his), (pairs[ws.size:], los)):
                into.append(part.reshape(-1, C, inner).transpose(1, 0, 2).reshape(C, -1))
        total = pair_sum(np.concatenate(his, axis=1), np.concatenate(los, axis=1), 1)
        gw[...] = round_pairs(*total, gw.dtype)

    def rows_forward(self, name, x, out):
        self._row(name + "_fwd", out.dtype)(x, out, *x.shape)

    def rows_backward(self, name, g, y, out):
        self._row(name + "_bwd", out.dtype)(g, y, out, *y.shape)

    def rows_inner_forward(self, name, x, out):
        self._rows_inner(name + "_fwd", x, None, out)

    def rows_inner_backward(self, name, g, y, out):
        self._rows_inner(name + "_bwd", g, y, out)

    def _rows_inner(self, kernel, a, b, out):
        """fa_rowwise_inner on flat (outer, n, K) views: tasks of
        inner_columns columns, as many threads as the size allows."""
        outer, n, K = out.shape
        nt = self._threads(out.size)
        buf = self._buffer
        # a narrow task's columns are float32 ones in the float32 kernel
        rc = self._lib.fa_rowwise_inner(
            getattr(self._lib, _ROW_DTYPES[out.dtype.char]),
            getattr(self._lib, "FA_K_" + kernel.upper()), buf(a),
            self._ffi.NULL if b is None else buf(b), buf(out, True), outer, n, K,
            inner_columns(outer, K, max(4, out.dtype.itemsize), nt), nt)
        if rc == -1:
            raise MemoryError(f"fastact C {kernel}: could not allocate the float32 buffers "
                              f"of its columns of {n}")
        if rc != 0:
            raise RuntimeError(f"fastact C {kernel}: fa_rowwise_inner refused the call ({rc})")

    def gated_forward(self, name, x, out):
        self._row(name + "_fwd", out.dtype)(x, out, x.shape[0], x.shape[2])

    def gated_backward(self, name, g, x, out):
        self._row(name + "_bwd", out.dtype)(g, x, out, x.shape[0], x.shape[2])

    def describe(self):
        lib = self._lib
        return {"isa": self._ffi.string(lib.fa_isa_name(lib.fa_isa())).decode(),
                "best_isa": self._ffi.string(lib.fa_isa_name(lib.fa_best_isa())).decode(),
                # built without threads, every call runs on the calling thread
                "threads": _threads.get_num_threads() if lib.fa_threads_built() else 1,
                "pool": bool(lib.fa_threads_built()),
                # outputs of at least this many bytes use streaming stores (< 0: never)
                "stream_min_bytes": int(lib.fa_stream_min()),
                # how the kernels are called: _cfastcall or cffi
                "fastcall": self._fastcall is not None,
                "fastcall_reason": self._fastcall_reason}
