"""One thread budget for Numba and BLAS, and a GEMM that uses it without spinning pools.

OpenBLAS's own worker threads keep spinning after a GEMM and slow the Numba ``prange`` that
follows (and Numba's OpenMP workers spin after a ``prange`` and slow the next GEMM). So the
GEMM routes run BLAS single-threaded and split each GEMM by rows over a small pool of Python
threads (numpy releases the GIL inside matmul); Numba's workers are told to sleep when idle
(``OMP_WAIT_POLICY=PASSIVE``, set by ``deconv_core`` before Numba's OpenMP starts, unless the
environment already chooses). Both use ``numba.get_num_threads()`` threads.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator
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


def run_parts(work: Callable[[list[T]], None], items: list[T]) -> None:
    """Call ``work`` on interleaved shares of ``items``, one share per budgeted thread.

    Parameters
    ----------
    work : callable
        Processes a list of items; must write disjoint outputs (it runs concurrently).
    items : list
        Work items, dealt round-robin so each thread gets a similar amount.
    """
    n = min(numba.get_num_threads(), len(items))
    if n <= 1:
        work(items)
        return
    pool = _executor(numba.get_num_threads())
    futures = [pool.submit(work, items[i::n]) for i in range(1, n)]
    work(items[0::n])
    for f in futures:
        f.result()
