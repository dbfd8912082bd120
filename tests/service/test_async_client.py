"""AsyncClient: same results and errors as the blocking client, concurrent calls on one channel."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from deconv_client import AsyncClient, DeadlineExceededError, InvalidArgumentError
from deconv_server.servicer import CORE_LOCK

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
