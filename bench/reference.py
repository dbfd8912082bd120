"""A plain numpy oracle for the benchmark's correctness column, independent of deconv_core.

Used when PyTorch is not installed (CI, slim machines). It follows DESIGN.md section 2 literally:
one batched matmul per kernel tap, computed in float64, scattered into the "full" transposed
result (or gathered from the zero-padded input for convolution), then cropped with PyTorch's
``padding``/``output_padding`` convention and the bias added to every output element. It is
slow but exact enough (float64) to judge a float32 result.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

__all__ = ["reference_conv", "reference_conv_transpose"]


def _axes(value: int | Sequence[int], rank: int) -> tuple[int, ...]:
    return (int(value),) * rank if np.isscalar(value) else tuple(int(v) for v in value)


def reference_conv_transpose(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """Transposed convolution, PyTorch conventions, channels-first, computed in float64.

    Parameters
    ----------
    x : ndarray
        ``(N, C_in, *n)``.
    weight : ndarray
        ``(C_in, C_out/groups, *k)``.
    bias : ndarray or None
        ``(C_out,)``, added to every output element.
    stride, padding, output_padding, dilation : int or sequence of int
        Per-axis integers (symmetric ``padding``).
    groups : int
        Number of groups.

    Returns
    -------
    ndarray
        float64 array ``(N, C_out, *out)`` with ``out = (n-1)s + d(k-1) + 1 - 2p + op``.
    """
    r = x.ndim - 2
    s, p, op, d = (_axes(v, r) for v in (stride, padding, output_padding, dilation))
    n_b, c_in = x.shape[:2]
    n_sp, k = x.shape[2:], weight.shape[2:]
    cig, cog = c_in // groups, weight.shape[1]
    full_len = [(n_sp[a] - 1) * s[a] + d[a] * (k[a] - 1) + 1 for a in range(r)]
    out_len = [full_len[a] - 2 * p[a] + op[a] for a in range(r)]
    # Room for output_padding past the end of the full result (those rows stay zero).
    full = np.zeros((n_b, groups, cog, *[full_len[a] + op[a] for a in range(r)]))
    xg = x.astype(np.float64).reshape(n_b, groups, cig, -1)
    wg = weight.astype(np.float64).reshape(groups, cig, cog, *k)
    for tap in itertools.product(*(range(kk) for kk in k)):
        w_t = wg[(slice(None), slice(None), slice(None), *tap)]          # (G, Cig, Cog)
        contrib = np.matmul(w_t.transpose(0, 2, 1)[None], xg)           # (N, G, Cog, P)
        dst = tuple(slice(tap[a] * d[a], tap[a] * d[a] + (n_sp[a] - 1) * s[a] + 1, s[a])
                    for a in range(r))
        full[(slice(None), slice(None), slice(None), *dst)] += contrib.reshape(
            n_b, groups, cog, *n_sp)
    crop = tuple(slice(p[a], p[a] + out_len[a]) for a in range(r))
    y = full[(slice(None), slice(None), slice(None), *crop)].reshape(n_b, groups * cog, *out_len)
    if bias is not None:
        y = y + bias.astype(np.float64).reshape((1, -1) + (1,) * r)
    return y


def reference_conv(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """Convolution (cross-correlation), PyTorch conventions, channels-first, in float64.

    Parameters
    ----------
    x : ndarray
        ``(N, C_in, *n)``.
    weight : ndarray
        ``(C_out, C_in/groups, *k)``.
    bias : ndarray or None
        ``(C_out,)``.
    stride, padding, dilation : int or sequence of int
        Per-axis integers (symmetric zero ``padding``).
    groups : int
        Number of groups.

    Returns
    -------
    ndarray
        float64 array ``(N, C_out, *out)`` with ``out = (n + 2p - d(k-1) - 1)//s + 1``.
    """
    r = x.ndim - 2
    s, p, d = (_axes(v, r) for v in (stride, padding, dilation))
    n_b = x.shape[0]
    c_out, cig = weight.shape[:2]
    k = weight.shape[2:]
    cog = c_out // groups
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(pa, pa) for pa in p])
    out_len = [(xp.shape[2 + a] - d[a] * (k[a] - 1) - 1) // s[a] + 1 for a in range(r)]
    y = np.zeros((n_b, groups, cog, int(np.prod(out_len))))
    wg = weight.astype(np.float64).reshape(groups, cog, cig, *k)
    for tap in itertools.product(*(range(kk) for kk in k)):
        src = tuple(slice(tap[a] * d[a], tap[a] * d[a] + (out_len[a] - 1) * s[a] + 1, s[a])
                    for a in range(r))
        patch = xp[(slice(None), slice(None), *src)].reshape(n_b, groups, cig, -1)
        y += np.matmul(wg[(slice(None), slice(None), slice(None), *tap)][None], patch)
    y = y.reshape(n_b, c_out, *out_len)
    if bias is not None:
        y = y + bias.astype(np.float64).reshape((1, -1) + (1,) * r)
    return y
