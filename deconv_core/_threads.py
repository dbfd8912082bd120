"""One thread budget for Numba and BLAS, and a GEMM that uses it without spinning pools.

OpenBLAS's own worker threads keep spinning after a GEMM and slow the Numba ``prange`` that
follows (and Numba's OpenMP workers spin after a ``prange`` and slow the next GEMM). So the
GEMM routes run BLAS single-threaded and split each GEMM by rows over a small pool of Python
threads (numpy releases the GIL inside matmul); Numba's workers are told to sleep when idle
(``OMP_WAIT_POLICY=PASSIVE``, set by ``deconv_core`` before Numba's OpenMP starts, unless the
environment already chooses). Both use ``numba.get_num_threads()`` threads.

The other compute routes (phase, winograd) deal cache-sized work items to the same pool with
:func:`run_parts`; each worker runs serial Numba kernels (``nogil``) and its own single-threaded
BLAS calls on disjoint outputs, so those routes wake no OpenMP or OpenBLAS pool and their
spin/timeout settings (``GOMP_SPINCOUNT``, ``OPENBLAS_THREAD_TIMEOUT``) do not enter; only the
``prange`` kernels (direct, col2im) use Numba's OpenMP workers, which sleep when idle. These are
the settings the server runs with; ``python -m bench`` prints them (``bench.environment``).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numba
import numpy as np

__all__ = ["blas_single_threaded", "matmul", "run_parts"]

T = TypeVar("T")

#: GEMMs smaller than this many multiply-accumulates run on one thread (no pool hand-off).
SPLIT_MIN_MACS = 1 << 22

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_controller = None


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="deconv-gemm")
            _pool_size = n
        return _pool


@contextlib.contextmanager
def blas_single_threaded() -> Iterator[None]:
    """Limit the BLAS library to one thread inside the block (no-op without threadpoolctl)."""
    global _controller
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
    pool = _executor(n)
    futures = [
        pool.submit(np.matmul, a[:, lo:hi], b, out=out[:, lo:hi])
        for lo, hi in itertools.pairwise(bounds[1:])
    ]
    np.matmul(a[:, : bounds[1]], b, out=out[:, : bounds[1]])
    for f in futures:
        f.result()
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
    pool = _executor(numba.get_num_threads())
    futures = [pool.submit(work, _pull(items, counter)) for _ in range(1, n)]
    work(_pull(items, counter))
    for f in futures:
        f.result()
