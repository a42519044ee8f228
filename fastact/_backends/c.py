"""SIMD C backend: the kernels of ``c_src/`` compiled through cffi by ``build.py``.

The one backend whose formulas are written again (in C, from
:mod:`fastact._registry` and :mod:`fastact._prims`); the differential tests
against the reference keep them honest.  Every kernel is compiled for AVX-512,
AVX2+FMA and a portable baseline; the first call picks the best one the CPU
supports, capped by ``FASTACT_C_ISA=avx512|avx2|baseline``.  ``describe()``
reports the choice.  Calls release the GIL (cffi's out-of-line API mode);
arrays of at least ``config.C_PARALLEL_MIN`` elements are split across
``fastact.get_num_threads()`` threads.  The memory-bound kernels write
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
from .._registry import REGISTRY
from . import Backend

ISA_LEVELS = ("baseline", "avx2", "avx512")
_MODULE = "fastact._backends._cfastact"
_UNBUILT_NOTE = pathlib.Path(__file__).with_name("_cfastact.unbuilt")

_FASTCALL_MODULE = "fastact._backends._cfastcall"

# elementwise (registry name, pass) -> C function name stem; the upper-case
# stem names the kernel id (FA_K_*) of fa_elementwise
_ELEMENTWISE = {
    ("sigmoid", "forward"): "sigmoid_fwd", ("sigmoid", "backward"): "sigmoid_bwd",
    ("relu", "forward"): "relu_fwd", ("relu", "backward"): "relu_bwd",
    ("leaky_relu", "forward"): "leaky_relu_fwd", ("leaky_relu", "backward"): "leaky_relu_bwd",
    ("rrelu_train", "forward"): "rrelu_train_fwd",
    ("rrelu_train", "backward"): "rrelu_train_bwd",
    ("elu", "forward"): "elu_fwd", ("elu", "backward"): "elu_bwd",
}
_SUFFIX = {"f": "f32", "d": "f64"}
_CTYPE = {"f": "float[]", "d": "double[]"}


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
        # pass -> name -> (float32 kernel, float64 kernel); looked up with as
        # little Python as possible (small-array call overhead)
        self._ew = {}
        for (name, pass_), stem in _ELEMENTWISE.items():
            self._ew.setdefault(pass_, {})[name] = tuple(
                (getattr(lib, f"fa_{stem}_{sfx}"), self._ctype[ch])
                for ch, sfx in _SUFFIX.items())
        self._fastcall, self._fastcall_reason = _import_fastcall()
        self._fast_kernels = {}
        self._rowwise = {(op, ch): getattr(lib, f"fa_{op}_{sfx}")
                         for op in ("prelu_fwd", "prelu_bwd", "softmax_fwd", "softmax_bwd")
                         for ch, sfx in _SUFFIX.items()}
        return self

    @staticmethod
    def _threads(n):
        return _threads.get_num_threads() if n >= config.C_PARALLEL_MIN else 1

    def elementwise(self, name, pass_, ins, out, params):
        self.elementwise_kernel(name, pass_, out.dtype.type, False)(*ins, out, params)

    def elementwise_kernel(self, name, pass_, dtype, small):
        if self._fastcall is not None:
            return self._fast_kernel(name, pass_, np.dtype(dtype))
        # everything looked up once: a call is the from_buffer of each array
        # (about 0.25 us apiece) and the C call itself
        fn, ct = self._ew[pass_][name][np.dtype(dtype).itemsize == 8]
        fb, threads = self._from_buffer, _threads.get_num_threads
        cmin = config.C_PARALLEL_MIN
        if pass_ == "forward":
            def run(x, out, params):
                n = out.shape[0]
                fn(fb(ct, x), fb(ct, out, True), n, *params, 1 if n < cmin else threads())
        else:
            def run(g, s, out, params):
                n = out.shape[0]
                fn(fb(ct, g), fb(ct, s), fb(ct, out, True), n, *params,
                   1 if n < cmin else threads())
        return run

    def _fast_kernel(self, name, pass_, dtype):
        """The ``_cfastcall`` kernel object: called as the closures above."""
        key = (name, pass_, dtype.char)
        k = self._fast_kernels.get(key)
        if k is None:
            stem = _ELEMENTWISE[name, pass_]
            kid = getattr(self._lib, "FA_K_" + stem.upper())
            nparams = len(REGISTRY[name].params)
            address = int(self._ffi.cast("uintptr_t",
                                         self._ffi.addressof(self._lib, "fa_elementwise")))
            k = self._fast_kernels[key] = self._fastcall.make_kernel(
                address, kid, dtype, pass_ == "backward", nparams, name == "rrelu_train",
                config.C_PARALLEL_MIN, _threads.get_num_threads, f"fastact C {stem}")
        return k

    @staticmethod
    def _short_rows(x, w):
        """Channel rows shorter than ``config.PRELU_ROW_MIN`` go to the
        kernels' ``inner == 1`` path, vectorized across the positions of
        ``k`` samples (``k * C * inner``, ``k`` a power of two dividing the
        batch, up to ``config.PRELU_RUN_MIN`` positions) against the weights
        repeated to that length: segments of a few elements, one per
        channel, do not vectorize ((2**18, 64, 8) float32 ran at a twentieth
        of the copy), and runs of 64 channels stream badly.  Returns
        (weights, outer, C, inner) to call the kernels with."""
        outer, C, inner = x.shape
        if inner >= config.PRELU_ROW_MIN or C * inner == 0:
            return w, outer, C, inner
        k = 1
        while k * C * inner < config.PRELU_RUN_MIN and outer % (2 * k) == 0:
            k *= 2
        if k == 1 and inner == 1:
            return w, outer, C, inner
        return np.tile(np.repeat(w, inner), k), outer // k, k * C * inner, 1

    def prelu_forward(self, x, w, out):
        ch = out.dtype.char
        ct, fb = self._ctype[ch], self._from_buffer
        w, outer, C, inner = self._short_rows(x, w)
        self._rowwise["prelu_fwd", ch](fb(ct, x), fb(ct, w), fb(ct, out, True),
                                       outer, C, inner, self._threads(x.size))

    def prelu_backward(self, g, x, w, gx, gw):
        ch = gx.dtype.char
        ct, fb = self._ctype[ch], self._from_buffer
        ws, outer, C, inner = self._short_rows(x, w)
        # short rows: one sum per position, added up by channel here
        gws = gw if ws is w else np.empty(C, gw.dtype)
        rc = self._rowwise["prelu_bwd", ch](fb(ct, g), fb(ct, x), fb(ct, ws),
                                            fb(ct, gx, True), fb(ct, gws, True),
                                            outer, C, inner, self._threads(x.size))
        if rc != 0:
            raise MemoryError("fastact.prelu_backward: the C backend could not allocate "
                              f"its {C}-channel partial sums")
        if gws is not gw and gw.size:
            with np.errstate(over="ignore"):
                gw[...] = gws.reshape(-1, x.shape[1], x.shape[2]).sum(axis=(0, 2),
                                                                     dtype=np.float64)

    def softmax_forward(self, x, out):
        ch = out.dtype.char
        ct, fb = self._ctype[ch], self._from_buffer
        rows, n = x.shape
        self._rowwise["softmax_fwd", ch](fb(ct, x), fb(ct, out, True), rows, n,
                                         self._threads(x.size))

    def softmax_backward(self, g, y, out):
        ch = out.dtype.char
        ct, fb = self._ctype[ch], self._from_buffer
        rows, n = y.shape
        self._rowwise["softmax_bwd", ch](fb(ct, g), fb(ct, y), fb(ct, out, True), rows, n,
                                         self._threads(y.size))

    def describe(self):
        lib = self._lib
        return {"isa": self._ffi.string(lib.fa_isa_name(lib.fa_isa())).decode(),
                "best_isa": self._ffi.string(lib.fa_isa_name(lib.fa_best_isa())).decode(),
                # built without OpenMP, every call runs on the calling thread
                "threads": _threads.get_num_threads() if lib.fa_openmp() else 1,
                "openmp": bool(lib.fa_openmp()),
                # outputs of at least this many bytes use streaming stores (< 0: never)
                "stream_min_bytes": int(lib.fa_stream_min()),
                # how the elementwise kernels are called: _cfastcall or cffi
                "fastcall": self._fastcall is not None,
                "fastcall_reason": self._fastcall_reason}
