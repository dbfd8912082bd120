"""Prometheus metrics of one server, served over HTTP at ``/metrics`` (DECONV_METRICS_PORT).

Each server owns a private :class:`prometheus_client.CollectorRegistry`, so several servers in
one process (tests, replicas) never mix their numbers. Exported series:

======================================== ========= ================================================
name                                     type      meaning
======================================== ========= ================================================
deconv_requests_total                    counter   finished RPCs by service, method, status code
deconv_request_duration_seconds          histogram RPC latency by service and method
deconv_received_bytes_total              counter   serialized request bytes by method
deconv_sent_bytes_total                  counter   serialized response bytes by method
deconv_in_flight_requests                gauge     RPCs being handled now (every service)
deconv_admitted_requests                 gauge     compute RPCs admitted (running or queued)
deconv_queue_depth                       gauge     admitted compute RPCs waiting for the core
deconv_inflight_bytes                    gauge     bytes admitted requests hold (in-flight budget)
deconv_core_busy                         gauge     1 while the core computes
deconv_core_seconds_total                counter   time the core spent computing
deconv_warm                              gauge     1 once the kernels are compiled (SERVING)
deconv_weight_cache_hits_total           counter   weights named by digest and found in the cache
deconv_weight_cache_misses_total         counter   weights named by digest and not found
deconv_weight_cache_bytes                gauge     bytes of weights and their kernel-ready forms
deconv_weight_forms_reused_total         counter   calls that reused a kept kernel-ready form
deconv_weight_bytes_received_total       counter   weight bytes received (gRPC or shared memory)
deconv_shared_memory_regions             gauge     shared-memory regions registered now
deconv_shared_memory_read_bytes_total    counter   tensor bytes read from shared memory
deconv_shared_memory_written_bytes_total counter   result bytes written to shared memory
======================================== ========= ================================================

The core series come from :class:`MeteredLock`, a drop-in for the core lock that the servicer's
jobs hold instead of the bare lock; the queue depth counts jobs waiting for the core thread and
for the lock. The endpoint is served by the server's own event loop (no thread per connection):
at most :data:`MAX_CONNECTIONS` at once, each given :data:`HTTP_TIMEOUT_S` to send its request
and take the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

__all__ = ["HTTP_TIMEOUT_S", "LATENCY_BUCKETS", "MAX_CONNECTIONS", "MeteredLock", "Metrics"]

#: Scrape connections served at once; more are closed at once.
MAX_CONNECTIONS = 8
#: Seconds a scrape connection gets to send its request and to take the answer.
HTTP_TIMEOUT_S = 5.0
#: Largest request head (request line plus headers) read from a scraper.
_MAX_HEAD_BYTES = 8192

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
        self.inflight_bytes = Gauge(
            "deconv_inflight_bytes", "Bytes admitted requests hold (in-flight budget)", registry=r
        )
        self._server: asyncio.Server | None = None
        self._open = 0

    def track(
        self,
        admitted: Callable[[], float],
        warm: Callable[[], bool],
        queued: Callable[[], float],
        held_bytes: Callable[[], float],
    ) -> None:
        """Read the admitted count, warm flag, queue depth and held bytes at scrape time."""
        self.admitted.set_function(admitted)
        self.inflight_bytes.set_function(held_bytes)
        self.warm.set_function(lambda: 1.0 if warm() else 0.0)
        self.queue_depth.set_function(queued)

    def track_weights(self, cache: Any) -> None:
        """Export the counters of a :class:`deconv_server.weights.WeightCache` at scrape time."""
        self.registry.register(_WeightCacheCollector(cache))

    def track_shared_memory(self, registry: Any) -> None:
        """Export a :class:`deconv_server.shared_memory.SharedMemoryRegistry` at scrape time."""
        self.registry.register(_SharedMemoryCollector(registry))

    def observe(
        self, service: str, method: str, code: str, seconds: float, nbytes_in: int, nbytes_out: int
    ) -> None:
        """Record one finished RPC."""
        self.requests.labels(service, method, code).inc()
        self.latency.labels(service, method).observe(seconds)
        self.bytes_in.labels(method).inc(nbytes_in)
        self.bytes_out.labels(method).inc(nbytes_out)

    async def serve(self, host: str, port: int) -> int:
        """Start the ``/metrics`` HTTP endpoint on the running event loop; returns its port.

        Raises
        ------
        OSError
            The address cannot be bound.
        """
        self._server = await asyncio.start_server(self._handle, host.strip("[]"), port)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop the HTTP endpoint (no-op when it never started)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            writer.close()
            return
        self._open += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HTTP_TIMEOUT_S)
            line = head[: min(len(head), _MAX_HEAD_BYTES)].split(b"\r\n", 1)[0].split()
            if len(line) >= 2 and line[0] == b"GET" and line[1].split(b"?")[0] == b"/metrics":
                status, body, kind = b"200 OK", generate_latest(self.registry), CONTENT_TYPE_LATEST
            else:
                status, body, kind = b"404 Not Found", b"only GET /metrics\n", "text/plain"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + kind.encode()
                + b"\r\nContent-Length: " + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n" + body
            )  # fmt: skip
            await asyncio.wait_for(writer.drain(), HTTP_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a slow, oversized or broken scrape: drop the connection
        finally:
            self._open -= 1
            writer.close()


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
        #: Threads waiting to acquire (part of the queue depth).
        self.waiting = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Acquire like :meth:`threading.Lock.acquire`, counted as queued while waiting."""
        m = self._metrics
        if blocking:  # only the core thread waits; an inline try never does (or counts)
            self.waiting += 1
            try:
                acquired = self._lock.acquire(blocking, timeout)
            finally:
                self.waiting -= 1
        else:
            acquired = self._lock.acquire(False)
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


class _WeightCacheCollector:
    """The weight cache's counters, read when scraped."""

    def __init__(self, cache: Any) -> None:
        self._cache = cache

    def collect(self) -> Any:
        c = self._cache
        yield CounterMetricFamily(
            "deconv_weight_cache_hits", "Weights named by digest and found", value=c.hits
        )
        yield CounterMetricFamily(
            "deconv_weight_cache_misses", "Weights named by digest and not found", value=c.misses
        )
        yield GaugeMetricFamily(
            "deconv_weight_cache_bytes",
            "Bytes of weights kept by digest, their kernel-ready forms included",
            value=c.used,
        )
        yield CounterMetricFamily(
            "deconv_weight_forms_reused",
            "Calls that reused a cached weight's kernel-ready form (no weight transform)",
            value=c.form_hits,
        )
        yield CounterMetricFamily(
            "deconv_weight_bytes_received",
            "Weight bytes received with calls (gRPC or shared memory; not from the cache)",
            value=c.weight_bytes_received,
        )


class _SharedMemoryCollector:
    """The shared-memory registry's numbers, read when scraped."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def collect(self) -> Any:
        r = self._registry
        yield GaugeMetricFamily(
            "deconv_shared_memory_regions", "Shared-memory regions registered", value=len(r)
        )
        yield CounterMetricFamily(
            "deconv_shared_memory_read_bytes",
            "Tensor bytes read from shared memory",
            value=r.bytes_read,
        )
        yield CounterMetricFamily(
            "deconv_shared_memory_written_bytes",
            "Result bytes written to shared memory",
            value=r.bytes_written,
        )
