"""The row-split direct conv (one output plane, several threads) against the plane kernel."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import deconv_core
from deconv_core import _kernels

from . import oracle

GEOMETRIES = [
    # (input, weight, stride, dilation, offset): canonical 3-D axes, one output plane each
    ((1, 1, 1, 1, 5000), (1, 1, 1, 1, 7), (1, 1, 3), (1, 1, 2), (0, 0, 2)),
    ((1, 1, 1, 37, 41), (1, 1, 1, 3, 5), (1, 2, 1), (1, 1, 1), (0, 1, 2)),
    ((1, 3, 9, 9, 9), (1, 3, 2, 3, 2), (1, 2, 1), (2, 1, 1), (1, 1, 0)),
    ((1, 2, 1, 4, 2100), (1, 2, 1, 2, 4), (1, 1, 2), (1, 1, 1), (0, 0, 3)),
    # padding wider than the kernel's reach: pieces and whole rows with no term but the bias
    ((1, 1, 1, 3, 50), (1, 1, 1, 1, 3), (1, 1, 1), (1, 1, 1), (0, 2, 10)),
    ((1, 2, 1, 2, 40), (1, 2, 1, 2, 2), (1, 1, 3), (1, 1, 2), (0, 3, 12)),
]


def _out(n: tuple[int, ...], k: tuple[int, ...], s, d, f) -> tuple[int, ...]:
    return tuple(
        (ni + 2 * fi - di * (ki - 1) - 1) // si + 1
        for ni, ki, si, di, fi in zip(n, k, s, d, f, strict=True)
    )


@pytest.mark.parametrize(("xs", "ws", "s", "d", "f"), GEOMETRIES)
@pytest.mark.parametrize("chunk", [1, 5, 333, 1024, 1 << 20])
def test_rows_give_the_plane_kernels_bits(xs, ws, s, d, f, chunk) -> None:
    rng = np.random.default_rng(sum(xs) + chunk)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    bias = rng.standard_normal(ws[0]).astype(np.float32)
    out = (xs[0], ws[0], *_out(xs[2:], ws[2:], s, d, f))
    plane = np.empty(out, np.float32)
    rows = np.full(out, np.nan, np.float32)
    _kernels.conv_direct(x, w, bias, plane, 1, s, d, f)
    _kernels.conv_direct_rows(x, w, bias, rows, 1, s, d, f, chunk)
    np.testing.assert_array_equal(rows, plane)


def test_a_mono_signal_through_the_api_matches_the_oracle() -> None:
    if numba.get_num_threads() < 2:
        pytest.skip("the row split runs only with several threads")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, 4096)).astype(np.float32)
    w = rng.standard_normal((1, 1, 31)).astype(np.float32)
    b = rng.standard_normal(1).astype(np.float32)
    plan = deconv_core.plan_conv(x.shape, w.shape, b.shape, dtype=x.dtype, padding=15, stride=2)
    got = deconv_core.execute(plan.with_route("direct"), x, w, b)
    want = oracle.conv(
        x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), padding=15, stride=2
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
