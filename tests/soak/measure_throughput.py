"""Measure request+response throughput of a 64 MiB float32 tensor, unary vs chunked.

A script, not a test: ``.venv/bin/python tests/soak/measure_throughput.py [--mib 64]``.
It starts ``deconv-server`` in a subprocess (so client and server do not share a GIL) with a
message limit that lets the unary call through, then times the same 1x1 convolution
(weight 1: the computation is a copy, a few ms) sent as one unary message and over the chunked
RPC in 1 MiB messages. Throughput counts the input MiB per second of round trip (the same
number of bytes comes back). The best of ``--repeat`` runs is reported, with the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import grpc
import numpy as np
from deconv import codec
from deconv.v1 import deconv_pb2 as pb
from deconv.v1 import deconv_pb2_grpc as pb_grpc

MIB = 1 << 20


def start_server(limit: int) -> tuple[subprocess.Popen[str], str]:
    """deconv-server on a free port; returns the process and its host:port."""
    env = dict(os.environ)
    env.update(
        DECONV_MAX_MESSAGE_BYTES=str(limit),
        DECONV_MAX_TENSOR_ELEMENTS=str(1 << 28),
        DECONV_MAX_OUTPUT_ELEMENTS=str(1 << 28),
        DECONV_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "deconv_server", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[-1].strip()


def wait_serving(stub: pb_grpc.DeconvStub) -> None:
    for _ in range(600):
        try:
            if stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=5).warm:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.5)
    raise SystemExit("server never became warm")


def chunks(request: pb.ConvRequest, data: bytes, step: int) -> Iterator[pb.ConvRequestChunk]:
    yield pb.ConvRequestChunk(request=request, response_chunk_bytes=step)
    view = memoryview(data)
    for start in range(0, len(view), step):
        yield pb.ConvRequestChunk(data=bytes(view[start : start + step]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="tensor size in MiB (default 64)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per mode (default 5)")
    args = parser.parse_args()
    nbytes = args.mib * MIB
    limit = 2 * nbytes + MIB
    x = np.arange(nbytes // 4, dtype=np.float32).reshape(1, 1, 1024, -1)
    w = np.ones((1, 1, 1, 1), np.float32)
    proc, target = start_server(limit)
    opts = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
    try:
        with grpc.insecure_channel(target, options=opts) as channel:
            stub = pb_grpc.DeconvStub(channel)
            wait_serving(stub)
            unary_req = pb.ConvRequest(input=codec.encode(x), weight=codec.encode(w))
            header = pb.ConvRequest(
                input=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=x.shape), weight=codec.encode(w)
            )
            data = x.tobytes()

            def unary() -> np.ndarray:
                return codec.decode(stub.Conv(unary_req, timeout=300).output)

            def chunked() -> np.ndarray:
                parts = list(stub.ConvChunked(chunks(header, data, MIB), timeout=300))
                raw = b"".join(p.data for p in parts[1:])
                return codec.decode(parts[0].header, data=raw)

            results = {}
            for name, fn in (("unary", unary), ("chunked", chunked)):
                np.testing.assert_array_equal(fn(), x)  # warm-up run, checked
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
                results[name] = times
            t0 = time.perf_counter()
            stub.Conv(pb.ConvRequest(input=codec.encode(x[..., :8]), weight=unary_req.weight))
            small = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"{args.mib} MiB float32 in, {args.mib} MiB out; 1x1 conv; {args.repeat} runs each")
    for name, times in results.items():
        best, median = min(times), statistics.median(times)
        print(
            f"  {name:8s} best {best * 1e3:7.0f} ms = {args.mib / best:6.0f} MiB/s   "
            f"median {median * 1e3:7.0f} ms = {args.mib / median:6.0f} MiB/s"
        )
    print(f"  (a tiny call takes {small * 1e3:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
