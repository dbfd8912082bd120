"""deconv_core against the float64 oracle on compact generated case lists (see cases.py)."""

from __future__ import annotations

import numpy as np
import pytest

import deconv_core

from .cases import CT, Case, edge_cases, format_cases, grid_cases, layout_cases, output_size_cases
from .helpers import assert_matches, run_oracle


def _check(case: Case) -> None:
    x, w, b = case.arrays()
    saved = [None if a is None else a.copy() for a in (x, w, b)]
    fn = deconv_core.conv_transpose if case.op == CT else deconv_core.conv
    got = fn(x, w, b, **case.kwargs())
    ref, bound = run_oracle(case.op, x, w, b, case.kwargs())
    assert_matches(got, ref, bound, case.dtype, case.id)
    for before, after in zip(saved, (x, w, b), strict=True):
        if before is not None:
            np.testing.assert_array_equal(after, before, err_msg=f"{case.id}: input modified")
    assert not np.shares_memory(got, x), f"{case.id}: result aliases the input"


def _params(cases: list[Case]):
    return [pytest.param(c, id=c.id) for c in cases]


@pytest.mark.parametrize("case", _params(grid_cases(CT)))
def test_transpose_grid(case):
    _check(case)


@pytest.mark.parametrize("case", _params(grid_cases("conv")))
def test_conv_grid(case):
    _check(case)


@pytest.mark.parametrize("case", _params(format_cases()))
def test_dtype_and_formats(case):
    _check(case)


@pytest.mark.parametrize("case", _params(layout_cases()))
def test_noncontiguous_and_readonly_inputs(case):
    _check(case)


@pytest.mark.parametrize("case", _params(output_size_cases()))
def test_every_legal_output_size(case):
    _check(case)


@pytest.mark.parametrize("case", _params(edge_cases()))
def test_edge_cases(case):
    _check(case)


def test_case_lists_cover_the_grid():
    """The generated lists really span what the tests claim (guards against a silent shrink)."""
    allc = grid_cases(CT) + grid_cases("conv") + format_cases() + layout_cases()
    allc += output_size_cases() + edge_cases()
    assert len({c.id for c in allc}) == len(allc), "duplicate case ids"
    seen = {(c.op, c.rank, c.dtype, c.data_format, c.weight_format) for c in allc}
    assert len(seen) == 2 * 3 * 3 * 2 * 2
    assert {c.layout for c in allc} == {"contiguous", "sliced", "transposed", "readonly",
                                        "reversed"}
    strided = [c for c in allc if c.op == CT and isinstance(c.stride, int) and c.stride > 1]
    assert {c.padding for c in strided if isinstance(c.padding, str)} == {
        "valid", "same", "same_lower"}
    assert any(c.output_shape is not None for c in strided)
    assert max(max(c.n) for c in allc) <= 7 and max(max(c.C_in, c.C_out) for c in allc) <= 4


def test_bias_only_region_equals_bias():
    """Outputs that no input reaches (padding beyond the kernel, output beyond L) are the bias."""
    b = np.array([0.5, -2.0])
    x = np.ones((1, 1, 2))
    w = np.ones((2, 1, 1))
    y = deconv_core.conv(x, w, b, padding=3)
    assert y.shape == (1, 2, 8)
    np.testing.assert_array_equal(y[0, :, :3], np.repeat(b[:, None], 3, axis=1))
    np.testing.assert_array_equal(y[0, :, 3:5], 1.0 + b[:, None] + np.zeros((2, 2)))
    yt = deconv_core.conv_transpose(np.ones((1, 1, 2)), np.ones((1, 2, 1)), b, stride=3,
                                    padding="valid", output_shape=[6])
    expected = np.where(np.array([1, 0, 0, 1, 0, 0]) == 1, 1.0, 0.0)[None, :] + b[:, None]
    np.testing.assert_array_equal(yt[0], expected)
