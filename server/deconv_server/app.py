"""Server assembly: servicer, health, reflection, TLS, token auth, metrics, logs, warmup, signals.

:func:`create_server` binds and starts a server and returns at once; the kernels compile in a
background thread and health (``grpc.health.v1``, services ``""`` and ``"deconv.v1.Deconv"``)
flips from NOT_SERVING to SERVING when they are done. :func:`serve` is the blocking entry point of
``deconv-server``: it prints ``deconv-server listening on HOST:PORT`` once bound, and on
SIGTERM/SIGINT reports NOT_SERVING, stops taking RPCs (new ones get UNAVAILABLE) and lets
in-flight RPCs finish within the grace period.

Reflection answers as ``grpc.reflection.v1`` and ``v1alpha`` (:mod:`deconv_server.reflection`).
Operations: TLS or mutual TLS when ``tls_cert``/``tls_key`` (and ``tls_client_ca``) are set
(:mod:`deconv_server.tls`); bearer-token auth from ``auth_token`` or ``auth_token_file`` and the
drain gate (:mod:`deconv_server.interceptors`); request ids, JSON access logs and Prometheus
metrics for every RPC (:mod:`deconv_server.observe`, :mod:`deconv_server.metrics`); connection
age and keepalive as gRPC server options so clients move to new replicas.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from deconv.wire import SERVICE_NAME
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

import deconv_core
from deconv_server.config import ServerConfig, format_host
from deconv_server.interceptors import DrainGate, TokenAuth
from deconv_server.logging_setup import configure_logging
from deconv_server.metrics import MeteredLock, Metrics
from deconv_server.observe import ObservabilityInterceptor
from deconv_server.reflection import enable_reflection
from deconv_server.servicer import CORE_LOCK, DeconvServicer, add_to_server
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

#: Threads beyond ``config.workers`` so health, info and reflection answer under full load.
_SPARE_THREADS = 4
#: Shortest time the drain answers UNAVAILABLE before stopping gRPC (see ServerHandle.drain).
_LINGER_S = 0.2


@dataclass
class ServerHandle:
    """A started server and the parts tests and :func:`serve` need.

    Attributes
    ----------
    server : grpc.Server
    port : int
        The bound port (the real one when the config asked for 0).
    config : ServerConfig
    servicer : DeconvServicer
    health : grpc_health.v1.health.HealthServicer
    warm : threading.Event
        Set once the kernels are compiled and health reports SERVING.
    metrics : Metrics or None
        The server's metrics when ``config.metrics_port`` is set.
    metrics_port : int or None
        The bound port of the ``/metrics`` endpoint.
    """

    server: grpc.Server
    port: int
    config: ServerConfig
    servicer: DeconvServicer
    health: health.HealthServicer
    warm: threading.Event
    metrics: Metrics | None = None
    metrics_port: int | None = None
    gate: DrainGate | None = field(default=None, repr=False)
    _warmup_thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def target(self) -> str:
        """``host:port`` a local client can dial."""
        host = self.config.host
        if host in ("0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"
        return f"{format_host(host)}:{self.port}"

    def wait_warm(self, timeout: float | None = None) -> bool:
        """Block until SERVING (or ``timeout`` seconds); True when warm."""
        return self.warm.wait(timeout)

    def stop(self, grace: float | None = None) -> threading.Event:
        """Report NOT_SERVING, reject new RPCs, give in-flight ones ``grace`` seconds.

        Returns
        -------
        threading.Event
            Set when the server has fully stopped.
        """
        self.health.enter_graceful_shutdown()
        if self.gate is not None:
            self.gate.close()
        stopped = self.server.stop(grace)
        if self.metrics is not None:
            metrics = self.metrics
            threading.Thread(
                target=lambda: (stopped.wait(), metrics.close()),
                name="deconv-metrics-stop",
                daemon=True,
            ).start()
        return stopped

    def drain(self, grace: float, linger: float = _LINGER_S) -> threading.Event:
        """Shut down without losing a call; what :func:`serve` does on SIGTERM.

        Reports NOT_SERVING and answers new Deconv RPCs UNAVAILABLE (clients retry elsewhere),
        for at least ``linger`` seconds and until the admitted ones have finished (at most
        ``grace``), then stops gRPC with what remains of ``grace``. Stopping gRPC at once would
        answer CANCELLED to calls that had arrived but were not yet handed to a handler; the gate
        hands them UNAVAILABLE instead.

        Returns
        -------
        threading.Event
            Set when the server has fully stopped.
        """
        deadline = time.monotonic() + grace
        self.health.enter_graceful_shutdown()
        if self.gate is not None:
            self.gate.close()
        time.sleep(max(0.0, min(linger, deadline - time.monotonic())))
        while self.servicer.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.stop(max(0.0, deadline - time.monotonic()))


def _set_health(servicer: health.HealthServicer, status: int) -> None:
    for name in ("", SERVICE_NAME):
        servicer.set(name, status)


def _warmup(handle: ServerHandle) -> None:
    start = time.perf_counter()
    try:
        with CORE_LOCK:
            deconv_core.warmup()
    except Exception:
        _log.exception("kernel warmup failed; health stays NOT_SERVING")
        return
    handle.warm.set()
    _set_health(handle.health, health_pb2.HealthCheckResponse.SERVING)
    _log.info("kernels warm in %.1f s; health SERVING", time.perf_counter() - start)


def server_options(config: ServerConfig) -> list[tuple[str, int]]:
    """gRPC server arguments: message limits, frame size, connection age and keepalive.

    ``max_connection_age_s`` makes the server send GOAWAY to connections older than that (with
    ``max_connection_age_grace_s`` to finish their calls): clients reconnect, re-resolve DNS and
    spread over replicas that started after them. Keepalive pings detect dead peers; clients may
    ping every 10 s or slower, even between calls.
    """
    ms = 1000
    options = [
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
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


def start_server(config: ServerConfig) -> ServerHandle:
    """Build, bind and start a server; warm the kernels in the background.

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
    credentials = server_credentials(config)
    token = config.token()
    metrics = Metrics() if config.metrics_port else None
    observer = ObservabilityInterceptor(metrics, SERVICE_NAME)
    gate = DrainGate()
    interceptors: list[grpc.ServerInterceptor] = [observer, gate]
    if token:
        interceptors.append(TokenAuth(token))
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=config.workers + _SPARE_THREADS, thread_name_prefix="deconv-rpc"
        ),
        interceptors=interceptors,
        options=server_options(config),
    )
    warm = threading.Event()
    lock = MeteredLock(CORE_LOCK, metrics) if metrics is not None else CORE_LOCK
    servicer = DeconvServicer(config, warm=warm, lock=lock)
    add_to_server(servicer, server)  # unparsable requests get INVALID_ARGUMENT
    health_servicer = health.HealthServicer()
    _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((SERVICE_NAME, health.SERVICE_NAME), server)  # v1 and v1alpha
    try:
        if credentials is not None:
            port = server.add_secure_port(config.address, credentials)
        else:
            port = server.add_insecure_port(config.address)
    except RuntimeError as exc:
        server.stop(0)
        raise OSError(f"cannot bind {config.address}: {exc}") from exc
    if port == 0:
        server.stop(0)
        raise OSError(f"cannot bind {config.address}")
    metrics_port = None
    if metrics is not None:
        metrics.track(lambda: servicer.in_flight, warm.is_set)
        try:
            metrics_port = metrics.serve(config.host, config.metrics_port)
        except OSError as exc:
            server.stop(0)
            raise OSError(f"cannot bind metrics port {config.metrics_port}: {exc}") from exc
    server.start()
    handle = ServerHandle(
        server, port, config, servicer, health_servicer, warm, metrics, metrics_port, gate
    )
    if config.warmup:
        handle._warmup_thread = threading.Thread(
            target=_warmup, args=(handle,), name="deconv-warmup", daemon=True
        )
        handle._warmup_thread.start()
    else:
        warm.set()
        _set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)
    _log.info(
        "listening on %s:%d (workers %d, %s%s%s)",
        config.host,
        port,
        config.workers,
        ("mutual TLS" if config.tls_client_ca else "TLS") if config.tls else "plaintext",
        ", token auth" if token else "",
        f", metrics on :{metrics_port}/metrics" if metrics_port else "",
    )
    return handle


def create_server(config: ServerConfig) -> tuple[grpc.Server, int]:
    """Start a server without blocking; health flips to SERVING once the kernels are warm.

    Parameters
    ----------
    config : ServerConfig
        ``config.port == 0`` binds a free port.

    Returns
    -------
    (grpc.Server, int)
        The started server and its bound port. Stop it with ``server.stop(grace)``.
    """
    handle = start_server(config)
    return handle.server, handle.port


def serve(config: ServerConfig) -> int:
    """Run a server until SIGTERM or SIGINT, then drain it within ``config.grace_seconds``.

    Prints exactly one line, ``deconv-server listening on HOST:PORT``, to stdout once bound.

    Returns
    -------
    int
        Process exit code (0).
    """
    configure_logging(config.log_level, config.log_format)
    handle = start_server(config)
    print(f"deconv-server listening on {format_host(config.host)}:{handle.port}", flush=True)
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():
            _log.warning("second signal: stopping now")
            handle.server.stop(0)
        _log.info(
            "%s: draining for up to %.1f s", signal.Signals(signum).name, config.grace_seconds
        )
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    stop.wait()
    if config.shutdown_delay_s > 0:
        # Keep serving while load balancers notice NOT_SERVING and route elsewhere.
        handle.health.enter_graceful_shutdown()
        _log.info("NOT_SERVING; draining starts in %.1f s", config.shutdown_delay_s)
        stop.clear()
        stop.wait(config.shutdown_delay_s)
    handle.drain(config.grace_seconds).wait()
    _log.info("stopped")
    return 0
