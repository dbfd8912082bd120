"""Private Numba kernels of the phase routes (``deconv_core._phase``); no validation here.

Arrays are C-contiguous with three spatial axes. The routes work on zero-padded copies of one
image laid out so that every tap of a window conv is one contiguous shifted copy (flat indices
throughout: array views inside the loops cost more than the copies), and on flat window grids
with strides ``(U1*RS, RS, 1)`` whose padding windows are computed and then skipped.
"""

from __future__ import annotations

import numba
import numpy as np

from deconv_core._kernels import _ceil_div


@numba.njit(cache=True, nogil=True)
def phase_weights(w, taps0, taps1, taps2, groups, out):  # pragma: no cover - compiled
    """The phase route's window-conv weight, transposed (``deconv_core._phase.weight_matrix``).

    w : (C_in, Cog, K0, K1, K2); taps_a : (s_a, L_a), a tap or K_a for a zero tap;
    out : (G, Cig*L0*L1*L2, Cog*P), row ``((ci*L0 + a0)*L1 + a1)*L2 + a2``, column
    ``((co*s0 + p0)*s1 + p1)*s2 + p2``. One kernel plane ``w[ci, co]`` at a time (it stays in
    L1) gives its runs of P contiguous columns in every row (35% faster on T3 than gathering
    each output row from all the planes).
    """
    Cog, K0, K1, K2 = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    s0, L0 = taps0.shape
    s1, L1 = taps1.shape
    s2, L2 = taps2.shape
    Cig = w.shape[0] // groups
    P = s0 * s1 * s2
    A = L0 * L1 * L2
    K = K0 * K1 * K2
    wf = w.reshape(-1)
    of = out.reshape(-1)
    taps = np.empty((A, P), np.int64)  # flat tap of phase p at window position a, -1: zero
    for a0 in range(L0):
        for a1 in range(L1):
            for a2 in range(L2):
                a = (a0 * L1 + a1) * L2 + a2
                m = 0
                for p0 in range(s0):
                    for p1 in range(s1):
                        for p2 in range(s2):
                            t0, t1, t2 = taps0[p0, a0], taps1[p1, a1], taps2[p2, a2]
                            ok = t0 < K0 and t1 < K1 and t2 < K2
                            taps[a, m] = (t0 * K1 + t1) * K2 + t2 if ok else -1
                            m += 1
    row = Cog * P
    for g in range(groups):
        for ci in range(Cig):
            for co in range(Cog):
                src = ((g * Cig + ci) * Cog + co) * K
                for a in range(A):
                    dst = ((g * Cig + ci) * A + a) * row + co * P
                    for p in range(P):
                        t = taps[a, p]
                        of[dst + p] = wf[src + t] if t >= 0 else 0


@numba.njit(cache=True, nogil=True)
def pad_image(x, b, lo, dims, xp):  # pragma: no cover - compiled
    """Image ``b`` of x, zero-padded: ``xp[ci, u0, u1, u2] = x[b, ci, u0+lo0, u1+lo1, u2+lo2]``.

    dims = (U0, U1, RS); xp is flat ``(C_in, U0, U1, RS)`` plus a zero tail (the phase route's
    windows read a little past the last plane).
    """
    C, N0, N1, N2 = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    U0, U1, RS = dims
    lo0, lo1, lo2 = lo
    xp[:] = 0
    a2 = max(0, -lo2)
    e2 = min(RS, N2 - lo2)
    for c in range(C):
        for u0 in range(max(0, -lo0), min(U0, N0 - lo0)):
            for u1 in range(max(0, -lo1), min(U1, N1 - lo1)):
                q = ((c * U0 + u0) * U1 + u1) * RS
                if e2 > a2:
                    xp[q + a2 : q + e2] = x[b, c, u0 + lo0, u1 + lo1, a2 + lo2 : e2 + lo2]


@numba.njit(cache=True, nogil=True)
def window_cols(xp, chan, offs, t0, t1, cols):  # pragma: no cover - compiled
    """Shifted copies of a padded image: ``cols[ci*T + k, v] = xp[ci*chan + offs[k] + t0 + v]``
    for ``v < t1 - t0`` (``T = len(offs)`` taps), one contiguous copy per row."""
    T = offs.shape[0]
    n = np.uint64(t1 - t0)
    for r in range(cols.shape[0]):
        src = np.uint64((r // T) * chan + offs[r % T] + t0)
        dst = cols[r]
        for v in range(n):
            dst[v] = xp[src + v]


@numba.njit(cache=True, inline="always")
def _strided(yf, o, src, q, step, n, bc):  # pragma: no cover - compiled
    """``yf[o + step*v] = src[q + v] + bc`` for ``v < n``."""
    oo, qq, st = np.uint64(o), np.uint64(q), np.uint64(step)
    for v in range(np.uint64(n)):
        yf[oo + st * v] = src[qq + v] + bc


@numba.njit(cache=True, nogil=True)
def phase_scatter(yt, q0, bias, y, b, t0, t1, grid, stride, e0, e1, e2):  # pragma: no cover
    """Depth-to-space copy of one tile of the phase route's window conv, plus the bias.

    yt : (G, nq, t1-t0): rows ``q0 .. q0+nq`` (whole output channels) of the window conv, row
    ``q = ((co*s0 + p0)*s1 + p1)*s2 + p2``, column ``t - t0`` for the flat window index ``t``
    (strides ``(U1*RS, RS, 1)``, grid = (U1, RS, J1, J2): windows with ``n1 >= J1`` or
    ``n2 >= J2`` are padding). Window ``(n0, n1, n2)`` of phase ``(p0, p1, p2)`` is output
    ``e_a[p_a] + s_a*n_a`` on each axis (outputs outside the result are skipped). Flat
    indices throughout (array views in the loops cost more than the copies).
    """
    G, nq, n = yt.shape
    s0, s1, s2 = stride
    U1, RS, J1, J2 = grid
    P = s0 * s1 * s2
    C, O0, O1, O2 = y.shape[1], y.shape[2], y.shape[3], y.shape[4]
    ytf = yt.reshape(-1)
    yf = y.reshape(-1)
    plo = np.empty(s2, np.int64)  # windows of a whole row inside the output, per phase
    phi = np.empty(s2, np.int64)
    for p2 in range(s2):
        plo[p2] = min(J2, max(0, _ceil_div(-e2[p2], s2)))
        phi[p2] = max(plo[p2], min(J2, _ceil_div(O2 - e2[p2], s2)))
    for g in range(G):
        for j in range(nq // s2):
            q = q0 + j * s2  # first of the s2 rows of one (co, p0, p1)
            p0 = (q // (s1 * s2)) % s0
            p1 = (q // s2) % s1
            c = g * (C // G) + q // P
            bc = bias[c]
            for r in range(t0 // RS, -(-t1 // RS)):  # window rows of the tile
                n1 = r % U1
                if n1 >= J1:
                    continue
                o0 = e0[p0] + s0 * (r // U1)
                o1 = e1[p1] + s1 * n1
                if o0 < 0 or o0 >= O0 or o1 < 0 or o1 >= O1:
                    continue
                row = (((b * C + c) * O0 + o0) * O1 + o1) * O2
                c0 = max(0, t0 - r * RS)  # the row's first and last windows in the tile
                c1 = min(J2, t1 - r * RS)
                src = (g * nq + j * s2) * n + r * RS - t0
                if s2 == 2:  # interleave the two phases: y[2m] and y[2m+1] in one loop
                    ha = e2[0] // 2  # y[2m] = phase 0 at n = m - ha
                    hb = (e2[1] - 1) // 2  # y[2m+1] = phase 1 at n = m - hb
                    a_lo, a_hi = max(0, c0 + ha), min(c1 + ha, (O2 + 1) // 2)
                    b_lo, b_hi = max(0, c0 + hb), min(c1 + hb, O2 // 2)
                    m_lo = max(a_lo, b_lo)
                    m_hi = max(m_lo, min(a_hi, b_hi))
                    for m in range(a_lo, min(a_hi, m_lo)):  # the ends one phase has alone
                        yf[row + 2 * m] = ytf[src + m - ha] + bc
                    for m in range(max(a_lo, m_hi), a_hi):
                        yf[row + 2 * m] = ytf[src + m - ha] + bc
                    for m in range(b_lo, min(b_hi, m_lo)):
                        yf[row + 2 * m + 1] = ytf[src + n + m - hb] + bc
                    for m in range(max(b_lo, m_hi), b_hi):
                        yf[row + 2 * m + 1] = ytf[src + n + m - hb] + bc
                    if m_hi > m_lo:
                        ya = np.uint64(row + 2 * m_lo)
                        sa = np.uint64(src + m_lo - ha)
                        sb = np.uint64(src + n + m_lo - hb)
                        for v in range(np.uint64(m_hi - m_lo)):
                            yf[ya + np.uint64(2) * v] = ytf[sa + v] + bc
                            yf[ya + np.uint64(2) * v + np.uint64(1)] = ytf[sb + v] + bc
                    continue
                full = c0 == 0 and c1 == J2
                for p2 in range(s2):  # one strided run per phase
                    if full:
                        lo, hi = plo[p2], phi[p2]
                    else:
                        lo = max(c0, plo[p2])
                        hi = min(c1, phi[p2])
                    if hi > lo:
                        o = row + e2[p2] + s2 * lo
                        _strided(yf, o, ytf, src + p2 * n + lo, s2, hi - lo, bc)


@numba.njit(cache=True, nogil=True)
def phase_split(x, b, stride, dmin, dims, xq):  # pragma: no cover - compiled
    """Image ``b`` of x split by input phase and zero-padded, for the conv phase route.

    ``xq[ci, f0, f1, f2, u0, u1, u2] = x[b, ci, s0*(u0 + dmin0) + f0, ...]`` (zero outside the
    input); dims = (U0, U1, RS); xq is flat, with a zero tail.
    """
    C, N0, N1, N2 = x.shape[1], x.shape[2], x.shape[3], x.shape[4]
    s0, s1, s2 = stride
    U0, U1, RS = dims
    xq[:] = 0
    xf = x.reshape(-1)
    q = 0
    for c in range(C):
        for f0 in range(s0):
            for f1 in range(s1):
                for f2 in range(s2):
                    for u0 in range(U0):
                        i0 = s0 * (u0 + dmin[0]) + f0
                        for u1 in range(U1):
                            i1 = s1 * (u1 + dmin[1]) + f1
                            if 0 <= i0 < N0 and 0 <= i1 < N1:
                                row = (((b * C + c) * N0 + i0) * N1 + i1) * N2
                                # u2 with 0 <= s2*(u2 + dmin2) + f2 < N2
                                lo = max(0, _ceil_div(-f2, s2) - dmin[2])
                                hi = min(RS, _ceil_div(N2 - f2, s2) - dmin[2])
                                src = np.uint64(row + s2 * (lo + dmin[2]) + f2)
                                dst = np.uint64(q + lo)
                                step = np.uint64(s2)
                                for v in range(np.uint64(max(0, hi - lo))):
                                    xq[dst + v] = xf[src + step * v]
                            q += RS
