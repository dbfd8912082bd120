"""``split_batch=True``: one call's batch computed in parts on several replicas, same bits.

Three real server processes (``python -m deconv_server`` on 127.0.0.1, no warm-up) serve the
module; every split result is compared bit for bit with one unsplit call on one replica. A
fourth process is SIGKILLed while it computes its part (the part moves, the call loses nothing),
and an in-process server with tiny limits refuses its part (the call fails at once with the
typed error and the slow parts elsewhere are cancelled).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from deconv_client import (
    AsyncClient,
    Client,
    DeadlineExceededError,
    InvalidArgumentError,
    ResourceExhaustedError,
    _split,
    _targets,
)

import deconv_core
from deconv_core import _engine

from .conftest import extra_server
from .counters import counters

pytestmark = pytest.mark.timeout(120)

RNG = np.random.default_rng(11)


def _rand(*shape: int, dtype: Any = np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


def _start_process() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "deconv_server", "--host", "127.0.0.1", "--port", "0",
         "--no-warmup", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(os.environ),
    )  # fmt: skip


def _target_of(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("deconv-server listening on 127.0.0.1:"), line
    return line.split()[-1]


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        proc.wait(10)


@pytest.fixture(scope="module")
def processes() -> Iterator[tuple[list[str], str, subprocess.Popen[str]]]:
    """Three replicas' targets, plus a fourth server (target, process) for the kill test."""
    procs = [_start_process() for _ in range(4)]  # started together: imports overlap
    try:
        targets = [_target_of(p) for p in procs]
        for t in targets:
            with Client(t, timeout=60) as c:
                c.wait_until_serving(60)
        yield targets[:3], targets[3], procs[3]
    finally:
        _stop(procs)


@pytest.fixture(scope="module")
def replicas(processes: tuple[list[str], str, subprocess.Popen[str]]) -> list[str]:
    return processes[0]


def _uri(targets: list[str]) -> str:
    return "ipv4:///" + ",".join(targets)


def _one_call(target: str, op: str, *args: Any, **kwargs: Any) -> np.ndarray:
    """The reference: the whole batch in one call on one replica."""
    with Client(target, timeout=60) as c:
        return getattr(c, op)(*args, **kwargs)


def _same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


# (id, op, x, weight, bias, parameters)
CASES = [
    ("batch1", "conv_transpose", _rand(1, 8, 9, 9), _rand(8, 4, 4, 4), _rand(4), dict(stride=2)),
    ("batch2_lt_replicas", "conv", _rand(2, 16, 12, 12), _rand(8, 16, 3, 3), None,
     dict(padding=1)),
    ("batch7_uneven", "conv_transpose", _rand(7, 16, 10, 10), _rand(16, 8, 3, 3), _rand(8),
     dict(stride=2, padding=1, output_padding=1)),
    ("channels_last", "conv", _rand(5, 11, 13, 16), _rand(3, 3, 16, 24), _rand(24),
     dict(stride=2, padding="same", data_format="channels_last", weight_format="tf")),
    # Per image under the old whole-batch thresholds: the parts would have run direct and
    # phase, the whole batch gemm and winograd.
    ("small_per_image", "conv_transpose", _rand(6, 16, 8, 8), _rand(16, 16, 4, 4), None,
     dict(stride=2, padding=1)),
    ("winograd_edge", "conv", _rand(3, 64, 24, 24), _rand(64, 64, 3, 3), None, dict(padding=1)),
    ("float64_reflect", "conv", _rand(4, 4, 10, 10, dtype=np.float64),
     _rand(6, 4, 3, 3, dtype=np.float64), None, dict(padding=1, padding_mode="reflect")),
    # Chunked parts (2 x 512 KiB in, 2 MiB out each), and a 2 MiB weight named by digest.
    ("chunked", "conv_transpose", _rand(6, 256, 16, 16), _rand(256, 128, 4, 4), _rand(128),
     dict(stride=2, padding=1)),
]  # fmt: skip


@pytest.mark.parametrize(("cid", "op", "x", "w", "b", "kw"), CASES, ids=[c[0] for c in CASES])
def test_split_is_bit_identical(replicas: list[str], cid, op, x, w, b, kw) -> None:
    want = _one_call(replicas[0], op, x, w, b, **kw)
    before = [counters(t)[0] for t in replicas]
    with Client(_uri(replicas), timeout=60, split_batch=True) as c:
        for _ in range(2):  # the second time a large weight travels by digest
            _same_bits(getattr(c, op)(x, w, b, **kw), want)
    served = [counters(t)[0] - n for t, n in zip(replicas, before, strict=True)]
    parts = min(x.shape[0], len(replicas))
    assert sum(served) == 2 * parts, served
    if parts > 1:  # (batch 1 is one ordinary call, balanced round robin)
        assert sum(s > 0 for s in served) == parts, f"parts not spread: {served}"


def test_list_of_targets_spreads_every_part(replicas: list[str]) -> None:
    x, w = _rand(9, 8, 16, 16), _rand(8, 8, 3, 3)
    want = _one_call(replicas[1], "conv", x, w, padding=1)
    before = [counters(t)[0] for t in replicas]
    with Client(list(replicas), timeout=60, split_batch=True) as c:
        assert c.target == _uri(replicas)
        _same_bits(c.conv(x, w, padding=1), want)
    assert [counters(t)[0] - n for t, n in zip(replicas, before, strict=True)] == [1, 1, 1]


# Slow parts: about 0.2 s of direct-route compute per image.
SLOW_X = _rand(6, 64, 128, 128)
SLOW_W = _rand(64, 1, 15, 15)
SLOW = dict(groups=64, padding="same")


def _record_failovers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Targets of the replicas whose part moved after UNAVAILABLE, as the split call sees it."""
    moved: list[str] = []
    failover = _split.Replicas.failover

    def record(self: _split.Replicas, failed: Any, attempt: int) -> Any:
        moved.append(failed.target)
        return failover(self, failed, attempt)

    monkeypatch.setattr(_split.Replicas, "failover", record)
    return moved


def test_killed_replica_loses_nothing(
    processes: tuple[list[str], str, subprocess.Popen[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    targets, victim, proc = processes
    moved = _record_failovers(monkeypatch)
    want = _one_call(targets[0], "conv", SLOW_X, SLOW_W, **SLOW)
    result: dict[str, Any] = {}

    def call() -> None:
        with Client([targets[0], targets[1], victim], timeout=60, split_batch=True) as c:
            start = time.perf_counter()
            try:
                result["y"] = c.conv(SLOW_X, SLOW_W, **SLOW)
            except BaseException as exc:  # reported below
                result["error"] = exc
            result["seconds"] = time.perf_counter() - start

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.4)  # the victim holds its part (upload done, computing)
    assert thread.is_alive(), "the call ended before the replica could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    thread.join(60)
    assert "error" not in result, result.get("error")
    _same_bits(result["y"], want)
    assert moved == [victim]


def test_other_errors_fail_at_once_and_cancel_the_rest(replicas: list[str]) -> None:
    """A part refused RESOURCE_EXHAUSTED fails the call before the other parts could finish."""
    small = extra_server(max_tensor_elements=1000)
    try:
        t0 = time.perf_counter()
        _one_call(replicas[0], "conv", SLOW_X[:2], SLOW_W, **SLOW)
        part_seconds = time.perf_counter() - t0
        with Client([small.target, *replicas[:2]], timeout=60, split_batch=True) as c:
            t0 = time.perf_counter()
            with pytest.raises(ResourceExhaustedError) as info:
                c.conv(SLOW_X, SLOW_W, **SLOW)
            elapsed = time.perf_counter() - t0
        assert isinstance(info.value.__cause__, grpc.RpcError)
        assert elapsed < part_seconds, (elapsed, part_seconds)
    finally:
        small.stop(0).wait(5)


def test_invalid_argument_is_typed(replicas: list[str]) -> None:
    with Client(_uri(replicas), timeout=30, split_batch=True) as c:
        with pytest.raises(InvalidArgumentError, match="C_in") as info:
            c.conv(_rand(4, 3, 8, 8), _rand(2, 5, 3, 3))
    assert isinstance(info.value.__cause__, grpc.RpcError)


def test_timeout_bounds_the_whole_call(replicas: list[str]) -> None:
    with Client(_uri(replicas), timeout=0.3, split_batch=True) as c:
        t0 = time.perf_counter()
        with pytest.raises(DeadlineExceededError):
            c.conv(SLOW_X, SLOW_W, **SLOW)
        assert time.perf_counter() - t0 < 3.0


def test_async_client_splits(replicas: list[str]) -> None:
    _, op, x, w, b, kw = next(c for c in CASES if c[0] == "chunked")
    want = _one_call(replicas[2], op, x, w, b, **kw)
    before = [counters(t)[0] for t in replicas]

    async def main() -> None:
        async with AsyncClient(_uri(replicas), timeout=60, split_batch=True) as c:
            for _ in range(2):
                _same_bits(await getattr(c, op)(x, w, b, **kw), want)
            with pytest.raises(InvalidArgumentError) as info:
                await c.conv(_rand(4, 3, 8, 8), _rand(2, 5, 3, 3))
            assert isinstance(info.value.__cause__, grpc.RpcError)

    asyncio.run(main())
    assert [counters(t)[0] - n for t, n in zip(replicas, before, strict=True)] == [2, 2, 2]


def test_async_unavailable_part_moves(replicas: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica that is down (nothing listens) costs the asyncio call nothing either."""
    moved = _record_failovers(monkeypatch)
    dead = extra_server()
    dead_target = dead.target
    dead.stop(0).wait(5)
    x, w = _rand(6, 8, 16, 16), _rand(8, 8, 3, 3)
    want = _one_call(replicas[0], "conv", x, w, padding=1)

    async def main() -> np.ndarray:
        async with AsyncClient([dead_target, *replicas[:2]], timeout=30, split_batch=True) as c:
            return await c.conv(x, w, padding=1)

    _same_bits(asyncio.run(main()), want)
    assert moved == [dead_target]


# -- pieces without servers ---------------------------------------------------------------


def test_part_sizes() -> None:
    assert _split.part_sizes(1, 3) == [1]
    assert _split.part_sizes(2, 3) == [1, 1]
    assert _split.part_sizes(7, 3) == [3, 2, 2]
    assert _split.part_sizes(9, 3) == [3, 3, 3]


def test_replica_targets() -> None:
    assert _targets.replica_targets("ipv4:///127.0.0.1:1,127.0.0.1:2") == [
        "ipv4:///127.0.0.1:1",
        "ipv4:///127.0.0.1:2",
    ]
    assert _targets.replica_targets("ipv6:[::1]:5,[::1]:6") == ["ipv6:///[::1]:5", "ipv6:///[::1]:6"]
    assert _targets.replica_targets("dns:///127.0.0.1:7") == ["ipv4:///127.0.0.1:7"]
    assert _targets.replica_targets("localhost:9") == ["localhost:9"]
    assert (
        _targets.channel_target(["127.0.0.1:1", "127.0.0.1:2"]) == "ipv4:///127.0.0.1:1,127.0.0.1:2"
    )
    with pytest.raises(ValueError):
        _targets.channel_target(["127.0.0.1:1", "[::1]:2"])


def test_server_slices_plans_with_a_kernel_geometry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's time slices of a batch (compute.Job) compute what the whole batch does,
    also for plans whose engine geometry differs from the call's (fill-padded convs)."""
    from deconv_server import compute

    monkeypatch.setattr(compute, "SLICE_SECONDS", 1e-6)  # one image per slice
    x, w = _rand(3, 4, 9, 9), _rand(5, 4, 3, 3)
    plan = deconv_core.plan_conv(x.shape, w.shape, dtype="float32", padding=1,
                                 padding_mode="reflect")  # fmt: skip
    assert plan.kernel_geometry is not None and compute.max_slices(plan) == 3
    sliced = compute.submit(compute.Job(plan, (x, w, None))).result(60)
    _same_bits(sliced, deconv_core.execute(plan, x, w))
    assert _engine.choose_route(plan.engine_geometry) == plan.route
