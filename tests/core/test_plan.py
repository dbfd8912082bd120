"""The planner: array-free plans that tell the output shape, route, work and scratch memory.

``conv``/``conv_transpose`` are plan + execute, so the grid tests cover execution; these tests
check what a plan promises before any array exists: its output shape is the result's, its errors
are the public functions' errors and its route is the one that runs. That its workspace bound
holds for the memory each route really allocates is tests/core/test_dispatch.py's.
"""

from __future__ import annotations

import numpy as np
import pytest

import deconv_core
from deconv_core import _engine, api

from .cases import CT, edge_cases, grid_cases, output_size_cases

CASES = grid_cases(CT)[::7] + grid_cases("conv")[::7] + edge_cases()[::3] + output_size_cases()[::5]


def _plan(case, x, w, b):
    planner = deconv_core.plan_conv_transpose if case.op == CT else deconv_core.plan_conv
    return planner(
        x.shape,
        w.shape,
        None if b is None else b.shape,
        dtype=x.dtype,
        weight_dtype=w.dtype,
        **case.kwargs(),
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_plan_predicts_the_result(case):
    x, w, b = case.arrays()
    plan = _plan(case, x, w, b)
    fn = deconv_core.conv_transpose if case.op == CT else deconv_core.conv
    y = fn(x, w, b, **case.kwargs())
    assert plan.output_shape == y.shape
    assert plan.op == case.op
    assert plan.route == _engine.choose_route(plan.geometry)
    np.testing.assert_array_equal(deconv_core.execute(plan, x, w, b), y)


@pytest.mark.parametrize("case", CASES[::4], ids=lambda c: c.id)
def test_every_route_through_with_route_gives_the_same_result(case):
    x, w, b = case.arrays()
    plan = _plan(case, x, w, b)
    want = deconv_core.execute(plan, x, w, b)
    for route in _engine.ROUTES[case.op]:
        if not _engine.route_applies(route, plan.geometry):
            with pytest.raises(deconv_core.InvalidArgumentError, match="cannot compute"):
                plan.with_route(route)
            continue
        got = deconv_core.execute(plan.with_route(route), x, w, b)
        tol = 1e-3 if x.dtype == np.float16 else 1e-5
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_plan_needs_no_arrays_and_reports_the_work():
    plan = deconv_core.plan_conv_transpose(
        (8, 256, 16, 16), (256, 128, 4, 4), (128,), dtype="float32", stride=2, padding=1
    )
    assert plan.output_shape == (8, 128, 32, 32)
    assert plan.macs == 8 * 16 * 16 * 256 * 128 * 16
    assert plan.flops == 2 * plan.macs
    assert plan.workspace_bytes > 0
    last = deconv_core.plan_conv(
        (2, 9, 9, 3), (3, 3, 3, 5), dtype="float64", data_format="channels_last",
        weight_format="tf", padding="same", stride=2,
    )
    assert last.output_shape == (2, 5, 5, 5)
    assert last.compute_dtype == np.float64


def test_wire_forms_are_accepted():
    """One value stands for every axis; explicit before/after lists are ONNX's pads."""
    a = deconv_core.plan_conv_transpose((1, 2, 5, 6), (2, 3, 3, 3), stride=[2], padding=[1])
    b = deconv_core.plan_conv_transpose((1, 2, 5, 6), (2, 3, 3, 3), stride=2, padding=1)
    assert a.geometry == b.geometry
    pads = deconv_core.ExplicitPadding(before=[0, 1], after=[2, 1])
    c = deconv_core.plan_conv((1, 2, 5, 6), (3, 2, 3, 3), padding=pads)
    d = deconv_core.plan_conv((1, 2, 5, 6), (3, 2, 3, 3), padding=[(0, 2), (1, 1)])
    assert c.geometry == d.geometry


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(dtype="int8"), r"^conv: input dtype int8 is not supported"),
        (dict(weight_dtype="float64"), r"^conv: weight dtype float64 must match the input dtype"),
        (dict(dtype="bfloat16", weight_dtype="float32"), r"weight dtype float32 must match"),
    ],
)
def test_dtype_rule_lives_in_the_planner(kwargs, match):
    with pytest.raises(deconv_core.UnsupportedDtypeError, match=match):
        deconv_core.plan_conv((1, 2, 5), (3, 2, 3), **kwargs)


def test_execute_refuses_arrays_that_are_not_the_plans():
    plan = deconv_core.plan_conv((1, 2, 5), (3, 2, 3), (3,))
    x = np.zeros((1, 2, 5), np.float32)
    w = np.zeros((3, 2, 3), np.float32)
    b = np.zeros(3, np.float32)
    with pytest.raises(deconv_core.InvalidArgumentError, match=r"input shape \(1, 2, 6\) differs"):
        deconv_core.execute(plan, np.zeros((1, 2, 6), np.float32), w, b)
    with pytest.raises(deconv_core.UnsupportedDtypeError, match="weight dtype float64 differs"):
        deconv_core.execute(plan, x, w.astype(np.float64), b)
    with pytest.raises(deconv_core.InvalidArgumentError, match="no bias given"):
        deconv_core.execute(plan, x, w)


def test_bfloat16_by_name_computes_in_float32():
    plan = deconv_core.plan_conv((1, 1, 4), (1, 1, 2), dtype="bfloat16")
    assert plan.compute_dtype == np.float32
    x = np.array([[[1, 2, 3, 4]]], np.float32)  # already widened, as the server decodes it
    y = deconv_core.execute(plan, x, np.array([[[1, 10]]], np.float32))
    np.testing.assert_array_equal(y, [[[21, 32, 43]]])


def test_repeated_calls_reuse_their_plan_and_errors_are_not_cached():
    """``conv`` keeps the plan of a call for the next one with the same arguments; arguments
    that are equal but of another type (True for 1) are planned, and refused, on their own."""
    api.clear_plan_cache()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    first = deconv_core.conv(x, w, stride=1, padding=1)
    kept = len(api._PLANS)
    assert kept == 1
    np.testing.assert_array_equal(deconv_core.conv(x, w, stride=1, padding=1), first)
    assert len(api._PLANS) == kept  # the same plan, not a second one
    for bad in (True, 1.0):  # equal to 1, with its hash
        with pytest.raises(deconv_core.InvalidArgumentError):
            deconv_core.conv(x, w, stride=bad, padding=1)
        with pytest.raises(deconv_core.InvalidArgumentError):  # refused again: not cached
            deconv_core.conv(x, w, stride=bad, padding=1)
    listed = deconv_core.conv(x, w, stride=[1, 1], padding=[(1, 1), (1, 1)])  # unhashable
    np.testing.assert_array_equal(listed, first)
    for i in range(api.PLAN_CACHE_SIZE + 5):  # bounded: the oldest plans go
        deconv_core.conv(x[:, :, : 3 + i % 7], w, padding=i % 3)
    assert len(api._PLANS) <= api.PLAN_CACHE_SIZE
