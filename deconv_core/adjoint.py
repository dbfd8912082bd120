"""C^T of a planned call: the adjoint op that maps a forward output back onto its input.

If ``conv`` with some weight and parameters multiplies by a matrix C, ``conv_transpose`` with
the same weight, stride, dilation, groups and layouts multiplies by ``C^T`` once its window is
chosen to land exactly on the conv input (and the other way round). The weight array passes
through unchanged: the conv weight layout of one op is the transposed-conv weight layout of the
other, in both weight formats. The adjoints run as planned calls of the public
:func:`~deconv_core.execute`, so on the same routes as any forward call; they are the input
gradients of :mod:`deconv_core.backward` and the ``C^T`` of :func:`deconv_core.deconvolve`.

Two conventions need a step around the planned call:

* a conv with a fill ``padding_mode`` ("reflect", "replicate", "circular") is ``C0 P`` with
  ``P`` the fill padding (an index map) and ``C0`` an unpadded conv, so its adjoint is
  ``P^T C0^T``: the transposed conv onto the padded input, then every border element added
  back onto the input element it copies (:func:`fold_fill`);
* a transposed-conv window may reach outside the full result (output_padding, a large output
  size, or a window starting before it): those rows depend on no input and are sliced off
  before the conv.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from deconv_core.errors import DeconvError
from deconv_core.plan import Plan, execute, plan_conv, plan_conv_transpose

__all__ = [
    "Adjoint",
    "conv_adjoint",
    "conv_read_pads",
    "fill_pad",
    "fold_fill",
    "padding_mode",
    "planned",
    "transpose_adjoint",
]

#: ``adjoint(g, weight)``: C^T applied to ``g`` (the forward output's shape and layout).
Adjoint = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: conv's fill modes as numpy.pad modes (PyTorch's names and meaning).
_NUMPY_FILLS = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def planned(fn: str, make: Callable[..., Plan], **kwargs: Any) -> Plan:
    """Plan a call; its errors keep their class and gain the caller's name ``fn``."""
    try:
        return make(**kwargs)
    except DeconvError as exc:
        raise type(exc)(f"{fn}: {exc}") from exc


def padding_mode(plan: Plan) -> str:
    """The conv's fill of its padded border ("zeros" for transposed convs)."""
    return getattr(plan, "padding_mode", "zeros")


def _axes(plan: Plan) -> list[tuple[int, ...]]:
    """Per spatial axis at the plan's rank: ``(n, out, k, s, d, offset)``."""
    g = plan.geometry
    rows = zip(g.in_size, g.out_size, g.kernel, g.stride, g.dilation, g.offset, strict=True)
    return list(rows)[3 - g.rank :]


def _spatial(plan: Plan) -> list[int]:
    """The caller's axis numbers of the spatial axes."""
    nd = len(plan.input_shape)
    return [plan.layout.x_axis(2 + a, nd) for a in range(plan.geometry.rank)]


def conv_read_pads(plan: Plan) -> list[tuple[int, int]]:
    """Per-axis ``(before, after)`` pads a conv plan reads (after: only as far as taps reach)."""
    return [
        (pb, max(0, (o - 1) * s + d * (k - 1) + 1 - n - pb)) for n, o, k, s, d, pb in _axes(plan)
    ]


def fill_pad(x: np.ndarray, pads: Sequence[tuple[int, int]], mode: str,
             axes: Sequence[int]) -> np.ndarray:
    """``x`` padded on ``axes`` by ``pads`` with a conv fill mode ("zeros" pads zeros)."""
    widths = [(0, 0)] * x.ndim
    for axis, pair in zip(axes, pads, strict=True):
        widths[axis] = pair
    if mode == "zeros":
        return np.pad(x, widths)
    return np.pad(x, widths, mode=_NUMPY_FILLS[mode])


def fold_fill(gp: np.ndarray, pads: Sequence[tuple[int, int]], mode: str,
              axes: Sequence[int]) -> np.ndarray:
    """The adjoint of :func:`fill_pad`: each border element added onto the one it copies."""
    out = gp
    for axis, (pb, pa) in zip(axes, pads, strict=True):
        n = out.shape[axis] - pb - pa
        core = np.take(out, np.arange(pb, pb + n), axis=axis)
        if mode != "zeros" and (pb or pa):
            source = np.pad(np.arange(n), (pb, pa), mode=_NUMPY_FILLS[mode])
            for p in itertools.chain(range(pb), range(pb + n, pb + n + pa)):
                dst = [slice(None)] * out.ndim
                src = [slice(None)] * out.ndim
                dst[axis], src[axis] = int(source[p]), p
                core[tuple(dst)] += out[tuple(src)]
        out = core
    return out


def _conv_transpose_onto(fn: str, plan: Plan, sizes: list[int], starts: list[int]) -> Plan:
    """The transposed conv from a conv plan's output onto lengths ``sizes`` starting at the
    conv's read positions ``starts`` (its pad before, or 0 on a pre-padded input)."""
    pads, extra = [], []
    for (_, o, k, s, d, _), n, start in zip(_axes(plan), sizes, starts, strict=True):
        after = (o - 1) * s + d * (k - 1) + 1 - start - n  # < 0: output_padding, always < s
        pads.append((start, max(0, after)))
        extra.append(max(0, -after))
    g = plan.geometry
    return planned(
        fn,
        plan_conv_transpose,
        input_shape=plan.output_shape,
        weight_shape=plan.weight_shape,
        dtype=plan.dtype,
        stride=g.stride[3 - g.rank :],
        padding=pads,
        output_padding=extra,
        dilation=g.dilation[3 - g.rank :],
        groups=g.groups,
        data_format=plan.layout.data_format,
        weight_format=plan.layout.weight_format,
    )


def conv_adjoint(fn: str, plan: Plan) -> Adjoint:
    """C^T of a conv plan: ``adjoint(g, weight)`` has the conv input's shape and layout.

    With zero padding, one transposed conv whose crop before is the conv's pad before and whose
    window has exactly the input's length. With a fill mode, the transposed conv onto the
    padded input, then :func:`fold_fill`.
    """
    mode = padding_mode(plan)
    sizes = [n for n, *_ in _axes(plan)]
    if mode == "zeros":
        ct = _conv_transpose_onto(fn, plan, sizes, [pb for *_, pb in _axes(plan)])
        return lambda g, w: execute(ct, g, w)
    pads = conv_read_pads(plan)
    padded = [n + pb + pa for n, (pb, pa) in zip(sizes, pads, strict=True)]
    ct = _conv_transpose_onto(fn, plan, padded, [0] * len(sizes))
    axes = _spatial(plan)
    return lambda g, w: fold_fill(execute(ct, g, w), pads, mode, axes)


def transpose_adjoint(fn: str, plan: Plan) -> Adjoint:
    """C^T of a conv_transpose plan (a conv): ``adjoint(g, weight)`` has its input's shape.

    Output rows outside the full result ``[0, L)`` (before it: a negative crop; after it:
    output_padding or a large output size) are reached by no input and are sliced off; the
    conv then pads by the window's start before and by what the window lacks of L after. When
    no output row is reached by any input, the adjoint is zero.
    """
    keep: list[slice] = []
    pads: list[tuple[int, int]] = []
    for n, m, k, s, d, crop in _axes(plan):
        full = (n - 1) * s + d * (k - 1) + 1
        lead, stop = max(0, -crop), min(m, full - crop)
        if stop <= lead:
            shape = plan.input_shape
            return lambda g, w: np.zeros(shape, dtype=g.dtype)
        keep.append(slice(lead, stop))
        start = crop + lead
        pads.append((start, full - start - (stop - lead)))
    index: list[slice] = [slice(None)] * len(plan.output_shape)
    shape = list(plan.output_shape)
    for axis, part in zip(_spatial(plan), keep, strict=True):
        index[axis] = part
        shape[axis] = part.stop - part.start
    g = plan.geometry
    conv = planned(
        fn,
        plan_conv,
        input_shape=tuple(shape),
        weight_shape=plan.weight_shape,
        dtype=plan.dtype,
        stride=g.stride[3 - g.rank :],
        padding=pads,
        dilation=g.dilation[3 - g.rank :],
        groups=g.groups,
        data_format=plan.layout.data_format,
        weight_format=plan.layout.weight_format,
    )
    window = tuple(index)
    return lambda gy, w: execute(conv, gy[window], w)
