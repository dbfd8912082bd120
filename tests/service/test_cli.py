"""The `deconv` CLI round-trips .npy files; `deconv-server` and the health probe as processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from deconv_client import Client
from deconv_server.cli import flag
from deconv_server.config import ENV_VARS

from .helpers import core, rand

BIN = Path(sys.executable).parent
TIMEOUT = 60


def _cmd(script: str, module: str) -> list[str]:
    """The installed console script, or ``python -m`` when it is not on disk."""
    path = BIN / script
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


DECONV = _cmd("deconv", "deconv_client.cli")
DECONV_SERVER = _cmd("deconv-server", "deconv_server")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DECONV, *args], capture_output=True, text=True, timeout=TIMEOUT, env=env, check=False
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(9)
    arrays = {
        "x": rand(rng, (2, 3, 5, 4)),
        "wt": rand(rng, (3, 2, 4, 4)),
        "wc": rand(rng, (2, 3, 3, 3)),
        "b": rand(rng, (2,)),
    }
    paths = {}
    for name, arr in arrays.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], arr)
    paths["y"] = tmp_path / "y.npy"
    return paths


def test_conv_transpose_roundtrip(target: str, files: dict[str, Path]) -> None:
    proc = run(
        "conv-transpose", "--input", str(files["x"]), "--weight", str(files["wt"]),
        "--bias", str(files["b"]), "--stride", "2", "--padding", "1", "--output-padding", "1",
        "--output", str(files["y"]), "--target", target,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {files['y']}: shape (2, 2, 11, 9) float32"
    x, w, b = (np.load(files[k]) for k in ("x", "wt", "b"))
    expected = core("conv_transpose", x, w, b, stride=2, padding=1, output_padding=1)
    np.testing.assert_array_equal(np.load(files["y"]), expected)


def test_conv_with_mode_and_pairs(target: str, files: dict[str, Path]) -> None:
    x, w = np.load(files["x"]), np.load(files["wc"])
    for padding, value in ((["same"], "same"), (["1:0", "0:2"], [(1, 0), (0, 2)])):
        proc = run(
            "conv", "--input", str(files["x"]), "--weight", str(files["wc"]), "--stride", "1", "2",
            "--padding", *padding, "--output", str(files["y"]), "--target", target,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        expected = core("conv", x, w, stride=(1, 2), padding=value)
        np.testing.assert_array_equal(np.load(files["y"]), expected)


def test_output_shape_flag(target: str, files: dict[str, Path]) -> None:
    proc = run(
        "conv-transpose", "--input", str(files["x"]), "--weight", str(files["wt"]), "--stride", "2",
        "--padding", "same", "--output-shape", "10", "7", "--output", str(files["y"]),
        "--target", target,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    x, w = np.load(files["x"]), np.load(files["wt"])
    expected = core("conv_transpose", x, w, stride=2, padding="same", output_shape=(10, 7))
    np.testing.assert_array_equal(np.load(files["y"]), expected)


def test_errors_are_one_line_with_exit_codes(target: str, files: dict[str, Path]) -> None:
    missing = run(
        "conv", "--input", "/nonexistent/x.npy", "--weight", str(files["wc"]),
        "--output", str(files["y"]), "--target", target,
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.startswith("deconv: error: cannot read --input /nonexistent/x.npy")
    assert len(missing.stderr.strip().splitlines()) == 1

    server_side = run(
        "conv-transpose", "--input", str(files["x"]), "--weight", str(files["wt"]),
        "--stride", "2", "--output-padding", "2", "--output", str(files["y"]), "--target", target,
    )  # fmt: skip
    assert server_side.returncode == 1
    assert server_side.stderr.strip() == (
        "deconv: error: INVALID_ARGUMENT: conv_transpose: output_padding[0]=2 must be "
        "< max(stride, dilation)=2"
    )

    bad_padding = run(
        "conv", "--input", str(files["x"]), "--weight", str(files["wc"]), "--padding", "lots",
        "--output", str(files["y"]), "--target", target,
    )  # fmt: skip
    assert bad_padding.returncode == 2 and "--padding lots" in bad_padding.stderr

    usage = run("conv", "--input", str(files["x"]))
    assert usage.returncode == 2 and "required" in usage.stderr


def test_health_and_info(target: str) -> None:
    health = run("health", "--target", target)
    assert (health.returncode, health.stdout.strip()) == (0, "SERVING")
    info = run("info", "--target", target)
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["warm"] is True and data["ranks"] == [1, 2, 3]


def test_unreachable_server_exit_code() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = run("health", "--target", f"127.0.0.1:{port}", "--timeout", "2")
    assert proc.returncode == 1
    assert (
        proc.stderr.startswith("deconv: error: UNAVAILABLE") or "DEADLINE_EXCEEDED" in proc.stderr
    )


def test_server_process_prints_port_serves_and_stops_on_sigterm(server: object) -> None:
    """`deconv-server --port 0`: one stdout line with the port; SIGTERM drains, exits 0."""
    env = dict(os.environ, DECONV_LOG_LEVEL="INFO")
    proc = subprocess.Popen(
        [
            *DECONV_SERVER,
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--grace-seconds",
            "2",
            "--no-warmup",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("deconv-server listening on 127.0.0.1:"), line
        target = line.split()[-1]
        with Client(target, timeout=30) as c:
            c.wait_until_serving(120)
            x = np.ones((1, 1, 3, 3), np.float32)
            np.testing.assert_array_equal(c.conv_transpose(x, x), core("conv_transpose", x, x))
        probe = subprocess.run(
            [sys.executable, "-m", "deconv_server.healthcheck", "--target", target],
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert (probe.returncode, probe.stdout.strip()) == (0, "SERVING")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out == "", "stdout must carry exactly one line"
        assert "SIGTERM" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    probe = subprocess.run(
        [sys.executable, "-m", "deconv_server.healthcheck", "--target", target, "--timeout", "1"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert probe.returncode == 1 and probe.stdout.startswith("UNHEALTHY")


def test_server_cli_rejects_bad_config() -> None:
    proc = subprocess.run(
        [*DECONV_SERVER, "--port", "99999"], capture_output=True, text=True, timeout=TIMEOUT,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "port=99999" in proc.stderr
    started = time.monotonic()
    assert proc.stdout == "" and time.monotonic() - started < TIMEOUT


def test_server_help_lists_every_setting() -> None:
    """`deconv-server --help` names every field's flag and variable (both derived)."""
    env = dict(os.environ, COLUMNS="1000")
    proc = subprocess.run(
        [*DECONV_SERVER, "--help"], capture_output=True, text=True, timeout=TIMEOUT, env=env,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for name in ENV_VARS:
        assert f" {flag(name)} " in proc.stdout or f" {flag(name)}," in proc.stdout, name
        assert f"(env {ENV_VARS[name]}, default " in proc.stdout, name
    assert "--no-warmup" in proc.stdout and "(env DECONV_MAX_FLOPS, " in proc.stdout
