"""Server assembly on grpc.aio: servicer, health, reflection, TLS, token auth, metrics, signals.

The server runs on one asyncio event loop: a call that waits (for its request, for the core, for
its caller to read) holds no thread, so health checks (Watch included) and reflection keep
answering whatever the Deconv RPCs do. The core computes on its own thread
(:mod:`deconv_server.compute`).

:func:`start_server` runs that loop in a background thread and returns a :class:`ServerHandle`
with blocking methods (tests, embedding); :func:`create_server` returns ``(handle, port)``.
:func:`serve` is the entry point of ``deconv-server``: it prints ``deconv-server listening on
HOST:PORT`` once bound, and on SIGTERM/SIGINT reports NOT_SERVING, answers new Deconv RPCs
UNAVAILABLE (clients retry them elsewhere), lets admitted calls finish within the grace period
and stops. Health (``grpc.health.v1``, services ``""`` and ``"deconv.v1.Deconv"``) is
NOT_SERVING until the kernels are compiled.

gRPC options bound what one connection can hold: ``max_streams_per_connection`` concurrent RPCs,
no compressed requests (only identity: a compressed message could inflate far beyond what was
sent), message size limits, keepalive and connection age (:func:`server_options`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from deconv.wire import SERVICE_NAME
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

import deconv_core
from deconv_server import compute
from deconv_server.config import ServerConfig, format_host
from deconv_server.handle import LINGER_S, LOOP, ServerHandle
from deconv_server.handlers import add_to_server
from deconv_server.interceptors import DrainGate, TokenAuth
from deconv_server.logging_setup import configure_logging
from deconv_server.lookup import InterceptingRegistrar
from deconv_server.metrics import MeteredLock, Metrics
from deconv_server.observe import ObservabilityInterceptor
from deconv_server.reflection import enable_reflection
from deconv_server.servicer import CORE_LOCK, DeconvServicer
from deconv_server.tls import server_credentials

__all__ = [
    "SERVICE_NAME",
    "ServerHandle",
    "configure_logging",
    "create_server",
    "serve",
    "server_options",
    "start_server",
]

_log = logging.getLogger("deconv_server")

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class _Running:
    """What :func:`_start` built, on its event loop."""

    server: grpc.aio.Server
    port: int
    config: ServerConfig
    servicer: DeconvServicer
    health: Any
    warm: threading.Event
    gate: DrainGate
    metrics: Metrics | None
    metrics_port: int | None
    warmup_task: asyncio.Task[None] | None = None

    async def set_health(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def drain(self, grace: float, linger: float) -> None:
        """NOT_SERVING, refuse new Deconv RPCs, wait for admitted ones, then stop gRPC."""
        deadline = time.monotonic() + grace
        await self.health.enter_graceful_shutdown()
        self.gate.close()
        await asyncio.sleep(max(0.0, min(linger, deadline - time.monotonic())))
        while self.servicer.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await self.stop(max(0.0, deadline - time.monotonic()))

    async def stop(self, grace: float | None) -> None:
        await self.health.enter_graceful_shutdown()
        self.gate.close()
        await self.server.stop(grace)
        self.servicer.shared_memory.close()  # the callers' files stay; only our fds close
        if self.metrics is not None:
            await self.metrics.close()


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    """gRPC server arguments: limits per message and connection, compression, keepalive, age.

    ``max_connection_age_s`` makes the server send GOAWAY to connections older than that (with
    ``max_connection_age_grace_s`` to finish their calls): clients reconnect, re-resolve DNS and
    spread over replicas that started after them. Keepalive pings detect dead peers; clients may
    ping every 10 s or slower, even between calls. Only uncompressed requests are accepted.
    """
    ms = 1000
    options = [
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_concurrent_streams", config.max_streams_per_connection),
        ("grpc.compression_enabled_algorithms_bitset", 1),  # identity only
        ("grpc.so_reuseport", 0),
        # Accept large HTTP/2 frames (the protocol's maximum): fewer frames per tensor.
        ("grpc.http2.max_frame_size", (1 << 24) - 1),
        ("grpc.keepalive_time_ms", int(config.keepalive_time_s * ms)),
        ("grpc.keepalive_timeout_ms", int(config.keepalive_timeout_s * ms)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10 * ms),
        ("grpc.http2.max_ping_strikes", 2),
    ]
    if config.max_connection_age_s > 0:
        options += [
            ("grpc.max_connection_age_ms", max(1, int(config.max_connection_age_s * ms))),
            ("grpc.max_connection_age_grace_ms", int(config.max_connection_age_grace_s * ms)),
        ]
    return options


async def _warmup(running: _Running) -> None:
    loop = asyncio.get_running_loop()
    try:
        seconds = await loop.run_in_executor(compute.CORE_EXECUTOR, compute.warm_kernels)
    except Exception:
        _log.exception("kernel warmup failed; health stays NOT_SERVING")
        return
    running.warm.set()
    await running.set_health(_SERVING)
    _log.info("kernels warm in %.1f s; health SERVING", seconds)


def _bind(server: grpc.aio.Server, config: ServerConfig, credentials: Any) -> int:
    try:
        if credentials is not None:
            port = server.add_secure_port(config.address, credentials)
        else:
            port = server.add_insecure_port(config.address)
    except RuntimeError as exc:
        raise OSError(f"cannot bind {config.address}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot bind {config.address}")
    return port


async def _serve_metrics(
    metrics: Metrics | None,
    lock: Any,
    servicer: DeconvServicer,
    warm: threading.Event,
    config: ServerConfig,
) -> int | None:
    if metrics is None:
        return None
    metrics.track(
        lambda: servicer.in_flight,
        warm.is_set,
        lambda: compute.queued() + lock.waiting,
        lambda: servicer.budget.used,
    )
    metrics.track_weights(servicer.weights)
    metrics.track_shared_memory(servicer.shared_memory)
    try:
        return await metrics.serve(config.host, config.metrics_port)
    except OSError as exc:
        raise OSError(f"cannot bind metrics port {config.metrics_port}: {exc}") from exc


async def _start(config: ServerConfig) -> _Running:
    """Build, bind and start the server on the running loop; warm the kernels in the background."""
    # Nothing but the core's routes uses BLAS here, and they call it one thread per worker:
    # leave it at one thread instead of limiting and restoring it around every call.
    deconv_core.keep_blas_single_threaded()
    credentials = server_credentials(config)
    token = config.token()
    metrics = Metrics() if config.metrics_port else None
    gate = DrainGate()
    interceptors: list[grpc.aio.ServerInterceptor] = [
        ObservabilityInterceptor(metrics, SERVICE_NAME),
        gate,
    ]
    if token:
        interceptors.append(TokenAuth(config.tokens()))  # one per line of the token file
    server = grpc.aio.server(options=server_options(config))
    # the interceptors run at handler lookup, not as grpc.aio's per-call coroutine chain
    registrar: Any = InterceptingRegistrar(server, interceptors)
    warm = threading.Event()
    lock = MeteredLock(CORE_LOCK, metrics) if metrics is not None else CORE_LOCK
    servicer = DeconvServicer(config, warm=warm, lock=lock)
    add_to_server(servicer, registrar)  # unparsable requests get INVALID_ARGUMENT
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    enable_reflection((SERVICE_NAME, health.SERVICE_NAME), registrar)
    try:
        port = _bind(server, config, credentials)
        metrics_port = await _serve_metrics(metrics, lock, servicer, warm, config)
    except BaseException:
        await server.stop(0)
        raise
    running = _Running(
        server, port, config, servicer, health_servicer, warm, gate, metrics, metrics_port
    )
    await running.set_health(_NOT_SERVING)
    await server.start()
    if config.warmup:
        running.warmup_task = asyncio.create_task(_warmup(running))
    else:
        warm.set()
        await running.set_health(_SERVING)
    _log.info(
        "listening on %s:%d (workers %d, %s%s%s)",
        config.host,
        port,
        config.workers,
        ("mutual TLS" if config.tls_client_ca else "TLS") if config.tls else "plaintext",
        ", token auth" if token else "",
        f", metrics on :{metrics_port}/metrics" if metrics_port else "",
    )
    return running


def start_server(config: ServerConfig) -> ServerHandle:
    """Start a server on the process's background event loop; return once it is bound.

    Parameters
    ----------
    config : ServerConfig

    Returns
    -------
    ServerHandle

    Raises
    ------
    OSError
        The address (gRPC or metrics) cannot be bound.
    deconv_server.config.ConfigError
        The token file or a TLS file is unreadable.
    """
    loop = LOOP.get()
    running = asyncio.run_coroutine_threadsafe(_start(config), loop).result()
    return ServerHandle(
        running.port,
        config,
        running.servicer,
        running.warm,
        running.metrics,
        running.metrics_port,
        _running=running,
        _loop=loop,
    )


def create_server(config: ServerConfig) -> tuple[ServerHandle, int]:
    """Start a server without blocking; health flips to SERVING once the kernels are warm.

    Parameters
    ----------
    config : ServerConfig
        ``config.port == 0`` binds a free port.

    Returns
    -------
    (ServerHandle, int)
        The started server and its bound port. Stop it with ``server.stop(grace)`` (returns a
        ``threading.Event`` set once stopped, like ``grpc.Server.stop``).
    """
    handle = start_server(config)
    return handle, handle.port


async def _serve(config: ServerConfig) -> None:
    running = await _start(config)
    print(f"deconv-server listening on {format_host(config.host)}:{running.port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0
    tasks: list[asyncio.Task[None]] = []

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            _log.warning("second signal: stopping now")
            tasks.append(loop.create_task(running.server.stop(0)))
        _log.info(
            "%s: draining for up to %.1f s", signal.Signals(signum).name, config.grace_seconds
        )
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await stop.wait()
    if config.shutdown_delay_s > 0:
        # Keep serving while load balancers notice NOT_SERVING and route elsewhere.
        await running.health.enter_graceful_shutdown()
        _log.info("NOT_SERVING; draining starts in %.1f s", config.shutdown_delay_s)
        await asyncio.sleep(config.shutdown_delay_s)
    await running.drain(config.grace_seconds, LINGER_S)
    _log.info("stopped")


def serve(config: ServerConfig) -> int:
    """Run a server until SIGTERM or SIGINT, then drain it within ``config.grace_seconds``.

    Prints exactly one line, ``deconv-server listening on HOST:PORT``, to stdout once bound.

    Returns
    -------
    int
        Process exit code (0).
    """
    configure_logging(config.log_level, config.log_format)
    compute.limit_malloc_arenas()
    asyncio.run(_serve(config))
    return 0
