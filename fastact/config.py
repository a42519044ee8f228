"""Tunables, in one place.  Each number says how it was chosen.

Environment variables read here:

``FASTACT_BACKEND``
    default backend name (``numpy``, ``numba``, ``c``, ``cuda``); a
    per-call ``backend=`` and :func:`fastact.use_backend` win over it.
``FASTACT_NUM_THREADS``
    initial thread count of the parallel CPU kernels: a positive integer; a
    value above the threads available is lowered to them, and one that is
    not a positive integer is ignored, each with a ``RuntimeWarning``.
``FASTACT_STREAM_MIN_BYTES``
    the output size in bytes from which elementwise kernels write with
    streaming stores (see ``STREAM_MIN_BYTES``); negative: never.
``FASTACT_NUMBA_POOL``
    ``numba``: the Numba backend's parallel kernels run on Numba's own
    threading layer instead of fastact's pool (c_src/pool.c; the default
    where the C backend is built), read at the first parallel call.
``OMP_NUM_THREADS``
    where ``FASTACT_NUM_THREADS`` is unset: its first entry (``4`` of
    ``4,2``), if a positive integer, is the initial count (lowered to the
    threads available); else the CPUs of the process's affinity mask, fewer
    where a cgroup CPU quota allows fewer (``fastact._threads``).
"""
from __future__ import annotations

import os

from . import _cache

#: Backend names in the order ``fastact.backends()`` lists them.
BACKEND_NAMES = ("numpy", "numba", "c", "cuda")

#: Automatic choice for host arrays of at least ``PARALLEL_MIN`` elements,
#: and below it; the first that loads wins, the reference comes last (used
#: only when nothing else loads).
#:
#: Small arrays go to C: its elementwise kernels are called through
#: ``_cfastcall`` (the NumPy C API, no ``ffi.from_buffer``), its threads start
#: sooner than Numba's parallel region, and it has no compile/cache-load
#: latency on a process's first call (26 ms against ~0.7 s).  Public calls,
#: float32, ``out=`` given, microseconds, numba / c, best of 7 interleaved
#: rounds on the 2-core build machine: 1024 elements relu 1.90 / 1.55,
#: sigmoid 2.23 / 1.95, elu_backward 3.59 / 2.51, softmax (rows of 256)
#: 6.20 / 5.74, prelu (1, 16, 64) 6.26 / 5.41; 2**14 relu 4.39 / 4.92,
#: sigmoid 11.5 / 7.1, elu_backward 15.3 / 9.7, softmax 18.2 / 16.1, prelu
#: 13.7 / 10.7; 2**15 relu 9.65 / 9.19, sigmoid 22.9 / 15.3, softmax
#: 33.9 / 35.0.  Big arrays go to C too, but for the ops of NUMBA_FIRST:
#: C is ahead on the memory-bound kernels and about even on the others
#: (``fastact bench``, 2**24 float32, 2 threads, C / Numba: relu forward
#: 1.1-1.5, softmax forward 0.93-0.97, sigmoid forward 0.90-1.12), and a
#: Numba kernel's first call compiles (about 1.5 s a kernel with an empty
#: cache: sigmoid on 2**20 elements in a fresh process 1.52 s, C 0.00).
AUTO_LARGE = ("c", "numba", "numpy")
AUTO_SMALL = ("c", "numba", "numpy")
#: registry entries whose big arrays go to Numba first (AUTO_LARGE_NUMBA):
#: where its kernels are clearly faster than C's, measured: % of the copy,
#: Numba / C, ``fastact bench`` at 2**24, 2 threads, float32 and float64
#: (one process, best of 5 rounds): rrelu in training float64 forward 99 /
#: 29, backward 140 / 37 (C's SplitMix64 hash: float32 alike, 131 / 135);
#: gelu float64 (2**24, 2 threads, medians of 15 interleaved rounds, ms)
#: forward 29.8 / 32.4, backward 30.7 / 35.8, float32 now about even
#: (forward 1.00-1.08 / 1.02-1.08 times PyTorch's speed, backward 1.05-1.10
#: / 0.99-1.05, three processes); logsigmoid forward 57 / 52 and 46 / 29
#: (its backward even).  The softmax family along a middle axis ("<name>:inner") is not among them since C has
#: the same kernels: torch time / ours, 2 threads, one process, medians of 7
#: in 3 rounds, 4096**2 axis 0 and (64, 512, 512) axis 1, Numba / C: float32
#: forward 3.02 / 3.03 and 2.38 / 2.38, backward 4.99 / 5.00 and 1.67 /
#: 1.67; float64 forward 3.69 / 4.05 and 3.90 / 3.81, backward 5.89 / 6.40
#: and 2.35 / 2.47.
NUMBA_FIRST = frozenset({"rrelu_train", "gelu", "logsigmoid"})
AUTO_LARGE_NUMBA = ("numba", "c", "numpy")
#: An op of NUMBA_FIRST goes to Numba once a child process has compiled its
#: kernels into the disk cache (every pass and variant, float32 and float64:
#: about 15 s of one core with an empty cache); its calls take AUTO_LARGE's
#: backend meanwhile (fastact._dispatch).  False: the first big call
#: compiles the kernels it needs itself (1-2 s).
#: ``FASTACT_NUMBA_BACKGROUND=0`` turns it off.
NUMBA_FIRST_BACKGROUND = os.environ.get("FASTACT_NUMBA_BACKGROUND", "1").strip() != "0"

#: Bytes of a row a task of the softmax family along a middle axis takes
#: (fastact._backends.inner_columns): wide runs of contiguous
#: columns beat a slab small enough for L2.  Numba, 2 threads, ms forward /
#: backward, float32 (64, 512, 512) axis 1, 4096**2 axis 0, (8, 4096, 1024)
#: axis 1, by bytes: 128: 18.3 / 26.0, 32.0 / 34.9, -; 512: 13.0 / 16.3,
#: 25.7 / 21.6, -; 2048: 11.8 / 10.2, 19.1 / 18.7, 37.9 / 36.1; 4096:
#: 11.1 / 10.1, 14.9 / 14.9, 24.0 / 22.4; 8192: 11.8 / 10.3, 14.7 / 14.8,
#: 23.3 / 21.6 (float64, 4096 / 8192: 4096**2 28.0 / 29.6 against 25.2 /
#: 25.8, (8, 4096, 1024) 55.5 / 58.8 against 49.2 / 47.3).
INNER_BYTES = 8192

#: Below this many elements the Numba backend runs its serial kernels (and
#: the dispatcher uses ``AUTO_SMALL``): memory-bound kernels, then kernels
#: whose arithmetic dominates (an exponential or a hash per element:
#: ``Spec.compute_bound``).  Serial / 2-thread kernel times on the 2-core build
#: machine (float32, microseconds): relu 4.8/5.5 at 2**15, 8.7/8.2 at 2**16;
#: leaky_relu 5.7/6.5, 9.4/7.7; sigmoid 4.6/4.9 at 2**13, 9.3/7.3 at 2**14;
#: rrelu (training) 6.4/6.7, 12.5/10.9; softmax (rows of 256) 6.6/5.6,
#: 12.3/8.4; elu 4.4/6.1, 5.1/5.2.
PARALLEL_MIN = 1 << 16
PARALLEL_MIN_COMPUTE = 1 << 14

#: A parallel kernel's call is cut into chunks that the calling thread and
#: the workers of fastact's pool (c_src/pool.c, both CPU backends) take as
#: each is free, a few a thread, each at least this many elements (or one
#: unit: a softmax row): a claim costs a compare-and-swap on a cache line
#: that all threads share.  The C side's FA_CHUNK_MIN_ELEMS is the same
#: (tests/test_threads_parked.py compares them).
POOL_CHUNK_MIN_ELEMS = 4096

#: The Numba row-wise kernels on narrow arrays (float16, bfloat16,
#: fastact/_backends/numba_narrow.py) widen this many elements at a time
#: (whole rows, at least one; a block of columns) into float32 buffers that
#: stay in L2 for the float32 body's passes: a call of the body costs
#: microseconds, so a row of 4096 to a call ran at half float32's speed
#: (the C kernels, whose calls cost nothing, take 4096: FA_NARROW_ROW in
#: c_src/narrow.inc).  The gated units take runs of NARROW_CHUNK.
NARROW_ROW_ELEMS = 1 << 15
NARROW_CHUNK = 512

#: Below this many elements the C backend stays on the calling thread.
#: Size sweep, C backend, float32, serial vs 2 OpenMP threads (best of 15
#: interleaved rounds): sigmoid/elu_backward/softmax gain from 2**13 on
#: (2**14: 14.1 vs 10.9 us sigmoid); relu, memory-bound, breaks even at
#: 2**15 (2**14: 9.7 vs 10.2 us).  2**14 favours the exp kernels.
C_PARALLEL_MIN = 1 << 14

#: Outputs of at least this many bytes are written with non-temporal
#: (streaming) stores, which skip reading the output's cache lines before
#: writing them, and evict them from the caches.  Only an output larger than
#: the last-level cache gains: a smaller one stays in cache for the next op
#: to read, and a streamed store sends it to memory.  So the threshold is the
#: last-level cache's size (``fastact._cache``: Linux's sysfs, else cpuid
#: through the C backend), capped at STREAM_CAP_BYTES; STREAM_FALLBACK_BYTES
#: where neither says; ``FASTACT_STREAM_MIN_BYTES`` overrides it (a negative
#: value never streams).  x86-64 only; -1 disables.
#:
#: Measured on the 2-core build machine (a VM: sysfs and cpuid both report
#: the host's 480 MiB L3), float32, 2 threads, a warm chain sigmoid -> relu
#: -> sigmoid with out=, median microseconds, streamed / regular stores,
#: Numba: 2**20 elements (4 MiB each) 658 / 493 (torch 586), 2**21 1304 /
#: 1014, 2**22 2644 / 2318, 2**23 6315 / 5786, 2**24 13438 / 15033; C
#: 2**22 2891 / 2627, 2**23 6611 / 7272, 2**24 13740 / 17034.  One kernel
#: repeated on the same arrays, 2**24: relu 2554 / 4814 us.  But a kernel
#: whose output is not in its core's L2 pays a read for ownership of each
#: line (from L3 or memory) with regular stores: the regression check's
#: case, one thread, 2**22 float32 right after a 16 MiB copy, % of the copy
#: streamed / regular: relu forward 96-99 / 51-54, leaky_relu 94-96 /
#: 45-48 (fastact bench --quick).  The cap, 16 MiB, sits where the chain's
#: loss from streaming (12% at 2**22) is smaller than a lone kernel's gain
#: (2x); below it (2**21, 8 MiB) the chain gains 22% from regular stores.
STREAM_CAP_BYTES = 1 << 24
STREAM_FALLBACK_BYTES = 1 << 22
STREAM_MIN_BYTES = _cache.stream_min_bytes(STREAM_CAP_BYTES, STREAM_FALLBACK_BYTES)

#: The blocked kernels for big outputs take their share in blocks of this
#: many output bytes: the elementwise ones prefetch the input this many
#: blocks ahead (PREFETCH_BLOCKS) and stream each vector out as it is
#: computed; PReLU's forward and softmax's backward compute a block into a
#: per-thread buffer that stays in the L1 cache, then stream it out.  Small
#: blocks keep loads and streamed stores overlapping (measured through the
#: buffer, when the elementwise kernels used it too): Numba relu forward,
#: float32 2**24, 2 threads, 1 KiB 35-39 GB/s, 4 KiB 31-39, 8 KiB 31
#: (separate runs, noisy machine); a C relu measured 1 KiB 55-60, 4 KiB
#: 42-46, 16 KiB 36-38 (the C backend's own chunk, c_src/fastact.c).
STREAM_BLOCK_BYTES = 1 << 10

#: The elementwise kernels write big outputs in place, in those blocks,
#: prefetching the input lines this many blocks ahead (measured on the
#: kernels bound by their arithmetic, an exp or a hash per element; the
#: memory-bound ones gained too, see numba_cpu._make_blocked).  Float32
#: 2**24, 2 threads, GB/s without / with, interleaved: sigmoid forward 18.7 / 23.1, 16.5 / 18.3 (4 blocks ahead),
#: 16.7 / 18.7 (2), 18.2 / 18.9 (8), 19.6 / 22.6 (16); elu forward
#: 21.1 / 25.9 (4), 20.8 / 22.2 (2), 20.7 / 21.4 (8).  Prefetching the
#: output's lines for writing too (``prefetchw``) cost more than it saved
#: once the kernels got cheaper: % of the copy, 3 processes, with / without:
#: elu backward 89-92 / 93-96, sigmoid forward 89-93 / 93-96, rrelu forward
#: 94-96 / 94-99, elu forward 92-94 / 91-93.
PREFETCH_BLOCKS = 4

#: Numba's parallel float kernels take the guarded passes' fast variants
#: (fastact/_spec.py: Spec.guarded) where True; read when a kernel is first
#: built.  Off by default: a guarded kernel compiles both the variant and
#: the full formula, about twice the time (with them on, CI took 15:50 of
#: its 15 minutes), for 7-37% in the caches (float32, 65536 elements, one
#: thread: celu_backward 0.040 -> 0.025 ms, silu 0.029 -> 0.026, softplus
#: 0.030 -> 0.026, logsigmoid 0.024 -> 0.022).  The C backend always takes
#: them.
NUMBA_GUARDED = False

#: PReLU: channel rows at least this long are one parallel task each;
#: shorter ones (e.g. (N, C) activations) are processed in blocks of samples,
#: taken in runs of whole samples, each run one loop vectorized across
#: channels against the weights spread to its length.
PRELU_ROW_MIN = 16

#: PReLU short rows: the shortest run (elements; whole samples).
PRELU_RUN_MIN = 256

#: PReLU backward, short rows (Numba): its runs are summed in this many
#: blocks (fewer where there are fewer runs), the parallel kernel's units,
#: whatever the thread count, so that the weight gradient's bits do not
#: depend on it (the C backend's chunks: FA_PRELU_CHUNKS, the same idea).
PRELU_BLOCKS = 32

#: Softmax backward, float64: the dot product sum(g * y) of a row is taken in
#: runs of this many terms, each summed in vector partial sums, the run sums
#: added with Kahan's compensation.  The result must be within 4 eps |y|
#: (|g| + sum |g y|): uncompensated partial sums (Numba) exceeded that by up
#: to 1.4x on rows of 4096 normal values, and so did runs of 256 (C) on rows
#: of 256; a run of 16 adds about eps * sum |its terms| at most.
SOFTMAX_DOT_RUN = 16
#: float64 log_softmax forward (both CPU backends; c_src/kernels.inc:
#: FA_LOG_LANES): the row's exponentials added to this many compensated
#: (Kahan) sums, element j to sum j % lanes, then the sums to one another:
#: vector code (four AVX-512 vectors, their additions' latencies
#: overlapping).  Rows of one large term and thousands of tiny ones (the
#: max's output is -log1p(sum of the others), whose relative error shows
#: whole) need the compensation: a plain float64 sum missed by 1700 ULP.
#: Runs of 8 terms compensated one after another (before) were as accurate
#: but scalar in Numba, and a chain of dependent additions in C.
LOG_SOFTMAX_LANES = 32

#: Elementwise calls on strided operands (fastact._walk): rows along the
#: inner axis of the walk, cut into tiles of at most WALK_TILE_BYTES of
#: buffer per operand (the C backend's stack buffers hold c_src/ops.h's
#: FA_WALK_BYTES: no more) and at most WALK_TILE_ROWS rows.  Operands with
#: unit inner stride and rows of at least WALK_DIRECT_MIN elements are read
#: and written in place (tiles of up to WALK_DIRECT_SPAN elements where all
#: are), the others gathered into the buffer; an operand whose memory runs
#: along the rows (a transpose beside untransposed operands) is gathered
#: column by column in tiles of WALK_COLUMN_ROWS rows.  Chosen on
#: sigmoid_backward(g, y.T), 4096**2 float32, out= given, 2 threads, ms C /
#: Numba by (column rows, tile bytes): (8, 4096) 30 / 40, (16, 8192) 29 / 30,
#: (16, 16384) 24 / 29, (32, 16384) 27 / 23, (64, 16384) 28 / 28 (the
#: contiguous call 4.5; rerun: python benchmarks/strided.py).
WALK_TILE_BYTES = 16384
WALK_TILE_ROWS = 256
WALK_DIRECT_MIN = 32
WALK_DIRECT_SPAN = 1 << 15
WALK_COLUMN_ROWS = 32
#: Numba's serial walk (small calls, or the pool busy): NumPy's buffered
#: ``nditer`` feeds the flat serial kernels chunks of this many elements.
WALK_CHUNK = 8192

#: Default CUDA launch shape for the grid-stride elementwise kernels.
CUDA_THREADS_PER_BLOCK = 256

#: CUDA shared-memory slots per block: the largest block a row kernel launches.
CUDA_MAX_THREADS = 256

#: CUDA blocks per multiprocessor for grid-stride launches: enough resident
#: warps to hide memory latency; more only adds scheduling.  (Not tuned on a
#: GPU yet: no GPU was available when it was written.)
CUDA_BLOCKS_PER_SM = 32

#: CUDA PReLU: the weight-gradient pass splits rows longer than this into
#: segments, so that one long row (a size-1 weight) still fills the GPU.
CUDA_PRELU_SEGMENT = 8192


def env_backend() -> str | None:
    v = os.environ.get("FASTACT_BACKEND", "").strip().lower()
    return v or None


def env_omp_threads() -> str | None:
    """OMP_NUM_THREADS's first entry (stripped), None where unset or empty."""
    v = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return v or None


def env_num_threads() -> str | None:
    """FASTACT_NUM_THREADS as set (stripped), None where unset or empty;
    ``fastact._threads`` checks it when the thread count is first read."""
    v = os.environ.get("FASTACT_NUM_THREADS", "").strip()
    return v or None
