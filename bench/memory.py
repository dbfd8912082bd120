"""Peak memory of one core call, measured as the rise of the process's resident high-water mark.

Why not tracemalloc: numba's runtime reports allocations made on the calling thread to
tracemalloc, but allocations made inside ``prange`` worker threads are invisible to it (checked:
a parallel kernel allocating 2 x 80 MB showed a traced peak of 0 MB), and BLAS buffers never
show. The kernel's own accounting sees everything: writing ``5`` to ``/proc/self/clear_refs``
resets ``VmHWM`` to the current RSS (Linux >= 4.0), so ``VmHWM - VmRSS_before`` after the call
is the call's peak extra memory (its output included). The measurement runs in a fresh
subprocess with a fixed glibc mmap threshold, so large blocks freed earlier cannot hide a new
peak by being reused from the heap. A calibration allocation of known size checks the method.

Run ``python -m bench.memory --cases T1,C1`` to print the JSON for those cases.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["hwm_reset_supported", "measure_memory", "peak_rss_delta_mib"]

_MIB = 1024 * 1024
_REPO = Path(__file__).resolve().parents[1]
METHOD = "VmHWM reset via /proc/self/clear_refs, fresh subprocess, MALLOC_MMAP_THRESHOLD_=128KiB"


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def hwm_reset_supported() -> bool:
    """True if this kernel lets a process reset its peak RSS (VmHWM)."""
    try:
        _reset_hwm()
        return _status_kib("VmHWM") <= _status_kib("VmRSS") + 64
    except OSError:
        return False


def peak_rss_delta_mib(fn: Callable[[], Any]) -> float:
    """Peak resident memory added while ``fn()`` runs, in MiB (its result kept until measured).

    Raises
    ------
    OSError
        If the peak RSS cannot be reset on this system.
    """
    gc.collect()
    _reset_hwm()
    base = _status_kib("VmRSS")
    result = fn()
    peak = _status_kib("VmHWM")
    del result
    return max(0, peak - base) / 1024


def _measure_here(case_ids: Sequence[str], threads: int, seed: int) -> dict[str, Any]:
    """Body of the subprocess: warm each case once, then measure one call."""
    from bench.environment import apply_thread_limits, preset_thread_env

    preset_thread_env(threads)
    from bench.backends import DeconvBackend
    from bench.cases import make_inputs, select_cases

    apply_thread_limits(threads)
    out: dict[str, Any] = {"method": METHOD, "cases": {}}
    if not hwm_reset_supported():
        out["error"] = "cannot reset VmHWM on this kernel"
        return out
    n = 64 * _MIB // 8
    out["calibration"] = {"allocated_mib": 64.0,
                          "measured_mib": round(peak_rss_delta_mib(lambda: np.ones(n)), 2)}
    backend = DeconvBackend()
    reason = backend.unavailable()
    for case in select_cases(list(case_ids)):
        if reason:
            out["cases"][case.id] = {"error": reason}
            continue
        x, w, b = make_inputs(case, seed)
        fn = backend.prepare(case, x, w, b)
        try:
            fn()  # compile or load kernels, create worker threads
            peak = peak_rss_delta_mib(fn)
        except Exception as exc:  # report, keep measuring the other cases
            out["cases"][case.id] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out["cases"][case.id] = {
            "peak_mib": round(peak, 2),
            "output_mib": round(np.prod(case.output_shape) * 4 / _MIB, 2),
            "inputs_mib": round((x.nbytes + w.nbytes + b.nbytes) / _MIB, 2),
        }
    return out


def measure_memory(case_ids: Sequence[str], threads: int = 2, seed: int = 0,
                   timeout: float = 900.0) -> dict[str, Any]:
    """Measure each case's peak extra memory in one fresh subprocess.

    Parameters
    ----------
    case_ids : sequence of str
        Ids from :data:`bench.cases.CASES`.
    threads : int
        Thread budget, as in the timing run.
    seed : int
        Input seed.
    timeout : float
        Seconds before the subprocess is abandoned.

    Returns
    -------
    dict
        ``method``, ``calibration`` and per-case ``peak_mib``/``output_mib``/``inputs_mib``
        (or ``error``).
    """
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(128 * 1024),
               PYTHONPATH=os.pathsep.join(filter(None, [str(_REPO),
                                                        os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "bench.memory", "--cases", ",".join(case_ids),
           "--threads", str(threads), "--seed", str(seed)]
    try:
        proc = subprocess.run(cmd, cwd=_REPO, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"method": METHOD, "error": f"timed out after {timeout:.0f} s", "cases": {}}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        return {"method": METHOD, "error": f"exit {proc.returncode}: {' | '.join(tail)}",
                "cases": {}}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    """CLI of the measuring subprocess: prints one JSON line."""
    ap = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    ap.add_argument("--cases", default="all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from bench.cases import select_cases

    ids = [c.id for c in select_cases(args.cases)]
    print(json.dumps(_measure_here(ids, args.threads, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
