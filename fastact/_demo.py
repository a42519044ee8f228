"""``fastact demo``: small NumPy MLPs on scikit-learn's 8x8 digits, one per
activation, to check the survey's claims on real data.

The ``Linear`` layer here belongs to the demo, not to the library (fastact
computes activations; the matrix products are NumPy's).  Every number the
demo prints is measured by the run: accuracies, losses, the learned PReLU
slopes, times, and the per-layer gradient norms of a deep sigmoid network
against a ReLU one.  Seeds are fixed, so a run repeats (times aside).
"""
from __future__ import annotations

import time

import numpy as np

from . import nn

#: (label, layer factory(width, layer index)) of the compared activations:
#: every one the seed survey names, then some modern ones
ACTIVATIONS = [
    ("sigmoid", lambda w, i: nn.Sigmoid()),
    ("relu", lambda w, i: nn.ReLU()),
    ("leaky_relu 0.01", lambda w, i: nn.LeakyReLU(0.01)),
    ("leaky_relu 1/5.5", lambda w, i: nn.LeakyReLU(1 / 5.5)),
    ("prelu", lambda w, i: nn.PReLU(w)),
    ("rrelu [1/8,1/3]", lambda w, i: nn.RReLU(1 / 8, 1 / 3, seed=100 + i)),
    ("rrelu x/a a~U(3,8)", lambda w, i: nn.RReLU(3.0, 8.0, seed=100 + i, divide=True)),
    ("elu", lambda w, i: nn.ELU()),
    ("tanh", lambda w, i: nn.Tanh()),
    ("silu", lambda w, i: nn.SiLU()),
    ("gelu", lambda w, i: nn.GELU()),
    ("swiglu", lambda w, i: nn.SwiGLU()),
]
GATED = {"swiglu"}


class Linear:
    """``y = x W + b``, He-initialized (std sqrt(2 / n_in)) from ``rng``."""

    def __init__(self, n_in, n_out, rng, dtype=np.float32):
        self.w = nn.Parameter((rng.standard_normal((n_in, n_out)) *
                               np.sqrt(2.0 / n_in)).astype(dtype))
        self.b = nn.Parameter(np.zeros(n_out, dtype))

    def forward(self, x):
        self.x = x
        return x @ self.w.data + self.b.data

    def backward(self, g):
        self.w.grad += self.x.T @ g
        self.b.grad += g.sum(0)
        return g @ self.w.data.T

    def parameters(self):
        return [self.w, self.b]

    def train(self, mode=True):
        return self

    def eval(self):
        return self


class MLP:
    """``depth`` hidden layers of ``width`` units, each Linear then the
    activation, then a Linear to the classes."""

    def __init__(self, label, make, n_in, width, n_out, depth, seed):
        rng = np.random.default_rng(seed)
        gated = label in GATED
        self.layers = []
        d = n_in
        for i in range(depth):
            self.layers.append(Linear(d, 2 * width if gated else width, rng))
            self.layers.append(make(width, i))
            d = width
        self.layers.append(Linear(d, n_out, rng))
        self.linears = [m for m in self.layers if isinstance(m, Linear)]

    def forward(self, x):
        for m in self.layers:
            x = m.forward(x)
        return x

    def backward(self, g):
        for m in reversed(self.layers):
            g = m.backward(g)
        return g

    def parameters(self):
        return [p for m in self.layers for p in m.parameters()]

    def train(self, mode=True):
        for m in self.layers:
            m.train(mode)


def load_digits(seed):
    """scikit-learn's bundled 8x8 digits (no download): pixels scaled to
    [0, 1], a stratified 75/25 train/test split."""
    from sklearn.datasets import load_digits as load
    from sklearn.model_selection import train_test_split
    d = load()
    x = (d.data / 16.0).astype(np.float32)
    return train_test_split(x, d.target, test_size=0.25, random_state=seed, stratify=d.target)


def accuracy(net, x, t):
    net.train(False)
    acc = float((net.forward(x).argmax(1) == t).mean())
    net.train(True)
    return acc


def fit(net, data, epochs, lr, momentum, batch, seed):
    """Train with SGD (momentum); per epoch: mean training loss, test
    accuracy and seconds of training."""
    xtr, xte, ttr, tte = data
    loss = nn.CrossEntropy()
    opt = nn.SGD(net.parameters(), lr, momentum=momentum)
    order = np.random.default_rng(seed)
    hist = {"loss": [], "acc": [], "sec": []}
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = order.permutation(len(xtr))
        total = 0.0
        for s in range(0, len(perm), batch):
            idx = perm[s:s + batch]
            opt.zero_grad()
            total += float(loss.forward(net.forward(xtr[idx]), ttr[idx])) * len(idx)
            net.backward(loss.backward())
            opt.step()
        hist["sec"].append(time.perf_counter() - t0)
        hist["loss"].append(total / len(xtr))
        hist["acc"].append(accuracy(net, xte, tte))
    return hist


def gradient_norms(label, make, data, width, depth, seed, batch=256):
    """||dL/dW_l|| of every Linear layer (input first) of a fresh
    ``depth``-layer network on one training batch."""
    xtr, _, ttr, _ = data
    net = MLP(label, make, xtr.shape[1], width, 10, depth, seed)
    loss = nn.CrossEntropy()
    loss.forward(net.forward(xtr[:batch]), ttr[:batch])
    net.backward(loss.backward())
    return [float(np.linalg.norm(m.w.grad)) for m in net.linears]


def _first(acc, level=0.9):
    return next((i + 1 for i, a in enumerate(acc) if a >= level), None)


def _mean(hists, key):
    return np.mean([h[key] for h in hists], axis=0)


def run(quick=False, epochs=None, seeds=None, deep=10, plot=None, out=print):
    """Train every activation (each seed: the split, the weights, the
    batches, RReLU's draws), print the table and the claims; return the
    results.  Table entries are means over the seeds."""
    import fastact
    from ._dispatch import choose
    epochs = epochs or (3 if quick else 20)
    seeds = tuple(seeds) if seeds is not None else ((0,) if quick else (0, 1, 2))
    deep_epochs = max(2, epochs // 2)
    width, lr, momentum, batch = 64, 0.05, 0.9, 32
    sets = {sd: load_digits(sd) for sd in seeds}
    xtr, xte = sets[seeds[0]][0], sets[seeds[0]][1]
    out(f"digits 8x8: {len(xtr)} train / {len(xte)} test; MLP 64-{width}-{width}-10, "
        f"SGD lr {lr} momentum {momentum}, batch {batch}, {epochs} epochs, float32, "
        f"backend {choose(None, batch * width, 'relu').name}; seeds {list(seeds)}, "
        f"table entries their mean (fastact {fastact.__version__})")
    rows = []
    acts = dict(ACTIVATIONS)
    plan = [(label, make, 2, epochs, lr) for label, make in ACTIVATIONS]
    # the deep pair, trained with a smaller step (10 layers)
    plan += [(f"{label} ({deep} layers)", acts[label], deep, deep_epochs, lr / 5)
             for label in ("sigmoid", "relu")]
    for label, make, depth, n_epochs, step in plan:
        hists, slopes = [], []
        for sd in seeds:
            net = MLP(label.split(" (")[0], make, 64, width, 10, depth, sd)
            hists.append(fit(net, sets[sd], n_epochs, step, momentum, batch, sd))
            slopes += [float(m.weight.data.mean()) for m in net.layers
                       if isinstance(m, nn.PReLU)]
        accs = [h["acc"][-1] for h in hists]
        rows.append(dict(label=label, depth=depth, hists=hists,
                         acc=_mean(hists, "acc"), loss=_mean(hists, "loss"),
                         acc_range=(min(accs), max(accs)),
                         sec=float(np.mean([h["sec"] for h in hists])),
                         slope=float(np.mean(slopes)) if slopes else None))
    norms = {label: gradient_norms(label, acts[label], sets[seeds[0]], width, deep, seeds[0])
             for label in ("sigmoid", "relu")}

    out("")
    out(f"{'activation':22} {'test acc':>8} {'(min-max)':>13} {'final loss':>10} "
        f"{'epochs to 90%':>13} {'PReLU slope':>11} {'s/epoch':>8}")
    for r in rows:
        e90 = _first(r["acc"])
        lo, hi = r["acc_range"]
        out(f"{r['label']:22} {r['acc'][-1]:8.4f} {f'{lo:.3f}-{hi:.3f}':>13} "
            f"{r['loss'][-1]:10.4f} {e90 if e90 else '-':>13} "
            f"{format(r['slope'], '.4f') if r['slope'] is not None else '-':>11} "
            f"{r['sec']:8.4f}")
    out("")
    out(f"gradient norm ||dL/dW|| per layer at initialization, {deep}-layer nets, "
        f"seed {seeds[0]} (input layer first):")
    for label, ns in norms.items():
        out(f"  {label:8} " + " ".join(f"{v:.2e}" for v in ns))
    out("")
    for line in claims(rows, norms, epochs, len(seeds)):
        out(line)
    if plot:
        _plot(plot, rows, norms, deep)
        out(f"\nwrote {plot}")
    return {"rows": rows, "norms": norms, "epochs": epochs, "seeds": seeds}


def claims(rows, norms, epochs, n_seeds):
    """The survey's claims against this run's numbers: one line each,
    'supported' or 'NOT supported', with the numbers (means over the seeds)."""
    by = {r["label"]: r for r in rows}

    def acc(k):
        return by[k]["acc"][-1]

    def loss(k):
        return by[k]["loss"][-1]

    def e90(k):
        return _first(by[k]["acc"]) or epochs + 1

    def shown(k):
        e = _first(by[k]["acc"])
        return str(e) if e else f">{epochs}"

    def verdict(ok):
        return "supported" if ok else "NOT supported"

    lines = [f"The survey's claims on this run (means over {n_seeds} seed(s)):"]
    s, r = norms["sigmoid"], norms["relu"]
    ratio_s, ratio_r = s[0] / s[-1], r[0] / r[-1]
    lines.append(f"- sigmoid's gradient vanishes with depth: first/last layer gradient norm "
                 f"{ratio_s:.2e} (sigmoid) vs {ratio_r:.2e} (relu): "
                 f"{verdict(ratio_s < ratio_r / 10)}")
    ds, dr = [k for k in by if "layers)" in k]
    lines.append(f"- deep sigmoid nets train badly, ReLU ones do not: test accuracy "
                 f"{acc(ds):.3f} vs {acc(dr):.3f}: {verdict(acc(ds) < acc(dr) - 0.05)}")
    lines.append(f"- ReLU learns faster than sigmoid (epochs to 90%, final loss): "
                 f"{shown('relu')} vs {shown('sigmoid')}, {loss('relu'):.4f} vs "
                 f"{loss('sigmoid'):.4f}: "
                 f"{verdict(e90('relu') <= e90('sigmoid') and loss('relu') < loss('sigmoid'))}")
    slope = by["prelu"]["slope"]
    lines.append(f"- PReLU learns its slopes (start 0.25, now mean {slope:.4f}) and matches "
                 f"or beats ReLU: test accuracy {acc('prelu'):.4f} vs {acc('relu'):.4f}: "
                 f"{verdict(abs(slope - 0.25) > 1e-3 and acc('prelu') >= acc('relu'))}")
    others = {k: acc(k) for k in by if "layers)" not in k and not k.startswith("rrelu")}
    best = max(others, key=others.get)
    rr = max(acc("rrelu [1/8,1/3]"), acc("rrelu x/a a~U(3,8)"))
    lines.append(f"- RReLU beats the others (Xu et al., CIFAR): best RReLU {rr:.4f} vs best "
                 f"other {others[best]:.4f} ({best}): {verdict(rr > others[best])}")
    lines.append(f"- a very leaky ReLU (1/5.5) beats leaky 0.01 (Xu et al.): "
                 f"{acc('leaky_relu 1/5.5'):.4f} vs {acc('leaky_relu 0.01'):.4f}: "
                 f"{verdict(acc('leaky_relu 1/5.5') > acc('leaky_relu 0.01'))}")
    sooner, lower = e90("elu") < e90("relu"), loss("elu") < loss("relu")
    lines.append(f"- ELU learns faster than ReLU: epochs to 90% {shown('elu')} vs "
                 f"{shown('relu')}, final loss {loss('elu'):.4f} vs {loss('relu'):.4f}: "
                 + ("supported" if sooner and lower else
                    "partly (sooner to 90%, not a lower final loss)" if sooner else
                    "partly (a lower final loss, not sooner to 90%)" if lower else
                    "NOT supported"))
    lines.append("(a small dataset: where the test accuracies' min-max ranges overlap, "
                 "a 'supported' or 'NOT supported' is within the seeds' spread)")
    return lines


def _plot(path, rows, norms, deep):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    colors = plt.cm.tab20(np.linspace(0, 1, 20))
    for k, r in enumerate(rows):
        h = r["loss"]
        a.plot(range(1, len(h) + 1), h, label=r["label"], color=colors[k % 20],
               linestyle="--" if r["depth"] > 2 else "-")
    a.set_yscale("log")
    a.xaxis.get_major_locator().set_params(integer=True)
    a.set_xlabel("epoch")
    a.set_ylabel("mean training cross-entropy (mean over seeds)")
    a.set_title("digits 8x8: training loss per activation")
    a.legend(fontsize=7, ncol=2)
    for label, ns in norms.items():
        b.plot(range(1, len(ns) + 1), ns, marker="o", label=label)
    b.set_yscale("log")
    b.set_xlabel("weight matrix (1 = input side, last = output layer)")
    b.set_ylabel("||dL/dW|| at initialization")
    b.set_title(f"{deep}-layer networks: gradient norm per layer")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
