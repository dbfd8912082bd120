"""Stride-2 Winograd: 3x3 stride-2 convolutions with 25 multiplications per 2x2 tile, not 36.

A 3x3 stride-2 convolution (the down-sampling layer of residual networks) is, along each axis,
a 2-tap correlation of the even input phase plus a 1-tap product with the odd phase. Winograd
F(2, 2) on the even part (3 multiplications for 2 outputs instead of 4) and the odd part as it
is give 5 points per axis and tile of two outputs: 25 points per 2x2 output tile, summed over
the input channels by GEMMs ``(C_out x C_in) @ (C_in x tiles)``; the odd phase's points share
their weight, so the 25 points make 16 GEMMs, of 1, 2 or 4 points' tiles each. The transforms have
coefficients 0 and +-1 only (:mod:`deconv_core._winograd_s2_kernels`), so the float32 error is
that of the sums themselves: the weight's points are sums of up to four taps, made in float64
and rounded once; an input point is a difference of up to four inputs.

As in :mod:`deconv_core._winograd`, blocks of at most ``TB`` tiles are transformed, multiplied
and inverse-transformed by one worker with single-threaded BLAS, and no block holds two images
(every image's blocks have the same layout, so an image's bits do not depend on its batch).
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable, Iterable

import numpy as np

from deconv_core import _threads
from deconv_core import _winograd_s2_kernels as _k
from deconv_core.params import Geometry

__all__ = [
    "MIN_CHANNELS",
    "MIN_PAYING_CHANNELS",
    "applies",
    "conv",
    "pays_off",
    "transform_weight",
    "workspace_bytes",
]

#: Fewest input channels per group the route computes (as Winograd F(4x4, 3x3)).
MIN_CHANNELS = 4
#: Fewest input channels per group for the dispatcher to choose the route (see
#: :func:`pays_off`).
MIN_PAYING_CHANNELS = 128


def applies(geom: Geometry) -> bool:
    """Whether the route computes ``geom``: a 2-D 3x3 stride-2 undilated conv, >= MIN_CHANNELS
    input channels per group."""
    return (
        geom.op == "conv"
        and geom.kernel == (1, 3, 3)
        and geom.stride == (1, 2, 2)
        and geom.dilation == (1, 1, 1)
        and geom.in_size[0] == 1
        and geom.out_size[0] == 1
        and geom.c_in_per_group >= MIN_CHANNELS
    )


def pays_off(geom: Geometry) -> bool:
    """Whether the route beats the conv phase route on ``geom`` (one image's geometry only).

    It saves 31% of the multiplications but runs its GEMMs at ``C_in/groups`` deep against the
    phase route's ``9*C_in/groups``, and reads its whole transformed weight per block of tiles.
    Measured on 3x3 stride-2 convs (2-core Zen4, phase/winograd time, 30 ms pauses,
    interleaved): 1.13x at 256->256 channels on 32x32 inputs (batch 2), 1.04x at 128->256 (C2,
    batch 8); 0.88-0.91x at 64 input channels or below 64 tiles (28x28 inputs), 0.43x on 14x14
    inputs (16 tiles: the transformed weight is read for every 16 tiles). So: at least
    ``MIN_PAYING_CHANNELS`` input channels per group and one full block of tiles per image.
    """
    ti, tj = _tiles(geom)
    return geom.c_in_per_group >= MIN_PAYING_CHANNELS and ti * tj >= _k.TB


def transform_weight(w: np.ndarray) -> np.ndarray:
    """The weight at the 16 distinct points of a tile (see ``_winograd_s2_kernels.GROUPS``).

    Parameters
    ----------
    w : ndarray
        Conv weight ``(C_out, C_in/groups, 1, 3, 3)`` float32.

    Returns
    -------
    ndarray
        ``(16, C_out, C_in/groups)`` float32.
    """
    u, jobs = _weight_jobs(w)
    _threads.run_parts(lambda part: [job() for job in part], jobs)
    return u


def _weight_jobs(w: np.ndarray) -> tuple[np.ndarray, list[Callable[[], None]]]:
    """The transformed weight's buffer and the jobs that fill it, a few output channels each."""
    q, c = w.shape[0], w.shape[1]
    u = np.empty((16, q, c), np.float32)
    w4 = np.ascontiguousarray(w.reshape(q, c, 3, 3))
    step = max(1, -(-q // 8))
    return u, [functools.partial(_k.transform_weights, w4, u, q0, min(q, q0 + step))
               for q0 in range(0, q, step)]


class _Prologue:
    """Jobs that must all be done before any worker goes on, shared out as the workers come.

    The call's weight transform runs inside the same hand-off to the workers as its tiles (a
    second hand-off cost 0.1-0.3 ms after an idle pause): each worker transforms its first
    block of tiles, then takes weight jobs until none are left, then waits for the last one.
    A worker that takes no block never waits, so nobody waits for it.
    """

    def __init__(self, jobs: list[Callable[[], None]]) -> None:
        self._jobs = jobs
        self._next = itertools.count()
        self._left = len(jobs)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._error: BaseException | None = None
        if not jobs:
            self._done.set()

    def run_and_wait(self) -> None:
        """Do jobs until none are left, wait for every one, re-raise the first error."""
        while (i := next(self._next)) < len(self._jobs):
            try:
                self._jobs[i]()
            except BaseException as exc:  # re-raised below, in every worker
                self._error = self._error or exc
            finally:
                with self._lock:
                    self._left -= 1
                    if self._left == 0:
                        self._done.set()
        self._done.wait()
        if self._error is not None:
            raise self._error


def _tiles(geom: Geometry) -> tuple[int, int]:
    """Tile rows and tile columns of one image (2x2 outputs per tile)."""
    return -(-geom.out_size[1] // 2), -(-geom.out_size[2] // 2)


def _blocks(geom: Geometry) -> list[tuple[int, int, int]]:
    """``(image, first tile, tiles)`` of every block: runs of at most TB tiles of one image."""
    ti, tj = _tiles(geom)
    total = ti * tj
    return [(b, t0, min(_k.TB, total - t0)) for b in range(geom.batch)
            for t0 in range(0, total, _k.TB)]


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
    weights = 16 * geom.c_out * geom.c_in_per_group * 4 + 1024 * geom.c_in_per_group  # U
    per_worker = ((geom.c_in + geom.c_out) * _k.CS + 4 * _k.TB) * 4
    return weights + max(1, threads) * per_worker + 64 * len(_blocks(geom))


def conv(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry, u: np.ndarray | None = None
) -> np.ndarray:
    """The convolution ``geom`` (float32, :func:`applies`) by stride-2 Winograd.

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
    p1, p2 = geom.offset[1], geom.offset[2]
    _, TJ = _tiles(geom)
    prologue = None
    if u is None:
        u, jobs = _weight_jobs(w)
        prologue = _Prologue(jobs)
    xf = x.reshape(-1)
    y = np.empty((geom.batch, c_out, 1, O1, O2), dtype=np.float32)
    yf = y.reshape(-1)

    def work(part: Iterable[tuple[int, int, int]]) -> None:
        V = np.zeros(c_in * _k.CS, np.float32)  # zeros: unused slots stay finite
        M = np.empty(c_out * _k.CS, np.float32)
        T = np.empty(4 * _k.TB, np.float32)
        vm = V.reshape(c_in, _k.CS)
        mm = M.reshape(c_out, _k.CS)
        ready = prologue is None
        for b, t0, n in part:
            _k.input_tiles(xf, b, c_in, H, W, p1, p2, TJ, t0, n, V)
            if not ready:
                prologue.run_and_wait()
                ready = True
            ns = min(_k.TB, -(-n // 16) * 16)  # GEMMs of multiples of 16 columns run faster
            for g in range(G):
                ci, co = slice(g * cig, (g + 1) * cig), slice(g * cog, (g + 1) * cog)
                for q, (first, count) in enumerate(_k.GROUPS):
                    cols = slice(first * _k.TB, (first + count - 1) * _k.TB + ns)
                    np.matmul(u[q, co], vm[ci, cols], out=mm[co, cols])
            _k.output_tiles(M, bias, yf, b, c_out, O1, O2, TJ, t0, n, T)

    _threads.run_parts(work, _blocks(geom))
    return y
