"""Counter-based random numbers for RReLU: draw ``i`` of a stream is a pure
function of ``(key, i)``.

Every backend computes bit-identical slopes for any element, in any order
and on any thread, and the backward pass recomputes them instead of storing
them.  The key is the SplitMix64 mix of the user's seed, computed once in
Python (:func:`seed_key`).

float32 (24 random bits): a 32-bit counter hash, so that the kernels
vectorize on 32-bit lanes (a SplitMix64 draw costs four 64-bit multiplies
per pair of float32 lanes, which bounded the kernel)::

    h = (lo(i) + lo(key)) ^ ((hi(i) + hi(key)) * K32)     (mod 2**32)
    h = fmix32(h)                                         (MurmurHash3's finalizer)
    u = (h >> 8) * 2**-24

float64 (53 random bits): SplitMix64 at position ``i``::

    z = key + (i + 1) * GOLDEN                   (mod 2**64)
    z = (z ^ (z >> 30)) * M1; z = (z ^ (z >> 27)) * M2; z ^= z >> 31
    u = (z >> 11) * 2**-53

``u`` is exact in the target dtype and lies in [0, 1).
"""
from __future__ import annotations

import functools

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15
M1 = 0xBF58476D1CE4E5B9
M2 = 0x94D049BB133111EB
MASK = (1 << 64) - 1
# float32 draws: 32-bit counter hash
K32 = 0x9E3779B9
F1 = 0x85EBCA6B
F2 = 0xC2B2AE35
MASK32 = (1 << 32) - 1


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


def hash24(i: int, key: int) -> int:
    """The 24 random bits of float32 draw ``i`` (0 <= i < 2**64) of ``key``."""
    h = ((i & MASK32) + (key & MASK32)) & MASK32
    h ^= (((i >> 32) + (key >> 32)) * K32) & MASK32
    h ^= h >> 16
    h = (h * F1) & MASK32
    h ^= h >> 13
    h = (h * F2) & MASK32
    h ^= h >> 16
    return h >> 8


def uniform_bits(dtype) -> int:
    """Number of random bits in one uniform draw of ``dtype``."""
    return 24 if np.dtype(dtype) == np.float32 else 53
