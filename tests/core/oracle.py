"""Slow, obviously-correct numpy reference for conv and conv_transpose: the project's one oracle.

Written straight from the definition in docs/semantics.md, independently of deconv_core:

* ``conv_transpose`` scatters every input pixel into the "full" result of length
  ``L = (n-1)s + ek`` per axis, crops the window ``(crop_before, out_size)`` chosen by the
  padding convention, then adds the bias to every output element (sections "Transposed
  convolution" and "Padding conventions").
* ``conv`` zero-pads each axis by ``(pb, pa)`` and cross-correlates with stride, dilation and
  groups, then adds the bias per output channel (section "Convolution").

Everything is computed in float64 with a Python loop over kernel taps, one channel contraction
(a BLAS matrix product) per tap and numpy slicing; the result is float64 whatever the input
dtype. Parameters follow deconv_core's keyword arguments; bad parameters raise a plain
``ValueError`` (the oracle does not try to match the core's errors).

Used by the core tests (tests/core) and by the benchmark's correctness column
(``bench.backends.ReferenceBackend`` imports it as ``tests.core.oracle``), so it imports nothing
but numpy and the standard library; the installed packages never import it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "conv",
    "conv_output_size",
    "conv_pads",
    "conv_transpose",
    "transpose_crop",
    "transpose_legal_out_range",
]

PadSpec = int | str | Sequence[int] | Sequence[Sequence[int]]


def _per_axis(value: int | Sequence[int], r: int, name: str) -> tuple[int, ...]:
    """Expand an int or a per-axis sequence of ints to a tuple of length ``r``."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * r
    vals = tuple(int(v) for v in value)
    if len(vals) != r:
        raise ValueError(f"{name} needs {r} values, got {vals}")
    return vals


def _explicit_pads(padding: PadSpec, r: int) -> tuple[tuple[int, int], ...] | None:
    """Return per-axis (before, after) pads for numeric padding, ``None`` for strings."""
    if isinstance(padding, str):
        return None
    if isinstance(padding, (int, np.integer)):
        return ((int(padding), int(padding)),) * r
    items = list(padding)
    if len(items) != r:
        raise ValueError(f"padding needs {r} entries, got {padding}")
    pads = []
    for item in items:
        if isinstance(item, (int, np.integer)):
            pads.append((int(item), int(item)))
        else:
            pb, pa = item
            pads.append((int(pb), int(pa)))
    return tuple(pads)


def _to_channels_first(x: np.ndarray, data_format: str) -> np.ndarray:
    if data_format == "channels_first":
        return x
    if data_format == "channels_last":
        return np.moveaxis(x, -1, 1)
    raise ValueError(f"unknown data_format {data_format!r}")


def _from_channels_first(y: np.ndarray, data_format: str) -> np.ndarray:
    return y if data_format == "channels_first" else np.moveaxis(y, 1, -1)


def _weight_to_torch(w: np.ndarray, weight_format: str) -> np.ndarray:
    """TF layouts put the two channel axes last: (k..., A, B) -> (B, A, k...)."""
    if weight_format == "torch":
        return w
    if weight_format == "tf":
        r = w.ndim - 2
        return np.transpose(w, (r + 1, r, *range(r)))
    raise ValueError(f"unknown weight_format {weight_format!r}")


# --------------------------------------------------------------------------- shape maths


def conv_pads(
    n: Sequence[int],
    k: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    padding: PadSpec,
) -> tuple[tuple[int, int], ...]:
    """Per-axis (before, after) zero padding of a convolution (docs/semantics.md, "Convolution")."""
    r = len(n)
    pads = _explicit_pads(padding, r)
    if pads is not None:
        return pads
    out = []
    for ni, ki, si, di in zip(n, k, stride, dilation, strict=True):
        ek = di * (ki - 1) + 1
        if padding == "valid":
            out.append((0, 0))
            continue
        total = max(0, (math.ceil(ni / si) - 1) * si + ek - ni)
        if padding == "same":
            out.append((total // 2, total - total // 2))
        elif padding == "same_lower":
            out.append((total - total // 2, total // 2))
        else:
            raise ValueError(f"unknown padding {padding!r}")
    return tuple(out)


def conv_output_size(n: int, k: int, s: int, d: int, pb: int, pa: int) -> int:
    """Output length of one convolution axis: (n + pb + pa - ek)//s + 1."""
    ek = d * (k - 1) + 1
    return (n + pb + pa - ek) // s + 1


def transpose_legal_out_range(
    n: int, k: int, s: int, d: int, padding: PadSpec | tuple[int, int]
) -> tuple[int, int]:
    """Inclusive (lo, hi) range of legal output sizes of one transposed-conv axis.

    ``padding`` is the per-axis spec: an int p, a (before, after) pair, "valid", "same" or
    "same_lower". Numeric pads allow output_padding 0 .. max(s, d)-1; "valid" allows
    L .. L+s-1; "same"/"same_lower" allow every size whose forward SAME convolution gives back n,
    i.e. (n-1)s+1 .. n*s (TensorFlow's rule). See docs/semantics.md, "Padding conventions".
    """
    L = (n - 1) * s + d * (k - 1) + 1
    if padding == "valid":
        return L, L + s - 1
    if padding in ("same", "same_lower"):
        return (n - 1) * s + 1, n * s
    if isinstance(padding, str):
        raise ValueError(f"unknown padding {padding!r}")
    pb, pa = (padding, padding) if isinstance(padding, (int, np.integer)) else padding
    base = L - pb - pa
    return base, base + max(s, d) - 1


def transpose_crop(
    n: int,
    k: int,
    s: int,
    d: int,
    padding: PadSpec | tuple[int, int],
    output_padding: int = 0,
    output_shape: int | None = None,
) -> tuple[int, int]:
    """(crop_before, out_size) of one transposed-conv axis (docs/semantics.md conventions table)."""
    L = (n - 1) * s + d * (k - 1) + 1
    if padding in ("same", "same_lower"):
        if output_padding:
            raise ValueError("oracle: output_padding with padding='same' is not defined")
        out = n * s if output_shape is None else output_shape
        T = max(0, L - out)
        crop = T // 2 if padding == "same" else T - T // 2
        return crop, out
    if padding == "valid":
        if output_shape is not None and output_padding:
            raise ValueError("oracle: output_shape and output_padding together")
        return 0, (L + output_padding if output_shape is None else output_shape)
    if isinstance(padding, str):
        raise ValueError(f"unknown padding {padding!r}")
    pb, pa = (padding, padding) if isinstance(padding, (int, np.integer)) else padding
    if output_shape is not None:
        if output_padding:
            raise ValueError("oracle: output_shape and output_padding together")
        return pb, output_shape
    return pb, L + output_padding - pb - pa


# --------------------------------------------------------------------------- operations


def _add_bias(y: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    if bias is not None:
        b = np.asarray(bias, dtype=np.float64)
        if b.shape != (y.shape[1],):
            raise ValueError(f"bias shape {b.shape} != ({y.shape[1]},)")
        y = y + b.reshape((1, -1) + (1,) * (y.ndim - 2))
    return y


def conv_transpose(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: PadSpec = 0,
    output_padding: int | Sequence[int] = 0,
    output_shape: Sequence[int] | None = None,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    data_format: str = "channels_first",
    weight_format: str = "torch",
) -> np.ndarray:
    """Transposed convolution by scatter into the full result, crop, then bias (float64).

    Parameters
    ----------
    x : ndarray
        Input (N, C_in, spatial...) or channels-last (N, spatial..., C_in).
    weight : ndarray
        (C_in, C_out/groups, k...) for ``weight_format="torch"``, (k..., C_out/groups, C_in)
        for ``"tf"``.
    bias : ndarray, optional
        (C_out,), added to every output element after the crop.
    stride, padding, output_padding, output_shape, dilation, groups, data_format, weight_format
        As in ``deconv_core.conv_transpose`` (docs/semantics.md, "Parameter rules").

    Returns
    -------
    ndarray
        float64 result in ``data_format`` layout.
    """
    xf = _to_channels_first(np.asarray(x, dtype=np.float64), data_format)
    W = _weight_to_torch(np.asarray(weight, dtype=np.float64), weight_format)
    N, C_in = xf.shape[:2]
    n = xf.shape[2:]
    r = len(n)
    k = W.shape[2:]
    Cig = C_in // groups
    Cog = W.shape[1]
    if W.shape[0] != C_in or C_in % groups or len(k) != r:
        raise ValueError("oracle: weight does not fit the input")
    s = _per_axis(stride, r, "stride")
    d = _per_axis(dilation, r, "dilation")
    op = _per_axis(output_padding, r, "output_padding")
    osh = (None,) * r if output_shape is None else _per_axis(output_shape, r, "output_shape")
    pads = _explicit_pads(padding, r)
    axis_pad = [padding] * r if pads is None else list(pads)

    L = [(n[a] - 1) * s[a] + d[a] * (k[a] - 1) + 1 for a in range(r)]
    full = np.zeros((N, groups * Cog, *L))
    for g in range(groups):
        xg = xf[:, g * Cig : (g + 1) * Cig]
        for taps in itertools.product(*(range(ka) for ka in k)):
            wt = W[(slice(g * Cig, (g + 1) * Cig), slice(None), *taps)]  # (Cig, Cog)
            # sum over c of xg[b, c, i...] * wt[c, o] -> (b, o, i...)
            contrib = np.moveaxis(np.tensordot(xg, wt, axes=(1, 0)), -1, 1)
            dst = tuple(
                slice(taps[a] * d[a], taps[a] * d[a] + (n[a] - 1) * s[a] + 1, s[a])
                for a in range(r)
            )
            full[(slice(None), slice(g * Cog, (g + 1) * Cog), *dst)] += contrib

    crops = [transpose_crop(n[a], k[a], s[a], d[a], axis_pad[a], op[a], osh[a]) for a in range(r)]
    out_sizes = [c[1] for c in crops]
    if min(out_sizes) < 1:
        raise ValueError(f"oracle: output size {out_sizes} < 1")
    y = np.zeros((N, groups * Cog, *out_sizes))
    src, dst = [], []
    for a, (cb, out) in enumerate(crops):
        # y[j] = full[j + cb] for 0 <= j < out and 0 <= j + cb < L
        j0, j1 = max(0, -cb), min(out, L[a] - cb)
        if j1 <= j0:
            break
        dst.append(slice(j0, j1))
        src.append(slice(j0 + cb, j1 + cb))
    else:
        y[(slice(None), slice(None), *dst)] = full[(slice(None), slice(None), *src)]
    return _from_channels_first(_add_bias(y, bias), data_format)


def conv(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: PadSpec = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    data_format: str = "channels_first",
    weight_format: str = "torch",
) -> np.ndarray:
    """Convolution (cross-correlation) with zero padding, stride, dilation, groups (float64).

    Parameters
    ----------
    x : ndarray
        Input (N, C_in, spatial...) or channels-last (N, spatial..., C_in).
    weight : ndarray
        (C_out, C_in/groups, k...) for ``weight_format="torch"``, (k..., C_in/groups, C_out)
        for ``"tf"``.
    bias : ndarray, optional
        (C_out,), added per output channel.
    stride, padding, dilation, groups, data_format, weight_format
        As in ``deconv_core.conv`` (docs/semantics.md, "Parameter rules").

    Returns
    -------
    ndarray
        float64 result in ``data_format`` layout.
    """
    xf = _to_channels_first(np.asarray(x, dtype=np.float64), data_format)
    W = _weight_to_torch(np.asarray(weight, dtype=np.float64), weight_format)
    N, C_in = xf.shape[:2]
    n = xf.shape[2:]
    r = len(n)
    C_out = W.shape[0]
    k = W.shape[2:]
    Cig = W.shape[1]
    Cog = C_out // groups
    if Cig * groups != C_in or C_out % groups or len(k) != r:
        raise ValueError("oracle: weight does not fit the input")
    s = _per_axis(stride, r, "stride")
    d = _per_axis(dilation, r, "dilation")
    pads = conv_pads(n, k, s, d, padding)
    if min(min(p) for p in pads) < 0:
        raise ValueError("oracle: negative padding")
    out = [conv_output_size(n[a], k[a], s[a], d[a], *pads[a]) for a in range(r)]
    if min(out) < 1:
        raise ValueError(f"oracle: output size {out} < 1")
    xp = np.pad(xf, [(0, 0), (0, 0), *pads])
    y = np.zeros((N, C_out, *out))
    for g in range(groups):
        for taps in itertools.product(*(range(ka) for ka in k)):
            src = tuple(
                slice(taps[a] * d[a], taps[a] * d[a] + (out[a] - 1) * s[a] + 1, s[a])
                for a in range(r)
            )
            patch = xp[(slice(None), slice(g * Cig, (g + 1) * Cig), *src)]  # (N, Cig, out...)
            wt = W[(slice(g * Cog, (g + 1) * Cog), slice(None), *taps)]  # (Cog, Cig)
            # sum over c of patch[b, c, j...] * wt[o, c] -> (b, o, j...)
            contrib = np.moveaxis(np.tensordot(patch, wt, axes=(1, 1)), -1, 1)
            y[:, g * Cog : (g + 1) * Cog] += contrib
    return _from_channels_first(_add_bias(y, bias), data_format)
