"""RPC cost of the service: round trip of a tiny call, and overhead over in-process compute.

``python -m bench.rpc_latency`` starts ``python -m deconv_server --port 0`` in a subprocess,
waits for SERVING, then measures through ``deconv_client``:

- the round trip of a 1x1x8x8 transposed conv (weight 1x1x4x4, stride 2, padding 1), p50 and p99
  over ``--calls`` calls;
- benchmark case T1 (:mod:`bench.cases`) remote (the client streams it in chunks) against
  ``deconv_core`` in this process, median of 5 after 2 warm-ups, checking the results are equal.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
from deconv_client import Client

import deconv_core


def _times(fn: Callable[[], object], n: int) -> np.ndarray:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return np.array(out) * 1e3


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement and print two lines of figures."""
    p = argparse.ArgumentParser(prog="python -m bench.rpc_latency", description=__doc__)
    p.add_argument("--calls", type=int, default=1000, help="tiny calls (default %(default)s)")
    p.add_argument("--log-level", default="INFO", help="server log level (default %(default)s)")
    args = p.parse_args(argv)
    server = subprocess.Popen(
        [sys.executable, "-m", "deconv_server", "--port", "0", "--log-level", args.log_level],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        found = re.search(r"listening on (\S+)", server.stdout.readline())
        if not found:
            print("the server did not start", file=sys.stderr)
            return 1
        with Client(found.group(1), timeout=120) as client:
            while client.health() != "SERVING":
                time.sleep(0.2)
            rng = np.random.default_rng(0)
            x = rng.random((1, 1, 8, 8), dtype=np.float32)
            w = rng.random((1, 1, 4, 4), dtype=np.float32)
            client.conv_transpose(x, w, stride=2, padding=1)
            ts = _times(lambda: client.conv_transpose(x, w, stride=2, padding=1), args.calls)
            print(
                f"1x1x8x8 conv_transpose round trip, {args.calls} calls: "
                f"p50 {np.median(ts):.2f} ms, p99 {np.percentile(ts, 99):.2f} ms"
            )
            x = rng.random((8, 256, 16, 16), dtype=np.float32)
            w = rng.random((256, 128, 4, 4), dtype=np.float32)
            remote = client.conv_transpose(x, w, stride=2, padding=1)
            local = deconv_core.conv_transpose(x, w, stride=2, padding=1)
            if not np.array_equal(remote, local):
                print("T1: the server's result differs from the local core's", file=sys.stderr)
                return 1
            r = np.median(_times(lambda: client.conv_transpose(x, w, stride=2, padding=1), 7)[2:])
            loc = np.median(
                _times(lambda: deconv_core.conv_transpose(x, w, stride=2, padding=1), 7)[2:]
            )
            print(f"T1: remote {r:.1f} ms, in-process {loc:.1f} ms, RPC overhead {r - loc:.1f} ms")
    finally:
        server.terminate()
        server.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
