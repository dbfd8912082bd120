"""Public entry points :func:`conv` and :func:`conv_transpose`: plan, then execute.

Each call plans from its arrays' shapes and dtypes (:mod:`deconv_core.plan`: every rule checked
and the parameters canonicalised once, before any allocation) and executes the plan, which brings
the arrays to the kernels' form, runs the route the dispatcher picked and restores the caller's
layout and dtype. A call with the same shapes, dtypes and parameters as an earlier one reuses its
plan (at most ``PLAN_CACHE_SIZE`` kept). docs/semantics.md states the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np

from deconv_core.errors import InvalidArgumentError
from deconv_core.plan import (
    DATA_FORMATS,
    WEIGHT_FORMATS,
    Plan,
    execute,
    plan_conv,
    plan_conv_transpose,
)
from deconv_core.plan_cache import PlanCache

__all__ = ["DATA_FORMATS", "WEIGHT_FORMATS", "conv", "conv_transpose"]

IntOrSeq = int | Sequence[int]
Padding = int | Sequence[int] | Sequence[tuple[int, int]] | str


#: Plans kept for repeated calls with the same shapes, dtypes and parameters (a layer called
#: again and again): a plan is immutable, and planning costs about 0.1 ms of Python per call
#: (0.3-0.5 ms after an idle pause).
PLAN_CACHE_SIZE = 256
_PLANS = PlanCache(PLAN_CACHE_SIZE)


def clear_plan_cache() -> None:
    """Forget every kept plan (tests that patch the dispatcher plan afresh)."""
    _PLANS.clear()


def _typed(value: Any) -> Any:
    """``value`` with the type of every element beside it, so that ``True``, ``1`` and ``1.0``
    (equal, with one hash) make different cache keys: the planner may accept one and not the
    others."""
    if isinstance(value, tuple):
        return (tuple, tuple(_typed(v) for v in value))
    return (type(value), value)


def _plan(planner: Callable[..., Plan], **kwargs: Any) -> Plan:
    """``planner(**kwargs)``, from the cache when every argument is hashable (lists are not:
    those calls are planned afresh). Errors are raised again on every call, never cached."""
    # the thread budget too: a plan's workspace bound counts per-thread buffers
    key = (numba.get_num_threads(), *sorted((k, _typed(v)) for k, v in kwargs.items()))
    try:
        hash(key)
    except TypeError:
        return planner(**kwargs)
    key = (planner, *key)
    plan = _PLANS.get(key)
    if plan is None:
        plan = planner(**kwargs)
        _PLANS.put(key, plan)
    return plan


def _as_array(op: str, name: str, value: Any) -> np.ndarray:
    """``value`` as an ndarray (no copy for arrays); the planner judges its dtype."""
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{op}: {name} is not an array: {exc}") from exc


def _arrays(op: str, x: Any, weight: Any, bias: Any) -> tuple[Any, ...]:
    xa = _as_array(op, "input", x)
    wa = _as_array(op, "weight", weight)
    ba = None if bias is None else _as_array(op, "bias", bias)
    shapes = dict(
        input_shape=xa.shape,
        weight_shape=wa.shape,
        bias_shape=None if ba is None else ba.shape,
        dtype=xa.dtype,
        weight_dtype=wa.dtype,
        bias_dtype=None if ba is None else ba.dtype,
    )
    return xa, wa, ba, shapes


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
    padding_mode: str = "zeros",
) -> np.ndarray:
    """N-d convolution (cross-correlation with padding), ranks 1-3, plus bias.

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
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
        How the padded border is filled (PyTorch's ``padding_mode``): zeros, the mirror image
        without the edge (each pad < the input size), the edge value, or the other end of the
        axis (each pad <= the input size).

    Returns
    -------
    ndarray
        ``(N, C_out, *out)`` in the layout and dtype of ``x`` (N may be 0), with
        ``out = (n + pb + pa - dilation*(k-1) - 1)//stride + 1`` per axis.

    Raises
    ------
    InvalidArgumentError
        A parameter or shape breaks a rule (also a ValueError).
    UnsupportedDtypeError
        Not float32/float64/float16/bfloat16, or mixed dtypes (also a TypeError).
    """
    xa, wa, ba, shapes = _arrays("conv", x, weight, bias)
    plan = _plan(
        plan_conv,
        **shapes,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        data_format=data_format,
        weight_format=weight_format,
        padding_mode=padding_mode,
    )
    return execute(plan, xa, wa, ba)


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
    convention: str = "default",
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
        Extra size of each axis; with explicit padding each must be < max(stride, dilation),
        with "valid" or "same" < stride (Keras's definition; "same_lower" needs an ONNX
        convention).
    output_shape : sequence of int, optional
        Spatial output sizes (TF/ONNX style), instead of output_padding (ONNX conventions take
        both); must lie in the legal range of the padding mode and convention.
    groups : int
        Number of channel groups; must divide C_in and C_out.
    data_format : {"channels_first", "channels_last"}
    weight_format : {"torch", "tf"}
    convention : {"default", "keras", "onnx", "onnxruntime"}
        Whose rules turn padding, output_padding and output_shape into the output window:
        "default" (PyTorch for explicit pads, TensorFlow and Keras for the named modes), Keras
        layers, the ONNX reference implementation, or onnxruntime (docs/semantics.md,
        "Conventions").

    Returns
    -------
    ndarray
        ``(N, C_out, *out)`` in the layout and dtype of ``x`` (N may be 0).

    Raises
    ------
    InvalidArgumentError
        A parameter or shape breaks a rule (also a ValueError).
    UnsupportedDtypeError
        Not float32/float64/float16/bfloat16, or mixed dtypes (also a TypeError).
    """
    xa, wa, ba, shapes = _arrays("conv_transpose", x, weight, bias)
    plan = _plan(
        plan_conv_transpose,
        **shapes,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        output_shape=output_shape,
        dilation=dilation,
        groups=groups,
        data_format=data_format,
        weight_format=weight_format,
        convention=convention,
    )
    return execute(plan, xa, wa, ba)
