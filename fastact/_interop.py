"""Array kinds other than NumPy's, answered in their own kind.

The public layer computes on NumPy arrays (and CUDA device arrays).  This
module stands in front of it for three more kinds of host array:

* PyTorch CPU tensors: viewed with ``Tensor.numpy()`` and the result handed
  back with ``torch.from_numpy``, both without a copy.  A tensor that
  requires grad is refused (fastact records no autograd history: the caller
  detaches, knowingly).
* xarray DataArrays: computed on their NumPy data, returned as a DataArray
  with the dimensions, coordinates, attributes and name of the input (the
  gated units drop the coordinates of the halved dimension); ``axis=`` may
  be a dimension name.
* NumPy masked arrays: the mask is kept.  Elementwise results are masked
  where an input is; the softmax family leaves masked entries out of their
  rows (``-inf`` to softmax and log_softmax, ``+inf`` to softmin) and their
  gradients are 0 there; PReLU's weight gradient sums the unmasked elements
  only.  The gated units refuse masked input (a mask on one half would gate
  the other): TypeError.

torch and xarray are never imported here: an object is recognised by the
module of its type, so that they stay optional and ``import fastact`` costs
nothing for them.
"""
from __future__ import annotations

import sys

import numpy as np

from ._registry import REGISTRY


def _kind(a):
    """"torch", "xarray", "masked", "dask" or None (NumPy, lists, scalars, device
    arrays)."""
    t = type(a)
    if t is np.ndarray or t is float or t is int:
        return None
    for c in t.__mro__:
        m = c.__module__
        if m == "torch" and c.__name__ == "Tensor":
            return "torch"
        if m.startswith("xarray.") and c.__name__ == "DataArray":
            return "xarray"
        if m.startswith("dask.array") and c.__name__ == "Array":
            return "dask"          # fastact._dask's
    ma = sys.modules.get("numpy.ma")
    if ma is not None and isinstance(a, ma.MaskedArray):
        return "masked"
    return None


def foreign(op, named, out=None):
    """The one foreign kind among the arrays ``named`` (pairs of name and
    value) and ``out``, or None.  Refuses tensors that require grad (also
    CUDA ones, which the device path takes) and a mix of foreign kinds."""
    found = None
    for name, a in (*named, ("out", out)):
        k = _kind(a)
        if k is None:
            continue
        if k == "torch":
            if a.requires_grad:
                raise TypeError(
                    f"fastact.{op}: {name} is a tensor that requires grad; fastact computes "
                    f"outside autograd and records no graph, so pass {name}.detach() (and "
                    "call the matching *_backward function yourself for the gradient)")
            if a.device.type != "cpu":
                continue                 # a CUDA tensor: the device path's
        if found is not None and k != found[0]:
            raise TypeError(f"fastact.{op}: cannot mix a {_NAMES[found[0]]} ({found[1]}) "
                            f"with a {_NAMES[k]} ({name})")
        found = found or (k, name)
    return None if found is None else found[0]


_NAMES = {"torch": "PyTorch tensor", "xarray": "xarray DataArray", "masked": "masked array",
          "dask": "dask array"}


def _torch_numpy(op, name, t):
    torch = sys.modules["torch"]
    if t.dtype == torch.bfloat16:         # NumPy has no bfloat16: ml_dtypes' view of the bits
        import ml_dtypes
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    try:
        return t.numpy()
    except (TypeError, RuntimeError) as e:
        raise TypeError(f"fastact.{op}: {name} (a tensor of dtype {t.dtype}) has no NumPy "
                        f"view: {e}; supported dtypes are float32 and float64") from None


def _unwrap(op, kind, name, a):
    """The NumPy view of a foreign array (a masked array's data)."""
    if _kind(a) != kind:
        return a
    if kind == "torch":
        return _torch_numpy(op, name, a)
    if kind == "xarray":
        return a.values
    return np.ma.getdata(a)


def axis_of(op, axis, named):
    """``axis`` as an integer where it is a dimension name of the first
    DataArray among ``named``."""
    if not isinstance(axis, str):
        return axis
    for _, a in named:
        if _kind(a) == "xarray":
            if axis not in a.dims:
                raise ValueError(f"fastact.{op}: axis {axis!r} is not a dimension of "
                                 f"the input (dimensions {tuple(a.dims)})")
            return a.dims.index(axis)
    raise TypeError(f"fastact.{op}: axis may be a dimension name only for an xarray "
                    f"DataArray input; got axis={axis!r}")


def _mask_of(arrays):
    """The union of the masks of ``arrays`` (None where none is masked)."""
    mask = None
    for a in arrays:
        if _kind(a) == "masked":
            m = np.ma.getmaskarray(a)
            mask = m if mask is None else mask | m
    return mask


def _fill(a, mask, value):
    """The data of ``a`` with ``value`` where ``mask`` (None: nothing masked)."""
    d = np.asarray(np.ma.getdata(a))
    if mask is None:
        return d
    res = np.where(mask, value, d)
    return res.astype(d.dtype) if d.dtype.kind == "f" else res


def _wrap(kind, res, template, mask=None, out=None, zero_masked=False):
    """``res`` (a NumPy array) in ``kind``: ``out`` itself where given
    (its data written already), else a new object like ``template``."""
    if kind == "masked":
        if zero_masked and mask is not None:
            np.copyto(np.ma.getdata(res) if out is None else np.ma.getdata(out), 0, where=mask)
        if out is not None:
            if _kind(out) == "masked":
                out.mask = False if mask is None else mask
            return out
        return np.ma.MaskedArray(res, mask=False if mask is None else mask)
    if out is not None:
        return out
    if kind == "torch":
        torch = sys.modules["torch"]
        if res.dtype.name == "bfloat16":
            return torch.from_numpy(res.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(res)
    xr = sys.modules["xarray"]
    if _kind(template) != "xarray":
        return xr.DataArray(res)
    if template.shape == res.shape:
        return template.copy(data=res)
    # a halved dimension (the gated units): its coordinates no longer apply
    dims = template.dims
    changed = {d for d, n, m in zip(dims, template.shape, res.shape) if n != m}
    coords = {k: v for k, v in template.coords.items() if not changed & set(v.dims)}
    return xr.DataArray(res, dims=dims, coords=coords, attrs=template.attrs,
                        name=template.name)


def _check_masked_out(op, kind, out, name="out"):
    if kind == "masked" and out is not None and _kind(out) != "masked":
        raise TypeError(f"fastact.{op}: the input is a masked array, so {name} must be one "
                        f"too (a {type(out).__name__} would drop the mask)")


def _same_dims(op, named):
    dims = [(n, a.dims) for n, a in named if _kind(a) == "xarray"]
    for n, d in dims[1:]:
        if d != dims[0][1]:
            raise ValueError(f"fastact.{op}: {n} has dimensions {d} but {dims[0][0]} has "
                             f"{dims[0][1]}; fastact does not transpose or align DataArrays")


def elementwise(op, kind, named, out, run):
    """An elementwise call (or the softmax family's, with ``rows`` its
    registry name) on foreign arrays: ``run(arrays, out)`` computes on
    NumPy arrays."""
    _check_masked_out(op, kind, out)
    _same_dims(op, named)
    arrays = [_unwrap(op, kind, n, a) for n, a in named]
    res = run(arrays, None if out is None else _unwrap(op, kind, "out", out))
    return _wrap(kind, res, named[0][1], _mask_of(a for _, a in named), out)


def rows(op, kind, name, pass_, named, out, run):
    """The softmax family on foreign arrays: masked entries left out of
    their rows (filled with what makes their share 0), gradients 0 there."""
    if kind != "masked":
        return elementwise(op, kind, named, out, run)
    _check_masked_out(op, kind, out)
    row = REGISTRY[name].row
    if pass_ == "forward":
        fills = (np.inf if row.negate else -np.inf,)
    else:
        fills = (0.0, -np.inf if row.log else 0.0)      # grad, then y
    # every array filled where any is masked: a gradient masked through y alone
    # stays out of the row's sums too
    mask = _mask_of(a for _, a in named)
    arrays = [_fill(a, mask, f) for (_, a), f in zip(named, fills)]
    res = run(arrays, None if out is None else np.ma.getdata(out))
    return _wrap(kind, res, None, mask, out, zero_masked=pass_ != "forward")


def gated(op, kind, named, out, run):
    if kind == "masked":
        raise TypeError(f"fastact.{op}: masked arrays are not supported by the gated units "
                        "(a masked element of one half would gate an unmasked one); fill "
                        "the masked entries first (x.filled(0)) or pass x.data")
    _check_masked_out(op, kind, out)
    arrays = [_unwrap(op, kind, n, a) for n, a in named]
    res = run(arrays, None if out is None else _unwrap(op, kind, "out", out))
    return _wrap(kind, res, named[-1][1], out=out)


def prelu(op, kind, named, out, run):
    """PReLU (``named``: x, weight) or its backward (grad, x, weight; ``out``
    a pair or None): masked elements' gradients are 0 and stay out of the
    weight gradient."""
    backward = len(named) == 3
    *data, (wname, weight) = named
    if kind == "masked" and _kind(weight) == "masked":
        raise TypeError(f"fastact.{op}: weight is a masked array; a masked slope has no "
                        "meaning (fill it first)")
    outs = (out if isinstance(out, tuple) and len(out) == 2 else (out, None)) if backward \
        else (out,)
    _check_masked_out(op, kind, outs[0], "out[0]" if backward else "out")
    _same_dims(op, data)
    mask = _mask_of(a for _, a in data)
    if backward and mask is not None:        # grad and x 0 where either is masked
        data = [(n, _fill(a, mask, 0.0)) for n, a in data]
    arrays = [_unwrap(op, kind, n, a) for n, a in data]
    w = _unwrap(op, kind, wname, weight)
    plain = tuple(None if o is None else _unwrap(op, kind, "out", o) for o in outs)
    res = run(arrays + [w], plain if backward else plain[0])
    if not backward:
        return _wrap(kind, res, data[0][1], mask, out)
    gx = _wrap(kind, res[0], data[1][1], mask, outs[0], zero_masked=True)
    if outs[1] is not None:
        return gx, outs[1]
    gw = res[1]
    if _kind(weight) == kind or kind == "torch":
        gw = _wrap(kind, gw, weight)
    return gx, gw
