"""Process-level runtime: kernel warm-up, thread budget and a report of what is loaded."""

from __future__ import annotations

import time
from typing import Any

import numba
import numpy as np

from deconv_core import _engine, _threads
from deconv_core.plan import execute, plan_conv, plan_conv_transpose

__all__ = ["keep_blas_single_threaded", "runtime_info", "set_num_threads", "warmup"]

_WARM_DTYPES = (np.float32, np.float64)


def warmup() -> float:
    """Compile (or load from Numba's cache) every kernel for float32 and float64.

    Every route of each op runs once on a tiny plan, through the same :func:`execute` path as a
    real call.

    Returns
    -------
    float
        Seconds taken.
    """
    start = time.perf_counter()
    for dtype in _WARM_DTYPES:
        x = np.ones((1, 2, 3, 3), dtype)
        w = np.ones((2, 2, 2, 2), dtype)
        b = np.zeros(2, dtype)
        shapes = dict(input_shape=x.shape, weight_shape=w.shape, bias_shape=b.shape, dtype=dtype)
        plans = (
            plan_conv(**shapes, padding=1),
            plan_conv_transpose(**shapes, stride=2, padding=1),
        )
        for plan in plans:
            for route in _engine.ROUTES[plan.op]:
                if _engine.route_applies(route, plan.geometry):
                    execute(plan.with_route(route), x, w, b)
        # One output plane: the direct conv splits its rows (when there are several threads).
        mono = plan_conv((1, 1, 3, 3), (1, 1, 2, 2), (1,), dtype=dtype)
        execute(mono.with_route("direct"), x[:, :1], w[:1, :1], b[:1])
        # Winograd (stride 1 and 2) needs a 3x3 kernel and 4 channels per group (float64 runs its
        # exact fallback).
        xw, ww, bw = np.ones((1, 4, 4, 4), dtype), np.ones((4, 4, 3, 3), dtype), np.zeros(4, dtype)
        winograd = plan_conv(xw.shape, ww.shape, bw.shape, dtype=dtype, padding=1)
        execute(winograd.with_route("winograd"), xw, ww, bw)
        strided = plan_conv(xw.shape, ww.shape, bw.shape, dtype=dtype, stride=2, padding=1)
        execute(strided.with_route("winograd"), xw, ww, bw)
    return time.perf_counter() - start


def keep_blas_single_threaded() -> None:
    """Leave the BLAS library at one thread for the rest of the process.

    deconv's routes call BLAS single-threaded on each of their worker threads, and by default
    limit BLAS to one thread around every call and restore it afterwards, so that the caller's
    own BLAS calls keep their threads. A process that uses BLAS for nothing else (the server
    does this at start-up) can skip that per-call cost: 0.03 ms back to back, about 0.2 ms
    after an idle pause. From then on :func:`set_num_threads` leaves BLAS at one thread.
    """
    _threads.keep_blas_single_threaded()


def set_num_threads(n: int) -> None:
    """Give Numba and the BLAS library one shared thread budget of ``n`` threads.

    Once :func:`keep_blas_single_threaded` has run, BLAS stays at one thread.

    Parameters
    ----------
    n : int
        Threads for both; at most Numba's ``NUMBA_NUM_THREADS``.
    """
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl is optional for the core
        return
    threadpool_limits(limits=1 if _threads.blas_kept_single_threaded() else n, user_api="blas")


def runtime_info() -> dict[str, Any]:
    """What the core runs on: versions, threading layer, thread counts, worker pinning, BLAS.

    Returns
    -------
    dict
        JSON-friendly facts for logs and ``GetServerInfo``.
    """
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = "not initialised"
    info: dict[str, Any] = {
        "numba_version": numba.__version__,
        "numpy_version": np.__version__,
        "threading_layer": layer,
        "configured_threading_layer": numba.config.THREADING_LAYER,
        "num_threads": numba.get_num_threads(),
        "max_threads": numba.config.NUMBA_NUM_THREADS,
        # one core worker pinned per CPU (when the process owns at most num_threads CPUs)
        "workers_pinned": _threads.workers_pinned(),
        # BLAS left at one thread for the process (keep_blas_single_threaded: the server)
        "blas_kept_single_threaded": _threads.blas_kept_single_threaded(),
    }
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return info
    info["blas"] = [
        {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]
    return info
