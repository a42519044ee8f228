"""Tests specific to the C backend: the build helper, instruction-set dispatch
and its override, threads, the GIL, RReLU bit-identity with the other
backends, streaming stores, bounds, and (opt-in) a run under AddressSanitizer
+ UBSan.

The core suite (tests/test_core_*.py) checks the C backend's values against
the reference on every op, dtype and layout; these tests cover what is
particular to C.  ``FASTACT_C_SANITIZE=1`` enables the sanitizer run (about a
minute: it compiles the extension with -fsanitize=address,undefined and runs
this file and the core suite's C cases under it).
"""
from __future__ import annotations

import importlib.util
import math
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fastact
from conftest import ELEMENTWISE_OPS, assert_bitwise_equal, mixed_values
from fastact import _registry, _rng, config
from fastact._spec import PASS_SUFFIX

ROOT = pathlib.Path(__file__).resolve().parents[1]
ISAS = ("baseline", "avx2", "avx512")


def _load_build_module():
    spec = importlib.util.spec_from_file_location("_fastact_build", ROOT / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def cb():
    """The loaded C backend, or a skip with its reason."""
    st = fastact.backends()["c"]
    if not st["available"]:
        pytest.skip(f"C backend unavailable: {st['reason']}")
    from fastact import _dispatch
    return _dispatch.get("c")


@pytest.fixture
def isa_level(cb):
    """Switch the kernels to an instruction set for one test, then restore."""
    lib = cb._lib
    before = lib.fa_isa()

    def use(name):
        return ISAS[lib.fa_set_isa(ISAS.index(name))]

    yield use
    lib.fa_set_isa(before)


def _run_python(code, **env):
    e = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True,
                          text=True, timeout=60)


# --- the build helper -------------------------------------------------------------------

def test_cdef_is_read_from_the_header_and_declares_every_kernel():
    """Every registry kernel has its id (from the generated c_src/ops.h); the
    entry points take them; the row kernels keep their named functions."""
    from fastact._registry import c_ops
    b = _load_build_module()
    cdef = b.cdef_text()
    assert "#include" not in cdef and "#ifndef" not in cdef
    for fn in ("fa_elementwise", "fa_rowwise"):
        assert re.search(rf"\b{fn}\(", cdef), fn
    for name, pass_ in c_ops():
        kid = f"FA_K_{name.upper()}_{PASS_SUFFIX[pass_].upper()}"
        assert re.search(rf"\b{kid} = \d+,", cdef), kid
    for op in ("prelu", "softmax"):
        for pass_ in ("fwd", "bwd"):
            for sfx in ("f32", "f64"):
                assert re.search(rf"\bfa_{op}_{pass_}_{sfx}\(", cdef), (op, pass_, sfx)


def _c_block(text, start):
    """The text of c_src/kernels.inc's function starting at ``start``."""
    i = text.index(start)
    return text[i:text.index("\n}\n", i)]


def test_c_primitives_are_ports_of_the_python_ones():
    """c_src/kernels.inc's float32 polynomials, clamps and float64 Taylor
    coefficients are _prims.py's (the same literals, in the same order), and
    its constants C_* equal the Python ones."""
    from fastact import _prims
    text = (ROOT / "c_src" / "kernels.inc").read_text()
    f32 = text[text.index("#if FA_F32\n#define UT uint32_t"):text.index("#else\n#define UT uint64_t")]
    f64 = text[text.index("#else\n#define UT uint64_t"):text.index("#endif", text.index(
        "#else\n#define UT uint64_t"))]

    def literals(block, branch):
        part = block.split("#else")[branch] if "#else" in block else block
        return [float(v) for v in re.findall(r"\(T\)([-+0-9.e]+)\)?[);,]", part)]
    assert literals(_c_block(text, "FA_INLINE T N_(expm1_poly)"), 0) == list(
        _prims.EXPM1_POLY_F32)
    assert literals(_c_block(text, "FA_INLINE T N_(exp_poly)"), 0)[:5] == list(
        _prims.EXP_POLY_F32)
    taylor = [eval(v) for v in re.findall(r"(1\.0 / [0-9.]+)", _c_block(text, "FA_INLINE T N_(taylor_q)"))]
    assert taylor == [1.0 / math.factorial(k) for k in range(13, 1, -1)]

    def const(block, name):
        return float(re.search(rf"#define {name} \(\(T\)([-0-9.e]+)\)", block).group(1))
    for block, key, d in ((f32, "f32", _prims._F32), (f64, "f64", _prims._F64)):
        assert const(block, "C_RATIO_HI") == _prims.RATIO_HI[key]
        assert const(block, "C_RATIO_LO") == d["lo"]
        for c_name, py in (("C_LOG2E", "log2e"), ("C_LN2HI", "ln2hi"), ("C_LN2LO", "ln2lo"),
                           ("C_EM1_LO", "em1_lo"), ("C_MUL_LO", "mul_lo"), ("C_EXP_HI", "hi")):
            assert const(block, c_name) == d[py], (key, c_name)


def test_log_softmax_lanes_match_config():
    """The float64 log_softmax forward's compensated lanes are as many in C
    as in the Numba backend (config.LOG_SOFTMAX_LANES)."""
    text = (ROOT / "c_src" / "kernels.inc").read_text()
    assert int(re.search(r"#define FA_LOG_LANES (\d+)", text).group(1)) == \
        config.LOG_SOFTMAX_LANES


def test_generated_op_list_is_current():
    """c_src/ops.h is what `python build.py --generate` writes from the
    registry (run it after adding an op)."""
    b = _load_build_module()
    assert b.generate(check=True), ("c_src/ops.h or README.md's op table is stale: run "
                                    "`python build.py --generate`")


def _disassembly(so, symbol):
    r = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"--disassemble={symbol}", str(so)],
                       capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else ""


@pytest.mark.skipif(shutil.which("objdump") is None or platform.machine() not in ("x86_64", "AMD64"),
                    reason="needs objdump on x86-64")
def test_every_c_kernel_is_inlined_and_vectorized(cb):
    """Each elementwise and gated range worker of the AVX-512 and AVX2 builds
    (the kernels of c_src/ops.h, both dtypes) computes on vector registers and
    calls no function but libm's frexp (once per call, splitting a
    parameter): a formula or primitive left a call would keep its loop
    scalar.  Read from the built extension's disassembly."""
    from fastact._registry import c_ops
    so = pathlib.Path(cb._lib.__file__ if hasattr(cb._lib, "__file__") else
                      importlib.import_module("fastact._backends._cfastact").__file__)
    allowed = re.compile(r"<(frexpf?|memcpy|memset)(@plt)?>")
    bad = {}
    for name, pass_ in c_ops():
        if _registry.REGISTRY[name].kind not in ("elementwise", "gated"):
            continue
        stem = f"{name}_{PASS_SUFFIX[pass_]}_run"
        for isa, reg in (("avx512", "zmm"), ("avx2", "ymm")):
            for sfx in ("f32", "f64"):
                sym = f"{stem}_{sfx}_{isa}"
                text = _disassembly(so, sym)
                body = text[text.find(f"<{sym}>:"):]
                if f"<{sym}>:" not in text:
                    bad[sym] = "not found"
                    continue
                # identical kernels are folded: one jumps to its twin
                insns = [ln for ln in body.splitlines() if re.match(r"\s+[0-9a-f]+:\t", ln)]
                twin = len(insns) == 1 and re.search(r"\tjmp\s+\w+ <([\w.]+)>", insns[0])
                if twin:
                    other = _disassembly(so, twin.group(1))
                    body = other[other.find(f"<{twin.group(1)}>:"):]
                calls = [ln.split("call")[-1].strip() for ln in body.splitlines()
                         if re.search(r"\tcall", ln) and not allowed.search(ln)]
                if calls or reg not in body:
                    bad[sym] = {"calls": calls[:3], "vector": reg in body}
    assert not bad, bad


def test_every_elementwise_kernel_id_runs(cb):
    """Each id below FA_K_ELEMENTWISE_COUNT has a kernel (fa_elementwise
    returns 0), the count itself is refused (-1), and each id is the
    registry's."""
    from fastact._registry import c_ops, elementwise
    lib, ffi = cb._lib, cb._ffi
    n_ew = sum(len(_registry.REGISTRY[n].passes()) for n in elementwise())
    assert lib.FA_K_ELEMENTWISE_COUNT == n_ew and lib.FA_K_COUNT == len(c_ops())
    x = np.linspace(-3, 3, 64)
    out = np.empty_like(x)
    px, po = ffi.from_buffer("double[]", x), ffi.from_buffer("double[]", out, True)
    for k in range(n_ew):
        assert lib.fa_elementwise(lib.FA_F64_IDX, k, px, px, po, x.size, 0.5, 1.0, 2.0, 3, 1) == 0
    assert lib.fa_elementwise(lib.FA_F64_IDX, n_ew, px, px, po, x.size, 0, 0, 0, 0, 1) == -1


def test_cdef_without_markers_is_an_error(tmp_path):
    b = _load_build_module()
    h = tmp_path / "x.h"
    h.write_text("int f(void);\n")
    with pytest.raises(RuntimeError, match="cdef begin"):
        b.cdef_text(h)


def test_compile_flags_keep_fp_contraction_off(monkeypatch):
    b = _load_build_module()
    monkeypatch.setenv("FASTACT_C_CFLAGS", "-DFOO=1")
    cflags, ldflags = b.compile_flags(threads=True, sanitize=True)
    assert "-ffp-contract=off" in cflags and "-DFOO=1" in cflags
    assert "-pthread" in cflags and "-pthread" in ldflags
    assert "-fopenmp" not in cflags          # the threads are c_src/pool.c's
    assert any(f.startswith("-fsanitize=address") for f in ldflags)
    assert "-DFA_NO_THREADS" in b.compile_flags(threads=False)[0]


def test_every_header_function_is_in_the_built_module(cb):
    b = _load_build_module()
    names = re.findall(r"\b(fa_\w+)\(", b.cdef_text())
    missing = [n for n in names if not hasattr(cb._lib, n)]
    assert not missing


def test_unbuilt_extension_reports_why(tmp_path):
    """A missing extension makes the backend unavailable with a reason, not an error."""
    code = ("import fastact; s = fastact.backends()['c']; "
            "print(s['available'], s['reason'])")
    r = _run_python(code, FASTACT_C_LIBRARY=str(tmp_path / "nothing.so"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("False") and "not built" in r.stdout
    assert fastact.relu(np.array([-1.0, 2.0]))[1] == 2.0


# --- instruction sets --------------------------------------------------------------------

def test_describe_reports_the_isa(cb):
    d = fastact.backends()["c"]
    assert d["isa"] in ISAS and d["best_isa"] in ISAS
    assert ISAS.index(d["isa"]) <= ISAS.index(d["best_isa"])
    assert d["threads"] == (fastact.get_num_threads() if d["pool"] else 1)


@pytest.mark.parametrize("want", ISAS)
def test_env_var_caps_the_isa(cb, want):
    best = fastact.backends()["c"]["best_isa"]
    expect = ISAS[min(ISAS.index(want), ISAS.index(best))]
    r = _run_python("import fastact; print(fastact.backends()['c']['isa'])",
                    FASTACT_C_ISA=want)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == expect


def test_env_var_with_an_unknown_isa_is_reported(cb):
    r = _run_python("import fastact; print(fastact.backends()['c']['reason'])",
                    FASTACT_C_ISA="sse9")
    assert r.returncode == 0, r.stderr
    assert "FASTACT_C_ISA='sse9'" in r.stdout and "avx512" in r.stdout


def _special(dtype, n=4099, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 30).astype(dtype)
    fi = np.finfo(dtype)
    x[:12] = [np.nan, -0.0, 0.0, np.inf, -np.inf, fi.tiny, -fi.tiny, fi.max, -fi.max,
              fi.smallest_subnormal, -fi.smallest_subnormal, -1e-3]
    return x


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_every_isa_is_bit_exact_where_required(cb, isa_level, isa, dtype):
    """Each ISA's kernels (including the vector bodies' scalar tails) against the
    reference: bit for bit on the exact ops, and bit-identical across ISAs there."""
    used = isa_level(isa)
    x = _special(dtype)
    g = np.random.default_rng(1).standard_normal(x.size).astype(dtype)
    cases = [
        (fastact.relu, (x,), {}), (fastact.relu_backward, (g, x), {}),
        (fastact.leaky_relu, (x, 0.1), {}), (fastact.leaky_relu_backward, (g, x, 0.1), {}),
        (fastact.rrelu, (x,), {"training": True, "seed": 9}),
        (fastact.rrelu_backward, (g, x), {"training": True, "seed": 9}),
        (fastact.rrelu, (x, 0.2, 0.4), {}),
        (fastact.prelu, (x.reshape(1, -1), np.array([0.3], dtype)), {}),
    ]
    for fn, args, kw in cases:
        want = fn(*args, backend="numpy", **kw)
        got = fn(*args, backend="c", **kw)
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), (used, fn.__name__)


def _ulp_err(got, want):
    """|got - want| in ULPs of the want's binade; 0 where both NaN or equal."""
    got, want = got.astype(np.longdouble), want.astype(np.longdouble)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    _, e = np.frexp(np.where(same, 1, want).astype(np.float64))
    return np.where(same, 0, np.abs(got - want) / np.ldexp(1.0, e - 53).astype(np.longdouble))


@pytest.mark.parametrize("isa", ISAS)
def test_every_isa_agrees_on_the_exponential_ops(cb, isa_level, isa):
    """sigmoid/elu and their gradients, gelu, softmax: each ISA within 4 ULP of the
    float64 reference rounded to float32 (plus its own half ULP)."""
    isa_level(isa)
    x = _special(np.float32)[12:]
    g = np.random.default_rng(2).standard_normal(x.size).astype(np.float32)
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    rows = x[:4080].reshape(16, 255) / np.float32(10)
    ref = {
        "sigmoid": (fastact.sigmoid(x, backend="c"), fastact.sigmoid(x64, backend="numpy")),
        "elu": (fastact.elu(x, 0.7, backend="c"), fastact.elu(x64, 0.7, backend="numpy")),
        "elu_bwd": (fastact.elu_backward(g, x, 0.7, backend="c"),
                    fastact.elu_backward(g64, x64, 0.7, backend="numpy")),
        "gelu": (fastact.gelu(x, backend="c"), fastact.gelu(x64, backend="numpy")),
        "softmax": (fastact.softmax(rows, backend="c"),
                    fastact.softmax(rows.astype(np.float64), backend="numpy")),
    }
    for name, (got, want) in ref.items():
        # ULPs of float32: scale float64 ULPs by 2**29 (where want is below
        # float64's normal range, gelu's tail, the subnormal spacing below)
        with np.errstate(divide="ignore", invalid="ignore"):
            err = _ulp_err(got.astype(np.float64), want) / 2.0 ** 29
        tiny = np.abs(want) < np.finfo(np.float32).tiny      # subnormal spacing
        err = np.where(tiny, np.abs(got.astype(np.float64) - want)
                       / np.finfo(np.float32).smallest_subnormal, err)
        assert float(np.max(err)) <= 4.5, (isa, name, float(np.max(err)))


# --- rrelu ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_rrelu_slopes_are_bit_identical_to_reference_and_numba(cb, dtype):
    n = (1 << 16) + 7                       # parallel path, odd tail
    x = -np.ones(n, dtype)
    lower, upper, seed = 0.1, 0.45, 12345
    got = -fastact.rrelu(x, lower, upper, training=True, seed=seed, backend="c")
    want = _registry.reference_rrelu_slopes(n, _rng.seed_key(seed), lower, upper, dtype)
    assert np.array_equal(got, want)
    if not fastact.backends()["numba"]["available"]:
        pytest.skip("numba unavailable: compared with the reference only")
    nb = -fastact.rrelu(x, lower, upper, training=True, seed=seed, backend="numba")
    assert np.array_equal(got, nb)


def test_rrelu_slopes_do_not_depend_on_the_thread_split(cb):
    x = -np.ones(config.C_PARALLEL_MIN * 3 + 5, np.float32)
    before = fastact.get_num_threads()
    try:
        fastact.set_num_threads(1)
        one = fastact.rrelu(x, training=True, seed=3, backend="c")
        fastact.set_num_threads(before)
        many = fastact.rrelu(x, training=True, seed=3, backend="c")
    finally:
        fastact.set_num_threads(before)
    assert np.array_equal(one, many)


# --- threads and the GIL ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_results_do_not_depend_on_the_thread_count(cb, dtype):
    rng = np.random.default_rng(4)
    n = max(config.C_PARALLEL_MIN * 4, 1 << 17) + 37
    x = (rng.standard_normal(n) * 5).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    rows = x[: 97 * 1300].reshape(97, 1300)
    x3 = x[: 5 * 64 * 211].reshape(5, 64, 211)
    w = rng.uniform(0, 0.5, 64).astype(dtype)
    calls = [
        lambda: fastact.sigmoid(x, backend="c"),
        lambda: fastact.elu_backward(g, x, backend="c"),
        lambda: fastact.softmax(rows, backend="c"),
        lambda: fastact.softmax_backward(g[:rows.size].reshape(rows.shape), rows, backend="c"),
        lambda: fastact.prelu(x3, w, backend="c"),
        lambda: fastact.prelu_backward(g[:x3.size].reshape(x3.shape), x3, w, backend="c")[0],
    ]
    before = fastact.get_num_threads()
    try:
        fastact.set_num_threads(1)
        serial = [c() for c in calls]
        fastact.set_num_threads(fastact._threads.max_threads())
        parallel = [c() for c in calls]
    finally:
        fastact.set_num_threads(before)
    for s, p in zip(serial, parallel):
        assert np.array_equal(s, p, equal_nan=True)


@pytest.mark.parametrize("shape", [(2**20, 4), (2**20 + 1, 4), (2**18 + 1, 3, 5),
                                   (131073, 64, 1), (5, 3, 2), (1, 7, 1)])
def test_prelu_short_rows_run_long_whatever_the_batch(cb, shape):
    """Short channel rows are called as runs of at least config.PRELU_RUN_MIN
    positions (or the whole array) covering every sample once, whatever the
    batch size: an odd batch once fell back to segments of a few elements
    (12-20x slower)."""
    x = np.empty(shape if len(shape) == 3 else shape + (1,), np.float32)
    w = np.arange(shape[1], dtype=np.float32)
    calls = cb._short_rows(x, w)
    ci = x.shape[1] * x.shape[2]
    assert [c[:2] for c in calls] == [(0, calls[0][1])] + [
        (a[1], b[1]) for a, b in zip(calls, calls[1:])] and calls[-1][1] == x.shape[0]
    for lo, hi, ws, outer, C, inner in calls:
        assert outer * C * inner == (hi - lo) * ci and ws.size == C
        assert C >= min(config.PRELU_RUN_MIN, x.size) or (lo, hi) == calls[-1][:2], calls
    # the first call's runs repeat the weights sample by sample
    ws = calls[0][2]
    assert_bitwise_equal(ws[:ci], np.repeat(w, x.shape[2]))


def test_prelu_weight_gradient_is_exact_enough_with_any_split(cb):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 5, config.C_PARALLEL_MIN)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    w = np.full(5, 0.25, np.float32)
    exact = np.where(x > 0, 0, g.astype(np.float64) * x).sum(axis=(0, 2))
    before = fastact.get_num_threads()
    try:
        for nt in range(1, fastact._threads.max_threads() + 1):
            fastact.set_num_threads(nt)
            _, gw = fastact.prelu_backward(g, x, w, backend="c")
            assert np.array_equal(gw, exact.astype(np.float32)), nt
    finally:
        fastact.set_num_threads(before)


@pytest.mark.parametrize("op", [fastact.softmax, fastact.sigmoid], ids=["cffi", "fastcall"])
def test_calls_release_the_gil(cb, op):
    """A Python thread keeps running while a long C call is in progress
    (softmax goes through cffi, sigmoid through _cfastcall)."""
    x = np.random.default_rng(6).standard_normal(1 << 24).reshape(64, -1)
    out = np.empty_like(x)
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    before = fastact.get_num_threads()
    t = threading.Thread(target=spin)
    try:
        fastact.set_num_threads(1)
        op(x, out=out, backend="c")       # warm
        t.start()
        time.sleep(0.02)
        t0 = time.perf_counter()
        op(x, out=out, backend="c")
        t1 = time.perf_counter()
    finally:
        stop.set()
        t.join()
        fastact.set_num_threads(before)
    # a thread holding the GIL would hand it over every switch interval
    if t1 - t0 < 4 * sys.getswitchinterval():
        pytest.skip("the C call was too quick to observe")
    # with the GIL held, the spinning thread would stop for the whole call
    inside = [t0] + [s for s in ticks if t0 < s < t1] + [t1]
    assert max(np.diff(inside)) < (t1 - t0) / 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_child_can_still_run_parallel_kernels(cb):
    """A thread pool does not survive fork(); the child must not hang."""
    code = ("import os, numpy as np, fastact\n"
            "x = np.ones(1 << 20, np.float32)\n"
            "fastact.sigmoid(x, backend='c')\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    ok = fastact.sigmoid(x, backend='c')[0] == fastact.sigmoid(x[:1], backend='c')[0]\n"
            "    os._exit(0 if ok else 3)\n"
            "_, status = os.waitpid(pid, 0)\n"
            "print(os.waitstatus_to_exitcode(status))\n")
    r = _run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"


# --- the fast call path (c_src/fastcall.c) ---------------------------------------------------
# The elementwise kernels are called through _cfastcall, which reads the
# arrays' pointers with the NumPy C API; cffi's from_buffer path stays for
# builds without it.  Both must compute the same bits, and the kernel objects
# must refuse anything the C code could not take.

def test_fast_call_path_is_built_and_used(cb):
    d = cb.describe()
    assert d["fastcall"], f"the C backend calls through cffi: {d['fastcall_reason']}"
    k = cb.elementwise_kernel("relu", "forward", np.float32, True)
    assert "fastact C relu_fwd" in repr(k)


def test_fast_call_path_can_be_turned_off():
    r = _run_python("import fastact, json; print(json.dumps(fastact.backends()['c']))",
                    FASTACT_C_FASTCALL="0")
    assert r.returncode == 0, r.stderr
    assert '"fastcall": false' in r.stdout and "FASTACT_C_FASTCALL=0" in r.stdout


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_fast_call_and_cffi_paths_agree_bitwise(cb, monkeypatch, two_threads, dtype):
    """Every elementwise op, both passes, small and split across threads:
    the same bits through _cfastcall as through cffi's from_buffer."""
    for n in (0, 1, 1003, 2 * config.C_PARALLEL_MIN + 3):
        x = mixed_values(dtype, n, seed=n)
        g = np.random.default_rng(n).standard_normal(n).astype(dtype)
        for op in ELEMENTWISE_OPS:
            s = op.fwd(x, backend="numpy") if op.saves == "y" else x
            fast = (op.fwd(x, backend="c"), op.bwd(g, s, backend="c"))
            with monkeypatch.context() as m:
                m.setattr(cb, "_fastcall", None)
                m.setattr(fastact._api, "_kernels", {})     # the API's kernel cache
                slow = (op.fwd(x, backend="c"), op.bwd(g, s, backend="c"))
            for a, b in zip(fast, slow):
                assert_bitwise_equal(a, b)


def _fast_kernels(cb):
    fwd = cb.elementwise_kernel("leaky_relu", "forward", np.float32, True)
    bwd = cb.elementwise_kernel("relu", "backward", np.float32, True)
    rr = cb.elementwise_kernel("rrelu_train", "forward", np.float64, True)
    return fwd, bwd, rr


def test_fast_kernels_compute_what_they_are_given(cb):
    fwd, bwd, rr = _fast_kernels(cb)
    x = np.array([-2.0, 0.0, 3.0], np.float32)
    out = np.empty_like(x)
    assert fwd(x, out, (np.float32(0.5),)) is None
    assert_bitwise_equal(out, np.array([-1.0, 0.0, 3.0], np.float32))
    bwd(np.ones(3, np.float32), x, out, ())
    assert_bitwise_equal(out, np.array([0.0, 0.0, 1.0], np.float32))
    xd = np.full(5, -1.0)
    got = np.empty_like(xd)
    key = _rng.seed_key(7)
    rr(xd, got, (key, 0.125, 1 / 3))
    assert_bitwise_equal(got, fastact.rrelu(xd, training=True, seed=7, backend="numpy"))


def test_fast_kernels_refuse_what_c_cannot_take(cb):
    """Every check of c_src/fastcall.c raises, and nothing is written."""
    fwd, bwd, rr = _fast_kernels(cb)
    x = np.ones(8, np.float32)
    out = np.zeros(8, np.float32)
    p = (np.float32(0.5),)
    ro = np.zeros(8, np.float32)
    ro.flags.writeable = False
    bad = [
        ((x.tolist(), out, p), TypeError, "x must be a numpy.ndarray"),
        ((x.astype(np.float64), out, p), TypeError, "x has the wrong dtype"),
        ((x.astype(">f4"), out, p), TypeError, "x has the wrong dtype"),
        ((x, out.astype(np.float64), p), TypeError, "out has the wrong dtype"),
        ((np.ones(16, np.float32)[::2], out, p), ValueError, "x is not C-contiguous"),
        ((x, ro, p), ValueError, "out is read-only"),
        ((np.ones(9, np.float32), out, p), ValueError, "differ in size"),
        ((x, out, ()), TypeError, "a tuple of 1 values"),
        ((x, out, [0.5]), TypeError, "a tuple of 1 values"),
        ((x, out, ("a",)), TypeError, "real numbers"),
        ((x, out), TypeError, "takes 3 positional arguments"),
    ]
    for args, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            fwd(*args)
    with pytest.raises(TypeError, match="takes 3 positional"):
        fwd(x, out=out, params=p)
    with pytest.raises(ValueError, match="s is not C-contiguous"):
        bwd(x, np.ones(16, np.float32)[::2], out, ())
    with pytest.raises(ValueError, match="differ in size"):
        bwd(x, np.ones(7, np.float32), out, ())
    assert not out.any()
    xd = np.ones(4)
    with pytest.raises(OverflowError):
        rr(xd, np.empty_like(xd), (-1, 0.1, 0.3))          # the key is a uint64
    with pytest.raises(TypeError):
        rr(xd, np.empty_like(xd), (0.5, 0.1, 0.3))         # ... an integer


def test_fast_kernel_factory_rejects_bad_arguments(cb):
    mk = cb._fastcall.make_kernel
    ok = dict(address=1, kernel=2, dtype=np.float32, binary=False, nparams=0, has_key=False,
              parallel_min=1, threads=lambda: 1, name="k")
    for change in (dict(address=0), dict(dtype=np.int32), dict(dtype=np.int16),
                   dict(dtype=np.dtype("V2")), dict(nparams=4),
                   dict(has_key=True, nparams=0), dict(threads=None)):
        with pytest.raises((ValueError, TypeError)):
            mk(**{**ok, **change})


def test_fast_kernels_of_the_narrow_dtypes(cb):
    """fastcall.c takes float16 and ml_dtypes' bfloat16 (the API's fast
    path for them): each kernel only its own dtype, bits as the general
    path's."""
    if cb._fastcall is None:
        pytest.skip(cb._fastcall_reason)
    dts = [np.dtype(np.float16)]
    try:
        import ml_dtypes
        dts.append(np.dtype(ml_dtypes.bfloat16))
    except ImportError:
        pass
    v = np.linspace(-9, 9, 301, dtype=np.float32)
    for dt in dts:
        x = v.astype(dt)
        k = cb._fast_kernel("sigmoid", "forward", dt)
        out = np.empty_like(x)
        k(x, out, ())
        want = np.empty_like(x)
        cb._narrow_elementwise("sigmoid", "forward", [x], want, ())
        assert np.array_equal(out.view(np.uint16), want.view(np.uint16))
        wrong = [v, x.view(np.uint16)] + [x.view(d) for d in dts if d != dt]
        for a in wrong:
            with pytest.raises(TypeError, match="x has the wrong dtype"):
                k(a, out, ())


# --- strided operands (fa_elementwise_strided, c_src/walk.inc) ----------------------

def test_walk_tiles_fit_the_c_buffers(cb):
    """The tile plan (config.WALK_*) stays inside walk.inc's stack buffers."""
    lib = cb._lib
    assert config.WALK_TILE_BYTES <= lib.FA_WALK_BYTES
    assert max(config.WALK_TILE_ROWS, config.WALK_COLUMN_ROWS) <= lib.FA_WALK_ROWS


def test_strided_entry_refuses_what_it_cannot_take(cb):
    """fa_elementwise_strided returns -1 and writes nothing for arguments
    outside its bounds: dtype, kernel id, axes, extents, tiles, a strided
    operand flagged direct."""
    lib, ffi = cb._lib, cb._ffi
    x = np.linspace(-3, 3, 64)
    out = np.zeros_like(x)
    ptrs = [x.ctypes.data, 0, out.ctypes.data]
    ok = dict(dtype=lib.FA_F64_IDX, kernel=lib.FA_K_SIGMOID_FWD, ndim=2, dims=[8, 8],
              strides=[8, 1, 0, 0, 8, 1], rows=1, cols=8, flags=0b101)

    def call(**change):
        a = {**ok, **change}
        return lib.fa_elementwise_strided(a["dtype"], a["kernel"], ptrs, a["ndim"],
                                          ffi.new("int64_t[]", a["dims"]),
                                          ffi.new("int64_t[]", a["strides"]), a["rows"],
                                          a["cols"], a["flags"], 0.0, 0.0, 0.0, 0, 1)

    big = lib.FA_WALK_BYTES // 8 + 1
    for change in (dict(dtype=2), dict(kernel=lib.FA_K_ELEMENTWISE_COUNT), dict(kernel=-1),
                   dict(ndim=0), dict(ndim=lib.FA_WALK_MAXDIM + 2), dict(dims=[-1, 8]),
                   dict(rows=0), dict(rows=lib.FA_WALK_ROWS + 1), dict(cols=0),
                   dict(flags=0b100, cols=big), dict(strides=[8, 2, 0, 0, 8, 1])):
        assert call(**change) == -1, change
    assert not out.any()
    assert call() == 0
    assert_bitwise_equal(out, fastact.sigmoid(x, backend="c"))


def test_fast_call_addresses(cb):
    """_cfastcall.addresses: each array's element start[k], in bytes, any sign."""
    a = np.arange(12.0).reshape(3, 4)[::-1, 1:]
    base = a.__array_interface__["data"][0]
    assert cb._fastcall.addresses((a, a), (0, -5)) == [base, base - 40]
    with pytest.raises(TypeError):
        cb._fastcall.addresses(([1.0], ), (0,))
    with pytest.raises(ValueError):
        cb._fastcall.addresses((a,), (0, 1))


# PReLU and softmax go through _cfastcall's row kernels (fa_rowwise) in the
# same way.

ROW_CASES = [  # (x shape as (outer, C, inner), softmax rows x n)
    (1, 3, 5), (4, 8, 128), (9000, 4, 3), (2, 5, 2 * 4096 + 7),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_row_kernels_fast_and_cffi_paths_agree_bitwise(cb, monkeypatch, two_threads, dtype):
    """PReLU both passes (long and short rows) and softmax both passes, small
    and split across threads: the same bits through _cfastcall's row kernels
    as through cffi."""
    slow_rowwise = {}
    with monkeypatch.context() as m:
        m.setattr(cb, "_fastcall", None)
        slow_rowwise = {key: cb._row_kernel(*key) for key in cb._rowwise}
    assert "RowKernel" in type(cb._rowwise["prelu_fwd", "f"]).__name__
    for shape in ROW_CASES:
        rng = np.random.default_rng(sum(shape))
        x = mixed_values(dtype, int(np.prod(shape)), seed=len(shape)).reshape(shape)
        g = rng.standard_normal(shape).astype(dtype)
        w = rng.uniform(-1, 1, shape[1]).astype(dtype)
        s2 = x.reshape(shape[0] * shape[1], shape[2])
        y2 = fastact.softmax(s2, backend="numpy")

        def run():
            return (fastact.prelu(x, w, backend="c"),
                    *fastact.prelu_backward(g, x, w, backend="c"),
                    fastact.softmax(s2, backend="c"),
                    fastact.softmax_backward(g.reshape(s2.shape), y2, backend="c"))
        fast = run()
        with monkeypatch.context() as m:
            m.setattr(cb, "_rowwise", slow_rowwise)
            slow = run()
        for a, b in zip(fast, slow):
            assert_bitwise_equal(a, b)


def test_row_kernels_refuse_what_c_cannot_take(cb):
    """Every check of the row kernels raises, and nothing is written."""
    fwd, bwd = cb._rowwise["prelu_fwd", "f"], cb._rowwise["prelu_bwd", "f"]
    sm = cb._rowwise["softmax_fwd", "d"]
    x, w = np.ones((2, 3, 4), np.float32), np.ones(3, np.float32)
    out = np.zeros((2, 3, 4), np.float32)
    ro = np.zeros_like(out)
    ro.flags.writeable = False
    bad = [
        ((x, w, out, 2, 3), TypeError, "takes 6 positional arguments"),
        ((x.tolist(), w, out, 2, 3, 4), TypeError, "x must be a numpy.ndarray"),
        ((x, w.astype(np.float64), out, 2, 3, 4), TypeError, "w has the wrong dtype"),
        ((x, w, ro, 2, 3, 4), ValueError, "out is read-only"),
        ((np.ones((2, 3, 8), np.float32)[..., ::2], w, out, 2, 3, 4), ValueError,
         "x is not C-contiguous"),
        ((x, w, out, 2, 3, 5), ValueError, "x has 24 elements, not 30"),
        ((x, np.ones(4, np.float32), out, 2, 3, 4), ValueError, "w has 4 elements, not 3"),
        ((x, w, out, 2, -3, -4), ValueError, "must not be negative"),
        ((x, w, out, 2**40, 2**40, 4), ValueError, "overflow"),
        ((x, w, out, 2, 3, "4"), TypeError, None),
    ]
    for args, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            fwd(*args)
    assert not out.any()
    # the weight gradient: each channel's pair, 2 C float64
    gw = np.zeros(6)
    with pytest.raises(ValueError, match="gw has 3 elements, not 6"):
        bwd(x, x, w, out, np.zeros(3), 2, 3, 4)
    with pytest.raises(TypeError, match="gw has the wrong dtype"):
        bwd(x, x, w, out, np.zeros(6, np.float32), 2, 3, 4)
    with pytest.raises(ValueError, match="gw is read-only"):
        gw.flags.writeable = False
        bwd(x, x, w, out, gw, 2, 3, 4)
    with pytest.raises(TypeError, match="x has the wrong dtype"):
        sm(x, np.zeros((6, 4)), 6, 4)
    assert not out.any()


def test_row_kernel_factory_rejects_bad_arguments(cb):
    mk = cb._fastcall.make_row_kernel
    lib = cb._lib
    ok = dict(address=1, kernel=lib.FA_K_PRELU_FWD, dtype=np.float32, parallel_min=1,
              threads=lambda: 1, name="k")
    for change in (dict(address=0), dict(dtype=np.int32), dict(kernel=lib.FA_K_RELU_FWD),
                   dict(kernel=99), dict(threads=None)):
        with pytest.raises((ValueError, TypeError)):
            mk(**{**ok, **change})


# --- streaming stores ------------------------------------------------------------------------
# The memory-bound kernels (fa_streamed in c_src/fastact.c) write outputs of at
# least fa_stream_min() bytes with non-temporal stores, in chunks between a
# head and a tail of regular stores.  The threshold is forced to 0 here, so
# that small arrays exercise every head, chunk and tail; the results must be
# bit-identical to regular stores.  Every kernel is checked, so that one added
# to fa_streamed is covered.

@pytest.fixture
def stream_min(cb):
    """Set the streaming threshold (output bytes; negative: never) for one
    test, then restore it."""
    lib = cb._lib
    before = lib.fa_stream_min()
    yield lib.fa_set_stream_min
    lib.fa_set_stream_min(before)


@pytest.fixture
def two_threads(restore_threads):
    """Two threads (where the machine has them) for arrays of at least
    config.C_PARALLEL_MIN elements; smaller ones run on one."""
    fastact.set_num_threads(min(2, fastact._threads.max_threads()))


#: 1, a short vector tail, a few 1 KiB chunks (between a head and a tail of
#: regular stores), more of them, and a size split across threads
STREAM_SIZES = (1, 17, 1003, 2 * 4096 + 5, 2 * config.C_PARALLEL_MIN + 3)
#: where the output goes: a new array, one element or one byte past a 64-byte
#: boundary (margins checked), or over the first input (in place)
STREAM_OUTS = ("new", "element", "byte", "in_place")


def _bits(a):
    return np.ascontiguousarray(a).tobytes()


def _offset_out(kind, shape, dtype):
    """An output view one element or one byte past a 64-byte boundary inside a
    byte buffer, and a check that the buffer's margins are untouched."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dt.itemsize
    raw = np.full(nbytes + 256, 0xA5, np.uint8)
    off = (-raw.ctypes.data) % 64 + 64 + (dt.itemsize if kind == "element" else 1)
    out = raw[off:off + nbytes].view(dt).reshape(shape)
    return out, lambda: bool(np.all(raw[:off] == 0xA5) and np.all(raw[off + nbytes:] == 0xA5))


def _check_streamed(fn, ins, exact, stream_min, what):
    """fn(*ins, out=..., backend="c") streamed into every output kind equals,
    bit for bit, the same call with regular stores (and the reference where
    the op is exact)."""
    stream_min(-1)
    want = fn(*ins, backend="c")
    ref = fn(*ins, backend="numpy") if exact else None
    stream_min(0)
    for kind in STREAM_OUTS:
        margins_ok = None
        if kind == "new":
            got = fn(*ins, backend="c")
        elif kind == "in_place":
            own = tuple(a.copy() for a in ins)
            got = fn(*own, out=own[0], backend="c")
            assert got is own[0], what
        else:
            out, margins_ok = _offset_out(kind, want.shape, want.dtype)
            got = fn(*ins, out=out, backend="c")
        assert _bits(got) == _bits(want), (what, kind)
        if margins_ok is not None:
            assert margins_ok(), (what, kind)
        if exact:
            assert_bitwise_equal(got, ref)


def test_stream_threshold_comes_from_config_and_is_described(cb, stream_min):
    want = config.STREAM_MIN_BYTES
    assert cb._lib.fa_stream_min() == want
    assert fastact.backends()["c"]["stream_min_bytes"] == want
    stream_min(-1)
    assert cb.describe()["stream_min_bytes"] == -1


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_streamed_elementwise_kernels_are_bit_identical(cb, stream_min, isa_level, two_threads,
                                                        isa, dtype):
    used = isa_level(isa)
    for n in STREAM_SIZES:
        x = mixed_values(dtype, n, seed=n)
        g = np.random.default_rng(n).standard_normal(n).astype(dtype)
        for op in ELEMENTWISE_OPS:
            s = op.fwd(x, backend="numpy") if op.saves == "y" else x
            _check_streamed(op.fwd, (x,), op.exact, stream_min, (used, op.id, "fwd", n))
            _check_streamed(op.bwd, (g, s), op.exact, stream_min, (used, op.id, "bwd", n))


#: (outer, C, inner): inner == 1 (runs over channels, short or of several
#: chunks), short channel rows, and rows of many chunks, cut by the thread split
PRELU_SHAPES = [(1, 1, 1), (1, 17, 1), (59, 17, 1), (40, 1000, 1), (3, 5, 67), (1, 2, 1003),
                (2, 2, 9001)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_streamed_prelu_is_bit_identical(cb, stream_min, isa_level, two_threads, isa, dtype):
    """prelu's output streamed equals it stored (and the reference).  The
    backward is not streamed (no faster, measured); were it, its weight
    gradient must not change: terms +-2**k of wide range cancel, so that
    another order of additions would show."""
    used = isa_level(isa)
    rng = np.random.default_rng(11)
    for shape in PRELU_SHAPES:
        n = int(np.prod(shape))
        x = mixed_values(dtype, n, seed=3).reshape(shape)
        w = rng.uniform(0, 0.5, shape[1]).astype(dtype)
        _check_streamed(lambda x, **k: fastact.prelu(x, w, **k), (x,), True, stream_min,
                        (used, "prelu", shape))
        x = (rng.choice([-1.0, 1.0], n) * 2.0 ** rng.integers(-30, 30, n)).astype(dtype)
        x = x.reshape(shape)
        g = rng.choice([-1.0, 1.0], shape).astype(dtype)
        stream_min(-1)
        want_gx, want_gw = fastact.prelu_backward(g, x, w, backend="c")
        ref_gx, _ = fastact.prelu_backward(g, x, w, backend="numpy")
        stream_min(0)
        for kind in STREAM_OUTS:
            gw = np.empty_like(w)
            if kind == "in_place":
                gx = g.copy()
                fastact.prelu_backward(gx, x, w, out=(gx, gw), backend="c")
            elif kind == "new":
                gx, gw = fastact.prelu_backward(g, x, w, backend="c")
            else:
                gx, margins_ok = _offset_out(kind, shape, dtype)
                fastact.prelu_backward(g, x, w, out=(gx, gw), backend="c")
                assert margins_ok(), (used, shape, kind)
            assert _bits(gx) == _bits(want_gx), (used, shape, kind)
            assert _bits(gw) == _bits(want_gw), (used, shape, kind)
            assert_bitwise_equal(gx, ref_gx)


def _narrow_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


@pytest.mark.parametrize("isa", ISAS)
def test_streamed_narrow_kernels_are_bit_identical(cb, stream_min, isa_level, two_threads, isa):
    """float16 and bfloat16 outputs streamed (c_src/narrow.inc: 64-byte
    lines rounded into a buffer, then non-temporal stores) equal them
    stored: the elementwise kernels of each write mode and PReLU forward,
    at every output alignment."""
    from fastact._narrow import narrowed
    used = isa_level(isa)
    ops = [op for op in ELEMENTWISE_OPS if op.id in ("relu", "sigmoid", "elu", "gelu")]
    assert len(ops) == 4
    for dtype in _narrow_dtypes():
        for n in STREAM_SIZES:
            x = narrowed(mixed_values(np.float32, n, seed=n), dtype)
            g = narrowed(np.random.default_rng(n).standard_normal(n).astype(np.float32), dtype)
            for op in ops:
                _check_streamed(op.fwd, (x,), False, stream_min, (used, op.id, dtype, n))
                _check_streamed(op.bwd, (g, x), False, stream_min, (used, op.id, dtype, n))
        for shape in PRELU_SHAPES:
            x = narrowed(mixed_values(np.float32, int(np.prod(shape)), seed=3), dtype)
            w = np.linspace(0.0, 0.5, shape[1]).astype(np.float32)
            _check_streamed(lambda x, **k: fastact.prelu(x, w, **k), (x.reshape(shape),), False,
                            stream_min, (used, "prelu", dtype, shape))


#: rows of 1 and 17 (too short for a chunk), many rows per thread, and long
#: rows, each with its own head, chunks and tail
SOFTMAX_SHAPES = [(1, 1), (1, 17), (17, 59), (64, 515), (3, 4096), (2, 8192), (2, 9001)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_streamed_softmax_is_bit_identical(cb, stream_min, isa_level, two_threads, isa, dtype):
    """The float types' rows and the narrow types' (whose backward rounds
    chunks of each row into the output: c_src/narrow.inc's
    FA_NARROW_ROWS_BWD), at every output alignment and in place."""
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    used = isa_level(isa)
    rng = np.random.default_rng(12)
    for shape in SOFTMAX_SHAPES:
        x = (rng.standard_normal(shape) * 4).astype(dtype)
        x.reshape(-1)[:5] = [np.inf, -np.inf, np.nan, 0.0, -0.0][:x.size]
        g = rng.standard_normal(shape).astype(dtype)
        y = fastact.softmax(x, backend="numpy")
        _check_streamed(lambda x, **k: fastact.softmax(x, **k), (x,), False, stream_min,
                        (used, "softmax", shape))
        _check_streamed(lambda g, y, **k: fastact.softmax_backward(g, y, **k), (g, y), False,
                        stream_min, (used, "softmax_backward", shape))


# --- bounds ------------------------------------------------------------------------------------------

GUARD = 64


def _guarded(a):
    """A copy of ``a`` inside a larger buffer whose margins hold a sentinel."""
    buf = np.full(a.size + 2 * GUARD, 7.25, a.dtype)
    buf[GUARD:GUARD + a.size] = a.reshape(-1)
    return buf, buf[GUARD:GUARD + a.size].reshape(a.shape)


def _margins_intact(buf):
    return bool(np.all(buf[:GUARD] == 7.25) and np.all(buf[-GUARD:] == 7.25))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_kernels_write_only_inside_their_buffers(cb, dtype):
    """Every size from 1 to 70 (vector bodies and tails of every width) and one
    parallel size: outputs land exactly in the target, margins untouched."""
    rng = np.random.default_rng(7)
    for n in list(range(1, 71)) + [config.C_PARALLEL_MIN * 2 + 3]:
        x = rng.standard_normal(n).astype(dtype)
        g = rng.standard_normal(n).astype(dtype)
        for fn, args, kw, exact in [
            (fastact.sigmoid, (x,), {}, False), (fastact.relu_backward, (g, x), {}, True),
            (fastact.elu, (x,), {}, False), (fastact.elu_backward, (g, x), {}, False),
            (fastact.rrelu, (x,), {"training": True, "seed": 1}, True),
            (fastact.leaky_relu_backward, (g, x, 0.2), {}, True),
            (fastact.softmax, (x,), {}, False), (fastact.softmax_backward, (g, x), {}, False),
            (fastact.prelu, (x.reshape(1, -1), np.array([0.5], dtype)), {}, True),
        ]:
            buf, out = _guarded(np.zeros_like(args[0]))
            fn(*args, out=out, backend="c", **kw)
            assert _margins_intact(buf), (fn.__name__, n)
            want = fn(*args, backend="numpy", **kw)
            if exact:
                np.testing.assert_array_equal(out, want)
            else:   # softmax_backward cancels: absolute, as the spec's bound
                np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * n)


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 1), (3, 17, 1), (2, 5, 19), (4, 3, 33)])
def test_prelu_stays_inside_its_buffers(cb, shape):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    w = rng.uniform(0, 1, shape[1])
    bx, gx = _guarded(np.zeros(shape))
    bw, gw = _guarded(np.zeros(shape[1]))
    # inputs inside sentinel margins too: a read past the end would change gw
    _, xg = _guarded(x)
    _, gg = _guarded(g)
    _, wg = _guarded(w)
    fastact.prelu_backward(gg, xg.reshape(shape), wg, out=(gx, gw), backend="c")
    assert _margins_intact(bx) and _margins_intact(bw)
    want_gx, want_gw = fastact.prelu_backward(g, x, w, backend="numpy")
    np.testing.assert_array_equal(gx, want_gx)
    np.testing.assert_allclose(gw, want_gw, rtol=1e-14, atol=1e-300)


def test_softmax_rows_do_not_read_past_their_end(cb):
    """Rows followed in memory by huge values: a read past a row would change its max."""
    buf = np.full(3 * 5 + GUARD, 1e30, np.float32)
    rows = buf[:15].reshape(3, 5)
    rows[...] = np.arange(15, dtype=np.float32).reshape(3, 5) / 10
    got = fastact.softmax(rows, backend="c")
    want = fastact.softmax(rows.copy(), backend="numpy")
    np.testing.assert_allclose(got, want, rtol=1e-6)


# --- sanitizer ------------------------------------------------------------------------------------

def _sanitizer_runtime():
    r = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = r.stdout.strip()
    return path if r.returncode == 0 and os.path.isabs(path) and os.path.exists(path) else None


@pytest.mark.skipif(os.environ.get("FASTACT_C_SANITIZE", "") != "1",
                    reason="set FASTACT_C_SANITIZE=1 to build and run the sanitizer variant")
@pytest.mark.skipif(os.environ.get("FASTACT_C_LIBRARY", "") != "",
                    reason="already running under a sanitizer build")
def test_under_address_and_undefined_behaviour_sanitizers(tmp_path):
    asan = _sanitizer_runtime()
    if asan is None:
        pytest.skip("gcc has no libasan here")
    b = _load_build_module()
    so = b.build(outdir=tmp_path, sanitize=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FASTACT_C_LIBRARY": str(so),
           "LD_PRELOAD": asan, "FASTACT_BACKEND": "c",
           # Python's own allocations are not instrumented; leaks at exit are its
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    which = subprocess.run(
        [sys.executable, "-c", "import sys, fastact; fastact.backends(); "
         "print(sys.modules['fastact._backends._cfastact'].__file__)"],
        env=env, capture_output=True, text=True, timeout=120)
    assert which.stdout.strip() == str(so), which.stdout + which.stderr
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--benchmark-disable", str(ROOT / "tests" / "test_c_backend.py"),
         str(ROOT / "tests"), "-k", "c_backend or c-"],
        env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    report = r.stdout[-4000:] + r.stderr[-4000:]
    # a finding aborts the process (exit code < 0 or 134) and prints its report;
    # a test that fails on values (exit code 1) is the normal suite's business
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, report
    assert r.returncode in (0, 1), report
    ran = re.search(r"(\d+) passed", r.stdout)
    assert ran and int(ran.group(1)) > 100, report
