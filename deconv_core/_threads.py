"""One thread budget for Numba and BLAS, and the core's own workers that use it.

OpenBLAS's own worker threads keep spinning after a GEMM and slow the Numba ``prange`` that
follows (and Numba's OpenMP workers spin after a ``prange`` and slow the next GEMM). So the
BLAS routes run BLAS single-threaded and deal their work to ``numba.get_num_threads()`` worker
threads of this module (:func:`run_parts`: the gemm, phase and Winograd routes, whose items pair
single-threaded BLAS calls with serial ``nogil`` Numba kernels on disjoint outputs; and
:func:`matmul`, a GEMM split by rows, for the patch route). Each worker is pinned to its own CPU
where the process owns its CPUs (see ``_Workers``: after an idle pause Linux had put two
threads on one core, and T1 ran 1.4-1.9x slower). Only the ``prange`` kernels (direct, the
patch scatter) use Numba's OpenMP workers, told to sleep when idle (``OMP_WAIT_POLICY=PASSIVE``,
set by ``deconv_core`` before Numba's OpenMP starts, unless the environment already chooses),
so OpenMP's and OpenBLAS's spin settings (``GOMP_SPINCOUNT``, ``OPENBLAS_THREAD_TIMEOUT``) only
touch those. These are the settings the server runs with; ``python -m bench`` prints them.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import TypeVar

import numba
import numpy as np

__all__ = [
    "blas_kept_single_threaded",
    "blas_single_threaded",
    "keep_blas_single_threaded",
    "matmul",
    "run_parts",
    "workers_pinned",
]

T = TypeVar("T")

#: GEMMs smaller than this many multiply-accumulates run on one thread (no pool hand-off).
SPLIT_MIN_MACS = 1 << 22

_lock = threading.Lock()
_workers: _Workers | None = None
_controller = None
_blas_kept_single = False


def _pinned_cpus(n: int) -> list[int] | None:
    """The CPUs the ``n`` workers are pinned to, one each, or None to leave them unpinned.

    Pinned only when the process may run on at most ``n`` CPUs (it owns them: a 2-core machine,
    a container with a cpuset), never on a larger shared set, where a pinned worker could not
    leave a CPU another process keeps busy.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity API (not Linux)
        return None
    return cpus if 1 < len(cpus) <= n else None


class _Workers:
    """``n`` daemon threads with one queue each; worker ``i`` runs the ``i``-th job of a batch.

    Why not a ThreadPoolExecutor with the caller doing one share: after the machine has been
    idle (a server between requests), Linux wakes a sleeping thread on the waker's CPU, and the
    two threads then shared one core for tens of milliseconds (T1's GEMMs ran at one core's
    speed: 37 ms instead of 19 with a 100 ms pause before each call). So each worker is pinned
    to its own CPU where the process owns its CPUs (:func:`_pinned_cpus`), every share of the
    work runs on a worker, and the caller only waits.
    """

    def __init__(self, n: int) -> None:
        self.size = n
        self._queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(n)]
        cpus = _pinned_cpus(n)
        started: list[Future] = []
        for i, q in enumerate(self._queues):
            cpu = None if cpus is None else cpus[i % len(cpus)]
            pinned: Future = Future()
            threading.Thread(
                target=self._serve, args=(q, cpu, pinned), name=f"deconv-core-{i}", daemon=True
            ).start()
            started.append(pinned)
        #: Whether every worker runs pinned to its own CPU (False where the system refused).
        self.pinned = cpus is not None and all(f.result(timeout=10) for f in started)

    @staticmethod
    def _serve(q: queue.SimpleQueue, cpu: int | None, pinned: Future) -> None:
        ok = False
        if cpu is not None:
            try:
                os.sched_setaffinity(0, {cpu})
                ok = True
            except OSError:  # a sandbox may refuse it: run unpinned
                pass
        pinned.set_result(ok)
        while True:
            job, future = q.get()
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the caller, which re-raises it
                future.set_exception(exc)

    def run(self, jobs: list[Callable[[], object]]) -> None:
        """Run ``jobs[i]`` on worker ``i`` (at most ``size`` jobs); wait for every one, then
        re-raise the first error (no job is still writing its outputs when this returns)."""
        if len(jobs) > self.size:
            raise ValueError(f"{len(jobs)} jobs for {self.size} workers")
        futures: list[Future] = []
        for q, job in zip(self._queues, jobs, strict=False):
            future: Future = Future()
            q.put((job, future))
            futures.append(future)
        errors = [f.exception() for f in futures]  # waits for each
        for error in errors:
            if error is not None:
                raise error


def _pool(n: int) -> _Workers:
    global _workers
    with _lock:
        if _workers is None or _workers.size < n:
            _workers = _Workers(n)  # an old, smaller set of workers stays idle
        return _workers


def _forget_workers() -> None:
    """In a forked child: the parent's worker threads do not exist there, start afresh."""
    global _workers, _lock
    _workers = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def workers_pinned() -> bool:
    """Whether the core's worker threads are pinned, one per CPU (see :func:`_pinned_cpus`)."""
    return _pool(numba.get_num_threads()).pinned


def keep_blas_single_threaded() -> None:
    """Set the BLAS library to one thread for the rest of the process.

    The core only ever calls BLAS single-threaded, one call per worker, so a process that
    uses BLAS for nothing else (the server) can leave it there: :func:`blas_single_threaded`
    then costs nothing (limiting and restoring measured 0.03 ms per call back to back, 0.18 ms
    after a 50 ms pause). No-op without threadpoolctl.
    """
    global _blas_kept_single, _controller
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return
    with _lock:
        if _controller is None:
            _controller = ThreadpoolController()
        _controller.limit(limits=1, user_api="blas")  # kept: never restored
        _blas_kept_single = True


def blas_kept_single_threaded() -> bool:
    """Whether :func:`keep_blas_single_threaded` has run in this process."""
    return _blas_kept_single


@contextlib.contextmanager
def blas_single_threaded() -> Iterator[None]:
    """Limit the BLAS library to one thread inside the block (no-op without threadpoolctl, or
    once :func:`keep_blas_single_threaded` has run)."""
    global _controller
    if _blas_kept_single:
        yield
        return
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        yield
        return
    if _controller is None:
        _controller = ThreadpoolController()
    with _controller.limit(limits=1, user_api="blas"):
        yield


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for stacks ``(G, M, K) @ (G, K, N)``, rows of ``a`` split over the budget.

    Parameters
    ----------
    a, b : ndarray
        Operands as for :func:`numpy.matmul` with three dims (views are fine: BLAS reads
        transposed operands without copies).

    Returns
    -------
    ndarray
        ``(G, M, N)``, C-contiguous.
    """
    G, M, K = a.shape
    N = b.shape[2]
    out = np.empty((G, M, N), dtype=np.result_type(a, b))
    n = numba.get_num_threads()
    if n == 1 or G * M * K * N < SPLIT_MIN_MACS or M < 2 * n:
        np.matmul(a, b, out=out)
        return out
    bounds = [M * i // n for i in range(n + 1)]
    _pool(n).run([
        functools.partial(np.matmul, a[:, lo:hi], b, out=out[:, lo:hi])
        for lo, hi in itertools.pairwise(bounds)
    ])  # fmt: skip
    return out


def _pull(items: list[T], counter: Iterator[int]) -> Iterator[T]:
    """The items a worker takes, one at a time, from a counter shared by all workers."""
    while True:
        i = next(counter)  # itertools.count: atomic under the GIL
        if i >= len(items):
            return
        yield items[i]


def run_parts(work: Callable[[Iterable[T]], None], items: list[T]) -> None:
    """Call ``work`` once per budgeted thread; the calls share ``items``, each taking the next one
    when it is done with its last.

    Dynamic, not round-robin: on this shared 2-core machine a core is often busy with another
    process for a while, and a fixed share made the whole call wait for the slow worker.

    Parameters
    ----------
    work : callable
        Processes an iterable of items (allocating its scratch once per call); must write
        disjoint outputs (the calls run concurrently).
    items : list
        Work items, taken in order.
    """
    n = min(numba.get_num_threads(), len(items))
    if n <= 1:
        work(items)
        return
    counter = itertools.count()
    _pool(n).run([functools.partial(work, _pull(items, counter)) for _ in range(n)])
