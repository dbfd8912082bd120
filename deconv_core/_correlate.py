"""The weight gradient's correlation, ``sum over batch and positions of other * shifted src``.

``R[h, o, c, t] = sum_{b, j} other[b, h*Co + o, j] * src[b, h*Cs + c, j*s + t*d]`` is the
weight gradient of both ops (:mod:`deconv_core.backward`): for a conv ``src`` is the padded
input and ``other`` the output gradient; for a transposed conv ``src`` is the output gradient
put back into the full result and ``other`` the input.

The samples a box of taps reads are gathered (an im2col bounded to
:data:`GATHER_BUDGET_BYTES`, copied on the thread budget) and contracted with ``other`` by one
BLAS GEMM per box. (A stride-1 variant that reads each tap as a shifted view of ``src``, with
no gather at all, measured slower on C1 and T7: nine thin GEMMs lose more than the copy costs.)
"""

from __future__ import annotations

import math

import numpy as np

from deconv_core import _threads

__all__ = ["GATHER_BUDGET_BYTES", "correlate", "window_into"]

#: Bound of the gather buffer (one box of taps), in bytes.
GATHER_BUDGET_BYTES = 32 * 1024 * 1024
Triple = tuple[int, int, int]


def _tap_boxes(kernel: tuple[int, int, int], per_tap: int) -> list[tuple[slice, ...]]:
    """Split the taps into boxes of at most :data:`GATHER_BUDGET_BYTES` (one tap at least).

    A box is partial on one tap axis and full on the later ones, so its taps are consecutive
    in row-major (flattened) order.
    """
    taps = max(1, GATHER_BUDGET_BYTES // max(1, per_tap))
    inner = math.prod(kernel)
    boxes: list[tuple[slice, ...]] = [()]
    for axis in range(3):
        inner //= kernel[axis]
        if kernel[axis] * inner <= taps:  # the rest of the axes fit whole in one box
            step = max(1, taps // max(1, inner))
            return [
                (*box, slice(lo, min(kernel[axis], lo + step)), *(slice(None),) * (2 - axis))
                for box in boxes
                for lo in range(0, kernel[axis], step)
            ]
        boxes = [(*box, slice(i, i + 1)) for box in boxes for i in range(kernel[axis])]
    return boxes


def correlate(
    src: np.ndarray,
    other: np.ndarray,
    groups: int,
    kernel: tuple[int, int, int],
    stride: tuple[int, int, int],
    dilation: tuple[int, int, int],
) -> np.ndarray:
    """``R`` of the module docstring as ``(G*Co, Cs, k0, k1, k2)``.

    ``src`` is ``(N, Cs*G, P...)`` and covers every position a tap reads; ``other`` is
    ``(N, Co*G, O...)``; both channels-first with three spatial axes, one float dtype.
    """
    N, Cs_all = src.shape[:2]
    Co_all = other.shape[1]
    out = tuple(other.shape[2:])
    G, Cs, Co = groups, Cs_all // groups, Co_all // groups
    M = N * math.prod(out)
    K = math.prod(kernel)
    # (G, Co, N*O): the output gradient's rows, batch and positions flattened together.
    om = other.reshape(N, G, Co, -1).transpose(1, 2, 0, 3).reshape(G, Co, M)
    # Every sample any tap reads: (C, k0, k1, k2, N, O0, O1, O2), a strided view of src.
    sn, sc, *sp = src.strides
    samples = np.lib.stride_tricks.as_strided(
        src,
        shape=(Cs_all, *kernel, N, *out),
        strides=(sc, *(d * p for d, p in zip(dilation, sp, strict=True)), sn,
                 *(s * p for s, p in zip(stride, sp, strict=True))),
        writeable=False,
    )
    boxes = _tap_boxes(kernel, Cs_all * M * src.itemsize)
    largest = max(math.prod(len(range(*b.indices(k))) for b, k in zip(box, kernel, strict=True))
                  for box in boxes)
    result = np.empty((G, Co, Cs, K), dtype=src.dtype)
    buf = np.empty(Cs_all * largest * M, dtype=src.dtype)
    k0 = 0
    with _threads.blas_single_threaded():
        for box in boxes:
            view = samples[(slice(None), *box)]
            taps = math.prod(view.shape[1:4])
            part = buf[: Cs_all * taps * M].reshape(view.shape)

            def copy(channels: list[slice], part: np.ndarray = part, view: np.ndarray = view):
                for c in channels:
                    part[c] = view[c]

            step = max(1, -(-Cs_all // 8))
            _threads.run_parts(copy, [slice(c, c + step) for c in range(0, Cs_all, step)])
            cols = part.reshape(G, Cs * taps, M)
            prod = _threads.matmul(cols, om.transpose(0, 2, 1))  # (G, Cs*taps, Co)
            result[:, :, :, k0 : k0 + taps] = prod.reshape(G, Cs, taps, Co).transpose(0, 3, 1, 2)
            k0 += taps
    return result.reshape(G * Co, Cs, *kernel)


def window_into(
    a: np.ndarray, length: tuple[int, ...], start: tuple[int, ...]
) -> np.ndarray:
    """Zeros of spatial size ``length`` with ``a`` placed at ``start`` (clipped at both ends)."""
    buf = np.zeros((*a.shape[:2], *length), dtype=a.dtype)
    dst, src = [], []
    for n, size, at in zip(a.shape[2:], length, start, strict=True):
        lo, hi = max(0, at), min(size, at + n)
        if hi <= lo:
            return buf
        dst.append(slice(lo, hi))
        src.append(slice(lo - at, hi - at))
    buf[(slice(None), slice(None), *dst)] = a[(slice(None), slice(None), *src)]
    return buf
