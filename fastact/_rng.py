"""Counter-based random numbers for RReLU: SplitMix64 at a given position.

The ``i``-th draw of a stream is a pure function of ``(seed, i)``, so every
backend computes bit-identical slopes for any element, in any order and on
any thread, and the backward pass recomputes them instead of storing them.

    z = key + (i + 1) * GOLDEN                   (mod 2**64)
    z = (z ^ (z >> 30)) * M1; z = (z ^ (z >> 27)) * M2; z ^= z >> 31
    u = (z >> (64 - b)) * 2**-b                  b = 24 (float32) or 53 (float64)

``u`` is exact in the target dtype and lies in [0, 1).  The key is the
SplitMix64 mix of the user's seed, computed once in Python (:func:`seed_key`).
"""
from __future__ import annotations

import functools

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
M1 = 0xBF58476D1CE4E5B9
M2 = 0x94D049BB133111EB
MASK = (1 << 64) - 1


def mix64(z: int) -> int:
    z &= MASK
    z = ((z ^ (z >> 30)) * M1) & MASK
    z = ((z ^ (z >> 27)) * M2) & MASK
    return z ^ (z >> 31)


@functools.lru_cache(maxsize=1024)
def seed_key(seed: int) -> np.uint64:
    """Key of the stream for an integer ``seed``: any Python int.

    Seeds in [0, 2**64) map to ``mix64(seed)``; other integers (negative or
    wider) fold their 64-bit limbs in with a distinct start, so that no two
    small seeds such as -1 and 2**64 - 1 share a stream.
    """
    seed = int(seed)
    if 0 <= seed < 1 << 64:
        return np.uint64(mix64(seed))
    z = mix64(GOLDEN ^ (1 if seed < 0 else 2))
    mag = -seed if seed < 0 else seed
    while mag:
        z = mix64(z ^ (mag & MASK))
        mag >>= 64
    return np.uint64(z)


def uniform_bits(dtype) -> int:
    """Number of random bits in one uniform draw of ``dtype``."""
    return 24 if np.dtype(dtype) == np.float32 else 53
