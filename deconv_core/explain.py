"""``explain``: what a conv or transposed conv computes per axis, in every framework's words.

The question that started the project ("why is my PyTorch port of a TF SAME transposed conv one
pixel off?") answered for any call: the full-result length, the crop window and the output size
of each spatial axis, then the parameters that give the same result in PyTorch, TensorFlow,
Keras and ONNX, or, where one cannot express it, what to do instead. The call is planned first
(every rule checked), so an explanation exists exactly for the calls ``conv``/``conv_transpose``
accept. The framework maths is ``deconv.ports`` (shared with the ``deconv explain`` CLI).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deconv.ports import Axis, Explanation, explanation

from deconv_core.errors import InvalidArgumentError
from deconv_core.plan import plan_conv, plan_conv_transpose

__all__ = ["Explanation", "explain"]


def explain(
    op: str,
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    *,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    output_shape: Any = None,
    dilation: Any = 1,
    groups: int = 1,
    data_format: str = "channels_first",
    weight_format: str = "torch",
    convention: str = "default",
    padding_mode: str = "zeros",
) -> Explanation:
    """Explain one call of ``conv`` or ``conv_transpose`` from its shapes and parameters.

    Parameters
    ----------
    op : {"conv_transpose", "conv"}
    input_shape, weight_shape : sequence of int
        The arrays' shapes, in the layouts ``data_format`` and ``weight_format`` name.
    stride, padding, output_padding, output_shape, dilation, groups, data_format, weight_format,
    convention, padding_mode
        As for ``deconv_core.conv_transpose`` (``output_padding``, ``output_shape``,
        ``convention``) or ``deconv_core.conv`` (``padding_mode``); the other op's extra
        parameters must keep their defaults.

    Returns
    -------
    Explanation
        ``str()`` of it is the report; ``as_dict()`` holds every axis's numbers and each
        framework's parameters (None where the framework cannot express the call).

    Raises
    ------
    InvalidArgumentError
        An unknown op, or any rule ``conv``/``conv_transpose`` would reject the call for.
    """
    common = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                  data_format=data_format, weight_format=weight_format)
    if op == "conv":
        if output_padding not in (0, None) or output_shape is not None or convention != "default":
            raise InvalidArgumentError(
                "explain: output_padding, output_shape and convention belong to conv_transpose; "
                "conv takes padding and padding_mode"
            )
        plan = plan_conv(input_shape, weight_shape, padding_mode=padding_mode, **common)
    elif op == "conv_transpose":
        if padding_mode != "zeros":
            raise InvalidArgumentError(
                f"explain: padding_mode={padding_mode!r} belongs to conv; conv_transpose has "
                f"only zeros (like PyTorch's ConvTranspose)"
            )
        plan = plan_conv_transpose(
            input_shape, weight_shape, output_padding=output_padding,
            output_shape=output_shape, convention=convention, **common,
        )
    else:
        raise InvalidArgumentError(f"explain: op={op!r} must be 'conv' or 'conv_transpose'")
    g = plan.geometry
    lo = 3 - g.rank
    axes = []
    for i in range(lo, 3):
        n, k, s, d, size, off = (g.in_size[i], g.kernel[i], g.stride[i], g.dilation[i],
                                 g.out_size[i], g.offset[i])
        if op == "conv":
            after = max(0, (size - 1) * s + d * (k - 1) + 1 - n - off)
            axes.append(Axis(n, k, s, d, size, before=off, after=after))
        else:
            axes.append(Axis(n, k, s, d, size, crop=off))
    return explanation(op, axes, plan.convention, plan.padding_mode)
