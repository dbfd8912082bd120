"""The dispatcher: which route each benchmark case takes (the measured winner), float64 kept on
exact routes, and the workspace bound of every route measured with tracemalloc.

The winners were measured with ``python -m bench`` and per-route timings on this repository's
2-core machines (interleaved runs, 2 threads, 100 ms pauses; AVX2 for T1, T4 and T5 after the
gemm route moved onto the core's pinned workers, AVX-512 for the rest); see the thresholds in
``deconv_core._engine`` and the comments below.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import deconv_core
from deconv_core import _engine
from deconv_core.params import Geometry

# (case id, op, input shape, weight shape, parameters, measured fastest route)
BENCH = [
    # gemm: the phase route's windows straddle the two phases' ranges, 1.2x the work
    # (AVX2: gemm 27.1 ms, phase 35.7; AVX-512 before: Winograd F(3x3, 2x2) on the phases 22.6)
    ("T1", "conv_transpose", (8, 256, 16, 16), (256, 128, 4, 4), dict(stride=2, padding=1),
     "gemm"),
    # phase: k == s, the image itself is the GEMM operand, no col2im (AVX2: phase 8.2 ms,
    # gemm 8.7; AVX-512: phase 3.5, gemm 5.9)
    ("T2", "conv_transpose", (1, 64, 128, 128), (64, 32, 2, 2), dict(stride=2), "phase"),
    # phase: 1024 phases x 21 channels, K = 84 (phase 17 ms, patch 44)
    ("T3", "conv_transpose", (1, 21, 16, 16), (21, 21, 64, 64), dict(stride=32, padding=16),
     "phase"),
    # gemm: k = 2s, the windows overlap (AVX2: gemm 85.4 ms, phase 96.6)
    ("T4", "conv_transpose", (1, 512, 2048), (512, 256, 16), dict(stride=8, padding=4), "gemm"),
    # gemm: 3.2x the direct work in 3-D by phases (AVX2: gemm 5.96 ms, phase 7.01)
    ("T5", "conv_transpose", (1, 32, 16, 16, 16), (32, 16, 3, 3, 3),
     dict(stride=2, padding=1, output_padding=1), "gemm"),
    # direct: 2.1 ms, phase 6.9, gemm 35.9
    ("T6", "conv_transpose", (8, 64, 32, 32), (64, 1, 4, 4),
     dict(stride=2, padding=1, groups=64), "direct"),
    # winograd: 3.1 ms, flip 4.0
    ("T7", "conv_transpose", (4, 64, 32, 32), (64, 64, 3, 3), dict(padding=2, dilation=2),
     "winograd"),
    # winograd: 7.0 ms, phase 15.2
    ("C1", "conv", (8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), "winograd"),
    # winograd (stride 2): 8.24 ms, phase 8.55 (Zen4; see _winograd_s2.pays_off)
    ("C2", "conv", (8, 128, 32, 32), (256, 128, 3, 3), dict(stride=2, padding=1), "winograd"),
]


def _geometry(op: str, xs, ws, kw) -> Geometry:
    planner = deconv_core.plan_conv_transpose if op == "conv_transpose" else deconv_core.plan_conv
    return planner(xs, ws, dtype="float32", **kw).geometry


@pytest.mark.parametrize(("cid", "op", "xs", "ws", "kw", "route"), BENCH, ids=[c[0] for c in BENCH])
def test_bench_case_takes_the_measured_winner(cid, op, xs, ws, kw, route):
    geom = _geometry(op, xs, ws, kw)
    assert _engine.choose_route(geom) == route, cid
    assert _engine.choose_route(geom, np.dtype(np.float32)) == route, cid
    exact = _engine.choose_route(geom, np.dtype(np.float64))
    assert exact not in _engine.FLOAT32_ROUTES, cid
    assert _engine.route_applies(exact, geom, np.dtype(np.float64))


def test_float64_forced_onto_winograd_runs_exactly():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 9, 9))
    w = rng.standard_normal((4, 8, 3, 3))
    plan = deconv_core.plan_conv(x.shape, w.shape, dtype="float64", padding=1)
    exact = deconv_core.execute(plan.with_route("phase"), x, w)
    forced = deconv_core.execute(plan.with_route("winograd"), x, w)
    np.testing.assert_array_equal(forced, exact)


def test_phase_waste_counts_zero_taps_and_windows():
    assert _engine.phase_waste(_geometry(*BENCH[0][1:5])) == pytest.approx(17 * 18 / 16**2)
    assert _engine.phase_waste(_geometry(*BENCH[1][1:5])) == 1.0
    assert _engine.phase_waste(_geometry(*BENCH[4][1:5])) == pytest.approx(
        (4 / 3) ** 3 * (16 * 18 + 17) * 18 / 16**3
    )


BIG = [
    ("conv_transpose", (4, 64, 12, 12), (64, 32, 4, 4), dict(stride=2, padding=1), "gemm"),
    ("conv_transpose", (1, 64, 16, 16), (64, 32, 2, 2), dict(stride=2), "phase"),
    ("conv_transpose", (1, 16, 8, 8), (16, 8, 16, 16), dict(stride=8, padding=4), "phase"),
    ("conv_transpose", (2, 32, 12, 12), (32, 32, 3, 3), dict(stride=2, padding=1), "gemm"),
    ("conv_transpose", (1, 32, 12, 12), (32, 16, 8, 8), dict(stride=4, dilation=2), "patch"),
    ("conv_transpose", (2, 32, 12, 12), (32, 32, 3, 3), dict(padding=2, dilation=2), "flip"),
    ("conv_transpose", (2, 64, 24, 24), (64, 64, 3, 3), dict(padding=1), "winograd"),
    ("conv_transpose", (2, 16, 16, 16), (16, 1, 4, 4), dict(stride=2, groups=16), "direct"),
    ("conv", (2, 64, 20, 20), (64, 64, 3, 3), dict(padding=1, stride=2), "phase"),
    ("conv", (1, 128, 32, 32), (64, 128, 3, 3), dict(padding=1, stride=2), "winograd"),
    ("conv", (2, 64, 20, 20), (64, 64, 3, 3), dict(padding=1), "phase"),
    ("conv", (2, 64, 40, 40), (64, 64, 3, 3), dict(padding=1), "winograd"),
    ("conv", (2, 2, 9, 9), (2, 2, 3, 3), dict(padding=1), "direct"),
]


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
@pytest.mark.parametrize(("op", "xs", "ws", "kw", "route"), BIG, ids=[r[-1] for r in BIG])
def test_workspace_bounds_what_the_call_allocates(op, xs, ws, kw, route, data_format):
    """A plan's workspace bounds the scratch its route allocates (tracemalloc sees numpy's
    buffers), and the bound is not wildly loose; for every route of the dispatcher."""
    rng = np.random.default_rng(0)
    if data_format == "channels_last":
        xs = (xs[0], *xs[2:], xs[1])
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    x.flags.writeable = False
    planner = deconv_core.plan_conv_transpose if op == "conv_transpose" else deconv_core.plan_conv
    plan = planner(xs, ws, dtype=np.float32, data_format=data_format, **kw)
    assert plan.route == route
    deconv_core.execute(plan, x, w)  # compiled and warm before measuring
    tracemalloc.start()
    try:
        y = deconv_core.execute(plan, x, w)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    scratch = peak - y.nbytes
    assert scratch <= plan.workspace_bytes + 64 * 1024, (scratch, plan.workspace_bytes)
    if route != "direct":  # direct's buffers are allocated inside Numba, unseen by tracemalloc
        assert plan.workspace_bytes <= 4 * scratch + 1024 * 1024


# Cases whose route the old whole-batch thresholds changed with the batch size: 262144 MACs
# per image (direct) and 21M per image (winograd), below the thresholds at batch 1, above them
# at batch 6 or 2 when the batch's MACs were weighed.
EDGES = [
    ("conv_transpose", (1, 16, 8, 8), (16, 16, 4, 4), dict(stride=2, padding=1), "direct"),
    ("conv", (1, 64, 24, 24), (64, 64, 3, 3), dict(padding=1), "winograd"),
    ("conv", (1, 64, 20, 20), (64, 64, 3, 3), dict(padding=1), "phase"),
]


@pytest.mark.parametrize(
    ("op", "xs", "ws", "kw"),
    [c[1:5] for c in BENCH] + [c[:4] for c in BIG] + [c[:4] for c in EDGES],
)
def test_route_does_not_depend_on_the_batch(op, xs, ws, kw):
    """Routes weigh the work per image: a batch and any part of it take the same route (and so
    compute the same bits per image; a client's split_batch and the server's slices rely on it)."""
    routes = {
        dtype: {_engine.choose_route(_geometry(op, (n, *xs[1:]), ws, kw), dtype) for n in
                (1, 2, 3, 7, 64, 1000)}
        for dtype in (None, np.dtype(np.float64))
    }  # fmt: skip
    assert all(len(found) == 1 for found in routes.values()), routes


@pytest.mark.parametrize(("op", "xs", "ws", "kw", "route"), EDGES, ids=[c[-1] for c in EDGES])
def test_edge_cases_take_their_route_at_every_batch(op, xs, ws, kw, route):
    for n in (1, 2, 6, 32):
        assert _engine.choose_route(_geometry(op, (n, *xs[1:]), ws, kw)) == route


# The stride-2 Winograd route where it was measured slower than the phase route (fewer than 128
# input channels per group, fewer than 64 tiles per image) and faster (see _winograd_s2.pays_off).
STRIDE2 = [
    ((4, 64, 56, 56), (128, 64, 3, 3), "phase"),  # phase 4.82 ms, winograd 5.27
    ((4, 128, 28, 28), (256, 128, 3, 3), "phase"),  # 49 tiles: 4.13, 4.71
    ((4, 256, 14, 14), (512, 256, 3, 3), "phase"),  # 16 tiles: 4.79, 11.0
    ((2, 256, 32, 32), (256, 256, 3, 3), "winograd"),  # 7.97, 7.05
]


@pytest.mark.parametrize(("xs", "ws", "route"), STRIDE2, ids=[str(c[0]) for c in STRIDE2])
def test_stride2_winograd_where_it_pays_off(xs, ws, route):
    for n in (1, 8):
        geom = _geometry("conv", (n, *xs[1:]), ws, dict(stride=2, padding=1))
        assert _engine.choose_route(geom) == route


def test_image_macs_is_the_batch_of_one():
    geom = _geometry(*BENCH[0][1:5])
    assert _engine.image_macs(geom) * geom.batch == geom.macs
