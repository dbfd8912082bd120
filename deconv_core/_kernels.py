"""Private Numba kernels. No validation here: ``deconv_core.params`` has checked everything.

Every array is C-contiguous with three spatial axes (ranks 1 and 2 are padded with size-1 axes).
Index rules (docs/semantics.md): conv output ``o`` reads input ``o*s + t*d - off``; transposed
conv input ``i`` scatters to output ``i*s + t*d - off``. Each ``prange`` iterates over work items
that write disjoint parts of the output, so no two threads touch the same element.
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = {"parallel": True, "cache": True, "nogil": True, "error_model": "numpy"}


@numba.njit(cache=True, inline="always")
def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


@numba.njit(cache=True, inline="always")
def _range(n_src: int, n_dst: int, s: int, t_d: int, off: int) -> tuple[int, int]:
    """Indices ``i`` in ``[0, n_src)`` with ``0 <= i*s + t_d - off < n_dst``, as ``[lo, hi)``."""
    lo = min(n_src, max(0, _ceil_div(off - t_d, s)))
    hi = max(lo, min(n_src, (n_dst - 1 + off - t_d) // s + 1))
    return lo, hi


@numba.njit(cache=True, inline="always")
def _fill(out, value) -> None:
    """Set every element of a 3-D block to ``value`` (the bias, before accumulation)."""
    for p0 in range(out.shape[0]):
        for p1 in range(out.shape[1]):
            for p2 in range(out.shape[2]):
                out[p0, p1, p2] = value


@numba.njit(cache=True, inline="always")
def _add_scaled(out, src, wv, lo, hi, s, base) -> None:
    """``out[o] += wv * src[o*s + base]`` for ``lo <= o < hi`` (a contiguous loop when s == 1)."""
    if s == 1:  # contiguous, vectorisable
        for o in range(lo, hi):
            out[o] += wv * src[o + base]
    else:
        for o in range(lo, hi):
            out[o] += wv * src[o * s + base]


@numba.njit(cache=True, inline="always")
def _set_scaled(out, src, wv, lo, hi, s, base, bv, a, e) -> None:
    """``out[a:e] = bv``, then ``out[o] = bv + wv * src[o*s + base]`` for ``lo <= o < hi``: the
    bias fill and the first :func:`_add_scaled` in one pass, with the same roundings."""
    if hi <= lo:
        lo = hi = e
    for o in range(a, lo):
        out[o] = bv
    if s == 1:
        for o in range(lo, hi):
            out[o] = bv + wv * src[o + base]
    else:
        for o in range(lo, hi):
            out[o] = bv + wv * src[o * s + base]
    for o in range(hi, e):
        out[o] = bv


@numba.njit(cache=True, nogil=True, error_model="numpy")
def col2im_image(cols, bias, y, stride, dilation, offset, c0):  # pragma: no cover - compiled
    """Scatter one image's GEMM columns into its output and add the bias, on the calling thread
    (a worker of ``_threads.run_parts``; serial: the work items are the parallelism).

    cols : (G, Cc, K0, K1, K2, N0, N1, N2), output channels ``c0 .. c0+Cc`` of every group;
    bias : (C_out,); y : (C_out, O0, O1, O2), the image's output. For each output channel: the
    bias, then every tap's plane added where the tap puts it (``y[i*s + t*d - off] += cols[t, i]``),
    taps in order. Flat unsigned indices throughout: array views and signed indices (with their
    wrap-around checks) in the inner loops ran this 3x slower (T1's 64-channel block: 0.39 ms
    against 0.13).
    """
    G, Cc, K0, K1, K2, N0, N1, N2 = cols.shape
    C, O0, O1, O2 = y.shape
    Cog = C // G
    s0, s1, s2 = stride
    d0, d1, d2 = dilation
    f0, f1, f2 = offset
    cf = cols.reshape(-1)
    yf = y.reshape(-1)
    plane = np.uint64(O0 * O1 * O2)
    nplane = np.uint64(N0 * N1 * N2)
    step = np.uint64(s2)
    for g in range(G):
        for o in range(Cc):
            co = g * Cog + c0 + o
            yb = np.uint64(co) * plane
            _fill(y[co], bias[co])  # one view per channel: cheap; per tap it was not
            for t0 in range(K0):
                lo0, hi0 = _range(N0, O0, s0, t0 * d0, f0)
                for t1 in range(K1):
                    lo1, hi1 = _range(N1, O1, s1, t1 * d1, f1)
                    for t2 in range(K2):
                        lo2, hi2 = _range(N2, O2, s2, t2 * d2, f2)
                        n = np.uint64(hi2 - lo2)
                        tap = (((g * Cc + o) * K0 + t0) * K1 + t1) * K2 + t2
                        sb = np.uint64(tap) * nplane
                        for i0 in range(lo0, hi0):
                            p0 = i0 * s0 + t0 * d0 - f0
                            for i1 in range(lo1, hi1):
                                p1 = i1 * s1 + t1 * d1 - f1
                                ob = yb + np.uint64((p0 * O1 + p1) * O2 + lo2 * s2 + t2 * d2 - f2)
                                sr = sb + np.uint64((i0 * N1 + i1) * N2 + lo2)
                                if s2 == 1:  # contiguous, vectorisable
                                    for v in range(n):
                                        yf[ob + v] += cf[sr + v]
                                else:
                                    for v in range(n):
                                        yf[ob + step * v] += cf[sr + v]


@numba.njit(**_JIT)
def conv_direct(x, w, bias, y, groups, stride, dilation, offset):  # pragma: no cover - compiled
    """Direct grouped convolution, for depthwise and small cases.

    x : (B, C_in, N0, N1, N2); w : (C_out, Cig, K0, K1, K2); y : (B, C_out, O0, O1, O2).
    """
    B, C_out, O0, O1, O2 = y.shape
    Cig, K0, K1, K2 = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    N0, N1, N2 = x.shape[2], x.shape[3], x.shape[4]
    Cog = C_out // groups
    s0, s1, s2 = stride
    d0, d1, d2 = dilation
    f0, f1, f2 = offset
    for job in numba.prange(B * C_out):
        b = job // C_out
        co = job % C_out
        g = co // Cog
        out = y[b, co]
        _fill(out, bias[co])
        for c in range(Cig):
            src = x[b, g * Cig + c]
            for t0 in range(K0):
                lo0, hi0 = _range(O0, N0, s0, t0 * d0, f0)
                for t1 in range(K1):
                    lo1, hi1 = _range(O1, N1, s1, t1 * d1, f1)
                    for t2 in range(K2):
                        lo2, hi2 = _range(O2, N2, s2, t2 * d2, f2)
                        wv = w[co, c, t0, t1, t2]
                        base2 = t2 * d2 - f2
                        for o0 in range(lo0, hi0):
                            i0 = o0 * s0 + t0 * d0 - f0
                            for o1 in range(lo1, hi1):
                                row = out[o0, o1]
                                srow = src[i0, o1 * s1 + t1 * d1 - f1]
                                _add_scaled(row, srow, wv, lo2, hi2, s2, base2)


@numba.njit(**_JIT)
def conv_direct_rows(x, w, bias, y, groups, stride, dilation, offset, chunk):  # pragma: no cover
    """:func:`conv_direct` split over output row pieces instead of (image, channel) planes.

    For calls with fewer planes than threads (one image, one or two channels: a 1-D signal, a
    mono image): every job is one output row ``y[b, co, o0, o1]`` or a ``chunk``-long piece of
    it, so all threads work. Each element sums its terms in :func:`conv_direct`'s order (bias,
    then input channels, then taps), so both give the same bits; the bias is written together
    with the first term (:func:`_set_scaled`), one pass less over the row.
    """
    B, C_out, O0, O1, O2 = y.shape
    Cig, K0, K1, K2 = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    N0, N1, N2 = x.shape[2], x.shape[3], x.shape[4]
    Cog = C_out // groups
    s0, s1, s2 = stride
    d0, d1, d2 = dilation
    f0, f1, f2 = offset
    pieces = _ceil_div(O2, chunk)
    for job in numba.prange(B * C_out * O0 * O1 * pieces):
        piece = job % pieces
        row = job // pieces
        o1 = row % O1
        o0 = (row // O1) % O0
        co = (row // (O1 * O0)) % C_out
        b = row // (O1 * O0 * C_out)
        g = co // Cog
        a = piece * chunk
        e = min(O2, a + chunk)
        out = y[b, co, o0, o1]
        bv = bias[co]
        started = False  # the first term is written with the bias: one pass less over out
        for c in range(Cig):
            src = x[b, g * Cig + c]
            for t0 in range(K0):
                i0 = o0 * s0 + t0 * d0 - f0
                if i0 < 0 or i0 >= N0:
                    continue
                for t1 in range(K1):
                    i1 = o1 * s1 + t1 * d1 - f1
                    if i1 < 0 or i1 >= N1:
                        continue
                    srow = src[i0, i1]
                    for t2 in range(K2):
                        lo2, hi2 = _range(O2, N2, s2, t2 * d2, f2)
                        lo2, hi2 = max(lo2, a), min(hi2, e)
                        wv = w[co, c, t0, t1, t2]
                        base2 = t2 * d2 - f2
                        if started:
                            _add_scaled(out, srow, wv, lo2, hi2, s2, base2)
                        else:
                            _set_scaled(out, srow, wv, lo2, hi2, s2, base2, bv, a, e)
                            started = True
        if not started:  # no term reaches this piece (all taps in the padding)
            for o2 in range(a, e):
                out[o2] = bv


@numba.njit(cache=True)
def plane_layout(N, O, K, s, d, f):  # pragma: no cover - compiled
    """Phase-plane geometry of one axis of :func:`transpose_direct`.

    Output ``o = p + s*u`` is phase ``p``, position ``u < L``. Tap ``t`` adds input ``i`` at
    ``u = i + c`` in phase ``(t*d - f) mod s``, with shift ``c = (t*d - f - p) // s``. Returns
    ``(L, E, width)``: the positions per phase, the zero margin before the input and the row
    length shared by the padded input and the phase planes (margins make every read land on
    the input or on zeros).
    """
    L = -((-O) // s)
    c_lo = 0
    c_hi = 0
    for t in range(K):
        c = (t * d - f) // s
        c_lo = min(c_lo, c)
        c_hi = max(c_hi, c)
    E = max(0, c_hi)
    return L, E, max(L + E - c_lo, E + N)


@numba.njit(**_JIT)
def transpose_direct(x, w, bias, y, groups, stride, dilation, offset):  # pragma: no cover
    """Direct grouped transposed convolution, for depthwise and small cases.

    x : (B, C_in, N0, N1, N2); w : (C_in, Cog, K0, K1, K2); y : (B, C_out, O0, O1, O2).
    Axis 0 gathers (each output slice visits the taps that reach it). Axes 1 and 2 scatter into
    one plane per output phase: the input plane is copied into a zero-margined buffer with the
    planes' row length, so each tap is one long contiguous multiply-add over a whole plane;
    the planes are interleaved into the output at the end. (A scatter with stride-``s2`` stores
    ran at 2 GFLOP/s on the depthwise T6; per-row loops of 32 spent most time entering loops.)
    """
    B, C_out, O0, O1, O2 = y.shape
    Cog, K0, K1, K2 = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    N0, N1, N2 = x.shape[2], x.shape[3], x.shape[4]
    Cig = x.shape[1] // groups
    s0, s1, s2 = stride
    d0, d1, d2 = dilation
    f0, f1, f2 = offset
    L1, E1, _ = plane_layout(N1, O1, K1, s1, d1, f1)
    _, E2, LW = plane_layout(N2, O2, K2, s2, d2, f2)
    rows = 0
    for t1 in range(K1):
        rows = max(rows, L1 + E1 - (t1 * d1 - f1) // s1)
    rows = max(rows, E1 + N1)
    plane = L1 * LW
    for job in numba.prange(B * C_out):
        b = job // C_out
        co = job % C_out
        g = co // Cog
        o = co % Cog
        X = np.zeros(rows * LW, dtype=y.dtype)
        P = np.empty(s1 * s2 * plane, dtype=y.dtype)
        for o0 in range(O0):
            P[:] = bias[co]
            for c in range(Cig):
                ci = g * Cig + c
                for t0 in range(K0):
                    q0 = o0 + f0 - t0 * d0
                    if q0 < 0 or q0 % s0 != 0 or q0 // s0 >= N0:
                        continue
                    src = x[b, ci, q0 // s0]
                    for i1 in range(N1):
                        X[(i1 + E1) * LW + E2 : (i1 + E1) * LW + E2 + N2] = src[i1]
                    for t1 in range(K1):
                        e1 = t1 * d1 - f1
                        p1 = e1 % s1
                        c1 = (e1 - p1) // s1
                        for t2 in range(K2):
                            e2 = t2 * d2 - f2
                            p2 = e2 % s2
                            c2 = (e2 - p2) // s2
                            wv = w[ci, o, t0, t1, t2]
                            dst = np.uint64((p1 * s2 + p2) * plane)
                            off = np.uint64((E1 - c1) * LW + E2 - c2)
                            for v in range(np.uint64(plane)):
                                P[dst + v] += wv * X[off + v]
            for p1 in range(min(s1, O1)):
                for u1 in range(L1):
                    o1 = p1 + s1 * u1
                    if o1 >= O1:
                        break
                    row = y[b, co, o0, o1]
                    q = np.uint64(p1 * s2 * plane + u1 * LW)
                    if s2 == 2:  # two phases: an interleaving copy LLVM vectorises
                        q1 = q + np.uint64(plane)
                        for u2 in range(np.uint64(O2 // 2)):
                            row[np.uint64(2) * u2] = P[q + u2]
                            row[np.uint64(2) * u2 + np.uint64(1)] = P[q1 + u2]
                        if O2 % 2:
                            row[O2 - 1] = P[q + np.uint64(O2 // 2)]
                        continue
                    for p2 in range(min(s2, O2)):
                        qp = q + np.uint64(p2 * plane)
                        for u2 in range(np.uint64((O2 - p2 + s2 - 1) // s2)):
                            row[np.uint64(p2) + np.uint64(s2) * u2] = P[qp + u2]


@numba.njit(**_JIT)
def col2im_patch(cols, bias, y, stride, dilation, offset):  # pragma: no cover - compiled
    """Scatter per-pixel kernel patches into the output and add the bias (large kernels).

    cols : (G, B, N0, N1, N2, Cog, K0, K1, K2), one contiguous kernel patch per input pixel and
    output channel; bias : (C_out,); y : (B, C_out, O0, O1, O2). Best when the kernel rows are
    long (the inner loop runs along a kernel row, contiguous in cols and, for dilation 1, in y).
    """
    G, B, N0, N1, N2, Cog, K0, K1, K2 = cols.shape
    O0, O1, O2 = y.shape[2], y.shape[3], y.shape[4]
    s0, s1, s2 = stride
    d0, d1, d2 = dilation
    f0, f1, f2 = offset
    C_out = G * Cog
    for job in numba.prange(B * C_out):
        b = job // C_out
        co = job % C_out
        g = co // Cog
        o = co % Cog
        out = y[b, co]
        _fill(out, bias[co])
        for i0 in range(N0):
            for i1 in range(N1):
                for i2 in range(N2):
                    patch = cols[g, b, i0, i1, i2, o]
                    # taps t2 with 0 <= i2*s2 + t2*d2 - f2 < O2
                    lo2, hi2 = _range(K2, O2, d2, i2 * s2, f2)
                    base2 = i2 * s2 - f2
                    for t0 in range(K0):
                        p0 = i0 * s0 + t0 * d0 - f0
                        if p0 < 0 or p0 >= O0:
                            continue
                        for t1 in range(K1):
                            p1 = i1 * s1 + t1 * d1 - f1
                            if p1 < 0 or p1 >= O1:
                                continue
                            row = out[p0, p1]
                            prow = patch[t0, t1]
                            for t2 in range(lo2, hi2):
                                row[base2 + t2 * d2] += prow[t2]
