"""The clamps family of activations (see fastact._ops)."""
from __future__ import annotations

import numpy as np  # noqa: F401

from .._spec import Doc, Param, Spec, Torch, register  # noqa: F401
