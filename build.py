"""cffi builder of the C backend, ``fastact._backends._cfastact``.

Out-of-line API mode: the cdef is read from ``c_src/fastact.h`` (between its
``cdef begin`` / ``cdef end`` markers) and the kernels in ``c_src/`` are
compiled into the extension, which releases the GIL on every call.

Beside it, ``fastact._backends._cfastcall`` (``c_src/fastcall.c``, a plain
CPython extension built with NumPy's headers) is the elementwise kernels' call
path: it reads the arrays' pointers through the NumPy C API instead of
``ffi.from_buffer``.  It is optional: without it the backend calls through
cffi, a little slower on small arrays.

* ``setup.py`` calls :func:`extension` so that ``pip install .`` and
  ``pip install -e .`` compile it as part of the normal build.
* ``python build.py --generate`` writes ``c_src/ops.h``, the C op list, from
  fastact's registry (:func:`ops_header`), and README.md's op table
  (:func:`op_table`); both are committed, and tests check they are current,
  so building needs no import of fastact;
* ``python build.py`` rebuilds it in place for development;
  ``python build.py --sanitize --outdir DIR`` builds an AddressSanitizer +
  UBSan variant into ``DIR`` (loaded with ``FASTACT_C_LIBRARY``, see
  ``fastact/_backends/c.py``); ``--no-threads`` builds without threads.

Environment: ``FASTACT_C_CFLAGS`` adds compiler flags (e.g. ``-march=native``
is *not* needed: the kernels are compiled per instruction set and picked at
run time); ``FASTACT_C_NO_THREADS=1`` is the same as ``--no-threads``
(``FASTACT_C_NO_OPENMP=1``, its name from when the threads were OpenMP's,
too).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import shlex
import sys

ROOT = pathlib.Path(__file__).resolve().parent
C_SRC = ROOT / "c_src"
HEADER = C_SRC / "fastact.h"
OPS_HEADER = C_SRC / "ops.h"
MODULE = "fastact._backends._cfastact"
# the slowest first (compile_in_parallel starts them in this order): one unit
# per instruction set and part (c_src/level.inc), then the dispatcher
SOURCES = ["c_src/isa_baseline.c", "c_src/isa_avx512.c", "c_src/isa_avx2.c",
           "c_src/isa_avx2_f64.c", "c_src/isa_avx512_f64.c", "c_src/isa_baseline_f64.c",
           "c_src/fastact.c", "c_src/pool.c"]
FASTCALL_MODULE = "fastact._backends._cfastcall"
FASTCALL_SOURCES = ["c_src/fastcall.c"]
DEPENDS = ["c_src/fastact.h", "c_src/internal.h", "c_src/pool.h", "c_src/ops.h",
           "c_src/kernels.inc",
           "c_src/formulas.inc",
           "c_src/formulas_clamps.inc", "c_src/formulas_exponential.inc",
           "c_src/formulas_special.inc",
           "c_src/level.inc", "c_src/walk.inc", "c_src/narrow.inc"]
#: written next to the module when the build fails; the backend reports it
UNBUILT_NOTE = "_cfastact.unbuilt"

# -fopenmp-simd: the `omp simd` sums of the float32 softmax (no runtime: the
# threads are c_src/pool.c's, with -pthread).
# -ffp-contract=off: a contracted FMA would change RReLU's slopes, which must
# be bit-identical to the other backends; it also keeps exp identical to
# fastact/_prims.py.  -fno-math-errno / -fno-trapping-math change no result;
# they let the compiler vectorize branches whose both sides are computed.
BASE_CFLAGS = ["-std=c11", "-O3", "-ffp-contract=off", "-fno-math-errno",
               "-fno-trapping-math", "-fopenmp-simd", "-fvisibility=hidden", "-Wall",
               "-Werror=implicit-function-declaration"]
THREAD_FLAGS = ["-pthread"]
NO_THREAD_FLAGS = ["-DFA_NO_THREADS"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                  "-fno-omit-frame-pointer", "-g", "-O1"]


def cdef_text(header: pathlib.Path = HEADER) -> str:
    """The declarations between the cdef markers of ``c_src/ops.h``, then of
    ``header``."""
    parts = []
    for h in (OPS_HEADER, header):
        text = h.read_text()
        m = re.search(r"/\* cdef begin \*/(.*?)/\* cdef end \*/", text, re.S)
        if m is None:
            raise RuntimeError(f"{h}: no '/* cdef begin */ ... /* cdef end */' block")
        parts.append(m.group(1))
    return "\n".join(parts)


def ops_header() -> str:
    """The text of ``c_src/ops.h`` for the registry of the fastact beside
    this file: the kernel ids (``FA_K_<NAME>_<FWD|BWD>``, a literal enum
    that cffi reads too) and ``FA_ELEMENTWISE_KERNELS(X)``, the X-macro list
    from which the C backend's range workers, kernel tables and output modes
    follow: ``X(ID, stem, binary, out, fast)``, where ``stem`` names the formula
    ``N_(stem)`` of c_src/formulas.inc, ``binary`` is 1 for a backward
    (gradient and saved array), and ``out`` how a big output is written:
    ``FA_OUT_PREFETCH`` for passes bound by their arithmetic (the registry's
    ``compute_bound``), else ``FA_OUT_STREAM``; ``fast`` is 1 where the
    registry's ``guarded`` names the pass (kernels.inc: FA_STORE_LOOP_G)."""
    sys.path.insert(0, str(ROOT))
    try:
        from fastact._spec import PASS_SUFFIX
        from fastact._registry import REGISTRY, c_ops
    finally:
        sys.path.remove(str(ROOT))
    ops = c_ops()
    stem = [f"{n}_{PASS_SUFFIX[p]}" for n, p in ops]
    n_ew = sum(REGISTRY[n].kind == "elementwise" for n, _ in ops)
    enum = [f"    FA_K_{st.upper()} = {k}," for k, st in enumerate(stem)]
    enum.insert(n_ew, f"    FA_K_ELEMENTWISE_COUNT = {n_ew},")
    enum.append(f"    FA_K_COUNT = {len(stem)}")
    rows = []
    for (n, p), st in zip(ops[:n_ew], stem):
        out = "FA_OUT_PREFETCH" if p in REGISTRY[n].compute_bound else "FA_OUT_STREAM"
        fast = int(p in REGISTRY[n].guarded)
        rows.append(f"    X({st.upper()}, {st}, {int(p != 'forward')}, {out}, {fast})")
    family = []
    for n, spec in REGISTRY.items():
        if spec.kind == "rowwise":
            # a compute-bound backward (log_softmax's exp) stores as usual, as
            # the Numba backend's: lines streamed as computed ran it at 0.71-0.79
            # of PyTorch's speed, regular stores 0.92-1.04 (4096 x 4096, 2
            # threads, same load)
            fwd = "FA_OUT_PREFETCH" if "forward" in spec.compute_bound else "FA_OUT_STREAM"
            bwd = "FA_OUT_REGULAR" if "backward" in spec.compute_bound else "FA_OUT_STREAM"
            family.append(f"    X({n.upper()}, {n}, {int(spec.row.negate)}, {int(spec.row.log)}, "
                          f"{fwd}, {bwd})")
    gates = []
    for n, spec in REGISTRY.items():
        if spec.kind == "gated":
            gd, act = spec.gated, REGISTRY[spec.gated.act]
            fwd, bwd = ("FA_OUT_PREFETCH" if p in spec.compute_bound else "FA_OUT_STREAM"
                        for p in ("forward", "backward"))
            gates.append(f"    X({n.upper()}, {n}, {gd.act}, {int(gd.swap)}, "
                         f"{int(gd.complement)}, {int(act.saves == 'y')}, {fwd})")
    return (
        "/* ops.h: the C backend's op list.  GENERATED from fastact's registry by\n"
        "   `python build.py --generate` (build.py: ops_header); do not edit.\n"
        "   tests/test_c_backend.py checks that it is current. */\n"
        "#ifndef FASTACT_OPS_H\n#define FASTACT_OPS_H\n\n"
        "/* cdef begin */\n/* kernel ids: fa_elementwise takes those below\n"
        "   FA_K_ELEMENTWISE_COUNT, fa_rowwise the others */\nenum {\n"
        + "\n".join(enum) + "\n};\n/* cdef end */\n\n"
        "/* X(ID, stem, binary, out, fast) for every elementwise kernel (see build.py) */\n"
        "#define FA_ELEMENTWISE_KERNELS(X) \\\n" + " \\\n".join(rows) + "\n\n"
        "/* X(NAME, name, negate, log, fwd_out, bwd_out) for every row-wise op (the\n"
        "   softmax family; fastact/_spec.py: Row): kernels FA_K_<NAME>_FWD/_BWD,\n"
        "   rows of -x where negate, log-probabilities where log */\n"
        "#define FA_ROW_FAMILY(X) \\\n" + " \\\n".join(family) + "\n\n"
        "/* X(NAME, name, act, swap, complement, saves_y, fwd_out) for every gated op\n"
        "   (fastact/_spec.py: Gated): kernels FA_K_<NAME>_FWD/_BWD composing the\n"
        "   formulas N_(act_fwd), N_(act_bwd) as fastact/_ops/gated.py does */\n"
        "#define FA_GATED_FAMILY(X) \\\n" + " \\\n".join(gates) + "\n\n"
        "#endif /* FASTACT_OPS_H */\n")


README = ROOT / "README.md"
TABLE_BEGIN, TABLE_END = "<!-- op table: generated from the registry -->", "<!-- end of op table -->"


def op_table() -> str:
    """The README's op table, a row per public activation of the registry."""
    sys.path.insert(0, str(ROOT))
    try:
        from fastact._registry import REGISTRY, REQUIRED
    finally:
        sys.path.remove(str(ROOT))

    def value(v):
        if isinstance(v, str):
            return f'"{v}"'
        return "1/3" if isinstance(v, float) and abs(v - 1 / 3) < 1e-15 else repr(v)

    def bound(b):
        return {0: "bit-exact", "cond": "conditioning"}.get(b, f"{b} ULP")

    rows = ["| op | parameters (defaults) | backward takes | accuracy, forward / backward "
            "| bound by |",
            "|----|-----------------------|----------------|------------------------------"
            "|----------|"]
    for spec in REGISTRY.values():
        if not spec.public:
            continue
        if spec.kind == "prelu":
            params = "weight, axis=1"
        else:
            params = ", ".join(p.name if p.default is REQUIRED else f"{p.name}={value(p.default)}"
                               for p in spec.api) or "-"
        takes = f"grad, {spec.saves}"
        if spec.backward_api is not None:
            takes += f" ({', '.join(spec.backward_api)})"
        if spec.from_output is not None:
            takes += "; or y (`from_output=True`)"
        acc = " / ".join(bound(b) for b in spec.accuracy)
        rows.append(f"| `{spec.api_name}` | {params} | {takes} | {acc} | "
                    f"{'compute' if spec.compute_bound else 'memory'} |")
    return "\n".join(rows)


def readme_text() -> str:
    """README.md with its op table regenerated."""
    text = README.read_text()
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    return head + TABLE_BEGIN + "\n" + op_table() + "\n" + TABLE_END + tail


def generate(check: bool = False) -> bool:
    """Write ``c_src/ops.h`` and the README's op table (or, with ``check``,
    only say whether both are current)."""
    text, readme = ops_header(), readme_text()
    current = OPS_HEADER.exists() and OPS_HEADER.read_text() == text
    readme_current = README.read_text() == readme
    if not check:
        if not current:
            OPS_HEADER.write_text(text)
        if not readme_current:
            README.write_text(readme)
    return current and readme_current


def compile_flags(threads: bool = True, sanitize: bool = False) -> tuple[list, list]:
    """(compile args, link args) for a gcc/clang-like compiler."""
    cflags = list(BASE_CFLAGS)
    ldflags = []
    if threads:
        cflags += THREAD_FLAGS
        ldflags += THREAD_FLAGS
    else:
        cflags += NO_THREAD_FLAGS
    if sanitize:
        cflags += SANITIZE_FLAGS
        ldflags += ["-fsanitize=address,undefined"]
    cflags += shlex.split(os.environ.get("FASTACT_C_CFLAGS", ""))
    return cflags, ldflags


def want_threads() -> bool:
    return not any(os.environ.get(v, "") in ("1", "true", "yes")
                   for v in ("FASTACT_C_NO_THREADS", "FASTACT_C_NO_OPENMP"))


def make_ffi(threads: bool = True, sanitize: bool = False, relative: bool = False):
    """The cffi builder object.  ``relative`` names sources relative to the
    project root, as setuptools wants them."""
    from cffi import FFI

    root = pathlib.Path(".") if relative else ROOT
    cflags, ldflags = compile_flags(threads, sanitize)
    ffi = FFI()
    ffi.cdef(cdef_text())
    ffi.set_source(
        MODULE, '#include "fastact.h"',
        sources=[str(root / s) for s in SOURCES],
        include_dirs=[str(root / "c_src")],
        depends=[str(root / d) for d in DEPENDS],
        extra_compile_args=cflags, extra_link_args=ldflags,
    )
    return ffi


def extension(threads: bool = True, sanitize: bool = False, relative: bool = True):
    """A setuptools ``Extension`` of the C backend; writes cffi's generated
    ``fastact/_backends/_cfastact.c``.  ``relative`` names the sources
    relative to the project root, as ``setup.py`` (run from there) wants."""
    from setuptools import Extension

    root = pathlib.Path(".") if relative else ROOT
    generated = root / "fastact" / "_backends" / "_cfastact.c"
    make_ffi(threads=threads, sanitize=sanitize, relative=relative).emit_c_code(str(generated))
    cflags, ldflags = compile_flags(threads, sanitize)
    # the slowest units first (compile_in_parallel), cffi's glue last
    return Extension(MODULE, sources=[str(root / s) for s in SOURCES] + [str(generated)],
                     include_dirs=[str(root / "c_src")],
                     depends=[str(root / d) for d in DEPENDS],
                     extra_compile_args=cflags, extra_link_args=ldflags)


def compile_in_parallel(compiler, jobs: int | None = None) -> None:
    """Make a distutils compiler object compile the sources of one extension
    side by side, one compiler process per source, at most ``jobs`` at a time
    (default: the CPUs this process may run on).  The three instruction-set
    units of ``c_src/`` take most of the build: on two cores it takes about
    half as long.  ``FASTACT_C_JOBS`` sets ``jobs``."""
    if getattr(compiler, "_fastact_parallel", False):
        return
    if jobs is None:
        try:
            jobs = int(os.environ.get("FASTACT_C_JOBS", "0"))
        except ValueError:
            jobs = 0
        if jobs < 1:
            try:
                jobs = len(os.sched_getaffinity(0))
            except AttributeError:          # not Linux
                jobs = os.cpu_count() or 1
    serial = compiler.compile

    def compile(sources, *args, **kwargs):
        if jobs < 2 or len(sources) < 2:
            return serial(sources, *args, **kwargs)
        from concurrent.futures import ThreadPoolExecutor

        # setuptools sorts the sources by name: start the slowest first
        names = [pathlib.PurePath(s).name for s in SOURCES]
        first = sorted(sources, key=lambda src: names.index(pathlib.PurePath(src).name)
                       if pathlib.PurePath(src).name in names else len(names))
        with ThreadPoolExecutor(min(jobs, len(sources))) as pool:
            parts = dict(zip(first, pool.map(lambda src: serial([src], *args, **kwargs),
                                              first)))
        return [obj for src in sources for obj in parts[src]]

    compiler.compile = compile
    compiler._fastact_parallel = True


def _run_build_ext(ext, temp: str, verbose: bool = False) -> pathlib.Path:
    """Compile one extension with setuptools (its sources side by side) under
    ``build/<temp>`` and return the built module's path."""
    from setuptools import Distribution
    from setuptools.command.build_ext import build_ext

    class build_ext_parallel(build_ext):
        def build_extension(self, ext):
            compile_in_parallel(self.compiler)
            super().build_extension(ext)

    dist = Distribution({"name": "fastact-" + temp, "ext_modules": [ext],
                         "cmdclass": {"build_ext": build_ext_parallel}})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_temp = str(ROOT / "build" / (temp + "-temp"))
    cmd.build_lib = str(ROOT / "build" / (temp + "-lib"))
    cmd.verbose = verbose
    cmd.force = True            # flags may differ from the last build's
    cmd.ensure_finalized()
    cmd.run()
    return pathlib.Path(cmd.get_ext_fullpath(ext.name))


def fastcall_extension(relative: bool = True):
    """The setuptools ``Extension`` of ``_cfastcall`` (needs NumPy's headers;
    ImportError without NumPy)."""
    import numpy
    from setuptools import Extension

    root = pathlib.Path(".") if relative else ROOT
    cflags = ["-std=c11", "-O2", "-Wall", "-Werror=implicit-function-declaration"]
    cflags += shlex.split(os.environ.get("FASTACT_C_CFLAGS", ""))
    return Extension(FASTCALL_MODULE, sources=[str(root / s) for s in FASTCALL_SOURCES],
                     include_dirs=[numpy.get_include(), str(root / "c_src")],
                     depends=[str(root / "c_src" / "fastact.h"), str(root / "c_src" / "ops.h")],
                     extra_compile_args=cflags)


def build_fastcall(verbose: bool = False) -> pathlib.Path:
    """Compile ``_cfastcall`` in place and return its path."""
    so = _run_build_ext(fastcall_extension(relative=False), "fastcall", verbose)
    dest = ROOT / "fastact" / "_backends" / so.name
    tmp_dest = dest.with_suffix(".tmp")
    tmp_dest.write_bytes(so.read_bytes())
    os.replace(tmp_dest, dest)
    return dest


def build(outdir: pathlib.Path | None = None, threads: bool | None = None,
          sanitize: bool = False, verbose: bool = False) -> pathlib.Path:
    """Compile the extension into ``outdir`` (default: in place, next to
    ``fastact/_backends/c.py``) and return the path of the built module.
    Where the build with threads fails it retries without them."""
    if threads is None:
        threads = want_threads()
    temp = "cffi-sanitize" if sanitize else "cffi"
    try:
        so = _run_build_ext(extension(threads, sanitize, relative=False), temp, verbose)
    except Exception:
        if not threads:
            raise
        so = _run_build_ext(extension(False, sanitize, relative=False), temp, verbose)
    dest_dir = pathlib.Path(outdir) if outdir else ROOT / "fastact" / "_backends"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / so.name
    if dest != so:
        # replace rather than overwrite: a loaded module keeps its old inode
        tmp_dest = dest.with_suffix(".tmp")
        tmp_dest.write_bytes(so.read_bytes())
        os.replace(tmp_dest, dest)
    note = ROOT / "fastact" / "_backends" / UNBUILT_NOTE
    if outdir is None and note.exists():
        note.unlink()
    return dest


# cffi's setuptools integration (cffi_modules=["build.py:ffi"]) also works
ffi = make_ffi(threads=want_threads())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--outdir", type=pathlib.Path, help="where to put the module "
                    "(default: fastact/_backends, in place)")
    ap.add_argument("--sanitize", action="store_true",
                    help="build with -fsanitize=address,undefined")
    ap.add_argument("--no-threads", "--no-openmp", action="store_true",
                    help="build without threads")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--generate", action="store_true",
                    help="write c_src/ops.h and README.md's op table from fastact's "
                    "registry, then stop")
    args = ap.parse_args(argv)
    if args.generate:
        print(f"{OPS_HEADER}: {'current' if generate() else 'written'}")
        return 0
    path = build(args.outdir, threads=False if args.no_threads else None,
                 sanitize=args.sanitize, verbose=args.verbose)
    print(path)
    if args.outdir is None:
        try:
            print(build_fastcall(verbose=args.verbose))
        except Exception as e:       # optional: the backend calls through cffi
            print(f"fastact: {FASTCALL_MODULE} not built ({type(e).__name__}: {e}); "
                  "the C backend calls its kernels through cffi", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
