"""Load: 32 concurrent clients x mixed calls beside malformed ones; every result exact.

Each client runs a fixed mix of calls (ranks 1-3, float32/float64/float16/bfloat16, conv and
transposed conv, bias or not, groups, dilation, padding modes, channels-last and TF layouts)
against an in-process server admitting 32 calls at once (so no call is turned away as busy and
retried) and compares each result bit for bit with deconv_core's own result computed up front.
The normal suite runs 32 x 200 calls (about 10 s on 2 cores); ``make soak`` runs 32 x 2000.
RSS (this process holds the server) must end within 100 MiB of its start.
"""

from __future__ import annotations

import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import ml_dtypes
import numpy as np
import pytest
from deconv import codec
from deconv_client import Client
from deconv_server.app import ServerHandle

from .conftest import extra_server
from .counters import counters
from .helpers import core
from .test_malformed import CASES as MALFORMED
from .test_malformed import LIMITS as MALFORMED_LIMITS
from .test_malformed import call as send_malformed
from .test_malformed import rss_bytes

CLIENTS = 32
RSS_SLACK = 100 << 20

Case = tuple[str, tuple[np.ndarray, np.ndarray, np.ndarray | None], dict[str, Any]]


def _cases() -> list[Case]:
    """Small calls covering ranks, ops, dtypes and options (float32 data, cast per dtype)."""
    rng = np.random.default_rng(7)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    base: list[Case] = [
        ("conv_transpose", (r(2, 4, 9), r(4, 3, 4), r(3)), {"stride": 2, "padding": 1}),
        ("conv", (r(1, 4, 11), r(6, 2, 3), None), {"groups": 2, "dilation": 2, "padding": "same"}),
        (
            "conv_transpose",
            (r(1, 4, 6, 5), r(4, 3, 3, 3), r(3)),
            {"stride": 2, "padding": 1, "output_padding": 1},
        ),
        ("conv", (r(2, 3, 7, 6), r(5, 3, 3, 2), r(5)), {"stride": (2, 1), "padding": "valid"}),
        (
            "conv_transpose",
            (r(1, 4, 5, 4), r(4, 1, 2, 2), None),
            {"groups": 4, "stride": 2, "padding": "same", "output_shape": [10, 8]},
        ),
        (
            "conv",
            (r(1, 5, 6, 3), r(3, 3, 3, 4), r(4)),
            {"padding": [(1, 0), (0, 1)], "data_format": "channels_last", "weight_format": "tf"},
        ),
        (
            "conv_transpose",
            (r(1, 2, 3, 4, 3), r(2, 2, 2, 2, 2), r(2)),
            {"stride": (1, 2, 2), "dilation": (2, 1, 1)},
        ),
        ("conv", (r(1, 2, 4, 5, 4), r(2, 1, 2, 3, 2), None), {"groups": 2, "padding": 1}),
    ]
    cases: list[Case] = []
    for dtype in (np.float32, np.float64, np.float16, ml_dtypes.bfloat16):
        for op, arrays, params in base:
            cases.append(
                (op, tuple(None if a is None else a.astype(dtype) for a in arrays), params)  # type: ignore[misc]
            )
    return cases


def _expected(op: str, arrays: tuple[Any, ...], params: dict[str, Any]) -> np.ndarray:
    """deconv_core's result in the caller's dtype; bfloat16 computes in float32 and rounds."""
    if arrays[0].dtype == ml_dtypes.bfloat16:
        wide = tuple(None if a is None else a.astype(np.float32) for a in arrays)
        bits = codec.float32_to_bfloat16_bits(core(op, *wide, **params))
        return bits.view(ml_dtypes.bfloat16)
    return core(op, *arrays, **params)


def run_load(server: ServerHandle, target: str, calls: int) -> None:
    """CLIENTS threads, each with its own Client, ``calls`` calls each; all exact."""
    cases = _cases()
    expected = [_expected(op, arrays, params) for op, arrays, params in cases]
    served_before, failed_before = counters(target)  # before measuring: it opens a channel
    gc.collect()
    rss_start = rss_bytes()
    start = threading.Barrier(CLIENTS)

    def worker(index: int) -> int:
        ok = 0
        with Client(target, timeout=120) as client:
            start.wait(60)
            for call in range(calls):
                k = (index * 5 + call * 3) % len(cases)
                op, arrays, params = cases[k]
                got = getattr(client, op)(*arrays, **params)
                want = expected[k]
                assert got.dtype == want.dtype, (k, got.dtype, want.dtype)
                assert got.shape == want.shape, (k, got.shape, want.shape)
                assert got.tobytes() == want.tobytes(), f"case {k} differs"  # bit for bit
                ok += 1
        return ok

    loaded = threading.Event()
    bad: dict[str, int] = {"sent": 0}
    wrong: list[str] = []

    def malformed() -> None:
        """Beside the load, a stream of malformed requests, each with its expected status."""
        with grpc.insecure_channel(target) as channel:
            while not loaded.is_set():
                for name, case in MALFORMED.items():
                    try:
                        send_malformed(channel, case)
                        code = grpc.StatusCode.OK
                    except grpc.RpcError as exc:
                        code = exc.code()
                    if code != case.code:
                        wrong.append(f"{name}: {code.name}")
                    bad["sent"] += 1
                    if loaded.is_set():
                        break

    side = threading.Thread(target=malformed)
    t0 = time.perf_counter()
    side.start()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            done = list(pool.map(worker, range(CLIENTS)))
    finally:
        loaded.set()
        side.join(60)
    elapsed = time.perf_counter() - t0
    assert not wrong, wrong
    assert bad["sent"] > 0
    assert done == [calls] * CLIENTS
    assert server.servicer.in_flight == 0
    gc.collect()
    grown = rss_bytes() - rss_start
    print(f"\n{CLIENTS} x {calls} calls in {elapsed:.1f} s; RSS {grown / 2**20:+.1f} MiB")
    assert grown < RSS_SLACK, f"RSS grew by {grown / 2**20:.1f} MiB"
    served, failed = counters(target)
    assert served == served_before + CLIENTS * calls  # every good call, no malformed one
    assert failed <= failed_before + bad["sent"]


@pytest.fixture(scope="module")
def wide(server: ServerHandle) -> Any:
    """A server with 32 workers and the malformed cases' limits (``server`` compiled the
    kernels)."""
    handle = extra_server(**{**MALFORMED_LIMITS, "workers": CLIENTS + 1})
    yield handle
    handle.stop(0).wait(5)


def test_load_32_clients_x_200_calls(wide: ServerHandle) -> None:
    run_load(wide, wide.target, 200)


@pytest.mark.soak
def test_load_32_clients_x_2000_calls(wide: ServerHandle) -> None:
    run_load(wide, wide.target, 2000)
