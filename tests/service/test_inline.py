"""Tiny calls computed on the event loop's thread, and only when that cannot stall the loop.

A call of at most ``compute.INLINE_MAX_FLOPS`` on a warm server skips the core thread (no
``compute.submit``); a large one queues; a tiny one while the core is busy queues too (the
loop never waits for the lock) and the server keeps answering meanwhile.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from deconv_client import Client
from deconv_server import compute
from deconv_server.app import ServerHandle

from .helpers import core

RNG = np.random.default_rng(4)
TINY_X = RNG.standard_normal((1, 1, 8, 8)).astype(np.float32)
TINY_W = RNG.standard_normal((1, 1, 4, 4)).astype(np.float32)
BIG_X = RNG.standard_normal((1, 16, 32, 32)).astype(np.float32)
BIG_W = RNG.standard_normal((16, 16, 3, 3)).astype(np.float32)


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The jobs that went to the core thread."""
    jobs: list[Any] = []
    real = compute.submit

    def record(job: Any, lock: Any = compute.CORE_LOCK) -> Any:
        jobs.append(job)
        return real(job, lock)

    monkeypatch.setattr(compute, "submit", record)
    return jobs


def test_a_tiny_call_runs_inline_and_a_large_one_queues(
    server: ServerHandle, client: Client, submitted: list[Any]
) -> None:
    assert compute.KERNELS_COMPILED.is_set()  # the session server warmed up
    tiny = client.conv_transpose(TINY_X, TINY_W, stride=2, padding=1)
    np.testing.assert_array_equal(tiny, core("conv_transpose", TINY_X, TINY_W, stride=2,
                                             padding=1))  # fmt: skip
    assert submitted == []
    big = client.conv(BIG_X, BIG_W, padding=1)
    np.testing.assert_array_equal(big, core("conv", BIG_X, BIG_W, padding=1))
    assert len(submitted) == 1 and submitted[0].plan.flops > compute.INLINE_MAX_FLOPS


def test_a_tiny_call_queues_while_the_core_is_busy_and_the_loop_stays_free(
    server: ServerHandle, client: Client, submitted: list[Any]
) -> None:
    result: dict[str, Any] = {}

    def call() -> None:
        result["y"] = client.conv_transpose(TINY_X, TINY_W, stride=2, padding=1)

    with compute.CORE_LOCK:  # a long computation holds the core
        thread = threading.Thread(target=call)
        thread.start()
        deadline = time.monotonic() + 10
        while not submitted and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(submitted) == 1, "the tiny call did not queue for the busy core"
        start = time.monotonic()
        with Client(server.target, timeout=5) as other:
            other.server_info()  # answered by the loop while the core is held
        assert time.monotonic() - start < 2.0
        assert thread.is_alive()
    thread.join(10)
    np.testing.assert_array_equal(
        result["y"], core("conv_transpose", TINY_X, TINY_W, stride=2, padding=1)
    )
