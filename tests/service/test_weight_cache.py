"""The content-addressed weight cache: hits, misses retried by both clients, eviction, checks."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from deconv import codec, wire
from deconv.v1 import deconv_pb2 as pb
from deconv_client import AsyncClient, Client
from deconv_server.app import ServerHandle
from deconv_server.metrics import Metrics
from deconv_server.weights import WeightCache
from prometheus_client import generate_latest

import deconv_core
from tests.service.conftest import extra_server
from tests.service.helpers import core, raw_stub

KIB = 1024


@pytest.fixture
def small_cache() -> Iterator[ServerHandle]:
    """A server whose cache holds one 128 KiB weight, not two."""
    handle = extra_server(weight_cache_bytes=200 * KIB)
    try:
        yield handle
    finally:
        handle.stop(0).wait(10)


def _weight(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((64, 32, 4, 4)).astype(np.float32)  # 128K


def _x(batch: int = 1, size: int = 8) -> np.ndarray:
    return np.random.default_rng(9).standard_normal((batch, 64, size, size)).astype(np.float32)


def _expected(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return core("conv_transpose", x, w, stride=2, padding=1)


def _reference(
    x: np.ndarray, w: np.ndarray, *, with_data: bool = False
) -> pb.TransposedConvRequest:
    request = pb.TransposedConvRequest(stride=[2])
    request.explicit_padding.before.append(1)
    request.explicit_padding.after.append(1)
    codec.encode(x, out=request.input)
    codec.encode(w, out=request.weight)
    request.weight_digest = wire.weight_digest(pb.DTYPE_FLOAT32, w.shape, w)
    if not with_data:
        request.weight.data = b""
    return request


def test_second_call_sends_no_weight_bytes(small_cache: ServerHandle) -> None:
    cache = small_cache.servicer.weights
    x, w = _x(), _weight(1)
    with Client(small_cache.target, timeout=60) as client:
        first = client.conv_transpose(x, w, stride=2, padding=1)
        received = cache.weight_bytes_received
        assert received == w.nbytes and cache.inserts == 1
        second = client.conv_transpose(x, w, stride=2, padding=1)
    assert cache.weight_bytes_received == received  # the second call moved no weight bytes
    assert cache.hits == 1 and cache.misses == 0
    np.testing.assert_array_equal(first, _expected(x, w))
    np.testing.assert_array_equal(second, first)


def test_eviction_then_a_miss_is_retried_with_the_bytes(small_cache: ServerHandle) -> None:
    cache = small_cache.servicer.weights
    x, w1, w2 = _x(), _weight(1), _weight(2)
    with Client(small_cache.target, timeout=60) as client:
        client.conv_transpose(x, w1, stride=2, padding=1)
        client.conv_transpose(x, w2, stride=2, padding=1)  # evicts w1: the cache holds one
        assert cache.evictions == 1 and len(cache) == 1 and cache.used <= cache.limit
        y = client.conv_transpose(x, w1, stride=2, padding=1)  # by digest: miss, then bytes
    assert cache.misses == 1
    np.testing.assert_array_equal(y, _expected(x, w1))


def test_the_async_client_retries_a_miss(small_cache: ServerHandle) -> None:
    cache = small_cache.servicer.weights
    x, w1, w2 = _x(), _weight(1), _weight(2)

    async def run() -> np.ndarray:
        async with AsyncClient(small_cache.target, timeout=60) as client:
            await client.conv_transpose(x, w1, stride=2, padding=1)
            await client.conv_transpose(x, w1, stride=2, padding=1)  # hit
            await client.conv_transpose(x, w2, stride=2, padding=1)
            return await client.conv_transpose(x, w1, stride=2, padding=1)  # miss, retried

    y = asyncio.run(run())
    assert cache.hits == 1 and cache.misses == 1
    np.testing.assert_array_equal(y, _expected(x, w1))


@pytest.mark.parametrize("client_type", ["sync", "async"])
def test_chunked_calls_leave_a_cached_weight_out_of_the_stream(
    small_cache: ServerHandle, client_type: str
) -> None:
    cache = small_cache.servicer.weights
    x, w1, w2 = _x(1, 48), _weight(1), _weight(2)  # a 576 KiB input: chunked

    async def arun() -> list[np.ndarray]:
        async with AsyncClient(small_cache.target, timeout=60) as client:
            return [
                await client.conv_transpose(x, w, stride=2, padding=1) for w in (w1, w1, w2, w1)
            ]

    if client_type == "sync":
        with Client(small_cache.target, timeout=60) as client:
            ys = [client.conv_transpose(x, w, stride=2, padding=1) for w in (w1, w1, w2, w1)]
    else:
        ys = asyncio.run(arun())
    assert cache.hits == 1 and cache.misses == 1 and cache.inserts == 3
    assert cache.weight_bytes_received == 3 * w1.nbytes  # calls 1, 3 and the retry of 4
    expected = _expected(x, w1)
    for y in (ys[0], ys[1], ys[3]):
        np.testing.assert_array_equal(y, expected)


def test_concurrent_identical_inserts_store_one_weight(small_cache: ServerHandle) -> None:
    cache = small_cache.servicer.weights
    x, w = _x(), _weight(3)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            with Client(small_cache.target, timeout=60) as client:  # each sends the bytes
                client.conv_transpose(x, w, stride=2, padding=1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.inserts == 1 and len(cache) == 1 and cache.used == w.nbytes


def test_raw_reference_miss_names_the_trailer(small_cache: ServerHandle) -> None:
    with raw_stub(small_cache.target) as stub, pytest.raises(grpc.RpcError) as info:
        stub.TransposedConv(_reference(_x(), _weight(4)), timeout=30)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    trailers = tuple(info.value.trailing_metadata())
    assert (wire.WEIGHT_CACHE_KEY, wire.WEIGHT_CACHE_MISS) in trailers


def test_a_digest_that_does_not_match_its_bytes_is_refused(small_cache: ServerHandle) -> None:
    x, w = _x(), _weight(5)
    request = _reference(x, w, with_data=True)
    request.weight_digest = wire.weight_digest(pb.DTYPE_FLOAT32, w.shape, _weight(6))
    with raw_stub(small_cache.target) as stub, pytest.raises(grpc.RpcError) as info:
        stub.TransposedConv(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not match" in info.value.details()
    assert len(small_cache.servicer.weights) == 0  # nothing kept under the forged digest


@pytest.mark.parametrize("digest", [b"short", b"x" * 33])
def test_a_digest_of_the_wrong_length_is_refused(small_cache: ServerHandle, digest: bytes) -> None:
    request = _reference(_x(), _weight(5), with_data=True)
    request.weight_digest = digest
    with raw_stub(small_cache.target) as stub, pytest.raises(grpc.RpcError) as info:
        stub.TransposedConv(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "SHA-256" in info.value.details()


def test_a_reference_with_another_shape_is_refused(small_cache: ServerHandle) -> None:
    x, w = _x(), _weight(7)
    with raw_stub(small_cache.target) as stub:
        stub.TransposedConv(_reference(x, w, with_data=True), timeout=30)  # stored
        request = _reference(x, w)
        del request.weight.shape[:]
        request.weight.shape.extend([64, 16, 4, 8])  # same element count, another shape
        with pytest.raises(grpc.RpcError) as info:
            stub.TransposedConv(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "names a weight of" in info.value.details()


def test_weight_pending_without_a_digest_is_refused(small_cache: ServerHandle) -> None:
    request = _reference(_x(), _weight(1))
    request.weight_digest = b""
    chunk = pb.TransposedConvRequestChunk(request=request, weight_pending=True)
    with raw_stub(small_cache.target) as stub, pytest.raises(grpc.RpcError) as info:
        list(stub.TransposedConvChunked(iter([chunk]), timeout=30))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "weight_pending" in info.value.details()


def test_backward_calls_refuse_a_digest(small_cache: ServerHandle) -> None:
    x, w = _x(), _weight(1)
    forward = _reference(x, w, with_data=True)
    g = codec.encode(np.zeros((1, 32, 16, 16), np.float32))
    request = pb.TransposedConvBackwardRequest(forward=forward, grad_output=g)
    with raw_stub(small_cache.target) as stub, pytest.raises(grpc.RpcError) as info:
        stub.TransposedConvBackward(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "weight_digest" in info.value.details()


def test_cache_off_answers_off_and_the_client_stops_naming_weights() -> None:
    handle = extra_server(weight_cache_bytes=0)
    try:
        x, w = _x(), _weight(1)
        with raw_stub(handle.target) as stub, pytest.raises(grpc.RpcError) as info:
            stub.TransposedConv(_reference(x, w), timeout=30)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert (wire.WEIGHT_CACHE_KEY, wire.WEIGHT_CACHE_OFF) in tuple(
            info.value.trailing_metadata()
        )
        cache = handle.servicer.weights
        with Client(handle.target, timeout=60) as client:
            ys = [client.conv_transpose(x, w, stride=2, padding=1) for _ in range(4)]
            assert not client._weights.enabled
            assert client.server_info().limits["weight_cache_bytes"] == 0
        assert len(cache) == 0 and cache.misses == 2  # the raw call's and the client's one
        assert cache.weight_bytes_received == 4 * w.nbytes
        for y in ys:
            np.testing.assert_array_equal(y, _expected(x, w))
    finally:
        handle.stop(0).wait(10)


def test_a_weight_larger_than_the_cache_is_used_but_not_kept() -> None:
    cache = WeightCache(100)
    tensor = pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[64])
    assert not cache.store(b"d" * 32, tensor, bytes(256))
    assert len(cache) == 0 and cache.used == 0


def test_metrics_export_the_cache_counters() -> None:
    cache = WeightCache(1 << 20)
    cache.hits, cache.misses, cache.weight_bytes_received = 3, 2, 4096
    metrics = Metrics()
    metrics.track_weights(cache)
    text = generate_latest(metrics.registry).decode()
    assert "deconv_weight_cache_hits_total 3.0" in text
    assert "deconv_weight_cache_misses_total 2.0" in text
    assert "deconv_weight_bytes_received_total 4096.0" in text
    assert "deconv_weight_cache_bytes 0.0" in text


def test_a_frozen_weight_is_hashed_once(server: ServerHandle, monkeypatch: pytest.MonkeyPatch):
    """Weights over immutable memory (layers hold theirs so) are hashed on the first call only;
    an ordinary array is hashed on every call, so changing it in place is never missed."""
    import deconv_client._weights as memo_module
    from deconv_client.layers import Layer

    hashed: list[int] = []
    real = memo_module.weight_digest

    def counting(*args: object) -> bytes:
        hashed.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(memo_module, "weight_digest", counting)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 64, 8, 8)).astype(np.float32)
    w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)  # 72 KiB: named by digest
    layer = Layer("conv_transpose", w, None, {"stride": 2}, "test")
    assert not layer.weight.flags.writeable
    with Client(server.target, timeout=30) as client:
        want = core("conv_transpose", x, w, stride=2)
        for _ in range(3):
            np.testing.assert_array_equal(layer(client, x), want)
        assert len(hashed) == 1
        del layer  # the memo keeps no weight alive: the entry goes with it
        gc.collect()
        assert not client._weights._frozen
        plain = w.copy()
        client.conv_transpose(x, plain, stride=2)
        plain[0, 0, 0, 0] += 1  # changed in place: a new digest, the new bytes sent
        got = client.conv_transpose(x, plain, stride=2)
        np.testing.assert_array_equal(got, core("conv_transpose", x, plain, stride=2))
        assert len(hashed) == 3


def _phase_call() -> tuple[np.ndarray, np.ndarray, object]:
    """A transposed conv on the phase route (k = s): its weight matrix is a kept form."""
    rng = np.random.default_rng(21)
    x = rng.standard_normal((1, 64, 16, 16)).astype(np.float32)
    w = rng.standard_normal((64, 64, 2, 2)).astype(np.float32)  # 64 KiB: sent by digest
    plan = deconv_core.plan_conv_transpose(x.shape, w.shape, dtype="float32", stride=2)
    assert plan.route == "phase"
    return x, w, plan


@pytest.mark.parametrize("limit_kib", [1024, 100])
def test_a_cached_weight_keeps_its_kernel_ready_form_within_the_limit(limit_kib: int) -> None:
    x, w, plan = _phase_call()
    form_bytes = deconv_core.prepare_weight(plan, w).nbytes
    assert form_bytes == 64 * KIB
    handle = extra_server(weight_cache_bytes=limit_kib * KIB)
    try:
        cache = handle.servicer.weights
        with Client(handle.target, timeout=30) as c:
            first = c.conv_transpose(x, w, stride=2)  # the weight's bytes, stored
            again = c.conv_transpose(x, w, stride=2)  # by digest
        want = core("conv_transpose", x, w, stride=2)
        assert first.tobytes() == want.tobytes() and again.tobytes() == want.tobytes()
        assert cache.hits >= 1
        if limit_kib * KIB >= w.nbytes + form_bytes:  # both fit: made once, then reused
            assert (cache.form_inserts, cache.form_hits) == (1, 1)
            assert cache.used == w.nbytes + form_bytes
        else:  # the weight fits, its form would not: made per call, never kept
            assert (cache.form_inserts, cache.form_hits) == (0, 0)
            assert cache.used == w.nbytes
    finally:
        handle.stop(0).wait(10)


def test_a_weight_keeps_at_most_max_forms_kernel_ready_forms() -> None:
    from deconv_server.weights import MAX_FORMS

    _, w, _ = _phase_call()
    cache = WeightCache(64 * 1024 * KIB)
    header = pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=list(w.shape))
    digest = wire.weight_digest(pb.DTYPE_FLOAT32, w.shape, w)
    assert cache.store(digest, header, w.tobytes())
    for size in range(8, 8 + MAX_FORMS + 2):  # more image sizes, so more plan keys, than kept
        plan = deconv_core.plan_conv_transpose((1, 64, size, size), w.shape, dtype="float32",
                                               stride=2)  # fmt: skip
        form = cache.prepared(digest, plan, w)
        assert form is not None and form.key == plan.weight_key
    assert cache.form_inserts == MAX_FORMS
    assert cache.used == w.nbytes + sum(
        deconv_core.prepare_weight(
            deconv_core.plan_conv_transpose((1, 64, s, s), w.shape, dtype="float32", stride=2), w
        ).nbytes
        for s in range(8, 8 + MAX_FORMS)
    )
