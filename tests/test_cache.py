"""The last-level cache's size (fastact._cache) and the streaming threshold
built on it (config.STREAM_MIN_BYTES)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fastact import _cache, config

from early import EarlyProcess


def _fake_sysfs(root, caches):
    for k, (kind, level, size) in enumerate(caches):
        d = root / f"index{k}"
        d.mkdir()
        (d / "type").write_text(kind + "\n")
        (d / "level").write_text(f"{level}\n")
        (d / "size").write_text(size + "\n")
    return str(root)


def test_sysfs_takes_the_highest_data_level(tmp_path):
    root = _fake_sysfs(tmp_path, [("Data", 1, "48K"), ("Instruction", 1, "64K"),
                                  ("Unified", 2, "2048K"), ("Unified", 3, "32M")])
    assert _cache.sysfs_llc_bytes(root) == 32 << 20


def test_sysfs_absent_or_garbled(tmp_path):
    assert _cache.sysfs_llc_bytes(str(tmp_path / "missing")) is None
    root = _fake_sysfs(tmp_path, [("Data", 1, "lots")])
    assert _cache.sysfs_llc_bytes(root) is None
    assert [_cache._parse_size(t) for t in ("491520K", "2M", "1G", "4096", "x")] == [
        491520 << 10, 2 << 20, 1 << 30, 4096, None]


def test_cpuid_agrees_with_sysfs_where_both_say():
    from conftest import require_backend
    require_backend("c")
    sysfs, cpuid = _cache.sysfs_llc_bytes(), _cache.cpuid_llc_bytes()
    if sysfs is None or cpuid is None:
        pytest.skip("sysfs or cpuid does not report the cache here")
    assert cpuid == sysfs


def test_threshold_is_the_cache_capped(monkeypatch):
    monkeypatch.delenv("FASTACT_STREAM_MIN_BYTES", raising=False)
    monkeypatch.setattr(_cache, "llc_bytes", lambda: 8 << 20)
    assert _cache.stream_min_bytes(32 << 20, 4 << 20) == 8 << 20
    monkeypatch.setattr(_cache, "llc_bytes", lambda: 480 << 20)
    assert _cache.stream_min_bytes(32 << 20, 4 << 20) == 32 << 20
    monkeypatch.setattr(_cache, "llc_bytes", lambda: None)
    assert _cache.stream_min_bytes(32 << 20, 4 << 20) == 4 << 20
    monkeypatch.setenv("FASTACT_STREAM_MIN_BYTES", "-1")
    assert _cache.stream_min_bytes(32 << 20, 4 << 20) == -1
    monkeypatch.setenv("FASTACT_STREAM_MIN_BYTES", "lots")
    with pytest.warns(RuntimeWarning, match="not an integer"):
        assert _cache.stream_min_bytes(32 << 20, 4 << 20) == 4 << 20


def test_the_c_backend_gets_the_threshold():
    """config's figure reaches the C library at load, and the environment
    variable reaches both."""
    from conftest import require_backend
    require_backend("c")
    code = ("import fastact; from fastact import config; from fastact._dispatch import get; "
            "print(config.STREAM_MIN_BYTES, get('c')._lib.fa_stream_min())")
    env = {"FASTACT_STREAM_MIN_BYTES": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["12345", "12345"]
    n = _cache.llc_bytes()
    if "FASTACT_STREAM_MIN_BYTES" not in os.environ:
        assert config.STREAM_MIN_BYTES == (min(n, config.STREAM_CAP_BYTES) if n
                                           else config.STREAM_FALLBACK_BYTES)


UNBUILT_C = EarlyProcess("cache: an unbuilt C backend", [sys.executable, "-c", (
    "import warnings, numpy as np, fastact\n"
    "with warnings.catch_warnings(record=True) as w:\n"
    "    warnings.simplefilter('always')\n"
    "    fastact.relu(np.ones(10)); fastact.relu(np.ones(10))\n"
    "    fastact.sigmoid(np.ones(1 << 17))\n"
    "print(len(w)); print(w[0].category.__name__); print(str(w[0].message))\n")],
    env={"FASTACT_C_LIBRARY": "/nonexistent/_cfastact.so", "FASTACT_BACKEND": None})


@pytest.mark.early(UNBUILT_C)
def test_an_unbuilt_c_backend_says_so_in_one_line():
    """The automatic choice passing over a C backend that did not build
    warns once a process, in one line (pip shows nothing of a build that
    succeeded without it); the call still works."""
    r = UNBUILT_C.result()
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.splitlines()
    assert out[0] == "1" and out[1] == "FastactWarning"
    assert out[2].startswith("fastact: the C backend is not built (") and "\n" not in out[2]
    assert "fastact warmup" in out[2]
