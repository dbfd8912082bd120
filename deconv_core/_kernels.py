"""Private Numba kernels. No validation here: ``deconv_core.params`` has checked everything.

Every array is C-contiguous with three spatial axes (ranks 1 and 2 are padded with size-1 axes).
Index rules (docs/semantics.md): conv output ``o`` reads input ``o*s + t*d - off``; transposed
conv input ``i`` scatters to output ``i*s + t*d - off``. Each ``prange`` iterates over work items
that write disjoint parts of the output, so no two threads touch the same element.
"""

from __future__ import annotations

import numba

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


@numba.njit(**_JIT)
def col2im(cols, bias, y, stride, dilation, offset):  # pragma: no cover - compiled
    """Scatter GEMM columns into the output and add the bias.

    cols : (G, Cog, K0, K1, K2, B, N0, N1, N2); bias : (C_out,); y : (B, C_out, O0, O1, O2).
    """
    G, Cog, K0, K1, K2, B, N0, N1, N2 = cols.shape
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
        for t0 in range(K0):
            lo0, hi0 = _range(N0, O0, s0, t0 * d0, f0)
            for t1 in range(K1):
                lo1, hi1 = _range(N1, O1, s1, t1 * d1, f1)
                for t2 in range(K2):
                    lo2, hi2 = _range(N2, O2, s2, t2 * d2, f2)
                    src = cols[g, o, t0, t1, t2, b]
                    base2 = t2 * d2 - f2
                    for i0 in range(lo0, hi0):
                        p0 = i0 * s0 + t0 * d0 - f0
                        for i1 in range(lo1, hi1):
                            p1 = i1 * s1 + t1 * d1 - f1
                            row = out[p0, p1]
                            srow = src[i0, i1]
                            if s2 == 1:  # contiguous, vectorisable
                                for i2 in range(lo2, hi2):
                                    row[i2 + base2] += srow[i2]
                            else:
                                for i2 in range(lo2, hi2):
                                    row[i2 * s2 + base2] += srow[i2]


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
                                for o2 in range(lo2, hi2):
                                    row[o2] += wv * srow[o2 * s2 + base2]


@numba.njit(**_JIT)
def transpose_direct(x, w, bias, y, groups, stride, dilation, offset):  # pragma: no cover
    """Direct grouped transposed convolution (scatter form), for depthwise and small cases.

    x : (B, C_in, N0, N1, N2); w : (C_in, Cog, K0, K1, K2); y : (B, C_out, O0, O1, O2).
    """
    B, C_out, O0, O1, O2 = y.shape
    Cog, K0, K1, K2 = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    N0, N1, N2 = x.shape[2], x.shape[3], x.shape[4]
    Cig = x.shape[1] // groups
    s0, s1, s2 = stride
    d0, d1, d2 = dilation
    f0, f1, f2 = offset
    for job in numba.prange(B * C_out):
        b = job // C_out
        co = job % C_out
        g = co // Cog
        o = co % Cog
        out = y[b, co]
        _fill(out, bias[co])
        for c in range(Cig):
            ci = g * Cig + c
            src = x[b, ci]
            for t0 in range(K0):
                lo0, hi0 = _range(N0, O0, s0, t0 * d0, f0)
                for t1 in range(K1):
                    lo1, hi1 = _range(N1, O1, s1, t1 * d1, f1)
                    for t2 in range(K2):
                        lo2, hi2 = _range(N2, O2, s2, t2 * d2, f2)
                        wv = w[ci, o, t0, t1, t2]
                        base2 = t2 * d2 - f2
                        for i0 in range(lo0, hi0):
                            p0 = i0 * s0 + t0 * d0 - f0
                            for i1 in range(lo1, hi1):
                                row = out[p0, i1 * s1 + t1 * d1 - f1]
                                srow = src[i0, i1]
                                for i2 in range(lo2, hi2):
                                    row[i2 * s2 + base2] += wv * srow[i2]


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


@numba.njit(cache=True, nogil=True)
def im2col_rows(x, b, cols, kernel, stride, dilation, offset, out_size, r0, r1):  # pragma: no cover
    """Patches of image ``b`` for output rows ``[r0, r1)`` (row = (o0, o1)), serial.

    cols : (C_in*K0*K1*K2, (r1-r0)*O2), rows ordered (channel, t0, t1, t2). Called from several
    threads at once on disjoint buffers (``nogil``), each tile sized to stay in cache for its GEMM.
    """
    C_in = x.shape[1]
    N0, N1, N2 = x.shape[2], x.shape[3], x.shape[4]
    K0, K1, K2 = kernel
    s0, s1, s2 = stride
    d0, d1, d2 = dilation
    f0, f1, f2 = offset
    O1, O2 = out_size[1], out_size[2]
    for ci in range(C_in):
        src = x[b, ci]
        for t0 in range(K0):
            for t1 in range(K1):
                for t2 in range(K2):
                    dst = cols[((ci * K0 + t0) * K1 + t1) * K2 + t2]
                    lo2, hi2 = _range(O2, N2, s2, t2 * d2, f2)
                    base2 = t2 * d2 - f2
                    for r in range(r0, r1):
                        o0 = r // O1
                        o1 = r % O1
                        i0 = o0 * s0 + t0 * d0 - f0
                        i1 = o1 * s1 + t1 * d1 - f1
                        q = (r - r0) * O2
                        if i0 < 0 or i0 >= N0 or i1 < 0 or i1 >= N1:
                            for o2 in range(O2):
                                dst[q + o2] = 0
                            continue
                        srow = src[i0, i1]
                        dst[q : q + lo2] = 0
                        if s2 == 1:  # slice copies compile to memcpy-like loops (2x faster)
                            dst[q + lo2 : q + hi2] = srow[lo2 + base2 : hi2 + base2]
                        else:
                            for o2 in range(lo2, hi2):
                                dst[q + o2] = srow[o2 * s2 + base2]
                        dst[q + hi2 : q + O2] = 0
