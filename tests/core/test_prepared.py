"""Kernel-ready weights (``deconv_core.prepare_weight``): used, same bits, any batch, refused
elsewhere.

Every route that transforms its weight on each call (the phase route of transposed convolution,
the flip route, Winograd for convs and transposed convs) is forced on small geometries; the
result with the prepared weight must be bit-identical to the result without it, for the batch
the form was made with and for others, and a form made for one plan is refused by another.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import deconv_core
from deconv_core import _engine

RNG = np.random.default_rng(77)

# (id, op, input shape, weight shape, parameters, route, dtype)
CASES: list[tuple[str, str, tuple[int, ...], tuple[int, ...], dict[str, Any], str, str]] = [
    ("phase-2d", "conv_transpose", (2, 6, 7, 9), (6, 4, 4, 4), dict(stride=2, padding=1),
     "phase", "float32"),
    ("phase-large", "conv_transpose", (1, 3, 4, 5), (3, 2, 16, 16), dict(stride=8, padding=4),
     "phase", "float32"),
    ("phase-3d-groups", "conv_transpose", (2, 4, 3, 4, 5), (4, 3, 3, 3, 3),
     dict(stride=2, padding=1, groups=2), "phase", "float64"),
    ("flip", "conv_transpose", (2, 6, 8, 7), (6, 5, 3, 3), dict(padding=1), "flip", "float32"),
    ("winograd-ct", "conv_transpose", (2, 8, 10, 9), (8, 6, 3, 3), dict(padding=2, dilation=2),
     "winograd", "float32"),
    ("winograd-conv", "conv", (3, 8, 13, 11), (5, 8, 3, 3), dict(padding=1), "winograd",
     "float32"),
    ("winograd-s2", "conv", (3, 8, 21, 18), (5, 8, 3, 3), dict(stride=2, padding=1),
     "winograd", "float32"),
    # float64 forced onto Winograd runs the exact fallback (flip for transposed convs)
    ("winograd-f64", "conv_transpose", (2, 6, 8, 7), (6, 5, 3, 3), dict(padding=1), "winograd",
     "float64"),
]  # fmt: skip


def _plan(op: str, xs: tuple[int, ...], ws: tuple[int, ...], kw: dict[str, Any], dtype: str):
    planner = deconv_core.plan_conv if op == "conv" else deconv_core.plan_conv_transpose
    return planner(xs, ws, dtype=dtype, **kw)


@pytest.mark.parametrize(("cid", "op", "xs", "ws", "kw", "route", "dtype"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_a_prepared_weight_gives_the_same_bits_in_any_batch(cid, op, xs, ws, kw, route, dtype):
    plan = _plan(op, xs, ws, kw, dtype).with_route(route)
    x = RNG.standard_normal(xs).astype(dtype)
    w = RNG.standard_normal(ws).astype(dtype)
    ready = deconv_core.prepare_weight(plan, w)
    assert ready.array is not None and ready.nbytes > 0, cid
    assert not ready.array.flags.writeable
    want = deconv_core.execute(plan, x, w)
    assert deconv_core.execute(plan, x, w, prepared=ready).tobytes() == want.tobytes()
    # The route computes from the form, not from the weight passed beside it.
    zeros = np.zeros_like(w)
    assert deconv_core.execute(plan, x, zeros, prepared=ready).tobytes() == want.tobytes()
    one = _plan(op, (1, *xs[1:]), ws, kw, dtype).with_route(route)  # another batch, same key
    got = deconv_core.execute(one, x[:1], w, prepared=ready)
    assert got.tobytes() == want[:1].tobytes()


def test_routes_that_use_the_weight_as_it_is_have_no_form() -> None:
    plan = deconv_core.plan_conv_transpose((1, 4, 5, 5), (4, 2, 3, 3), dtype="float32", stride=2)
    w = RNG.standard_normal((4, 2, 3, 3)).astype(np.float32)
    x = RNG.standard_normal((1, 4, 5, 5)).astype(np.float32)
    for route in ("direct", "gemm", "patch"):
        forced = plan.with_route(route)
        ready = deconv_core.prepare_weight(forced, w)
        assert ready.array is None and ready.nbytes == 0
        np.testing.assert_array_equal(deconv_core.execute(forced, x, w, prepared=ready),
                                      deconv_core.execute(forced, x, w))  # fmt: skip
    assert ("conv_transpose", "gemm") not in _engine.PREPARERS


def test_a_form_for_another_plan_is_refused() -> None:
    w = RNG.standard_normal((6, 4, 4, 4)).astype(np.float32)
    plan = deconv_core.plan_conv_transpose((1, 6, 7, 9), (6, 4, 4, 4), dtype="float32",
                                           stride=2, padding=1).with_route("phase")  # fmt: skip
    ready = deconv_core.prepare_weight(plan, w)
    other_size = deconv_core.plan_conv_transpose(
        (1, 6, 8, 9), (6, 4, 4, 4), dtype="float32", stride=2, padding=1
    ).with_route("phase")
    x = RNG.standard_normal((1, 6, 8, 9)).astype(np.float32)
    with pytest.raises(deconv_core.InvalidArgumentError, match="prepared weight was made for"):
        deconv_core.execute(other_size, x, w, prepared=ready)
    with pytest.raises(deconv_core.InvalidArgumentError, match="prepared weight was made for"):
        deconv_core.execute(plan.with_route("gemm"), x[:, :, :7], w, prepared=ready)
