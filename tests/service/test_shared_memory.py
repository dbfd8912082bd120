"""Shared-memory tensors (the .proto, "SHARED MEMORY"): round trips, file and name checks,
ownership, leases, a disabled server, cleanup, and a client killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from deconv import wire
from deconv.v1 import deconv_pb2 as pb
from deconv_client import (
    AsyncClient,
    Client,
    FailedPreconditionError,
    NotFoundError,
    OutOfRangeError,
)
from deconv_server.app import ServerHandle
from deconv_server.config import ServerConfig
from deconv_server.metrics import Metrics
from prometheus_client import generate_latest

from tests.service.conftest import extra_server
from tests.service.helpers import core, rand, raw_stub

TOKENS = ("tenant-a-token", "tenant-b-token")
LEASE_S = 0.6


@pytest.fixture(scope="module")
def shm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared-memory directory of the module's servers."""
    return tmp_path_factory.mktemp("shm")


@pytest.fixture(scope="module")
def shm_server(shm_dir: Path) -> Iterator[ServerHandle]:
    """A server with shared memory on (default lease)."""
    handle = extra_server(shared_memory_dir=str(shm_dir), max_shared_memory_regions_per_owner=8)
    yield handle
    handle.stop(0).wait(10)


@pytest.fixture(scope="module")
def short_lease(shm_dir: Path) -> Iterator[ServerHandle]:
    """A server whose regions expire after LEASE_S seconds unused."""
    handle = extra_server(shared_memory_dir=str(shm_dir), shared_memory_lease_s=LEASE_S)
    yield handle
    handle.stop(0).wait(10)


def _file(directory: Path, name: str, size: int = 1 << 16) -> Path:
    path = directory / name
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def _register(stub: Any, name: str, key: str, size: int, offset: int = 0, **kw: Any) -> Any:
    request = pb.RegisterSharedMemoryRequest(name=name, key=key, offset=offset, byte_size=size)
    return stub.RegisterSharedMemory(request, timeout=10, **kw)


def _code(fn: Any) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    err = info.value
    return err.code(), err.details(), dict(err.trailing_metadata() or ())


def _ref(region: str, offset: int, size: int) -> pb.SharedMemoryRef:
    return pb.SharedMemoryRef(region=region, offset=offset, byte_size=size)


def _request(x: np.ndarray, w: np.ndarray, region: str, *, out: int | None = 8192) -> Any:
    """A TransposedConv request with x at 0 and w at 4096 of ``region``, result at ``out``."""
    request = pb.TransposedConvRequest(stride=[2])
    request.input.CopyFrom(
        pb.Tensor(dtype=1, shape=x.shape, shared_memory=_ref(region, 0, x.nbytes))
    )
    request.weight.CopyFrom(
        pb.Tensor(dtype=1, shape=w.shape, shared_memory=_ref(region, 4096, w.nbytes))
    )
    if out is not None:
        nbytes = core("conv_transpose", x, w, stride=2).nbytes
        request.output_shared_memory.CopyFrom(_ref(region, out, nbytes))
    return request


def _fill(path: Path, x: np.ndarray, w: np.ndarray) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, x.tobytes(), 0)
        os.pwrite(fd, w.tobytes(), 4096)
    finally:
        os.close(fd)


X = rand(np.random.default_rng(1), (1, 2, 5, 5))
W = rand(np.random.default_rng(2), (2, 3, 3, 3))

# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_round_trips_are_bit_identical_to_tcp(
    shm_server: ServerHandle, shm_dir: Path, dtype: Any
) -> None:
    rng = np.random.default_rng(3)
    x, w, b = rand(rng, (2, 8, 9, 9), dtype), rand(rng, (8, 4, 3, 3), dtype), rand(rng, (4,), dtype)
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    wc = rand(rng, (4, 8, 3, 3), dtype)
    calls = [
        ("conv_transpose", (x, w, b), dict(stride=2, padding=1, output_padding=1)),
        ("conv", (xl, wc, b), dict(padding="same", data_format="channels_last", dilation=2)),
    ]
    before = shm_server.servicer.shared_memory.bytes_read
    with (
        Client(shm_server.target, timeout=30) as tcp,
        Client(shm_server.target, timeout=30, shared_memory=shm_dir) as shm,
    ):
        for op, args, kw in calls:
            got, want = getattr(shm, op)(*args, **kw), getattr(tcp, op)(*args, **kw)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert got.tobytes() == want.tobytes(), op
            np.testing.assert_array_equal(got, core(op, *args, **kw))
    assert shm_server.servicer.shared_memory.bytes_read - before >= x.nbytes + xl.nbytes


def test_async_client_concurrent_calls_use_an_arena_each(
    shm_server: ServerHandle, shm_dir: Path
) -> None:
    x, w = X, W

    async def run() -> list[np.ndarray]:
        async with AsyncClient(shm_server.target, timeout=30, shared_memory=shm_dir) as c:
            ys = await asyncio.gather(*(c.conv_transpose(x, w, stride=2) for _ in range(4)))
            assert 1 <= len(c._shm.pool.arenas) <= 4
            return ys

    for y in asyncio.run(run()):
        assert y.tobytes() == core("conv_transpose", x, w, stride=2).tobytes()


def test_weight_named_by_digest_stays_out_of_shared_memory(
    shm_server: ServerHandle, shm_dir: Path
) -> None:
    rng = np.random.default_rng(4)
    x, w = rand(rng, (1, 64, 8, 8)), rand(rng, (64, 32, 4, 4))  # a 128 KiB weight
    registry, cache = shm_server.servicer.shared_memory, shm_server.servicer.weights
    with Client(shm_server.target, timeout=30, shared_memory=shm_dir) as c:
        first = c.conv_transpose(x, w, stride=2)  # the weight through the arena, with its digest
        hits, read = cache.hits, registry.bytes_read
        second = c.conv_transpose(x, w, stride=2)
    assert cache.hits == hits + 1
    assert registry.bytes_read - read == x.nbytes  # only the input this time
    assert first.tobytes() == second.tobytes() == core("conv_transpose", x, w, stride=2).tobytes()


def test_large_tensors_go_through_threads_and_grow_the_arena(
    shm_server: ServerHandle, shm_dir: Path
) -> None:
    rng = np.random.default_rng(5)
    one = np.ones((1, 1, 1), np.float32)
    with Client(shm_server.target, timeout=60, shared_memory=shm_dir) as c:
        small = c.conv(rand(rng, (1, 1, 100)), one)
        (arena,) = c._shm.pool.arenas
        first = arena.capacity
        big = rand(rng, (1, 1, 3 << 20))  # 12 MiB in, 12 MiB out: a larger arena, registered again
        assert c.conv(big, one).tobytes() == big.tobytes()
        assert arena.capacity > first and c._shm.pool.registrations == 2
    assert small.shape == (1, 1, 100)


# ---------------------------------------------------------------- names, keys, files, windows


@pytest.mark.parametrize("key", ["../x", "a/b", ".hidden", "..", "x..y", "", "k" * 256, "a b"])
def test_keys_must_be_plain_file_names(shm_server: ServerHandle, key: str) -> None:
    with raw_stub(shm_server.target) as stub:
        code, details, _ = _code(lambda: _register(stub, "r-key", key, 16))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "plain file name" in details


@pytest.mark.parametrize("name", ["", "-x", "n" * 129, "a/b", "a b"])
def test_region_names_are_checked(shm_server: ServerHandle, shm_dir: Path, name: str) -> None:
    _file(shm_dir, "names")
    with raw_stub(shm_server.target) as stub:
        code, _, _ = _code(lambda: _register(stub, name, "names", 16))
    assert code is grpc.StatusCode.INVALID_ARGUMENT


def test_symlinks_directories_fifos_and_missing_files(
    shm_server: ServerHandle, shm_dir: Path
) -> None:
    target = _file(shm_dir, "real")
    (shm_dir / "link").symlink_to(target)
    (shm_dir / "adir").mkdir()
    os.mkfifo(shm_dir / "fifo")
    with raw_stub(shm_server.target) as stub:
        for key in ("link", "adir", "fifo"):
            code, details, _ = _code(lambda k=key: _register(stub, "r-file", k, 16))
            assert code is grpc.StatusCode.INVALID_ARGUMENT and "not a regular file" in details
        code, details, trailers = _code(lambda: _register(stub, "r-file", "missing", 16))
        assert code is grpc.StatusCode.NOT_FOUND and "create it first" in details
        assert wire.SHARED_MEMORY_KEY not in trailers  # not a region to register again


def test_windows_outside_the_file_or_region(shm_server: ServerHandle, shm_dir: Path) -> None:
    _fill(_file(shm_dir, "bounds", 1 << 14), X, W)
    with raw_stub(shm_server.target) as stub:
        code, details, _ = _code(lambda: _register(stub, "r-b", "bounds", 1 << 14, offset=1))
        assert code is grpc.StatusCode.OUT_OF_RANGE and "past the end" in details
        for offset, size in ((-1, 16), (0, 0), (0, -5)):
            code, _, _ = _code(lambda o=offset, s=size: _register(stub, "r-b", "bounds", s, o))
            assert code is grpc.StatusCode.INVALID_ARGUMENT
        _register(stub, "r-b", "bounds", 1 << 13)  # the first 8 KiB only
        beyond = _request(X, W, "r-b", out=8192)  # the result past the region's end
        code, details, _ = _code(lambda: stub.TransposedConv(beyond, timeout=10))
        assert code is grpc.StatusCode.OUT_OF_RANGE and "outside region" in details
        short = _request(X, W, "r-b", out=None)
        short.input.shared_memory.byte_size -= 4
        code, details, _ = _code(lambda: stub.TransposedConv(short, timeout=10))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "needs" in details
        both = _request(X, W, "r-b", out=None)
        both.input.data = X.tobytes()
        code, details, _ = _code(lambda: stub.TransposedConv(both, timeout=10))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "both data and shared_memory" in details
        small_out = _request(X, W, "r-b", out=6000)
        small_out.output_shared_memory.byte_size = 8
        code, details, _ = _code(lambda: stub.TransposedConv(small_out, timeout=10))
        assert code is grpc.StatusCode.INVALID_ARGUMENT and "smaller than the result" in details


def test_raw_call_writes_the_result_and_answers_a_reference(
    shm_server: ServerHandle, shm_dir: Path
) -> None:
    path = _file(shm_dir, "raw")
    _fill(path, X, W)
    want = core("conv_transpose", X, W, stride=2)
    with raw_stub(shm_server.target) as stub:
        _register(stub, "r-raw", "raw", 1 << 16)
        response = stub.TransposedConv(_request(X, W, "r-raw"), timeout=10)
    out = response.output
    assert not out.data and list(out.shape) == list(want.shape)
    assert (out.shared_memory.region, out.shared_memory.offset) == ("r-raw", 8192)
    assert out.shared_memory.byte_size == want.nbytes
    got = np.frombuffer(path.read_bytes()[8192 : 8192 + want.nbytes], np.float32)
    assert got.tobytes() == want.tobytes()


def test_truncated_file_is_a_clear_error_and_the_server_stays_up(
    shm_server: ServerHandle, shm_dir: Path
) -> None:
    path = _file(shm_dir, "trunc")
    _fill(path, X, W)
    with raw_stub(shm_server.target) as stub:
        _register(stub, "r-trunc", "trunc", 1 << 16)
        os.truncate(path, 100)  # shorter than the region, and than the tensors
        code, details, _ = _code(lambda: stub.TransposedConv(_request(X, W, "r-trunc"), timeout=10))
        assert code is grpc.StatusCode.OUT_OF_RANGE and "now 100 bytes" in details
        os.truncate(path, 1 << 16)  # grown back: the region works again
        _fill(path, X, W)
        assert stub.TransposedConv(_request(X, W, "r-trunc"), timeout=10).output.shared_memory
    with Client(shm_server.target, timeout=10) as c:
        assert c.health() == "SERVING"
        np.testing.assert_array_equal(c.conv_transpose(X, W), core("conv_transpose", X, W))


def test_removed_file_drops_its_region(shm_server: ServerHandle, shm_dir: Path) -> None:
    path = _file(shm_dir, "gone")
    _fill(path, X, W)
    with raw_stub(shm_server.target) as stub:
        _register(stub, "r-gone", "gone", 1 << 16)
        path.unlink()
        code, details, trailers = _code(
            lambda: stub.TransposedConv(_request(X, W, "r-gone"), timeout=10)
        )
        assert code is grpc.StatusCode.NOT_FOUND and "was removed" in details
        assert trailers[wire.SHARED_MEMORY_KEY] == wire.SHARED_MEMORY_UNKNOWN
        status = stub.SharedMemoryStatus(pb.SharedMemoryStatusRequest(), timeout=10)
        assert "r-gone" not in [r.name for r in status.regions]


def test_shared_memory_only_on_unary_conv(shm_server: ServerHandle) -> None:
    request = pb.ConvBackwardRequest(forward=pb.ConvRequest())
    request.forward.input.CopyFrom(
        pb.Tensor(dtype=1, shape=[1, 1, 4], shared_memory=_ref("r", 0, 16))
    )
    request.forward.weight.CopyFrom(pb.Tensor(dtype=1, shape=[1, 1, 1], data=bytes(4)))
    request.grad_output.CopyFrom(pb.Tensor(dtype=1, shape=[1, 1, 4], data=bytes(16)))
    with raw_stub(shm_server.target) as stub:
        code, details, _ = _code(lambda: stub.ConvBackward(request, timeout=10))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "only for the unary" in details


def test_region_limits_and_replacement(shm_server: ServerHandle, shm_dir: Path) -> None:
    _file(shm_dir, "many")
    with raw_stub(shm_server.target) as stub:
        stub.UnregisterSharedMemory(pb.UnregisterSharedMemoryRequest(all=True), timeout=10)
        for i in range(8):
            _register(stub, f"r-many-{i}", "many", 64)
        region = _register(stub, "r-many-0", "many", 128)  # a replacement counts as none
        assert region.byte_size == 128 and region.writable and region.lease_seconds == 60
        code, details, _ = _code(lambda: _register(stub, "r-many-8", "many", 64))
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and "PER_OWNER" in details
        dropped = stub.UnregisterSharedMemory(
            pb.UnregisterSharedMemoryRequest(all=True), timeout=10
        )
        assert sorted(dropped.names) == [f"r-many-{i}" for i in range(8)]
        code, _, _ = _code(lambda: stub.UnregisterSharedMemory(
            pb.UnregisterSharedMemoryRequest(name="r-many-0"), timeout=10))  # fmt: skip
        assert code is grpc.StatusCode.NOT_FOUND
        code, _, _ = _code(lambda: stub.UnregisterSharedMemory(
            pb.UnregisterSharedMemoryRequest(), timeout=10))  # fmt: skip
        assert code is grpc.StatusCode.INVALID_ARGUMENT


# ---------------------------------------------------------------- ownership


def test_regions_of_another_token_are_permission_denied(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{TOKENS[0]}\n\n  {TOKENS[1]}  \n")
    assert ServerConfig(auth_token_file=str(tokens)).tokens() == TOKENS
    shm = tmp_path / "shm"
    shm.mkdir()
    handle = extra_server(shared_memory_dir=str(shm), auth_token_file=str(tokens))
    a, b = ((("authorization", f"Bearer {t}"),) for t in TOKENS)
    try:
        with Client(handle.target, timeout=10, token=TOKENS[0], shared_memory=shm) as ca:
            ca.conv_transpose(X, W, stride=2)
            (name,) = [arena.name for arena in ca._shm.pool.arenas]
            with raw_stub(handle.target) as stub:
                request = _request(X, W, name, out=None)
                code, _, _ = _code(lambda: stub.TransposedConv(request, timeout=10, metadata=b))
                assert code is grpc.StatusCode.PERMISSION_DENIED
                code, _, _ = _code(lambda: _register(stub, name, name, 64, metadata=b))
                assert code is grpc.StatusCode.PERMISSION_DENIED
                unregister = pb.UnregisterSharedMemoryRequest(name=name)
                code, _, _ = _code(lambda: stub.UnregisterSharedMemory(unregister, metadata=b))
                assert code is grpc.StatusCode.PERMISSION_DENIED
                status = pb.SharedMemoryStatusRequest()
                assert not stub.SharedMemoryStatus(status, timeout=10, metadata=b).regions
                mine = stub.SharedMemoryStatus(status, timeout=10, metadata=a).regions
                assert [r.name for r in mine] == [name]
            with Client(handle.target, timeout=10, token=TOKENS[1], shared_memory=shm) as cb:
                y = cb.conv_transpose(X, W, stride=2)  # tenant b's own regions work
            assert y.tobytes() == ca.conv_transpose(X, W, stride=2).tobytes()
    finally:
        handle.stop(0).wait(10)


# ---------------------------------------------------------------- leases, off, cleanup, SIGKILL


def _names(handle: ServerHandle) -> list[str]:
    with raw_stub(handle.target) as stub:
        regions = stub.SharedMemoryStatus(pb.SharedMemoryStatusRequest(), timeout=10).regions
    return [r.name for r in regions]


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_lease_expiry_then_transparent_registration(
    short_lease: ServerHandle, shm_dir: Path
) -> None:
    registry = short_lease.servicer.shared_memory
    with Client(short_lease.target, timeout=10, shared_memory=shm_dir) as c:
        first = c.conv_transpose(X, W, stride=2)
        (name,) = [arena.name for arena in c._shm.pool.arenas]
        assert name in _names(short_lease)
        expired = registry.expirations
        assert _wait_for(lambda: registry.expirations > expired, 10 * LEASE_S)  # by the sweep
        assert name not in _names(short_lease)
        again = c.conv_transpose(X, W, stride=2)  # NOT_FOUND + trailer -> register, repeat
        assert c._shm.pool.registrations == 2
    assert first.tobytes() == again.tobytes()


def test_disabled_feature_says_how_to_enable_it(target: str, tmp_path: Path) -> None:
    with raw_stub(target) as stub:
        code, details, trailers = _code(lambda: _register(stub, "r", "k", 16))
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "DECONV_SHARED_MEMORY_DIR" in details
    assert trailers[wire.SHARED_MEMORY_KEY] == wire.SHARED_MEMORY_OFF
    with (
        Client(target, timeout=10, shared_memory=tmp_path) as c,
        pytest.raises(FailedPreconditionError, match="DECONV_SHARED_MEMORY_DIR"),
    ):
        c.conv_transpose(X, W)  # asked for shared memory: no silent fallback to bytes


def test_close_unregisters_and_deletes_files(shm_server: ServerHandle, shm_dir: Path) -> None:
    c = Client(shm_server.target, timeout=10, shared_memory=shm_dir)
    c.conv_transpose(X, W, stride=2)
    paths = [Path(a.path) for a in c._shm.pool.arenas]
    names = [a.name for a in c._shm.pool.arenas]
    assert all(p.exists() for p in paths) and set(names) <= set(_names(shm_server))
    c.close()
    assert not any(p.exists() for p in paths)
    assert not set(names) & set(_names(shm_server))


def test_an_unclosed_client_deletes_its_files_when_collected(
    shm_server: ServerHandle, shm_dir: Path
) -> None:
    c = Client(shm_server.target, timeout=10, shared_memory=shm_dir)
    c.conv_transpose(X, W, stride=2)
    paths = [Path(a.path) for a in c._shm.pool.arenas]
    c._shm._finalizer()  # what garbage collection or interpreter exit runs
    assert not any(p.exists() for p in paths)
    c.close()


_VICTIM = """
import sys, numpy as np
from deconv_client import Client
c = Client(sys.argv[1], timeout=30, shared_memory=sys.argv[2])
c.conv_transpose(np.ones((1, 2, 5, 5), np.float32), np.ones((2, 3, 3, 3), np.float32), stride=2)
print(c._shm.pool.arenas[0].name, flush=True)
sys.stdin.read()
"""


def test_regions_of_a_killed_client_are_dropped_after_the_lease(
    short_lease: ServerHandle, shm_dir: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_VICTIM), short_lease.target, str(shm_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        name = proc.stdout.readline().strip()
        assert name and name in _names(short_lease)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert _wait_for(lambda: name not in _names(short_lease), 10 * LEASE_S)
        assert (shm_dir / name).exists()  # the server never deletes a caller's file
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        (shm_dir / name).unlink(missing_ok=True)


def test_server_info_and_metrics(shm_server: ServerHandle, shm_dir: Path) -> None:
    with Client(shm_server.target, timeout=10, shared_memory=shm_dir) as c:
        c.conv_transpose(X, W, stride=2)
        info = c.server_info()
        assert info.shared_memory_regions >= 1
        assert info.limits["max_shared_memory_regions"] == 1024
        assert info.limits["max_shared_memory_regions_per_owner"] == 8
        assert info.limits["shared_memory_lease_seconds"] == 60
    metrics = Metrics()
    metrics.track_shared_memory(shm_server.servicer.shared_memory)
    text = generate_latest(metrics.registry).decode()
    for series in (
        "deconv_shared_memory_regions",
        "deconv_shared_memory_read_bytes_total",
        "deconv_shared_memory_written_bytes_total",
    ):
        assert f"\n{series} " in text, series


def test_status_of_one_region_and_unknown_names(shm_server: ServerHandle, shm_dir: Path) -> None:
    _file(shm_dir, "one")
    with raw_stub(shm_server.target) as stub:
        _register(stub, "r-one", "one", 32, offset=8)
        (region,) = stub.SharedMemoryStatus(pb.SharedMemoryStatusRequest(name="r-one")).regions
        assert (region.key, region.offset, region.byte_size) == ("one", 8, 32)
        assert 0 < region.expires_in_seconds <= region.lease_seconds
        code, _, trailers = _code(
            lambda: stub.SharedMemoryStatus(pb.SharedMemoryStatusRequest(name="r-none"))
        )
        assert code is grpc.StatusCode.NOT_FOUND
        assert trailers[wire.SHARED_MEMORY_KEY] == wire.SHARED_MEMORY_UNKNOWN
        stub.UnregisterSharedMemory(pb.UnregisterSharedMemoryRequest(name="r-one"))
    with Client(shm_server.target, timeout=10) as c, pytest.raises(NotFoundError):
        c._unary_call(
            c._stub.SharedMemoryStatus, pb.SharedMemoryStatusRequest(name="r-one"), lambda r: r
        )
    assert OutOfRangeError  # exported for callers that catch it


def test_a_batch_split_over_replicas_on_one_host_uses_shared_memory(
    shm_server: ServerHandle, shm_dir: Path
) -> None:
    """Replicas sharing the directory: each part goes through its replica's own region."""
    other = extra_server(shared_memory_dir=str(shm_dir))
    try:
        rng = np.random.default_rng(11)
        x = rng.standard_normal((6, 4, 16, 16)).astype(np.float32)
        w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
        targets = [shm_server.target, other.target]
        before = [h.servicer.shared_memory.bytes_read for h in (shm_server, other)]
        files = set(shm_dir.iterdir())
        with Client(targets, timeout=30, split_batch=True, shared_memory=str(shm_dir)) as c:
            got = c.conv_transpose(x, w, stride=2)
        np.testing.assert_array_equal(got, core("conv_transpose", x, w, stride=2))
        after = [h.servicer.shared_memory.bytes_read for h in (shm_server, other)]
        assert all(a > b for a, b in zip(after, before, strict=True))  # both read their part
        assert set(shm_dir.iterdir()) <= files  # close() removed the replicas' arenas
    finally:
        other.stop(0).wait(5)


def test_regions_never_use_up_the_descriptors_connections_need(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import resource

    from deconv_server import shared_memory_io

    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 1024))
    assert shared_memory_io.region_descriptor_room() == 1024 - 256
    raised: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda _, v: raised.append(v))
    assert shared_memory_io.region_descriptor_room() == 4096 - 256  # soft raised to the hard
    assert raised == [(4096, 4096)]
