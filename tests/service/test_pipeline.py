"""A chunked batch is computed and sent while it still arrives (deconv_server.pipeline)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from deconv import codec
from deconv.v1 import deconv_pb2 as pb
from deconv_client import Client
from deconv_server import pipeline
from deconv_server.app import ServerHandle

from .helpers import core, rand, raw_stub

MIB = 1 << 20


@pytest.fixture
def pipelined(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ops of the calls the (in-process) server ran through the pipeline (forced for every call
    that can take it: any compute counts as shorter than its transfer)."""
    seen: list[str] = []
    original = pipeline.run_pipelined
    monkeypatch.setattr(pipeline, "TRANSFER_BYTES_PER_SECOND", 1)

    async def counting(plan: Any, *args: Any, **kwargs: Any) -> None:
        seen.append(plan.op)
        await original(plan, *args, **kwargs)

    monkeypatch.setattr(pipeline, "run_pipelined", counting)
    return seen


CASES = [
    ("conv", (6, 8, 48, 48), (4, 8, 3, 3), {"padding": 1}),
    (
        "conv",
        (5, 64, 64, 8),
        (4, 2, 3, 3),
        {"stride": 2, "groups": 4, "data_format": "channels_last"},
    ),
    ("conv_transpose", (7, 8, 40, 40), (8, 3, 4, 4), {"stride": 2, "padding": 1}),
    ("conv_transpose", (3, 16, 4000), (16, 2, 5), {"dilation": 2, "output_padding": 1}),
]


@pytest.mark.parametrize(("op", "xs", "ws", "kw"), CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_pipelined_results_equal_the_core(
    target: str, pipelined: list[str], op: str, xs: Any, ws: Any, kw: Any, dtype: Any
) -> None:
    rng = np.random.default_rng(len(xs) + len(kw))
    x, w = rand(rng, xs, dtype), rand(rng, ws, dtype)
    c_out = ws[0] if op == "conv" else ws[1] * kw.get("groups", 1)
    b = rand(rng, (c_out,), dtype)
    with Client(target, timeout=60, max_message_bytes=256 * 1024) as client:
        got = getattr(client, op)(x, w, b, **kw)
    np.testing.assert_array_equal(got, core(op, x, w, b, **kw))
    assert pipelined == [op]  # over the chunked RPC, computed as it arrived


def _data(payload: Any) -> pb.ConvRequestChunk:
    return pb.ConvRequestChunk(data=bytes(payload))


def _first(x: np.ndarray, w: np.ndarray) -> pb.ConvRequestChunk:
    request = pb.ConvRequest(input=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=x.shape))
    request.weight.CopyFrom(codec.encode(w))
    return pb.ConvRequestChunk(request=request)


def test_results_stream_back_before_the_upload_ends(target: str, pipelined: list[str]) -> None:
    """The first image's result arrives while the caller still holds back the others."""
    rng = np.random.default_rng(7)
    x = rand(rng, (3, 1, 512, 512))  # 1 MiB per image: a group of one image each
    w = rand(rng, (1, 1, 3, 3))
    images = [_data(x[i].tobytes()) for i in range(3)]
    gate = threading.Event()

    def requests() -> Iterator[Any]:
        yield _first(x, w)
        yield images[0]
        if not gate.wait(20):
            raise AssertionError("no result came back before the rest of the batch was sent")
        yield from images[1:]

    with raw_stub(target) as stub:
        call = stub.ConvChunked(requests(), timeout=60)
        messages = []
        for message in call:
            messages.append(message)
            if len(messages) == 2:  # the header and a first slice of image 0's result
                gate.set()
    assert messages[0].WhichOneof("part") == "header"
    got = np.frombuffer(b"".join(m.data for m in messages[1:]), np.float32)
    np.testing.assert_array_equal(got.reshape(3, 1, 510, 510), core("conv", x, w))
    assert pipelined == ["conv"]


def _raw_call(target: str, messages: list[Any]) -> grpc.RpcError:
    with raw_stub(target) as stub, pytest.raises(grpc.RpcError) as info:
        list(stub.ConvChunked(iter(messages), timeout=30))
    return info.value


def _settled(server: ServerHandle) -> bool:
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if server.servicer.budget.used == 0 and server.servicer.in_flight == 0:
            return True
        time.sleep(0.02)
    return False


def test_a_short_or_long_stream_is_refused_and_holds_nothing(
    server: ServerHandle, pipelined: list[str]
) -> None:
    x = np.ones((4, 1, 256, 256), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    raw = memoryview(x).cast("B")
    short = [
        _first(x, w),
        *(_data(raw[i : i + MIB // 2]) for i in range(0, MIB, MIB // 2)),
    ]
    error = _raw_call(server.target, short[:-1])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ended after 524288 of the 1048576 bytes" in error.details()
    assert _settled(server)
    error = _raw_call(server.target, [*short, _data(b"\0" * 4)])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "more than the 1048576 bytes" in error.details()
    assert _settled(server)
    again = pb.ConvRequestChunk(request=_first(x, w).request)
    error = _raw_call(server.target, [_first(x, w), short[1], again])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "only data messages may follow the first message" in error.details()
    assert _settled(server)
    assert pipelined == ["conv"] * 3


def test_a_caller_that_leaves_mid_upload_frees_everything(
    server: ServerHandle, pipelined: list[str]
) -> None:
    x = np.ones((4, 1, 512, 512), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    raw = memoryview(x).cast("B")
    sent = threading.Event()

    def requests() -> Iterator[Any]:
        yield _first(x, w)
        yield _data(raw[: 2 * MIB])
        sent.set()
        time.sleep(30)  # never sends the rest: the call is cancelled meanwhile

    with raw_stub(server.target) as stub:
        call = stub.ConvChunked(requests(), timeout=60)
        first = next(call)  # the header: results of the first images are on their way
        assert first.WhichOneof("part") == "header"
        assert sent.wait(10)
        call.cancel()
    assert _settled(server)
    assert pipelined == ["conv"]


def test_only_calls_whose_time_goes_to_the_wire_are_pipelined() -> None:
    from deconv_server.config import ServerConfig
    from deconv_server.convert import plan_request

    def plan(xs: tuple[int, ...], ws: tuple[int, ...]) -> Any:
        request = pb.ConvRequest(input=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=xs))
        request.weight.CopyFrom(codec.encode(np.ones(ws, np.float32)))
        return plan_request("conv", request, ServerConfig(), chunked=True)

    assert pipeline.applies(plan((64, 1, 262144), (1, 1, 1)))  # a copy of 64 MiB: the wire
    assert not pipeline.applies(plan((8, 64, 56, 56), (64, 64, 3, 3)))  # compute-bound
    assert not pipeline.applies(plan((1, 1, 262144), (1, 1, 1)))  # one image: nothing to overlap
