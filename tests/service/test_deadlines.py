"""Deadlines, cancellation and admission under a busy core.

A server-side hook replaces the core's conv_transpose: it records every call that reaches the
core and can hold the core (inside the lock, like a long computation) until the test releases
it. With it we check that a request whose deadline passes in the queue gets DEADLINE_EXCEEDED
and is never computed, that a cancelled request leaves the queue and frees its admission slot
while the core is still busy, and that a request beyond ``workers`` gets UNAVAILABLE at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from deconv import codec
from deconv.v1 import deconv_pb2 as pb
from deconv_server import compute
from deconv_server.app import ServerHandle

import deconv_core

from .conftest import extra_server
from .helpers import core, raw_stub

X = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
W = np.ones((1, 2, 3, 3), np.float32)
SLOW = 7.0  # the hook holds the core while the input's first element is this value


def request(first: float = 0.0) -> pb.TransposedConvRequest:
    x = X.copy()
    x.flat[0] = first
    return pb.TransposedConvRequest(input=codec.encode(x), weight=codec.encode(W), stride=[2])


class CoreHook:
    """Stands in for deconv_core.execute: records calls, holds the core for SLOW ones."""

    def __init__(self, real: Callable[..., np.ndarray]) -> None:
        self.real = real
        self.calls: list[float] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, plan: Any, x: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        first = float(x.flat[0])
        self.calls.append(first)
        if first == SLOW:
            self.started.set()
            assert self.release.wait(30), "the test never released the core"
        return self.real(plan, x, *args, **kwargs)


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[CoreHook]:
    h = CoreHook(deconv_core.execute)
    monkeypatch.setattr(deconv_core, "execute", h)  # what the servicer runs each plan with
    # The hook makes tiny calls slow; real tiny calls may run inline, these must queue.
    monkeypatch.setattr(compute, "INLINE_MAX_FLOPS", 0)
    try:
        yield h
    finally:
        h.release.set()


@pytest.fixture
def small(server: ServerHandle) -> Iterator[ServerHandle]:
    """A server admitting two calls at once (``server`` guarantees compiled kernels)."""
    handle = extra_server(workers=2)
    try:
        yield handle
    finally:
        handle.stop(0).wait(5)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def start_slow(stub: Any, hook: CoreHook) -> Any:
    """Start a call that holds the core; return its future once it is computing."""
    future = stub.TransposedConv.future(request(SLOW), timeout=60)
    assert hook.started.wait(10), "the slow call never reached the core"
    return future


def expected(first: float = 0.0) -> np.ndarray:
    x = X.copy()
    x.flat[0] = first
    return core("conv_transpose", x, W, stride=2)


def test_deadline_in_the_queue_is_exceeded_and_never_computed(
    small: ServerHandle, hook: CoreHook
) -> None:
    with raw_stub(small.target) as stub:
        info_before = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
        slow = start_slow(stub, hook)
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            stub.TransposedConv(request(1.0), timeout=0.4)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 3
        # The server gave up on it too: its admission slot is free while the core is busy.
        assert wait_for(lambda: small.servicer.in_flight == 1, 5)
        hook.release.set()
        got = codec.decode(slow.result(timeout=30).output)
        np.testing.assert_array_equal(got, expected(SLOW))
        assert hook.calls == [SLOW]  # the expired request never reached the core
        info = stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)
        assert info.requests_served == info_before.requests_served + 1
        assert info.requests_failed == info_before.requests_failed + 1


def test_cancelled_call_frees_its_admission_slot(small: ServerHandle, hook: CoreHook) -> None:
    with raw_stub(small.target) as stub:
        slow = start_slow(stub, hook)
        queued = stub.TransposedConv.future(request(2.0), timeout=60)
        assert wait_for(lambda: small.servicer.in_flight == 2)
        queued.cancel()
        # The slot frees while the core is still busy (no waiting for the slow call).
        assert wait_for(lambda: small.servicer.in_flight == 1, 3)
        assert not slow.done()
        # ... so the next call is admitted (not UNAVAILABLE) and waits for the core.
        admitted = stub.TransposedConv.future(request(3.0), timeout=60)
        assert wait_for(lambda: small.servicer.in_flight == 2)
        hook.release.set()
        np.testing.assert_array_equal(codec.decode(slow.result(timeout=30).output), expected(SLOW))
        np.testing.assert_array_equal(
            codec.decode(admitted.result(timeout=30).output), expected(3.0)
        )
        assert hook.calls == [SLOW, 3.0]  # the cancelled call was never computed
        assert wait_for(lambda: small.servicer.in_flight == 0)


def test_cancelled_upload_frees_its_admission_slot(
    small: ServerHandle, hook: CoreHook, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunked call cancelled halfway through its upload leaves no slot and no error log."""
    caplog.set_level(logging.INFO, logger="deconv_server")
    stalled = threading.Event()
    done = threading.Event()

    def messages() -> Iterator[pb.TransposedConvRequestChunk]:
        req = request(4.0)
        data = req.input.data
        req.input.data = b""
        yield pb.TransposedConvRequestChunk(request=req)
        yield pb.TransposedConvRequestChunk(data=data[:8])
        stalled.set()
        done.wait(30)

    with raw_stub(small.target) as stub:
        call = stub.TransposedConvChunked(messages(), timeout=60)
        assert stalled.wait(10)
        assert wait_for(lambda: small.servicer.in_flight == 1)
        call.cancel()
        done.set()
        assert wait_for(lambda: small.servicer.in_flight == 0, 5)
        assert hook.calls == []
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert any("CANCELLED" in r.getMessage() for r in caplog.records), [
            (r.name, r.getMessage()) for r in caplog.records
        ]
        reply = stub.TransposedConv(request(5.0), timeout=30)
        np.testing.assert_array_equal(codec.decode(reply.output), expected(5.0))


def test_full_queue_is_unavailable_at_once(small: ServerHandle, hook: CoreHook) -> None:
    with raw_stub(small.target) as stub:
        slow = start_slow(stub, hook)
        queued = stub.TransposedConv.future(request(6.0), timeout=60)
        assert wait_for(lambda: small.servicer.in_flight == 2)
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            stub.TransposedConv(request(8.0), timeout=30)
        assert time.monotonic() - t0 < 1.0  # refused at once, not queued
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "server busy, 2 requests in flight (limit 2)" in err.value.details()
        hook.release.set()
        slow.result(timeout=30)
        np.testing.assert_array_equal(codec.decode(queued.result(timeout=30).output), expected(6.0))
        assert hook.calls == [SLOW, 6.0]


def test_deadline_during_the_computation_harms_nothing(small: ServerHandle, hook: CoreHook) -> None:
    """The caller gives up while its own request computes; the server finishes and lives on."""
    with raw_stub(small.target) as stub:
        with pytest.raises(grpc.RpcError) as err:
            threading.Timer(1.0, hook.release.set).start()
            stub.TransposedConv(request(SLOW), timeout=0.3)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert wait_for(lambda: small.servicer.in_flight == 0, 10)
        reply = stub.TransposedConv(request(1.0), timeout=30)
        np.testing.assert_array_equal(codec.decode(reply.output), expected(1.0))


# -- the in-flight byte budget ------------------------------------------------------------------

#: Bytes request() holds: input 64 + weight 72 + result (1, 2, 9, 9) float32 648 on the wire,
#: plus the scratch memory its plan needs.
ONE_CALL_BYTES = (
    64 + 72 + 648
    + deconv_core.plan_conv_transpose(X.shape, W.shape, stride=2).workspace_bytes
)  # fmt: skip


@pytest.fixture
def tight(server: ServerHandle) -> Iterator[ServerHandle]:
    """A server whose byte budget holds one call of ``request()`` but not two."""
    handle = extra_server(workers=4, max_inflight_bytes=ONE_CALL_BYTES + ONE_CALL_BYTES // 2)
    try:
        yield handle
    finally:
        handle.stop(0).wait(5)


def test_byte_budget_refuses_a_second_call_while_the_first_holds_it(
    tight: ServerHandle, hook: CoreHook
) -> None:
    budget = tight.servicer.budget
    with raw_stub(tight.target) as stub:
        slow = start_slow(stub, hook)
        assert budget.used == ONE_CALL_BYTES
        with pytest.raises(grpc.RpcError) as err:
            stub.TransposedConv(request(1.0), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert f"this one needs {ONE_CALL_BYTES}" in err.value.details()
        chunked = stub.TransposedConvChunked(
            iter([pb.TransposedConvRequestChunk(request=request(2.0))]), timeout=10
        )
        with pytest.raises(grpc.RpcError) as err:
            list(chunked)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        hook.release.set()
        np.testing.assert_array_equal(codec.decode(slow.result().output), expected(SLOW))
        assert wait_for(lambda: budget.used == 0)
        reply = stub.TransposedConv(request(3.0), timeout=10)
        np.testing.assert_array_equal(codec.decode(reply.output), expected(3.0))
    assert budget.used == 0
    assert 1.0 not in hook.calls and 2.0 not in hook.calls  # refused before the core


def test_a_call_larger_than_the_whole_budget_is_resource_exhausted(tight: ServerHandle) -> None:
    big = pb.TransposedConvRequest(
        input=codec.encode(np.ones((1, 1, 8, 8), np.float32)), weight=codec.encode(W), stride=[2]
    )
    with raw_stub(tight.target) as stub:
        with pytest.raises(grpc.RpcError) as err:
            stub.TransposedConv(big, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "in-flight limit" in err.value.details()
    assert tight.servicer.budget.used == 0
    limits = stub_info(tight).limits
    assert limits.max_inflight_bytes == ONE_CALL_BYTES + ONE_CALL_BYTES // 2


def stub_info(handle: ServerHandle) -> pb.GetServerInfoResponse:
    with raw_stub(handle.target) as stub:
        return stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)


def test_byte_budget_from_the_environment() -> None:
    from deconv_server.config import ServerConfig

    cfg = ServerConfig.from_env({"DECONV_MAX_INFLIGHT_BYTES": "1048576"})
    assert cfg.max_inflight_bytes == 1 << 20
    assert ServerConfig().max_inflight_bytes == 4 << 30


def test_a_stalled_chunked_upload_is_cancelled_and_frees_its_slot(server: ServerHandle) -> None:
    """A client that sends the request header and then nothing loses the call after the
    upload timeout; its admission slot and byte reservation come back."""
    handle = extra_server(workers=1, upload_timeout_s=0.5)
    stall = threading.Event()

    def stalled() -> Iterator[pb.TransposedConvRequestChunk]:
        header = request(4.0)
        header.input.ClearField("data")  # the input's bytes "follow"
        yield pb.TransposedConvRequestChunk(request=header)
        stall.wait(30)

    try:
        with raw_stub(handle.target) as stub:
            t0 = time.monotonic()
            with pytest.raises(grpc.RpcError) as err:
                list(stub.TransposedConvChunked(stalled(), timeout=20))
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "the chunked upload took longer than 0.5 s" in err.value.details()
            assert time.monotonic() - t0 < 5
            assert wait_for(lambda: handle.servicer.in_flight == 0)
            assert handle.servicer.budget.used == 0
            reply = stub.TransposedConv(request(5.0), timeout=10)  # the one slot is free again
            np.testing.assert_array_equal(codec.decode(reply.output), expected(5.0))
    finally:
        stall.set()
        handle.stop(0).wait(5)
