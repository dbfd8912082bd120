"""Fixtures for tests/deploy: real ``deconv-server`` processes on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

START_TIMEOUT = 120.0
_LISTENING = re.compile(r"listening on (?P<host>\S+):(?P<port>\d+)\s*$")


@dataclass
class ServerProcess:
    """One ``deconv-server`` process and the ``127.0.0.1:port`` it bound."""

    proc: subprocess.Popen[str]
    address: str


def _start(threads: int) -> ServerProcess:
    env = dict(os.environ)
    env.update(NUMBA_NUM_THREADS=str(threads), DECONV_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "deconv_server", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT)
    match = _LISTENING.search(line[0]) if line else None
    if match is None:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"deconv-server did not report its port: {line!r} (exit {proc.poll()})")
    return ServerProcess(proc, f"127.0.0.1:{match['port']}")


def _stop(servers: list[ServerProcess]) -> None:
    for s in servers:
        if s.proc.poll() is None:
            s.proc.send_signal(signal.SIGTERM)
    for s in servers:
        try:
            s.proc.wait(15)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait(10)
        if s.proc.stdout:
            s.proc.stdout.close()


@pytest.fixture
def spawn_servers() -> Iterator[Callable[..., list[ServerProcess]]]:
    """``spawn_servers(n, threads=1)``: start ``n`` servers, wait until each is SERVING.

    Every process started is stopped at teardown (SIGTERM, then SIGKILL after 15 s).
    """
    import deconv_client  # here, not at the top: the offline deploy tests must not need it

    started: list[ServerProcess] = []

    def spawn(n: int, threads: int = 1) -> list[ServerProcess]:
        new = []
        for _ in range(n):
            new.append(_start(threads))
            started.append(new[-1])
        for s in new:
            with deconv_client.Client(s.address, timeout=5) as c:
                c.wait_until_serving(timeout=START_TIMEOUT)
        return new

    try:
        yield spawn
    finally:
        _stop(started)
