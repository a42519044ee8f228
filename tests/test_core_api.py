"""The public API's exact names, signatures, defaults and docstrings (issue 2)."""
import inspect

import numpy as np
import pytest

import fastact

P, K = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY
E = inspect.Parameter.empty

# name -> [(param, kind, default)], then the shared keyword-only out=None, backend=None
SIGNATURES = {
    "sigmoid": [("x", P, E)],
    "relu": [("x", P, E)],
    "leaky_relu": [("x", P, E), ("negative_slope", P, 0.01)],
    "prelu": [("x", P, E), ("weight", P, E), ("axis", K, 1)],
    "rrelu": [("x", P, E), ("lower", P, 1 / 8), ("upper", P, 1 / 3), ("training", K, False),
              ("seed", K, None)],
    "elu": [("x", P, E), ("alpha", P, 1.0)],
    "softmax": [("x", P, E), ("axis", K, -1)],
    "sigmoid_backward": [("grad", P, E), ("y", P, E)],
    "relu_backward": [("grad", P, E), ("y", P, E)],
    "leaky_relu_backward": [("grad", P, E), ("x", P, E), ("negative_slope", P, 0.01)],
    "prelu_backward": [("grad", P, E), ("x", P, E), ("weight", P, E), ("axis", K, 1)],
    "rrelu_backward": [("grad", P, E), ("x", P, E), ("lower", P, 1 / 8), ("upper", P, 1 / 3),
                       ("training", K, False), ("seed", K, None)],
    "elu_backward": [("grad", P, E), ("x", P, E), ("alpha", P, 1.0)],
    "softmax_backward": [("grad", P, E), ("y", P, E), ("axis", K, -1)],
    # the clamps family
    "hardtanh": [("x", P, E), ("min_val", P, -1.0), ("max_val", P, 1.0)],
    "hardtanh_backward": [("grad", P, E), ("x", P, E), ("min_val", P, -1.0), ("max_val", P, 1.0)],
    "relu6": [("x", P, E)],
    "relu6_backward": [("grad", P, E), ("x", P, E)],
    "hardsigmoid": [("x", P, E)],
    "hardsigmoid_backward": [("grad", P, E), ("x", P, E)],
    "hardswish": [("x", P, E)],
    "hardswish_backward": [("grad", P, E), ("x", P, E)],
    "hardshrink": [("x", P, E), ("lambd", P, 0.5)],
    "hardshrink_backward": [("grad", P, E), ("x", P, E), ("lambd", P, 0.5)],
    "softshrink": [("x", P, E), ("lambd", P, 0.5)],
    "softshrink_backward": [("grad", P, E), ("x", P, E), ("lambd", P, 0.5)],
    "threshold": [("x", P, E), ("threshold", P, E), ("value", P, E)],
    "threshold_backward": [("grad", P, E), ("x", P, E), ("threshold", P, E)],
    "softsign": [("x", P, E)],
    "softsign_backward": [("grad", P, E), ("x", P, E)],
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signature(name):
    fn = getattr(fastact, name)
    params = inspect.signature(fn).parameters
    for pname, kind, default in SIGNATURES[name] + [("out", K, None), ("backend", K, None)]:
        assert pname in params, f"{name} lacks {pname}"
        p = params[pname]
        assert p.kind == kind, (name, pname, p.kind)
        assert p.default == default if default is not E else p.default is E, (name, pname, p.default)
    positional = [p for p in params.values() if p.kind in (P, inspect.Parameter.POSITIONAL_ONLY)]
    assert [p.name for p in positional] == [n for n, k, _ in SIGNATURES[name] if k == P]
    assert name in fastact.__all__


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_docstring_has_formula_and_example(name):
    doc = getattr(fastact, name).__doc__
    assert doc and ".. math::" in doc and ">>> " in doc


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_docstring_documents_every_argument_and_the_result(name):
    """Each argument of the signature has a line in "Arguments:", before the
    examples, and the return value is stated."""
    fn = getattr(fastact, name)
    doc = fn.__doc__
    args = doc[doc.index("Arguments:"):doc.index(">>> ")]
    for p in inspect.signature(fn).parameters:
        assert f"\n      {p}: " in args, (name, p)
    assert "Returns " in args


@pytest.mark.parametrize("name,words", [
    ("relu_backward", ["relu'(0) = 0", "NaN"]),
    ("leaky_relu_backward", ["f'(0) = a", "NaN"]),
    ("elu_backward", ["elu'(0) = alpha", "NaN"]),
    ("prelu_backward", ["x > 0"]),
    ("rrelu", ["seed", "ValueError", "(lower + upper) / 2"]),
    ("hardtanh_backward", ["hardtanh'(min_val)", "NaN"]),
    ("relu6_backward", ["relu6'(0) = relu6'(6) = 0", "NaN"]),
    ("hardsigmoid_backward", ["hardsigmoid'(-3)", "NaN"]),
    ("hardswish_backward", ["hardswish'(-3) = 0", "hardswish'(3) = 1", "NaN"]),
    ("hardshrink_backward", ["hardshrink'(+-lambd) = 0", "NaN"]),
    ("softshrink_backward", ["softshrink'(+-lambd) = 0", "NaN"]),
    ("threshold_backward", ["f'(threshold) = 0", "NaN"]),
    ("hardtanh", ["ValueError"]),
    ("softshrink", ["ValueError"]),
])
def test_docstrings_state_kink_conventions(name, words):
    doc = getattr(fastact, name).__doc__
    for w in words:
        assert w in doc, (name, w)


#: the API freeze: every public activation (each also has ``<name>_backward``)
FROZEN = {"sigmoid", "relu", "leaky_relu", "prelu", "rrelu", "elu", "softmax",
          "log_softmax", "softmin",
          "hardtanh", "relu6", "hardsigmoid", "hardswish", "hardshrink", "softshrink",
          "threshold", "softsign",
          "silu", "tanh", "selu", "celu", "mish", "tanhshrink",
          "softplus", "logsigmoid", "gelu", "squareplus",
          "glu", "reglu", "geglu", "swiglu"}


def test_readme_op_table_lists_every_activation():
    """The README's op table (generated from the registry) has a row per
    public activation and no other."""
    import pathlib
    import re
    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = text[text.index("<!-- op table"):text.index("<!-- end of op table -->")]
    assert set(re.findall(r"^\| `(\w+)` \|", table, re.M)) == set(fastact.ACTIVATIONS)
    import importlib.util
    spec = importlib.util.spec_from_file_location("fastact_build", pathlib.Path(__file__)
                                                  .resolve().parents[1] / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert build.op_table() in table, "the op table is stale: run `python build.py --generate`"


def test_package_surface():
    assert set(fastact.ACTIVATIONS) == FROZEN
    assert len(fastact.ACTIVATIONS) == len(FROZEN)
    for name in ("backends", "use_backend", "set_num_threads", "get_num_threads",
                 "BackendUnavailable", "FastactWarning"):
        assert name in fastact.__all__ and hasattr(fastact, name)
    assert issubclass(fastact.BackendUnavailable, Exception)
    assert issubclass(fastact.FastactWarning, UserWarning)
    for a in fastact.ACTIVATIONS:
        assert callable(getattr(fastact, a)) and callable(getattr(fastact, a + "_backward"))


def test_positional_parameters_work():
    x = np.array([-2.0, 3.0])
    np.testing.assert_array_equal(fastact.leaky_relu(x, 0.5), [-1.0, 3.0])
    np.testing.assert_allclose(fastact.elu_backward(np.ones(2), x, 2.0),
                               [2.0 * np.exp(-2.0), 1.0], rtol=4e-16)
    np.testing.assert_array_equal(fastact.rrelu(x, 0.2, 0.4), [-0.6000000000000001, 3.0])


def test_generated_signatures_follow_the_registry():
    """Each generated function has the registry's parameters, defaults and
    keyword-only flags, then from_output= (backwards offering it), out=,
    backend=, stream= (keyword-only)."""
    import inspect

    from fastact._registry import REGISTRY, REQUIRED
    for spec in REGISTRY.values():
        if spec.kind != "elementwise" or not spec.public:
            continue
        for pass_, arrays in (("forward", ["x"]), ("backward", ["grad", spec.saves])):
            name = spec.api_name + ("" if pass_ == "forward" else "_backward")
            params = list(inspect.signature(getattr(fastact, name)).parameters.values())
            api = spec.api_of(pass_)
            # from_output (keyword-only) where the registry offers the backward from y
            y = ["from_output"] if pass_ == "backward" and spec.from_output else []
            assert [p.name for p in params] == arrays + [p.name for p in api] + y + [
                "out", "backend", "stream"], name
            if y:
                assert params[-4].kind == params[-4].KEYWORD_ONLY and params[-4].default is False
                assert "from_output" in getattr(fastact, name).__doc__
            for p, q in zip(params[len(arrays):], api):
                assert p.default == (inspect.Parameter.empty if q.default is REQUIRED
                                     else q.default), (name, q.name)
                assert (p.kind == p.KEYWORD_ONLY) == q.kw_only, (name, q.name)
            assert all(p.kind == p.KEYWORD_ONLY for p in params[-3:])
            doc = getattr(fastact, name).__doc__
            assert ".. math::" in doc and "Arguments:" in doc and ">>>" in doc, name
