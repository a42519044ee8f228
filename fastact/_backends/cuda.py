"""CUDA backend: the registry's formulas compiled by ``numba.cuda``.

Loop skeletons only, as in :mod:`fastact._backends.numba_cpu`.  Each
registry formula is compiled with ``cuda.jit(device=True)`` over the
``math`` primitives of :func:`fastact._prims.math_prims` and called from:

* a grid-stride kernel per elementwise forward and backward;
* a row kernel for softmax, in which a group of threads sized to the row (a
  power of two up to the block) owns a row: short rows share a warp, a long
  row takes a whole block.  Max and sums are shared-memory tree reductions in
  float64, compensated (Kahan, then two-sum) for float64 data;
* PReLU's weight gradient as two passes without atomics: per-segment partial
  sums (pass 1, fused with the input gradient), then one reduction per channel
  (pass 2).

float16 and bfloat16 arrays reach the kernels as their uint16 bits; each
element is widened to float32 on load and rounded once on store (:func:`_io`),
around the same float32 formulas and loop skeletons.

Device arrays of any ``__cuda_array_interface__`` kind are viewed without a
copy (:class:`DeviceArrays`; PyTorch's bfloat16 exports ``'<V2'``); kernels
and layout copies run on the caller's ``stream=`` (numba, CuPy or PyTorch
stream, or a raw handle).

Every kernel is compiled with FMA contraction off (``-fma=0``), so each
formula rounds as written: RReLU's slopes ``lower + (upper - lower) * u`` are
bit-identical to the CPU backends' on a real GPU.

Under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the same kernels
run as Python on small launch shapes, with NumPy's floating-point warnings
silenced in the simulated threads (uint64 wrap-around is the generator's
arithmetic, inf - inf the formulas' own NaN).
"""
from __future__ import annotations

import contextlib
import functools
import math
import threading

import numpy as np

from .. import _narrow, config
from .._narrow import compute_dtype, is_bfloat16, is_narrow
from .._prims import math_prims
from .._registry import REGISTRY
from . import Backend

try:
    from numba import cuda
    from numba.core import config as _nb_config
except ImportError as e:          # numba without its CUDA target
    cuda = None
    _IMPORT_ERROR = e
else:
    _IMPORT_ERROR = None

_W = np.float64
_NEG_INF = _W(-np.inf)
_INF = _W(np.inf)
_ZERO = _W(0.0)

_MAX_THREADS = config.CUDA_MAX_THREADS
_BLOCKS_PER_SM = config.CUDA_BLOCKS_PER_SM
_PRELU_SEGMENT = config.CUDA_PRELU_SEGMENT


def _simulating():
    return cuda is not None and bool(_nb_config.ENABLE_CUDASIM)


# --- compilation --------------------------------------------------------------

_fma_off = threading.local()


def _install_fma_switch():
    """Make NVVM compile our kernels with ``-fma=0``.

    NVVM contracts ``a * b + c`` into one fused multiply-add by default
    (``-fma=1``), even without fastmath, and neither numba's built-in target
    nor numba-cuda 0.30 exposes the option (numba-cuda PR #839, numba PR
    #10487).  The option is added to NVVM compilations that happen while this
    thread compiles a fastact kernel, and to no one else's.
    """
    from numba.cuda.cudadrv import nvvm
    if getattr(nvvm.compile_ir, "_fastact", False):
        return
    inner = nvvm.compile_ir

    def compile_ir(llvmir, **options):
        if getattr(_fma_off, "on", False) and not options.get("fastmath"):
            options["fma"] = False
        return inner(llvmir, **options)

    compile_ir._fastact = True
    nvvm.compile_ir = compile_ir


@contextlib.contextmanager
def _no_fma():
    _fma_off.on = True
    try:
        yield
    finally:
        _fma_off.on = False


def _quiet(fn):
    """``fn`` under ``np.errstate(all="ignore")``: simulator threads only."""
    @functools.wraps(fn)
    def quiet(*args):
        with np.errstate(all="ignore"):
            return fn(*args)
    return quiet


def _device(fn):
    """Compile a formula as a device function (plain Python in the simulator)."""
    if _simulating():
        return _quiet(fn)
    return cuda.jit(device=True)(fn)


def _helper(fn):
    """A device helper that uses ``cuda`` intrinsics (compiled in both modes)."""
    return cuda.jit(device=True)(fn)


def _kernel(fn):
    if _simulating():
        return cuda.jit(_quiet(fn))
    return cuda.jit(fn)


def _prims(dtype):
    return math_prims(dtype, _device)


def _compute(dtype):
    """The scalar type the formulas of ``dtype`` data compute in: float32
    for the narrow types."""
    return compute_dtype(np.dtype(dtype)).type


@functools.lru_cache(maxsize=None)
def _formulas(name, dtype):
    return tuple(_device(f) for f in REGISTRY[name].build(_prims(_compute(dtype))))


# --- storage ------------------------------------------------------------------------

def _bits(a):
    """What a kernel is passed for the array ``a``: narrow arrays as their
    uint16 bits (numba types neither float16 nor bfloat16 arrays alike)."""
    return a.view(np.uint16) if is_narrow(a.dtype) else a


@functools.lru_cache(maxsize=None)
def _io(dtype):
    """``(load, store)`` of ``dtype`` arrays: an element (as :func:`_bits`
    passes it) to the formulas' scalar type, and a computed value back.

    The narrow types convert as the Numba CPU backend does without F16C
    (fastact._prims_narrow's integer versions: the bits of fastact._narrow,
    NaN payloads and subnormals included, rounded to nearest even once);
    not PTX's float16 ``cvt``, whose NaN bits nothing pins to the host's
    (and no GPU here could check).  The simulator calls fastact._narrow
    itself."""
    dtype = np.dtype(dtype)
    if not is_narrow(dtype):
        T = dtype.type

        def load(v):
            return v

        def store(v):
            return T(v)
        return (load, store) if _simulating() else (_helper(load), _helper(store))
    if _simulating():
        def load(b):
            return _narrow.widen(np.array([b], np.uint16).view(dtype))[0]

        def store(v):
            return _narrow.narrow_bits(np.float32(v), dtype)[0]
        return load, store
    from .._prims_narrow import converters
    return converters(dtype.name, hardware=False)


# --- reductions ------------------------------------------------------------------
# A group of `group` threads (a power of two) owns the shared-memory slots
# [base, base + group).  Every thread of the block calls these the same number
# of times: `group` is uniform over the block.

@functools.lru_cache(maxsize=None)
def _reducers(compensated):
    """Group reductions; ``add`` is Kahan's for float64 data, a plain float64
    sum for float32 data (exact enough, and float64 adds are not free)."""
    @_helper
    def group_max(sh, tid, lane, group, v):
        sh[tid] = v
        cuda.syncthreads()
        s = group >> 1
        while s > 0:
            if lane < s:
                o = sh[tid + s]
                if o > sh[tid]:
                    sh[tid] = o
            cuda.syncthreads()
            s >>= 1
        m = sh[tid - lane]
        cuda.syncthreads()
        return m

    @_helper
    def kept(e):
        """an error term, or 0 where the sum it belongs to reached +-inf (the
        term is then inf - inf, NaN, and would turn an infinite sum into NaN,
        where the CPU backends give the infinity)"""
        return e if abs(e) < _INF else _ZERO

    @_helper
    def two_sum(a, b):
        # a + b = s + e exactly (Knuth), for finite a + b
        s = a + b
        bp = s - a
        return s, kept((a - (s - bp)) + (b - bp))

    @_helper
    def group_sum(sh_s, sh_e, tid, lane, group, s, e):
        """Sum of the group's (s + e) pairs, combined with two-sum."""
        sh_s[tid] = s
        sh_e[tid] = e
        cuda.syncthreads()
        k = group >> 1
        while k > 0:
            if lane < k:
                t, err = two_sum(sh_s[tid], sh_s[tid + k])
                sh_s[tid] = t
                sh_e[tid] = sh_e[tid] + sh_e[tid + k] + err
            cuda.syncthreads()
            k >>= 1
        total = sh_s[tid - lane] + sh_e[tid - lane]
        cuda.syncthreads()
        return total

    @_helper
    def add(s, e, v):
        if compensated:
            # s + e carries the running sum; e collects what each addition loses
            y = v + e
            t = s + y
            return t, kept(y - (t - s))
        return s + v, e

    return group_max, group_sum, add


# --- elementwise -----------------------------------------------------------------

def _make_unary(f, indexed, load, store):
    if indexed:
        def loop(x, out, params):
            for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
                out[i] = store(f(load(x[i]), i, *params))
    else:
        def loop(x, out, params):
            for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
                out[i] = store(f(load(x[i]), *params))
    return _kernel(loop)


def _make_binary(f, indexed, load, store):
    if indexed:
        def loop(g, s, out, params):
            for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
                out[i] = store(f(load(g[i]), load(s[i]), i, *params))
    else:
        def loop(g, s, out, params):
            for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
                out[i] = store(f(load(g[i]), load(s[i]), *params))
    return _kernel(loop)


@functools.lru_cache(maxsize=None)
def _elementwise_kernel(name, pass_, dtype):
    """The kernel of ``name``'s ``pass_`` on ``dtype`` arrays (narrow ones:
    their bits, the float32 formula between the conversions of :func:`_io`)."""
    indexed = REGISTRY[name].indexed
    io = _io(dtype)
    if pass_ == "backward_y":
        f = _device(REGISTRY[name].from_output.build(_prims(_compute(dtype))))
        return _make_binary(f, indexed, *io)
    fwd, bwd = _formulas(name, dtype)
    if pass_ == "forward":
        return _make_unary(fwd, indexed, *io)
    return _make_binary(bwd, indexed, *io)


# --- prelu -------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _prelu_kernels(dtype, wdtype=None):
    """forward, backward (pass 1) and channel_sum (pass 2) for x of
    ``dtype`` and a weight of ``wdtype`` (default: x's; float32 with narrow
    x).  The weight gradient is summed as for float32 data and stored in the
    weight's dtype."""
    C32 = _compute(dtype)
    fwd, bwd, wterm = _formulas("prelu", C32)
    group_max, group_sum, kahan = _reducers(np.dtype(C32) == np.float64)
    load, store = _io(dtype)
    loadw, storew = _io(dtype if wdtype is None else wdtype)
    MAX = _MAX_THREADS

    def forward(x, w, out, C, inner):
        # the channel (i // inner) % C is stepped along with i: 64-bit integer
        # division costs dozens of instructions, too many per element
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        q = i // inner
        rem = i - q * inner
        c = q % C
        dq = step // inner
        drem = step - dq * inner
        dc = dq % C
        while i < x.shape[0]:
            out[i] = store(fwd(load(x[i]), loadw(w[c])))
            i += step
            rem += drem
            c += dc
            if rem >= inner:
                rem -= inner
                c += 1
            if c >= C:          # c <= 2C - 1 here
                c -= C

    def backward(g, x, w, gx, partial, C, inner, seg, nseg, group):
        # pass 1: segment q = (row r = (o, c), part p) of `seg` elements
        sh_s = cuda.shared.array(MAX, np.float64)
        sh_e = cuda.shared.array(MAX, np.float64)
        tid = cuda.threadIdx.x
        lane = tid % group
        per_block = cuda.blockDim.x // group
        k = (inner + seg - 1) // seg
        for first in range(cuda.blockIdx.x * per_block, nseg, cuda.gridDim.x * per_block):
            q = first + tid // group
            s = _ZERO
            e = _ZERO
            if q < nseg:
                r = q // k
                wc = loadw(w[r % C])
                row0 = r * inner
                lo = row0 + (q % k) * seg
                hi = lo + seg
                if hi > row0 + inner:      # not min(): numba 0.68's built-in target mis-types it
                    hi = row0 + inner
                for j in range(lo + lane, hi, group):
                    gj = load(g[j])
                    xj = load(x[j])
                    gx[j] = store(bwd(gj, xj, wc))
                    s, e = kahan(s, e, wterm(np.float64(gj), np.float64(xj)))
            total = group_sum(sh_s, sh_e, tid, lane, group, s, e)
            if q < nseg and lane == 0:
                partial[q] = total

    def channel_sum(partial, gw, C, k, outer, group):
        # pass 2: gw[c] = sum over (o, p) of partial[(o * C + c) * k + p]
        sh_s = cuda.shared.array(MAX, np.float64)
        sh_e = cuda.shared.array(MAX, np.float64)
        tid = cuda.threadIdx.x
        lane = tid % group
        per_block = cuda.blockDim.x // group
        n = outer * k
        for first in range(cuda.blockIdx.x * per_block, C, cuda.gridDim.x * per_block):
            c = first + tid // group
            s = _ZERO
            e = _ZERO
            if c < C:
                for t in range(lane, n, group):
                    s, e = kahan(s, e, partial[((t // k) * C + c) * k + t % k])
            total = group_sum(sh_s, sh_e, tid, lane, group, s, e)
            if c < C and lane == 0:
                gw[c] = storew(C32(total))

    return _kernel(forward), _kernel(backward), _kernel(channel_sum)


# --- softmax -----------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _row_kernels(name, dtype):
    """The softmax family's rows of ``n`` for the registry entry ``name`` (its
    ``row``: softmin takes the rows of ``-x``, log_softmax writes
    log-probabilities); float32 works in float64, float64 sums compensated;
    the narrow types as float32 (their values widened, each result rounded
    to float32, then once to the narrow type, as the host backends do).

    The softmax forward stores ``exp(x - m)`` while summing and rescales it
    in place: one float64 exponential per element (two would make float32
    softmax compute-bound where float64 throughput is low).  A narrow
    output cannot hold ``exp(x - m)`` unrounded: there the last pass takes
    the exponential again.  log_softmax
    stores nothing before its last pass (its output may be its input) and
    takes the log of the sum as log1p of its part beside the max's exact 1s
    (a sum near 1 rounds that part away).
    """
    T = _compute(dtype)
    group_max, group_sum, kahan = _reducers(np.dtype(T) == np.float64)
    load, store = _io(dtype)
    stash = not is_narrow(np.dtype(dtype))
    MAX = _MAX_THREADS
    exp, log1p = math.exp, math.log1p
    row = REGISTRY[name].row
    negate, log = row.negate, row.log
    sg = -1.0 if negate else 1.0
    one = np.float64(1.0)

    def forward(x, out, group):
        sh_s = cuda.shared.array(MAX, np.float64)
        sh_e = cuda.shared.array(MAX, np.float64)
        rows, n = x.shape
        tid = cuda.threadIdx.x
        lane = tid % group
        per_block = cuda.blockDim.x // group
        for first in range(cuda.blockIdx.x * per_block, rows, cuda.gridDim.x * per_block):
            r = first + tid // group
            active = r < rows
            m = _NEG_INF
            if active:
                for j in range(lane, n, group):
                    v = sg * np.float64(load(x[r, j]))
                    if v > m:
                        m = v
            m = group_max(sh_s, tid, lane, group, m)
            s = _ZERO
            e = _ZERO
            c = _ZERO
            if active:
                for j in range(lane, n, group):
                    # the max shift keeps every exponential <= 1; a NaN or an
                    # all -inf row makes the sum (and so every output) NaN
                    v = exp(sg * np.float64(load(x[r, j])) - m)
                    if log:
                        if v == one:
                            c += one
                        else:
                            s, e = kahan(s, e, v)
                    else:
                        if stash:
                            out[r, j] = T(v)
                        s, e = kahan(s, e, v)
            total = group_sum(sh_s, sh_e, tid, lane, group, s, e)
            if log:
                ones = group_sum(sh_s, sh_e, tid, lane, group, c, _ZERO)
                if active:
                    # (not on idle threads: their empty sums' log1p(-1)
                    # raises in the simulator)
                    lse = log1p((ones - one) + total)
                    for j in range(lane, n, group):
                        out[r, j] = store(T((sg * np.float64(load(x[r, j])) - m) - lse))
            else:
                inv = 1.0 / total
                if active:
                    for j in range(lane, n, group):
                        if stash:
                            v = np.float64(out[r, j])
                        else:
                            v = np.float64(T(exp(sg * np.float64(load(x[r, j])) - m)))
                        out[r, j] = store(T(v * inv))

    def backward(g, y, out, group):
        sh_s = cuda.shared.array(MAX, np.float64)
        sh_e = cuda.shared.array(MAX, np.float64)
        rows, n = y.shape
        tid = cuda.threadIdx.x
        lane = tid % group
        per_block = cuda.blockDim.x // group
        for first in range(cuda.blockIdx.x * per_block, rows, cuda.gridDim.x * per_block):
            r = first + tid // group
            active = r < rows
            s = _ZERO
            e = _ZERO
            if active:
                for j in range(lane, n, group):
                    gv = np.float64(load(g[r, j]))
                    s, e = kahan(s, e, gv if log else gv * np.float64(load(y[r, j])))
            d = group_sum(sh_s, sh_e, tid, lane, group, s, e)
            if active:
                for j in range(lane, n, group):
                    gv, yv = np.float64(load(g[r, j])), np.float64(load(y[r, j]))
                    if log:
                        out[r, j] = store(T(gv - exp(yv) * d))
                    elif negate:
                        out[r, j] = store(T(yv * (d - gv)))
                    else:
                        out[r, j] = store(T(yv * (gv - d)))

    return _kernel(forward), _kernel(backward)


# --- strided copies (layout plumbing for the public layer) --------------------------

@functools.lru_cache(maxsize=None)
def _copy_kernels():
    def gather(span, off0, shape, strides, dst):
        # dst[i] = element i (C order) of the strided view starting at span[off0]
        for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
            rem = i
            off = off0
            for d in range(len(shape) - 1, -1, -1):
                off += (rem % shape[d]) * strides[d]
                rem //= shape[d]
            dst[i] = span[off]

    def scatter(span, off0, shape, strides, src):
        for i in range(cuda.grid(1), src.shape[0], cuda.gridsize(1)):
            rem = i
            off = off0
            for d in range(len(shape) - 1, -1, -1):
                off += (rem % shape[d]) * strides[d]
                rem //= shape[d]
            span[off] = src[i]

    return _kernel(gather), _kernel(scatter)


# --- streams and device arrays --------------------------------------------------------

_current = threading.local()


def _as_stream(stream):
    """A numba stream for ``stream``: numba, CuPy or PyTorch stream, or a handle."""
    if stream is None:
        return 0
    if _simulating():
        return stream
    if isinstance(stream, cuda.cudadrv.driver.Stream):
        return stream
    if isinstance(stream, int):
        return cuda.external_stream(stream) if stream else 0
    for attr in ("cuda_stream", "ptr", "handle"):      # PyTorch, CuPy, cuda-python
        h = getattr(stream, attr, None)
        if isinstance(h, int):
            return cuda.external_stream(h) if h else 0
    raise TypeError(f"fastact: stream must be a numba.cuda, CuPy or PyTorch stream "
                    f"or a raw stream handle, not {type(stream).__name__}")


def _stream():
    return getattr(_current, "stream", 0)


@functools.lru_cache(maxsize=None)
def _sim_array_type():
    """The simulator's device array with a plain-tuple ``shape`` (its own
    refuses negative indices, which host code may use)."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    class SimArray(FakeCUDAArray):
        @property
        def shape(self):
            return tuple(self._ary.shape)

        def reshape(self, *args, **kwargs):
            return SimArray(self._ary.reshape(*args, **kwargs))

    return SimArray


class _Interface:
    """A bare ``__cuda_array_interface__`` holder that keeps its owner alive."""

    def __init__(self, desc, owner):
        self.__cuda_array_interface__ = desc
        self.__array_interface__ = desc     # the simulator's "device" memory is host memory
        self.owner = owner


def _from_interface(desc, owner, dtype=None):
    """A numba device array (or simulator array) viewing ``desc``'s memory,
    its elements of ``dtype`` where the typestr cannot say it (bfloat16)."""
    desc = dict(desc, version=3)
    desc.setdefault("strides", None)
    holder = _Interface(desc, owner)
    if _simulating():
        a = np.asarray(holder)
        return _sim_array_type()(a if dtype is None else a.view(dtype))
    a = cuda.as_cuda_array(holder, sync=False)
    return a if dtype is None else a.view(dtype)


def _interface_dtype(a):
    """The dtype of the device array ``a`` where its interface's typestr
    does not tell it, else None: PyTorch exports bfloat16 as ``'<V2'``, the
    tensor's ``dtype`` names it (ml_dtypes is imported only then)."""
    typestr = a.__cuda_array_interface__["typestr"]
    if typestr[1:] != "V2" or str(getattr(a, "dtype", "")).rsplit(".", 1)[-1] != "bfloat16":
        return None
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("bfloat16 device arrays need ml_dtypes (pip install ml_dtypes)") from None
    return np.dtype(ml_dtypes.bfloat16)


def _pointer(a):
    if _simulating():
        return a._ary.__array_interface__["data"][0]
    return a.__cuda_array_interface__["data"][0]


def _extent(a):
    """Byte range [lo, hi) spanned by the elements of ``a``."""
    p = _pointer(a)
    if a.size == 0:
        return p, p
    lo = hi = 0
    for n, s in zip(a.shape, a.strides):
        if s < 0:
            lo += (n - 1) * s
        else:
            hi += (n - 1) * s
    return p + lo, p + hi + a.dtype.itemsize


def _strided_copy(a, flat, to_flat):
    """``flat[:] = a`` in C order (gather) or ``a[...] = flat`` (scatter)."""
    lo, hi = _extent(a)
    item = a.dtype.itemsize
    typestr = np.dtype(np.uint16).str if is_narrow(a.dtype) else a.dtype.str
    span = _from_interface({"shape": ((hi - lo) // item,), "typestr": typestr,
                            "data": (lo, False)}, a)
    off0 = np.int64((_pointer(a) - lo) // item)
    shape = tuple(np.int64(n) for n in a.shape) or (np.int64(1),)
    strides = tuple(np.int64(s // item) for s in a.strides) or (np.int64(0),)
    gather, scatter = _copy_kernels()
    kernel = gather if to_flat else scatter
    with _no_fma():
        kernel[_grid(a.size), _threads(), _stream()](span, off0, shape, strides, _bits(flat))


class DeviceArrays:
    """The public layer's array namespace for device arrays (see ``_arrays.HostArrays``).

    Any ``__cuda_array_interface__`` object is viewed as a numba device array
    without a copy; results are handed back as the caller's kind.  Copies that
    layouts need run on the stream of the current call.
    """

    device = True

    @staticmethod
    def use_stream(stream):
        _current.stream = _as_stream(stream)

    @staticmethod
    def asarray(a):
        if _simulating():
            if isinstance(a, _sim_array_type()):
                return a
            if hasattr(a, "_ary"):          # the simulator's own arrays
                return _sim_array_type()(a._ary)
            return _from_interface(a.__cuda_array_interface__, a, _interface_dtype(a))
        if isinstance(a, cuda.cudadrv.devicearray.DeviceNDArray):
            return a
        dtype = _interface_dtype(a)
        view = cuda.as_cuda_array(a)
        return view if dtype is None else view.view(dtype)

    @classmethod
    def contiguous(cls, a):
        if cls.is_c_contiguous(a):
            return a
        out = cls.empty(a.shape, a.dtype)
        if a.size:
            _strided_copy(a, out.reshape(-1), to_flat=True)
        return out

    @classmethod
    def flat(cls, a):
        """C-contiguous 1-D view, or copy when the layout needs one."""
        return cls.contiguous(a).reshape(-1)

    @staticmethod
    def empty(shape, dtype):
        a = cuda.device_array(tuple(shape), dtype=np.dtype(dtype))
        return _sim_array_type()(a._ary) if _simulating() else a

    @classmethod
    def assign(cls, dst, src):
        dst = cls.asarray(dst)
        if not dst.size:
            return
        src = src.reshape(-1)
        if cls.is_c_contiguous(dst):
            dst.reshape(-1).copy_to_device(src, stream=_stream())
        else:
            _strided_copy(dst, src, to_flat=False)

    @staticmethod
    def overlaps(a, b):
        (alo, ahi), (blo, bhi) = _extent(a), _extent(b)
        return alo < bhi and blo < ahi

    @staticmethod
    def same_buffer(a, b):
        """True when ``a`` and ``b`` view exactly the same elements alike."""
        return (_pointer(a) == _pointer(b) and tuple(a.strides) == tuple(b.strides)
                and tuple(a.shape) == tuple(b.shape))

    @staticmethod
    def writeable(a):
        cai = getattr(a, "__cuda_array_interface__", None)
        return not (cai and cai["data"][1])

    @staticmethod
    def is_c_contiguous(a):
        return a.is_c_contiguous()

    @staticmethod
    def moveaxis(a, src, dst):
        order = [d for d in range(a.ndim) if d != src]
        order.insert(dst % a.ndim, src)
        desc = {"shape": tuple(a.shape[d] for d in order), "typestr": a.dtype.str,
                "strides": tuple(a.strides[d] for d in order),
                "data": (_pointer(a), False)}
        return _from_interface(desc, a, a.dtype)

    @staticmethod
    def wrap(result, like):
        """``result`` as the kind of array ``like`` is: CuPy, PyTorch or numba."""
        mod = type(like).__module__.split(".")[0]
        if mod == "cupy":
            import cupy
            return cupy.asarray(result)
        if mod == "torch":
            import torch
            if is_bfloat16(result.dtype):      # exported as '<V2', which torch does not read
                return torch.as_tensor(result.view(np.int16), device=like.device).view(
                    torch.bfloat16)
            return torch.as_tensor(result, device=like.device)     # no copy
        return result


# --- the gated family ---------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _gated_kernels(name, dtype):
    """forward(x, out, M) and backward(g, x, out, M) of a gated entry on flat
    views of (outer, 2, M) and (outer, M), grid-stride over the output's
    (the gradient's) flat index; the formulas composed by the registry's
    ``build`` from the act's device formulas."""
    spec = REGISTRY[name]
    T = _compute(dtype)
    f, fb = _formulas(spec.gated.act, T)
    fwd, bwd = (_device(h) for h in spec.build(_prims(T), f, fb))
    load, store = _io(dtype)

    def forward(x, out, M):
        for k in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
            r = k // M
            i = k + r * M          # 2 r M + (k - r M)
            out[k] = store(fwd(load(x[i]), load(x[i + M])))

    def backward(g, x, out, M):
        for k in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
            r = k // M
            i = k + r * M
            da, db = bwd(load(g[k]), load(x[i]), load(x[i + M]))
            out[i] = store(da)
            out[i + M] = store(db)

    return _kernel(forward), _kernel(backward)


# --- launch shapes -------------------------------------------------------------------

def _threads():
    return _Launch.threads


def _grid(n, per_block_items=None):
    per = per_block_items or _Launch.threads
    return max(1, min(-(-n // per), _Launch.max_blocks))


class _Launch:
    """Launch shape: set by :meth:`CudaBackend.load` for the device (or simulator)."""
    threads = config.CUDA_THREADS_PER_BLOCK
    max_blocks = 1024


def _group(n):
    """Threads per row: the power of two covering ``n``, at most the block."""
    g = 1
    while g < n and g < _Launch.threads:
        g <<= 1
    return g


# --- the backend ------------------------------------------------------------------------

class CudaBackend(Backend):
    name = "cuda"
    arrays = DeviceArrays()

    def load(self):
        if cuda is None:
            raise ImportError(f"numba's CUDA target is missing ({_IMPORT_ERROR}); "
                              "install it with pip install 'fastact[cuda]'")
        if _simulating():
            # small launches keep the Python-threaded simulator quick while
            # still running several blocks, several rows per block and
            # multi-segment PReLU rows
            _Launch.threads, _Launch.max_blocks = 32, 3
            self._segment = 16
            return self
        if not cuda.is_available():
            err = cuda.cuda_error() if hasattr(cuda, "cuda_error") else None
            msg = str(err).strip().replace("\n", " ") if err else ""
            raise RuntimeError(msg or "no CUDA driver or no CUDA device found")
        dev = cuda.get_current_device()
        _install_fma_switch()
        _Launch.threads = min(config.CUDA_THREADS_PER_BLOCK, _MAX_THREADS)
        _Launch.max_blocks = dev.MULTIPROCESSOR_COUNT * _BLOCKS_PER_SM
        self._segment = _PRELU_SEGMENT
        return self

    def _launch(self, kernel, blocks, stream, *args):
        with _no_fma():
            kernel[blocks, _Launch.threads, _as_stream(stream)](*args)

    def _narrow_methods(self):
        return self          # its kernels take the narrow dtypes themselves

    def elementwise(self, name, pass_, ins, out, params, stream=None):
        k = _elementwise_kernel(name, pass_, out.dtype.type)
        self._launch(k, _grid(out.size), stream, *map(_bits, ins), _bits(out), params)

    def prelu_forward(self, x, w, out, stream=None):
        outer, C, inner = x.shape
        fwd = _prelu_kernels(x.dtype.type, w.dtype.type)[0]
        self._launch(fwd, _grid(x.size), stream, _bits(x.reshape(-1)), _bits(w),
                     _bits(out.reshape(-1)), np.int64(C), np.int64(inner))

    def prelu_backward(self, g, x, w, gx, gw, stream=None):
        outer, C, inner = x.shape
        _, bwd, channel_sum = _prelu_kernels(x.dtype.type, w.dtype.type)
        seg = min(inner, self._segment)
        k = -(-inner // seg)
        nseg = outer * C * k
        partial = cuda.device_array(nseg, dtype=np.float64)
        group = _group(seg)
        per_block = _Launch.threads // group
        self._launch(bwd, _grid(nseg, per_block), stream,
                     *(_bits(a.reshape(-1)) for a in (g, x, w, gx)), partial,
                     np.int64(C), np.int64(inner), np.int64(seg), np.int64(nseg),
                     np.int64(group))
        group = _group(outer * k)
        self._launch(channel_sum, _grid(C, _Launch.threads // group), stream,
                     partial, _bits(gw), np.int64(C), np.int64(k), np.int64(outer),
                     np.int64(group))

    def _rows(self, kernel, arrays, stream):
        rows, n = arrays[0].shape
        group = _group(n)
        self._launch(kernel, _grid(rows, _Launch.threads // group), stream,
                     *map(_bits, arrays), np.int64(group))

    def rows_forward(self, name, x, out, stream=None):
        self._rows(_row_kernels(name, x.dtype.type)[0], (x, out), stream)

    def rows_backward(self, name, g, y, out, stream=None):
        self._rows(_row_kernels(name, y.dtype.type)[1], (g, y, out), stream)

    def gated_forward(self, name, x, out, stream=None):
        fwd = _gated_kernels(name, x.dtype.type)[0]
        self._launch(fwd, _grid(out.size), stream, _bits(x.reshape(-1)),
                     _bits(out.reshape(-1)), np.int64(x.shape[2]))

    def gated_backward(self, name, g, x, out, stream=None):
        bwd = _gated_kernels(name, x.dtype.type)[1]
        self._launch(bwd, _grid(g.size), stream,
                     *(_bits(a.reshape(-1)) for a in (g, x, out)), np.int64(x.shape[2]))

    def describe(self):
        if _simulating():
            return {"numba_cuda": getattr(cuda, "implementation", "?"), "simulator": True}
        dev = cuda.get_current_device()
        return {"numba_cuda": getattr(cuda, "implementation", "?"),
                "device": dev.name.decode() if isinstance(dev.name, bytes) else dev.name,
                "compute_capability": dev.compute_capability}
