"""Train a small MLP on scikit-learn's 8x8 digits with fastact's layers.

    python examples/train_digits.py            # one PReLU network, printed as it learns
    python examples/train_digits.py --all ...  # the full comparison: ``fastact demo ...``

Needs ``pip install fastact[demo]``.  The Linear layer is the example's own:
fastact computes the activations, NumPy the matrix products.
"""
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastact.nn as nn


class Linear:
    def __init__(self, n_in, n_out, rng):
        self.w = nn.Parameter((rng.standard_normal((n_in, n_out)) * np.sqrt(2 / n_in))
                              .astype(np.float32))
        self.b = nn.Parameter(np.zeros(n_out, np.float32))

    def forward(self, x):
        self.x = x
        return x @ self.w.data + self.b.data

    def backward(self, g):
        self.w.grad += self.x.T @ g
        self.b.grad += g.sum(0)
        return g @ self.w.data.T

    def parameters(self):
        return [self.w, self.b]


def main(epochs=10, seed=0):
    d = load_digits()
    xtr, xte, ttr, tte = train_test_split((d.data / 16).astype(np.float32), d.target,
                                          test_size=0.25, random_state=seed, stratify=d.target)
    rng = np.random.default_rng(seed)
    net = [Linear(64, 64, rng), nn.PReLU(64), Linear(64, 10, rng)]
    loss = nn.CrossEntropy()
    opt = nn.SGD([p for m in net for p in m.parameters()], lr=0.05, momentum=0.9)
    for epoch in range(epochs):
        perm = rng.permutation(len(xtr))
        for s in range(0, len(perm), 32):
            i = perm[s:s + 32]
            h = xtr[i]
            for m in net:
                h = m.forward(h)
            opt.zero_grad()
            value = loss(h, ttr[i])
            g = loss.backward()
            for m in reversed(net):
                g = m.backward(g)
            opt.step()
        h = xte
        for m in net:
            h = m.forward(h)
        print(f"epoch {epoch + 1:2}: last batch loss {value:.4f}, test accuracy "
              f"{(h.argmax(1) == tte).mean():.4f}, mean PReLU slope {net[1].weight.data.mean():.4f}")


if __name__ == "__main__":
    if "--all" in sys.argv:
        from fastact.cli import main as cli
        sys.exit(cli(["demo"] + [a for a in sys.argv[1:] if a != "--all"]))
    main()
