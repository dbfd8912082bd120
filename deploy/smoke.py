#!/usr/bin/env python3
"""Smoke-test a running deconv server (a container, a compose set, a pod) from outside.

    python deploy/smoke.py --target 127.0.0.1:50551
    python deploy/smoke.py --target ipv4:127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053

Through ``deconv_client`` it checks, in order: health is SERVING; GetServerInfo answers (and,
with ``--expect-threading-layer``, names that layer); a few transposed convolutions and one
convolution (1-D, 2-D, 3-D; float32 and float64; bias, groups, TF "same" output_shape) equal
``deconv_core`` computed locally; then ``--concurrency`` threads send ``--calls`` more calls at
once, all of which must succeed and match (the server's concurrent-load check). Exit status 0
when everything passed, 1 otherwise; one line per check on stdout.

The inputs are small integers stored as floats, so every sum is exact in float32 and float64
whatever the summation order: the server's result must equal the local one bit for bit.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from deconv_client import Client

import deconv_core


@dataclass(frozen=True)
class Case:
    """One call: the op, its arrays and keyword parameters."""

    name: str
    op: str  # "conv" or "conv_transpose"
    x: np.ndarray
    weight: np.ndarray
    bias: np.ndarray | None
    params: dict[str, Any] = field(default_factory=dict)

    def expected(self) -> np.ndarray:
        """The result computed locally by deconv_core."""
        fn = getattr(deconv_core, self.op)
        return fn(self.x, self.weight, self.bias, **self.params)

    def remote(self, client: Client) -> np.ndarray:
        """The result computed by the server."""
        fn = getattr(client, self.op)
        return fn(self.x, self.weight, self.bias, **self.params)


def _ints(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return rng.integers(-3, 4, size=shape).astype(dtype)


def make_cases(seed: int = 0) -> list[Case]:
    """The fixed smoke cases (exactly representable data, so results compare bit for bit).

    Parameters
    ----------
    seed : int
        Seed of the data generator; different seeds give different data, same shapes.

    Returns
    -------
    list of Case
    """
    rng = np.random.default_rng(seed)
    f32, f64 = np.float32, np.float64
    return [
        Case(
            "transposed 2-D float32, stride 2, pad 1, output_padding 1, bias",
            "conv_transpose",
            _ints(rng, (2, 4, 7, 6), f32),
            _ints(rng, (4, 3, 3, 3), f32),
            _ints(rng, (3,), f32),
            {"stride": 2, "padding": 1, "output_padding": 1},
        ),
        Case(
            "transposed 1-D float64, TF same, output_shape",
            "conv_transpose",
            _ints(rng, (1, 3, 9), f64),
            _ints(rng, (3, 2, 4), f64),
            None,
            {"stride": 3, "padding": "same", "output_shape": [27]},
        ),
        Case(
            "transposed 3-D float32, groups 2, dilation 2",
            "conv_transpose",
            _ints(rng, (1, 4, 3, 4, 3), f32),
            _ints(rng, (4, 1, 2, 2, 2), f32),
            _ints(rng, (2,), f32),
            {"stride": 1, "dilation": 2, "groups": 2},
        ),
        Case(
            "conv 2-D float64, stride 2, pad 1, bias",
            "conv",
            _ints(rng, (2, 3, 9, 8), f64),
            _ints(rng, (5, 3, 3, 3), f64),
            _ints(rng, (5,), f64),
            {"stride": 2, "padding": 1},
        ),
    ]


def _check(name: str, fn: Callable[[], str | None], failures: list[str]) -> None:
    """Run one check; print ``ok``/``FAIL`` with its detail; remember failures."""
    start = time.perf_counter()
    try:
        detail = fn() or ""
        ok = True
    except Exception as exc:  # any failure is reported, not raised
        detail = f"{type(exc).__name__}: {exc}"
        ok = False
    ms = (time.perf_counter() - start) * 1e3
    print(f"{'ok  ' if ok else 'FAIL'} {name} ({ms:.0f} ms){': ' + detail if detail else ''}")
    if not ok:
        failures.append(name)


def _same(got: np.ndarray, want: np.ndarray) -> None:
    if got.dtype != want.dtype or got.shape != want.shape:
        raise AssertionError(f"got {got.dtype}{got.shape}, want {want.dtype}{want.shape}")
    if not np.array_equal(got, want):
        diff = float(np.max(np.abs(got.astype(np.float64) - want)))
        raise AssertionError(f"values differ (max abs diff {diff:g})")


def run(target: str, *, timeout: float, calls: int, concurrency: int, layer: str | None) -> int:
    """Run every check against ``target``; return the process exit status.

    Parameters
    ----------
    target : str
        gRPC target: ``host:port``, or any target string the client accepts
        (``ipv4:a:p,b:q``, ``dns:///name:port``).
    timeout : float
        Deadline of each call, seconds.
    calls, concurrency : int
        The concurrent phase: ``calls`` calls spread over ``concurrency`` threads.
    layer : str or None
        Threading layer the server must report (None: not checked).

    Returns
    -------
    int
        0 when every check passed, else 1.
    """
    failures: list[str] = []
    client = Client(target, timeout=timeout)
    try:

        def health() -> str:
            status = client.health()
            if status != "SERVING":
                raise AssertionError(f"health is {status}")
            return status

        def info() -> str:
            reply = client.server_info()
            if layer is not None and reply.threading_layer != layer:
                raise AssertionError(f"threading layer {reply.threading_layer!r}, want {layer!r}")
            return (
                f"version {reply.version}, layer {reply.threading_layer}, "
                f"threads {reply.threads}, instance {reply.instance_id}"
            )

        _check("health SERVING", health, failures)
        if failures:  # nothing else can pass; fail fast instead of waiting out deadlines
            print("smoke: FAILED: health SERVING")
            return 1
        _check("GetServerInfo", info, failures)
        for case in make_cases():
            want = case.expected()
            _check(case.name, lambda c=case, w=want: _same(c.remote(client), w), failures)

        def concurrent() -> str:
            cases = [c for seed in range(3) for c in make_cases(seed + 1)]
            wants = [c.expected() for c in cases]

            def one(i: int) -> None:
                _same(cases[i % len(cases)].remote(client), wants[i % len(cases)])

            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                list(pool.map(one, range(calls)))
            return f"{calls} calls from {concurrency} threads matched"

        if calls > 0:
            _check("concurrent load", concurrent, failures)
    finally:
        client.close()
    print(f"smoke: {'PASSED' if not failures else 'FAILED: ' + ', '.join(failures)}")
    return 0 if not failures else 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description="Smoke-test a running deconv server.")
    parser.add_argument("--target", required=True, help="host:port or a gRPC target string")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-call deadline, s")
    parser.add_argument("--calls", type=int, default=48, help="calls in the concurrent phase")
    parser.add_argument("--concurrency", type=int, default=4, help="threads in that phase")
    parser.add_argument(
        "--expect-threading-layer",
        default=None,
        help="fail unless the server reports this Numba threading layer (e.g. omp)",
    )
    args = parser.parse_args(argv)
    return run(
        args.target,
        timeout=args.timeout,
        calls=args.calls,
        concurrency=args.concurrency,
        layer=args.expect_threading_layer,
    )


if __name__ == "__main__":
    sys.exit(main())
