"""Pure shape maths for convolution and transposed convolution, one spatial axis at a time.

Nothing here validates: callers (``deconv_core.params``) check the rules and raise. Notation of
docs/semantics.md: ``k`` kernel size, ``s`` stride, ``d`` dilation, ``ek = d*(k-1)+1`` the
effective kernel extent, ``n`` input size.
"""

from __future__ import annotations

__all__ = [
    "conv_out_size",
    "effective_kernel",
    "full_length",
    "same_conv_pads",
    "same_transpose_crop",
    "same_transpose_range",
    "valid_transpose_range",
]


def effective_kernel(k: int, d: int) -> int:
    """Extent of a kernel of ``k`` taps with dilation ``d``: ``d*(k-1)+1``."""
    return d * (k - 1) + 1


def full_length(n: int, k: int, s: int, d: int) -> int:
    """Length ``L = (n-1)*s + ek`` of the uncropped ("full") transposed-convolution result."""
    return (n - 1) * s + effective_kernel(k, d)


def conv_out_size(n: int, k: int, s: int, d: int, pad_before: int, pad_after: int) -> int:
    """Output length of a convolution, ``(n + pb + pa - ek)//s + 1`` (may be < 1: caller checks)."""
    padded = n + pad_before + pad_after - effective_kernel(k, d)
    if padded < 0:
        return 0
    return padded // s + 1


def same_conv_pads(n: int, k: int, s: int, d: int, lower: bool) -> tuple[int, int]:
    """Per-side pads of a "same" convolution: total ``max(0, (ceil(n/s)-1)s + ek - n)``.

    The odd pixel goes at the end ("same", TF SAME, ONNX SAME_UPPER) or at the start
    ("same_lower", ONNX SAME_LOWER).
    """
    out = -(-n // s)
    total = max(0, (out - 1) * s + effective_kernel(k, d) - n)
    small, large = total // 2, total - total // 2
    return (large, small) if lower else (small, large)


def same_transpose_crop(full: int, out: int, lower: bool) -> int:
    """``crop_before`` of a "same" transposed convolution with output length ``out``."""
    total = max(0, full - out)
    return total - total // 2 if lower else total // 2


def same_transpose_range(n: int, s: int) -> tuple[int, int]:
    """Legal output lengths ``(lo, hi)`` of a "same" transposed conv: ``ceil(out/s) == n``."""
    return (n - 1) * s + 1, n * s


def valid_transpose_range(full: int, s: int) -> tuple[int, int]:
    """Legal output lengths ``(lo, hi)`` of a "valid" transposed conv: ``L .. L+s-1``."""
    return full, full + s - 1
