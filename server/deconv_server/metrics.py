"""Prometheus metrics of one server, served over HTTP at ``/metrics`` (DECONV_METRICS_PORT).

Each server owns a private :class:`prometheus_client.CollectorRegistry`, so several servers in
one process (tests, replicas) never mix their numbers. Exported series:

=================================== ========= ================================================
name                                type      meaning
=================================== ========= ================================================
deconv_requests_total               counter   finished RPCs by service, method, status code
deconv_request_duration_seconds     histogram RPC latency by service and method
deconv_received_bytes_total         counter   serialized request bytes by method
deconv_sent_bytes_total             counter   serialized response bytes by method
deconv_in_flight_requests           gauge     RPCs being handled now (every service)
deconv_admitted_requests            gauge     compute RPCs admitted (running or queued)
deconv_queue_depth                  gauge     admitted compute RPCs waiting for the core
deconv_core_busy                    gauge     1 while the core computes
deconv_core_seconds_total           counter   time the core spent computing
deconv_warm                         gauge     1 once the kernels are compiled (SERVING)
=================================== ========= ================================================

The queue and core series come from :class:`MeteredLock`, a drop-in for the core lock that the
servicer is given instead of the bare lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["LATENCY_BUCKETS", "MeteredLock", "Metrics"]

#: Latency histogram buckets in seconds (1 ms .. 60 s).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class Metrics:
    """The metric families of one server and, once :meth:`serve` ran, its HTTP endpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "deconv_requests", "Finished RPCs", ["service", "method", "code"], registry=r
        )
        self.latency = Histogram(
            "deconv_request_duration_seconds",
            "RPC latency in seconds",
            ["service", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bytes_in = Counter(
            "deconv_received_bytes", "Serialized request bytes", ["method"], registry=r
        )
        self.bytes_out = Counter(
            "deconv_sent_bytes", "Serialized response bytes", ["method"], registry=r
        )
        self.in_flight = Gauge("deconv_in_flight_requests", "RPCs being handled", registry=r)
        self.admitted = Gauge(
            "deconv_admitted_requests", "Compute RPCs admitted (running or queued)", registry=r
        )
        self.queue_depth = Gauge(
            "deconv_queue_depth", "Admitted compute RPCs waiting for the core", registry=r
        )
        self.core_busy = Gauge("deconv_core_busy", "1 while the core computes", registry=r)
        self.core_seconds = Counter(
            "deconv_core_seconds", "Seconds the core spent computing", registry=r
        )
        self.warm = Gauge("deconv_warm", "1 once the kernels are compiled", registry=r)
        self._httpd: Any = None
        self._thread: threading.Thread | None = None

    def track(self, admitted: Callable[[], float], warm: Callable[[], bool]) -> None:
        """Read the admitted count and warm flag from the server at scrape time."""
        self.admitted.set_function(admitted)
        self.warm.set_function(lambda: 1.0 if warm() else 0.0)

    def observe(
        self, service: str, method: str, code: str, seconds: float, nbytes_in: int, nbytes_out: int
    ) -> None:
        """Record one finished RPC."""
        self.requests.labels(service, method, code).inc()
        self.latency.labels(service, method).observe(seconds)
        self.bytes_in.labels(method).inc(nbytes_in)
        self.bytes_out.labels(method).inc(nbytes_out)

    def serve(self, host: str, port: int) -> int:
        """Start the ``/metrics`` HTTP endpoint in a daemon thread; returns the bound port.

        Raises
        ------
        OSError
            The address cannot be bound.
        """
        host = host.strip("[]")
        self._httpd, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._httpd.server_port)

    def close(self) -> None:
        """Stop the HTTP endpoint (no-op when it never started)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()


class MeteredLock:
    """A lock wrapper that counts waiters (queue depth) and time held (core busy).

    Parameters
    ----------
    lock : threading.Lock
        The lock to share (the process-wide core lock).
    metrics : Metrics
    """

    def __init__(self, lock: Any, metrics: Metrics) -> None:
        self._lock = lock
        self._metrics = metrics
        self._since = 0.0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire like :meth:`threading.Lock.acquire`, counted as queued while waiting."""
        m = self._metrics
        m.queue_depth.inc()
        try:
            acquired = self._lock.acquire(blocking, timeout)
        finally:
            m.queue_depth.dec()
        if acquired:
            self._since = time.perf_counter()
            m.core_busy.set(1)
        return acquired

    def release(self) -> None:
        """Release the lock and add the time it was held to the core counter."""
        m = self._metrics
        m.core_seconds.inc(max(0.0, time.perf_counter() - self._since))
        m.core_busy.set(0)
        self._lock.release()

    def locked(self) -> bool:
        """True while someone holds the lock."""
        return bool(self._lock.locked())

    def __enter__(self) -> MeteredLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
