"""AsyncClient: same results and errors as the blocking client, concurrent calls on one channel."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from deconv_client import (
    AsyncClient,
    DeadlineExceededError,
    InvalidArgumentError,
    ResourceExhaustedError,
)
from deconv_server.app import ServerHandle
from deconv_server.servicer import CORE_LOCK

from .conftest import extra_server
from .helpers import core, rand


def test_async_calls(target: str) -> None:
    rng = np.random.default_rng(5)
    x = rand(rng, (2, 3, 5, 5))
    wt = rand(rng, (3, 4, 3, 3))
    wc = rand(rng, (4, 3, 3, 3))
    b = rand(rng, (4,))
    want_t = core("conv_transpose", x, wt, b, stride=2, padding=1, output_padding=1)
    want_c = core("conv", x, wc, b, stride=2, padding="same")

    async def main() -> None:
        async with AsyncClient(target, timeout=60) as client:
            assert await client.health() == "SERVING"
            await client.wait_until_serving(5)
            info = await client.server_info()
            assert info.warm and "float32" in info.dtypes
            results = await asyncio.gather(
                *[
                    client.conv_transpose(x, wt, b, stride=2, padding=1, output_padding=1)
                    for _ in range(8)
                ],
                *[client.conv(x, wc, b, stride=2, padding="same") for _ in range(8)],
            )
            for got in results[:8]:
                np.testing.assert_array_equal(got, want_t)
            for got in results[8:]:
                np.testing.assert_array_equal(got, want_c)
            with pytest.raises(InvalidArgumentError, match=r"output_padding\[0\]=2"):
                await client.conv_transpose(x, wt, stride=2, output_padding=2)

    asyncio.run(main())


def test_async_deadline(target: str) -> None:
    x = np.ones((1, 1, 4), np.float32)

    async def main() -> None:
        async with AsyncClient(target, timeout=0.2) as client:
            with pytest.raises(DeadlineExceededError):
                await client.conv(x, x[:, :, :1])

    with CORE_LOCK:
        asyncio.run(main())


def test_async_chunked_call_refused_at_its_header_reports_the_servers_status(
    server: ServerHandle,
) -> None:
    """The server ends the call while the client still uploads: the client reports its status."""
    small = extra_server(max_output_elements=1000)
    x = np.ones((1, 2, 300, 300), np.float32)  # over 512 KiB: the chunked RPC

    async def main() -> None:
        async with AsyncClient(small.target, timeout=30) as client:
            with pytest.raises(ResourceExhaustedError, match=r"server's limit of 1000"):
                await client.conv_transpose(x, np.ones((2, 2, 3, 3), np.float32), stride=2)

    try:
        asyncio.run(main())
    finally:
        small.stop(0).wait(5)
