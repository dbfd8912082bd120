"""A 512 MiB input round-trips through the chunked RPC with an exact result (soak only).

The server runs in this process with limits raised to fit; the client sends the input in
1 MiB chunks and receives the result the same way. The operation is a 1x1 convolution with
weight 2 and bias -1, whose float32 result ``2*x - 1`` is exact for the small integers used as
data, so the check needs no second 512 MiB reference computation. Needs about 3 GiB of RAM.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from deconv_client import Client
from deconv_server.app import ServerHandle, start_server
from deconv_server.config import ServerConfig

pytestmark = pytest.mark.soak

MIB = 1 << 20
ELEMENTS = 512 * MIB // 4  # float32


@pytest.fixture(scope="module")
def big_server() -> Iterator[ServerHandle]:
    handle = start_server(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            max_tensor_elements=ELEMENTS,
            max_output_elements=ELEMENTS,
            max_message_bytes=64 * MIB,
            warmup=False,
            log_level="WARNING",
        )
    )
    try:
        yield handle
    finally:
        handle.stop(0).wait(10)


@pytest.mark.parametrize("op", ["conv", "conv_transpose"])
def test_512_mib_input_round_trips_exactly(big_server: ServerHandle, op: str) -> None:
    x = (np.arange(ELEMENTS, dtype=np.int64) % 4093 - 2046).astype(np.float32)
    x = x.reshape(4, 1, 4096, 8192)
    assert x.nbytes == 512 * MIB
    w = np.full((1, 1, 1, 1), 2.0, np.float32)
    b = np.array([-1.0], np.float32)
    with Client(big_server.target, timeout=600, max_message_bytes=64 * MIB) as client:
        start = time.perf_counter()
        y = getattr(client, op)(x, w, b)
        elapsed = time.perf_counter() - start
    print(f"\n{op}: 512 MiB in + 512 MiB out in {elapsed:.1f} s ({1024 / elapsed:.0f} MiB/s)")
    assert y.shape == x.shape and y.dtype == np.float32
    # 2*x - 1 is exact in float32 for |x| < 2**22; compare in slices to bound extra memory.
    for i in range(x.shape[0]):
        np.testing.assert_array_equal(y[i], 2 * x[i] - 1)
