"""The core's worker threads: every job runs, errors reach the caller, workers are pinned one per
CPU where the process owns its CPUs, and a forked child gets workers of its own."""

from __future__ import annotations

import os
import signal
import threading
import time

import numba
import numpy as np
import pytest

import deconv_core
from deconv_core import _threads


def test_each_job_runs_on_its_own_worker_and_errors_reach_the_caller() -> None:
    workers = _threads._pool(2)
    seen: list[str] = []

    def job() -> None:
        seen.append(threading.current_thread().name)

    workers.run([job, job])
    assert len(set(seen)) == 2, seen

    def boom() -> None:
        raise ValueError("from a worker")

    finished = threading.Event()

    def slow() -> None:
        time.sleep(0.2)
        finished.set()

    with pytest.raises(ValueError, match="from a worker"):
        workers.run([slow, boom])
    assert finished.is_set(), "run() returned while another job was still running"
    with pytest.raises(ValueError, match="jobs for"):
        workers.run([job] * (workers.size + 1))


def test_run_parts_takes_every_item_once() -> None:
    items = list(range(37))
    taken: list[int] = []
    lock = threading.Lock()

    def work(part) -> None:
        for item in part:
            with lock:
                taken.append(item)

    _threads.run_parts(work, items)
    assert sorted(taken) == items


def _affinity_allowed(cpu: int) -> bool:
    """Whether this system lets a thread pin itself (tried on a throwaway thread)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            os.sched_setaffinity(0, {cpu})
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return result == [True]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity API")
def test_workers_are_pinned_one_per_cpu_where_the_process_owns_its_cpus() -> None:
    n = numba.get_num_threads()
    cpus = sorted(os.sched_getaffinity(0))
    workers = _threads._pool(n)
    if not 1 < len(cpus) <= workers.size:  # a larger, shared CPU set: never pinned
        assert not workers.pinned
    elif _affinity_allowed(cpus[0]):  # the process owns its CPUs and may pin: it must
        assert workers.pinned
    masks: dict[int, set[int]] = {}

    def record(i: int):
        return lambda: masks.__setitem__(i, os.sched_getaffinity(0))

    workers.run([record(i) for i in range(workers.size)])
    if workers.pinned:
        assert [masks[i] for i in range(workers.size)] == [
            {cpus[i % len(cpus)]} for i in range(workers.size)
        ]
    else:
        assert all(mask == set(cpus) for mask in masks.values())
    assert os.sched_getaffinity(0) == set(cpus), "the caller's own CPUs were changed"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_computes_on_workers_of_its_own() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 16, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 8, 4, 4)).astype(np.float32)
    plan = deconv_core.plan_conv_transpose(x.shape, w.shape, dtype=np.float32, stride=2,
                                           padding=1).with_route("gemm")  # fmt: skip
    want = deconv_core.execute(plan, x, w)  # the parent's workers exist now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        signal.alarm(60)  # a child stuck on the parent's (absent) workers dies instead
        try:
            same = np.array_equal(deconv_core.execute(plan, x, w), want)
        finally:
            os._exit(0 if same else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_kept_single_threaded_blas_stays_at_one_thread() -> None:
    """After keep_blas_single_threaded, BLAS is at one thread, a call leaves it there and
    set_num_threads does not raise it (the per-call limit is skipped)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads() -> set[int]:
        return {p["num_threads"] for p in threadpoolctl.threadpool_info()
                if p.get("user_api") == "blas"}

    np.ones((64, 64)) @ np.ones((64, 64))  # BLAS loaded
    deconv_core.keep_blas_single_threaded()
    assert _threads.blas_kept_single_threaded()
    assert deconv_core.runtime_info()["blas_kept_single_threaded"] is True
    assert blas_threads() == {1}
    with _threads.blas_single_threaded():
        assert blas_threads() == {1}
    deconv_core.set_num_threads(numba.get_num_threads())
    assert blas_threads() == {1}
