"""The compiled parallel Numba kernels keep reference counting (and
allocation) out of their loops.

An array slice or a call that passes an array inside a loop costs an atomic
reference-count increment and decrement per iteration (``NRT_incref`` /
``NRT_decref``), on counters that both threads share: relu forward once ran
at a third of its speed that way.  A timing test would not see it on one
thread (the CI regression check's) and is noisy on two; this test reads the
LLVM IR instead.  It compiles the kernels afresh in a child process (a new
``NUMBA_CACHE_DIR``: a kernel loaded from the disk cache has no IR to read)
and looks for those calls, and for the runtime's allocations, in basic
blocks that lie on a cycle of the control-flow graph.

Every formula, primitive and loop wrapper is inlined (fastact._prims.
always_inline) and the loops vectorize: for every elementwise op of the
registry the blocked kernel (the one big arrays take) is compiled and its
IR read for calls left to fastact's own functions and for vector code,
in float32 and float64.

Checked: one kernel of each shape the backend generates (elementwise
``prange`` kernels unary, binary and indexed; the blocked kernels, unary,
binary and indexed), PReLU forward (parallel) and
backward (streamed; float64 parallel and streamed too), softmax forward and
backward (parallel); log_softmax forward (parallel, float32 and float64):
its exponentials vector code; every gated op's parallel kernels; and the
walk kernel of strided operands (numba_walk; one op's).  Not
checked:
kernels that allocate a buffer once per thread (streamed PReLU forward and
softmax backward), which this scan cannot tell from a per-iteration cost.
"""
from __future__ import annotations

import json
import pathlib
import re
import sys

import numpy as np
import pytest

from early import EarlyProcess


def refcounts_in_loops(llvm_ir: str) -> list[tuple[str, str]]:
    """(function, block) of every call into Numba's runtime that counts
    references or allocates (NRT_incref / NRT_decref, NRT_Allocate / NRT_Free,
    NRT_MemInfo_*) in a basic block from which the block can be reached
    again."""
    found = []
    for func in re.split(r"\ndefine ", llvm_ir)[1:]:
        name = re.match(r"[^@]*@([^\s(]+)", func).group(1)
        if name.startswith(("NRT_", '"NRT_')):
            continue
        blocks, succ, cur = {}, {}, None
        for line in func.splitlines()[1:]:
            m = re.match(r"^([\w.$-]+):", line)
            if m:
                cur = m.group(1)
            elif cur is None and line.strip():
                cur = "%entry"
            if cur is None:
                continue
            blocks.setdefault(cur, []).append(line)
            succ.setdefault(cur, set()).update(re.findall(r"label %([\w.$-]+)", line))
        for block, lines in blocks.items():
            if not any(re.search(r"call [^@]*@NRT_(incref|decref|Allocate|Free|MemInfo_)", ln)
                       for ln in lines):
                continue
            seen, todo = set(), list(succ.get(block, ()))
            while todo:
                s = todo.pop()
                if s == block:
                    found.append((name[:100], block))
                    break
                if s not in seen:
                    seen.add(s)
                    todo.extend(succ.get(s, ()))
    return found


def fastact_calls(llvm_ir: str) -> list[str]:
    """Functions of fastact's (Numba's mangled ``_ZN7fastact...`` names)
    that a kernel's compiled code still calls, outside the Python wrappers:
    a formula, primitive or loop wrapper that was not inlined."""
    found = set()
    for func in re.split(r"(?:^|\n)define ", llvm_ir)[1:]:
        name = re.match(r'[^@]*@"?([^\s("]+)', func).group(1)
        if name.startswith(("cpython.", "cfunc.")):
            continue
        # the kernel's own entry (kernel_njit names it loop__<tag>) is called
        # by Numba's wrappers; anything else of fastact's is a leftover call
        found.update(m for m in re.findall(r'call [^@]*@"?(_ZN7fastact[^\s("]*)', func)
                     if m != name and "loop__" not in m)
    return sorted(found)


def vectorized(llvm_ir: str, dtype) -> bool:
    """Whether the compiled kernel computes on vectors of ``dtype``."""
    elem = "float" if np.dtype(dtype) == np.float32 else "double"
    return re.search(rf"<(\d+) x {elem}>", llvm_ir) is not None


def vector_exp(llvm_ir: str, dtype) -> bool:
    """Whether an exponential's range reduction (``llvm.lrint``, cpu_prims'
    round_int) is computed on vectors of ``dtype``."""
    f = "f32" if np.dtype(dtype) == np.float32 else "f64"
    return re.search(rf"@llvm\.lrint\.v\d+i32\.v\d+{f}", llvm_ir) is not None


def _llvm(kernel, *args):
    kernel(*args)
    return "\n".join(kernel.inspect_llvm().values())


def _every_op_checks(nc, shard, shards) -> dict:
    """Every op's blocked kernel, both dtypes: inlined (no call left) and
    vectorized (a float64 gelu loop once stayed scalar: 9.7 ns an element)."""
    from fastact._registry import REGISTRY
    res = {}
    cases = [(bt, name, spec) for bt in (np.float32, np.float64)
             for name, spec in REGISTRY.items() if spec.kind == "elementwise"]
    for bt, name, spec in cases[shard::shards]:
        vb = np.ones(1 << 16, bt)
        p = tuple(np.uint64(1) if n == "key" else bt(0.5) for n in spec.params)
        for pass_ in spec.passes():
            ins = (vb,) if pass_ == "forward" else (vb, vb)
            ir = _llvm(nc._blocked_kernel(name, pass_, bt), 2, *ins, vb.copy(), p)
            res[f"{name} {pass_} {np.dtype(bt).name} blocked inlined"] = {
                "refcounts": refcounts_in_loops(ir)[:3], "calls": fastact_calls(ir)[:3],
                "vectorized": vectorized(ir, bt), "stores": _all_vector_stores(ir)}
            if pass_ in spec.guarded and bt == np.float32:
                # the same pass's blocked kernel with its guard (Numba takes
                # the guards where config.NUMBA_GUARDED is on)
                probe = nc._make_blocked(f"probe_guarded_{name}_{pass_}",
                                         nc._formula(name, pass_, bt), spec.indexed,
                                         pass_ != "forward", bt,
                                         nc._guard_of(name, pass_, bt, on=True))
                res[f"{name} {pass_} float32 blocked inlined"]["guarded stores"] = (
                    _all_vector_stores(_llvm(probe, 2, *ins, vb.copy(), p)))
    return res


def _gated_checks(nc) -> dict:
    res = {}
    # the gated family's parallel kernels, the same checks (their run
    # helpers are inlined: a call to a closure of the same generated name
    # went to another op's code once both were loaded from the disk cache)
    # (float64 for the first entry only: the loop skeletons are the same for
    # every gate, and each compile costs CI a second or more)
    from fastact._registry import REGISTRY
    gated = [n for n, spec in REGISTRY.items() if spec.kind == "gated"]
    for bt in (np.float32, np.float64):
        g1, x1 = np.ones(1 << 14, bt), np.ones(1 << 15, bt)
        for name in (gated if bt == np.float32 else gated[:1]):
            fwd, bwd, same = nc._gated_kernels(name, bt, True)
            stream = nc._gated_kernels(name, bt, "stream")[0]
            o1, xc = g1.copy(), x1.copy()
            for label, kernel, args in (
                    ("forward", fwd, (2, x1, o1, o1, 128, o1.size)),
                    ("forward streamed", stream, (2, x1, o1, o1, 128, o1.size)),
                    ("backward", bwd, (2, g1, x1, x1.copy(), 128, g1.size)),
                    ("backward in place", same, (2, g1, xc, xc, 128, g1.size))):
                ir = _llvm(kernel, *args)
                res[f"{name} {label} {np.dtype(bt).name} gated inlined"] = {
                    "refcounts": refcounts_in_loops(ir)[:3], "calls": fastact_calls(ir)[:3],
                    "vectorized": vectorized(ir, bt)}
    return res


#: the scan's child processes, each compiling its share with an empty Numba
#: cache (a kernel loaded from the disk cache has no IR to read): beside
#: the rest of the suite they run one after the other on the core it
#: leaves idle; alone, side by side (early.EarlyProcess)
SCAN_SHARDS = 2
SCAN = [EarlyProcess(f"kernel scan {k} of {SCAN_SHARDS}",
                     [sys.executable, __file__, "--scan", k, SCAN_SHARDS],
                     cwd=pathlib.Path(__file__).parent, timeout=900, own_cache=True)
        for k in range(SCAN_SHARDS)]
needs_scan = pytest.mark.early(*SCAN)


def _vector_stores(llvm_ir: str) -> int:
    return len(re.findall(r"store <\d+ x float>", llvm_ir))


def _all_vector_stores(llvm_ir: str) -> int:
    return len(re.findall(r"store <\d+ x (?:float|double)>", llvm_ir))


def _in_place_checks(nc) -> dict:
    """{kernel: (vector stores of its plain loop, of the kernel, cases)}:
    the serial kernels of a unary and a binary op, whose loops are
    compiled once per case of aliasing (numba_cpu._same_address)."""
    from fastact._prims import wide_vectors
    dt = np.float32
    v = np.ones(1 << 10, dt)
    res = {}
    for name, pass_ in (("sigmoid", "forward"), ("gelu", "backward")):
        f = nc._formula(name, pass_, dt)
        make = nc._unary_loop if pass_ == "forward" else nc._binary_loop
        plain = nc._jit(f"probe_plain_{name}_{pass_}", False)(make(f, False, wide_vectors()))
        ins = (v,) if pass_ == "forward" else (v, v)
        kernel = nc._elementwise_kernel(name, pass_, dt, False)
        res[f"{name} {pass_} in place"] = (_vector_stores(_llvm(plain, *ins, v.copy(), ())),
                                           _vector_stores(_llvm(kernel, *ins, v.copy(), ())),
                                           2 if pass_ == "forward" else 3)
    res.update(_pool_in_place_checks(nc))
    return res


def _diff_checks(llvm_ir: str) -> int:
    """LLVM's runtime checks that two pointers lie a vector apart (the
    vectorized loop's guard; an in-place call, no distance, fails it)."""
    return llvm_ir.count("diff.check")


def _pool_in_place_checks(nc) -> dict:
    """{kernel: (diff checks of the worker into another array, [of each
    in-place case's], [vector stores of every worker])}: the pool's kernels
    compile a worker for each in-place case when a call first has it
    (numba_pool.PoolKernel's ``alias``), a loop over one array that needs
    no distance check.  The kernels whose worker into another array has
    such checks (the control)."""
    dt = np.float32
    v, s = np.ones(1 << 16, dt), np.ones((64, 256), dt)
    x, w = np.ones((4, 64, 256), dt), np.ones(64, dt)
    kernels = [
        ("sigmoid forward pool", nc._elementwise_kernel("sigmoid", "forward", dt, True),
         (v, v.copy(), ()), 1, [0]),
        ("gelu backward pool", nc._elementwise_kernel("gelu", "backward", dt, True),
         (v, v.copy(), v.copy(), ()), 2, [0, 1]),
        ("gelu backward blocked", nc._blocked_kernel("gelu", "backward", dt),
         (v, v.copy(), v.copy(), ()), 2, [0, 1]),
        ("log_softmax forward rows", nc._row_kernels("log_softmax", dt, True)[0],
         (s, s.copy()), 1, [0]),
        ("softmax backward rows", nc._row_kernels("softmax", dt, True)[1],
         (s, s.copy(), s.copy()), 2, [0, 1]),
        ("prelu forward", nc._prelu_kernels(dt, True)[0], (x, w, x.copy()), 2, [0])]
    res = {}
    for label, kernel, args, out, inputs in kernels:
        kernel(2, *args)
        for i in inputs:
            a = list(args)
            a[out] = args[i]
            kernel(2, *a)
        irs = {key[1]: w.inspect_llvm() for key, w in kernel._workers.items()}
        res[f"{label} in place"] = (_diff_checks(irs[0]),
                                    [_diff_checks(irs.get(c, "")) for c in range(1, len(inputs) + 1)],
                                    [_vector_stores(ir) for ir in irs.values()])
    return res


def _scan_kernels(shard=0, shards=1) -> dict:
    """In a child process: {kernel: [(function, block), ...]} for every
    kernel checked (an empty list where it is clean).  ``shard`` of
    ``shards``: the every-op loop takes every shards-th (dtype, op), the
    last shard the gated family, shard 0 the others."""
    import numba

    from fastact._backends import numba_cpu as nc

    dt = np.float32
    v = np.ones(1 << 16, dt)
    res = {}
    res.update(_every_op_checks(nc, shard, shards))
    if shard == shards - 1:
        res.update(_gated_checks(nc))
    if shard:
        return res
    res.update(_in_place_checks(nc))

    def check(label, kernel, *args):
        res[label] = refcounts_in_loops(_llvm(kernel, *args))[:3]

    params = {"relu": (), "sigmoid": (), "elu": (dt(1),),
              "rrelu_train": (np.uint64(1), dt(0.125), dt(1 / 3))}
    for name, pass_ in (("relu", "forward"), ("relu", "backward"),
                        ("rrelu_train", "forward")):
        ins = (v,) if pass_ == "forward" else (v, v)
        check(f"{name} {pass_} prange", nc._elementwise_kernel(name, pass_, dt, True),
              2, *ins, v.copy(), params[name])
    for name, pass_ in (("relu", "forward"), ("relu", "backward"), ("sigmoid", "forward"),
                        ("elu", "backward"), ("rrelu_train", "forward"),
                        ("rrelu_train", "backward")):
        ins = (v,) if pass_ == "forward" else (v, v)
        check(f"{name} {pass_} blocked", nc._blocked_kernel(name, pass_, dt),
              2, *ins, v.copy(), params[name])
    # the walk kernel of strided operands (one: the loop skeleton is the
    # same for every op), with a gathered input and a scattered output
    # (the kernel takes addresses: the arrays stay referenced through the call)
    g, o = np.ones(1 << 12, dt), np.zeros(1 << 12, dt)
    ir = _llvm(nc._walk_kernel("sigmoid", "backward", dt), 2, g.ctypes.data, g.ctypes.data,
               o.ctypes.data, np.array([64], np.int64), np.ones((3, 2), np.int64), 64,
               4, 16, 0x1, ())
    res["sigmoid backward walk"] = {"refcounts": refcounts_in_loops(ir)[:3],
                                    "calls": fastact_calls(ir)[:3],
                                    "vectorized": vectorized(ir, dt)}
    x, w = np.ones((4, 64, 256), dt), np.ones(64, dt)
    check("prelu forward parallel", nc._prelu_kernels(dt, True)[0], 2, x, w, x.copy())
    x1 = x.reshape(-1)
    check("prelu backward streamed", nc._prelu_kernels(dt, "stream")[1],
          2, x1, x1, w, x1.copy(), np.empty((4 * 64, 1)), 4, 64, 256)
    # float64's Kahan runs (once over row slices) and lanes
    xd, wd = x.astype(np.float64), w.astype(np.float64)
    xd1 = xd.reshape(-1)
    check("prelu backward parallel float64", nc._prelu_kernels(np.float64, True)[1],
          2, xd1, xd1, wd, xd1.copy(), np.empty((4 * 64, 1)), 4, 64, 256)
    xs1 = np.ones(4096 * 8)
    check("prelu backward streamed float64 short rows", nc._prelu_kernels(np.float64, "stream")[1],
          2, xs1, xs1, wd[:8], xs1.copy(), np.empty((16, 256)), 4096, 8, 1)
    s = np.ones((64, 256), dt)
    fwd, bwd = nc._row_kernels("softmax", dt, True)
    check("softmax forward parallel", fwd, 2, s, s.copy())
    check("softmax backward parallel", bwd, 2, s, s, s.copy())
    # log_softmax's forward: its exponentials vector code (a count beside
    # the sum once left that loop scalar, at 0.55x PyTorch's speed).  Its
    # per-task buffers and per-row calls are not loop costs the scan can
    # tell apart: only the exponentials are checked.
    for bt in (np.float32, np.float64):
        r = np.ones((64, 256), bt)
        ir = _llvm(nc._row_kernels("log_softmax", bt, True)[0], 2, r, r.copy())
        res[f"log_softmax forward {np.dtype(bt).name} row exp"] = vector_exp(ir, bt)

    # the positive control: a buffer allocated per iteration of a parallel
    # loop (its size varies, so that Numba cannot hoist it; Numba prunes
    # the reference counts of plain row views itself)
    @numba.njit(parallel=True)
    def row_last(a, out):
        for i in numba.prange(a.shape[0]):
            tmp = np.empty(a.shape[1] + i % 2)
            for j in range(a.shape[1]):
                tmp[j] = a[i, j] * 2.0
            out[i] = tmp[a.shape[1] - 1]
    res["control"] = refcounts_in_loops(_llvm(row_last, np.ones((64, 8)), np.empty(64)))[:3]
    return res


@pytest.fixture(scope="module")
def scan():
    """The scan's results, from its child processes (SCAN)."""
    res = {}
    for p in SCAN:
        run = p.result()
        assert run.returncode == 0, (run.stdout + run.stderr)[-6000:]
        res.update(json.loads(run.stdout.strip().splitlines()[-1]))
    return res


@needs_scan
def test_scan_sees_an_allocation_in_a_parallel_loop(scan):
    """The scan can fail: a buffer allocated per iteration is found."""
    assert scan["control"], "the scan missed the per-iteration buffer of the control kernel"


@needs_scan
def test_no_refcounts_in_parallel_kernel_loops(scan):
    scan = {k: v for k, v in scan.items()
            if k != "control" and "inlined" not in k and "row exp" not in k and "walk" not in k
            and not k.endswith(" in place")}
    assert len(scan) == 15, sorted(scan)
    bad = {k: v for k, v in scan.items() if v}
    assert not bad, f"reference counting inside a loop: {bad}"


@needs_scan
def test_every_blocked_kernel_is_inlined_and_vectorized(scan):
    """No formula, primitive or loop wrapper left a call; vector code; no
    reference counts in the loops: every elementwise op of the registry (its
    blocked kernel) and every gated op (its parallel kernels)."""
    from fastact._registry import REGISTRY
    checked = {k: v for k, v in scan.items() if "inlined" in k}
    n = sum(len(s.passes()) for s in REGISTRY.values() if s.kind == "elementwise")
    n_gated = sum(s.kind == "gated" for s in REGISTRY.values())
    assert len(checked) == 2 * n + 4 * (n_gated + 1), sorted(checked)
    bad = {k: v for k, v in checked.items()
           if v["refcounts"] or v["calls"] or not v["vectorized"]}
    assert not bad, f"not inlined or not vectorized: {bad}"


@needs_scan
def test_guarded_passes_vectorize_both_variants(scan):
    """A guarded pass (Spec.guarded: a fast variant for blocks in a common
    domain, the full formula for the others) computes both as vector code:
    its float32 blocked kernel built with its guard holds the vector stores
    of both loops, twice those of the kernel without.  Fails where a
    variant's loop stayed scalar."""
    from fastact._registry import REGISTRY
    guarded = [(n, p) for n, s in REGISTRY.items() for p in s.guarded]
    assert guarded
    for name, pass_ in guarded:
        v = scan[f"{name} {pass_} float32 blocked inlined"]
        got, plain = v["guarded stores"], v["stores"]
        assert plain > 0 and got >= 2 * plain, (name, pass_, got, plain)


@needs_scan
def test_walk_kernel_is_inlined_and_vectorized(scan):
    """The walk kernel of strided operands: its tile helpers and formula
    inlined, vector code, no reference counts in its loops (it reaches
    operands and buffers through addresses)."""
    v = scan["sigmoid backward walk"]
    assert not v["refcounts"] and not v["calls"] and v["vectorized"], v


@needs_scan
def test_log_softmax_forward_exponentials_are_vector_code(scan):
    checked = {k: v for k, v in scan.items() if "row exp" in k}
    assert len(checked) == 2, sorted(checked)
    assert all(checked.values()), f"exponentials not vectorized: {checked}"


@needs_scan
def test_in_place_calls_have_their_own_vector_loop(scan):
    """An output that is an input runs a loop compiled for that case
    (numba_cpu._same_address): LLVM vectorizes a loop over two arrays
    behind a check that their ranges do not overlap, whose scalar fallback
    an in-place call took (gelu forward 6.8 ns an element against 0.77).
    The serial kernel holds its plain loop's vector stores once per case:
    twice for a unary kernel (into another array, in place), three times
    for a binary one (out is g, out is s, another array)."""
    checked = {k: v for k, v in scan.items() if k.endswith(" in place") and len(v) == 3
               and not isinstance(v[1], list)}
    assert len(checked) == 2, checked
    for label, (plain, kernel, cases) in checked.items():
        assert plain > 0 and kernel >= cases * plain, (label, plain, kernel)


@needs_scan
def test_pool_in_place_calls_have_their_own_worker(scan):
    """The pool's kernels (elementwise, blocked, the softmax family's rows,
    PReLU) run an in-place call on a worker compiled for that case when a
    call first has it (numba_pool.PoolKernel's ``alias``): its loops carry
    fewer of the distance checks that sent in-place calls to the scalar
    loop (sigmoid forward 2.1 ns an element against 0.13), and every
    worker is vector code."""
    checked = {k: v for k, v in scan.items() if k.endswith(" in place")
               and isinstance(v[1], list)}
    assert len(checked) == 6, sorted(checked)
    for label, (apart, in_place, stores) in checked.items():
        assert apart > 0, (label, "the control: no distance check into another array")
        assert len(stores) == 1 + len(in_place) and all(stores), (label, stores)
        assert all(c < apart for c in in_place), (label, apart, in_place)


def test_the_call_scan_can_fail():
    """The positive control of fastact_calls: a call to a fastact function
    in a kernel's IR is found, one in its Python wrapper is not."""
    ir = ('define i32 @"_ZN7fastact4loopE"(i8* %a) {\nentry:\n'
          '  %r = call i32 @"_ZN7fastact8_formulaE"(i8* %a)\n  ret i32 %r\n}\n'
          'define i8* @"cpython._ZN7fastact4loopE"(i8* %a) {\nentry:\n'
          '  %r = call i32 @"_ZN7fastact4loopE"(i8* %a)\n  ret i8* null\n}\n')
    assert fastact_calls(ir) == ["_ZN7fastact8_formulaE"]
    assert vectorized("  %v = fmul <16 x float> %a, %b", np.float32)
    assert not vectorized("  %v = fmul float %a, %b", np.float32)


if __name__ == "__main__" and sys.argv[1:2] == ["--scan"]:
    print(json.dumps(_scan_kernels(*map(int, sys.argv[2:4]))))
