"""Private Numba kernels of the stride-2 Winograd route (float32 only, no validation).

A stride-2 3x3 convolution splits along each axis into the even taps (0 and 2), a 2-tap
correlation of the even input phase, and the odd tap (1), a 1-tap product with the odd phase.
Per axis and tile of two outputs the route keeps five *points*: the three of Winograd F(2, 2)
on the even phase, whose transforms are exact small-integer ones,

    d = (d0, d1, d2) -> B^T d = (d0 - d1, d1, d2 - d1),   g = (g0, g1) -> G g = (g0, g0 + g1, g1),
    m -> A^T m = (m0 + m1, m1 + m2),

and the two outputs of the odd phase as they are. On the five input columns ``c0..c4`` a tile
reads (outputs ``o`` and ``o+1`` read inputs ``2o - p + 0..4``) the points are
``(c0 - c2, c2, c4 - c2, c1, c3)``, the taps ``(w0, w1, w2)`` become
``(w0, w0 + w2, w2, w1, w1)``, and the two outputs are ``m0 + m1 + m3`` and ``m1 + m2 + m4``.
In 2-D that is 25 points per 2x2 tile: 25 multiplications per output pair of channels and tile
where the direct sum takes 36.

Buffers (flat float32): ``V`` (channels, 25, TB) with channel stride ``CS``: transformed input
tiles, one slot per tile; ``M`` likewise for the GEMM output. The odd phase's points of an axis
share one weight point, so the 25 input points meet only 16 distinct weights; the points are
stored so that the ones sharing a weight are adjacent and each weight is one GEMM: point
``(l, k)`` (``l`` along axis 1, ``k`` along axis 2) is at ``5*l + k`` for ``l < 3`` and at
``12 + l + 2*k`` for the odd rows ``l = 3, 4``; weight ``(l', k')``, ``l', k' < 4`` (3 standing
for the odd phase), is ``U[4*l' + k']`` (see :data:`GROUPS`). Indices are unsigned
(``np.uint64``), which lets LLVM drop negative-index fix-ups.
"""

from __future__ import annotations

import numba
import numpy as np

#: Tile slots per block (the slot stride of V and M).
TB = 64
#: Channel stride of V and M: 25 points of TB slots plus padding, so that the GEMMs' row reads
#: do not fall on the same cache sets.
CS = 25 * TB + 16

#: ``(first point, points)`` of the input points multiplying each of the 16 weights.
GROUPS = tuple(
    (5 * l + k, 1 if k < 3 else 2) if l < 3 else (15 + 2 * k, 2 if k < 3 else 4)
    for l in range(4)
    for k in range(4)
)

_U = np.uint64
_F = np.float32
_Z = _F(0.0)

_JIT = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract"}}


@numba.njit(cache=True, nogil=True, error_model="numpy")
def transform_weights(w, U, q0, q1):  # pragma: no cover - compiled
    """``U[4*l + k, q, c]`` for ``q0 <= q < q1``: the taps of kernel ``(q, c)`` at the 16
    distinct weight points.

    w : (Q, C, 3, 3) float32; U : (16, Q, C) float32. Per axis the points are the taps
    ``(w0, w0 + w2, w2, w1)`` (the odd phase's two points share ``w1``); each 2-D point is a sum
    of at most four taps with coefficient 1, made in float64 and rounded once. Each output
    channel's taps are first copied channels-last (flat unsigned indices: the inner loops then
    run over contiguous ``c`` and vectorise).
    """
    Q, C = w.shape[0], w.shape[1]
    wf = w.reshape(-1)
    uf = U.reshape(-1)
    n = _U(C)
    g = np.empty(9 * C, np.float32)  # g[tap*C + c]: one output channel, channels last
    t = np.empty(12 * C)  # t[(l*3 + j)*C + c]: row point l of kernel column j, float64
    step = _U(Q * C)
    for q in range(q0, q1):
        src = _U(q * 9 * C)
        for c in range(n):
            for tap in range(9):
                g[_U(tap) * n + c] = wf[src + _U(9) * c + _U(tap)]
        for j in range(3):  # axis 1: taps 0, 0+2, 2 and 1 of kernel column j
            s0 = _U(j) * n
            s1 = s0 + _U(3) * n
            s2 = s0 + _U(6) * n
            for c in range(n):
                g0 = np.float64(g[s0 + c])
                g2 = np.float64(g[s2 + c])
                t[_U(j) * n + c] = g0
                t[_U(3 + j) * n + c] = g0 + g2
                t[_U(6 + j) * n + c] = g2
                t[_U(9 + j) * n + c] = np.float64(g[s1 + c])
        for l in range(4):  # axis 2: the same on each row point
            r = _U(3 * l) * n
            d = _U((4 * l * Q + q) * C)
            for c in range(n):
                r0 = t[r + c]
                r2 = t[r + _U(2) * n + c]
                uf[d + c] = np.float32(r0)
                uf[d + step + c] = np.float32(r0 + r2)
                uf[d + _U(2) * step + c] = np.float32(r2)
                uf[d + _U(3) * step + c] = np.float32(t[r + n + c])


@numba.njit(cache=True, inline="always")
def _load(x, plane, H, W, i, j):  # pragma: no cover - compiled
    if i < 0 or i >= H or j < 0 or j >= W:
        return _Z
    return x[_U(plane + i * W + j)]


@numba.njit(cache=True, inline="always")
def _bt(d0, d1, d2, d3, d4):  # pragma: no cover - compiled
    return d0 - d2, d2, d4 - d2, d1, d3


@numba.njit(**_JIT)
def input_tiles(x, b, C, H, W, p1, p2, TJ, t0, n, V):  # pragma: no cover - compiled
    """Transformed tiles ``t0 .. t0+n-1`` of image ``b``, every channel: ``V[c*CS + xi*TB + s]``.

    ``x`` is the flat input ``(B, C, H, W)``; tile ``t`` covers outputs ``2*(t // TJ) + 0..1``
    and ``2*(t % TJ) + 0..1`` and reads the 5x5 inputs from ``(4*(t // TJ) - p1,
    4*(t % TJ) - p2)`` (zeros outside the input).
    """
    P = np.empty(25, np.float32)
    for c in range(C):
        plane = (b * C + c) * H * W
        vo = _U(c) * _U(CS)
        for s in range(n):
            t = t0 + s
            i0 = 4 * (t // TJ) - p1
            j0 = 4 * (t % TJ) - p2
            if i0 >= 0 and i0 + 5 <= H and j0 >= 0 and j0 + 5 <= W:
                base = _U(plane + i0 * W + j0)
                for a in range(5):
                    r = base + _U(a * W)
                    P[5 * a], P[5 * a + 1], P[5 * a + 2], P[5 * a + 3], P[5 * a + 4] = _bt(
                        x[r], x[r + _U(1)], x[r + _U(2)], x[r + _U(3)], x[r + _U(4)])
            else:
                for a in range(5):
                    i = i0 + a
                    P[5 * a], P[5 * a + 1], P[5 * a + 2], P[5 * a + 3], P[5 * a + 4] = _bt(
                        _load(x, plane, H, W, i, j0), _load(x, plane, H, W, i, j0 + 1),
                        _load(x, plane, H, W, i, j0 + 2), _load(x, plane, H, W, i, j0 + 3),
                        _load(x, plane, H, W, i, j0 + 4))
            o = vo + _U(s)
            for k in range(5):  # the axis-1 transform, column k of the row-transformed patch
                v0, v1, v2, v3, v4 = _bt(P[k], P[5 + k], P[10 + k], P[15 + k], P[20 + k])
                V[o + _U(k * TB)] = v0
                V[o + _U((5 + k) * TB)] = v1
                V[o + _U((10 + k) * TB)] = v2
                V[o + _U((15 + 2 * k) * TB)] = v3
                V[o + _U((16 + 2 * k) * TB)] = v4


@numba.njit(cache=True, inline="always")
def _sums(M, r, st):  # pragma: no cover - compiled
    """A row of points' two column sums: points 0+1+3 and 1+2+4 (``st`` apart from ``r``)."""
    m1 = M[r + st]
    return M[r] + m1 + M[r + _U(3) * st], m1 + M[r + _U(2) * st] + M[r + _U(4) * st]


@numba.njit(**_JIT)
def output_tiles(M, bias, y, b, C, O1, O2, TJ, t0, n, T):  # pragma: no cover - compiled
    """Inverse-transform tiles ``t0 .. t0+n-1`` of image ``b`` into ``y`` plus the bias.

    ``y`` is the flat output ``(B, C, O1, O2)``; outputs past the last row or column of a
    partial tile are not written. ``T`` (4*TB floats) holds output ``(a, e)`` of every tile
    of the block at ``(2*a + e)*TB``.
    """
    m = _U(n)
    for c in range(C):
        mo = _U(c) * _U(CS)
        for s in range(m):  # one loop over the block's slots: every load is contiguous
            o = mo + s
            r3, r4 = o + _U(15 * TB), o + _U(16 * TB)  # the odd rows: points 2 TB apart
            za0, zb0 = _sums(M, o, _U(TB))
            za1, zb1 = _sums(M, o + _U(5 * TB), _U(TB))
            za2, zb2 = _sums(M, o + _U(10 * TB), _U(TB))
            za3, zb3 = _sums(M, r3, _U(2 * TB))
            za4, zb4 = _sums(M, r4, _U(2 * TB))
            T[s] = za0 + za1 + za3
            T[_U(TB) + s] = zb0 + zb1 + zb3
            T[_U(2 * TB) + s] = za1 + za2 + za4
            T[_U(3 * TB) + s] = zb1 + zb2 + zb4
        bc = bias[c]
        plane = (b * C + c) * O1 * O2
        t = t0
        while t < t0 + n:
            R, ja = t // TJ, t % TJ
            cnt = min(TJ - ja, t0 + n - t)
            s0 = t - t0
            full = max(0, min(cnt, O2 // 2 - ja))  # tiles with both columns inside
            for a in range(2):
                i = 2 * R + a
                if i >= O1:
                    break
                row = _U(plane + i * O2 + 2 * ja)
                src = _U(2 * a * TB + s0)
                for u in range(_U(full)):
                    y[row + _U(2) * u] = T[src + u] + bc
                    y[row + _U(2) * u + _U(1)] = T[src + _U(TB) + u] + bc
                if full < cnt:  # the last tile of an odd row: its first column only
                    y[row + _U(2 * full)] = T[src + _U(full)] + bc
            t += cnt
