"""Every compute route of the core's dispatcher against the oracle, forced on each case.

The public tests run tiny tensors, which the dispatcher sends to the ``direct`` route; this file
forces each route of ``deconv_core._engine.ROUTES`` (GEMM lowering, patch scatter, direct) on the
grid, edge and output-size cases so no route is left untested, and checks that the dispatcher
really picks the non-direct routes for large work.
"""

from __future__ import annotations

import pytest

import deconv_core
from deconv_core import _engine
from deconv_core.params import conv_geometry, transpose_geometry

from .cases import CT, Case, edge_cases, grid_cases, output_size_cases
from .helpers import assert_matches, run_oracle

ROUTE_CASES = [
    pytest.param(route, case, id=f"{route}-{case.id}")
    for case in grid_cases(CT)[::3] + grid_cases("conv")[::3] + edge_cases() + output_size_cases()
    for route in _engine.ROUTES[case.op]
    if route != "direct"  # the direct route is what the public tests already exercise
]


@pytest.mark.parametrize(("route", "case"), ROUTE_CASES)
def test_forced_route_matches_oracle(route: str, case: Case, monkeypatch):
    monkeypatch.setattr(
        _engine,
        "choose_route",
        lambda geom: route if _engine.route_applies(route, geom) else "direct",
    )
    x, w, b = case.arrays()
    fn = deconv_core.conv_transpose if case.op == CT else deconv_core.conv
    got = fn(x, w, b, **case.kwargs())
    ref, bound = run_oracle(case.op, x, w, b, case.kwargs())
    assert_matches(got, ref, bound, case.dtype, f"{route}:{case.id}")


def test_gemm_chunks_the_batch(monkeypatch):
    """A column budget smaller than one image forces one GEMM chunk per image; still exact."""
    monkeypatch.setattr(_engine, "COLS_BUDGET_BYTES", 1)
    monkeypatch.setattr(_engine, "choose_route", lambda geom: "gemm")
    for case in grid_cases(CT)[:40]:
        case = Case(**{**case.__dict__, "N": 3})
        x, w, b = case.arrays()
        got = deconv_core.conv_transpose(x, w, b, **case.kwargs())
        ref, bound = run_oracle(case.op, x, w, b, case.kwargs())
        assert_matches(got, ref, bound, case.dtype, f"chunked:{case.id}")


def test_dispatcher_picks_each_route():
    """Depthwise goes direct, dense transposed convs through GEMM, large kernels through
    patches, dense convs through cache-sized tiles."""
    shapes = {"bias_shape": None, "dilation": 1}
    depthwise = transpose_geometry(
        (8, 64, 32, 32), (64, 1, 4, 4), **shapes, stride=2, padding=1, output_padding=0,
        output_shape=None, groups=64,
    )
    dense = transpose_geometry(
        (8, 256, 16, 16), (256, 128, 4, 4), **shapes, stride=2, padding=1, output_padding=0,
        output_shape=None, groups=1,
    )
    long_rows = transpose_geometry(
        (1, 21, 16, 16), (21, 21, 64, 64), **shapes, stride=32, padding=16, output_padding=0,
        output_shape=None, groups=1,
    )
    conv = conv_geometry(
        (8, 64, 56, 56), (64, 64, 3, 3), **shapes, stride=1, padding=1, groups=1
    )
    assert _engine.choose_route(depthwise) == "direct"
    assert _engine.choose_route(dense) == "gemm"
    assert _engine.choose_route(long_rows) == "patch"
    assert _engine.choose_route(conv) == "tiled"
    dilated = transpose_geometry(
        (4, 64, 32, 32), (64, 64, 3, 3), bias_shape=None, dilation=2, stride=1, padding=2,
        output_padding=0, output_shape=None, groups=1,
    )
    assert _engine.choose_route(dilated) == "flip"
    assert not _engine.route_applies("flip", dense)


def test_tiled_conv_with_one_row_tiles(monkeypatch):
    """Tiles of a single output row (many tiles per image, dealt over threads) stay exact."""
    monkeypatch.setattr(_engine, "TILE_BYTES", 1)
    monkeypatch.setattr(_engine, "choose_route", lambda geom: "tiled")
    for case in grid_cases("conv")[:40]:
        case = Case(**{**case.__dict__, "N": 3})
        x, w, b = case.arrays()
        got = deconv_core.conv(x, w, b, **case.kwargs())
        ref, bound = run_oracle(case.op, x, w, b, case.kwargs())
        assert_matches(got, ref, bound, case.dtype, f"tiled:{case.id}")
