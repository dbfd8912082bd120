"""Winograd F(4x4, 3x3) convolution: 2.25 multiplications per output and tap instead of 9.

For 3x3 stride-1 2-D convolutions (any dilation: a dilated grid splits into ``d1*d2`` phases, each
a dense 3x3 convolution over every ``d``-th input) in float32. Each output tile of 4x4 is
``A^T [sum_c (G g G^T) * (B^T d B)] A``: the 36 products of a tile, summed over the input
channels, are 36 GEMMs ``(C_out x C_in) @ (C_in x tiles)``. Blocks of at most
``_winograd_kernels.TB`` tiles are transformed, multiplied and inverse-transformed by one worker
thread with single-threaded BLAS, so a block's transformed tiles stay in that core's L2 cache
(:func:`deconv_core._threads.run_parts` deals the blocks to the workers).

Rounding: the points (0, 1, -1, 1/2, -2, inf) give a float32 error of about 2.6e-6 of max|y| at 64
input channels (growing like sqrt(C_in)); the weight transform is computed in float64 and rounded
once. The error is relative to the transformed tiles, not to each output's own terms, so
:func:`applies` asks for at least ``MIN_CHANNELS`` input channels per group.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from deconv_core import _threads
from deconv_core import _winograd_kernels as _k
from deconv_core.params import Geometry

__all__ = ["MIN_CHANNELS", "applies", "conv", "transform_weight", "workspace_bytes"]

#: Fewest input channels per group: below it the float32 error, relative to each output's
#: sum of |terms| (the test suite's bound), can exceed 1e-5.
MIN_CHANNELS = 4

#: G of F(4, 3) for the points (0, 1, -1, 1/2, -2, inf).
_G = np.array(
    [
        [1.0, 0.0, 0.0],
        [1 / 3, 1 / 3, 1 / 3],
        [-1 / 3, 1 / 3, -1 / 3],
        [-16 / 15, -8 / 15, -4 / 15],
        [1 / 15, -2 / 15, 4 / 15],
        [0.0, 0.0, 1.0],
    ]
)


def applies(geom: Geometry) -> bool:
    """Whether the route computes ``geom``: a 2-D 3x3 stride-1 conv, >= MIN_CHANNELS per group."""
    return (
        geom.op == "conv"
        and geom.kernel == (1, 3, 3)
        and geom.stride == (1, 1, 1)
        and geom.in_size[0] == 1
        and geom.out_size[0] == 1
        and geom.c_in_per_group >= MIN_CHANNELS
    )


def transform_weight(w: np.ndarray) -> np.ndarray:
    """``G g G^T`` per (output, input) channel pair, summed in float64 and rounded once.

    Parameters
    ----------
    w : ndarray
        Conv weight ``(C_out, C_in/groups, 1, 3, 3)`` float32.

    Returns
    -------
    ndarray
        ``(36, C_out, C_in/groups)`` float32, point ``xi = 6*l + k``.
    """
    c_out, cig = w.shape[0], w.shape[1]
    u = np.empty((36, c_out, cig), np.float32)
    g = np.ascontiguousarray(w.reshape(c_out, cig, 3, 3).transpose(0, 2, 3, 1))
    _k.transform_weights(g, _G, u)
    return u


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _blocks(geom: Geometry) -> list[tuple[np.ndarray, int]]:
    """Segments of tile rows packed into blocks of at most ``TB`` slots, image by image.

    A block's slot count is rounded up to a multiple of 16 (the GEMMs measured 20-30% slower at
    other sizes); the extra slots hold stale, finite scratch values and are never written out.
    No block holds two images, and every image's blocks have the same layout: BLAS results
    depend on the GEMM's shape, so this is what keeps an image's bits independent of its batch.
    """
    cap = _k.TB
    d1, d2 = geom.dilation[1], geom.dilation[2]
    O1, O2 = geom.out_size[1], geom.out_size[2]
    layout: list[tuple[list[tuple[int, ...]], int]] = []
    rows: list[tuple[int, ...]] = []
    used = 0

    def close() -> None:
        layout.append((rows, min(cap, -(-used // 16) * 16)))

    for r1 in range(min(d1, O1)):
        ti = _cdiv(_cdiv(O1 - r1, d1), 4)
        for r2 in range(min(d2, O2)):
            tj = _cdiv(_cdiv(O2 - r2, d2), 4)
            for R in range(ti):
                for j0 in range(0, tj, cap - 1):
                    nj = min(cap - 1, tj - j0)
                    if used + nj + 1 > cap:
                        close()
                        rows, used = [], 0
                    rows.append((r1, r2, R, j0, nj, used))
                    used += nj + 1
    if rows:
        close()
    return [
        (np.array([(b, *row) for row in block], np.int64), slots)
        for b in range(geom.batch)
        for block, slots in layout
    ]


def workspace_bytes(geom: Geometry, threads: int) -> int:
    """Scratch bytes of :func:`conv` beyond its operands and output (an upper bound).

    Parameters
    ----------
    geom : Geometry
        A geometry :func:`applies` to.
    threads : int
        Worker threads (each has its own block buffers).

    Returns
    -------
    int
    """
    weights = (36 + 9) * geom.c_out * geom.c_in_per_group * 4  # U and the channels-last copy
    per_worker = (geom.c_in + geom.c_out) * _k.CS + (16 * _k.SS + 36 * _k.TB)
    rows = geom.batch * math.prod(geom.dilation) * (geom.out_size[1] // 4 + 2)
    n_seg = rows * (geom.out_size[2] // (4 * (_k.TB - 1)) + 1)  # long rows split over blocks
    return weights + max(1, threads) * per_worker * 4 + 2 * 56 * n_seg + 128 * n_seg


def conv(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry, u: np.ndarray | None = None
) -> np.ndarray:
    """The convolution ``geom`` (float32, :func:`applies`) by Winograd F(4x4, 3x3).

    Parameters
    ----------
    x : ndarray
        ``(B, C_in, 1, H, W)`` float32, C-contiguous.
    w : ndarray
        ``(C_out, C_in/groups, 1, 3, 3)`` float32.
    bias : ndarray
        ``(C_out,)`` float32.
    geom : Geometry
        The convolution.
    u : ndarray, optional
        :func:`transform_weight` of ``w``, when the caller kept it (``w`` is then not read).

    Returns
    -------
    ndarray
        ``(B, C_out, 1, O1, O2)`` float32.
    """
    G, cig, cog = geom.groups, geom.c_in_per_group, geom.c_out_per_group
    c_in, c_out = geom.c_in, geom.c_out
    H, W = geom.in_size[1], geom.in_size[2]
    O1, O2 = geom.out_size[1], geom.out_size[2]
    d1, d2 = geom.dilation[1], geom.dilation[2]
    p1, p2 = geom.offset[1], geom.offset[2]
    if u is None:
        u = transform_weight(w)
    xf = x.reshape(-1)
    y = np.empty((geom.batch, c_out, 1, O1, O2), dtype=np.float32)
    yf = y.reshape(-1)

    def work(part: Iterable[tuple[np.ndarray, int]]) -> None:
        V = np.empty(c_in * _k.CS, np.float32)
        M = np.empty(c_out * _k.CS, np.float32)
        S = np.empty(6 * _k.SS, np.float32)
        R6 = np.zeros(6 * _k.SS, np.float32)
        T = np.empty(36 * _k.TB, np.float32)
        Z = np.empty(4 * _k.SS, np.float32)
        vt = V.reshape(c_in, _k.CS)[:, : 36 * _k.TB].reshape(c_in, 36, _k.TB).transpose(1, 0, 2)
        mt = M.reshape(c_out, _k.CS)[:, : 36 * _k.TB].reshape(c_out, 36, _k.TB).transpose(1, 0, 2)
        for seg, ns in part:
            _k.input_tiles(xf, c_in, H, W, seg, ns, d1, d2, p1, p2, V, S, R6)
            for g in range(G):
                np.matmul(
                    u[:, g * cog : (g + 1) * cog],
                    vt[:, g * cig : (g + 1) * cig, :ns],
                    out=mt[:, g * cog : (g + 1) * cog, :ns],
                )
            _k.output_tiles(M, bias, yf, c_out, O1, O2, seg, ns, d1, d2, T, Z)

    _threads.run_parts(work, _blocks(geom))
    return y
