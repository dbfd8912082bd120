"""Command line of the benchmark: ``python -m bench [--cases T1,C1] [--quick] [--json PATH]``.

Sets one thread budget (default 2) for numba, BLAS, PyTorch and onnxruntime, measures the
machine's FP32 matmul peak, times the cases of bench/cases.py on deconv_core and on every
installed competitor, then measures each case's peak memory and the JIT start-up cost in
subprocesses, prints a table and writes JSON (default ``bench/results/latest.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.environment import preset_thread_env

__all__ = ["DEFAULT_JSON", "main", "parse_args"]

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see ``python -m bench --help``)."""
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="all", help="comma-separated case ids (default: all)")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per backend (median)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    ap.add_argument("--quick", action="store_true", help="3 timed runs, 1 warm-up")
    ap.add_argument("--threads", type=int, default=2, help="thread budget for every library")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the JSON")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    ap.add_argument("--no-ort", action="store_true", help="do not time onnxruntime")
    ref = ap.add_mutually_exclusive_group()
    ref.add_argument("--reference", action="store_true",
                     help="also check deconv against the float64 numpy oracle on every case "
                          "(default: only when no competitor ran)")
    ref.add_argument("--no-reference", action="store_true", help="never run the numpy oracle")
    ap.add_argument("--no-peak", action="store_true", help="skip the FP32 matmul peak")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocess")
    ap.add_argument("--prepared-weights", action="store_true",
                    help="deconv plans each case once and keeps its weight's kernel-ready form "
                         "(deconv_core.prepare_weight), as onnxruntime prepacks initializers")
    ap.add_argument("--no-startup", action="store_true",
                    help="skip the cold/cached JIT start-up subprocesses")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat, args.warmup = 3, 1
    if args.repeat < 1 or args.warmup < 0 or args.threads < 1:
        ap.error("--repeat and --threads must be >= 1, --warmup >= 0")
    return args


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if deconv gave a wrong result, else 0."""
    args = parse_args(argv)
    preset_thread_env(args.threads)  # before numba or torch are imported

    from bench.backends import default_backends
    from bench.cases import select_cases
    from bench.environment import apply_thread_limits, blas_info, fp32_peak, host_info
    from bench.report import format_report, write_json
    from bench.runner import run_benchmark

    try:
        cases = select_cases(args.cases)
    except ValueError as exc:
        _log(f"error: {exc}")
        return 2
    backends = default_backends(args.threads, torch=not args.no_torch, ort=not args.no_ort,
                                prepared_weights=args.prepared_weights)
    for b in backends:  # imports torch/onnxruntime now, so the limits below reach their pools
        reason = b.unavailable()
        _log(f"backend {b.name}: {'skipped, ' + reason if reason else 'ok'}")
    threads_info = apply_thread_limits(args.threads)
    blas = blas_info()
    for lib in blas:
        _log(f"threadpool: {lib.get('internal_api')} {lib.get('version')} "
             f"kernel={lib.get('architecture', '-')} threads={lib.get('num_threads')} "
             f"[{Path(lib.get('filepath') or '-').name}]")

    report: dict[str, Any] = {
        "schema": 1,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "threads": args.threads, "thread_setup": threads_info,
        "host": host_info(), "blas": blas,
    }
    if not args.no_peak:
        _log("measuring FP32 matmul peak ...")
        report["fp32_peak"] = fp32_peak(n=1536 if args.quick else 2048,
                                        repeat=3 if args.quick else 5)
    if any(b.name == "deconv" and not b.unavailable() for b in backends):
        import deconv_core

        # as the server runs (after the peak, which is numpy's 2-thread matmul): numpy's BLAS is
        # used by deconv only, one thread per core worker; torch and onnxruntime have their own
        deconv_core.keep_blas_single_threaded()
        report["settings_blas"] = "numpy's BLAS kept at one thread, as the server runs it"
    reference: bool | str = False if args.no_reference else (True if args.reference else "auto")
    f64 = None
    if any(b.name == "torch" and not b.unavailable() for b in backends):
        from bench.backends import torch_float64 as f64
    report.update(run_benchmark(cases, backends, repeat=args.repeat, warmup=args.warmup,
                                seed=args.seed, reference=reference, progress=_log,
                                f64_reference=f64))
    report["settings"]["deconv_weights"] = (
        "prepared once per case" if args.prepared_weights else "transformed on every call"
    )
    report["loadavg_after_timing"] = os.getloadavg()
    try:  # after the run, so the threading layer is known
        import deconv_core

        report["runtime_info"] = deconv_core.runtime_info()
    except Exception as exc:  # the report still says why deconv was skipped
        _log(f"deconv_core.runtime_info failed: {exc}")
    if not args.no_memory:
        from bench.memory import measure_memory

        _log("measuring peak memory per case (subprocess) ...")
        report["memory"] = measure_memory([c.id for c in cases], args.threads, args.seed)
    if not args.no_startup:
        from bench.startup import measure_startup

        _log("measuring JIT cold and cached start-up (subprocesses) ...")
        report["startup"] = measure_startup(args.threads)
    path = write_json(report, args.json)
    print(format_report(report))
    print(f"JSON written to {path}")
    return 1 if report["summary"]["wrong"] else 0
