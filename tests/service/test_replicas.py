"""A client over several addresses spreads calls (round_robin) and survives losing a replica."""

from __future__ import annotations

import numpy as np
from deconv_client import Client
from deconv_server.app import ServerHandle

from .conftest import extra_server
from .counters import counters
from .helpers import core

X = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
W = np.ones((1, 2, 2, 2), np.float32)


def test_round_robin_and_failover(server: ServerHandle) -> None:
    replicas = [extra_server(), extra_server()]
    expected = core("conv_transpose", X, W, stride=2)
    try:
        target = "ipv4:///" + ",".join(h.target for h in replicas)
        with Client(target, timeout=30) as client:
            for _ in range(20):
                np.testing.assert_array_equal(client.conv_transpose(X, W, stride=2), expected)
            served = [counters(h.target)[0] for h in replicas]
            assert all(n >= 5 for n in served), f"calls not spread: {served}"
            replicas[0].stop(0).wait(5)
            for _ in range(20):  # every call succeeds: UNAVAILABLE is retried on the survivor
                np.testing.assert_array_equal(client.conv_transpose(X, W, stride=2), expected)
            assert counters(replicas[1].target)[0] >= served[1] + 20
    finally:
        for h in replicas:
            h.stop(0).wait(5)
