"""The performance regression check catches a real slowdown and passes honest noise.

It runs the same code path as the CI check (``fastact bench --quick
--compare benchmarks/baseline.json``) on fewer kernels and smaller arrays.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import fastact
from fastact import _bench, _dispatch, cli

from early import EarlyProcess

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "benchmarks" / "baseline.json"
# one thread and the CPU clock, like --quick; 256 KiB float32 arrays, which
# stay in this core's L2.  With 4 MiB ones (in the L3 both cores share), the
# figures followed what ran on the other core: in CI (the regression check's
# compile beside the tests) sigmoid forward fell from 73% of the copy in the
# fixture's baseline to 59% in the check and failed the noisy-baseline test;
# beside a process copying 64 MiB arrays and then without it, 57-60% and
# 67-68% at 4 MiB, 46-47% and 48-49% at 256 KiB.
# (float32 only: test_quick_run_has_narrow_rows covers --quick's float16 rows)
SIZE = 1 << 16
QUICK = ["--quick", "--size", str(SIZE), "--no-progress", "--backends", "numba",
         "--dtype", "float32"]


def test_compare_margin():
    base = {"a": 0.80, "b": 0.80, "c": 0.50}
    now = {"a": 0.61, "b": 0.59, "c": 0.10, "new": 0.3}
    regs = _bench.compare(now, base, 0.25)
    assert [r.key for r in regs] == ["b", "c"]
    assert str(regs[0]) == "b: 59.0% of copy now, baseline 80.0% (26% slower)"
    assert _bench.compare(now, base, 0.9) == []


@pytest.fixture
def honest_baseline(tmp_path, capsys):
    path = tmp_path / "baseline.json"
    assert cli.main(["bench", *QUICK, "--ops", "relu,sigmoid", "--json", str(path)]) == 0
    capsys.readouterr()
    return path


def test_paired_ratio_is_the_median_of_each_rounds_own_ratio():
    """The best copy (round 3, a busy moment for the kernel after it) and
    the best kernel (round 1) come from different moments: best/best says
    0.5 where two rounds of three say 1."""
    s = _bench.Samples(kernel=[2.0, 3.0, 4.0], copy=[2.0, 3.0, 1.0])
    assert s.ratio == 0.5
    assert s.paired_ratio == 1.0          # median of 1.0, 1.0, 0.25
    s = _bench.Samples(kernel=[1.0, 1.0, 1.0, 1.0], copy=[0.9, 1.0, 1.2, 2.0])
    assert s.paired_ratio == pytest.approx(1.1)


def test_honest_rerun_passes(honest_baseline, capsys):
    # a second measurement of unchanged kernels: run-to-run noise only
    status = cli.main(["bench", *QUICK, "--ops", "relu,sigmoid", "--compare",
                       str(honest_baseline)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "regression check passed: 4 kernels within 25%" in out


def test_noisy_baseline_passes(honest_baseline, capsys):
    data = json.loads(honest_baseline.read_text())
    for r, noise in zip(data["results"], (1.15, 0.85, 1.1, 0.9)):
        r["roofline"] *= noise
    honest_baseline.write_text(json.dumps(data))
    assert cli.main(["bench", *QUICK, "--ops", "relu,sigmoid", "--compare",
                     str(honest_baseline)]) == 0


def test_slowed_kernel_fails(honest_baseline, capsys, monkeypatch):
    """Slow relu down on purpose: the check must name it, and only it.

    The slowdown is a plausible bug: the numba backend's relu falling back
    to the NumPy reference loop.
    """
    numba_backend = _dispatch.get("numba")
    fast = numba_backend.elementwise_kernel
    reference = _dispatch.get("numpy").elementwise_kernel

    def slowed(name, *args):
        return (reference if name == "relu" else fast)(name, *args)

    monkeypatch.setattr(numba_backend, "elementwise_kernel", slowed)
    monkeypatch.setattr(fastact._api, "_kernels", {})     # the public layer's cache
    status = cli.main(["bench", *QUICK, "--ops", "relu,sigmoid", "--compare",
                       str(honest_baseline)])
    out = capsys.readouterr().out
    assert status == 1, out
    failed = out.split("regression check FAILED", 1)[1].splitlines()[1:]
    keys = sorted(line.split(":")[0].strip() for line in failed if line.startswith("  "))
    threads = _bench.QUICK_THREADS
    assert keys == [f"relu/{p}/numba/float32/{SIZE}/t{threads}"
                    for p in ("backward", "forward")], out
    # both figures are named
    assert "% of copy now, baseline " in failed[0]


def test_baseline_figure_is_its_lowest_run(tmp_path):
    """A baseline row of several runs is compared by its lowest run (the
    noise its own runs showed); a row without a spread by its figure."""
    rows = [{"key": "a", "roofline": 0.8, "spread": [0.5, 0.9]},
            {"key": "b", "roofline": 0.8}]
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"results": rows}))
    assert _bench.load_figures(path) == {"a": 0.5, "b": 0.8}


def test_doctored_baseline_fails(honest_baseline, capsys):
    data = json.loads(honest_baseline.read_text())
    for r in data["results"]:
        if r["op"] == "sigmoid" and r["pass"] == "forward":
            r["roofline"] *= 3.0          # a baseline three times what this machine can do
    honest_baseline.write_text(json.dumps(data))
    status = cli.main(["bench", *QUICK, "--ops", "relu,sigmoid", "--compare",
                       str(honest_baseline)])
    out = capsys.readouterr().out
    assert status == 1
    assert "1 of 4 kernels fell more than 25% below" in out
    assert "sigmoid/forward/numba/float32" in out


#: the committed baselines, one a processor (fastact._bench.baseline_for)
BASELINES = sorted(BASELINE.parent.glob("baseline*.json"))


@pytest.mark.parametrize("path", BASELINES, ids=[p.name for p in BASELINES])
def test_committed_baseline_covers_the_quick_run(path):
    data = json.loads(path.read_text())
    figures = _bench.load_figures(path)
    assert data["meta"]["quick"] and data["meta"]["clock"] == "cpu"
    processor = data["meta"]["processor"]
    assert _bench.baseline_for(BASELINE, processor) == (path, [] if path == BASELINE else
                                                        [json.loads(BASELINE.read_text())
                                                         ["meta"]["processor"]])
    size, threads = _bench.QUICK_SIZE, _bench.QUICK_THREADS
    for op in fastact.ACTIVATIONS:
        for p in _bench.PASSES:
            for backend in ("numba", "c"):
                key = _bench.case_key(op, p, backend, "float32", size, threads)
                assert 0.02 < figures[key] < 2, key


def test_baseline_of_the_machines_processor(tmp_path, capsys):
    """--compare FILE takes FILE where it was made on this processor, else
    its sibling FILE-stem.<processor>.json; with neither, the bench runs and
    says that the check did not (no exit status 1 for a machine of another
    kind: its figures say nothing about the code)."""
    def write(path, processor, roofline):
        rows = [{"key": _bench.case_key("relu", p, "numba", "float32", SIZE, 1),
                 "roofline": roofline} for p in _bench.PASSES]
        path.write_text(json.dumps({"meta": {"processor": processor}, "results": rows}))
    here = _bench._cpu_name()
    main = tmp_path / "base.json"
    write(main, "Some Other CPU", 50.0)            # no run here could pass it
    assert _bench.machine_key("Intel(R) Xeon(R) Processor") == "intel-xeon-processor"
    assert _bench.baseline_for(main) == (None, ["Some Other CPU"])
    args = ["bench", *QUICK, "--ops", "relu", "--in-cache", "0", "--compare", str(main)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "regression check NOT RUN: no baseline made on this processor" in out
    assert f"base.{_bench.machine_key()}.json" in out
    sibling = tmp_path / f"base.{_bench.machine_key()}.json"
    write(sibling, here, 50.0)
    assert _bench.baseline_for(main) == (sibling, ["Some Other CPU"])
    assert cli.main(args) == 1                     # checked against the sibling
    out = capsys.readouterr().out
    assert "regression check FAILED: 2 of 2 kernels" in out and sibling.name in out
    write(main, here, 0.01)                        # FILE itself, made here
    assert _bench.baseline_for(main) == (main, [])
    assert cli.main(args) == 0
    assert "regression check passed" in capsys.readouterr().out


def test_quick_run_has_narrow_rows(tmp_path, capsys):
    """--quick without --dtype times _bench.QUICK_NARROW_OPS in the narrow
    dtype too (only those), and the committed baseline has their rows."""
    path = tmp_path / "quick.json"
    assert cli.main(["bench", "--quick", "--size", str(1 << 14), "--in-cache", "0",
                     "--no-progress", "--backends", "numba", "--ops", "relu,elu",
                     "--json", str(path)]) == 0
    capsys.readouterr()
    rows = json.loads(path.read_text())["results"]
    narrow = {(r["op"], r["pass"]) for r in rows if r["dtype"] == _bench.QUICK_NARROW_DTYPE}
    assert narrow == {("relu", p) for p in _bench.PASSES}
    assert {(r["op"], r["dtype"]) for r in rows} >= {("relu", "float32"), ("elu", "float32")}
    figures = _bench.load_figures(BASELINE)
    for op in _bench.QUICK_NARROW_OPS:
        for p in _bench.PASSES:
            for backend in ("numba", "c"):
                key = _bench.case_key(op, p, backend, _bench.QUICK_NARROW_DTYPE,
                                      _bench.QUICK_SIZE, _bench.QUICK_THREADS)
                assert 0.02 < figures[key] < 2, key


def test_make_baseline_add_keeps_other_rows(tmp_path):
    """--add puts the new runs' rows into the baseline, replacing only the
    kernels they measured, and refuses runs made with other settings."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_baseline",
                                                  ROOT / "benchmarks" / "make_baseline.py")
    mb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mb)
    meta = {"quick": True, "size": 4, "threads": 1}
    old = {"meta": meta, "results": [{"key": "a", "roofline": 1.0},
                                     {"key": "b", "roofline": 2.0}]}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(old))
    new = {"meta": dict(meta), "results": [{"key": "b", "roofline": 3.0},
                                           {"key": "c", "roofline": 4.0}]}
    got = {r["key"]: r["roofline"] for r in mb.add_rows(path, new)["results"]}
    assert got == {"a": 1.0, "b": 3.0, "c": 4.0}
    with pytest.raises(SystemExit, match="size"):
        mb.add_rows(path, {"meta": {**meta, "size": 8}, "results": []})
    # --add without a baseline to add to: a clear message before any run
    with pytest.raises(SystemExit, match="does not exist"):
        mb.main(["--add", "--runs", "1", "-o", str(tmp_path / "missing.json")])


BENCHMARK_SUITE = EarlyProcess(
    "regression: the benchmark suite's cases",
    [sys.executable, "-m", "pytest", "benchmarks", "-q", "-k",
     "relu-forward and float32 or row16-forward-numba-float32"],
    cwd=ROOT, env={"FASTACT_BENCH_SIZE": "4096", "PYTHONPATH": str(ROOT)})


@pytest.mark.early(BENCHMARK_SUITE)
def test_benchmark_suite_collects_and_runs():
    """``benchmarks/`` imports cleanly and its cases run (untimed, tiny arrays)."""
    r = BENCHMARK_SUITE.result()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert " passed" in r.stdout
