"""Activation families of the catalogue, one module each; importing this
package registers their entries (after the classic ones of
:mod:`fastact._registry`, in the order below: the C backend's kernel ids
follow it).  An op is one entry in one of these modules (a :class:`Spec`
with its scalar formulas, reference, docs, bounds and PyTorch counterpart)
plus its C formulas in ``c_src/formulas_<family>.inc``; then
``python build.py --generate`` lists it for C (``c_src/ops.h``)."""
from . import clamps, exponential, special, gated  # noqa: F401
