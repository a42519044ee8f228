"""fastact: fast, trustworthy activation-function kernels for NumPy and CUDA arrays.

Every activation has a forward and a backward function; see the docstrings
for the formula and the derivative convention of each.  Backends: ``numpy``
(the reference), ``numba`` (parallel CPU), ``c`` (SIMD C via cffi) and
``cuda`` (numba.cuda); :func:`backends` tells which ones load here.

Importing fastact compiles nothing: kernels are compiled on first use and
cached on disk.
"""
from ._api import (elu, elu_backward, leaky_relu, leaky_relu_backward, prelu,
                   prelu_backward, relu, relu_backward, rrelu, rrelu_backward,
                   sigmoid, sigmoid_backward, softmax, softmax_backward)
from ._dispatch import BackendUnavailable, use_backend
from ._threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

ACTIVATIONS = ("sigmoid", "relu", "leaky_relu", "prelu", "rrelu", "elu", "softmax")


def backends():
    """For each backend: ``{"available": bool, "reason": str | None, ...}``.

    >>> import fastact
    >>> fastact.backends()["numpy"]["available"]
    True
    """
    from ._dispatch import status
    return status()


__all__ = [
    "ACTIVATIONS", "BackendUnavailable", "backends", "elu", "elu_backward",
    "get_num_threads", "leaky_relu", "leaky_relu_backward", "prelu", "prelu_backward",
    "relu", "relu_backward", "rrelu", "rrelu_backward", "set_num_threads", "sigmoid",
    "sigmoid_backward", "softmax", "softmax_backward", "use_backend",
]
