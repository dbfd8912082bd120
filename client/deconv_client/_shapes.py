"""The shape of a call's result, from its request metadata alone, by the service's formulas.

The client needs the result's size before it sends anything: a result too large for one message
must be asked for over the chunked RPC, since neither side can deliver it unary. This module does
only the arithmetic of the convention table in ``deconv/v1/deconv.proto`` (``L = (n-1)*s +
d*(k-1) + 1`` and the padding rules, each convention's window by ``_windows``, the core's own
copy); it checks no other rule, so a request the server will reject may get a meaningless shape.
It answers None when the shapes cannot be read at all (ranks that do not match, per-axis lists of
the wrong length, a stride or dilation below 1) or the convention has no size for them; the
caller then treats the size as unknown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from deconv import windows as _windows
from deconv import wire
from deconv.v1 import deconv_pb2 as pb

__all__ = ["result_nbytes", "result_shape", "transpose_windows"]

#: Per-axis padding: a mode name, or one (before, after) pair per spatial axis.
Pads = str | list[tuple[int, int]]


def _axes(values: Sequence[int], rank: int, default: int) -> list[int] | None:
    """A repeated per-axis field: empty = default, one value = every axis (None: wrong length)."""
    items = [int(v) for v in values]
    if not items:
        return [default] * rank
    if len(items) == 1:
        return items * rank
    return items if len(items) == rank else None


def _pads(request: Any, rank: int) -> Pads | None:
    which = request.WhichOneof("padding")
    if which is None or (which == "padding_mode" and not request.padding_mode):
        return [(0, 0)] * rank  # unset, or PADDING_MODE_UNSPECIFIED: zero padding
    if which == "padding_mode":
        # None: a value this client does not know
        return wire.PADDING_MODE_NAMES.get(request.padding_mode)
    before = _axes(request.explicit_padding.before, rank, 0)
    after = _axes(request.explicit_padding.after, rank, 0)
    if before is None or after is None:
        return None
    return list(zip(before, after, strict=True))


def _conv_size(n: int, k: int, s: int, d: int, pads: Pads, axis: int) -> int:
    if pads in ("same", "same_lower"):
        return -(-n // s)
    before, after = (0, 0) if isinstance(pads, str) else pads[axis]
    padded = n + before + after - (d * (k - 1) + 1)
    return padded // s + 1 if padded >= 0 else 0




def transpose_windows(
    axes: list[tuple[int, int, int, int]],
    pads: Pads,
    op_pads: list[int],
    requested: list[int] | None,
    convention: str,
) -> list[tuple[int, int]]:
    """``(crop_before, out_size)`` per axis by the convention (``_windows.window``).

    Parameters
    ----------
    axes : list of (n, k, s, d)
    pads : str or list of (int, int)
    op_pads : list of int
    requested : list of int or None
        output_shape per axis.
    convention : str

    Returns
    -------
    list of (int, int)

    Raises
    ------
    deconv_client._windows.WindowError
        A size the convention does not define.
    """
    return [
        _windows.window(
            n, k, s, d, pads if isinstance(pads, str) else pads[i], op_pads[i],
            None if requested is None else requested[i], convention, i,
        )
        for i, (n, k, s, d) in enumerate(axes)
    ]


def result_shape(request: Any) -> tuple[int, ...] | None:
    """Shape of the result of a ``ConvRequest`` or ``TransposedConvRequest``, in its layout.

    Parameters
    ----------
    request : deconv.v1.ConvRequest or deconv.v1.TransposedConvRequest
        Only the metadata is read (tensor shapes, formats, parameters), never tensor data.

    Returns
    -------
    tuple of int or None
        (N, C_out, *spatial) or, with channels-last data, (N, *spatial, C_out); None when the
        shapes cannot be read.
    """
    x = [int(v) for v in request.input.shape]
    w = [int(v) for v in request.weight.shape]
    if len(x) not in (3, 4, 5) or len(w) != len(x):
        return None
    rank = len(x) - 2
    last = request.data_format == pb.DATA_FORMAT_CHANNELS_LAST
    tf = request.weight_format == pb.WEIGHT_FORMAT_TF
    spatial = x[1:-1] if last else x[2:]
    kernel = w[:-2] if tf else w[2:]
    stride = _axes(request.stride, rank, 1)
    dilation = _axes(request.dilation, rank, 1)
    pads = _pads(request, rank)
    if stride is None or dilation is None or pads is None or min(stride + dilation) < 1:
        return None
    axes = list(zip(spatial, kernel, stride, dilation, strict=True))
    if isinstance(request, pb.ConvRequest):
        c_out = w[-1] if tf else w[0]
        out = [_conv_size(n, k, s, d, pads, i) for i, (n, k, s, d) in enumerate(axes)]
    else:
        c_out = (w[-2] if tf else w[1]) * max(int(request.groups), 1)
        requested = _axes(request.output_shape, rank, 0) if request.output_shape else None
        op_pads = _axes(request.output_padding, rank, 0)
        if op_pads is None or (request.output_shape and requested is None):
            return None
        convention = wire.CONVENTION_NAMES.get(request.convention, "default")
        try:
            windows = transpose_windows(axes, pads, op_pads, requested, convention)
        except _windows.WindowError:
            return None  # the server rejects it
        out = [size for _, size in windows]
    return (x[0], *out, c_out) if last else (x[0], c_out, *out)


def result_nbytes(request: Any, itemsize: int) -> int | None:
    """Bytes of the result's data (``itemsize`` per element), or None when the shape is unknown."""
    shape = result_shape(request)
    if shape is None:
        return None
    return math.prod(max(v, 0) for v in shape) * itemsize
