"""The gradient and deconvolution RPCs against the in-process server: the core's results, over
the wire, with the same checks, limits, progress stream and cancellation as the other calls."""

from __future__ import annotations

import asyncio
import threading
import time

import grpc
import numpy as np
import pytest
from deconv import codec
from deconv.v1 import deconv_pb2 as pb
from deconv.v1 import deconv_pb2_grpc as pb_grpc
from deconv_client import AsyncClient, Client, InvalidArgumentError
from deconv_server.app import ServerHandle

import deconv_core

from .conftest import extra_server

RNG = np.random.default_rng(11)
X = RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)
W = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)  # conv: (C_out, C_in, k, k)
B = RNG.standard_normal(4).astype(np.float32)


@pytest.mark.parametrize(
    ("op", "x", "w", "params"),
    [
        ("conv", X, W, {"stride": 2, "padding": 1}),
        ("conv", X, W, {"padding": "same", "dilation": 2, "padding_mode": "reflect"}),
        ("conv_transpose", X, W.transpose(1, 0, 2, 3).copy(), {"stride": 2, "padding": 1,
                                                                "output_padding": 1}),
    ],
)  # fmt: skip
def test_backward_over_the_wire_is_the_cores(client: Client, op: str, x, w, params) -> None:
    forward = getattr(deconv_core, op)(x, w, **params)
    g = RNG.standard_normal(forward.shape).astype(np.float32)
    core_fn = getattr(deconv_core, f"{op}_backward")
    want = core_fn(g, x, w, **params)
    got = getattr(client, f"{op}_backward")(g, x, w, **params)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    only = getattr(client, f"{op}_backward")(g, x, w, need=("weight",), **params)
    assert only.grad_input is None and only.grad_bias is None
    np.testing.assert_array_equal(only.grad_weight, want.grad_weight)


def test_backward_errors_are_the_cores(client: Client) -> None:
    g = np.zeros((2, 4, 5, 5), np.float32)  # the forward output is (2, 4, 3, 3)
    with pytest.raises(InvalidArgumentError) as err:
        client.conv_backward(g, X, W, stride=2, padding=1)
    with pytest.raises(deconv_core.InvalidArgumentError) as core_err:
        deconv_core.conv_backward(g, X, W, stride=2, padding=1)
    assert str(err.value) == str(core_err.value)
    with pytest.raises(InvalidArgumentError, match="need='gradient' is not a gradient"):
        client.conv_backward(g, X, W, need=("gradient",))


def test_unknown_need_on_the_wire_is_invalid(target: str) -> None:
    request = pb.ConvBackwardRequest(
        forward=pb.ConvRequest(input=codec.encode(X), weight=codec.encode(W)),
        grad_output=codec.encode(np.zeros((2, 4, 4, 4), np.float32)),
        need=[7],
    )
    with grpc.insecure_channel(target) as channel:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.DeconvStub(channel).ConvBackward(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown need value 7" in err.value.details()


def test_deconvolve_over_the_wire_is_the_cores(client: Client) -> None:
    y = deconv_core.conv(X, W, B, padding=1)
    kw = {"op": "conv", "input_shape": X.shape, "padding": 1, "max_iter": 40}
    got = client.deconvolve(y, W, B, **kw)
    want = deconv_core.deconvolve(y, W, B, **kw)
    assert (got.iterations, got.stop_reason) == (want.iterations, want.stop_reason)
    np.testing.assert_array_equal(got.x, want.x)
    assert got.residual_history == pytest.approx(want.residual_history)
    seen: list[int] = []
    streamed = client.deconvolve(y, W, B, progress=lambda i, r: seen.append(i), **kw)
    np.testing.assert_array_equal(streamed.x, want.x)
    assert seen and seen == sorted(seen) and seen[-1] <= want.iterations


def test_deconvolve_refuses_an_input_with_data(target: str) -> None:
    request = pb.DeconvolveRequest(
        conv=pb.ConvRequest(input=codec.encode(X), weight=codec.encode(W)),
        observed=codec.encode(deconv_core.conv(X, W)),
    )
    with grpc.insecure_channel(target) as channel:
        with pytest.raises(grpc.RpcError) as err:
            pb_grpc.DeconvStub(channel).Deconvolve(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "gives only the dtype and shape of x" in err.value.details()


BIG_X = np.ones((4, 8, 64, 64), np.float32)
BIG_W = np.ones((8, 8, 5, 5), np.float32) / 200


def test_a_solve_stops_at_the_time_limit(server: ServerHandle) -> None:
    limited = extra_server(max_compute_seconds=0.5)
    try:
        y = deconv_core.conv(BIG_X, BIG_W, padding=2) + 0.01
        with Client(limited.target, timeout=60) as c:
            t0 = time.monotonic()
            result = c.deconvolve(
                y, BIG_W, op="conv", input_shape=BIG_X.shape, padding=2, tol=1e-30,
                max_iter=100_000,
            )  # fmt: skip
        assert result.stop_reason == "time_limit"
        assert 0 < result.iterations < 100_000
        assert time.monotonic() - t0 < 10
    finally:
        limited.stop(0).wait(5)


def test_a_cancelled_solve_frees_the_core(target: str, client: Client) -> None:
    y = deconv_core.conv(BIG_X, BIG_W, padding=2) + 0.01
    started = threading.Event()

    async def main() -> None:
        async with AsyncClient(target, timeout=60) as c:
            solve = asyncio.ensure_future(
                c.deconvolve(
                    y, BIG_W, op="conv", input_shape=BIG_X.shape, padding=2, tol=1e-30,
                    max_iter=100_000, progress=lambda i, r: started.set(),
                )
            )  # fmt: skip
            while not started.is_set():
                await asyncio.sleep(0.02)
            solve.cancel()
            with pytest.raises(asyncio.CancelledError):
                await solve

    asyncio.run(main())
    t0 = time.monotonic()
    np.testing.assert_array_equal(client.conv(X, W), deconv_core.conv(X, W))
    assert time.monotonic() - t0 < 1.0
