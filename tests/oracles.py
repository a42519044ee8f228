"""High-precision oracles of the catalogue's elementwise ops, by public name:
one module per family (``oracles_<family>.py``, as ``fastact/_ops/``),
the :class:`Oracle` record in ``oracles_base.py``."""
from oracles_base import Oracle  # noqa: F401
from oracles_clamps import ORACLES as _CLAMPS
from oracles_exponential import ORACLES as _EXPONENTIAL
from oracles_special import ORACLES as _SPECIAL

ORACLES = {**_CLAMPS, **_EXPONENTIAL, **_SPECIAL}
