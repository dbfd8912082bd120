"""Gradients of :func:`~deconv_core.conv` and :func:`~deconv_core.conv_transpose` (C^T at work).

If ``conv`` multiplies its input by a matrix C, its input gradient is ``C^T grad_output``: a
transposed convolution with the same weight and parameters, the window chosen so that it lands
on the forward input's size. The input gradient of a transposed convolution is, the other way
round, a convolution. Both are planned by :mod:`deconv_core.adjoint` and executed by the public
plan/execute machinery, so they run on the same fast routes as the forward ops.

The weight gradient is a correlation of the forward input with the output gradient, summed over
the batch, computed by BLAS GEMMs (:mod:`deconv_core._correlate`).
The bias gradient is the output gradient summed over every axis but the channels.

docs/operators.md states the identities and the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from deconv_core._correlate import correlate, window_into
from deconv_core.adjoint import (
    conv_adjoint,
    conv_read_pads,
    fill_pad,
    padding_mode,
    planned,
    transpose_adjoint,
)
from deconv_core.errors import InvalidArgumentError, UnsupportedDtypeError
from deconv_core.plan import Plan, plan_conv, plan_conv_transpose

__all__ = ["NEEDS", "Gradients", "conv_backward", "conv_transpose_backward"]

IntOrSeq = int | Sequence[int]
Padding = Any
#: The gradients ``need`` may name.
NEEDS = ("input", "weight", "bias")


class Gradients(NamedTuple):
    """The gradients of one forward call; a field is None when it was not asked for.

    Attributes
    ----------
    grad_input : ndarray or None
        Same shape, layout and dtype as the forward input.
    grad_weight : ndarray or None
        Same shape (weight format) and dtype as the forward weight.
    grad_bias : ndarray or None
        ``(C_out,)``, the gradient of the bias the forward call added (or could have added).
    """

    grad_input: np.ndarray | None
    grad_weight: np.ndarray | None
    grad_bias: np.ndarray | None


def _as_array(fn: str, name: str, value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{fn}: {name} is not an array: {exc}") from exc


def _needs(fn: str, need: Any) -> frozenset[str]:
    """``need`` as a set of names; a bare string names one gradient."""
    items: Iterable[Any] = (need,) if isinstance(need, str) else need
    try:
        names = list(items)
    except TypeError:
        raise InvalidArgumentError(
            f"{fn}: need={need!r} must be a sequence of names among {', '.join(map(repr, NEEDS))}"
        ) from None
    bad = [n for n in names if n not in NEEDS]
    if bad:
        raise InvalidArgumentError(
            f"{fn}: need={need!r} names {bad[0]!r}; each entry must be one of "
            f"{', '.join(map(repr, NEEDS))}"
        )
    if not names:
        raise InvalidArgumentError(
            f"{fn}: need={need!r} is empty; name at least one of {', '.join(map(repr, NEEDS))}"
        )
    return frozenset(names)


def _check_grad_output(fn: str, plan: Plan, g: np.ndarray, x: np.ndarray) -> None:
    if g.dtype != x.dtype:
        raise UnsupportedDtypeError(
            f"{fn}: grad_output dtype {g.dtype} must match the input dtype {x.dtype} (the "
            f"forward output has the input's dtype)"
        )
    if tuple(g.shape) != plan.output_shape:
        raise InvalidArgumentError(
            f"{fn}: grad_output shape {tuple(g.shape)} must equal the forward output shape "
            f"{plan.output_shape} ({plan.op} of input {plan.input_shape} with weight "
            f"{plan.weight_shape})"
        )


def _logical(plan: Plan, a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Data array ``a`` channels-first with three spatial axes, in ``dtype`` (a view if it can)."""
    if plan.layout.data_format == "channels_last":
        a = np.moveaxis(a, -1, 1)
    a = a.astype(dtype, copy=False)
    return a.reshape(*a.shape[:2], *((1,) * (3 - plan.geometry.rank)), *a.shape[2:])


def _to_user_weight(plan: Plan, w3: np.ndarray) -> np.ndarray:
    """A torch-layout weight with three spatial axes in the plan's rank and weight format."""
    w = w3.reshape(*w3.shape[:2], *w3.shape[5 - plan.geometry.rank :])
    if plan.layout.weight_format == "tf":
        r = w.ndim - 2
        w = w.transpose(*range(2, 2 + r), 1, 0)
    return np.ascontiguousarray(w)


def _bias_grad(plan: Plan, g: np.ndarray) -> np.ndarray:
    axes = tuple(i for i in range(g.ndim) if i != plan.layout.x_axis(1, g.ndim))
    return g.sum(axis=axes, dtype=np.float64).astype(g.dtype)


def _conv_weight_grad(plan: Plan, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    geom = plan.geometry
    dtype = plan.compute_dtype
    if geom.batch == 0:
        return np.zeros(plan.weight_shape, dtype=x.dtype)
    # The padded input (zeros or the fill), only as far as the taps reach: (out-1)*s + ek.
    x3 = _logical(plan, x, dtype)
    pads = [(0, 0)] * (3 - geom.rank) + conv_read_pads(plan)
    xp = fill_pad(x3, pads, padding_mode(plan), [2, 3, 4])
    reach = tuple(
        (o - 1) * s + d * (k - 1) + 1
        for o, s, d, k in zip(geom.out_size, geom.stride, geom.dilation, geom.kernel, strict=True)
    )
    if xp.shape[2:] != reach:  # pads after that no tap reads
        xp = window_into(xp, reach, (0, 0, 0))
    gw = correlate(
        xp, _logical(plan, g, dtype), geom.groups, geom.kernel, geom.stride, geom.dilation
    )
    return _to_user_weight(plan, gw).astype(x.dtype, copy=False)


def _transpose_weight_grad(plan: Plan, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    geom = plan.geometry
    dtype = plan.compute_dtype
    if geom.batch == 0:
        return np.zeros(plan.weight_shape, dtype=x.dtype)
    # The output gradient placed back into the uncropped ("full") result of length L (the
    # window may start before it or end after it: those rows are clipped).
    full = tuple(
        (n - 1) * s + d * (k - 1) + 1
        for n, s, d, k in zip(geom.in_size, geom.stride, geom.dilation, geom.kernel, strict=True)
    )
    gfull = window_into(_logical(plan, g, dtype), full, geom.offset)
    gw = correlate(
        gfull, _logical(plan, x, dtype), geom.groups, geom.kernel, geom.stride, geom.dilation
    )
    return _to_user_weight(plan, gw).astype(x.dtype, copy=False)


def _backward(
    fn: str,
    planner: Any,
    adjoint: Any,
    weight_grad: Any,
    arrays: tuple[Any, Any, Any, Any],
    **params: Any,
) -> Gradients:
    """The gradients asked for of one forward op: plan it once, then each gradient from it."""
    grad_output, x, weight, need = arrays
    needs = _needs(fn, need)
    g, xa, wa = (_as_array(fn, n, v) for n, v in (("grad_output", grad_output), ("input", x),
                                                   ("weight", weight)))
    plan = planned(
        fn,
        planner,
        input_shape=xa.shape,
        weight_shape=wa.shape,
        dtype=xa.dtype,
        weight_dtype=wa.dtype,
        **params,
    )
    _check_grad_output(fn, plan, g, xa)
    grad_input = grad_weight = grad_bias = None
    if "input" in needs:
        grad_input = adjoint(fn, plan)(g, wa)
    if "weight" in needs:
        grad_weight = weight_grad(plan, xa, g)
    if "bias" in needs:
        grad_bias = _bias_grad(plan, g)
    return Gradients(grad_input, grad_weight, grad_bias)


def conv_backward(
    grad_output: Any,
    x: Any,
    weight: Any,
    *,
    stride: IntOrSeq = 1,
    padding: Padding = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    data_format: str = "channels_first",
    weight_format: str = "torch",
    padding_mode: str = "zeros",
    need: Sequence[str] | str = NEEDS,
) -> Gradients:
    """Gradients of :func:`deconv_core.conv` with respect to its input, weight and bias.

    For ``y = conv(x, weight, bias, **params)`` and the gradient ``grad_output`` of a scalar loss
    with respect to ``y``: ``grad_input = C^T grad_output`` (a transposed convolution with the
    same weight and parameters, sized back to ``x``), ``grad_weight[o, c, t] = sum over batch and
    output positions j of grad_output[., o, j] * xp[., c, j*stride + t*dilation]`` (``xp`` the
    zero-padded input, groups respected) and ``grad_bias[o] = sum of grad_output[., o, ...]``.
    These are what ``torch.autograd`` computes for ``torch.nn.functional.conv{1,2,3}d``.

    Parameters
    ----------
    grad_output : ndarray
        Gradient of the forward output: its shape (``plan.output_shape`` of the forward call)
        and dtype (the input's).
    x : ndarray
        The forward input (its values are read only for the weight gradient).
    weight : ndarray
        The forward weight, ``(C_out, C_in/groups, *k)`` ("torch") or
        ``(*k, C_in/groups, C_out)`` ("tf").
    stride, padding, dilation, groups, data_format, weight_format, padding_mode
        The forward call's parameters, as for :func:`deconv_core.conv` (every padding form and
        fill: the gradient that reaches a reflected, replicated or wrapped border element is
        added to the input element it copies).
    need : sequence of {"input", "weight", "bias"} or str
        Which gradients to compute; the others are returned as None.

    Returns
    -------
    Gradients
        ``(grad_input, grad_weight, grad_bias)``: the shapes, layouts and dtype of ``x``,
        ``weight`` and ``(C_out,)``.

    Raises
    ------
    InvalidArgumentError
        A parameter or shape breaks a rule of the forward op, ``grad_output`` does not have the
        forward output's shape, or ``need`` names something else.
    UnsupportedDtypeError
        Unsupported or mixed dtypes (``grad_output`` included).
    """
    return _backward(
        "conv_backward",
        plan_conv,
        conv_adjoint,
        _conv_weight_grad,
        (grad_output, x, weight, need),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        data_format=data_format,
        weight_format=weight_format,
        **({} if padding_mode == "zeros" else {"padding_mode": padding_mode}),
    )


def conv_transpose_backward(
    grad_output: Any,
    x: Any,
    weight: Any,
    *,
    stride: IntOrSeq = 1,
    padding: Padding = 0,
    output_padding: IntOrSeq = 0,
    output_shape: IntOrSeq | None = None,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    data_format: str = "channels_first",
    weight_format: str = "torch",
    convention: str = "default",
    need: Sequence[str] | str = NEEDS,
) -> Gradients:
    """Gradients of :func:`deconv_core.conv_transpose` with respect to its input, weight, bias.

    For ``y = conv_transpose(x, weight, bias, **params)`` (multiplication by ``C^T``):
    ``grad_input = C grad_output``, a convolution with the same weight and parameters;
    ``grad_weight[c, o, t] = sum over batch and input positions i of x[., c, i] *
    full[., o, i*stride + t*dilation]``, where ``full`` is ``grad_output`` put back at its place
    in the uncropped scatter result (zero elsewhere); ``grad_bias[o] = sum of
    grad_output[., o, ...]``. These are what ``torch.autograd`` computes for
    ``torch.nn.functional.conv_transpose{1,2,3}d``; output rows no input reaches (from
    output_padding or a large output_shape) get no input or weight gradient.

    Parameters
    ----------
    grad_output : ndarray
        Gradient of the forward output: its shape (``plan.output_shape`` of the forward call)
        and dtype (the input's).
    x : ndarray
        The forward input (its values are read only for the weight gradient).
    weight : ndarray
        The forward weight, ``(C_in, C_out/groups, *k)`` ("torch") or
        ``(*k, C_out/groups, C_in)`` ("tf").
    stride, padding, output_padding, output_shape, dilation, groups, data_format, weight_format
        The forward call's parameters, as for :func:`deconv_core.conv_transpose`.
    convention : str
        The forward call's window convention, as for :func:`deconv_core.conv_transpose`.
    need : sequence of {"input", "weight", "bias"} or str
        Which gradients to compute; the others are returned as None.

    Returns
    -------
    Gradients
        ``(grad_input, grad_weight, grad_bias)``: the shapes, layouts and dtype of ``x``,
        ``weight`` and ``(C_out,)``.

    Raises
    ------
    InvalidArgumentError
        A parameter or shape breaks a rule of the forward op, ``grad_output`` does not have the
        forward output's shape, or ``need`` names something else.
    UnsupportedDtypeError
        Unsupported or mixed dtypes (``grad_output`` included).
    """
    return _backward(
        "conv_transpose_backward",
        plan_conv_transpose,
        transpose_adjoint,
        _transpose_weight_grad,
        (grad_output, x, weight, need),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        output_shape=output_shape,
        dilation=dilation,
        groups=groups,
        data_format=data_format,
        weight_format=weight_format,
        **({} if convention == "default" else {"convention": convention}),
    )
