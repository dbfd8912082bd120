"""The compute core behind the event loop: one thread, batch slices, time limits, cancellation.

Numba's parallel region is not safe for two callers at once, and each call already uses every
core, so every deconv_core call of the process runs on :data:`CORE_EXECUTOR`'s one thread, under
:data:`CORE_LOCK` (tests and warm-up hold it too). The event loop never blocks on the core: an
RPC awaits its job.

A call is cut into slices of its batch, each estimated (from the plan's FLOPs and its route's
throughput) to take at most :data:`SLICE_SECONDS`; between slices the job checks a flag that the
RPC sets when its caller cancels or its deadline passes, so a long computation stops within a
slice of the cancel instead of running to the end. :func:`estimate_seconds` also lets the server
refuse, before anything is decoded, a call that would hold the core longer than its time limit.

Tiny calls (:data:`INLINE_MAX_FLOPS`) skip the core thread: :func:`try_inline` computes them on
the calling thread (the event loop's), single-threaded, when the core is free at that moment and
every kernel is compiled (:func:`warm_kernels` has run); otherwise they queue like any call, so
the loop never waits for the lock or for a compile.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numba
import numpy as np

import deconv_core

__all__ = [
    "CORE_EXECUTOR",
    "CORE_LOCK",
    "INLINE_MAX_FLOPS",
    "KERNELS_COMPILED",
    "SLICE_SECONDS",
    "CancelledJobError",
    "Job",
    "Task",
    "estimate_seconds",
    "limit_malloc_arenas",
    "max_slices",
    "queued",
    "release_freed_memory",
    "slice_plan",
    "submit",
    "try_inline",
    "warm_kernels",
]

#: Serialises every deconv_core call of the process (warm-up included).
CORE_LOCK = threading.Lock()
#: The one thread that runs the core.
CORE_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deconv-core")
#: Longest a batch slice should compute before the job checks for a cancel.
SLICE_SECONDS = 0.25
#: Jobs of at most this many FLOPs run inline (:func:`try_inline`): tens of microseconds of
#: serial compute instead of two thread hand-offs and an OpenMP wake-up (the tiny call of
#: ``bench/rpc_latency.py``, 1x1x8x8 by 4x4: p50 3.88 -> 3.45 ms on this 2-core VM, interleaved).
INLINE_MAX_FLOPS = 1 << 17
#: Set once :func:`warm_kernels` has compiled every kernel in this process.
KERNELS_COMPILED = threading.Event()

#: Conservative sustained throughput per route on a 2-core machine, FLOP/s (the slowest
#: measured on the benchmark cases, halved). Unknown (new) routes use the direct figure.
_ROUTE_FLOPS = {
    "direct": 2e9,
    "patch": 10e9,
    "phase": 10e9,
    "gemm": 20e9,
    "flip": 20e9,
    "winograd": 25e9,
}
#: Fixed cost of one core call (array preparation, thread hand-offs), seconds.
_CALL_SECONDS = 2e-4
#: Results at least this large return freed heap pages to the OS after the call.
_TRIM_BYTES = 64 * 1024 * 1024


class CancelledJobError(Exception):
    """The job's caller left (cancel or deadline) before it finished; nothing is returned."""


def estimate_seconds(plan: deconv_core.Plan) -> float:
    """Seconds the core needs for ``plan``, a conservative estimate from its route.

    Parameters
    ----------
    plan : deconv_core.Plan

    Returns
    -------
    float
    """
    rate = _ROUTE_FLOPS.get(plan.route, _ROUTE_FLOPS["direct"])
    return _CALL_SECONDS + plan.flops / rate


def _batch_axis_slices(plan: deconv_core.Plan) -> list[tuple[int, int]]:
    """Batch ranges ``(b0, b1)`` of about :data:`SLICE_SECONDS` of work each."""
    batch = plan.geometry.batch
    if batch <= 1:
        return [(0, batch)]
    per_image = max(estimate_seconds(plan) / batch, 1e-9)
    step = max(1, min(batch, int(SLICE_SECONDS / per_image)))
    return [(b0, min(batch, b0 + step)) for b0 in range(0, batch, step)]


def slice_plan(plan: deconv_core.Plan, n: int) -> deconv_core.Plan:
    """``plan`` for ``n`` images of its batch (same route; the batch is axis 0 in every layout).

    The route is the one the planner would choose for ``n`` images too (the dispatcher weighs
    work per image, ``deconv_core._engine.choose_route``), and every route cuts its work from one
    image's geometry, so slices compute the same bits as the whole batch. The kernel geometry
    (fill-padded convs, windows before the full result) is sliced with the geometry: the engine
    sizes its arrays from it.
    """
    if n == plan.geometry.batch:
        return plan
    kernel = plan.kernel_geometry
    return dataclasses.replace(
        plan,
        geometry=dataclasses.replace(plan.geometry, batch=n),
        input_shape=(n, *plan.input_shape[1:]),
        output_shape=(n, *plan.output_shape[1:]),
        kernel_geometry=None if kernel is None else dataclasses.replace(kernel, batch=n),
    )


@dataclasses.dataclass
class Job:
    """One call's work on the core, and the flag its RPC raises to stop it.

    Attributes
    ----------
    plan : deconv_core.Plan
    arrays : tuple
        ``(x, weight, bias)`` as decoded (bias may be None).
    cancelled : threading.Event
        Set by the RPC when its caller leaves; checked before each batch slice.
    core_seconds : float
        Time the job held the core, filled in when it ends.
    """

    plan: deconv_core.Plan
    arrays: tuple[Any, ...]
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)
    core_seconds: float = 0.0
    #: Where the weight's kernel-ready form is kept (a WeightCache) and the weight's digest
    #: there: set for calls that name a cached weight, so the form is made once per weight.
    weights: Any = None
    digest: bytes = b""

    def run(self, lock: Any = CORE_LOCK) -> np.ndarray:
        """Compute the plan slice by slice under ``lock``; on the core thread.

        Raises
        ------
        CancelledJobError
            The flag was set before or between slices.
        """
        _queue.left()
        if self.cancelled.is_set():
            self.arrays = ()
            raise CancelledJobError
        with lock:
            y = self._compute()
        if y.nbytes >= _TRIM_BYTES:
            release_freed_memory()
        return y

    def _compute(self) -> np.ndarray:
        """The plan's result, slice by slice; the caller holds the core lock."""
        x, w, b = self.arrays
        plan = self.plan
        start = time.perf_counter()
        try:
            ready = None
            if self.weights is not None and self.digest:
                ready = self.weights.prepared(self.digest, plan, w)
            slices = _batch_axis_slices(plan)
            if len(slices) == 1:
                return deconv_core.execute(plan, x, w, b, prepared=ready)
            y = np.empty(plan.output_shape, dtype=x.dtype)
            for b0, b1 in slices:
                if self.cancelled.is_set():
                    raise CancelledJobError
                part = slice_plan(plan, b1 - b0)
                y[b0:b1] = deconv_core.execute(part, x[b0:b1], w, b, prepared=ready)
            return y
        finally:
            self.core_seconds = time.perf_counter() - start
            self.arrays = ()  # the request's buffers can go as soon as the core is done


@dataclasses.dataclass
class Task:
    """Any function to run on the core thread, with the flag its RPC raises to stop it.

    Attributes
    ----------
    fn : callable
        ``fn(cancelled)``; long computations should check ``cancelled`` as they go.
    cancelled : threading.Event
    """

    fn: Any
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)

    def run(self, lock: Any = CORE_LOCK) -> Any:
        """Call ``fn`` under ``lock`` on the core thread (nothing when already cancelled)."""
        _queue.left()
        if self.cancelled.is_set():
            raise CancelledJobError
        with lock:
            return self.fn(self.cancelled)


def warm_kernels(lock: Any = CORE_LOCK) -> float:
    """Compile (or load) every kernel under ``lock``; from then on tiny jobs may run inline.

    Returns
    -------
    float
        Seconds taken.
    """
    with lock:
        seconds = deconv_core.warmup()
    KERNELS_COMPILED.set()
    return seconds


def try_inline(job: Job, lock: Any = CORE_LOCK) -> np.ndarray | None:
    """``job``'s result computed on the calling thread, or None to queue it instead.

    Only a job of at most :data:`INLINE_MAX_FLOPS`, once every kernel is compiled, and only when
    ``lock`` is free at once (never waited for): the caller is the event loop.
    """
    if job.plan.flops > INLINE_MAX_FLOPS or not KERNELS_COMPILED.is_set():
        return None
    if job.cancelled.is_set() or not lock.acquire(blocking=False):
        return None
    try:
        threads = numba.get_num_threads()  # per thread in Numba: the core thread keeps its own
        numba.set_num_threads(1)  # a parallel region would only wake OpenMP's workers
        try:
            return job._compute()
        finally:
            numba.set_num_threads(threads)
    finally:
        lock.release()


def submit(job: Job | Task, lock: Any = CORE_LOCK) -> Future[Any]:
    """Queue ``job`` on the core thread.

    Parameters
    ----------
    job : Job
    lock : lock-like
        What the job holds while it computes (a metered wrapper of :data:`CORE_LOCK`).

    Returns
    -------
    concurrent.futures.Future
    """
    _queue.joined()
    future = CORE_EXECUTOR.submit(job.run, lock)
    # A job cancelled before it started never runs (and never leaves the queue by itself).
    future.add_done_callback(lambda f: _queue.left() if f.cancelled() else None)
    return future


class _Queue:
    """Jobs submitted to the core thread and not yet started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def joined(self) -> None:
        with self._lock:
            self.count += 1

    def left(self) -> None:
        with self._lock:
            self.count -= 1


_queue = _Queue()


def queued() -> int:
    """Jobs waiting for the core thread (process-wide)."""
    return _queue.count


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _libc()
#: glibc's mallopt parameter number of M_ARENA_MAX.
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas, so freed tensor memory is reused instead of parked per thread.

    Returns
    -------
    bool
        False where the C library has no ``mallopt`` (not glibc).
    """
    fn = getattr(_LIBC, "mallopt", None)
    return bool(fn is not None and fn(_M_ARENA_MAX, arenas))


def release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``; no-op elsewhere)."""
    fn = getattr(_LIBC, "malloc_trim", None)
    if fn is not None:
        fn(0)


def max_slices(plan: deconv_core.Plan) -> int:
    """How many batch slices :meth:`Job.run` cuts ``plan`` into (for tests and logs)."""
    return len(_batch_axis_slices(plan))
