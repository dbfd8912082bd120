"""The client's request templates (deconv_client._request_cache): a hit is the request a fresh
check would build, errors are never kept, and the cache is bounded."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from deconv_client import InvalidArgumentError, _request_cache, _requests

X = np.zeros((2, 4, 6, 6), np.float32)
W = np.zeros((4, 3, 3, 3), np.float32)
DEFAULTS: dict[str, Any] = dict(
    stride=1, padding=0, output_padding=0, output_shape=None, dilation=1, groups=1,
    data_format="channels_first", weight_format="torch", convention="default",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _fresh_templates() -> None:
    _requests._TEMPLATES.clear()


def _build(x: np.ndarray = X, **params: Any) -> _requests.Prepared:
    return _requests.build_request("conv_transpose", x, W, None, **{**DEFAULTS, **params})


def _fresh(x: np.ndarray = X, **params: Any) -> _requests.Prepared:
    _requests._TEMPLATES.clear()
    return _build(x, **params)


@pytest.mark.parametrize(
    "params",
    [{}, {"stride": 2, "padding": 1}, {"stride": (2, 1), "padding": [(1, 0), (0, 2)]},
     {"padding": "same"}, {"output_shape": (13, 13), "stride": 2}, {"dilation": [2, 1]}],
)  # fmt: skip
def test_a_hit_is_the_request_a_fresh_check_builds(params: dict[str, Any]) -> None:
    first = _build(**params)
    assert len(_requests._TEMPLATES) == 1
    hit = _build(**params)
    assert hit.request is first.request  # the template, shared
    fresh = _fresh(**params)
    assert hit.request == fresh.request
    assert hit.output_nbytes == fresh.output_nbytes
    assert hit.unary_request() == fresh.unary_request()
    assert not hit.request.input.data and not first.request.weight.data  # templates stay empty


def test_the_key_tells_types_apart_so_checks_still_run() -> None:
    _build(stride=1)
    with pytest.raises(InvalidArgumentError, match="not a bool"):
        _build(stride=True)  # True == 1 and hashes alike; it must not reuse 1's template
    _build(groups=1)
    with pytest.raises(InvalidArgumentError, match="not a bool"):
        _build(groups=True)


def test_shapes_and_dtypes_are_part_of_the_key() -> None:
    a = _build()
    b = _build(np.zeros((3, 4, 6, 6), np.float32))
    c = _build(X.astype(np.float64))
    assert list(b.request.input.shape) == [3, 4, 6, 6]
    assert a.request.input.dtype != c.request.input.dtype
    assert c.input_dtype == np.float64
    assert b.output_nbytes == a.output_nbytes // 2 * 3
    half = _build(X.astype(np.float16))
    assert half.input_dtype == np.float16
    assert half.request.input.dtype not in (a.request.input.dtype, c.request.input.dtype)


def test_errors_are_not_kept_and_unkeyable_parameters_are_checked_each_time() -> None:
    for _ in range(2):
        with pytest.raises(InvalidArgumentError, match="groups=0"):
            _build(groups=0)
    assert len(_requests._TEMPLATES) == 0
    numpy_stride = np.int64(2)  # a numpy scalar: not keyed, checked and built every time
    built = _build(stride=numpy_stride)
    assert len(_requests._TEMPLATES) == 0
    assert built.request == _fresh(stride=2).request


def test_the_cache_is_a_bounded_lru() -> None:
    cache = _request_cache.RequestCache(capacity=3)
    for k in range(3):
        cache.put(k, str(k))
    assert cache.get(0) == "0"  # now the most recently used
    cache.put(3, "3")
    assert len(cache) == 3
    assert cache.get(1) is None and cache.get(0) == "0" and cache.get(3) == "3"
    assert _request_cache.key("conv", np.dtype("f4"), [], {"stride": object()}) is None
