"""A caller's parameter values as canonical per-axis tuples, with bounded error messages.

Callers may pass an int, one int per spatial axis, or (for padding) ``(before, after)`` pairs, a
mode string or :class:`ExplicitPadding`. Every length is checked before a caller's sequence is
copied, no value is allowed beyond :data:`MAX_VALUE` (so index arithmetic in the kernels cannot
overflow 64-bit integers), and no message quotes more than a few of a caller's values.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deconv_core.errors import InvalidArgumentError

__all__ = [
    "MAX_VALUE",
    "PADDING_FILLS",
    "PADDING_MODES",
    "ExplicitPadding",
    "as_int",
    "canonical_padding",
    "check_fill",
    "per_axis",
    "preview",
]

#: Named padding modes.
PADDING_MODES = ("valid", "same", "same_lower")
#: conv's ``padding_mode`` values (PyTorch's names): how the padded border is filled.
PADDING_FILLS = ("zeros", "reflect", "replicate", "circular")
#: Largest stride, dilation, padding, output size or extent the core accepts (2**31 - 1): sums of
#: products of two such values stay far inside a signed 64-bit integer.
MAX_VALUE = 2**31 - 1
#: How many of a caller's values a message quotes at most.
_PREVIEW_ITEMS = 8
_PREVIEW_CHARS = 120


def preview(value: Any) -> str:
    """A short ``repr`` of a caller's value: at most a few items and characters.

    Parameters
    ----------
    value : object
        Anything a caller passed.

    Returns
    -------
    str
        ``repr(value)`` for short values; for long sequences the first items and a count.
    """
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        n = len(value)
        if n > _PREVIEW_ITEMS:
            head = ", ".join(preview(v) for v in value[:_PREVIEW_ITEMS])
            return f"[{head}, ... {n} values in all]"
        text = repr(value) if isinstance(value, list | tuple) else repr(list(value))
    else:
        text = repr(value)
    if len(text) > _PREVIEW_CHARS:
        text = text[: _PREVIEW_CHARS - 3] + "..."
    return text


def as_int(op: str, name: str, value: Any, minimum: int) -> int:
    """One integer parameter in ``[minimum, MAX_VALUE]``.

    Parameters
    ----------
    op, name : str
        Operation and parameter names used in error messages.
    value : int-like
        The caller's value (bools are refused).
    minimum : int
        Smallest legal value.

    Returns
    -------
    int

    Raises
    ------
    InvalidArgumentError
        Not an integer, or out of range.
    """
    if isinstance(value, bool):
        raise InvalidArgumentError(f"{op}: {name}={value!r} must be an integer, not a bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise InvalidArgumentError(
            f"{op}: {name}={preview(value)} must be an integer (got {type(value).__name__})"
        ) from None
    if v < minimum:
        raise InvalidArgumentError(f"{op}: {name}={v} must be >= {minimum}")
    if v > MAX_VALUE:
        raise InvalidArgumentError(f"{op}: {name}={v} must be <= {MAX_VALUE}")
    return v


def _is_seq(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def per_axis(op: str, name: str, value: Any, rank: int, minimum: int) -> tuple[int, ...]:
    """Expand an int, or one int per spatial axis, into a ``rank``-tuple of ints ``>= minimum``.

    A sequence of one value stands for every axis (as in PyTorch, and as the wire's repeated
    fields read).

    Parameters
    ----------
    op, name : str
        Operation and parameter names used in error messages.
    value : int or sequence of int
        The caller's value.
    rank : int
        Number of spatial axes.
    minimum : int
        Smallest legal value of each entry.

    Returns
    -------
    tuple of int
        One value per spatial axis.

    Raises
    ------
    InvalidArgumentError
        A wrong count (checked before the sequence is read), a non-integer, or a value out of
        range.
    """
    if not _is_seq(value):
        return (as_int(op, name, value, minimum),) * rank
    if len(value) == 1 and rank != 1:
        return (as_int(op, name, value[0], minimum),) * rank
    if len(value) != rank:
        raise InvalidArgumentError(
            f"{op}: {name} must be one int or a sequence of {rank} ints (one per spatial "
            f"axis), got {len(value)}: {preview(value)}"
        )
    return tuple(as_int(op, f"{name}[{i}]", v, minimum) for i, v in enumerate(value))


@dataclass(frozen=True)
class ExplicitPadding:
    """Per-side padding as two lists, the wire's (and ONNX ``pads``') form.

    Attributes
    ----------
    before, after : sequence of int
        Padding (conv) or crop (transposed conv) at the start and at the end of each spatial
        axis; each has one value (every axis) or one value per spatial axis.
    """

    before: Sequence[int]
    after: Sequence[int]


def _mode(op: str, padding: str) -> str:
    mode = padding.lower()
    if mode not in PADDING_MODES:
        raise InvalidArgumentError(
            f"{op}: padding={preview(padding)} is not a padding mode; use an int, per-axis "
            f"ints, (before, after) pairs, or one of {', '.join(map(repr, PADDING_MODES))}"
        )
    return mode


def _pairs(op: str, padding: Sequence[Any], rank: int) -> list[tuple[int, int]]:
    if len(padding) != rank:
        raise InvalidArgumentError(
            f"{op}: padding must have one (before, after) pair per spatial axis ({rank}), "
            f"got {len(padding)}: {preview(padding)}"
        )
    pairs = []
    for i, pair in enumerate(padding):
        if not _is_seq(pair) or len(pair) != 2:
            raise InvalidArgumentError(
                f"{op}: padding[{i}]={preview(pair)} must be a (before, after) pair of ints"
            )
        pairs.append(
            (as_int(op, f"padding[{i}][0]", pair[0], 0), as_int(op, f"padding[{i}][1]", pair[1], 0))
        )
    return pairs


def canonical_padding(op: str, padding: Any, rank: int) -> list[tuple[int, int]] | str:
    """Normalise ``padding`` to a mode string or one ``(before, after)`` pair per axis.

    Parameters
    ----------
    op : str
        Operation name used in error messages.
    padding : int, sequence of int, sequence of pairs, str or ExplicitPadding
        The caller's value.
    rank : int
        Number of spatial axes.

    Returns
    -------
    str or list of (int, int)

    Raises
    ------
    InvalidArgumentError
        An unknown mode, a wrong count, or a negative or non-integer value.
    """
    if isinstance(padding, str):
        return _mode(op, padding)
    if isinstance(padding, ExplicitPadding):
        before, after = padding.before, padding.after
        if len(before) != len(after):
            raise InvalidArgumentError(
                f"{op}: explicit padding has {len(before)} 'before' and {len(after)} 'after' "
                f"values; give both one value, or both one value per spatial axis"
            )
        b = per_axis(op, "padding.before", before, rank, 0)
        a = per_axis(op, "padding.after", after, rank, 0)
        return list(zip(b, a, strict=True))
    if _is_seq(padding) and any(_is_seq(p) for p in padding[: rank + 1]):
        return _pairs(op, padding, rank)
    return [(p, p) for p in per_axis(op, "padding", padding, rank, 0)]


def check_fill(mode: str, pairs: Sequence[tuple[int, int]], in_size: Sequence[int]) -> None:
    """Check PyTorch's size rule of a fill mode on every axis's ``(before, after)`` pads.

    Raises
    ------
    InvalidArgumentError
        reflect with a pad >= the input size, or circular with a pad > the input size.
    """
    if mode not in ("reflect", "circular"):
        return
    for axis, ((pb, pa), n) in enumerate(zip(pairs, in_size, strict=True)):
        big = max(pb, pa)
        if mode == "reflect" and big >= n:
            raise InvalidArgumentError(
                f"conv: padding_mode='reflect' needs each pad < the input size (PyTorch's rule): "
                f"spatial axis {axis} has padding ({pb}, {pa}) and input size {n}"
            )
        if mode == "circular" and big > n:
            raise InvalidArgumentError(
                f"conv: padding_mode='circular' needs each pad <= the input size (it wraps "
                f"around once at most, PyTorch's rule): spatial axis {axis} has padding "
                f"({pb}, {pa}) and input size {n}"
            )
