"""The ``fastact`` command line: options, exit statuses and outputs.

Sizes are tiny: these check the plumbing, not the figures.
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastact
from fastact import _bench, cli

from early import EarlyProcess

SMALL = ["--size", "4096", "--repeat", "2", "--no-progress"]


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_bench_table_and_json(capsys, tmp_path):
    path = tmp_path / "r.json"
    status, out, err = run(capsys, "bench", "--ops", "relu,softmax", "--backends", "numba",
                           *SMALL, "--json", str(path))
    assert status == 0, err
    header = next(line for line in out.splitlines() if line.startswith("op "))
    for col in ("op", "pass", "backend", "dtype", "GB/s", "% copy", "vs NumPy"):
        assert col in header
    rows = [line.split() for line in out.splitlines() if line.startswith(("relu ", "softmax "))]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("relu", "forward", "numba", "float32"), ("relu", "backward", "numba", "float32"),
        ("softmax", "forward", "numba", "float32"), ("softmax", "backward", "numba", "float32")]
    data = json.loads(path.read_text())
    assert data["meta"]["size"] == 4096 and data["meta"]["fastact"] == fastact.__version__
    res = data["results"]
    assert {r["key"] for r in res} == {
        f"{op}/{p}/numba/float32/4096/t{fastact.get_num_threads()}"
        for op in ("relu", "softmax") for p in ("forward", "backward")}
    for r in res:
        assert r["gbs"] > 0 and r["roofline"] > 0 and r["copy_gbs"] > 0
        assert r["numpy_speedup"] > 0
        assert r["elements_per_s"] == pytest.approx(r["size"] / r["seconds"])


def test_bench_torch_column(capsys):
    pytest.importorskip("torch")
    status, out, _ = run(capsys, "bench", "--ops", "elu", "--backends", "numba", *SMALL)
    assert status == 0
    assert "vs torch" in out
    row = next(line for line in out.splitlines() if line.startswith("elu "))
    assert row.split()[-1].endswith("x")


def test_bench_rrelu_brings_its_divisor_form(capsys):
    """``--ops rrelu`` times both parameterizations: rrelu_div (x / a, Xu et
    al.) has no PyTorch counterpart, so its torch column is empty."""
    status, out, _ = run(capsys, "bench", "--ops", "rrelu", "--backends", "numba", *SMALL)
    assert status == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("rrelu")]
    assert sorted({r[0] for r in rows}) == ["rrelu", "rrelu_div"], out
    assert len(rows) == 4, out
    if _bench.torch_available():
        assert all(r[-1] == "-" for r in rows if r[0] == "rrelu_div"), out


def test_bench_rrelu_in_the_narrow_dtypes(capsys):
    """float16 and bfloat16 RReLU: the bench's slopes are float32's (no
    overflow warnings from a 53-bit draw cast to float16), and a PyTorch
    kernel missing for a dtype (no float16 rrelu_with_noise) leaves its
    torch column empty instead of ending the bench."""
    pytest.importorskip("ml_dtypes")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        status, out, _ = run(capsys, "bench", "--ops", "rrelu", "--backends", "numba",
                             "--dtype", "float16,bfloat16", *SMALL)
    assert status == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("rrelu ")]
    assert len(rows) == 4, out
    assert all(r[-1].endswith("x") or r[-1] == "-" for r in rows), out


def test_bench_float64_and_reference_backend(capsys):
    # C, not Numba, beside the reference: Numba's PReLU kernels in both dtypes
    # took 24 s of CI to compile (CI's regression check runs the bench's
    # Numba PReLU rows)
    status, out, _ = run(capsys, "bench", "--ops", "prelu", "--backends", "numpy,c",
                         "--dtype", "all", *SMALL)
    assert status == 0
    rows = {tuple(line.split()[:4]) for line in out.splitlines() if line.startswith("prelu ")}
    assert len(rows) == 8
    assert ("prelu", "backward", "numpy", "float64") in rows


def test_bench_threads_are_restored(capsys):
    before = fastact.get_num_threads()
    status, out, _ = run(capsys, "bench", "--ops", "relu", "--backends", "numba",
                         "--threads", "1", *SMALL)
    assert status == 0 and "1 thread(s), cpu clock" in out
    assert fastact.get_num_threads() == before


def test_compare_passes_and_fails(capsys, tmp_path):
    base = tmp_path / "base.json"
    args = ["bench", "--ops", "sigmoid", "--backends", "numba", *SMALL]
    assert run(capsys, *args, "--json", str(base))[0] == 0
    status, out, _ = run(capsys, *args, "--compare", str(base), "--max-regression", "0.9")
    assert status == 0 and "regression check passed" in out

    data = json.loads(base.read_text())
    for r in data["results"]:
        r["roofline"] *= 1e6          # a baseline no real run can meet
    base.write_text(json.dumps(data))
    status, out, _ = run(capsys, *args, "--compare", str(base), "--retries", "0")
    assert status == 1
    assert "regression check FAILED: 2 of 2 kernels" in out
    line = next(ln for ln in out.splitlines() if "sigmoid/forward/numba/float32/4096" in ln)
    assert "% of copy now, baseline" in line


def test_compare_without_common_kernels_fails(capsys, tmp_path):
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"results": [{"key": "relu/forward/numba/float32/1/t1",
                                             "roofline": 0.5}]}))
    status, out, _ = run(capsys, "bench", "--ops", "relu", "--backends", "numba", *SMALL,
                         "--compare", str(base))
    assert status == 1 and "no kernel of this run is in" in out


@pytest.mark.parametrize("argv, message", [
    (["bench", "--ops", "swish"], "unknown op 'swish'"),
    (["bench", "--backends", "fortran"], "unknown backend 'fortran'"),
    (["bench", "--backends", "cuda"], "gpu_check.py"),
    (["bench", "--dtype", "int8"], "unknown dtype 'int8'"),
    (["warmup", "--dtype", "int8"], "unknown dtype(s) ['int8']"),
    (["bench", "--size", "lots"], "invalid size 'lots'"),
    (["bench", "--size", "0"], "size must be positive"),
    (["bench", "--repeat", "0"], "must be at least 1"),
    (["bench", "--max-regression", "2"], "between 0 and 1"),
    (["bench", "--threads", "1000"], "--threads"),
    (["bench", "--compare", "/nonexistent/baseline.json"], "cannot read baseline"),
    # an empty list meant "the default" (--ops, --backends) or "nothing" (--dtype)
    (["bench", "--ops", ","], "empty list"),
    (["bench", "--backends", ","], "empty list"),
    (["bench", "--dtype", ","], "empty list"),
    (["bench", "--retries", "-1"], "must be at least 0"),
    # too big for memory: NumPy's own errors came out as tracebacks
    (["bench", "--size", "2**60"], "GiB of arrays"),
    (["bench", "--size", "1e15"], "GiB of arrays"),
    # an output that cannot be written fails before the run, not after it
    (["bench", "--json", "/nonexistent/r.json"], "does not exist"),
    (["bench", "--plot", "/nonexistent/r.png"], "/nonexistent"),
    (["plot", "/nonexistent/a.png"], "/nonexistent"),
    (["bench", "--frobnicate"], "unrecognized arguments"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_options_exit_2_with_one_line(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert message in err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("usage:")
             and not ln.startswith(" ")]
    assert len(lines) == 1, err


@pytest.mark.parametrize("command", ["bench", "warmup"])
def test_bfloat16_without_ml_dtypes_is_a_usage_error(capsys, monkeypatch, command):
    """ml_dtypes is optional (not in the cli extra): --dtype bfloat16
    without it says so in one line (the bench ended in a traceback from a
    fresh venv with .[cli])."""
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)      # import fails
    status, out, err = run(capsys, command, "--dtype", "float16,bfloat16", "--ops", "relu",
                           *(SMALL if command == "bench" else ()))
    assert status == 2
    assert "bfloat16 needs ml_dtypes" in err and "Traceback" not in err


def test_compare_with_an_empty_baseline_cannot_read_it(capsys, tmp_path):
    base = tmp_path / "list.json"
    base.write_text("[]")
    status, _, err = run(capsys, "bench", "--ops", "relu", "--backends", "numba", *SMALL,
                         "--compare", str(base))
    assert status == 2 and "cannot read baseline" in err and "no results" in err


def test_repeated_names_run_once_and_small_sizes_say_the_roofline_is_moot(capsys):
    status, out, err = run(capsys, "bench", "--ops", "relu,relu", "--backends", "numba,numba",
                           "--dtype", "float32,float32", *SMALL)
    assert status == 0, err
    assert len([ln for ln in out.splitlines() if ln.startswith("relu ")]) == 2
    assert "'% copy' does not measure memory speed" in out


def test_unavailable_backend_says_why(capsys, monkeypatch):
    fake = {name: {"available": name != "c", "reason": None if name != "c" else
                   "no C compiler found"} for name in ("numpy", "numba", "c", "cuda")}
    monkeypatch.setattr(fastact, "backends", lambda: fake)
    status, _, err = run(capsys, "bench", "--backends", "c")
    assert status == 2
    assert "backend 'c' is unavailable: no C compiler found" in err


def test_info(capsys):
    status, out, _ = run(capsys, "info")
    assert status == 0
    assert f"fastact {fastact.__version__}" in out
    assert "NumPy " in out and "Numba " in out
    assert "numpy  available" in out
    assert "threads:" in out and "CUDA devices:" in out
    for name, st in fastact.backends().items():
        if not st["available"]:
            assert f"{name:<6} unavailable: {st['reason']}" in out


def test_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "act.png"
    status, out, _ = run(capsys, "plot", str(path))
    assert status == 0 and str(path) in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    status, out, _ = run(capsys, "bench", "--ops", "relu", "--backends", "numba", *SMALL,
                         "--plot", str(path))
    assert status == 0
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_without_matplotlib(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import fails
    status, _, err = run(capsys, "plot", str(tmp_path / "x.png"))
    assert status == 2 and "pip install fastact[cli]" in err
    assert len(err.strip().splitlines()) == 1
    status, out, _ = run(capsys, "bench", "--ops", "relu", "--backends", "numba", *SMALL)
    assert status == 0 and "pip install fastact[cli]" in out
    status, _, err = run(capsys, "bench", "--ops", "relu", "--plot", str(tmp_path / "y.png"))
    assert status == 2 and "pip install fastact[cli]" in err
    # a path that cannot be written is said first, with matplotlib or without
    status, _, err = run(capsys, "plot", "/nonexistent/a.png")
    assert status == 2 and "/nonexistent" in err


def test_progress_without_tqdm(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    status, _, err = run(capsys, "bench", "--ops", "relu", "--backends", "numba",
                         "--size", "4096", "--repeat", "2")
    assert status == 0
    assert "fastact bench: 0% (relu forward numba float32" in err


def test_import_is_light():
    code = ("import sys, fastact.cli; "
            "print(sorted(m for m in ('numba', 'matplotlib', 'torch', 'tqdm') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "fastact.cli", "bench", "--ops", "nope"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == ("fastact bench: error: unknown op 'nope'; choose from "
                                + ", ".join(fastact.ACTIVATIONS))


def _child(code, env):
    import os
    e = dict(os.environ, **env)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e,
                       timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return r.stdout


#: ``fastact warmup`` of relu (float32, and float16's narrow kernels) into an
#: empty NUMBA_CACHE_DIR, then a second process that counts its float32
#: kernels' cache misses and hits
_WARMUP_THEN_LOAD = ["""
import sys
from fastact.cli import main
sys.exit(main(['warmup', '--ops', 'relu', '--dtype', 'float32,float16', '--no-progress']))
""", """
import numpy as np, fastact
from fastact import config
from fastact._backends import numba_cpu as nc
x = np.ones(1 << 16, np.float32)
fastact.relu(x[:256], backend="numba"); fastact.relu(x, backend="numba")
config.STREAM_MIN_BYTES = 0
fastact.relu(x, backend="numba")
fastact.relu(np.ones(1 << 17, np.float32)[::2], backend="numba")
ks = [nc._elementwise_kernel("relu", "forward", np.float32, p) for p in (False, True)]
ks += [nc._blocked_kernel("relu", "forward", np.float32)]
ks += [nc._walk_kernel("relu", "forward", np.float32)]
print(sum(len(k.stats.cache_misses) for k in ks), sum(len(k.stats.cache_hits) for k in ks))
"""]
def _in_turn(name, *codes):
    """An early child running ``codes`` in processes one after the other,
    in an empty Numba cache of their own (stdout: theirs in turn)."""
    return EarlyProcess(name, [sys.executable, "-c", """
import subprocess, sys
for code in sys.argv[1:]:
    r = subprocess.run([sys.executable, "-c", code])
    if r.returncode:
        sys.exit(r.returncode)
""", *codes], own_cache=True)


WARMUP = _in_turn("cli: warmup fills the cache", *_WARMUP_THEN_LOAD)


@pytest.mark.early(WARMUP)
def test_warmup_fills_the_cache():
    """``fastact warmup`` compiles the kernels into NUMBA_CACHE_DIR; a later
    process loads every variant (serial, parallel, blocked, walk) from it."""
    r = WARMUP.result()
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "fastact warmup:" in r.stdout and "kernel calls" in r.stdout, r.stdout
    misses, hits = r.stdout.split()[-2:]
    assert misses == "0" and int(hits) >= 4, r.stdout


@pytest.mark.parametrize("dtypes", [("int8",), ("float13",), (np.float32,)])
def test_warmup_refuses_other_dtypes(dtypes):
    """fastact.warmup takes dtype names of _warmup.DTYPES: an integer dtype
    would silently warm float64's kernels, an unknown name must not reach
    NumPy's own message."""
    with pytest.raises(ValueError, match="dtypes must be names"):
        fastact.warmup(dtypes, ["relu"])


_BENCH_ARGS = ("['bench', '--ops', 'relu', '--backends', 'numba', '--size', '131072', "
               "'--in-cache', '0', '--no-progress'")
#: ``fastact bench --compile-only``, then the same bench counting its
#: kernels' cache misses and hits
COMPILE_ONLY = _in_turn("cli: bench --compile-only fills the cache", f"""
import sys
from fastact.cli import main
sys.exit(main({_BENCH_ARGS}, '--compile-only']))
""", f"""
import numpy as np
from fastact import _bench
from fastact._backends import numba_cpu as nc
from fastact.cli import main
assert main({_BENCH_ARGS}, '--repeat', '1']) == 0
ks = [nc._elementwise_kernel("relu", p, np.float32, True) for p in ("forward", "backward")]
ks += [nc._elementwise_kernel("relu", "forward", np.float32, False), _bench._copy_kernel()]
print(sum(len(k.stats.cache_misses) for k in ks), sum(len(k.stats.cache_hits) for k in ks))
""")


@pytest.mark.early(COMPILE_ONLY)
def test_bench_compile_only_fills_the_cache(tmp_path, capsys):
    """``fastact bench --compile-only`` times nothing, and the same bench
    then loads every kernel it calls from the disk cache (CI compiles the
    regression check's kernels so, beside the tests)."""
    r = COMPILE_ONLY.result()
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    first, rest = r.stdout.split("\n", 1)
    assert first.startswith("fastact bench --compile-only: 2 kernel calls"), r.stdout
    assert "GB/s" in rest and "GB/s" not in first
    misses, hits = r.stdout.split()[-2:]
    assert misses == "0" and int(hits) >= 4, r.stdout
    status, _, err = run(capsys, "bench", "--compile-only", "--compare", str(tmp_path / "b.json"))
    assert status == 2 and "--compile-only times nothing: --compare" in err


def test_first_calls_do_not_wait_for_numba():
    """With the C backend built, the automatic choice runs every op's first
    call on big arrays without importing (or compiling with) Numba: the ops
    config.NUMBA_FIRST sends to Numba (clearly faster there) too, whose
    kernels a child process compiles meanwhile (fastact._dispatch)."""
    if not fastact.backends()["c"]["available"]:
        pytest.skip("the C backend is not built")
    out = _child("""
import sys, time, numpy as np, fastact
from fastact import _dispatch
from fastact._registry import REGISTRY
t = time.perf_counter()
x = np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)
for s in REGISTRY.values():
    if s.public and s.kind != "prelu":
        getattr(fastact, s.api_name)(x, **s.example_kwargs())
        if s.api_name == "rrelu":
            fastact.rrelu(x, training=True, seed=1)
fastact.prelu(x, np.float32(0.25))
print("numba" in sys.modules, sorted(_dispatch._compiled), time.perf_counter() - t)
for pid, proc in _dispatch._compiled.values():    # the compiles not needed here
    proc.kill()
""", {})
    assert out.split()[0] == "False", out
    # the ops of NUMBA_FIRST have their compile started
    from fastact import config
    assert all(repr(op) in out for op in config.NUMBA_FIRST), out


#: a big call of relu, made an op of NUMBA_FIRST, while and after its
#: kernels compile (started early: a compile of about 20 s)
MOVE_TO_NUMBA = EarlyProcess("cli: an op of NUMBA_FIRST moves to numba", [
    sys.executable, "-c", """
import sys, numpy as np, fastact
from fastact import _dispatch
_dispatch._NUMBA_FIRST = frozenset({"relu"})
x = np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)
ref = fastact.relu(x, backend="numpy")
first = _dispatch.choose(None, x.size, "relu").name
y1 = fastact.relu(x)
ready = _dispatch.wait_compiled("relu", timeout=400)
then = _dispatch.choose(None, x.size, "relu").name
y2 = fastact.relu(x)
d = max(float(np.abs(y - ref).max()) for y in (y1, y2))
print(first, ready, then, d < 1e-6)
"""], timeout=600)
NUMBA_AT_ONCE = EarlyProcess("cli: numba at once without the background compile", [
    sys.executable, "-c", """
import numpy as np, fastact
from fastact import _dispatch
print(_dispatch.choose(None, 1 << 18, "gelu").name)
"""], env={"FASTACT_NUMBA_BACKGROUND": "0"}, timeout=600)


@pytest.mark.early(MOVE_TO_NUMBA, NUMBA_AT_ONCE)
def test_numba_first_ops_move_to_numba_once_compiled():
    """A big call of an op of config.NUMBA_FIRST takes C while a child
    process compiles its Numba kernels, and Numba once they are loaded, with
    the reference's results on both; FASTACT_NUMBA_BACKGROUND=0: Numba at
    once.  (relu made one of them here: its kernels compile fastest.)"""
    if not fastact.backends()["c"]["available"] or not fastact.backends()["numba"]["available"]:
        pytest.skip("needs the C and Numba backends")
    for child, want in ((MOVE_TO_NUMBA, ["c", "True", "numba", "True"]),
                        (NUMBA_AT_ONCE, ["numba"])):
        r = child.result()
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
        assert r.stdout.split() == want, r.stdout


def test_bench_in_cache_and_layout_tables(capsys, tmp_path):
    path = tmp_path / "r.json"
    status, out, err = run(capsys, "bench", "--ops", "relu", "--backends", "numba", "--size",
                           str(1 << 14), "--in-cache", "4096", "--repeat", "1",
                           "--no-progress", "--json", str(path))
    assert status == 0, err
    assert "in cache: 4,096 elements per array" in out
    assert "layouts: float32, 128**2 elements" in out
    layout_lines = [line for line in out.splitlines()
                    if line.startswith(("sigmoid(", "relu(", "sigmoid_backward(", "softmax("))]
    assert len(layout_lines) == _bench.LAYOUT_CASES == len(_bench.layout_cases("float32", 8))
    data = json.loads(path.read_text())
    assert {r["size"] for r in data["results"]} == {1 << 14, 4096}
    assert data["meta"]["in_cache_size"] == 4096
    assert [c["case"] for c in data["layouts"]] == [c[0] for c in _bench.layout_cases("float32", 8)]
    for c in data["layouts"]:
        assert c["backends"]["numba"]["seconds"] > 0
    # none by default below the in-cache size, and none asked for
    status, out, _ = run(capsys, "bench", "--ops", "relu", "--backends", "numba", *SMALL,
                         "--no-layouts")
    assert status == 0 and "in cache" not in out and "layouts:" not in out
