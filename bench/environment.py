"""Thread budget, BLAS report, timing loop and the machine's practical FP32 peak.

One thread budget for everybody: ``NUMBA_NUM_THREADS``/``OMP_NUM_THREADS`` are set before numba
or torch load (``preset_thread_env``), then ``apply_thread_limits`` calls
``numba.set_num_threads`` and caps every BLAS/OpenMP pool threadpoolctl can see (call it after
torch and onnxruntime are imported, so their pools are capped too).
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "apply_thread_limits",
    "blas_info",
    "fp32_peak",
    "host_info",
    "preset_thread_env",
    "time_callable",
]

_LIMITERS: list[Any] = []  # keep threadpoolctl limiters alive for the whole run


def preset_thread_env(threads: int) -> None:
    """Set the thread-count environment variables; effective only before numba/torch import."""
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(threads)


def apply_thread_limits(threads: int) -> dict[str, Any]:
    """Give numba and every BLAS/OpenMP pool the same thread budget.

    Returns
    -------
    dict
        ``numba_threads`` actually set, and the numba threading layer if known.
    """
    out: dict[str, Any] = {}
    try:
        import numba

        n = min(threads, numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(n)
        out["numba_threads"] = n
        out["numba_max_threads"] = numba.config.NUMBA_NUM_THREADS
    except ImportError:  # pragma: no cover - numba is a server dependency
        out["numba_threads"] = None
    try:
        from threadpoolctl import threadpool_limits

        _LIMITERS.append(threadpool_limits(limits=threads))
    except ImportError:  # pragma: no cover
        out["threadpoolctl"] = "not installed"
    return out


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries (kernel, version, threads)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover
        return []
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads",
            "threading_layer", "filepath")
    return [{k: lib.get(k) for k in keep if k in lib} for lib in threadpool_info()]


#: Environment variables that decide how idle OpenMP and BLAS worker threads wait.
WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OPENBLAS_THREAD_TIMEOUT",
             "GOTO_THREAD_TIMEOUT")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def host_info() -> dict[str, Any]:
    """Machine, interpreter and library versions, SIMD level, BLAS and thread-wait settings.

    ``wait`` holds the thread-wait variables (:data:`WAIT_VARS`) as this process sees them
    (``deconv_core`` sets ``OMP_WAIT_POLICY=PASSIVE`` at import unless already set: the setting
    the server runs with, and the one every library in this process then shares).
    """
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = _cpu_flags()
    simd = next((name for name, flag in (("AVX-512", "avx512f"), ("AVX2", "avx2"),
                                         ("AVX", "avx")) if flag in flags), "none/unknown")
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                       "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                       "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")
           if k in os.environ}
    wait = {k: os.environ.get(k, "unset") for k in WAIT_VARS}
    from deconv_core import _threads  # after the thread limits are set

    return {"cpu": cpu, "simd": simd, "cores": os.cpu_count(), "loadavg_1_5_15": os.getloadavg(),
            "python": platform.python_version(), "platform": platform.platform(),
            "numpy": np.__version__, "env": env, "wait": wait,
            "workers_pinned": _threads.workers_pinned()}


def time_callable(fn: Callable[[], Any], *, repeat: int = 7, warmup: int = 2) -> dict[str, Any]:
    """Median wall time of ``fn()`` over ``repeat`` runs after ``warmup`` untimed runs.

    Garbage collection is paused while timing; every run is timed with ``time.perf_counter``.

    Returns
    -------
    dict
        ``median_ms``, ``min_ms``, ``max_ms`` and the individual ``times_ms``.
    """
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    for _ in range(warmup):
        fn()
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    times = []
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    finally:
        if was_enabled:
            gc.enable()
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "times_ms": [round(t, 4) for t in times]}


def fp32_peak(n: int = 2048, repeat: int = 5) -> dict[str, Any]:
    """Practical FP32 peak: GFLOP/s of an ``n x n`` float32 numpy matmul (BLAS).

    Run after :func:`apply_thread_limits` so BLAS uses the benchmark's thread budget.

    Returns
    -------
    dict
        ``n``, ``median_ms``, ``gflops_median`` and ``gflops_best`` (best run).
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    t = time_callable(lambda: np.matmul(a, b, out=c), repeat=repeat, warmup=1)
    flop = 2.0 * n**3
    return {"n": n, "median_ms": t["median_ms"],
            "gflops_median": flop / (t["median_ms"] * 1e6),
            "gflops_best": flop / (t["min_ms"] * 1e6)}
