"""Private compute routes and the dispatcher that picks one per call.

A route takes channels-first, C-contiguous arrays in the compute dtype with three spatial axes,
a :class:`~deconv_core.params.Geometry` and a bias (zeros when the caller gave none), and returns
the output with three spatial axes. Routes:

``direct``
    One Numba kernel, prange over (batch, output channel). Best for depthwise and tiny work.
``patch``
    Transposed conv only: one GEMM producing a kernel patch per input pixel, then a Numba scatter
    of whole kernel rows; wins for long kernel rows (large kernels such as FCN upsampling).
``tiled``
    Conv only: output rows in cache-sized tiles, each worker thread filling a small patch
    buffer (serial Numba im2col) and multiplying it straight into the output.
``flip``
    Stride-1 transposed conv only: the same sum as a conv with the flipped kernel, through
    ``tiled``.
``gemm``
    Transposed conv only: one BLAS GEMM per group (numpy matmul) plus a Numba col2im, in batch
    chunks that bound the column buffer's memory. (A conv twin, im2col + GEMM, measured slower
    than ``tiled`` on C1/C2 and was removed.)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from deconv_core import _kernels, _threads
from deconv_core.params import Geometry

__all__ = ["ROUTES", "choose_route", "route_applies", "run", "workspace_bytes"]

#: Cap of the GEMM route's column buffer, in bytes. The buffer is also kept below half the bytes
#: of input + weight + output, so the route's peak memory stays within 2x of its operands (a chunk
#: always holds at least one image; batch chunking measured no slower on T1).
COLS_BUDGET_BYTES = 48 * 1024 * 1024
#: Bytes of one tile's patch buffer in the tiled conv route (about one core's L2 cache).
TILE_BYTES = 512 * 1024
#: Below this many multiply-accumulates the direct kernel beats the GEMM's fixed costs.
SMALL_MACS = 1 << 20
#: Transposed convs whose 2-D kernel window is at least this long and wide (FCN-style
#: upsampling) add whole kernel rows at a time; 1-D long kernels measured faster through GEMM.
PATCH_MIN_KERNEL_WIDTH = 8


def _prod(values: tuple[int, ...]) -> int:
    return math.prod(values)


def _cols_per_image(geom: Geometry) -> int:
    """Elements of one image's column buffer in the gemm and patch routes."""
    return geom.c_out * _prod(geom.kernel) * _prod(geom.in_size)


def _batch_chunk(geom: Geometry, itemsize: int) -> int:
    """Images per GEMM chunk: as many as fit the column budget (at least one)."""
    weight_elems = geom.c_in * geom.c_out_per_group * _prod(geom.kernel)
    io_elems = (
        geom.batch * geom.c_in * _prod(geom.in_size)
        + weight_elems
        + geom.batch * geom.c_out * _prod(geom.out_size)
    )
    budget = min(COLS_BUDGET_BYTES, io_elems * itemsize // 2)
    return max(1, min(geom.batch, budget // max(1, _cols_per_image(geom) * itemsize)))


def _tile_rows(geom: Geometry, itemsize: int) -> int:
    """Output rows per tile of the tiled conv route (at least one)."""
    rows = geom.out_size[0] * geom.out_size[1]
    per_row = geom.c_in * _prod(geom.kernel) * geom.out_size[2] * itemsize
    return max(1, min(rows, TILE_BYTES // per_row))


def workspace_bytes(route: str, geom: Geometry, itemsize: int, threads: int) -> int:
    """Scratch bytes ``route`` allocates beyond its inputs and its output (an upper bound).

    Parameters
    ----------
    route : str
        A key of ``ROUTES[geom.op]``.
    geom : Geometry
        The call; for ``flip`` the transposed geometry (the route builds its conv itself).
    itemsize : int
        Bytes per element of the compute dtype.
    threads : int
        Worker threads of the tiled route (each has its own tile buffer).

    Returns
    -------
    int
    """
    if route == "direct":
        return 0
    if route in ("gemm", "patch"):
        nb = _batch_chunk(geom, itemsize)
        staged_input = nb * geom.c_in * _prod(geom.in_size)  # the chunk's input, regrouped
        weight = geom.c_in * geom.c_out_per_group * _prod(geom.kernel)  # BLAS may stage it
        return (nb * _cols_per_image(geom) + staged_input + weight) * itemsize
    tile = (
        geom.c_in * _prod(geom.kernel) * _tile_rows(geom, itemsize) * geom.out_size[2] * itemsize
    )
    scratch = max(1, threads) * tile
    if route == "flip":  # plus the flipped copy of the weight
        scratch += geom.c_in * geom.c_out_per_group * _prod(geom.kernel) * itemsize
    return scratch


def _direct(x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry) -> np.ndarray:
    y = np.empty((geom.batch, geom.c_out, *geom.out_size), dtype=x.dtype)
    kernel = _kernels.conv_direct if geom.op == "conv" else _kernels.transpose_direct
    kernel(x, w, bias, y, geom.groups, geom.stride, geom.dilation, geom.offset)
    return y


def _gemm_transpose(x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry) -> np.ndarray:
    G, Cig, Cog = geom.groups, geom.c_in_per_group, geom.c_out_per_group
    K = w.shape[2] * w.shape[3] * w.shape[4]
    N = int(np.prod(geom.in_size))
    # (G, Cog*K, Cig): a transposed view, BLAS reads it without a copy.
    wt = w.reshape(G, Cig, Cog * K).transpose(0, 2, 1)
    y = np.empty((geom.batch, geom.c_out, *geom.out_size), dtype=x.dtype)
    chunk = _batch_chunk(geom, x.itemsize)
    for b0 in range(0, geom.batch, chunk):
        b1 = min(geom.batch, b0 + chunk)
        nb = b1 - b0
        xs = x[b0:b1].reshape(nb, G, Cig, N)
        if nb == 1:
            xg = xs.reshape(G, Cig, N)
        else:
            xg = np.ascontiguousarray(xs.transpose(1, 2, 0, 3)).reshape(G, Cig, nb * N)
        cols = _threads.matmul(wt, xg)
        cols = cols.reshape(G, Cog, *w.shape[2:], nb, *geom.in_size)
        _kernels.col2im(cols, bias, y[b0:b1], geom.stride, geom.dilation, geom.offset)
    return y


def _tiled_conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry) -> np.ndarray:
    """Conv as cache-sized tiles of output rows: each worker fills a small patch buffer and
    multiplies it straight into the output, so the im2col matrix never leaves the cache."""
    G, Cig, Cog = geom.groups, geom.c_in_per_group, geom.c_out_per_group
    K = w.shape[2] * w.shape[3] * w.shape[4]
    O1, O2 = geom.out_size[1], geom.out_size[2]
    rows = geom.out_size[0] * O1
    step = _tile_rows(geom, x.itemsize)
    tiles = [
        (b, r0, min(rows, r0 + step)) for b in range(geom.batch) for r0 in range(0, rows, step)
    ]
    wg = w.reshape(G, Cog, Cig * K)
    y = np.empty((geom.batch, G, Cog, rows * O2), dtype=x.dtype)
    bias_g = bias.reshape(G, Cog, 1)
    kernel = (w.shape[2], w.shape[3], w.shape[4])

    def work(part: list[tuple[int, int, int]]) -> None:
        flat = np.empty(geom.c_in * K * step * O2, dtype=x.dtype)
        for b, r0, r1 in part:
            width = (r1 - r0) * O2
            buf = flat[: geom.c_in * K * width].reshape(geom.c_in * K, width)  # C-contiguous
            _kernels.im2col_rows(
                x, b, buf, kernel, geom.stride, geom.dilation, geom.offset, geom.out_size, r0, r1
            )
            out = y[b, :, :, r0 * O2 : r1 * O2]
            for g in range(G):
                np.matmul(wg[g], buf[g * Cig * K : (g + 1) * Cig * K], out=out[g])
            out += bias_g

    _threads.run_parts(work, tiles)
    return y.reshape(geom.batch, geom.c_out, *geom.out_size)


def _flipped_conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry) -> np.ndarray:
    """Stride-1 transposed conv as a conv with the kernel flipped and its channels swapped.

    With stride 1, ``y[j] = sum_t x[j + crop - t*d] * w[t]``: a correlation with the flipped
    kernel at offset ``d*(k-1) - crop`` (negative offsets are fine for the kernels).
    """
    G, Cig, Cog = geom.groups, geom.c_in_per_group, geom.c_out_per_group
    kernel = w.shape[2:]
    wf = w.reshape(G, Cig, Cog, *kernel)[:, :, :, ::-1, ::-1, ::-1].transpose(0, 2, 1, 3, 4, 5)
    wf = np.ascontiguousarray(wf).reshape(geom.c_out, Cig, *kernel)
    offset = tuple(
        d * (k - 1) - crop for d, k, crop in zip(geom.dilation, kernel, geom.offset, strict=True)
    )
    conv_geom = dataclasses.replace(geom, op="conv", offset=offset)
    return _tiled_conv(x, wf, bias, conv_geom)


def _patch_transpose(x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry) -> np.ndarray:
    """Transposed conv as (pixels x C_in) @ (C_in x C_out*K), then add whole kernel patches."""
    G, Cig, Cog = geom.groups, geom.c_in_per_group, geom.c_out_per_group
    K = w.shape[2] * w.shape[3] * w.shape[4]
    N = int(np.prod(geom.in_size))
    wg = w.reshape(G, Cig, Cog * K)
    y = np.empty((geom.batch, geom.c_out, *geom.out_size), dtype=x.dtype)
    chunk = _batch_chunk(geom, x.itemsize)
    for b0 in range(0, geom.batch, chunk):
        b1 = min(geom.batch, b0 + chunk)
        nb = b1 - b0
        # (G, nb*N, Cig): pixels as rows; a transposed view when nb == 1.
        xs = x[b0:b1].reshape(nb, G, Cig, N).transpose(1, 0, 3, 2).reshape(G, nb * N, Cig)
        cols = _threads.matmul(xs, wg).reshape(G, nb, *geom.in_size, Cog, *w.shape[2:])
        _kernels.col2im_patch(cols, bias, y[b0:b1], geom.stride, geom.dilation, geom.offset)
    return y


Route = Callable[[np.ndarray, np.ndarray, np.ndarray, Geometry], np.ndarray]
ROUTES: dict[str, dict[str, Route]] = {
    "conv": {"direct": _direct, "tiled": _tiled_conv},
    "conv_transpose": {
        "direct": _direct,
        "gemm": _gemm_transpose,
        "patch": _patch_transpose,
        "flip": _flipped_conv,
    },
}


def route_applies(route: str, geom: Geometry) -> bool:
    """Whether ``route`` can compute ``geom`` (``flip`` needs stride 1; the others any)."""
    return route in ROUTES[geom.op] and (route != "flip" or geom.stride == (1, 1, 1))


def choose_route(geom: Geometry) -> str:
    """Pick the route for a geometry (thresholds measured on the benchmark cases, bench/cases.py).

    Parameters
    ----------
    geom : Geometry
        The canonical geometry of the call.

    Returns
    -------
    str
        A key of ``ROUTES[geom.op]``.
    """
    if geom.c_in_per_group * geom.c_out_per_group <= 4 or geom.macs < SMALL_MACS:
        return "direct"
    if geom.op == "conv":
        return "tiled"
    if geom.stride == (1, 1, 1):
        return "flip"
    if min(geom.kernel[1], geom.kernel[2]) >= PATCH_MIN_KERNEL_WIDTH:
        return "patch"
    return "gemm"


def run(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry, route: str | None = None
) -> np.ndarray:
    """Compute one call on canonical arrays (see module docstring) by the chosen route."""
    chosen = route or choose_route(geom)
    if chosen == "direct":
        return ROUTES[geom.op][chosen](x, w, bias, geom)
    with _threads.blas_single_threaded():
        return ROUTES[geom.op][chosen](x, w, bias, geom)
