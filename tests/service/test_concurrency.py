"""16 concurrent clients x 50 mixed calls: all succeed with exact results (core lock holds)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from deconv_client import Client
from deconv_server.app import ServerHandle

from .counters import counters
from .helpers import core, rand

CLIENTS = 16
CALLS = 50


def _cases() -> list[tuple[str, tuple[np.ndarray, ...], dict[str, Any]]]:
    rng = np.random.default_rng(42)
    cases = []
    for dtype in (np.float32, np.float64, np.float16):
        x2 = rand(rng, (2, 4, 6, 5), dtype)
        cases.append(
            (
                "conv_transpose",
                (x2, rand(rng, (4, 3, 3, 3), dtype), rand(rng, (3,), dtype)),
                {"stride": 2, "padding": 1, "output_padding": 1},
            )
        )
        cases.append(("conv", (x2, rand(rng, (5, 4, 3, 3), dtype), None), {"padding": "same"}))
        x1 = rand(rng, (1, 4, 9), dtype)
        cases.append(
            (
                "conv_transpose",
                (x1, rand(rng, (4, 2, 4), dtype), None),
                {"stride": 3, "groups": 2, "padding": "same", "output_shape": [27]},
            )
        )
        x3 = rand(rng, (1, 2, 3, 4, 3), dtype)
        cases.append(
            (
                "conv",
                (x3, rand(rng, (2, 1, 2, 2, 2), dtype), rand(rng, (2,), dtype)),
                {"groups": 2, "dilation": (1, 2, 1)},
            )
        )
    return cases  # fmt: skip


def test_concurrent_clients_get_exact_results(server: ServerHandle, target: str) -> None:
    cases = _cases()
    expected = [core(op, *arrays, **params) for op, arrays, params in cases]
    served_before, _ = counters(target)
    start = threading.Barrier(CLIENTS)

    def worker(index: int) -> int:
        ok = 0
        with Client(target, timeout=120) as client:
            start.wait(30)
            for call in range(CALLS):
                k = (index * 7 + call) % len(cases)
                op, arrays, params = cases[k]
                got = getattr(client, op)(*arrays, **params)
                assert got.dtype == expected[k].dtype
                np.testing.assert_array_equal(got, expected[k])
                ok += 1
        return ok

    with ThreadPoolExecutor(CLIENTS) as pool:
        done = list(pool.map(worker, range(CLIENTS)))
    assert done == [CALLS] * CLIENTS
    assert counters(target)[0] - served_before == CLIENTS * CALLS
    assert server.servicer.in_flight == 0
