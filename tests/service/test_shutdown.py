"""Graceful shutdown of a server process under load, the shutdown delay, and connection age.

The load test runs ``deconv-server`` as a subprocess, keeps four client threads calling it, and
sends SIGTERM: a health Watch opened before sees NOT_SERVING, calls in flight at the signal
finish with correct results, later calls get UNAVAILABLE and succeed on a second server, the
process exits 0 well within its grace period, and its JSON access log has one line per call it
served.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from deconv_client import Client, UnavailableError
from deconv_server.app import ServerHandle, server_options
from deconv_server.config import ServerConfig
from deconv_server.logging_setup import ACCESS_LOGGER
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .conftest import extra_server
from .helpers import core

GRACE = 10.0
# Heavy enough (about 0.5 GFLOP) that some call is always on the server when SIGTERM comes.
X = np.random.default_rng(5).standard_normal((4, 64, 32, 32)).astype(np.float32)
W = np.random.default_rng(6).standard_normal((64, 64, 4, 4)).astype(np.float32)
THREADS = 4
#: Shutdown delay of the delay test: long enough for its checks on a loaded machine.
DELAY = 5.0


@contextmanager
def server_process(tmp_path: Path, *flags: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m deconv_server`` on a free port, stderr to a file; yields (process, target)."""
    stderr = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "deconv_server", "--host", "127.0.0.1", "--port", "0",
         "--no-warmup", "--log-format", "json", "--log-level", "INFO", *flags],
        stdout=subprocess.PIPE, stderr=stderr, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("deconv-server listening on 127.0.0.1:"), line
        yield proc, line.split()[-1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        stderr.close()


@dataclass
class Record:
    """One client call: where it went, how it ended, when."""

    server: str
    outcome: str
    start: float
    end: float


def watch_health(target: str, seen: list[tuple[str, float]], done: threading.Event) -> None:
    """Follow grpc.health.v1 Watch until NOT_SERVING (then cancel, so draining can end)."""
    with grpc.insecure_channel(target) as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=60
        )
        try:
            for reply in call:
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                seen.append((status, time.monotonic()))
                if status == "SERVING":
                    done.set()
                if status == "NOT_SERVING":
                    break
        except grpc.RpcError as exc:
            seen.append((exc.code().name, time.monotonic()))
        finally:
            call.cancel()
            done.set()


#: SIGTERM-under-load runs: every one must lose no call (no CANCELLED, no error).
SIGTERM_RUNS = 10


@pytest.mark.parametrize("run", range(SIGTERM_RUNS))
def test_sigterm_under_load_loses_no_call(server: ServerHandle, tmp_path: Path, run: int) -> None:
    expected = core("conv_transpose", X, W, stride=2, padding=1)
    backup = extra_server()
    records: list[Record] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    try:
        with server_process(tmp_path, "--grace-seconds", str(GRACE)) as (proc, target):
            primary = Client(target, timeout=30, retry=False)
            fallback = Client(backup.target, timeout=30)
            primary.wait_until_serving(60)
            np.testing.assert_array_equal(
                primary.conv_transpose(X, W, stride=2, padding=1), expected
            )  # the first call loads the kernels

            def work() -> None:
                refused = False  # like a balancer: no more calls to a server that refused one
                while not stop.is_set():
                    start = time.monotonic()
                    where, outcome = "fallback", "AVOIDED"
                    try:
                        if not refused:
                            y = primary.conv_transpose(X, W, stride=2, padding=1)
                            where, outcome = "primary", "OK"
                    except UnavailableError:
                        refused, outcome = True, "UNAVAILABLE"
                    except BaseException as exc:  # anything else fails the test
                        errors.append(exc)
                        return
                    if where == "fallback":
                        y = fallback.conv_transpose(X, W, stride=2, padding=1)
                    if not np.array_equal(y, expected):
                        errors.append(AssertionError(f"wrong result from {where}"))
                    records.append(Record(where, outcome, start, time.monotonic()))

            health_seen: list[tuple[str, float]] = []
            watching = threading.Event()
            watcher = threading.Thread(target=watch_health, args=(target, health_seen, watching))
            watcher.start()
            assert watching.wait(10), "health Watch did not report SERVING"
            workers = [threading.Thread(target=work) for _ in range(THREADS)]
            for t in workers:
                t.start()
            deadline = time.monotonic() + 30
            while len(records) < 3 * THREADS and time.monotonic() < deadline and not errors:
                time.sleep(0.01)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(GRACE + 20)
            exited = time.monotonic()
            time.sleep(0.3)  # calls now reach the fallback only
            stop.set()
            for t in workers:
                t.join(60)
            watcher.join(10)
            primary.close()
            fallback.close()
        log_lines = (tmp_path / "server.log").read_text().splitlines()
    finally:
        stop.set()
        backup.stop(0).wait(5)

    assert not errors, errors
    assert rc == 0
    assert exited - signalled < GRACE, f"exit took {exited - signalled:.1f} s"
    statuses = [s for s, _ in health_seen]
    assert statuses[0] == "SERVING" and "NOT_SERVING" in statuses, statuses
    assert any(r.outcome == "UNAVAILABLE" and r.start > signalled for r in records)
    assert any(r.server == "primary" and r.start < signalled for r in records)
    # The server's own account: one JSON access line per call it served, request ids unique.
    entries = [json.loads(line) for line in log_lines if line.startswith("{")]
    assert entries and all("ts" in e and "level" in e for e in entries)
    served = [e for e in entries if e.get("event") == "rpc" and e["service"] == "deconv.v1.Deconv"]
    ok = [e for e in served if e["code"] == "OK"]
    refused = [e for e in served if e["code"] == "UNAVAILABLE"]  # by the drain gate
    assert len(ok) + len(refused) == len(served), "a call the server accepted was lost"
    assert len(ok) == 1 + sum(r.server == "primary" for r in records)
    assert len(refused) <= sum(r.outcome == "UNAVAILABLE" for r in records)
    assert len({e["request_id"] for e in served}) == len(served)
    # Calls the server was running or queueing when SIGTERM arrived finished (OK, above).
    sigterm = _when(next(e for e in entries if e["msg"].startswith("SIGTERM")))
    in_flight = [e for e in ok if _when(e) - e["duration_ms"] / 1e3 < sigterm < _when(e)]
    assert in_flight, "no call was in flight at SIGTERM"


def _when(entry: dict) -> float:
    """Wall-clock seconds of a JSON log entry's ``ts``."""
    stamp = datetime.datetime.strptime(entry["ts"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return stamp.replace(tzinfo=datetime.UTC).timestamp()


def test_shutdown_delay_reports_not_serving_while_still_serving(
    server: ServerHandle, tmp_path: Path
) -> None:
    x = np.ones((1, 1, 3, 3), np.float32)
    with server_process(tmp_path, "--shutdown-delay-s", str(DELAY), "--grace-seconds", "2") as (
        proc,
        target,
    ):
        with Client(target, timeout=30) as c:
            c.wait_until_serving(60)
            c.conv_transpose(x, x)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            deadline = signalled + DELAY - 1
            while c.health() == "SERVING" and time.monotonic() < deadline:
                time.sleep(0.02)
            assert c.health() == "NOT_SERVING"
            np.testing.assert_array_equal(c.conv_transpose(x, x), core("conv_transpose", x, x))
            assert time.monotonic() - signalled < DELAY, "the delay was over before the checks"
        assert proc.wait(15) == 0
        assert time.monotonic() - signalled >= DELAY


def test_connection_age_moves_clients_to_new_connections(
    server: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    handle = extra_server(max_connection_age_s=0.3, max_connection_age_grace_s=5)
    x = np.ones((1, 1, 3, 3), np.float32)
    expected = core("conv_transpose", x, x)
    try:
        with Client(handle.target, timeout=10) as c:
            end = time.monotonic() + 2.0
            calls = 0
            while time.monotonic() < end:
                np.testing.assert_array_equal(c.conv_transpose(x, x), expected)
                calls += 1
                time.sleep(0.05)
    finally:
        handle.stop(0).wait(5)
    peers = {
        r.fields["peer"]
        for r in caplog.records
        if r.name == ACCESS_LOGGER and r.fields["method"] == "TransposedConv"
    }
    assert calls >= 10 and len(peers) >= 2, (calls, peers)


def test_keepalive_and_age_options() -> None:
    options = dict(
        server_options(
            ServerConfig(
                max_connection_age_s=300,
                max_connection_age_grace_s=30,
                keepalive_time_s=60,
                keepalive_timeout_s=20,
            )
        )
    )
    assert options["grpc.max_connection_age_ms"] == 300_000
    assert options["grpc.max_connection_age_grace_ms"] == 30_000
    assert options["grpc.keepalive_time_ms"] == 60_000
    assert options["grpc.keepalive_timeout_ms"] == 20_000
    unlimited = dict(server_options(ServerConfig(max_connection_age_s=0)))
    assert "grpc.max_connection_age_ms" not in unlimited
    c = ServerConfig.from_env(
        {"DECONV_MAX_CONNECTION_AGE_S": "120", "DECONV_SHUTDOWN_DELAY_S": "5"}
    )
    assert (c.max_connection_age_s, c.shutdown_delay_s) == (120.0, 5.0)
    assert ServerConfig().max_connection_age_s == 300.0
