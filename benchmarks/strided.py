"""Elementwise calls on strided and transposed views against the contiguous
call and against PyTorch on the same views, in one process.

    python benchmarks/strided.py [--backend c|numba] [--rounds 15] [--threads 2] [--out]

2**24 float32 (4096 x 4096; the step case views a 4096 x 8192 base).  Each
round times every call once, interleaved; a call's figure is the median of
its rounds.  Prints, per case, ms for ours (strided), ours on contiguous
arrays of the same shape, PyTorch (``torch.set_num_threads``, the same
strided views), and the ratios strided / contiguous and torch / ours.
``--out``: every call writes a preallocated C-order output (the kernels'
time without the page faults of a fresh 64 MiB result).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fastact


def cases(rng):
    n = 4096
    x = rng.standard_normal((n, n)).astype(np.float32)
    y = fastact.sigmoid(x)
    g = rng.standard_normal((n, n)).astype(np.float32)
    wide = rng.standard_normal((n, 2 * n)).astype(np.float32)
    gT, yT = np.ascontiguousarray(g.T), np.ascontiguousarray(y.T)
    # (name, fastact fn, strided args, contiguous args, torch fn)
    return [
        ("sigmoid(x.T)", "sigmoid", (x.T,), (x,), "sigmoid"),
        ("relu(x.T)", "relu", (x.T,), (x,), "relu"),
        ("sigmoid_backward(g.T, y.T)", "sigmoid_backward", (gT.T, yT.T), (g, y),
         "sigmoid_backward"),
        ("sigmoid(x[:, ::2])", "sigmoid", (wide[:, ::2],), (x,), "sigmoid"),
        ("sigmoid(x[::-1])", "sigmoid", (x[::-1],), (x,), "sigmoid"),
        ("sigmoid_backward(g, y.T)", "sigmoid_backward", (g, yT.T), (g, y),
         "sigmoid_backward"),
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default=None)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", action="store_true")
    args = ap.parse_args(argv)
    fastact.set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
        A = torch.ops.aten
        tfn = {"sigmoid": torch.sigmoid, "relu": torch.relu,
               "sigmoid_backward": A.sigmoid_backward}
        tout = {"sigmoid": lambda x, out: torch.sigmoid(x, out=out),
                "relu": lambda x, out: torch.clamp_min(x, 0, out=out),
                "sigmoid_backward": lambda g, y, out: A.sigmoid_backward.grad_input(
                    g, y, grad_input=out)}
    except ImportError:
        torch = None
    rows = cases(np.random.default_rng(0))
    calls = []
    res = np.empty((4096, 4096), np.float32)
    for name, fn, strided, contig, tname in rows:
        f = getattr(fastact, fn)
        kw = {"backend": args.backend} if args.backend else {}
        if args.out:
            kw["out"] = res
        c = [(lambda f=f, a=strided: f(*a, **kw)), (lambda f=f, a=contig: f(*a, **kw))]
        if torch is not None:
            t = tfn[tname]
            if args.out:
                t = lambda *a, f=tout[tname], o=torch.from_numpy(res): f(*a, o)
            if name == "sigmoid(x[::-1])":
                # PyTorch has no negative strides: its user flips (a copy)
                base = torch.from_numpy(strided[0][::-1])
                c.append(lambda t=t, b=base: t(b.flip(0)))
            else:
                ta = tuple(torch.from_numpy(a) for a in strided)
                c.append(lambda t=t, a=ta: t(*a))
        for k in c:                      # warm up: compile, pools, page cache
            k()
        calls.append(c)
    times = [[[] for _ in c] for c in calls]
    for _ in range(args.rounds):
        for i, c in enumerate(calls):
            for j, k in enumerate(c):
                t0 = time.perf_counter()
                r = k()
                times[i][j].append(time.perf_counter() - t0)
                del r
    print(f"backend {args.backend or 'auto'}, {args.threads} threads, median of "
          f"{args.rounds} rounds, ms{', out= given' if args.out else ''}")
    print(f"{'case':30s} {'ours':>7s} {'contig':>7s} {'torch':>7s} {'ours/contig':>11s} "
          f"{'torch/ours':>10s}")
    for (name, *_), ts in zip(rows, times):
        med = [statistics.median(t) * 1e3 for t in ts]
        tt = f"{med[2]:7.2f}" if len(med) > 2 else "      -"
        tr = f"{med[2] / med[0]:10.2f}" if len(med) > 2 else "         -"
        print(f"{name:30s} {med[0]:7.2f} {med[1]:7.2f} {tt} {med[0] / med[1]:11.2f} {tr}")


if __name__ == "__main__":
    main()
