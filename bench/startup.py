"""JIT start-up cost: ``deconv_core.warmup()`` in a process with an empty cache, then again.

Both runs are fresh subprocesses sharing one temporary ``NUMBA_CACHE_DIR``: the first compiles
every kernel (cold start, what a server pays without a warmed image), the second loads them from
the on-disk cache (what a server pays when the image was warmed at build time). Each reports the
``import deconv_core`` time, the warmup time and the whole process's wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

__all__ = ["measure_startup"]

_PROBE = """
import json, time
t0 = time.perf_counter()
import deconv_core
t1 = time.perf_counter()
reported = deconv_core.warmup()
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "warmup_s": t2 - t1,
                  "warmup_reported_s": reported if isinstance(reported, (int, float)) else None}))
"""


def _run_probe(env: dict[str, str], timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-2:]
        return {"error": f"exit {proc.returncode}: {' | '.join(tail)}", "process_s": wall}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in out.items()}


def measure_startup(threads: int = 2, timeout: float = 900.0) -> dict[str, Any]:
    """Time ``import deconv_core; deconv_core.warmup()`` cold (empty cache) and cached.

    Parameters
    ----------
    threads : int
        ``NUMBA_NUM_THREADS`` of the probes.
    timeout : float
        Seconds allowed per probe.

    Returns
    -------
    dict
        ``cold`` and ``cached``, each with ``import_s``, ``warmup_s``, ``warmup_reported_s``
        and ``process_s`` (or ``error``).
    """
    with tempfile.TemporaryDirectory(prefix="deconv-bench-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, NUMBA_NUM_THREADS=str(threads),
                   OMP_NUM_THREADS=str(threads))
        cold = _run_probe(env, timeout)
        cached = _run_probe(env, timeout) if "error" not in cold else {"error": "skipped"}
        n_files = sum(len(files) for _, _, files in os.walk(cache))
    return {"cold": cold, "cached": cached, "cache_files": n_files}
