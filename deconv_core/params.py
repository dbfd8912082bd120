"""Parameter canonicalisation: every user-facing form becomes one frozen geometry, once.

The planner (:mod:`deconv_core.plan`) calls :func:`conv_geometry` or :func:`transpose_geometry`
once per call, from shapes alone. They check every rule of docs/semantics.md (before any
allocation) and return a :class:`Geometry` with per-axis tuples padded to three spatial axes, so
the kernels handle ranks 1-3 with one code path. Error messages name the op, the parameter, the
rule and the value (a bounded preview of it).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deconv import windows as _windows

from deconv_core import shapes
from deconv_core.errors import InvalidArgumentError
from deconv_core.layout import DEFAULT_LAYOUT, Layout
from deconv_core.values import (
    MAX_VALUE,
    PADDING_MODES,
    as_int,
    canonical_padding,
    check_fill,
    per_axis,
    preview,
)

__all__ = [
    "PADDING_MODES",
    "Geometry",
    "Layout",
    "conv_geometry",
    "per_axis",
    "transpose_geometry",
]

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class Geometry:
    """Canonical description of one (transposed) convolution, spatial axes padded to three.

    For ``conv``, output index ``o`` reads input index ``o*stride + t*dilation - offset``; for
    ``conv_transpose``, input index ``i`` scatters to output index ``i*stride + t*dilation -
    offset``. ``offset`` is the pad before (conv) or the crop before (transposed conv).
    """

    op: str
    rank: int
    batch: int
    c_in: int
    c_out: int
    groups: int
    in_size: Triple
    kernel: Triple
    stride: Triple
    dilation: Triple
    offset: Triple
    out_size: Triple

    @property
    def c_in_per_group(self) -> int:
        """Input channels per group."""
        return self.c_in // self.groups

    @property
    def c_out_per_group(self) -> int:
        """Output channels per group."""
        return self.c_out // self.groups

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Channels-first shape of the result, at the caller's rank."""
        return (self.batch, self.c_out, *self.out_size[3 - self.rank :])

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the dense computation (input side for transposed conv)."""
        k = self.kernel[0] * self.kernel[1] * self.kernel[2]
        if self.op == "conv":
            n = self.out_size[0] * self.out_size[1] * self.out_size[2]
        else:
            n = self.in_size[0] * self.in_size[1] * self.in_size[2]
        return self.batch * n * k * self.c_out_per_group * self.c_in


def _pad3(values: Sequence[int], fill: int) -> Triple:
    padded = (fill,) * (3 - len(values)) + tuple(values)
    return (padded[0], padded[1], padded[2])


def _shape(op: str, what: str, shape: Any) -> tuple[int, ...]:
    """A caller's shape as a tuple of ints, its length checked before it is read."""
    if not isinstance(shape, Sequence) or isinstance(shape, str | bytes):
        raise InvalidArgumentError(
            f"{op}: {what} shape {preview(shape)} must be a sequence of ints"
        )
    if len(shape) > 5:
        raise InvalidArgumentError(
            f"{op}: {what} must have 3, 4 or 5 dims (batch, channels, 1-3 spatial axes), got "
            f"{len(shape)} dims with shape {preview(shape)}"
        )
    sizes = []
    for axis, size in enumerate(shape):
        if isinstance(size, bool):
            size = None
        try:
            sizes.append(operator.index(size))
        except TypeError:
            raise InvalidArgumentError(
                f"{op}: {what} shape {preview(shape)} must hold ints (axis {axis})"
            ) from None
    return tuple(sizes)


@dataclass(frozen=True)
class _Common:
    rank: int
    batch: int
    c_in: int
    c_out: int
    groups: int
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]


def _common(
    op: str,
    x_given: Any,
    w_given: Any,
    b_given: Any,
    stride: Any,
    dilation: Any,
    groups: Any,
    layout: Layout,
) -> _Common:
    """Check ranks, channels, groups and sizes shared by both ops, on the caller's shapes.

    This is the one place a call's parameters are canonicalised (the planner calls it once).
    """
    x_user = _shape(op, "input", x_given)
    w_user = _shape(op, "weight", w_given)
    nd = len(x_user)
    if nd not in (3, 4, 5):
        raise InvalidArgumentError(
            f"{op}: input must have 3, 4 or 5 dims (batch, channels, 1-3 spatial axes), "
            f"got {nd} dims with shape {x_user}"
        )
    rank = nd - 2
    if len(w_user) != nd:
        raise InvalidArgumentError(
            f"{op}: weight must have {nd} dims like the input (rank {rank}), got shape {w_user}"
        )
    bias_shape = None
    if b_given is not None:
        bias_shape = _shape(op, "bias", b_given)
        if len(bias_shape) != 1:
            raise InvalidArgumentError(
                f"{op}: bias must be 1-D with one value per output channel, got shape "
                f"{bias_shape}"
            )
    for what, shape in (("input", x_user), ("weight", w_user)):
        for axis, size in enumerate(shape):
            if size < 1 and not (what == "input" and axis == 0 and size == 0):  # empty batch
                raise InvalidArgumentError(
                    f"{op}: {what} size {size} on axis {axis} must be >= 1 (shape {shape}; "
                    f"only the batch may be 0)"
                )
            if size > MAX_VALUE:
                raise InvalidArgumentError(
                    f"{op}: {what} size {size} on axis {axis} must be <= {MAX_VALUE}"
                )
    x_shape = tuple(x_user[layout.x_axis(j, nd)] for j in range(nd))
    w_shape = tuple(w_user[layout.w_axis(j, nd)] for j in range(nd))
    w0, w1 = layout.w_axis(0, nd), layout.w_axis(1, nd)
    where = f"weight layout {layout.weight_layout(op)}, input shape {x_user}"
    g = as_int(op, "groups", groups, 1)
    batch, c_in = x_shape[0], x_shape[1]
    if c_in % g:
        raise InvalidArgumentError(f"{op}: groups={g} must divide input channels C_in={c_in}")
    if op == "conv":
        c_out = w_shape[0]
        if c_out % g:
            raise InvalidArgumentError(
                f"{op}: groups={g} must divide output channels C_out={c_out} (weight.shape[{w0}])"
            )
        if w_shape[1] * g != c_in:
            raise InvalidArgumentError(
                f"{op}: weight.shape[{w1}]={w_shape[1]} must be C_in/groups={c_in}/{g}"
                f"={c_in // g} ({where})"
            )
    else:
        if w_shape[0] != c_in:
            raise InvalidArgumentError(
                f"{op}: weight.shape[{w0}]={w_shape[0]} must equal input channels "
                f"C_in={c_in} ({where})"
            )
        c_out = w_shape[1] * g
    if bias_shape is not None and bias_shape != (c_out,):
        raise InvalidArgumentError(
            f"{op}: bias shape {bias_shape} must be (C_out,)=({c_out},), one value per output "
            f"channel"
        )
    return _Common(
        rank=rank,
        batch=batch,
        c_in=c_in,
        c_out=c_out,
        groups=g,
        in_size=tuple(x_shape[2:]),
        kernel=tuple(w_shape[2:]),
        stride=per_axis(op, "stride", stride, rank, 1),
        dilation=per_axis(op, "dilation", dilation, rank, 1),
    )


def _geometry(op: str, c: _Common, offset: Sequence[int], out: Sequence[int]) -> Geometry:
    for i, size in enumerate(out):
        if size > MAX_VALUE:
            raise InvalidArgumentError(
                f"{op}: output size {size} on spatial axis {i} must be <= {MAX_VALUE}"
            )
        if size < 1:
            raise InvalidArgumentError(
                f"{op}: output size {size} on spatial axis {i} must be >= 1 (input size "
                f"{c.in_size[i]}, kernel {c.kernel[i]}, stride {c.stride[i]}, dilation "
                f"{c.dilation[i]}): reduce padding or enlarge the input"
            )
    return Geometry(
        op=op,
        rank=c.rank,
        batch=c.batch,
        c_in=c.c_in,
        c_out=c.c_out,
        groups=c.groups,
        in_size=_pad3(c.in_size, 1),
        kernel=_pad3(c.kernel, 1),
        stride=_pad3(c.stride, 1),
        dilation=_pad3(c.dilation, 1),
        offset=_pad3(offset, 0),
        out_size=_pad3(out, 1),
    )


def conv_geometry(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    bias_shape: tuple[int, ...] | None,
    *,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    layout: Layout = DEFAULT_LAYOUT,
    padding_mode: str = "zeros",
) -> Geometry:
    """Canonical geometry of ``conv`` from the caller's shapes and layout.

    ``padding_mode`` (a checked name of ``values.PADDING_FILLS``) adds its size rule on the pads.

    Returns
    -------
    Geometry
        With ``offset`` the pad before each axis.
    """
    op = "conv"
    c = _common(op, x_shape, w_shape, bias_shape, stride, dilation, groups, layout)
    pads = canonical_padding(op, padding, c.rank)
    if isinstance(pads, str):
        if pads == "valid":
            pairs = [(0, 0)] * c.rank
        else:
            pairs = [
                shapes.same_conv_pads(n, k, s, d, lower=pads == "same_lower")
                for n, k, s, d in zip(c.in_size, c.kernel, c.stride, c.dilation, strict=True)
            ]
    else:
        pairs = pads
    check_fill(padding_mode, pairs, c.in_size)
    out = [
        shapes.conv_out_size(n, k, s, d, pb, pa)
        for n, k, s, d, (pb, pa) in zip(
            c.in_size, c.kernel, c.stride, c.dilation, pairs, strict=True
        )
    ]
    return _geometry(op, c, [pb for pb, _ in pairs], out)


def transpose_geometry(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    bias_shape: tuple[int, ...] | None,
    *,
    stride: Any,
    padding: Any,
    output_padding: Any,
    output_shape: Any,
    dilation: Any,
    groups: Any,
    layout: Layout = DEFAULT_LAYOUT,
    convention: str = "default",
) -> Geometry:
    """Canonical geometry of ``conv_transpose`` from the caller's shapes and layout.

    ``convention`` (a checked name of ``_windows.CONVENTIONS``) picks the framework whose rules
    turn the padding, output_padding and output_shape into each axis's window.

    Returns
    -------
    Geometry
        With ``offset`` the crop before each axis of the full scatter result (negative when the
        window starts before it, which only ``convention="onnx"`` allows).
    """
    op = "conv_transpose"
    c = _common(op, x_shape, w_shape, bias_shape, stride, dilation, groups, layout)
    pads = canonical_padding(op, padding, c.rank)
    op_pad = per_axis(op, "output_padding", output_padding, c.rank, 0)
    onnx = convention in ("onnx", "onnxruntime")  # ONNX defines output_padding with output_shape
    if output_shape is not None:
        if any(op_pad) and not onnx:
            raise InvalidArgumentError(
                f"{op}: give output_padding={preview(output_padding)} or output_shape="
                f"{preview(output_shape)}, not both (output_shape fixes the output size)"
            )
        out_req: list[int | None] = list(per_axis(op, "output_shape", output_shape, c.rank, 1))
    else:
        out_req = [None] * c.rank
    try:
        axes = [
            _windows.window(
                c.in_size[axis],
                c.kernel[axis],
                c.stride[axis],
                c.dilation[axis],
                pads if isinstance(pads, str) else pads[axis],
                op_pad[axis],
                out_req[axis],
                convention,
                axis,
            )
            for axis in range(c.rank)
        ]
    except _windows.WindowError as exc:
        raise InvalidArgumentError(f"{op}: {exc}") from None
    for crop, _ in axes:
        if crop > MAX_VALUE or -crop > MAX_VALUE:
            raise InvalidArgumentError(f"{op}: crop {crop} must be within +-{MAX_VALUE}")
    return _geometry(op, c, [crop for crop, _ in axes], [out for _, out in axes])
