"""The Oracle record and helpers of the high-precision oracles of the catalogue's elementwise ops, written
independently of fastact's code: obvious formulas in ``np.longdouble``
(float32 results are checked against them too), or mpmath where NumPy has
no such function.  One :class:`Oracle` per public op name; ``conftest``
builds the test matrix from the registry and these.

``forward(x, **params)`` and ``backward(g, s, **params)`` take NumPy
arrays (``s`` is x or y as the registry's ``saves`` says) and the public
parameters by name; ``terms(s, **params)`` (for a backward whose bound is
"cond") is the sum of the magnitudes of the derivative formula's terms;
``required`` gives values for parameters without a default; ``variants``
are extra parameter sets tested as ops of their own (``name_<key>``);
``kinks(**params)`` the points where the derivative jumps (the finite-
difference test keeps its inputs away from them); ``backward_y(g, y,
**params)`` the derivative from the output where the registry offers
``from_output`` with a formula of its own.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

WIDE = np.longdouble


def hp(a):
    return np.asarray(a).astype(WIDE)


@dataclasses.dataclass
class Oracle:
    forward: Callable
    backward: Callable
    terms: Callable | None = None
    required: dict = dataclasses.field(default_factory=dict)
    variants: dict = dataclasses.field(default_factory=dict)
    kinks: Callable = lambda **params: ()
    # the backward from the output y (from_output=True), where the registry
    # gives it a formula of its own (None: a mask, the backward oracle reads y)
    backward_y: Callable | None = None


