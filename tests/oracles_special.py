"""Oracles of the special family (see oracles.py)."""
from __future__ import annotations

import numpy as np  # noqa: F401

from oracles_base import WIDE, Oracle, hp  # noqa: F401

ORACLES: dict[str, Oracle] = {}
