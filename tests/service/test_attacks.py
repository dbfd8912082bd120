"""One caller cannot stop the server for everyone: attacks against a real server process.

Each test starts ``python -m deconv_server`` with short timeouts and its metrics endpoint on,
attacks it the way a hostile or broken caller would (calls that never send their request, idle
Watch and reflection streams, stalled uploads, results nobody reads, headers that claim huge
tensors, compressed requests, long computations cancelled halfway, tiny response chunks), and
checks while the attack is open that health answers within 100 ms and a good call is exact, and
afterwards that the server's threads, RSS and in-flight bytes are back where they were.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from deconv import codec
from deconv.v1 import deconv_pb2 as pb
from deconv.v1 import deconv_pb2_grpc as pb_grpc
from deconv_client import Client, ResourceExhaustedError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2_grpc
from prometheus_client import parser

from .helpers import core

MESSAGE_TIMEOUT = 1.0
WRITE_TIMEOUT = 1.0
X = np.random.default_rng(1).standard_normal((1, 4, 8, 8)).astype(np.float32)
W = np.random.default_rng(2).standard_normal((4, 4, 3, 3)).astype(np.float32)
MIB = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A server process and what the tests read from it."""

    proc: subprocess.Popen[str]
    target: str
    metrics_port: int

    def status(self, key: str) -> int:
        """A number from /proc/<pid>/status (``Threads``, ``VmRSS`` in kB)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        for family in parser.text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and not sample.labels:
                    return float(sample.value)
        return 0.0

    def health_seconds(self) -> float:
        """Time of one health Check on a fresh connection (it must be SERVING)."""
        with _connection(self.target) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            stub = health_pb2_grpc.HealthStub(channel)
            t0 = time.perf_counter()
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            seconds = time.perf_counter() - t0
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        return seconds

    def good_call_is_exact(self, token: str | None = None) -> None:
        with Client(self.target, timeout=30, token=token) as c:
            np.testing.assert_array_equal(
                c.conv_transpose(X, W, stride=2), core("conv_transpose", X, W, stride=2)
            )

    def settle(self, what: str = "deconv_inflight_bytes", timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        while (v := self.metric(what)) != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        return v


@contextmanager
def server_process(tmp_path: Path, *flags: str) -> Iterator[Proc]:
    metrics_port = _free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "deconv_server", "--host", "127.0.0.1", "--port", "0",
         "--no-warmup", "--log-format", "json", "--workers", "8",
         "--metrics-port", str(metrics_port),
         "--message-timeout-s", str(MESSAGE_TIMEOUT), "--write-timeout-s", str(WRITE_TIMEOUT),
         *flags],
        stdout=subprocess.PIPE, stderr=log, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("deconv-server listening on"), line
        p = Proc(proc, line.split()[-1], metrics_port)
        token = flags[flags.index("--auth-token") + 1] if "--auth-token" in flags else None
        p.good_call_is_exact(token)  # loads the kernels
        yield p
    finally:
        proc.kill()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    with server_process(tmp_path_factory.mktemp("victim")) as p:
        yield p


def _request(x: np.ndarray = X) -> pb.TransposedConvRequest:
    return pb.TransposedConvRequest(input=codec.encode(x), weight=codec.encode(W), stride=[2])


def _silent(stop: threading.Event) -> Iterator[bytes]:
    """A request stream that sends nothing until ``stop``: the call's headers only."""
    stop.wait(30)
    return
    yield b""  # pragma: no cover - makes this a generator


def _connection(target: str) -> grpc.Channel:
    """A channel with its own TCP connection (channels to one target share one by default)."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


def _open_calls(target: str, method: str, count: int, requests) -> tuple[list, list]:
    channels = [_connection(target) for _ in range(1 + count // 16)]
    calls = [
        channels[i % len(channels)].stream_stream(method)(requests(), timeout=60)
        for i in range(count)
    ]
    return channels, calls


def _outcome(call) -> str:
    try:
        list(call)
    except grpc.RpcError as exc:
        return exc.code().name
    return "OK"


def test_headers_only_calls_hold_no_thread_and_time_out(victim: Proc) -> None:
    threads_before = victim.status("Threads")
    stop = threading.Event()
    channels, calls = _open_calls(
        victim.target, "/deconv.v1.Deconv/TransposedConv", 40, lambda: _silent(stop)
    )
    try:
        time.sleep(0.3)
        assert victim.health_seconds() < 0.1
        victim.good_call_is_exact()
        assert victim.status("Threads") <= threads_before + 2
        t0 = time.monotonic()
        outcomes = [_outcome(c) for c in calls]
        assert set(outcomes) == {"DEADLINE_EXCEEDED"}, outcomes
        assert time.monotonic() - t0 < MESSAGE_TIMEOUT + 3
    finally:
        stop.set()
        for ch in channels:
            ch.close()
    assert victim.metric("deconv_admitted_requests") == 0


def test_one_connection_gets_at_most_its_stream_cap(victim: Proc) -> None:
    """Calls beyond DECONV_MAX_STREAMS_PER_CONNECTION on one connection wait in the client."""
    stop = threading.Event()
    with _connection(victim.target) as channel:
        method = channel.stream_stream("/deconv.v1.Deconv/TransposedConv")
        calls = [method(_silent(stop), timeout=60) for _ in range(40)]
        time.sleep(0.3)
        assert victim.health_seconds() < 0.1  # other connections are not affected
        outcomes = [_outcome(c) for c in calls]
        stop.set()
    # 32 streams reach the server (and time out); the rest waited for a free stream and then
    # also timed out on the server: all end, none is admitted, the server stays up.
    assert set(outcomes) <= {"DEADLINE_EXCEEDED", "UNAVAILABLE"}, outcomes
    victim.good_call_is_exact()


def test_idle_watch_and_reflection_streams_cost_nothing(victim: Proc) -> None:
    threads_before = victim.status("Threads")
    stop = threading.Event()
    with _connection(victim.target) as a, _connection(victim.target) as b:
        watches = [
            health_pb2_grpc.HealthStub(a).Watch(health_pb2.HealthCheckRequest(), timeout=60)
            for _ in range(25)
        ]
        reflections = [
            reflection_pb2_grpc.ServerReflectionStub(b).ServerReflectionInfo(
                _silent(stop), timeout=60
            )
            for _ in range(25)
        ]
        for w in watches:
            assert next(w).status == health_pb2.HealthCheckResponse.SERVING
        assert victim.health_seconds() < 0.1
        victim.good_call_is_exact()
        assert victim.status("Threads") <= threads_before + 2
        stop.set()
        for call in watches + reflections:
            call.cancel()


def _claim_64_mib() -> pb.TransposedConvRequest:
    """A request whose input header claims 16 Mi float32 elements (64 MiB), with no data."""
    header = _request()
    header.stride[:] = [1]
    header.input.CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[1, 4, 2048, 2048]))
    return header


def test_stalled_upload_and_header_only_claims_hold_no_bytes(victim: Proc) -> None:
    rss_before = victim.status("VmRSS")
    header = _claim_64_mib()  # and none of its bytes are ever sent
    stop = threading.Event()

    def claim() -> Iterator[pb.TransposedConvRequestChunk]:
        yield pb.TransposedConvRequestChunk(request=header)
        stop.wait(30)

    channels, calls = _open_calls(
        victim.target, "/deconv.v1.Deconv/TransposedConvChunked", 8,
        lambda: (m.SerializeToString() for m in claim()),
    )  # fmt: skip
    try:
        time.sleep(0.5)
        assert victim.metric("deconv_inflight_bytes") < MIB  # only what arrived: the headers
        assert victim.status("VmRSS") - rss_before < 32 * 1024  # kB
        assert victim.health_seconds() < 0.1
        victim.good_call_is_exact()
        outcomes = [_outcome(c) for c in calls]
        assert set(outcomes) == {"DEADLINE_EXCEEDED"}, outcomes  # no data within the timeout
    finally:
        stop.set()
        for ch in channels:
            ch.close()
    assert victim.settle() == 0
    assert victim.metric("deconv_admitted_requests") == 0


def test_claims_that_send_a_little_hold_only_what_they_sent(victim: Proc) -> None:
    """A 64 MiB claim that sends 64 KiB and stalls holds 64 KiB, counted, in memory too."""
    rss_before = victim.status("VmRSS")
    header = _claim_64_mib()
    stop = threading.Event()

    def claim() -> Iterator[bytes]:
        yield pb.TransposedConvRequestChunk(request=header).SerializeToString()
        yield pb.TransposedConvRequestChunk(data=bytes(64 * 1024)).SerializeToString()
        stop.wait(30)

    channels, calls = _open_calls(
        victim.target, "/deconv.v1.Deconv/TransposedConvChunked", 8, claim
    )
    try:
        time.sleep(0.5)
        held = victim.metric("deconv_inflight_bytes")
        assert 8 * 64 * 1024 <= held < 8 * 64 * 1024 + MIB  # the bytes that came, and headers
        assert victim.status("VmRSS") - rss_before < 8 * 1024  # kB: no buffer of the claimed size
        victim.good_call_is_exact()
        assert {_outcome(c) for c in calls} == {"DEADLINE_EXCEEDED"}  # the rest never came
    finally:
        stop.set()
        for ch in channels:
            ch.close()
    assert victim.settle() == 0


def test_a_result_nobody_reads_is_cut_off_and_freed(victim: Proc) -> None:
    x = np.ones((1, 4, 256, 256), np.float32)  # a 16 MiB result, streamed in 1 MiB chunks
    first = pb.TransposedConvRequestChunk(request=_request(x))
    with grpc.insecure_channel(victim.target) as channel:
        call = pb_grpc.DeconvStub(channel).TransposedConvChunked(iter([first]), timeout=60)
        next(call)  # the header; then never read again
        time.sleep(0.5)
        assert victim.health_seconds() < 0.1
        victim.good_call_is_exact()
        assert victim.settle(timeout=WRITE_TIMEOUT + 10) == 0  # the server gave up and freed it
        call.cancel()


def test_compressed_requests_are_refused_before_they_are_held(victim: Proc) -> None:
    bomb = np.zeros((1, 4, 2048, 2048), np.float32)  # 64 MiB of zeros, ~64 KiB gzipped
    rss_before = victim.status("VmRSS")
    with grpc.insecure_channel(victim.target, compression=grpc.Compression.Gzip) as channel:
        stub = pb_grpc.DeconvStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.TransposedConv(_request(bomb), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Compression algorithm 'gzip' is disabled" in err.value.details()
    assert victim.status("VmRSS") - rss_before < 32 * 1024
    victim.good_call_is_exact()


def test_an_unauthenticated_call_is_refused_without_reading_its_body(tmp_path: Path) -> None:
    with server_process(tmp_path, "--auth-token", "s3cret") as p:
        rss_before = p.status("VmRSS")
        big = np.ones((1, 4, 2048, 2048), np.float32)  # 64 MiB in one unary message
        for compression in (grpc.Compression.NoCompression, grpc.Compression.Gzip):
            with grpc.insecure_channel(p.target, compression=compression) as channel:
                with pytest.raises(grpc.RpcError) as err:
                    pb_grpc.DeconvStub(channel).TransposedConv(_request(big), timeout=30)
            assert err.value.code() in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.UNIMPLEMENTED,  # gzip is refused by gRPC before auth runs
            ), err.value
        assert p.status("VmRSS") - rss_before < 32 * 1024


def test_a_long_computation_cancelled_frees_the_core_within_a_second(victim: Proc) -> None:
    x = np.ones((256, 16, 64, 64), np.float32)  # 4 GFLOP on the direct route: seconds
    w = np.ones((16, 2, 9, 9), np.float32)
    with grpc.insecure_channel(victim.target) as channel:
        stub = pb_grpc.DeconvStub(channel)
        request = pb.ConvRequest(input=codec.encode(x), weight=codec.encode(w), groups=8)
        call = stub.Conv.future(request, timeout=60)
        deadline = time.monotonic() + 20
        while victim.metric("deconv_core_busy") != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert victim.metric("deconv_core_busy") == 1, "the long call never reached the core"
        call.cancel()
        t0 = time.monotonic()
        victim.good_call_is_exact()
        assert time.monotonic() - t0 < 1.0


def test_tiny_response_chunks_are_clamped(victim: Proc) -> None:
    x = np.ones((1, 4, 64, 64), np.float32)  # a 260 KiB result
    first = pb.TransposedConvRequestChunk(request=_request(x), response_chunk_bytes=1)
    with grpc.insecure_channel(victim.target) as channel:
        replies = list(pb_grpc.DeconvStub(channel).TransposedConvChunked(iter([first]), timeout=30))
    data = b"".join(r.data for r in replies[1:])
    assert len(data) == 4 * 129 * 129 * 4
    assert len(replies) - 1 == -(-len(data) // (64 * 1024))  # 64 KiB messages, not one per byte


def test_a_call_over_the_time_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    with server_process(tmp_path, "--max-compute-seconds", "0.001") as p:
        x = np.ones((64, 16, 64, 64), np.float32)
        w = np.ones((16, 16, 5, 5), np.float32)
        with Client(p.target, timeout=30) as c:
            with pytest.raises(ResourceExhaustedError, match="would hold the compute core"):
                c.conv(x, w)


def test_idle_scrapers_hold_no_thread_and_are_dropped(victim: Proc) -> None:
    """Connections to /metrics that send nothing hold a slot for at most HTTP_TIMEOUT_S."""
    from deconv_server.metrics import HTTP_TIMEOUT_S, MAX_CONNECTIONS

    threads_before = victim.status("Threads")
    idle = [socket.create_connection(("127.0.0.1", victim.metrics_port)) for _ in range(20)]
    try:
        time.sleep(0.3)
        assert victim.status("Threads") <= threads_before + 2
        assert victim.health_seconds() < 0.1  # gRPC is not affected
        deadline = time.monotonic() + HTTP_TIMEOUT_S + 5
        while time.monotonic() < deadline:  # the slots come back once the idle ones time out
            try:
                victim.metric("deconv_warm")
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"/metrics still refused with {MAX_CONNECTIONS} idle scrapers")
    finally:
        for s in idle:
            s.close()
    assert victim.metric("deconv_warm") == 1
