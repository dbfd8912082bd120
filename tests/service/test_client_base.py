"""The client core without a server: result shapes, the chunked-retry signal, both I/O shells.

The shells run against fake stubs: the unary call fails with a grpc.RpcError (blocking) or an
AioRpcError (asyncio) that carries trailing metadata, exactly as the server's answer would.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import numpy as np
import pytest
from deconv import codec, wire
from deconv.v1 import deconv_pb2 as pb
from deconv.v1 import deconv_pb2_grpc as pb_grpc
from deconv_client import (
    AsyncClient,
    Client,
    DeadlineExceededError,
    InvalidArgumentError,
    ResourceExhaustedError,
    _requests,
    _shapes,
)
from deconv_client._base import ServingWait, asks_for_chunked, rpc_errors
from deconv_client.errors import DeconvClientError, from_rpc_error

import deconv_core

RETRY = (wire.RETRY_CHUNKED_KEY, wire.RETRY_CHUNKED_VALUE)

# -- result shapes ------------------------------------------------------------------------------


def _cases(op: str, count: int) -> Iterator[tuple[tuple, tuple, dict[str, Any]]]:
    """Seeded random (input shape, weight shape, params) of ``op``, valid or not."""
    rng = np.random.default_rng(7 if op == "conv" else 8)
    paddings: list[Any] = ["valid", "same", "same_lower", 0, 1, 2, ((0, 1),), ((2, 1),)]
    for _ in range(count):
        rank = int(rng.integers(1, 4))
        groups = int(rng.choice([1, 2]))
        c_in, c_out = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
        n = [int(v) for v in rng.integers(1, 9, rank)]
        k = [int(v) for v in rng.integers(1, 4, rank)]
        last = bool(rng.integers(2))
        tf = bool(rng.integers(2))
        pad = paddings[int(rng.integers(len(paddings)))]
        if isinstance(pad, tuple):
            pad = list(pad) * rank
        params: dict[str, Any] = {
            "stride": [int(v) for v in rng.integers(1, 4, rank)],
            "padding": pad,
            "dilation": int(rng.integers(1, 3)),
            "groups": groups,
            "data_format": "channels_last" if last else "channels_first",
            "weight_format": "tf" if tf else "torch",
        }
        w_lead = (c_out, c_in // groups) if op == "conv" else (c_in, c_out // groups)
        if op == "conv_transpose":
            choice = int(rng.integers(3))
            if choice == 1:
                params["output_padding"] = 1
            elif choice == 2:
                params["output_shape"] = [v * 2 for v in n]
        x = (1, *n, c_in) if last else (1, c_in, *n)
        w = (*k, *reversed(w_lead)) if tf else (*w_lead, *k)
        yield x, w, params


@pytest.mark.parametrize("op", ["conv", "conv_transpose"])
def test_result_shape_matches_the_cores_plan(op: str) -> None:
    """The client's arithmetic gives the core's output shape for every call the core accepts."""
    plan = deconv_core.plan_conv if op == "conv" else deconv_core.plan_conv_transpose
    checked = 0
    for x, w, params in _cases(op, 400):
        try:
            want = plan(x, w, **params).output_shape
        except deconv_core.InvalidArgumentError:
            continue
        prepared = _requests.build_request(
            op, np.ones(x, np.float32), np.ones(w, np.float32), None, **params
        )
        assert _shapes.result_shape(prepared.request) == want, (x, w, params)
        assert prepared.output_nbytes == 4 * int(np.prod(want))
        checked += 1
    assert checked > 100  # the sweep really exercised the arithmetic


def test_result_shape_is_unknown_only_when_the_shapes_cannot_be_read() -> None:
    request = pb.TransposedConvRequest(
        input=pb.Tensor(shape=[1, 2, 5, 5]), weight=pb.Tensor(shape=[2, 3, 3, 3])
    )
    assert _shapes.result_shape(request) == (1, 3, 7, 7)
    request.stride.extend([2, 2, 2])  # three strides for two axes
    assert _shapes.result_shape(request) is None
    del request.stride[:]
    request.weight.ClearField("shape")
    request.weight.shape.extend([2, 3, 3])  # weight rank differs
    assert _shapes.result_shape(request) is None
    conv = pb.ConvRequest(input=pb.Tensor(shape=[1, 1, 9]), weight=pb.Tensor(shape=[4, 1, 3]))
    conv.stride.append(0)
    assert _shapes.result_shape(conv) is None
    conv.stride[0] = 2
    assert _shapes.result_shape(conv) == (1, 4, 4)


# -- errors and the retry signal ------------------------------------------------------------------


class FakeRpcError(grpc.RpcError):
    """What a blocking stub raises: code(), details(), trailing_metadata()."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: tuple = ()) -> None:
        super().__init__(details)
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._trailing


def _aio_error(code: grpc.StatusCode, details: str, *trailing: tuple[str, str]) -> Exception:
    return grpc.aio.AioRpcError(
        code,
        initial_metadata=grpc.aio.Metadata(),
        trailing_metadata=grpc.aio.Metadata(*trailing),
        details=details,
    )


EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def test_typed_errors_keep_the_trailing_metadata() -> None:
    sync = from_rpc_error(FakeRpcError(EXHAUSTED, "too big", (("x-request-id", "r1"), RETRY)))
    assert isinstance(sync, ResourceExhaustedError)
    assert sync.trailing_metadata == (("x-request-id", "r1"), RETRY)
    aio = from_rpc_error(_aio_error(EXHAUSTED, "too big", RETRY, ("x-request-id", "r2")))
    assert aio.trailing_metadata == (RETRY, ("x-request-id", "r2"))
    assert from_rpc_error(grpc.RpcError()).trailing_metadata == ()
    assert InvalidArgumentError("local check").trailing_metadata == ()


def test_only_the_metadata_key_asks_for_the_chunked_rpc() -> None:
    """The message text never decides, whatever it says."""
    asks = from_rpc_error(FakeRpcError(EXHAUSTED, "anything", (RETRY,)))
    assert asks_for_chunked(asks)
    text_only = FakeRpcError(EXHAUSTED, f"result too large; {codec.CHUNKED_HINT}")
    assert not asks_for_chunked(from_rpc_error(text_only))
    own_limit = FakeRpcError(EXHAUSTED, "Received message larger than max (9 vs. 1)")
    assert not asks_for_chunked(from_rpc_error(own_limit))
    other = FakeRpcError(EXHAUSTED, "x", ((wire.RETRY_CHUNKED_KEY, "unary"),))
    assert not asks_for_chunked(from_rpc_error(other))


def test_rpc_errors_translates_and_chains() -> None:
    original = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "down")
    with pytest.raises(DeconvClientError) as info, rpc_errors():
        raise original
    assert info.value.code == grpc.StatusCode.UNAVAILABLE and str(info.value) == "down"
    assert info.value.__cause__ is original
    with pytest.raises(KeyError), rpc_errors():
        raise KeyError("not a gRPC error")


# -- the shells on fake stubs ---------------------------------------------------------------------

X = np.arange(2 * 3 * 3, dtype=np.float32).reshape(1, 2, 3, 3)
W = np.ones((2, 1, 2, 2), np.float32)
Y = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)  # what the fakes answer


def _unary_response() -> pb.ConvResponse:
    return pb.ConvResponse(
        output=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=Y.shape, data=Y.tobytes())
    )


def _chunks() -> list[pb.TensorChunk]:
    header = pb.TensorChunk(header=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=Y.shape))
    raw = Y.tobytes()
    return [header, pb.TensorChunk(data=raw[:10]), pb.TensorChunk(data=raw[10:])]


class Calls:
    """What the fake stubs saw."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.streamed: list[Any] = []


def _payload(message: bytes) -> bytes:
    """The data of a pre-framed chunk message, checked against protobuf's reading of it."""
    parsed = pb.TransposedConvRequestChunk.FromString(message)
    assert parsed.WhichOneof("part") == "data"
    return parsed.data


def _fake_sync(client: Client, unary_error: Exception | None) -> Calls:
    calls = Calls()

    def unary(request: Any, timeout: Any, metadata: Any) -> pb.ConvResponse:
        calls.log.append(("TransposedConv", metadata))
        if unary_error is not None:
            raise unary_error
        return _unary_response()

    def chunked(requests: Iterator[Any], timeout: Any, metadata: Any) -> Iterator[Any]:
        calls.log.append(("TransposedConvChunked", metadata))
        calls.streamed = list(requests)
        return iter(_chunks())

    def health(request: bytes, timeout: Any, metadata: Any) -> bytes:
        calls.log.append(("Check", metadata))
        return b"\x08\x01"  # SERVING

    client._stub = type("Stub", (), {"TransposedConv": unary})
    client._chunked_calls = {"conv_transpose": chunked}
    client._health_check = health
    return calls


def test_sync_client_repeats_chunked_when_the_server_asks() -> None:
    with Client("127.0.0.1:1", timeout=5, token="t0k") as client:
        calls = _fake_sync(client, FakeRpcError(EXHAUSTED, "too large", (RETRY,)))
        np.testing.assert_array_equal(client.conv_transpose(X, W), Y)
        auth = (("authorization", "Bearer t0k"),)
        assert calls.log == [("TransposedConv", auth), ("TransposedConvChunked", auth)]
        first = calls.streamed[0]
        assert list(first.request.input.shape) == list(X.shape) and not first.request.input.data
        # the small weight rides in the first message; the input follows, pre-framed
        assert first.request.weight.data == W.tobytes()
        assert b"".join(_payload(m) for m in calls.streamed[1:]) == X.tobytes()
        assert client.health() == "SERVING"
        assert calls.log[-1] == ("Check", None)  # health goes without the token


def test_sync_client_raises_other_refusals_with_their_cause() -> None:
    with Client("127.0.0.1:1", timeout=5) as client:
        refusal = FakeRpcError(EXHAUSTED, f"over the FLOPs limit; {codec.CHUNKED_HINT}")
        calls = _fake_sync(client, refusal)
        with pytest.raises(ResourceExhaustedError) as info:
            client.conv_transpose(X, W)
        assert info.value.__cause__ is refusal
        assert [name for name, _ in calls.log] == ["TransposedConv"]  # no chunked retry
        calls = _fake_sync(client, None)
        np.testing.assert_array_equal(client.conv_transpose(X, W), Y)
        assert [name for name, _ in calls.log] == ["TransposedConv"]


def test_sync_client_goes_straight_to_chunked_for_a_large_result() -> None:
    with Client("127.0.0.1:1", timeout=5, max_message_bytes=256 * 1024) as client:
        calls = _fake_sync(client, AssertionError("the unary RPC must not be tried"))
        # 367 KB: under UNARY_BYTES, but over this client's own receive limit
        np.testing.assert_array_equal(client.conv_transpose(X, W, dilation=300), Y)
        assert [name for name, _ in calls.log] == ["TransposedConvChunked"]


def _fake_async(client: AsyncClient, unary_error: Exception | None) -> Calls:
    calls = Calls()

    async def unary(request: Any, timeout: Any, metadata: Any) -> pb.ConvResponse:
        calls.log.append(("TransposedConv", metadata))
        if unary_error is not None:
            raise unary_error
        return _unary_response()

    class ChunkedCall:
        """A fake streaming call: accepts the request at once, then answers the chunks."""

        def __init__(self, requests: AsyncIterator[Any]) -> None:
            self._requests = requests

        async def initial_metadata(self) -> tuple[()]:
            return ()

        def done(self) -> bool:
            return False

        async def __aiter__(self) -> AsyncIterator[Any]:
            calls.streamed = [r async for r in self._requests]
            for message in _chunks():
                await asyncio.sleep(0)
                yield message

    def chunked(requests: AsyncIterator[Any], timeout: Any, metadata: Any) -> ChunkedCall:
        calls.log.append(("TransposedConvChunked", metadata))
        return ChunkedCall(requests)

    client._stub = type("Stub", (), {"TransposedConv": unary})
    client._chunked_calls = {"conv_transpose": chunked}
    return calls


def test_async_client_repeats_chunked_when_the_server_asks() -> None:
    async def main() -> None:
        async with AsyncClient("127.0.0.1:1", timeout=5) as client:
            calls = _fake_async(client, _aio_error(EXHAUSTED, "too large", RETRY))
            np.testing.assert_array_equal(await client.conv_transpose(X, W), Y)
            assert [name for name, _ in calls.log] == ["TransposedConv", "TransposedConvChunked"]
            refusal = _aio_error(EXHAUSTED, f"result too large; {codec.CHUNKED_HINT}")
            calls = _fake_async(client, refusal)
            with pytest.raises(ResourceExhaustedError) as info:
                await client.conv_transpose(X, W)
            assert info.value.__cause__ is refusal
            assert [name for name, _ in calls.log] == ["TransposedConv"]

    asyncio.run(main())


def test_async_methods_are_coroutine_functions_that_check_when_awaited() -> None:
    for name in ("conv", "conv_transpose", "health", "server_info", "wait_until_serving"):
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
    assert AsyncClient.conv.__doc__ == Client.conv.__doc__

    async def main() -> None:
        async with AsyncClient("127.0.0.1:1", timeout=5) as client:
            pending = client.conv(X, W, groups=0)  # nothing checked yet
            with pytest.raises(InvalidArgumentError, match="groups=0"):
                await pending
            assert repr(client) == "AsyncClient('127.0.0.1:1', timeout=5)"

    asyncio.run(main())


def test_repr_attributes_and_stub_methods() -> None:
    with Client("127.0.0.1:1", timeout=2.5, max_message_bytes=1 << 20) as client:
        assert repr(client) == "Client('127.0.0.1:1', timeout=2.5)"
        assert (client.target, client.timeout, client.max_message_bytes) == (
            "127.0.0.1:1",
            2.5,
            1 << 20,
        )
    with grpc.insecure_channel("127.0.0.1:1") as channel:
        stub = pb_grpc.DeconvStub(channel)
        for methods in wire.METHODS.values():
            assert callable(getattr(stub, methods.unary))
            assert callable(getattr(stub, methods.chunked))
    with pytest.raises(ValueError, match="token or token_file"):
        Client("127.0.0.1:1", token="a", token_file="b")


# -- waiting for SERVING --------------------------------------------------------------------------


def test_serving_wait_polls_until_serving_or_the_deadline() -> None:
    wait = ServingWait("h:1", 0.5)
    assert wait.again("NOT_SERVING") and wait.again("UNAVAILABLE")
    assert not wait.again("SERVING")
    expired = ServingWait("h:1", 0.0)
    with pytest.raises(DeadlineExceededError, match=r"h:1 not SERVING after 0.0 s \(last status X"):
        expired.again("X")
    assert not expired.again("SERVING")  # a SERVING answer wins even at the deadline


def test_wait_until_serving_gives_up_on_an_unreachable_target() -> None:
    with Client("127.0.0.1:1", timeout=0.2) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError, match="last status"):
            client.wait_until_serving(timeout=0.3)
        assert time.monotonic() - started < 5
    polls = itertools.count()

    class Flaky(Client):
        def health(self, service: str = "") -> str:
            return "SERVING" if next(polls) >= 2 else "NOT_SERVING"

    with Flaky("127.0.0.1:1") as flaky:
        flaky.wait_until_serving(timeout=5)
    assert next(polls) == 3
