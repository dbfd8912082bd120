"""Scale-out: one client balances over three server replicas and survives losing one.

Three ``deconv-server`` processes listen on 127.0.0.1 (port 0, each reports its port). One
:class:`deconv_client.Client` with the target ``ipv4:A,B,C`` (round_robin) sends 300 transposed
convolutions from a few threads. After the first phase every replica must have served a fair
share (counted by the servers themselves, through GetServerInfo); during the second phase one
replica is killed with SIGKILL while calls are in flight, and every call must still succeed with
the exact result (the client retries UNAVAILABLE on the surviving replicas).

The inputs are small integers stored as float64, so every result is exact whatever the order
of summation: each must equal deconv_core's bit for bit.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import deconv_client
import numpy as np
import pytest

import deconv_core

REPLICAS = 3
PHASE1_CALLS = 120
PHASE2_CALLS = 180
KILL_AFTER = 30  # phase-2 calls completed before the kill
THREADS = 4
CALL_TIMEOUT = 20.0


@pytest.fixture
def replicas(spawn_servers: Callable[..., list[Any]]) -> list[Any]:
    return spawn_servers(REPLICAS, threads=1)  # three replicas share this machine's cores


def _served(address: str) -> tuple[str, int]:
    """(instance id, compute calls served) of one replica, asked directly."""
    with deconv_client.Client(address, timeout=10) as c:
        info = c.server_info()
    return info.instance_id, info.requests_served


def _case(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(i)
    x = rng.integers(-4, 5, size=(1, 3, 5, 4)).astype(np.float64)
    w = rng.integers(-4, 5, size=(3, 2, 3, 3)).astype(np.float64)
    b = rng.integers(-4, 5, size=(2,)).astype(np.float64)
    return x, w, b


_PARAMS = {"stride": 2, "padding": 1, "output_padding": 1}


def _run_calls(
    client: Any, first: int, count: int, on_done: Callable[[], None] | None = None
) -> list[str]:
    """``count`` calls from THREADS threads; returns a description of each mismatch/failure."""
    problems: list[str] = []

    def one(i: int) -> None:
        x, w, b = _case(i)
        want = deconv_core.conv_transpose(x, w, b, **_PARAMS)
        try:
            got = client.conv_transpose(x, w, b, **_PARAMS)
        except Exception as exc:  # every failure is collected and reported
            problems.append(f"call {i}: {type(exc).__name__}: {exc}")
        else:
            if got.dtype != want.dtype or not np.array_equal(got, want):
                problems.append(f"call {i}: wrong result")
        if on_done is not None:
            on_done()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(one, range(first, first + count)))
    return problems


@pytest.mark.timeout(300)
def test_round_robin_over_three_replicas_survives_losing_one(replicas: list[Any]) -> None:
    before = {r.address: _served(r.address) for r in replicas}
    ids = {inst for inst, _ in before.values()}
    assert len(ids) == REPLICAS, f"replicas must report distinct instance ids: {ids}"

    target = "ipv4:" + ",".join(r.address for r in replicas)
    deadline = time.monotonic() + 240
    with deconv_client.Client(target, timeout=CALL_TIMEOUT) as client:
        # phase 1: all replicas up; round_robin spreads the calls
        problems = _run_calls(client, 0, PHASE1_CALLS)
        assert not problems, problems[:5]
        mid = {r.address: _served(r.address) for r in replicas}
        share = {a: mid[a][1] - before[a][1] for a in mid}
        assert sum(share.values()) == PHASE1_CALLS, share
        for address, n in share.items():
            assert n >= PHASE1_CALLS // (2 * REPLICAS), f"{address} served {n}: {share}"

        # phase 2: kill one replica (SIGKILL, no goodbye) while calls are in flight
        victim, survivors = replicas[0], replicas[1:]
        done = 0
        lock = threading.Lock()

        def on_done() -> None:
            nonlocal done
            with lock:
                done += 1
                if done == KILL_AFTER:
                    victim.proc.kill()

        problems = _run_calls(client, PHASE1_CALLS, PHASE2_CALLS, on_done)
        assert victim.proc.wait(10) == -signal.SIGKILL
        assert not problems, problems[:5]
        assert time.monotonic() < deadline, "the run took too long"

    after = {r.address: _served(r.address) for r in survivors}
    for r in survivors:
        gained = after[r.address][1] - mid[r.address][1]
        assert gained > 0, f"{r.address} served nothing in phase 2"
    # the survivors carried at least every call the victim did not finish before it died
    survivors_gained = sum(after[a][1] - mid[a][1] for a in after)
    assert survivors_gained >= PHASE2_CALLS - KILL_AFTER
