"""The ``gemm`` route of transposed convolution: column GEMMs and a col2im, on the core's workers.

For output channel block ``c0 .. c1`` of image ``b``, one BLAS GEMM per group computes the
columns ``cols[(co, t), i] = sum_ci w[ci, co, t] * x[b, ci, i]`` (every tap ``t`` of every input
position ``i``), and :func:`deconv_core._kernels.col2im_image` adds each column where its tap
puts it, on top of the bias. The blocks split the output channels, so a block's columns are all
the taps its channels get: (block, image) pairs are independent work items, dealt to the core's
pinned workers by :func:`deconv_core._threads.run_parts` (one hand-off per call, no OpenMP or
BLAS thread pool woken). A block's shape depends on one image's geometry and the thread budget,
never on the batch, so an image gets the same bits in any batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numba
import numpy as np

from deconv_core import _kernels, _threads
from deconv_core.params import Geometry

__all__ = ["COLS_BUDGET_BYTES", "block_channels", "transpose", "workspace_bytes"]

#: Cap of the column buffers of all workers together, in bytes. They are also kept below half
#: one image's input + weight + output bytes, so the route's peak memory stays within 2x of its
#: operands (a block holds at least one output channel's columns).
COLS_BUDGET_BYTES = 48 * 1024 * 1024


def block_channels(geom: Geometry, itemsize: int, threads: int) -> int:
    """Output channels (per group) per work item: an even share of them per worker, fewer when
    ``threads`` blocks' columns would exceed the budget.

    Parameters
    ----------
    geom : Geometry
        A transposed convolution.
    itemsize : int
        Bytes per element.
    threads : int
        Workers sharing the budget.

    Returns
    -------
    int
        At least 1, at most ``geom.c_out_per_group``.
    """
    cog = geom.c_out_per_group
    io_elems = (geom.c_in * math.prod(geom.in_size) + geom.c_out * math.prod(geom.out_size)
                + geom.c_in * cog * math.prod(geom.kernel))  # fmt: skip
    budget = min(COLS_BUDGET_BYTES, io_elems * itemsize // 2)
    per_channel = geom.groups * math.prod(geom.kernel) * math.prod(geom.in_size) * itemsize
    workers = max(1, threads)
    return max(1, min(-(-cog // workers), budget // (workers * per_channel)))


def workspace_bytes(geom: Geometry, itemsize: int, threads: int) -> int:
    """Scratch bytes of :func:`transpose` beyond its operands and output (an upper bound).

    Parameters
    ----------
    geom : Geometry
        A transposed convolution.
    itemsize : int
        Bytes per element.
    threads : int
        Worker threads (each has its own column buffer).

    Returns
    -------
    int
    """
    workers = max(1, threads)
    cols = geom.groups * block_channels(geom, itemsize, workers) * math.prod(geom.kernel)
    cols *= math.prod(geom.in_size)
    weight = geom.c_in * geom.c_out_per_group * math.prod(geom.kernel)  # BLAS may stage it
    return (workers * cols + weight) * itemsize


def transpose(x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry) -> np.ndarray:
    """The transposed convolution ``geom`` by column GEMMs and col2im.

    Parameters
    ----------
    x : ndarray
        ``(B, C_in, N0, N1, N2)``, C-contiguous.
    w : ndarray
        ``(C_in, C_out/groups, K0, K1, K2)``.
    bias : ndarray
        ``(C_out,)``.
    geom : Geometry
        The call.

    Returns
    -------
    ndarray
        ``(B, C_out, O0, O1, O2)``.
    """
    G, Cig, Cog = geom.groups, geom.c_in_per_group, geom.c_out_per_group
    K = math.prod(geom.kernel)
    N = math.prod(geom.in_size)
    # (G, Cog*K, Cig): a transposed view, BLAS reads it without a copy.
    wt = w.reshape(G, Cig, Cog * K).transpose(0, 2, 1)
    xg = x.reshape(geom.batch, G, Cig, N)
    y = np.empty((geom.batch, geom.c_out, *geom.out_size), dtype=x.dtype)
    step = block_channels(geom, x.itemsize, numba.get_num_threads())
    items = [(c0, min(Cog, c0 + step), b) for b in range(geom.batch) for c0 in range(0, Cog, step)]

    def work(part: Iterable[tuple[int, int, int]]) -> None:
        buffer = np.empty(G * step * K * N, dtype=x.dtype)
        for c0, c1, b in part:
            cols = buffer[: G * (c1 - c0) * K * N].reshape(G, (c1 - c0) * K, N)
            np.matmul(wt[:, c0 * K : c1 * K], xg[b], out=cols)
            _kernels.col2im_image(
                cols.reshape(G, c1 - c0, *geom.kernel, *geom.in_size), bias, y[b],
                geom.stride, geom.dilation, geom.offset, c0,
            )  # fmt: skip

    _threads.run_parts(work, items)
    return y
