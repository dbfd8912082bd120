"""Each image's result, bit for bit, is the same whatever batch it is computed in.

BLAS results depend on the GEMM's shape (OpenBLAS's Haswell kernels give different bits for a
column when the matrix has more or fewer columns or rows), so a route that multiplied several
images in one GEMM, or sized its tiles from the whole batch, would give an image different bits
in a batch of 3 than alone. The server's time slices and the client's batch split both rely on
this property; here every route is forced on shapes that need several tiles, blocks and chunks
per image, and each image of a batch is compared with the same image computed alone and in the
middle of a batch of 2.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import deconv_core
from deconv_core import _engine

RNG = np.random.default_rng(2024)

# (id, op, input shape (batch 3), weight shape, parameters)
GEOMETRIES: list[tuple[str, str, tuple[int, ...], tuple[int, ...], dict[str, Any]]] = [
    ("ct-s2-k4", "conv_transpose", (3, 32, 12, 12), (32, 24, 4, 4), dict(stride=2, padding=1)),
    ("ct-s1-k3", "conv_transpose", (3, 16, 21, 19), (16, 16, 3, 3), dict(padding=1)),
    ("ct-dilated", "conv_transpose", (3, 16, 18, 18), (16, 8, 3, 3), dict(padding=2, dilation=2)),
    ("ct-1d", "conv_transpose", (3, 24, 300), (24, 12, 16), dict(stride=8, padding=4)),
    ("ct-3d", "conv_transpose", (3, 8, 6, 7, 5), (8, 6, 3, 3, 3), dict(stride=2, padding=1)),
    ("ct-large-k", "conv_transpose", (3, 6, 5, 5), (6, 4, 16, 16), dict(stride=8, padding=4)),
    ("conv-3x3", "conv", (3, 16, 30, 27), (24, 16, 3, 3), dict(padding=1)),
    ("conv-s2", "conv", (3, 16, 25, 25), (32, 16, 3, 3), dict(stride=2, padding=1)),
    # two blocks of tiles per image in the stride-2 Winograd route
    ("conv-s2-blocks", "conv", (3, 8, 40, 36), (8, 8, 3, 3), dict(stride=2, padding=1)),
    ("conv-grouped", "conv", (3, 16, 20, 20), (16, 4, 3, 3), dict(padding=1, groups=4)),
    # A batch of 3 of these is big enough that tiles sized from the batch would be wider.
    ("ct-wide-tiles", "conv_transpose", (3, 16, 24, 24), (16, 32, 4, 4), dict(stride=2, padding=1)),
    ("conv-wide-tiles", "conv", (3, 16, 48, 48), (32, 16, 3, 3), dict(padding=1)),
    ("conv-mono", "conv", (3, 1, 1, 3000), (1, 1, 1, 9), dict(padding=(0, 4))),
]

def _c_out(op: str, ws: tuple[int, ...], kw: dict[str, Any]) -> int:
    return ws[0] if op == "conv" else ws[1] * kw.get("groups", 1)


def _planned(op: str, xs: tuple[int, ...], ws: tuple[int, ...], kw: dict[str, Any]):
    plan_fn = deconv_core.plan_conv if op == "conv" else deconv_core.plan_conv_transpose
    return plan_fn(xs, ws, (_c_out(op, ws, kw),), dtype=np.float32, **kw)


# Every route on every geometry it computes.
CASES = [
    pytest.param(route, op, xs, ws, kw, id=f"{route}-{gid}")
    for gid, op, xs, ws, kw in GEOMETRIES
    for route in _engine.ROUTES[op]
    if _engine.route_applies(route, _planned(op, xs, ws, kw).engine_geometry, np.float32)
]


@pytest.mark.parametrize(("route", "op", "xs", "ws", "kw"), CASES)
def test_an_image_has_the_same_bits_in_any_batch(route, op, xs, ws, kw) -> None:
    whole = _planned(op, xs, ws, kw)
    x = RNG.standard_normal(xs).astype(np.float32)
    w = RNG.standard_normal(ws).astype(np.float32)
    b = RNG.standard_normal(_c_out(op, ws, kw)).astype(np.float32)
    y = deconv_core.execute(whole.with_route(route), x, w, b)
    alone = _planned(op, (1, *xs[1:]), ws, kw).with_route(route)
    pair = _planned(op, (2, *xs[1:]), ws, kw).with_route(route)
    for i in range(xs[0]):
        got = deconv_core.execute(alone, x[i : i + 1], w, b)
        assert got.tobytes() == y[i : i + 1].tobytes(), f"image {i} alone differs"
    second = deconv_core.execute(pair, x[1:3], w, b)
    assert second.tobytes() == y[1:3].tobytes(), "images 1-2 as a batch of 2 differ"
