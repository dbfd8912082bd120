"""Prometheus metrics on 127.0.0.1 and per-RPC request ids and JSON access logs.

Scrapes the real ``/metrics`` endpoint of a server after known calls and checks the counters,
histogram, byte counters and gauges moved by exactly what the calls imply; holds the core lock
to observe queued and in-flight requests deterministically.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from deconv.v1 import deconv_pb2 as pb
from deconv_client import Client, InvalidArgumentError
from deconv_client._requests import build_request
from deconv_server import logging_setup
from deconv_server.app import ServerHandle
from deconv_server.logging_setup import ACCESS_LOGGER, REQUEST_ID, JsonFormatter, RequestIdFilter
from deconv_server.servicer import CORE_LOCK

from .conftest import extra_server
from .helpers import core, raw_stub

parser = pytest.importorskip("prometheus_client.parser")

X = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
W = np.ones((1, 2, 2, 2), np.float32)
SERVICE = "deconv.v1.Deconv"


def free_port() -> int:
    """A port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(handle: ServerHandle) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the server's /metrics as {(name, sorted labels): value}."""
    url = f"http://127.0.0.1:{handle.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """One sample, 0 when the series does not exist yet."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def metered(server: ServerHandle) -> Iterator[ServerHandle]:
    """A server with the metrics endpoint on."""
    handle = extra_server(metrics_port=free_port(), workers=4)
    assert handle.metrics_port == handle.config.metrics_port
    yield handle
    handle.stop(0).wait(5)


def test_metrics_off_by_default(server: ServerHandle) -> None:
    assert server.config.metrics_port == 0 and server.metrics is None
    assert server.metrics_port is None


def test_counters_histogram_and_bytes(metered: ServerHandle) -> None:
    before = scrape(metered)
    big = np.ones((1, 1, 256, 512), np.float32)  # 512 KiB: the chunked RPC
    with Client(metered.target, timeout=30) as c:
        for _ in range(2):
            np.testing.assert_array_equal(c.conv_transpose(X, W), core("conv_transpose", X, W))
        with pytest.raises(InvalidArgumentError):
            c.conv_transpose(X, W, stride=2, output_padding=3)
        c.conv(big, np.ones((1, 1, 1, 1), np.float32))
        c.health()
    after = scrape(metered)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"service": SERVICE, "method": "TransposedConv"}
    assert moved("deconv_requests_total", **ok, code="OK") == 2
    assert moved("deconv_requests_total", **ok, code="INVALID_ARGUMENT") == 1
    assert moved("deconv_requests_total", service=SERVICE, method="ConvChunked", code="OK") == 1
    health = {"service": "grpc.health.v1.Health", "method": "Check", "code": "OK"}
    assert moved("deconv_requests_total", **health) == 1
    assert moved("deconv_request_duration_seconds_count", **ok) == 3
    assert moved("deconv_request_duration_seconds_bucket", **ok, le="+Inf") == 3
    assert moved("deconv_request_duration_seconds_sum", **ok) > 0
    tensors = X.nbytes + W.nbytes
    assert 3 * tensors < moved("deconv_received_bytes_total", method="TransposedConv")
    assert moved("deconv_received_bytes_total", method="TransposedConv") < 3 * tensors + 3000
    out = core("conv_transpose", X, W).nbytes
    assert 2 * out < moved("deconv_sent_bytes_total", method="TransposedConv") < 2 * out + 500
    assert moved("deconv_received_bytes_total", method="ConvChunked") > big.nbytes
    assert moved("deconv_sent_bytes_total", method="ConvChunked") > big.nbytes
    assert moved("deconv_core_seconds_total") > 0
    for idle in ("deconv_in_flight_requests", "deconv_queue_depth", "deconv_admitted_requests"):
        assert value(after, idle) == 0, idle
    assert value(after, "deconv_core_busy") == 0 and value(after, "deconv_warm") == 1


def test_queue_depth_and_in_flight_under_load(metered: ServerHandle) -> None:
    results: list[object] = []

    def call(c: Client) -> None:
        try:
            results.append(c.conv_transpose(X, W))
        except Exception as exc:  # recorded and asserted below
            results.append(exc)

    with Client(metered.target, timeout=30) as c:
        with CORE_LOCK:  # the core is "busy": admitted calls queue for it
            threads = [threading.Thread(target=call, args=(c,)) for _ in range(3)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while True:
                now = scrape(metered)
                seen = [
                    value(now, "deconv_queue_depth"),
                    value(now, "deconv_in_flight_requests"),
                    value(now, "deconv_admitted_requests"),
                ]
                if seen == [3, 3, 3] or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            assert seen == [3, 3, 3]
        for t in threads:
            t.join(30)
    expected = core("conv_transpose", X, W)
    assert len(results) == 3
    for r in results:
        np.testing.assert_array_equal(r, expected)
    assert value(scrape(metered), "deconv_queue_depth") == 0


def test_metrics_port_in_use_is_an_error(metered: ServerHandle) -> None:
    with pytest.raises(OSError, match="cannot bind metrics port"):
        extra_server(metrics_port=metered.metrics_port)


# -- request ids and access logs --------------------------------------------------------------


def _request() -> pb.TransposedConvRequest:
    params = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}
    layouts = {"data_format": "channels_first", "weight_format": "torch"}
    return build_request("conv_transpose", X, W, None, **params, **layouts).unary_request()


def test_request_id_echoed_and_logged(
    server: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    with raw_stub(server.target) as stub:
        reply, call = stub.TransposedConv.with_call(
            _request(), metadata=(("x-request-id", "req-42"),), timeout=30
        )
        assert ("x-request-id", "req-42") in call.trailing_metadata()
        bad = _request()
        bad.stride[:] = [0, 0]
        with pytest.raises(grpc.RpcError) as info:
            stub.TransposedConv(bad, timeout=30)
    np.testing.assert_array_equal(
        np.frombuffer(reply.output.data, np.float32), core("conv_transpose", X, W).ravel()
    )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    generated = dict(info.value.trailing_metadata())["x-request-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    # A failed call's status reaches the caller before the server has logged it (abort sends
    # it first): wait, boundedly, for both records.
    deadline = time.monotonic() + 10
    while True:
        records = [r for r in caplog.records if r.name == ACCESS_LOGGER]
        by_id = {r.fields["request_id"]: r for r in records}
        if {"req-42", generated} <= by_id.keys() or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    ok, failed = by_id["req-42"].fields, by_id[generated].fields
    assert by_id["req-42"].getMessage().startswith("deconv.v1.Deconv/TransposedConv OK ")
    assert (ok["method"], ok["op"], ok["code"]) == ("TransposedConv", "conv_transpose", "OK")
    assert ok["bytes_in"] == _request().ByteSize() and ok["bytes_out"] == reply.ByteSize()
    assert 0 < ok["duration_ms"] < 30_000 and ok["peer"].startswith("ipv4:127.0.0.1:")
    assert failed["code"] == "INVALID_ARGUMENT" and failed["bytes_out"] == 0
    assert all(r.levelno == logging.INFO for r in (by_id["req-42"], by_id[generated]))


def test_unusable_request_id_is_replaced(server: ServerHandle) -> None:
    with raw_stub(server.target) as stub:
        _, call = stub.TransposedConv.with_call(
            _request(), metadata=(("x-request-id", "x" * 500),), timeout=30
        )
    echoed = dict(call.trailing_metadata())["x-request-id"]
    assert echoed != "x" * 500 and len(echoed) == 32


def _log_then_fail(log: logging.Logger, rid: str, records: list, level: int = logging.WARNING):
    """Log ``(format, arg, fields)`` records, then an exception, as request ``rid``."""
    token = REQUEST_ID.set(rid)
    try:
        for fmt, arg, fields in records:
            log.log(level, fmt, arg, extra={"fields": fields} if fields else None)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
    finally:
        REQUEST_ID.reset(token)


def test_json_formatter_and_request_id_filter() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("deconv_server.test_json")
    log.addHandler(handler)
    log.propagate = False
    try:
        _log_then_fail(log, "abc", [("hello %s", "world", {"code": "OK", "bytes_in": 3})])
    finally:
        log.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "hello world" and first["level"] == "WARNING"
    assert (first["request_id"], first["code"], first["bytes_in"]) == ("abc", "OK", 3)
    assert first["ts"].endswith("Z") and first["logger"] == "deconv_server.test_json"
    assert second["msg"] == "failed" and "RuntimeError: boom" in second["traceback"]


def _our_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_deconv", False)]


def test_configured_logging_writes_in_order_from_its_writer_thread(monkeypatch) -> None:
    """configure_logging's records reach stderr through one writer thread: in order, with the
    request id of the context they were logged in, tracebacks kept, all out once stopped."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    before = logging.getLogger().level
    try:
        logging_setup.configure_logging("INFO", "json")
        log = logging.getLogger("deconv_server.test_writer")
        _log_then_fail(log, "req-1", [("record %d", i, None) for i in range(50)], logging.INFO)
        logging_setup._stop_listener()  # what exit does: every queued record written
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        for h in _our_handlers():
            logging.getLogger().removeHandler(h)
        logging_setup._stop_listener()
        logging.getLogger().setLevel(before)
    mine = [r for r in lines if r["logger"] == "deconv_server.test_writer"]
    assert [r["msg"] for r in mine[:50]] == [f"record {i}" for i in range(50)]
    assert all(r["request_id"] == "req-1" for r in mine)
    assert mine[50]["msg"] == "failed" and "RuntimeError: boom" in mine[50]["traceback"]


def test_a_stuck_log_writer_drops_and_counts_records_instead_of_blocking(monkeypatch) -> None:
    class Stuck(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.release = threading.Event()

        def write(self, text: str) -> int:
            self.release.wait(10)  # stderr that nobody reads
            return super().write(text)

    stream = Stuck()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(logging_setup, "QUEUE_MAX_RECORDS", 4)
    before = logging.getLogger().level
    dropped = logging_setup.dropped_records()
    try:
        logging_setup.configure_logging("INFO", "text")
        log = logging.getLogger("deconv_server.test_stuck")
        start = time.monotonic()
        for i in range(40):
            log.info("record %d", i)
        assert time.monotonic() - start < 1.0  # the logging thread never waited
        assert logging_setup.dropped_records() - dropped >= 40 - 4 - 1
    finally:
        stream.release.set()
        for h in _our_handlers():
            logging.getLogger().removeHandler(h)
        logging_setup._stop_listener()
        logging.getLogger().setLevel(before)
