"""Every compute route of the core's dispatcher against the oracle, forced on each case.

The public tests run tiny tensors, which the dispatcher sends to the ``direct`` route; this file
forces each route of ``deconv_core._engine.ROUTES`` (GEMM lowering, patch scatter, phases,
flip, Winograd where it applies) on the grid, edge and output-size cases so no route is left
untested, and the phase routes' tiling with tiny tile budgets. The Winograd route has its own
grid (tests/core/test_winograd.py); which route the dispatcher picks is tests/core/
test_dispatch.py.
"""

from __future__ import annotations

import pytest

import deconv_core
from deconv_core import _engine, _gemm, _phase, _phase_conv

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
        lambda geom, dtype=None: route if _engine.route_applies(route, geom) else "direct",
    )
    x, w, b = case.arrays()
    fn = deconv_core.conv_transpose if case.op == CT else deconv_core.conv
    got = fn(x, w, b, **case.kwargs())
    ref, bound = run_oracle(case.op, x, w, b, case.kwargs())
    assert_matches(got, ref, bound, case.dtype, f"{route}:{case.id}")


def test_gemm_blocks_of_one_channel(monkeypatch):
    """A column budget smaller than one channel's columns: one output channel per work item."""
    monkeypatch.setattr(_gemm, "COLS_BUDGET_BYTES", 1)
    monkeypatch.setattr(_engine, "choose_route", lambda geom, dtype=None: "gemm")
    for case in grid_cases(CT)[:40]:
        case = Case(**{**case.__dict__, "N": 3})
        x, w, b = case.arrays()
        got = deconv_core.conv_transpose(x, w, b, **case.kwargs())
        ref, bound = run_oracle(case.op, x, w, b, case.kwargs())
        assert_matches(got, ref, bound, case.dtype, f"chunked:{case.id}")


def test_phase_tiles_and_channel_chunks(monkeypatch):
    """Tiny tile budgets: many window tiles per image (split mid-row) and output channels
    computed in chunks, for both phase routes; still exact."""
    monkeypatch.setattr(_phase, "COLS_BYTES", 1)
    monkeypatch.setattr(_phase, "OUT_BYTES", 1)
    monkeypatch.setattr(_phase, "MIN_WIDTH", 16)
    monkeypatch.setattr(_phase_conv, "COLS_BYTES", 1)
    monkeypatch.setattr(_phase_conv, "MIN_WIDTH", 16)
    for op in (CT, "conv"):
        route = "phase"
        monkeypatch.setattr(
            _engine, "choose_route",
            lambda geom, dtype=None, r=route: r if _engine.route_applies(r, geom) else "direct",
        )
        for case in grid_cases(op)[1::9]:
            bigger = {"N": 2, "C_out": 2 * case.C_out, "output_shape": None,
                      "n": tuple(3 * v + 5 for v in case.n)}
            case = Case(**{**case.__dict__, **bigger})
            x, w, b = case.arrays()
            fn = deconv_core.conv_transpose if op == CT else deconv_core.conv
            got = fn(x, w, b, **case.kwargs())
            ref, bound = run_oracle(case.op, x, w, b, case.kwargs())
            assert_matches(got, ref, bound, case.dtype, f"phase-tiles:{case.id}")


LARGE_STRIDE = [
    Case(CT, n=(5,), k=(16,), C_in=3, C_out=2, stride=8, padding=4, tag="s8"),
    Case(CT, n=(3, 4), k=(8, 8), C_in=2, C_out=3, stride=4, padding=2, output_padding=(1, 3),
         tag="s4"),
    Case(CT, n=(3, 3), k=(9, 5), C_in=2, C_out=2, stride=(5, 4), padding=(2, 3), tag="s5"),
    Case(CT, n=(2, 3), k=(6, 6), C_in=2, C_out=4, groups=2, stride=6, padding="same",
         data_format="channels_last", tag="s6"),
    Case(CT, n=(2, 2, 3), k=(2, 4, 8), C_in=2, C_out=2, stride=(1, 4, 8), padding=(0, 1, 3),
         dtype="float64", tag="s8-3d"),
]


@pytest.mark.parametrize("case", LARGE_STRIDE, ids=lambda c: c.id)
def test_phase_with_long_phase_runs(case, monkeypatch):
    """Strides of 4 and more take the phase scatter's gathered-load path (the grid's strides
    stop at 3)."""
    monkeypatch.setattr(_engine, "choose_route", lambda geom, dtype=None: "phase")
    x, w, b = case.arrays()
    got = deconv_core.conv_transpose(x, w, b, **case.kwargs())
    ref, bound = run_oracle(case.op, x, w, b, case.kwargs())
    assert_matches(got, ref, bound, case.dtype, f"phase-long:{case.id}")
