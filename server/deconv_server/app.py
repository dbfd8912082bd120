"""Server assembly: servicer, health, reflection, optional token auth, warmup, signals.

:func:`create_server` binds and starts a server and returns at once; the kernels compile in a
background thread and health (``grpc.health.v1``, services ``""`` and ``"deconv.v1.Deconv"``)
flips from NOT_SERVING to SERVING when they are done. :func:`serve` is the blocking entry point of
``deconv-server``: it prints ``deconv-server listening on HOST:PORT`` once bound, and on
SIGTERM/SIGINT reports NOT_SERVING, stops taking RPCs (new ones get UNAVAILABLE) and lets
in-flight RPCs finish within the grace period.
"""

from __future__ import annotations

import hmac
import logging
import signal
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from deconv.v1 import deconv_pb2 as pb
from deconv.v1 import deconv_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

import deconv_core
from deconv_server.config import ServerConfig, format_host
from deconv_server.servicer import CORE_LOCK, DeconvServicer

__all__ = ["SERVICE_NAME", "ServerHandle", "create_server", "serve", "start_server"]

_log = logging.getLogger("deconv_server")

#: Full name of the service, as health and reflection report it.
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Deconv"].full_name
#: Threads beyond ``config.workers`` so health, info and reflection answer under full load.
_SPARE_THREADS = 4


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
    """

    server: grpc.Server
    port: int
    config: ServerConfig
    servicer: DeconvServicer
    health: health.HealthServicer
    warm: threading.Event
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
        return self.server.stop(grace)


class _TokenAuth(grpc.ServerInterceptor):
    """Require ``authorization: Bearer <token>`` on Deconv RPCs (health/reflection stay open)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    @staticmethod
    def _reject(request: Any, context: grpc.ServicerContext) -> None:
        context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or wrong credentials: send metadata 'authorization: Bearer <token>'",
        )

    def _authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                given = value if isinstance(value, bytes) else str(value).encode()
                if hmac.compare_digest(given, self._expected):
                    return True
        return False

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if (
            handler is None
            or not handler_call_details.method.startswith(f"/{SERVICE_NAME}/")
            or self._authorized(handler_call_details.invocation_metadata)
        ):
            return handler
        # A rejecting handler of the same streaming kind, so the call fails cleanly.
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(self._reject)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(self._reject)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(self._reject)
        return grpc.unary_unary_rpc_method_handler(self._reject)


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
        The address cannot be bound.
    """
    options = [
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
        # Accept large HTTP/2 frames (the protocol's maximum): fewer frames per tensor.
        ("grpc.http2.max_frame_size", (1 << 24) - 1),
    ]
    interceptors = [_TokenAuth(config.auth_token)] if config.auth_token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=config.workers + _SPARE_THREADS, thread_name_prefix="deconv-rpc"
        ),
        interceptors=interceptors,
        options=options,
    )
    warm = threading.Event()
    servicer = DeconvServicer(config, warm=warm)
    pb_grpc.add_DeconvServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    _set_health(health_servicer, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        port = server.add_insecure_port(config.address)
    except RuntimeError as exc:
        server.stop(0)
        raise OSError(f"cannot bind {config.address}: {exc}") from exc
    if port == 0:
        server.stop(0)
        raise OSError(f"cannot bind {config.address}")
    server.start()
    handle = ServerHandle(server, port, config, servicer, health_servicer, warm)
    if config.warmup:
        handle._warmup_thread = threading.Thread(
            target=_warmup, args=(handle,), name="deconv-warmup", daemon=True
        )
        handle._warmup_thread.start()
    else:
        warm.set()
        _set_health(health_servicer, health_pb2.HealthCheckResponse.SERVING)
    _log.info("listening on %s:%d (workers %d)", config.host, port, config.workers)
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


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` (stdout carries only the "listening" line)."""
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def serve(config: ServerConfig) -> int:
    """Run a server until SIGTERM or SIGINT, then drain it within ``config.grace_seconds``.

    Prints exactly one line, ``deconv-server listening on HOST:PORT``, to stdout once bound.

    Returns
    -------
    int
        Process exit code (0).
    """
    configure_logging(config.log_level)
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
    handle.stop(config.grace_seconds).wait()
    _log.info("stopped")
    return 0
