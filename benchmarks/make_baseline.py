"""Write ``benchmarks/baseline.json`` from several real ``fastact bench --quick`` runs.

Usage::

    python benchmarks/make_baseline.py --runs 8 -o benchmarks/baseline.json [extra bench options]
    python benchmarks/make_baseline.py --merge run1.json run2.json ... -o baseline.json
    python benchmarks/make_baseline.py --add --runs 8 --ops gelu,silu

Figures are fractions of a copy's throughput, which carry between machines
of one processor only: each processor has its own file, ``baseline.json``
or ``baseline.<processor>.json`` beside it (fastact._bench.baseline_for),
and ``-o`` defaults to this machine's.

``--add`` measures only the kernels the extra options select (a new op's)
and puts their rows into the existing baseline, keeping every other row as
it is: a new op gets a baseline without the whole file being regenerated.

Each run is a separate process (fresh caches, thread pool and heap), spread
over minutes, so that the baseline sees the machine's ordinary noise.  Each
kernel's figure is the median over the runs of its fraction of the copy
roofline; ``spread`` records the lowest and highest run, to show how much
room the check's margin leaves.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def merge(paths):
    runs = []
    for p in paths:
        with open(p) as f:
            runs.append(json.load(f))
    by_key = {}
    for run in runs:
        for r in run["results"]:
            by_key.setdefault(r["key"], []).append(r)
    results = []
    for key, rows in by_key.items():
        figs = [r["roofline"] for r in rows]
        med = statistics.median(figs)
        row = dict(min(rows, key=lambda r: abs(r["roofline"] - med)))
        row["roofline"] = med
        row["spread"] = [min(figs), max(figs)]
        row["runs"] = len(figs)
        results.append(row)
    meta = dict(runs[0]["meta"])
    meta["runs"] = len(runs)
    meta["note"] = ("roofline: median over the runs of each kernel's throughput divided by a "
                    "parallel copy's, same size, same run; regenerate with "
                    "benchmarks/make_baseline.py after an intended performance change")
    return {"meta": meta, "results": results}


def add_rows(path, new):
    """The baseline at ``path`` with ``new``'s rows added, or replacing the
    rows of the same kernels (its meta kept: the same bench settings)."""
    with open(path) as f:
        old = json.load(f)
    keys = {r["key"] for r in new["results"]}
    for k in ("quick", "size", "threads"):
        if old["meta"].get(k) != new["meta"].get(k):
            raise SystemExit(f"make_baseline: {path} was measured with {k}="
                             f"{old['meta'].get(k)!r}, these runs with {new['meta'].get(k)!r}")
    results = [r for r in old["results"] if r["key"] not in keys] + new["results"]
    return {"meta": old["meta"], "results": results}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--merge", nargs="+", metavar="JSON", help="merge existing result files")
    p.add_argument("--add", action="store_true",
                   help="keep the output file's rows; add (or replace) those measured now")
    p.add_argument("-o", "--output", default=None,
                   help="default: benchmarks/baseline.json where it was made on this "
                        "processor (or does not exist), else benchmarks/baseline.<processor>.json "
                        "(fastact bench --compare picks the file of its machine's processor)")
    args, extra = p.parse_known_args(argv)
    if args.output is None:
        from fastact import _bench
        default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "baseline.json")
        found, seen = _bench.baseline_for(default)
        args.output = str(found if found is not None else
                          _bench.baseline_sibling(default) if seen else default)
    if args.add and not os.path.exists(args.output):
        # before any run: --add keeps rows of a file this processor has not got
        raise SystemExit(f"make_baseline: --add adds rows to {args.output}, which does not "
                         "exist (no baseline of this processor yet): run without --add "
                         "first, over every op")
    paths = args.merge
    if not paths:
        tmp = tempfile.mkdtemp(prefix="fastact-baseline-")
        paths = []
        for i in range(args.runs):
            path = os.path.join(tmp, f"run{i}.json")
            subprocess.run([sys.executable, "-m", "fastact.cli", "bench", "--quick",
                            "--no-progress", "--json", path, *extra], check=True,
                           stdout=subprocess.DEVNULL)
            paths.append(path)
            print(f"run {i + 1}/{args.runs} done", file=sys.stderr)
    data = merge(paths)
    if args.add:
        data = add_rows(args.output, data)
    with open(args.output, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    worst = min(r["spread"][0] / r["roofline"] for r in data["results"])
    print(f"{args.output}: {len(data['results'])} kernels from {len(paths)} runs; lowest run "
          f"at {100 * worst:.0f}% of the median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
