"""RPC cost of the service against in-process compute and a bare grpcio echo, in one run.

``python -m bench.rpc_latency`` starts ``python -m deconv_server --port 0`` and a bare grpcio
echo server (``--echo-server``: raw bytes, no protobuf, the same channel options) in
subprocesses, then measures over TCP on 127.0.0.1:

- the round trip of a 1x1x8x8 transposed conv (weight 1x1x4x4, stride 2, padding 1), p50 and p99
  over ``--calls`` calls, call for call against a 64-byte unary echo;
- benchmark case T1 (:mod:`bench.cases`; 2 MiB input, 2 MiB weight, 4 MiB result) with the weight
  cache (the weight sent once, then by digest), without it, and over shared memory, each with
  a plain weight (hashed on every call) and with :func:`deconv_client.frozen_array`'s
  (hashed once, as a layer's weight is), against
  ``deconv_core`` in this process and against the echo server moving the same bytes (4 MiB each
  way, one message);
- ``--mib`` MiB (default 64) in and out: a 1x1 convolution with a one-element weight (the compute
  is a copy), as one image and as a batch of 1 MiB images (which the server computes and sends
  while the rest still arrives), over the chunked RPC and over shared memory, against the echo
  server streaming the same bytes in 1 MiB messages (message for message, so its upload and
  download overlap); throughput is input MiB per second of round trip.

Shared memory uses a temporary directory under /dev/shm as the server's
``DECONV_SHARED_MEMORY_DIR`` and the client's ``shared_memory=``. The cases of a group run in
interleaved rounds (one call of each per round); times are medians after a warm-up round, and
every result is checked equal to the local core's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence

import grpc
import numpy as np
from deconv_client import Client, frozen_array
from deconv_client._channel import channel_options

import deconv_core
from bench.environment import host_info

MIB = 1 << 20
_UNARY = "/bench.Echo/Unary"
_STREAM = "/bench.Echo/Stream"


def _times(fn: Callable[[], object], n: int) -> np.ndarray:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return np.array(out) * 1e3


def _median(fn: Callable[[], object], n: int, warmup: int = 2) -> float:
    return float(np.median(_times(fn, n + warmup)[warmup:]))


async def _echo_server() -> None:
    """A grpc.aio server echoing raw bytes: unary, and a stream message for message."""

    async def unary(request: bytes, context: object) -> bytes:
        return request

    async def stream(requests: object, context: object) -> object:
        async for message in requests:  # type: ignore[attr-defined]
            yield message

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.stream_stream_rpc_method_handler(stream),
    }
    limit = 512 * MIB
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            ("grpc.http2.max_frame_size", (1 << 24) - 1),
        ]
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"echo listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def start_process(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """Start ``cmd`` (a server printing "listening on <target>" first) and return its target."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert proc.stdout is not None
    found = re.search(r"listening on (\S+)", proc.stdout.readline())
    if not found:
        proc.kill()
        raise RuntimeError(f"{cmd} did not start")
    return proc, found.group(1)


def _echo_channel(target: str) -> grpc.Channel:
    opts = channel_options(
        target, max_message_bytes=512 * MIB, load_balancing=None, retry=False, options=()
    )
    return grpc.insecure_channel(target, options=opts)


def _echo_stream(call: Callable[..., Iterator[bytes]], data: bytes, step: int) -> int:
    view = memoryview(data)
    parts = (bytes(view[i : i + step]) for i in range(0, len(view), step))
    return sum(len(m) for m in call(parts))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement and print a table."""
    p = argparse.ArgumentParser(prog="python -m bench.rpc_latency", description=__doc__)
    p.add_argument("--calls", type=int, default=1000, help="tiny calls (default %(default)s)")
    p.add_argument("--mib", type=int, default=64, help="MiB of the large case (%(default)s)")
    p.add_argument("--repeat", type=int, default=7, help="timed runs per case (%(default)s)")
    p.add_argument("--log-level", default="WARNING", help="server log level (%(default)s)")
    p.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.echo_server:
        asyncio.run(_echo_server())
        return 0
    env = dict(os.environ)
    shm = tempfile.TemporaryDirectory(
        prefix="deconv-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    env.update(
        DECONV_MAX_TENSOR_ELEMENTS=str(1 << 28),
        DECONV_MAX_OUTPUT_ELEMENTS=str(1 << 28),
        DECONV_LOG_LEVEL=args.log_level,
        DECONV_SHARED_MEMORY_DIR=shm.name,
    )
    procs = []
    try:
        server, target = start_process([sys.executable, "-m", "deconv_server", "--port", "0"], env)
        procs.append(server)
        echo, echo_target = start_process(
            [sys.executable, "-m", "bench.rpc_latency", "--echo-server"], env
        )
        procs.append(echo)
        rows = _measure(target, echo_target, args, shm.name)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(15)
        shm.cleanup()
    host = host_info()
    print(f"machine: {host['cpu']}, {host['cores']} cores, SIMD {host['simd']}")
    print(f"{'case':<48} {'ms':>8} {'note'}")
    for name, ms, note in rows:
        print(f"{name:<48} {ms:8.2f} {note}")
    return 0


def _rounds(cases: dict[str, Callable[[], object]], n: int, warmup: int = 1) -> dict[str, float]:
    """Median ms of each case over ``n`` rounds, the cases interleaved within each round."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(n + warmup):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(1e3 * (time.perf_counter() - start))
    return {name: float(np.median(v)) for name, v in times.items()}


def _measure(
    target: str, echo_target: str, args: argparse.Namespace, shm_dir: str
) -> list[tuple[str, float, str]]:
    rows: list[tuple[str, float, str]] = []
    rng = np.random.default_rng(0)
    with (
        Client(target, timeout=120) as client,
        Client(target, timeout=120, weight_cache=False) as plain,
        Client(target, timeout=120, shared_memory=shm_dir) as shm,
        _echo_channel(echo_target) as channel,
    ):
        client.wait_until_serving(300)
        unary = channel.unary_unary(_UNARY)
        x = rng.random((1, 1, 8, 8), dtype=np.float32)
        w = rng.random((1, 1, 4, 4), dtype=np.float32)
        tiny = bytes(64)
        client.conv_transpose(x, w, stride=2, padding=1)
        ts, et = [], []
        for _ in range(args.calls):  # interleaved, call for call
            ts.append(_times(lambda: client.conv_transpose(x, w, stride=2, padding=1), 1)[0])
            et.append(_times(lambda: unary(tiny), 1)[0])
        rows.append(("tiny conv_transpose p50", float(np.median(ts)), f"{args.calls} calls"))
        rows.append(("tiny conv_transpose p99", float(np.percentile(ts, 99)), ""))
        rows.append(("bare grpcio echo 64 B p50", float(np.median(et)), ""))
        rows.append(("bare grpcio echo 64 B p99", float(np.percentile(et, 99)), ""))

        x = rng.random((8, 256, 16, 16), dtype=np.float32)
        w = rng.random((256, 128, 4, 4), dtype=np.float32)
        frozen = frozen_array(w)  # a layer's weight: hashed for the weight cache once
        local_y = deconv_core.conv_transpose(x, w, stride=2, padding=1)
        for c in (client, plain, shm):
            if not np.array_equal(c.conv_transpose(x, w, stride=2, padding=1), local_y):
                raise RuntimeError("T1: the server's result differs from the local core's")
        t1 = bytes(x.nbytes + w.nbytes)
        t1_cases = {
            "T1 in-process compute": lambda: deconv_core.conv_transpose(x, w, stride=2, padding=1),
            "T1 remote, weight cached": lambda: client.conv_transpose(x, w, stride=2, padding=1),
            "T1 remote, weight sent": lambda: plain.conv_transpose(x, w, stride=2, padding=1),
            "T1 shared memory, weight cached": lambda: shm.conv_transpose(
                x, w, stride=2, padding=1
            ),
            "T1 remote, frozen weight (hashed once)": lambda: client.conv_transpose(
                x, frozen, stride=2, padding=1
            ),
            "T1 shared memory, frozen weight": lambda: shm.conv_transpose(
                x, frozen, stride=2, padding=1
            ),
            "T1 bytes on bare grpcio echo (4 MiB x2)": lambda: unary(t1),
        }
        t1_ms = _rounds(t1_cases, args.repeat)
        loc = t1_ms["T1 in-process compute"]
        for name, ms in t1_ms.items():
            note = "" if name == "T1 in-process compute" else _over(ms, loc)
            rows.append((name, ms, "one unary message" if "echo" in name else note))

        count = args.mib * MIB // 4
        big = rng.random((1, 1, count), dtype=np.float32)
        batch = big.reshape(args.mib, 1, count // args.mib)  # 1 MiB images
        one = np.ones((1, 1, 1), np.float32)
        for c in (plain, shm):
            if not np.array_equal(c.conv(big, one), big) or not np.array_equal(
                c.conv(batch, one), batch
            ):
                raise RuntimeError("large case: the result differs from the input")
        stream = channel.stream_stream(_STREAM)
        raw = big.tobytes()
        big_cases = {
            f"{args.mib} MiB in-process compute, 1 image": lambda: deconv_core.conv(big, one),
            f"{args.mib} MiB in-process compute, {args.mib} images": lambda: deconv_core.conv(
                batch, one
            ),
            f"{args.mib} MiB chunked, 1 image": lambda: plain.conv(big, one),
            f"{args.mib} MiB chunked, {args.mib} images (pipelined)": lambda: plain.conv(
                batch, one
            ),
            f"{args.mib} MiB shared memory, 1 image": lambda: shm.conv(big, one),
            f"{args.mib} MiB bare grpcio stream echo": lambda: _echo_stream(stream, raw, MIB),
        }
        big_ms = _rounds(big_cases, max(3, args.repeat))
        echoed = big_ms[f"{args.mib} MiB bare grpcio stream echo"]
        for name, ms in big_ms.items():
            note = f"{args.mib / ms * 1e3:.0f} MiB/s each way"
            if "in-process" in name:
                note = "the compute alone"
            elif "echo" not in name:
                note += f", {100 * echoed / ms:.0f} % of the bare echo's throughput"
            rows.append((name, ms, note))
    return rows


def _over(remote: float, local: float) -> str:
    return f"overhead {remote - local:.1f} ms = {100 * (remote - local) / local:.0f} % of compute"


if __name__ == "__main__":
    sys.exit(main())
