"""One large batch on one replica against the same batch split over two (``split_batch=True``).

``python -m bench.split_batch`` starts two ``python -m deconv_server --port 0`` subprocesses on
127.0.0.1 and times benchmark case T1 (:mod:`bench.cases`) with ``--scale`` times its batch
(default 8: 64 x 256 x 16 x 16 in, 16 MiB; 32 MiB out; the 2 MiB weight cached by digest):

- one replica: ``Client(a).conv_transpose(...)``, one chunked call;
- split over two: ``Client([a, b], split_batch=True)``, two concurrent calls of half the batch.

It prints the median and the minimum of ``--repeat`` calls each (after warm-ups, interleaved),
and checks that both results are bit-identical. On a machine with fewer cores than replicas the
servers share the cores (``--server-threads`` sets each server's compute threads), so the split
can overlap one part's transfer with another's compute but cannot add compute: the gain is
bounded by the transport's share of the call.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
from deconv_client import Client

from bench.cases import CASES, make_inputs
from bench.rpc_latency import start_process

__all__ = ["main", "measure"]


def _start(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """A server subprocess on a free port and its target."""
    cmd = [sys.executable, "-m", "deconv_server", "--host", "127.0.0.1", "--port", "0",
           "--log-level", "WARNING"]  # fmt: skip
    return start_process(cmd, env)


def _times(fn: Callable[[], np.ndarray], calls: int) -> tuple[list[float], np.ndarray]:
    seconds, result = [], np.empty(0)
    for _ in range(calls):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def measure(
    scale: int = 8, repeat: int = 7, warmup: int = 2, server_threads: int | None = None
) -> dict[str, list[float]]:
    """Seconds per call of T1 x ``scale`` on one replica and split over two.

    Parameters
    ----------
    scale : int
        Multiple of T1's batch (8) to send in one call.
    repeat : int
        Timed calls of each kind (interleaved).
    warmup : int
        Untimed calls of each kind first (kernels compiled, weight cached on both replicas).
    server_threads : int, optional
        Compute threads of each server (NUMBA_NUM_THREADS, OPENBLAS_NUM_THREADS); default: the
        servers' own (every core).

    Returns
    -------
    dict
        ``{"one replica": [...], "split over 2": [...]}``, seconds per call.
    """
    t1 = next(c for c in CASES if c.id == "T1")
    case = dataclasses.replace(t1, input_shape=(t1.input_shape[0] * scale, *t1.input_shape[1:]))
    x, w, b = make_inputs(case)
    kwargs = case.params()
    env = dict(os.environ)
    if server_threads:
        env.update(NUMBA_NUM_THREADS=str(server_threads), OPENBLAS_NUM_THREADS="1")
    servers = [_start(env) for _ in range(2)]
    targets = [target for _, target in servers]
    try:
        with (
            Client(targets[0], timeout=120) as one,
            Client(targets, timeout=120, split_batch=True) as split,
        ):
            for c in (one, split):
                c.wait_until_serving(300)
            calls = {
                "one replica": lambda: one.conv_transpose(x, w, b, **kwargs),
                "split over 2": lambda: split.conv_transpose(x, w, b, **kwargs),
            }
            results = {name: _times(fn, warmup)[1] for name, fn in calls.items()}
            first, second = results.values()
            if first.tobytes() != second.tobytes():
                raise AssertionError("the split result differs from the one-replica result")
            seconds: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(repeat):
                for name, fn in calls.items():
                    seconds[name] += _times(fn, 1)[0]
            return seconds
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            proc.wait(30)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m bench.split_batch [--scale 8] [--repeat 7]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=8, help="multiple of T1's batch of 8")
    parser.add_argument("--repeat", type=int, default=7, help="timed calls of each kind")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each kind")
    parser.add_argument("--server-threads", type=int, default=None,
                        help="compute threads per server (default: every core)")  # fmt: skip
    args = parser.parse_args(argv)
    seconds = measure(args.scale, args.repeat, args.warmup, args.server_threads)
    print(f"T1 x {args.scale} (batch {8 * args.scale}), {os.cpu_count()} cores, "
          f"server threads {args.server_threads or 'default'}")  # fmt: skip
    print(f"{'call':<16}{'median ms':>12}{'min ms':>10}")
    for name, values in seconds.items():
        print(f"{name:<16}{statistics.median(values) * 1e3:>12.1f}{min(values) * 1e3:>10.1f}")
    base, split = (statistics.median(v) for v in seconds.values())
    print(f"{'speed-up':<16}{base / split:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
