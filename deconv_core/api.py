"""Public entry points: :func:`conv` and :func:`conv_transpose` (DESIGN.md section 3).

Each call checks dtypes and layouts, canonicalises its parameters once into a frozen
:class:`~deconv_core.params.Geometry` (every rule checked before any allocation), brings the
arrays to channels-first, torch-layout, three-spatial-axis, C-contiguous form, runs the route the
dispatcher picks, and restores the caller's layout and dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deconv_core import _engine
from deconv_core.errors import InvalidArgumentError, UnsupportedDtypeError
from deconv_core.params import Geometry, Layout, conv_geometry, transpose_geometry

__all__ = ["DATA_FORMATS", "WEIGHT_FORMATS", "conv", "conv_transpose"]

DATA_FORMATS = ("channels_first", "channels_last")
WEIGHT_FORMATS = ("torch", "tf")
_NATIVE = (np.dtype(np.float32), np.dtype(np.float64))
_WIDENED = {np.dtype(np.float16): np.dtype(np.float32)}

IntOrSeq = int | Sequence[int]
Padding = int | Sequence[int] | Sequence[tuple[int, int]] | str


def _as_array(op: str, name: str, value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"{op}: {name} is not an array: {exc}") from exc
    if arr.dtype.kind == "f" and not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))  # byte order only; same values
    if arr.dtype not in _NATIVE and arr.dtype not in _WIDENED:
        raise UnsupportedDtypeError(
            f"{op}: {name} dtype {arr.dtype} is not supported; use float32 or float64 "
            f"(float16 is computed in float32)"
        )
    return arr


def _check_choice(op: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(
            f"{op}: {name}={value!r} must be one of {', '.join(map(repr, choices))}"
        )
    return value


def _prepare(
    op: str,
    x: Any,
    weight: Any,
    bias: Any,
    data_format: str,
    weight_format: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.dtype]:
    """Check dtypes and formats; return channels-first data, torch-layout weight (views)."""
    _check_choice(op, "data_format", data_format, DATA_FORMATS)
    _check_choice(op, "weight_format", weight_format, WEIGHT_FORMATS)
    xa = _as_array(op, "input", x)
    wa = _as_array(op, "weight", weight)
    ba = None if bias is None else _as_array(op, "bias", bias)
    for name, arr in (("weight", wa), ("bias", ba)):
        if arr is not None and arr.dtype != xa.dtype:
            raise UnsupportedDtypeError(
                f"{op}: {name} dtype {arr.dtype} must match the input dtype {xa.dtype}; "
                f"cast one of them (mixed dtypes are not computed)"
            )
    if ba is not None and ba.ndim != 1:
        raise InvalidArgumentError(
            f"{op}: bias must be 1-D with one value per output channel, got shape {ba.shape}"
        )
    return xa, wa, ba, xa.dtype


def _to_logical(xa: np.ndarray, wa: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Views of the (already validated) arrays as channels-first data, torch-layout weight."""
    nd = xa.ndim
    xl = xa.transpose(*(layout.x_axis(j, nd) for j in range(nd)))
    wl = wa.transpose(*(layout.w_axis(j, nd) for j in range(nd)))
    return xl, wl


def _to_kernel(arr: np.ndarray, dtype: np.dtype, rank: int) -> np.ndarray:
    """C-contiguous, writable, compute dtype, three spatial axes (one kernel type per dtype)."""
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not out.flags.writeable:
        out = out.copy()
    return out.reshape(*out.shape[:2], *((1,) * (3 - rank)), *out.shape[2:])


def _compute(
    geom: Geometry,
    xa: np.ndarray,
    wa: np.ndarray,
    ba: np.ndarray | None,
    in_dtype: np.dtype,
    data_format: str,
) -> np.ndarray:
    dtype = _WIDENED.get(in_dtype, in_dtype)
    x3 = _to_kernel(xa, dtype, geom.rank)
    w3 = _to_kernel(wa, dtype, geom.rank)
    b = np.zeros(geom.c_out, dtype) if ba is None else np.array(ba, dtype=dtype)  # writable
    y = _engine.run(x3, w3, b, geom).reshape(geom.output_shape)
    if data_format == "channels_last":
        y = np.ascontiguousarray(np.moveaxis(y, 1, -1))
    return y.astype(in_dtype, copy=False)


def conv(
    x: Any,
    weight: Any,
    bias: Any = None,
    *,
    stride: IntOrSeq = 1,
    padding: Padding = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    data_format: str = "channels_first",
    weight_format: str = "torch",
) -> np.ndarray:
    """N-d convolution (cross-correlation with zero padding), ranks 1-3, plus bias.

    Parameters
    ----------
    x : ndarray
        Input, ``(N, C_in, *spatial)`` (or ``(N, *spatial, C_in)`` when channels_last).
    weight : ndarray
        ``(C_out, C_in/groups, *k)`` ("torch") or ``(*k, C_in/groups, C_out)`` ("tf").
    bias : ndarray, optional
        ``(C_out,)``, added to every output element of its channel.
    stride, dilation : int or sequence of int
        One value, or one per spatial axis; each >= 1.
    padding : int, sequence of int, sequence of (before, after), or str
        Zero padding per side, or "valid", "same" (odd pixel at the end), "same_lower".
    groups : int
        Number of channel groups; must divide C_in and C_out.
    data_format : {"channels_first", "channels_last"}
    weight_format : {"torch", "tf"}

    Returns
    -------
    ndarray
        ``(N, C_out, *out)`` in the layout and dtype of ``x``, with
        ``out = (n + pb + pa - dilation*(k-1) - 1)//stride + 1`` per axis.

    Raises
    ------
    InvalidArgumentError
        A parameter or shape breaks a rule (also a ValueError).
    UnsupportedDtypeError
        Not float16/32/64, or mixed dtypes (also a TypeError).
    """
    op = "conv"
    xa, wa, ba, dtype = _prepare(op, x, weight, bias, data_format, weight_format)
    layout = Layout(data_format, weight_format)
    geom = conv_geometry(
        xa.shape,
        wa.shape,
        None if ba is None else ba.shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        layout=layout,
    )
    return _compute(geom, *_to_logical(xa, wa, layout), ba, dtype, data_format)


def conv_transpose(
    x: Any,
    weight: Any,
    bias: Any = None,
    *,
    stride: IntOrSeq = 1,
    padding: Padding = 0,
    output_padding: IntOrSeq = 0,
    output_shape: Sequence[int] | int | None = None,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    data_format: str = "channels_first",
    weight_format: str = "torch",
) -> np.ndarray:
    """N-d transposed convolution (the adjoint of :func:`conv`), ranks 1-3, plus bias.

    The input scatters into the full result ``full[i*s + t*d] += x[i] * w[t]`` of length
    ``(n-1)*s + d*(k-1) + 1``; the output is a window of it chosen by the padding convention,
    and the bias is added afterwards to every output element of its channel.

    Parameters
    ----------
    x : ndarray
        Input, ``(N, C_in, *spatial)`` (or ``(N, *spatial, C_in)`` when channels_last).
    weight : ndarray
        ``(C_in, C_out/groups, *k)`` ("torch") or ``(*k, C_out/groups, C_in)`` ("tf").
    bias : ndarray, optional
        ``(C_out,)``, added after the transposed convolution.
    stride, dilation : int or sequence of int
        One value, or one per spatial axis; each >= 1.
    padding : int, sequence of int, sequence of (before, after), or str
        PyTorch-style crop per side, or "valid", "same" (TF SAME / ONNX SAME_UPPER),
        "same_lower" (ONNX SAME_LOWER).
    output_padding : int or sequence of int
        Extra size at the end of each axis; each must be < max(stride, dilation).
    output_shape : sequence of int, optional
        Spatial output sizes (TF/ONNX style), instead of output_padding; must lie in the legal
        range of the padding mode.
    groups : int
        Number of channel groups; must divide C_in and C_out.
    data_format : {"channels_first", "channels_last"}
    weight_format : {"torch", "tf"}

    Returns
    -------
    ndarray
        ``(N, C_out, *out)`` in the layout and dtype of ``x``.

    Raises
    ------
    InvalidArgumentError
        A parameter or shape breaks a rule (also a ValueError).
    UnsupportedDtypeError
        Not float16/32/64, or mixed dtypes (also a TypeError).
    """
    op = "conv_transpose"
    xa, wa, ba, dtype = _prepare(op, x, weight, bias, data_format, weight_format)
    layout = Layout(data_format, weight_format)
    geom = transpose_geometry(
        xa.shape,
        wa.shape,
        None if ba is None else ba.shape,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        output_shape=output_shape,
        dilation=dilation,
        groups=groups,
        layout=layout,
    )
    return _compute(geom, *_to_logical(xa, wa, layout), ba, dtype, data_format)
