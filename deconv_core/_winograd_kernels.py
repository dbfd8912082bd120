"""Private Numba kernels of the Winograd F(4x4, 3x3) route (float32 only, no validation).

Tiles of 4x4 outputs (6x6 inputs) are processed in blocks of at most ``TB`` tile *slots*. A block
is a list of segments, each a run of consecutive tiles of one tile row (one image, one dilation
phase); every segment is followed by one unused slot, so that a tile's 6 input columns are the
slot's 4 own columns plus the next slot's first 2 and the whole block's input transform is one
long, vectorisable loop over slots. Segment rows of ``seg`` (int64):
``(b, r1, r2, R, j0, nj, s0)``: image, phase on axes 1 and 2, tile row, first tile column,
tiles, first slot. With dilation ``d``, phase ``r`` holds outputs ``o = r + d*m``; tile ``(R, j)``
holds ``m1 in [4R, 4R+4)``, ``m2 in [4j, 4j+4)`` and reads inputs ``i = r + d*(4R + a) - p``.

Buffers (flat float32; every stride below is a compile-time constant, which lets LLVM prove
the loops' loads and stores apart and vectorise them):

* ``V`` (channels, 36, TB) with channel stride ``CS``: transformed input tiles, point
  ``xi = 6*l + k`` (``l`` along axis 1, ``k`` along axis 2); ``M`` likewise for the GEMM output.
* ``R6`` (6, SS): the block's six input rows after the axis-1 transform (one row of slots per
  transformed row, 4 columns a slot); ``S`` (6, SS): border rows gathered with zeros;
  ``T`` (36, TB) and ``Z`` (SS): scratch of the inverse transform.

Transform matrices use the interpolation points (0, 1, -1, 1/2, -2, inf), which halve the
rounding error of the common (0, +-1, +-2, inf) choice. Indices are unsigned (``np.uint64``):
Numba adds negative-index fix-ups to signed indices, which block vectorisation.
"""

from __future__ import annotations

import numba
import numpy as np

#: Tile slots per block (the slot stride of V, M and T).
TB = 64
#: Channel stride of V and M: 36 points of TB slots plus padding (a stride of 36*TB floats
#: made the GEMM's row reads collide in the cache and measured 35% slower).
#: (64 slots: the GEMMs ran at 127 GFLOP/s on one core at 64 and 128 slots, 95-104 at sizes
#: that are not multiples of 16.)
CS = 36 * TB + 16
#: Row stride of the gathered input rows S and of the output rows Z.
SS = 4 * TB + 8

_U = np.uint64
_F = np.float32
_Z = _F(0.0)
_H = _F(0.5)
_H3 = _F(1.5)
_H5 = _F(2.5)
_2 = _F(2.0)
_4 = _F(4.0)
_8 = _F(8.0)
_Q = _F(0.25)
_E = _F(0.125)

_JIT = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract"}}


@numba.njit(cache=True, nogil=True, error_model="numpy")
def transform_weights(g, Gm, U):  # pragma: no cover - compiled
    """``U[i*A + k, q, c] = float32(sum_jl Gm[i, j] g[q, j, l, c] Gm[k, l])``, summed in float64.

    g : (Q, r, r, C) float32 (channels last: every inner loop runs over contiguous ``c``, with
    flat unsigned indices so LLVM vectorises it); Gm : (A, r) float64; U : (A*A, Q, C) float32.
    """
    Q, r, C = g.shape[0], g.shape[1], g.shape[3]
    A = Gm.shape[0]
    gf = g.reshape(-1)
    uf = U.reshape(-1)
    t = np.empty(A * r * C)  # t[(i*r + l)*C + c] = sum_j Gm[i, j] g[q, j, l, c]
    acc = np.empty(C)
    n = _U(C)
    for q in range(Q):
        for i in range(A):
            for l in range(r):
                dst = _U((i * r + l) * C)
                for c in range(n):
                    t[dst + c] = 0.0
                for j in range(r):
                    gij = Gm[i, j]
                    src = _U(((q * r + j) * r + l) * C)
                    for c in range(n):
                        t[dst + c] += gij * np.float64(gf[src + c])
        for i in range(A):
            for k in range(A):
                dst = _U(((i * A + k) * Q + q) * C)
                acc[:] = 0.0
                for l in range(r):
                    gkl = Gm[k, l]
                    src = _U((i * r + l) * C)
                    for c in range(n):
                        acc[c] += t[src + c] * gkl
                for c in range(n):
                    uf[dst + c] = np.float32(acc[c])


@numba.njit(cache=True, inline="always")
def _bt(d0, d1, d2, d3, d4, d5):  # pragma: no cover - compiled
    """B^T d: the 1-D input transform of 6 values."""
    return (
        d0 - _H3 * d1 - _2 * d2 + _H3 * d3 + d4,
        -d1 + _H * d2 + _H5 * d3 + d4,
        d1 - _H5 * d2 + _H * d3 + d4,
        -_2 * d1 - d2 + _2 * d3 + d4,
        _H * d1 - d2 - _H * d3 + d4,
        d1 - _H3 * d2 - _2 * d3 + _H3 * d4 + d5,
    )


@numba.njit(cache=True, inline="always")
def _at(m0, m1, m2, m3, m4, m5):  # pragma: no cover - compiled
    """A^T m: the 1-D output transform of 6 values into 4."""
    return (
        m0 + m1 + m2 + m3 + m4,
        m1 - m2 + _H * m3 - _2 * m4,
        m1 + m2 + _Q * m3 + _4 * m4,
        m1 - m2 + _E * m3 - _8 * m4 + m5,
    )


@numba.njit(**_JIT)
def _rows_bt(S, so, n, V, vo):  # pragma: no cover - compiled
    """``V[vo + k*TB + t] = (B^T S[so + 4t : so + 4t + 6])_k`` for slots ``t < n`` (axis 2)."""
    for t in range(n):
        q = so + _U(4) * t
        v0, v1, v2, v3, v4, v5 = _bt(
            S[q], S[q + _U(1)], S[q + _U(2)], S[q + _U(3)], S[q + _U(4)], S[q + _U(5)]
        )
        o = vo + t
        V[o] = v0
        V[o + _U(TB)] = v1
        V[o + _U(2 * TB)] = v2
        V[o + _U(3 * TB)] = v3
        V[o + _U(4 * TB)] = v4
        V[o + _U(5 * TB)] = v5


@numba.njit(**_JIT)
def _cols_bt(src, o0, o1, o2, o3, o4, o5, n, S, so):  # pragma: no cover - compiled
    """``S[so + l*SS + u] = sum_a B^T[l, a] src[o_a + u]`` for ``u < n`` (axis 1)."""
    for u in range(n):
        v0, v1, v2, v3, v4, v5 = _bt(
            src[o0 + u], src[o1 + u], src[o2 + u], src[o3 + u], src[o4 + u], src[o5 + u]
        )
        o = so + u
        S[o] = v0
        S[o + _U(SS)] = v1
        S[o + _U(2 * SS)] = v2
        S[o + _U(3 * SS)] = v3
        S[o + _U(4 * SS)] = v4
        S[o + _U(5 * SS)] = v5


@numba.njit(**_JIT)
def _cols_bt_strided(src, o, row, step, n, S, so):  # pragma: no cover - compiled
    """:func:`_cols_bt` of the six rows ``src[o + a*row + step*u]`` (dilated columns)."""
    for u in range(n):
        q = o + step * u
        v0, v1, v2, v3, v4, v5 = _bt(
            src[q], src[q + row], src[q + _U(2) * row], src[q + _U(3) * row],
            src[q + _U(4) * row], src[q + _U(5) * row],
        )
        d = so + u
        S[d] = v0
        S[d + _U(SS)] = v1
        S[d + _U(2 * SS)] = v2
        S[d + _U(3 * SS)] = v3
        S[d + _U(4 * SS)] = v4
        S[d + _U(5 * SS)] = v5


@numba.njit(**_JIT)
def _cols_at(M, mo, n, T, to):  # pragma: no cover - compiled
    """``T[to + 6i*TB + t] = sum_l A^T[i, l] M[mo + 6l*TB + t]`` (axis-1 output transform)."""
    for t in range(n):
        i = mo + t
        y0, y1, y2, y3 = _at(
            M[i],
            M[i + _U(6 * TB)],
            M[i + _U(12 * TB)],
            M[i + _U(18 * TB)],
            M[i + _U(24 * TB)],
            M[i + _U(30 * TB)],
        )
        o = to + t
        T[o] = y0
        T[o + _U(6 * TB)] = y1
        T[o + _U(12 * TB)] = y2
        T[o + _U(18 * TB)] = y3


@numba.njit(**_JIT)
def _rows_at(T, to, n, Z, zo):  # pragma: no cover - compiled
    """``Z[zo + 4t + j] = sum_k A^T[j, k] T[to + k*TB + t]`` (axis-2 output transform)."""
    for t in range(n):
        i = to + t
        y0, y1, y2, y3 = _at(
            T[i], T[i + _U(TB)], T[i + _U(2 * TB)], T[i + _U(3 * TB)], T[i + _U(4 * TB)],
            T[i + _U(5 * TB)],
        )
        o = zo + _U(4) * t
        Z[o] = y0
        Z[o + _U(1)] = y1
        Z[o + _U(2)] = y2
        Z[o + _U(3)] = y3


@numba.njit(cache=True, inline="always")
def _cdiv(a, b):  # pragma: no cover - compiled
    return -((-a) // b)


@numba.njit(cache=True, inline="always")
def _zero(a, start, n):  # pragma: no cover - compiled
    for u in range(n):
        a[start + u] = _Z


@numba.njit(**_JIT)
def _segment_rows(x, plane, H, W, seg_row, d1, d2, p1, p2, S, R6):  # pragma: no cover
    """Axis-1 transform of one segment's six input rows into ``R6`` (zeros outside the input).

    Tile rows inside the input are read straight from ``x``; border rows are first gathered
    into the six rows of ``S`` (zeros outside).
    """
    r1, r2, R, j0, nj, s0 = seg_row[1], seg_row[2], seg_row[3], seg_row[4], seg_row[5], seg_row[6]
    width = 4 * nj + 4  # the segment's slots, the unused one included
    c0 = r2 + d2 * 4 * j0 - p2  # input column of the segment's first column
    lo = min(width - 2, max(0, _cdiv(-c0, d2)))  # first column inside the input
    hi = max(lo, min(width - 2, _cdiv(W - c0, d2)))  # one past the last
    i0 = r1 + d1 * 4 * R - p1
    base = _U(4 * s0)
    for l in range(6):
        _zero(R6, base + _U(l * SS), _U(lo))
        _zero(R6, base + _U(l * SS + hi), _U(width - hi))
    if hi == lo:
        return
    if i0 >= 0 and i0 + 5 * d1 < H:  # all six rows inside the input: read them in place
        o = _U((plane + i0) * W + c0 + d2 * lo)
        step = _U(d1 * W)
        if d2 == 1:
            _cols_bt(x, o, o + step, o + _U(2) * step, o + _U(3) * step, o + _U(4) * step,
                     o + _U(5) * step, _U(hi - lo), R6, base + _U(lo))
        else:
            _cols_bt_strided(x, o, step, _U(d2), _U(hi - lo), R6, base + _U(lo))
        return
    for a in range(6):
        i1 = i0 + d1 * a
        dst = _U(a * SS)
        if i1 < 0 or i1 >= H:
            _zero(S, dst, _U(hi - lo))
            continue
        src = _U((plane + i1) * W + c0 + d2 * lo)
        step = _U(d2)
        for u in range(_U(hi - lo)):
            S[dst + u] = x[src + step * u]
    _cols_bt(S, _U(0), _U(SS), _U(2 * SS), _U(3 * SS), _U(4 * SS), _U(5 * SS), _U(hi - lo),
             R6, base + _U(lo))


@numba.njit(**_JIT)
def input_tiles(x, C, H, W, seg, ns, d1, d2, p1, p2, V, S, R6):  # pragma: no cover - compiled
    """Transformed input tiles of one block, every channel: ``V[c*CS + xi*TB + t]``.

    ``x`` is the flat input ``(B, C, H, W)``; ``p1, p2`` are the pads before each axis.
    """
    n = _U(ns)
    for c in range(C):
        for k in range(seg.shape[0]):
            plane = (seg[k, 0] * C + c) * H
            _segment_rows(x, plane, H, W, seg[k], d1, d2, p1, p2, S, R6)
        vo = _U(c) * _U(CS)
        for l in range(6):
            _rows_bt(R6, _U(l * SS), n, V, vo + _U(6 * l * TB))


@numba.njit(**_JIT)
def _rows_at_out(T, to, n, y, yo, bc):  # pragma: no cover - compiled
    """``y[yo + 4t + j] = sum_k A^T[j, k] T[to + k*TB + t] + bc``: whole tiles into a row."""
    for t in range(n):
        i = to + t
        y0, y1, y2, y3 = _at(
            T[i], T[i + _U(TB)], T[i + _U(2 * TB)], T[i + _U(3 * TB)], T[i + _U(4 * TB)],
            T[i + _U(5 * TB)],
        )
        o = yo + _U(4) * t
        y[o] = y0 + bc
        y[o + _U(1)] = y1 + bc
        y[o + _U(2)] = y2 + bc
        y[o + _U(3)] = y3 + bc


@numba.njit(**_JIT)
def output_tiles(M, bias, y, C, O1, O2, seg, ns, d1, d2, T, Z):  # pragma: no cover - compiled
    """Inverse-transform one block's GEMM output into ``y`` and add the bias, every channel.

    ``y`` is the flat output ``(B, C, O1, O2)``. Whole tiles of dilation-1 rows go straight into
    the output; partial tiles and dilated rows go through the row buffer ``Z``.
    """
    n = _U(ns)
    for c in range(C):
        mo = _U(c) * _U(CS)
        for k in range(6):
            _cols_at(M, mo + _U(k * TB), n, T, _U(k * TB))
        bc = bias[c]
        for k in range(seg.shape[0]):
            b, r1, r2, R, j0, nj, s0 = seg[k]
            o2 = r2 + d2 * 4 * j0
            cnt = min(4 * nj, (O2 - o2 + d2 - 1) // d2)  # outputs of the segment's rows
            whole = cnt // 4 if d2 == 1 else 0  # tiles written straight into y
            plane = (b * C + c) * O1
            for i in range(4):
                o1 = r1 + d1 * (4 * R + i)
                if o1 >= O1:
                    break
                row = (plane + o1) * O2 + o2
                ti = _U(i * 6 * TB + s0)
                if whole > 0:
                    _rows_at_out(T, ti, _U(whole), y, _U(row), bc)
                if cnt == 4 * whole:
                    continue
                _rows_at(T, ti + _U(whole), _U(nj - whole), Z, _U(0))
                z = _U(0)
                step = _U(d2)
                dst = _U(row + 4 * whole * d2)
                for u in range(_U(cnt - 4 * whole)):
                    y[dst + step * u] = Z[z + u] + bc
