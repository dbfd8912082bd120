"""Convolution by input phases: strided convs as one GEMM over contiguous shifted copies.

Along an axis with stride ``s`` and dilation ``d``, tap ``t`` reads input
``s*m + t*d - f = s*(m + delta_t) + phi_t``: phase ``phi_t`` of the input, shifted by
``delta_t``. Each image is split once into its ``s0*s1*s2`` phase images, zero-padded so every
tap's rows are one contiguous copy over a flat output grid (rows padded to the shift range; the
padding outputs are computed and skipped). The im2col of a tile is then a few long ``memcpy``-like
copies instead of strided gathers (the strided gathers of ``tiled`` measured as slow as its GEMM
on the stride-2 C2), and the GEMM runs on one worker with single-threaded BLAS, as in the
transposed phase route (:mod:`deconv_core._phase`), whose output copy it shares.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from deconv_core import _phase_kernels as _kernels
from deconv_core import _threads
from deconv_core.params import Geometry

__all__ = ["applies", "conv", "workspace_bytes"]

#: Bytes of one tile's im2col buffer (at most; small calls get 1/8 of their operand bytes).
COLS_BYTES = 2 << 20
#: Fewest output windows per tile (before rounding to whole rows): narrower GEMMs ran far
#: slower (C2, 8x128x32x32 stride 2: 51-window tiles 19.8 ms, whole 272-window images 15.6).
MIN_WIDTH = 256


def applies(geom: Geometry) -> bool:
    """Whether the route computes ``geom``: any convolution (it pays off for strided ones)."""
    return geom.op == "conv"


def _axis(k: int, s: int, d: int, f: int) -> tuple[list[int], list[int]]:
    """Phase and shift of each tap of one axis."""
    phase = [(t * d - f) % s for t in range(k)]
    shift = [(t * d - f - phase[t]) // s for t in range(k)]
    return phase, shift


def _layout(geom: Geometry) -> tuple[tuple[int, ...], tuple[int, int, int], np.ndarray]:
    """``(dmin, (U0, U1, RS), offsets)``: first shift, padded phase-image dims, tap offsets."""
    axes = [_axis(k, s, d, f) for k, s, d, f in
            zip(geom.kernel, geom.stride, geom.dilation, geom.offset, strict=True)]
    dmin = tuple(min(sh) for _, sh in axes)
    U = [o + max(sh) - min(sh) for o, (_, sh) in zip(geom.out_size, axes, strict=True)]
    U0, U1, RS = U
    _, s1, s2 = geom.stride
    plane = U0 * U1 * RS
    offs = []
    for t0 in range(geom.kernel[0]):
        for t1 in range(geom.kernel[1]):
            for t2 in range(geom.kernel[2]):
                (p0, h0), (p1, h1), (p2, h2) = (
                    (ax[0][t], ax[1][t] - dm)
                    for ax, t, dm in zip(axes, (t0, t1, t2), dmin, strict=True)
                )
                offs.append(((p0 * s1 + p1) * s2 + p2) * plane + (h0 * U1 + h1) * RS + h2)
    return dmin, (U0, U1, RS), np.array(offs, np.int64)


def _split_elems(geom: Geometry, dims: tuple[int, int, int]) -> int:
    U0, U1, RS = dims
    return geom.c_in * math.prod(geom.stride) * U0 * U1 * RS + (U1 + 1) * RS


def _width(geom: Geometry, dims: tuple[int, int, int], itemsize: int) -> int:
    """Output windows per tile (whole padded rows when they fit, a multiple of 16 otherwise; a
    whole image when that is less than two tiles)."""
    _, U1, RS = dims
    total = ((geom.out_size[0] - 1) * U1 + geom.out_size[1]) * RS  # last padding rows dropped
    # One image's operands: an image's tiles, and so its bits, do not depend on its batch.
    operands = (geom.c_in * math.prod(geom.in_size) + geom.c_out * math.prod(geom.out_size)
                + geom.c_out * geom.c_in_per_group * math.prod(geom.kernel)) * itemsize
    budget = min(COLS_BYTES, max(1 << 16, operands // 8))
    width = max(MIN_WIDTH, budget // (geom.c_in * math.prod(geom.kernel) * itemsize))
    width = width // RS * RS if width >= RS else max(16, width // 16 * 16)
    return total if 2 * width >= total else width  # no small last tile


def workspace_bytes(geom: Geometry, itemsize: int, threads: int) -> int:
    """Scratch bytes of :func:`conv` beyond its operands and output (an upper bound).

    Parameters
    ----------
    geom : Geometry
        A convolution.
    itemsize : int
        Bytes per element.
    threads : int
        Worker threads (each has its own phase images and tile buffers).

    Returns
    -------
    int
    """
    _, dims, _ = _layout(geom)
    width = _width(geom, dims, itemsize)
    tile = (geom.c_in * math.prod(geom.kernel) + geom.c_out) * width
    return max(1, threads) * (tile + _split_elems(geom, dims)) * itemsize


def conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry) -> np.ndarray:
    """The convolution ``geom`` by input phases.

    Parameters
    ----------
    x : ndarray
        ``(B, C_in, N0, N1, N2)``, C-contiguous.
    w : ndarray
        ``(C_out, C_in/groups, K0, K1, K2)``.
    bias : ndarray
        ``(C_out,)``.
    geom : Geometry
        The convolution.

    Returns
    -------
    ndarray
        ``(B, C_out, O0, O1, O2)``.
    """
    G, cig, cog = geom.groups, geom.c_in_per_group, geom.c_out_per_group
    dmin, dims, offs = _layout(geom)
    U0, U1, RS = dims
    chan = math.prod(geom.stride) * U0 * U1 * RS
    kin = cig * len(offs)
    wg = w.reshape(G, cog, kin)
    total = ((geom.out_size[0] - 1) * U1 + geom.out_size[1]) * RS  # last padding rows dropped
    width = _width(geom, dims, x.itemsize)
    tiles = [(b, t0, min(total, t0 + width)) for b in range(geom.batch)
             for t0 in range(0, total, width)]
    y = np.empty((geom.batch, geom.c_out, *geom.out_size), dtype=x.dtype)
    grid = (U1, RS, geom.out_size[1], geom.out_size[2])
    zero = np.zeros(1, np.int64)

    def work(part: Iterable[tuple[int, int, int]]) -> None:
        xq = np.empty(_split_elems(geom, dims), dtype=x.dtype)
        flat = np.empty(G * kin * width, dtype=x.dtype)
        yflat = np.empty(G * cog * width, dtype=x.dtype)
        split = -1
        for b, t0, t1 in part:
            if b != split:
                _kernels.phase_split(x, b, geom.stride, dmin, dims, xq)
                split = b
            n = t1 - t0
            cols = flat[: G * kin * n].reshape(G * kin, n)
            _kernels.window_cols(xq, chan, offs, t0, t1, cols)
            yt = yflat[: G * cog * n].reshape(G, cog, n)
            for g in range(G):
                np.matmul(wg[g], cols[g * kin : (g + 1) * kin], out=yt[g])
            _kernels.phase_scatter(yt, 0, bias, y, b, t0, t1, grid, (1, 1, 1), zero, zero, zero)

    _threads.run_parts(work, tiles)
    return y
