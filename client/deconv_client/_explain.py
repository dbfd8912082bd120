"""``deconv explain`` without a server: a call's windows and framework equivalents, client side.

The client may not import deconv_core, so this module reads the call from shapes with the window
maths (``deconv.windows``) and the framework ports (``deconv.ports``) that the core uses too
(pure Python in the shared ``deconv`` package), and checks only what it needs to read the
shapes; ``deconv_core.explain`` plans the call and checks every rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deconv import ports as _ports
from deconv import windows as _windows

from deconv_client.errors import InvalidArgumentError

__all__ = ["explain"]


def _per_axis(name: str, value: Any, rank: int) -> list[int]:
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    if len(items) == 1:
        items = items * rank
    if len(items) != rank or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise InvalidArgumentError(f"explain: {name} must be one int or {rank} ints, got {value!r}")
    return items


def _pads(padding: Any, rank: int) -> str | list[tuple[int, int]]:
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in _windows.MODES:
            raise InvalidArgumentError(
                f"explain: padding={padding!r} is not a padding mode; use one of "
                f"{', '.join(map(repr, _windows.MODES))}"
            )
        return mode
    if isinstance(padding, Sequence) and any(isinstance(p, Sequence) for p in padding):
        if len(padding) != rank:
            raise InvalidArgumentError(f"explain: padding needs {rank} (before, after) pairs")
        return [(int(p[0]), int(p[1])) for p in padding]
    return [(p, p) for p in _per_axis("padding", padding, rank)]


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
    data_format: str = "channels_first",
    weight_format: str = "torch",
    convention: str = "default",
    padding_mode: str = "zeros",
) -> _ports.Explanation:
    """The explanation ``deconv_core.explain`` gives for the same call (see there).

    Raises
    ------
    InvalidArgumentError
        Shapes or parameters that cannot be read, or a size the convention does not define.
    """
    x, w = list(input_shape), list(weight_shape)
    if len(x) not in (3, 4, 5) or len(w) != len(x):
        raise InvalidArgumentError(
            f"explain: input and weight need 3, 4 or 5 dims alike, got {tuple(x)} and {tuple(w)}"
        )
    rank = len(x) - 2
    spatial = x[1:-1] if data_format == "channels_last" else x[2:]
    kernel = w[:-2] if weight_format == "tf" else w[2:]
    s = _per_axis("stride", stride, rank)
    d = _per_axis("dilation", dilation, rank)
    pads = _pads(padding, rank)
    geo = list(zip(spatial, kernel, s, d, strict=True))
    if min(spatial + kernel + s + d) < 1:
        raise InvalidArgumentError("explain: sizes, strides and dilations must be >= 1")
    axes = []
    if op == "conv":
        for i, (n, k, si, di) in enumerate(geo):
            ek = di * (k - 1) + 1
            if pads == "valid":
                pb, pa = 0, 0
            elif isinstance(pads, str):
                total = max(0, (-(-n // si) - 1) * si + ek - n)
                small, large = total // 2, total - total // 2
                pb, pa = (large, small) if pads == "same_lower" else (small, large)
            else:
                pb, pa = pads[i]
            size = (n + pb + pa - ek) // si + 1
            if size < 1:
                raise InvalidArgumentError(f"explain: output size {size} on spatial axis {i} < 1")
            after = max(0, (size - 1) * si + ek - n - pb)
            axes.append(_ports.Axis(n, k, si, di, size, before=pb, after=after))
        return _ports.explanation(op, axes, convention, padding_mode)
    if op != "conv_transpose":
        raise InvalidArgumentError(f"explain: op={op!r} must be 'conv' or 'conv_transpose'")
    ops = _per_axis("output_padding", output_padding, rank)
    outs = None if output_shape is None else _per_axis("output_shape", output_shape, rank)
    for i, (n, k, si, di) in enumerate(geo):
        try:
            crop, size = _windows.window(
                n, k, si, di, pads if isinstance(pads, str) else pads[i], ops[i],
                None if outs is None else outs[i], convention, i,
            )
        except _windows.WindowError as exc:
            raise InvalidArgumentError(f"explain: {exc}") from None
        if size < 1:
            raise InvalidArgumentError(f"explain: output size {size} on spatial axis {i} < 1")
        axes.append(_ports.Axis(n, k, si, di, size, crop=crop))
    return _ports.explanation(op, axes, convention, padding_mode)
