#!/usr/bin/env python3
"""End-to-end demo (``make demo``): start a server, upsample an image through the client, check.

1. Starts ``deconv-server --port 0`` as a subprocess on 127.0.0.1 and reads the port it prints.
2. Waits until the server's gRPC health reports SERVING (kernels warm).
3. Upsamples a small 3-channel "image" 2x with a transposed convolution whose kernel is the
   bilinear interpolation filter (depthwise: groups = channels, stride 2, padding 1), plus a
   per-channel bias, through :class:`deconv_client.Client`.
4. Checks the result equals ``deconv_core.conv_transpose`` computed locally, bit for bit, prints
   it, and stops the server with SIGTERM.

Exit status 0 when the remote and local results match.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from deconv_client import Client

import deconv_core


def bilinear_kernel(factor: int) -> np.ndarray:
    """1-D weights of bilinear upsampling by ``factor`` (size 2*factor), e.g. [.25 .75 .75 .25]."""
    size = 2 * factor
    center = factor - 0.5
    taps = 1 - np.abs(np.arange(size) - center) / factor
    return taps.astype(np.float32)


def start_server() -> tuple[subprocess.Popen[str], str]:
    """Run ``deconv-server --port 0`` and return the process and the address it printed."""
    exe = Path(sys.executable).parent / "deconv-server"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "deconv_server"]
    proc = subprocess.Popen(
        [*cmd, "--host", "127.0.0.1", "--port", "0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("deconv-server listening on "):
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[1]


def main() -> int:
    """Run the demo; 0 on success."""
    proc, target = start_server()
    try:
        print(f"server listening on {target}; waiting for warm kernels ...")
        with Client(target, timeout=60) as client:
            client.wait_until_serving(timeout=300)
            info = client.server_info()
            print(
                f"SERVING: deconv {info.version}, numba {info.numba_version}, "
                f"threading layer {info.threading_layer}, {info.threads} threads"
            )
            channels, factor = 3, 2
            yy, xx = np.mgrid[0:4, 0:4].astype(np.float32)
            image = np.stack([xx + yy, xx * yy, (xx - yy) ** 2])[None]  # (1, 3, 4, 4)
            k = bilinear_kernel(factor)
            weight = np.tile(np.outer(k, k), (channels, 1, 1, 1))  # (3, 1, 4, 4), depthwise
            bias = np.array([0.0, 10.0, -1.0], np.float32)
            params = {"stride": factor, "padding": factor // 2, "groups": channels}

            remote = client.conv_transpose(image, weight, bias, **params)
            local = deconv_core.conv_transpose(image, weight, bias, **params)

        np.set_printoptions(precision=3, suppress=True, linewidth=120)
        print(f"input  {image.shape} channel 0:\n{image[0, 0]}")
        print(f"output {remote.shape} channel 0 (bilinear 2x upsampling):\n{remote[0, 0]}")
        print(f"output channel 1 (bias 10 added to every element):\n{remote[0, 1]}")
        if remote.dtype != local.dtype or not np.array_equal(remote, local):
            print("FAIL: the server's result differs from deconv_core computed locally")
            return 1
        print("OK: the server's result equals deconv_core computed locally, bit for bit")
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        print(f"server stopped (exit code {proc.returncode})")


if __name__ == "__main__":
    sys.exit(main())
