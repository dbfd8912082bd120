"""The Winograd routes (F(4x4, 3x3) and stride 2) forced over their own oracle grids, and
their error bounds.

The shared grid (tests/core/cases.py) has at most 4 channels and few 3x3 kernels, so the route
(3x3 stride-1 2-D kernels, at least ``_winograd.MIN_CHANNELS`` input channels per group) rarely
applies there. This grid sweeps what the route's tiling depends on: every output size 1..13 per
axis (all remainders of the 4x4 tiles, single partial tiles, many tiles), every padding form,
dilation per axis (phases of the dilated grid), groups, batch 1 and many, channels-last data,
TF weights, non-contiguous inputs, bias or not, transposed convs through the flipped kernel, and
rows long enough to span several blocks. float32 results must be inside the suite's tolerance
(1e-5 of each output's sum of |terms|) and within 1e-5 of max|y|; float64 calls forced onto the
route must run the exact routes (float64 accuracy).

The stride-2 route (3x3 stride-2 convs, 2x2 output tiles of 5x5 inputs, blocks of at most
``_winograd_s2_kernels.TB`` tiles) has a grid of its own: input sizes 1..16 per axis (odd and
even output sizes, tiles whose 5x5 window crosses the border on either side), every padding
form, groups, batches, layouts and weight formats, and images of several blocks.
"""

from __future__ import annotations

import numpy as np
import pytest

import deconv_core
from deconv_core import _engine, _winograd, _winograd_s2, _winograd_s2_kernels

from .cases import CT, CV, Case
from .helpers import assert_matches, run_oracle

PADS = (0, 1, 2, (1, 0), [(0, 2), (2, 1)], "same", "same_lower", "valid")


def _pad_total(pad, axis: int) -> int:
    """Total padding of one axis (``same`` pads as much as it needs: no minimum size)."""
    if pad in ("same", "same_lower"):
        return 99
    if pad == "valid":
        return 0
    if isinstance(pad, int):
        return 2 * pad
    item = pad[axis]
    return sum(item) if isinstance(item, tuple | list) else 2 * item


def _cases() -> list[Case]:
    rng = np.random.default_rng(11)
    out = []
    for i in range(84):
        op = CT if i % 3 == 2 else CV
        dil = [1, 1] if i % 4 else [int(v) for v in rng.integers(1, 4, 2)]
        groups = 2 if i % 7 == 3 else 1
        cig = int(rng.integers(_winograd.MIN_CHANNELS, 9))
        cog = int(rng.integers(1, 7))
        pad = PADS[i % len(PADS)]
        if op == CT and isinstance(pad, str) and pad != "valid":
            pad = 1  # same/same_lower transposed convs take output_shape; keep the default
        n = [int(v) for v in rng.integers(1, 14, 2)]
        if op == CV:  # the dilated kernel must fit in the padded input
            n = [max(na, 2 * d + 1 - _pad_total(pad, a)) for a, (na, d) in
                 enumerate(zip(n, dil, strict=True))]
        if op == CT:  # crops of up to 4 must leave an output
            n = [max(na, 3) for na in n]
        out.append(
            Case(
                op=op, n=tuple(n), k=(3, 3), C_in=groups * cig, C_out=groups * cog,
                groups=groups, N=(1, 2, 3)[i % 3], dilation=dil, padding=pad,
                dtype="float32" if i % 6 else "float64",
                data_format="channels_last" if i % 5 == 1 else "channels_first",
                weight_format="tf" if i % 4 == 3 else "torch",
                layout=("contiguous", "sliced", "transposed")[i % 3] if i % 2 else "contiguous",
                bias=i % 4 != 1, tag="wino",
            )
        )
    # rows longer than a block (63 tiles + one unused slot), and many images per block
    out.append(Case(CV, n=(5, 261), k=(3, 3), C_in=4, C_out=3, padding=1, tag="wino-long"))
    out.append(Case(CV, n=(3, 300), k=(3, 3), C_in=5, C_out=2, dilation=(1, 2), padding=2,
                    tag="wino-long"))
    out.append(Case(CT, n=(6, 6), k=(3, 3), C_in=4, C_out=4, N=9, padding=1, tag="wino-batch"))
    return out


def _s2_cases() -> list[Case]:
    rng = np.random.default_rng(12)
    out = []
    for i in range(60):
        groups = 2 if i % 7 == 3 else 1
        cig = int(rng.integers(_winograd_s2.MIN_CHANNELS, 9))
        pad = PADS[i % len(PADS)]
        n = [int(v) for v in rng.integers(1, 17, 2)]
        n = [max(na, 3 - _pad_total(pad, a)) for a, na in enumerate(n)]  # the kernel fits
        out.append(
            Case(
                op=CV, n=tuple(n), k=(3, 3), C_in=groups * cig,
                C_out=groups * int(rng.integers(1, 7)), groups=groups, N=(1, 2, 3)[i % 3],
                stride=2, padding=pad, dtype="float32" if i % 6 else "float64",
                data_format="channels_last" if i % 5 == 1 else "channels_first",
                weight_format="tf" if i % 4 == 3 else "torch",
                layout=("contiguous", "sliced", "transposed")[i % 3] if i % 2 else "contiguous",
                bias=i % 4 != 1, tag="wino-s2",
            )
        )
    tiles = _winograd_s2_kernels.TB
    # an image of several blocks (a partial last one), and a tile row longer than a block
    out.append(Case(CV, n=(37, 41), k=(3, 3), C_in=4, C_out=3, N=2, stride=2, padding=1,
                    tag="wino-s2-blocks"))
    out.append(Case(CV, n=(3, 4 * tiles + 9), k=(3, 3), C_in=5, C_out=2, stride=2,
                    padding=(0, 1), tag="wino-s2-long"))
    return out


CASES = _cases() + _s2_cases()


def _force(monkeypatch, route: str) -> None:
    monkeypatch.setattr(
        _engine,
        "choose_route",
        lambda geom, dtype=None: route if _engine.route_applies(route, geom) else "direct",
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_winograd_matches_oracle(case, monkeypatch):
    _force(monkeypatch, "winograd")
    x, w, b = case.arrays()
    fn = deconv_core.conv_transpose if case.op == CT else deconv_core.conv
    planner = deconv_core.plan_conv_transpose if case.op == CT else deconv_core.plan_conv
    plan = planner(x.shape, w.shape, None if b is None else b.shape, dtype=x.dtype,
                   **case.kwargs())
    assert _engine.route_applies("winograd", plan.geometry), case.id
    got = fn(x, w, b, **case.kwargs())
    ref, bound = run_oracle(case.op, x, w, b, case.kwargs())
    assert_matches(got, ref, bound, case.dtype, f"winograd:{case.id}")
    scale = max(float(np.abs(ref).max()), 1e-30)
    limit = 1e-5 if case.dtype == "float32" else 1e-13
    assert float(np.abs(got - ref).max()) <= limit * scale, case.id


@pytest.mark.parametrize("stride", [1, 2])
def test_bench_sized_error_is_within_1e5_of_max(stride):
    """C1's and C2's shapes at 64 and 256 input channels: the error grows like sqrt(C_in)."""
    rng = np.random.default_rng(3)
    for c_in in (64, 256):
        x = rng.standard_normal((1, c_in, 20, 20), dtype=np.float32)
        w = (rng.standard_normal((16, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(np.float32)
        plan = deconv_core.plan_conv(x.shape, w.shape, dtype="float32", padding=1, stride=stride)
        got = deconv_core.execute(plan.with_route("winograd"), x, w)
        ref, _ = run_oracle(CV, x, w, None, {"padding": 1, "stride": stride})
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_applies_only_where_it_is_accurate():
    def geom(c_in, k=(3, 3), stride=1):
        return deconv_core.plan_conv((1, c_in, 8, 8), (4, c_in, *k), stride=stride).geometry

    assert _engine.route_applies("winograd", geom(4))
    assert not _engine.route_applies("winograd", geom(3))  # too few channels per group
    assert not _engine.route_applies("winograd", geom(8, (3, 2)))
    assert _engine.route_applies("winograd", geom(4, stride=2))
    assert not _engine.route_applies("winograd", geom(3, stride=2))
    assert not _engine.route_applies("winograd", geom(8, stride=3))
    assert not _engine.route_applies("winograd", geom(8, stride=(2, 1)))
    dilated = deconv_core.plan_conv((1, 8, 9, 9), (4, 8, 3, 3), stride=2, dilation=2).geometry
    assert not _engine.route_applies("winograd", dilated)
    assert not _engine.route_applies("winograd", geom(8), np.float64)
    three_d = deconv_core.plan_conv((1, 8, 4, 8, 8), (4, 8, 1, 3, 3)).geometry
    assert not _engine.route_applies("winograd", three_d)


def test_a_failing_weight_transform_reaches_the_caller_and_no_worker_hangs(monkeypatch):
    """The stride-2 route transforms its weight inside the tiles' hand-off (a prologue every
    worker waits for): an error there is raised to the caller, not a deadlock."""
    def broken(*args):
        raise RuntimeError("transform failed")

    monkeypatch.setattr(_winograd_s2_kernels, "transform_weights", broken)
    x = np.ones((4, 8, 20, 20), np.float32)
    w = np.ones((6, 8, 3, 3), np.float32)
    plan = deconv_core.plan_conv(x.shape, w.shape, dtype="float32", stride=2, padding=1)
    with pytest.raises(RuntimeError, match="transform failed"):
        deconv_core.execute(plan.with_route("winograd"), x, w)
