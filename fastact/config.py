"""Tunables, in one place.  Each number says how it was chosen.

Environment variables read here:

``FASTACT_BACKEND``
    default backend name (``numpy``, ``numba``, ``c``, ``cuda``); a
    per-call ``backend=`` and :func:`fastact.use_backend` win over it.
``FASTACT_NUM_THREADS``
    initial thread count of the parallel CPU kernels.
"""
from __future__ import annotations

import os

#: Backend names in the order ``fastact.backends()`` lists them.
BACKEND_NAMES = ("numpy", "numba", "c", "cuda")

#: Automatic choice for host arrays with at least ``SMALL_MAX`` elements, and
#: below it.  The reference is last: used only when nothing else loads.
#: "c" first (measured on the 2-core AVX-512 build machine, float32, fastact
#: backend calls side by side): at 1024 elements its per-call cost equals
#: Numba's (5.5 vs 5.7 us relu, 5.7 vs 5.7 us sigmoid through the public API)
#: and its first call needs no JIT or cache load (26 ms vs 660 ms); at 2**24
#: elements on both cores it is as fast as Numba within noise on every
#: kernel and faster on prelu_backward (1.6x) and rrelu (1.0-1.3x).
AUTO_LARGE = ("c", "numba", "numpy")
AUTO_SMALL = ("c", "numba", "numpy")

#: Below this many elements the Numba backend runs its serial kernels: the
#: cost of waking the thread pool (~5-10 us measured on the 2-core build
#: machine) exceeds the work.  Measured with ``fastact bench`` size sweeps:
#: relu/sigmoid at 2**15 float32 run equally fast serial and parallel.
PARALLEL_MIN = 1 << 15

#: Below this many elements the C backend stays on the calling thread.
#: Size sweep, C backend, float32, serial vs 2 OpenMP threads (best of 15
#: interleaved rounds): sigmoid/elu_backward/softmax gain from 2**13 on
#: (2**14: 14.1 vs 10.9 us sigmoid); relu, memory-bound, breaks even at
#: 2**15 (2**14: 9.7 vs 10.2 us).  2**14 favours the exp kernels.
C_PARALLEL_MIN = 1 << 14

#: PReLU: channel rows at least this long are one parallel task each;
#: shorter ones (e.g. (N, C) activations) are processed in blocks of samples,
#: vectorized across channels.
PRELU_ROW_MIN = 16

#: PReLU weight gradient: terms are summed in vectorized runs of this many,
#: and the run sums added with compensation (float64): long enough to keep
#: the vector units busy, short enough that a run's rounding error stays
#: near eps * sum |terms|.
PRELU_SUM_CHUNK = 256

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


def env_num_threads() -> int | None:
    v = os.environ.get("FASTACT_NUM_THREADS", "").strip()
    return int(v) if v.isdigit() and int(v) > 0 else None
