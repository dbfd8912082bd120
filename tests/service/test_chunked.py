"""Chunked RPCs: tensors and results above the message size limit, and malformed streams."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from deconv import codec
from deconv.v1 import deconv_pb2 as pb
from deconv_client import AsyncClient, Client
from deconv_server.app import ServerHandle

from .conftest import extra_server
from .counters import counters
from .helpers import core, rand, raw_stub

LIMIT = 256 * 1024  # bytes per message, both ways, on both sides


@pytest.fixture(scope="module")
def small(server: ServerHandle) -> Iterator[ServerHandle]:
    """A server whose messages are capped at 256 KiB."""
    handle = extra_server(max_message_bytes=LIMIT)
    yield handle
    handle.stop(0).wait(5)


def test_large_inputs_go_in_chunks(small: ServerHandle) -> None:
    rng = np.random.default_rng(0)
    x = rand(rng, (1, 4, 120, 150))  # 288000 bytes > 256 KiB
    w = rand(rng, (4, 2, 3, 3))
    b = rand(rng, (2,))
    _, failed = counters(small.target)
    with Client(small.target, timeout=60, max_message_bytes=LIMIT) as c:
        got = c.conv_transpose(x, w, b, stride=2, padding=1, output_padding=1)
    np.testing.assert_array_equal(
        got, core("conv_transpose", x, w, b, stride=2, padding=1, output_padding=1)
    )
    assert got.flags.writeable
    assert counters(small.target)[1] == failed  # went straight to the chunked RPC


def test_large_result_goes_in_chunks(small: ServerHandle) -> None:
    """Small inputs, a 1 MiB result the client expects from the shapes: chunked at once."""
    rng = np.random.default_rng(1)
    x = rand(rng, (1, 1, 64, 64))
    w = rand(rng, (1, 4, 4, 4))
    _, failed = counters(small.target)
    with Client(small.target, timeout=60, max_message_bytes=LIMIT) as c:
        got = c.conv_transpose(x, w, stride=4)
    assert got.shape == (1, 4, 256, 256)
    np.testing.assert_array_equal(got, core("conv_transpose", x, w, stride=4))
    assert counters(small.target)[1] == failed


# A dilated kernel: the client's estimate (a few hundred bytes) misses the 1.5 MB result.
X_DIL = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
W_DIL = np.ones((1, 4, 2, 2), np.float32)


def test_a_large_result_of_small_tensors_goes_chunked_at_once(small: ServerHandle) -> None:
    """The client computes the result's size (dilation included) and never tries unary."""
    served, failed = counters(small.target)
    with Client(small.target, timeout=60, max_message_bytes=LIMIT) as c:
        got = c.conv_transpose(X_DIL, W_DIL, dilation=300)
    assert got.shape == (1, 4, 304, 304)
    np.testing.assert_array_equal(got, core("conv_transpose", X_DIL, W_DIL, dilation=300))
    assert counters(small.target) == (served + 1, failed)


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_chunked_dtypes(small: ServerHandle, dtype: str) -> None:
    rng = np.random.default_rng(2)
    x = rand(rng, (2, 3, 100, 90), np.float64)
    w = rand(rng, (5, 3, 3, 3), np.float64)
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        xs, ws = x.astype(ml_dtypes.bfloat16), w.astype(ml_dtypes.bfloat16)
        expected = core("conv", xs.astype(np.float32), ws.astype(np.float32), padding="same")
        expected = expected.astype(ml_dtypes.bfloat16)
    else:
        xs, ws = x.astype(dtype), w.astype(dtype)
        expected = core("conv", xs, ws, padding="same")
    with Client(small.target, timeout=60, max_message_bytes=LIMIT) as c:
        got = c.conv(xs, ws, padding="same")
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got.view(np.uint8), expected.view(np.uint8))


def test_async_chunked(small: ServerHandle) -> None:
    rng = np.random.default_rng(3)
    x = rand(rng, (1, 2, 200, 200))
    w = rand(rng, (2, 2, 2, 2))
    expected = core("conv_transpose", x, w, stride=2)

    async def main() -> np.ndarray:
        async with AsyncClient(small.target, timeout=60, max_message_bytes=LIMIT) as c:
            return await c.conv_transpose(x, w, stride=2)

    np.testing.assert_array_equal(asyncio.run(main()), expected)


def _header(x: np.ndarray, w: np.ndarray) -> pb.TransposedConvRequest:
    return pb.TransposedConvRequest(
        input=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=x.shape),
        weight=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=w.shape),
    )


def _chunked(target: str, messages: list[pb.TransposedConvRequestChunk]) -> list[pb.TensorChunk]:
    with raw_stub(target) as stub:
        return list(stub.TransposedConvChunked(iter(messages), timeout=30))


X = np.arange(2 * 5 * 5, dtype=np.float32).reshape(1, 2, 5, 5)
W = np.ones((2, 3, 2, 2), np.float32)
DATA = X.tobytes() + W.tobytes()


def test_raw_stream_in_odd_slices(target: str) -> None:
    """Chunk boundaries may fall anywhere, even across tensors; weight may come inline."""
    cuts = [0, 1, 7, 99, 100, 203, len(DATA)]
    msgs = [pb.TransposedConvRequestChunk(request=_header(X, W))]
    msgs += [pb.TransposedConvRequestChunk(data=DATA[a:b]) for a, b in itertools.pairwise(cuts)]
    replies = _chunked(target, msgs)
    assert replies[0].WhichOneof("part") == "header"
    data = b"".join(r.data for r in replies[1:])
    got = codec.decode(replies[0].header, data=data)
    np.testing.assert_array_equal(got, core("conv_transpose", X, W))

    inline = _header(X, W)
    inline.weight.data = W.tobytes()
    replies = _chunked(
        target,
        [
            pb.TransposedConvRequestChunk(request=inline),
            pb.TransposedConvRequestChunk(data=X.tobytes()),
        ],
    )
    got = codec.decode(replies[0].header, data=b"".join(r.data for r in replies[1:]))
    np.testing.assert_array_equal(got, core("conv_transpose", X, W))


Chunk = pb.TransposedConvRequestChunk
HEAD = Chunk(request=_header(X, W))
HUGE = Chunk(
    request=pb.TransposedConvRequest(
        input=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[1, 2, 1 << 14, 1 << 14]),
        weight=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=W.shape),
    )
)
MALFORMED = {
    "data first": ([Chunk(data=b"xx")], "INVALID_ARGUMENT", "first message .* carry the request"),
    "empty stream": ([], "INVALID_ARGUMENT", "first message .* carry the request"),
    "too few bytes": (
        [HEAD, Chunk(data=DATA[:-5])],
        "INVALID_ARGUMENT",
        f"ended after {len(DATA) - 5} of the {len(DATA)} bytes",
    ),
    "too many bytes": (
        [HEAD, Chunk(data=DATA + b"!")],
        "INVALID_ARGUMENT",
        f"more than the {len(DATA)} bytes",
    ),
    "two requests": ([HEAD, HEAD], "INVALID_ARGUMENT", "only data messages may follow"),
    "too large": ([HUGE], "RESOURCE_EXHAUSTED", "more than the server's limit"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_streams(target: str, case: str) -> None:
    messages, code, pattern = MALFORMED[case]
    with pytest.raises(grpc.RpcError) as info:
        _chunked(target, messages)
    assert info.value.code().name == code
    assert re.search(pattern, info.value.details()), info.value.details()
    replies = _chunked(target, [HEAD, Chunk(data=DATA)])  # still serving
    got = codec.decode(replies[0].header, data=b"".join(r.data for r in replies[1:]))
    np.testing.assert_array_equal(got, core("conv_transpose", X, W))


def test_client_limit_below_the_servers(target: str) -> None:
    """The server (16 MiB) sends 1.5 MB unary; a 256 KiB client refuses it, then streams."""
    with Client(target, timeout=60, max_message_bytes=LIMIT) as c:
        got = c.conv_transpose(X_DIL, W_DIL, dilation=300)
    np.testing.assert_array_equal(got, core("conv_transpose", X_DIL, W_DIL, dilation=300))
