"""The last-level cache's size, for the streaming-store threshold
(``config.STREAM_MIN_BYTES``).  No fastact imports at module level: config
reads this while it is being imported."""
from __future__ import annotations

import os

_SYSFS = "/sys/devices/system/cpu/cpu0/cache"


def _parse_size(text: str) -> int | None:
    """sysfs's ``size``: ``"491520K"``, ``"32M"`` or a plain byte count."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text[:-1] if scale != 1 else text
    return int(digits) * scale if digits.isdigit() else None


def sysfs_llc_bytes(root: str = _SYSFS) -> int | None:
    """The size of the highest-level data or unified cache of CPU 0 from
    Linux's sysfs; None where sysfs does not say."""
    best = None
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return None
    for e in entries:
        if not e.startswith("index"):
            continue
        try:
            with open(os.path.join(root, e, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(root, e, "level")) as f:
                level = int(f.read())
            with open(os.path.join(root, e, "size")) as f:
                size = _parse_size(f.read())
        except (OSError, ValueError):
            continue
        if kind == "Instruction" or not size:
            continue
        if best is None or (level, size) > best:
            best = (level, size)
    return None if best is None else best[1]


def cpuid_llc_bytes() -> int | None:
    """The same from cpuid's cache leaves, through the C backend
    (``fa_llc_bytes``); None where it is not built or cpuid does not say."""
    try:
        from ._backends._cfastact import lib
        n = int(lib.fa_llc_bytes())
    except Exception:           # not built, not x86, an old build
        return None
    return n if n > 0 else None


def llc_bytes() -> int | None:
    """The last-level cache's size: sysfs's, else cpuid's, else None."""
    return sysfs_llc_bytes() or cpuid_llc_bytes()


def stream_min_bytes(cap: int, fallback: int) -> int:
    """``FASTACT_STREAM_MIN_BYTES`` if set to an integer (negative: never
    stream), else the last-level cache's size capped at ``cap``, else
    ``fallback``."""
    env = os.environ.get("FASTACT_STREAM_MIN_BYTES", "").strip()
    if env:
        try:
            return int(env)
        except ValueError:
            import warnings
            warnings.warn(f"FASTACT_STREAM_MIN_BYTES={env!r} is not an integer; ignored",
                          RuntimeWarning, stacklevel=3)
    n = llc_bytes()
    return min(n, cap) if n else fallback
