"""Per-axis window of a transposed convolution under each framework's convention: pure Python.

A transposed convolution's output is the window ``[crop, crop + size)`` of the full scatter
result of length ``L = (n-1)*s + d*(k-1) + 1`` (docs/semantics.md). Frameworks pick that window
from the same words (``padding``, ``output_padding``, ``output_shape``) by different rules;
:func:`window` applies one of :data:`CONVENTIONS`:

``"default"``
    PyTorch for explicit pads, TensorFlow for ``output_shape`` with a named mode, Keras for
    ``output_padding`` with "valid" or "same".
``"keras"``
    Keras 3 ``Conv*DTranspose`` (TensorFlow and JAX backends): as "default", except the default
    "valid" size ``n*s + max(ek - s, 0)`` and the sizes "same" accepts.
``"onnx"``
    The ONNX reference implementation (``onnx.reference``): pads from ``output_shape`` by the
    operator's formula, negative totals allowed (the window then starts before the full result).
``"onnxruntime"``
    onnxruntime's CPU kernel: the same formula with negative totals clamped to 0, pads ignored
    when ``output_shape`` is given, sizes bounded by ``L + s - 1``.

It lives in the shared ``deconv`` package because the core (which plans calls) and the client
(which sizes results and explains conventions without the core) both need it; like
``deconv.ports`` it imports nothing outside the standard library, validates nothing but the
convention's own rules, and raises :class:`WindowError` with a message that the caller prefixes
with its op name.
"""

from __future__ import annotations

__all__ = ["CONVENTIONS", "MODES", "WindowError", "effective_kernel", "full_length", "window"]

#: Framework conventions a transposed convolution's window can follow.
CONVENTIONS = ("default", "keras", "onnx", "onnxruntime")
#: Named padding modes.
MODES = ("valid", "same", "same_lower")

Pads = str | tuple[int, int]


class WindowError(ValueError):
    """A parameter the convention does not define; the message names it, its rule and value."""


def effective_kernel(k: int, d: int) -> int:
    """Extent ``d*(k-1) + 1`` of ``k`` taps spaced ``d`` apart."""
    return d * (k - 1) + 1


def full_length(n: int, k: int, s: int, d: int) -> int:
    """Length ``L = (n-1)*s + d*(k-1) + 1`` of the uncropped transposed-convolution result."""
    return (n - 1) * s + effective_kernel(k, d)


def _split(total: int, lower: bool) -> int:
    """Crop before of a total split by floor division: odd pixel after, or before if lower."""
    return total - total // 2 if lower else total // 2


def _check_range(axis: int, out: int, lo: int, hi: int, why: str) -> None:
    if not lo <= out <= hi:
        raise WindowError(f"output_shape[{axis}]={out} is outside the legal range {lo}..{hi} {why}")


def _op_below_stride(axis: int, op: int, s: int, why: str) -> None:
    if op >= s:
        raise WindowError(f"output_padding[{axis}]={op} must be < stride={s} {why}")


def _explicit(axis: int, L: int, s: int, d: int, pads: tuple[int, int], op: int,
              out: int | None, convention: str) -> tuple[int, int]:
    pb, pa = pads
    base = L - pb - pa
    if convention == "onnxruntime" and out is not None:
        if pb or pa:
            raise WindowError(
                f"padding[{axis}]=({pb}, {pa}) together with output_shape: onnxruntime ignores "
                f"pads when output_shape is given; pass padding=0, or convention='onnx'"
            )
        return _ort_sized(axis, L, s, op, out, lower=True)
    if convention in ("onnx", "onnxruntime"):
        if out is None:
            _op_below_stride(axis, op, s, f"under convention={convention!r}")
            return pb, base + op
        _check_range(axis, out, base, base + s - 1,
                     f"for this padding under convention='onnx' (the ONNX reference needs "
                     f"output_shape - {base} < stride={s}; output_padding is ignored)")
        return pb, out
    limit = max(s, d)
    if out is not None:
        _check_range(axis, out, base, base + limit - 1,
                     f"for this padding (output_padding = output_shape - {base} must be < "
                     f"max(stride, dilation)={limit})")
        return pb, out
    if op >= limit:
        raise WindowError(
            f"output_padding[{axis}]={op} must be < max(stride, dilation)={limit}"
        )
    return pb, base + op


def _ort_sized(axis: int, L: int, s: int, op: int, out: int, lower: bool) -> tuple[int, int]:
    """onnxruntime with output_shape: total ``max(0, L + op - out)``, sizes up to ``L + s - 1``."""
    _op_below_stride(axis, op, s, "under convention='onnxruntime'")
    _check_range(axis, out, 1, L + s - 1,
                 f"under convention='onnxruntime' (L + stride - 1 with L={L}, stride={s})")
    return _split(max(0, L + op - out), lower), out


def _named(axis: int, n: int, L: int, ek: int, s: int, mode: str, op: int,
           out: int | None, convention: str) -> tuple[int, int]:
    lower = mode == "same_lower"
    if convention == "onnx":
        _op_below_stride(axis, op, s, "under convention='onnx'")
        if mode == "valid":
            return _explicit(axis, L, s, 1, (0, 0), op, out, convention)
        size = n * s if out is None else out
        return _split(L + op - size, lower), size
    if convention == "onnxruntime":
        if mode == "valid" and out is None:
            return _explicit(axis, L, s, 1, (0, 0), op, out, convention)
        if out is None:
            _op_below_stride(axis, op, s, "under convention='onnxruntime'")
            total = max(0, L + op - n * s)
            return _split(total, lower), L + op - total
        return _ort_sized(axis, L, s, op, out, lower=mode != "same")
    keras = convention == "keras"
    if mode == "valid":
        if out is not None:
            _check_range(axis, out, L, L + s - 1,
                         f"of padding='valid' (L..L+stride-1 with L=(n-1)*stride+dilation*(k-1)"
                         f"+1, n={n}, stride={s})")
            return 0, out
        if op:
            _op_below_stride(axis, op, s, "with padding='valid' (Keras's rule)")
            return 0, L + op
        return 0, (L + max(s - ek, 0) if keras else L)
    if op:
        if lower:
            raise WindowError(
                f"output_padding[{axis}]={op} with padding='same_lower' is defined only by ONNX, "
                f"which crops differently from Keras's 'same'; pass convention='onnx' or "
                f"'onnxruntime', or choose the size with output_shape"
            )
        _op_below_stride(axis, op, s, "with padding='same' (Keras's rule)")
        size = (s * (n - 1)) + ek % 2 + op
    elif out is not None:
        lo = (n - 1) * s + (ek % 2 if keras and not lower else 1)
        rule = f"(n-1)*stride+{'ek%2' if lo != (n - 1) * s + 1 else '1'}..n*stride"
        _check_range(axis, out, lo, n * s, f"of padding={mode!r} ({rule}, n={n}, stride={s})")
        size = out
    else:
        size = n * s
    return _split(max(0, L - size), lower), size


def window(n: int, k: int, s: int, d: int, pads: Pads, op: int, out: int | None,
           convention: str = "default", axis: int = 0) -> tuple[int, int]:
    """``(crop_before, out_size)`` of one axis of a transposed convolution.

    Parameters
    ----------
    n, k, s, d : int
        Input length, kernel taps, stride and dilation of the axis (each >= 1).
    pads : str or (int, int)
        A mode of :data:`MODES`, or the explicit (before, after) crop, each >= 0.
    op : int
        output_padding of the axis, >= 0 (0 = none).
    out : int or None
        output_shape of the axis (>= 1), or None for the convention's default size.
    convention : str
        One of :data:`CONVENTIONS`.
    axis : int
        Spatial axis number, for messages.

    Returns
    -------
    (int, int)
        ``crop_before`` (negative under "onnx" when the window starts before the full result)
        and ``out_size`` (explicit pads may give a size below 1: the caller checks that).

    Raises
    ------
    WindowError
        A size or output_padding outside the convention's legal range.
    """
    L = full_length(n, k, s, d)
    if isinstance(pads, str):
        return _named(axis, n, L, effective_kernel(k, d), s, pads, op, out, convention)
    return _explicit(axis, L, s, d, pads, op, out, convention)
