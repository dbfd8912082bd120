"""Every bad request gets its status code and a message naming the problem; the server lives on."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest
from deconv import codec
from deconv.v1 import deconv_pb2 as pb
from deconv_client import Client
from deconv_server.app import ServerHandle
from deconv_server.servicer import CORE_LOCK
from deconv_server.status import GENERIC_INTERNAL_MESSAGE

import deconv_core

from .conftest import MAX_MESSAGE_BYTES, extra_server
from .helpers import core, raw_stub

X = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
W = np.ones((2, 3, 3, 3), np.float32)


def good_request() -> pb.TransposedConvRequest:
    """A valid 2-D transposed conv (stride 2, padding 1)."""
    return pb.TransposedConvRequest(
        input=codec.encode(X),
        weight=codec.encode(W),
        stride=[2],
        explicit_padding=pb.ExplicitPadding(before=[1], after=[1]),
    )


def _mutate(fn: Callable[[Any], None]) -> pb.TransposedConvRequest:
    req = good_request()
    fn(req)
    return req


BAD_REQUESTS = {
    "wrong byte length": (
        _mutate(lambda r: setattr(r.input, "data", r.input.data[:-4])),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"conv_transpose: input: data has 124 bytes but shape \[1, 2, 4, 4\] of DTYPE_FLOAT32 "
        r"needs 128",
    ),
    "shape mismatch": (
        _mutate(lambda r: r.weight.CopyFrom(codec.encode(np.ones((3, 3, 3, 3), np.float32)))),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"weight.*3.*C_in|C_in.*weight",
    ),
    "dtype mismatch": (
        _mutate(lambda r: r.weight.CopyFrom(codec.encode(W.astype(np.float64)))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "weight dtype float64 must match the input dtype float32",
    ),
    "bfloat16 mixed with float32": (
        _mutate(
            lambda r: r.bias.CopyFrom(codec.encode(np.ones(3, np.float32), dtype=pb.DTYPE_BFLOAT16))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "bias dtype bfloat16 must match the input dtype float32",
    ),
    "unknown dtype value": (
        _mutate(lambda r: setattr(r.input, "dtype", 42)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input: unknown dtype value 42",
    ),
    "unspecified dtype": (
        _mutate(lambda r: setattr(r.weight, "dtype", pb.DTYPE_UNSPECIFIED)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "weight: dtype is DTYPE_UNSPECIFIED",
    ),
    "unknown data_format value": (
        _mutate(lambda r: setattr(r, "data_format", 9)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown data_format value 9",
    ),
    "unknown weight_format value": (
        _mutate(lambda r: setattr(r, "weight_format", 5)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown weight_format value 5",
    ),
    "unknown padding_mode value": (
        _mutate(lambda r: setattr(r, "padding_mode", 11)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "unknown padding_mode value 11",
    ),
    "missing input": (
        _mutate(lambda r: r.ClearField("input")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "the input tensor is missing",
    ),
    "missing weight": (
        _mutate(lambda r: r.ClearField("weight")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "the weight tensor is missing",
    ),
    "negative extent": (
        _mutate(lambda r: r.input.shape.__setitem__(2, -4)),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"input: shape\[2\]=-4 must be >= 0",
    ),
    "output_padding rule": (
        _mutate(lambda r: r.output_padding.extend([2])),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"output_padding\[0\]=2 must be < max\(stride, dilation\)=2",
    ),
    "ragged explicit padding": (
        _mutate(lambda r: r.explicit_padding.before.append(0)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "explicit padding has 2 'before' and 1 'after'",
    ),
    "input too large (declared, no data)": (
        _mutate(
            lambda r: r.input.CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[1, 2, 4096, 4096]))
        ),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        r"input: shape \[1, 2, 4096, 4096\] has 33554432 elements, more than the server's limit",
    ),
    "result too large": (
        _mutate(lambda r: r.stride.__setitem__(0, 4000)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        r"the result \[1, 3, 12001, 12001\] has \d+ elements, more than the server's limit",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_request_status_and_message(target: str, case: str) -> None:
    request, code, pattern = BAD_REQUESTS[case]
    with raw_stub(target) as stub:
        with pytest.raises(grpc.RpcError) as info:
            stub.TransposedConv(request, timeout=30)
        assert info.value.code() == code, info.value.details()
        assert re.search(pattern, info.value.details()), info.value.details()
        # The server still serves, and serves correctly.
        reply = stub.TransposedConv(good_request(), timeout=30)
    np.testing.assert_array_equal(
        codec.decode(reply.output), core("conv_transpose", X, W, stride=2, padding=1)
    )


def test_message_over_the_size_limit(target: str) -> None:
    """gRPC itself refuses a request over max_message_bytes with RESOURCE_EXHAUSTED."""
    big = np.zeros(MAX_MESSAGE_BYTES // 4 + 1024, np.float32).reshape(1, 1, -1)
    req = pb.ConvRequest(
        input=codec.encode(big), weight=codec.encode(np.ones((1, 1, 1), np.float32))
    )
    with raw_stub(target, max_send_message_length=2 * MAX_MESSAGE_BYTES) as stub:
        with pytest.raises(grpc.RpcError) as info:
            stub.Conv(req, timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "message larger than max" in info.value.details().lower()
        stub.TransposedConv(good_request(), timeout=30)


def test_unexpected_exception_is_internal_with_a_generic_message(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail /etc/passwd")

    monkeypatch.setattr(deconv_core, "execute", boom)  # what the servicer runs each plan with
    from deconv_client import InternalError

    with pytest.raises(InternalError) as info:
        client.conv(np.ones((1, 1, 3), np.float32), np.ones((1, 1, 1), np.float32))
    assert str(info.value) == GENERIC_INTERNAL_MESSAGE
    assert "secret" not in str(info.value)
    assert info.value.code == grpc.StatusCode.INTERNAL
    assert isinstance(info.value.__cause__, grpc.RpcError)
    monkeypatch.undo()
    client.conv(np.ones((1, 1, 3), np.float32), np.ones((1, 1, 1), np.float32))


def test_deadline_passes_while_the_core_is_busy(target: str) -> None:
    from deconv_client import DeadlineExceededError

    with Client(target, timeout=0.3) as c:
        with CORE_LOCK:
            start = time.monotonic()
            with pytest.raises(DeadlineExceededError) as info:
                c.conv_transpose(X, W)
            assert time.monotonic() - start < 5
        assert isinstance(info.value, TimeoutError)
        c.timeout = 30
        c.conv_transpose(X, W)


def test_queue_full_is_unavailable(server: ServerHandle) -> None:
    """workers=1: while one call waits for the core, the next gets UNAVAILABLE at once."""
    handle = extra_server(workers=1)
    results: list[Any] = []
    try:
        with raw_stub(handle.target) as stub:
            with CORE_LOCK:
                waiter = threading.Thread(
                    target=lambda: results.append(stub.TransposedConv(good_request(), timeout=30))
                )
                waiter.start()
                deadline = time.monotonic() + 10
                while handle.servicer.in_flight < 1 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert handle.servicer.in_flight == 1
                with pytest.raises(grpc.RpcError) as info:
                    stub.TransposedConv(good_request(), timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "busy" in info.value.details()
            waiter.join(30)
            assert len(results) == 1
            stub.TransposedConv(good_request(), timeout=10)
    finally:
        handle.stop(0).wait(5)


def test_shutting_down_rejects_new_calls_as_unavailable(server: ServerHandle) -> None:
    from deconv_client import UnavailableError

    handle = extra_server()
    with Client(handle.target, timeout=5, retry=False) as c:
        c.conv_transpose(X, W)
        handle.stop(None).wait(5)
        with pytest.raises(UnavailableError):
            c.conv_transpose(X, W)


def test_token_auth(server: ServerHandle) -> None:
    from deconv_client import UnauthenticatedError

    handle = extra_server(auth_token="s3cret")
    try:
        with Client(handle.target, timeout=10) as c:
            assert c.health() == "SERVING"  # probes need no token
            with pytest.raises(UnauthenticatedError, match="authorization: Bearer"):
                c.conv_transpose(X, W)
            big = np.ones((1, 2, 256, 256), np.float32)  # 512 KiB: the chunked RPC
            with pytest.raises(UnauthenticatedError, match="authorization: Bearer"):
                c.conv_transpose(big, W)
        with (
            Client(handle.target, timeout=10, token="wrong") as c,
            pytest.raises(UnauthenticatedError),
        ):
            c.server_info()
        with Client(handle.target, timeout=10, token="s3cret") as c:
            np.testing.assert_array_equal(c.conv_transpose(X, W), core("conv_transpose", X, W))
    finally:
        handle.stop(0).wait(5)


def test_counters_count_served_and_failed(client: Client) -> None:
    before = client.server_info()
    client.conv_transpose(X, W)
    with pytest.raises(ValueError):
        client.conv_transpose(X, W, stride=2, output_padding=3)
    after = client.server_info()
    assert after.requests_served == before.requests_served + 1
    assert after.requests_failed == before.requests_failed + 1
