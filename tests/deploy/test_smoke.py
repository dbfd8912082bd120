"""deploy/smoke.py (the image check's SMOKE_CMD) passes against a live server, fails otherwise."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SMOKE = Path(__file__).resolve().parents[2] / "deploy" / "smoke.py"


def _smoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SMOKE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(180)
def test_smoke_passes_against_a_server(spawn_servers: Callable[..., list[Any]]) -> None:
    (server,) = spawn_servers(1, threads=2)
    proc = _smoke("--target", server.address, "--calls", "16", "--expect-threading-layer", "omp")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "smoke: PASSED"
    assert sum(line.startswith("ok ") for line in lines) == 7, proc.stdout


@pytest.mark.timeout(180)
def test_smoke_fails_on_a_wrong_threading_layer(spawn_servers: Callable[..., list[Any]]) -> None:
    (server,) = spawn_servers(1, threads=1)
    proc = _smoke("--target", server.address, "--calls", "0", "--expect-threading-layer", "tbb")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL GetServerInfo" in proc.stdout and "want 'tbb'" in proc.stdout


@pytest.mark.timeout(60)
def test_smoke_fails_without_a_server() -> None:
    proc = _smoke("--target", f"127.0.0.1:{_closed_port()}", "--timeout", "2", "--calls", "4")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("smoke: FAILED: health SERVING")
    assert "ok " not in proc.stdout
