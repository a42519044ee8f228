"""``fastact demo --quick``, the CI run: it trains, prints a table whose
numbers come from the run, draws the chart, and states the claims."""
import importlib.util
import re
import sys

import numpy as np
import pytest

from fastact import cli

needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason="the demo needs scikit-learn (fastact[demo])")


@needs_sklearn
def test_demo_quick_prints_the_measured_table(capsys, tmp_path):
    from fastact import _demo
    lines = []
    res = _demo.run(quick=True, plot=None, out=lines.append)
    text = "\n".join(lines)
    rows = {r["label"]: r for r in res["rows"]}
    for label, _ in _demo.ACTIVATIONS:
        r = rows[label]
        # the table prints the run's own numbers
        line = next(ln for ln in lines if ln.startswith(label + " "))
        assert f"{r['acc'][-1]:.4f}" in line and f"{r['loss'][-1]:.4f}" in line
        assert len(r["acc"]) == res["epochs"] == 3
        assert 0 <= r["acc"][-1] <= 1 and np.isfinite(r["loss"][-1])
    assert rows["relu"]["acc"][-1] > 0.8            # it does learn
    slope = rows["prelu"]["slope"]
    assert slope != 0.25 and f"{slope:.4f}" in text
    assert len(res["norms"]["sigmoid"]) == len(res["norms"]["relu"]) == 11
    assert "sigmoid's gradient vanishes" in text and "RReLU beats the others" in text
    assert len(re.findall(r": (supported|NOT supported|partly)", text)) == 7


@needs_sklearn
def test_demo_cli_quick_with_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "demo.png"
    assert cli.main(["demo", "--quick", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "test acc" in out and "epochs to 90%" in out and "PReLU slope" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_refuses_an_unwritable_plot(capsys, tmp_path):
    assert cli.main(["demo", "--quick", "--plot", str(tmp_path / "no" / "x.png")]) == 2


def test_demo_without_scikit_learn_says_what_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)        # import fails
    assert cli.main(["demo", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "pip install fastact[demo]" in err and len(err.strip().splitlines()) == 1
