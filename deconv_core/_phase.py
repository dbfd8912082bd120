"""Strided transposed convolution by output phases: one stride-1 GEMM, no scatter-adds.

Along an axis with stride ``s``, output ``o = s*m + p`` (phase ``p``) receives only the taps
``t = t_p + s*u``, from inputs ``i = m + c_p - u``. With ``L = ceil(k/s)`` taps per phase (zero
taps pad the phases that have fewer), every phase reads the same window ``x[j], ..., x[j+L-1]``,
``j = m + c_p - (L-1)``. So the whole transposed conv is a stride-1 convolution of ``x`` with an
``L``-tap kernel and ``P*C_out`` output channels (one per phase and output channel, ``P`` the
product of the strides), followed by a depth-to-space copy: window ``j`` of channel ``(co, p)``
is output ``s*(j + L-1 - c_p) + p`` of channel ``co``. No output element is written twice, so
there is no col2im accumulation, and the GEMM's K (``C_in/groups * L^rank``) stays small.

The route works in tiles of window rows, one tile per worker at a time (single-threaded BLAS,
:func:`deconv_core._threads.run_parts`): a serial im2col of the tile, one GEMM per group into a
cache-sized buffer, then :func:`deconv_core._kernels.phase_scatter` into the output.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np

from deconv_core import _phase_kernels as _kernels
from deconv_core import _threads
from deconv_core.params import Geometry

__all__ = ["applies", "layout", "transpose", "weight_matrix", "workspace_bytes"]

#: Bytes of one tile's im2col buffer and of one chunk of its GEMM result (at most; small calls
#: get 1/8 and 1/16 of their operand bytes, so the route's memory stays within 2x of theirs).
COLS_BYTES = 2 << 20
OUT_BYTES = 1 << 20
#: Fewest windows per tile when the budgets allow fewer.
MIN_WIDTH = 256


@dataclasses.dataclass(frozen=True)
class Axis:
    """One axis of the phase split: window taps, window grid and where phases land."""

    L: int  # taps per window
    lo: int  # first window start j (may be negative: zero padding before the input)
    J: int  # windows
    taps: np.ndarray  # (s, L): kernel tap of phase p at window position a, or k (a zero tap)
    base: np.ndarray  # (s,): output of phase p at window index 0; window n -> base + s*n


def _axis(n: int, o: int, k: int, s: int, f: int) -> Axis:
    """Phase split of one axis: input ``n``, output ``o``, kernel ``k``, stride ``s``, crop
    ``f``."""
    L = -(-k // s)
    t0 = [(p + f) % s for p in range(s)]
    c = [(p + f) // s for p in range(s)]
    first = [c[p] - (L - 1) for p in range(s)]  # window start of the phase's output m = 0
    counts = [-(-(o - p) // s) for p in range(s)]  # outputs of phase p
    live = [p for p in range(s) if counts[p] > 0]
    lo = min(first[p] for p in live)
    hi = max(first[p] + counts[p] for p in live)
    taps = np.full((s, L), k, np.intp)
    for p in range(s):
        for a in range(L):
            t = t0[p] + s * (L - 1 - a)
            if t < k:
                taps[p, a] = t
    base = np.array([s * (lo - first[p]) + p for p in range(s)], np.int64)
    return Axis(L=L, lo=lo, J=hi - lo, taps=taps, base=base)


def layout(geom: Geometry) -> tuple[Axis, Axis, Axis]:
    """The phase split of each spatial axis of ``geom``."""
    return tuple(  # type: ignore[return-value]
        _axis(n, o, k, s, f)
        for n, o, k, s, f in zip(
            geom.in_size, geom.out_size, geom.kernel, geom.stride, geom.offset, strict=True
        )
    )


def applies(geom: Geometry) -> bool:
    """Whether the route computes ``geom``: a strided transposed conv without dilation."""
    return (
        geom.op == "conv_transpose"
        and geom.stride != (1, 1, 1)
        and geom.dilation == (1, 1, 1)
    )


def weight_matrix(w: np.ndarray, geom: Geometry, axes: tuple[Axis, Axis, Axis]) -> np.ndarray:
    """The window conv's weight, transposed: ``(G, C_in/G * L0*L1*L2, C_out/G * P)``.

    Rows are ``((ci*L0 + a0)*L1 + a1)*L2 + a2``, columns ``((co*s0 + p0)*s1 + p1)*s2 + p2``.
    """
    G, cig, cog = geom.groups, geom.c_in_per_group, geom.c_out_per_group
    P = math.prod(geom.stride)
    out = np.empty((G, cig * math.prod(ax.L for ax in axes), cog * P), w.dtype)
    _kernels.phase_weights(w, *(ax.taps for ax in axes), G, out)
    return out


def _grid(axes: tuple[Axis, Axis, Axis]) -> tuple[int, int, int]:
    """``(U0, U1, RS)``: the padded image's slabs, rows and row length (window grid + taps)."""
    return axes[0].J + axes[0].L - 1, axes[1].J + axes[1].L - 1, axes[2].J + axes[2].L - 1


def _padded_elems(geom: Geometry, axes: tuple[Axis, Axis, Axis]) -> int:
    U0, U1, RS = _grid(axes)
    return geom.c_in * U0 * U1 * RS + (axes[1].L + 1) * RS


def _tiles(geom: Geometry, axes: tuple[Axis, Axis, Axis], itemsize: int) -> tuple[int, int]:
    """``(windows, channels)`` per tile.

    A tile holds about COLS_BYTES of im2col buffer and OUT_BYTES of GEMM result (less for small
    calls), but at least MIN_WIDTH windows (whole window rows when they fit, else a multiple
    of 16: the GEMMs ran 20-30% slower at other sizes); when the result of that many windows is
    too big, it is computed in chunks of output channels, so the weight rows of a chunk are
    reused over the whole tile.
    """
    _, U1, RS = _grid(axes)
    total = ((axes[0].J - 1) * U1 + axes[1].J) * RS
    k_rows = geom.c_in * math.prod(ax.L for ax in axes)
    y_rows = geom.c_out * math.prod(geom.stride)
    # One image's operands, not the batch's: the tiles (so the GEMM shapes, which BLAS results
    # depend on) are the same for an image whatever batch it comes in.
    operands = (geom.c_in * math.prod(geom.in_size) + geom.c_out * math.prod(geom.out_size)
                + geom.c_in * geom.c_out_per_group * math.prod(geom.kernel)) * itemsize
    cols_bytes = min(COLS_BYTES, max(1 << 16, operands // 8))
    out_bytes = min(OUT_BYTES, max(1 << 15, operands // 16))
    min_width = min(MIN_WIDTH, max(16, cols_bytes // (k_rows * itemsize) // 16 * 16))
    width = max(min_width, min(cols_bytes // (k_rows * itemsize), out_bytes // (y_rows * itemsize)))
    width = width // RS * RS if width >= RS else max(16, width // 16 * 16)
    if 2 * width >= total:
        width = total
    per_channel = math.prod(geom.stride) * width * itemsize * geom.groups
    return width, max(1, min(geom.c_out_per_group, out_bytes // per_channel))


def workspace_bytes(geom: Geometry, itemsize: int, threads: int) -> int:
    """Scratch bytes of :func:`transpose` beyond its operands and output (an upper bound).

    Parameters
    ----------
    geom : Geometry
        A geometry :func:`applies` to.
    itemsize : int
        Bytes per element.
    threads : int
        Worker threads (each has its own padded image and tile buffers).

    Returns
    -------
    int
    """
    axes = layout(geom)
    lprod = math.prod(ax.L for ax in axes)
    width, cos = _tiles(geom, axes, itemsize)
    tile = (geom.c_in * lprod + geom.groups * cos * math.prod(geom.stride)) * width
    weight = geom.c_in * geom.c_out_per_group * math.prod(geom.stride) * lprod
    per_worker = tile + _padded_elems(geom, axes)  # (less when the image is used as it is)
    return (max(1, threads) * per_worker + weight) * itemsize


def transpose(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    geom: Geometry,
    km: np.ndarray | None = None,
) -> np.ndarray:
    """The transposed convolution ``geom`` (:func:`applies`) by output phases.

    Parameters
    ----------
    x : ndarray
        ``(B, C_in, N0, N1, N2)``, C-contiguous.
    w : ndarray
        ``(C_in, C_out/groups, K0, K1, K2)``.
    bias : ndarray
        ``(C_out,)``.
    geom : Geometry
        The transposed convolution.
    km : ndarray, optional
        :func:`weight_matrix` of ``w`` for ``geom``, when the caller kept it.

    Returns
    -------
    ndarray
        ``(B, C_out, O0, O1, O2)``.
    """
    axes = layout(geom)
    G, cig, cog = geom.groups, geom.c_in_per_group, geom.c_out_per_group
    P = math.prod(geom.stride)
    if km is None:
        km = weight_matrix(w, geom, axes)
    L = tuple(ax.L for ax in axes)
    kin = cig * math.prod(L)
    U0, U1, RS = _grid(axes)
    plane = U1 * U0 * RS
    lo = tuple(ax.lo for ax in axes)
    grid = (U1, RS, axes[1].J, axes[2].J)
    offs = np.array(
        [(a0 * U1 + a1) * RS + a2 for a0 in range(L[0]) for a1 in range(L[1])
         for a2 in range(L[2])],
        np.int64,
    )
    total = ((axes[0].J - 1) * U1 + axes[1].J) * RS  # the last slab's padding rows dropped
    width, cos = _tiles(geom, axes, x.itemsize)
    # Work items are (image, windows, output channels): an image of one tile still spreads
    # its channel chunks over the workers (T3: 1 tile, 21 chunks).
    items = [(b, t0, min(total, t0 + width), c0, min(cog, c0 + cos))
             for b in range(geom.batch) for t0 in range(0, total, width)
             for c0 in range(0, cog, cos)]
    y = np.empty((geom.batch, geom.c_out, *geom.out_size), dtype=x.dtype)
    bases = tuple(ax.base for ax in axes)
    # One tap per phase and windows that are the input's pixels (k <= s, no crop): the image
    # itself is the GEMM's right operand, no padded copy and no im2col.
    as_is = all(ax.L == 1 and ax.lo == 0 and ax.J == n
                for ax, n in zip(axes, geom.in_size, strict=True))

    def work(part: Iterable[tuple[int, int, int, int, int]]) -> None:
        xp = np.empty(0 if as_is else _padded_elems(geom, axes), dtype=x.dtype)
        flat = np.empty(0 if as_is else G * kin * width, dtype=x.dtype)
        yflat = np.empty(G * cos * P * width, dtype=x.dtype)
        padded, cut = -1, (-1, -1, -1)
        for b, t0, t1, c0, c1 in part:
            n = t1 - t0
            if as_is:
                cols = x[b].reshape(geom.c_in, -1)[:, t0:t1]
            elif cut != (b, t0, t1):  # this worker's previous item may have had the same tile
                if b != padded:
                    _kernels.pad_image(x, b, lo, (U0, U1, RS), xp)
                    padded = b
                cols = flat[: G * kin * n].reshape(G * kin, n)
                _kernels.window_cols(xp, plane, offs, t0, t1, cols)
                cut = (b, t0, t1)
            yt = yflat[: G * (c1 - c0) * P * n].reshape(G, (c1 - c0) * P, n)
            for g in range(G):
                rows = km[g, :, c0 * P : c1 * P].T  # BLAS reads the transpose in place
                np.matmul(rows, cols[g * kin : (g + 1) * kin], out=yt[g])
            _kernels.phase_scatter(yt, c0 * P, bias, y, b, t0, t1, grid, geom.stride, *bases)

    _threads.run_parts(work, items)
    return y
