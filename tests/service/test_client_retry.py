"""Against a real server: a unary result too large for the server's messages is fetched chunked.

The client's limit (the 256 MiB default) is above the server's (256 KiB), so the client sends a
400 KB result's call unary; the server refuses it with the chunked-retry trailing metadata and
the client repeats the call over the chunked RPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from deconv import wire
from deconv.v1 import deconv_pb2 as pb
from deconv_client import AsyncClient, Client
from deconv_server.app import ServerHandle

from .conftest import extra_server
from .counters import counters
from .helpers import core, rand, raw_stub

LIMIT = 256 * 1024

rng = np.random.default_rng(11)
X = rand(rng, (1, 1, 80, 80))  # 25.6 KB
W = rand(rng, (1, 1, 4, 4))
# stride 4: a (1, 1, 320, 320) result, 409.6 KB: under the client's unary threshold, over LIMIT


@pytest.fixture(scope="module")
def small(server: ServerHandle) -> Iterator[ServerHandle]:
    """A server whose messages are capped at 256 KiB."""
    handle = extra_server(max_message_bytes=LIMIT)
    yield handle
    handle.stop(0).wait(5)


def test_the_server_asks_for_the_chunked_rpc_in_the_trailing_metadata(
    small: ServerHandle,
) -> None:
    request = pb.TransposedConvRequest(
        input=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=X.shape, data=X.tobytes()),
        weight=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=W.shape, data=W.tobytes()),
        stride=[4],
    )
    with raw_stub(small.target) as stub, pytest.raises(grpc.RpcError) as info:
        stub.TransposedConv(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailing = tuple(info.value.trailing_metadata() or ())
    assert (wire.RETRY_CHUNKED_KEY, wire.RETRY_CHUNKED_VALUE) in trailing


def test_sync_client_repeats_the_call_chunked(small: ServerHandle) -> None:
    _, failed = counters(small.target)
    with Client(small.target, timeout=60) as c:
        got = c.conv_transpose(X, W, stride=4)
    assert got.shape == (1, 1, 320, 320)
    np.testing.assert_array_equal(got, core("conv_transpose", X, W, stride=4))
    assert counters(small.target)[1] == failed + 1  # the refused unary attempt


def test_async_client_repeats_the_call_chunked(small: ServerHandle) -> None:
    async def main() -> np.ndarray:
        async with AsyncClient(small.target, timeout=60) as c:
            return await c.conv_transpose(X, W, stride=4)

    np.testing.assert_array_equal(asyncio.run(main()), core("conv_transpose", X, W, stride=4))


def test_a_client_within_the_servers_limit_never_tries_unary(small: ServerHandle) -> None:
    _, failed = counters(small.target)
    with Client(small.target, timeout=60, max_message_bytes=LIMIT) as c:
        np.testing.assert_array_equal(
            c.conv_transpose(X, W, stride=4), core("conv_transpose", X, W, stride=4)
        )
    assert counters(small.target)[1] == failed
