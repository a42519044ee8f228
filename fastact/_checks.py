"""Validation of scalar parameters, shared by the public layer and the
registry's routes: every message names the public function."""
from __future__ import annotations

import math
import numbers


def real(op, name, v):
    """``v`` as a Python float; TypeError for a non-real, ValueError where too large."""
    if type(v) is float:                 # the common case, without the ABC check
        return v
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"fastact.{op}: {name} must be a real number, not {type(v).__name__}")
    try:
        return float(v)
    except OverflowError:
        raise ValueError(f"fastact.{op}: {name} is too large for a float") from None


def not_nan(op, **named):
    for name, v in named.items():
        if v != v:
            raise ValueError(f"fastact.{op}: {name} must be a number, got nan")


def positive(op, **named):
    for name, v in named.items():
        if not v > 0:
            raise ValueError(f"fastact.{op}: {name} must be > 0, got {v}")


def finite(op, **named):
    for name, v in named.items():
        if not math.isfinite(v):
            raise ValueError(f"fastact.{op}: {name} must be finite, got {v}")


def ordered(op, lo_name, lo, hi_name, hi):
    not_nan(op, **{lo_name: lo, hi_name: hi})
    if not lo <= hi:
        raise ValueError(f"fastact.{op}: {lo_name} ({lo}) must not exceed {hi_name} ({hi})")
