"""Per-RPC observability: request ids, one access log line and the Prometheus numbers of each RPC.

:class:`ObservabilityInterceptor` wraps every method handler (unary and streaming, every
service). For each RPC it

- takes the request id from ``x-request-id`` metadata (printable, at most 128 characters) or
  generates one, puts it in :data:`deconv_server.logging_setup.REQUEST_ID` for the server's own
  log records and echoes it in the trailing metadata;
- counts serialized request and response bytes, the latency and the final status code;
- logs one record on ``deconv_server.access`` (INFO for ``deconv.v1.Deconv``, DEBUG for
  health and reflection, so probes do not flood the log) whose message is the JSON of the RPC;
- feeds :class:`deconv_server.metrics.Metrics` when metrics are on.

It must be the first interceptor so rejected calls (e.g. UNAUTHENTICATED) are logged too.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from deconv_server.logging_setup import ACCESS_LOGGER, REQUEST_ID
from deconv_server.metrics import Metrics

__all__ = ["REQUEST_ID_KEY", "ObservabilityInterceptor"]

#: Metadata key carrying the request id both ways.
REQUEST_ID_KEY = "x-request-id"
_MAX_ID = 128
_COMPUTE_OPS = {
    "Conv": "conv",
    "ConvChunked": "conv",
    "TransposedConv": "conv_transpose",
    "TransposedConvChunked": "conv_transpose",
}

_access = logging.getLogger(ACCESS_LOGGER)


def request_id(metadata: Any) -> str:
    """The caller's ``x-request-id`` when usable, else a fresh random id (32 hex digits)."""
    for key, value in metadata or ():
        if key == REQUEST_ID_KEY:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            if 0 < len(text) <= _MAX_ID and text.isprintable() and text.isascii():
                return text
            break
    return uuid.uuid4().hex


def _size(message: Any) -> int:
    try:
        return int(message.ByteSize())
    except AttributeError:  # raw bytes (generic handlers)
        return len(message) if isinstance(message, bytes | bytearray) else 0


class _Rpc:
    """Book-keeping of one RPC from its start to its status."""

    def __init__(self, obs: ObservabilityInterceptor, full_method: str, metadata: Any) -> None:
        self.obs = obs
        service, _, method = full_method.lstrip("/").rpartition("/")
        self.service, self.method = service, method
        self.request_id = request_id(metadata)
        self.bytes_in = 0
        self.bytes_out = 0
        self.start = time.perf_counter()
        self.token: Any = None

    def begin(self, context: grpc.ServicerContext) -> None:
        self.token = REQUEST_ID.set(self.request_id)
        context.set_trailing_metadata(((REQUEST_ID_KEY, self.request_id),))
        if self.obs.metrics is not None:
            self.obs.metrics.in_flight.inc()

    def end(self, context: grpc.ServicerContext, exc: BaseException | None) -> None:
        seconds = time.perf_counter() - self.start
        code = _final_code(context, exc)
        obs = self.obs
        if obs.metrics is not None:
            obs.metrics.in_flight.dec()
            obs.metrics.observe(
                self.service, self.method, code, seconds, self.bytes_in, self.bytes_out
            )
        fields = {
            "event": "rpc",
            "service": self.service,
            "method": self.method,
            "op": _COMPUTE_OPS.get(self.method, self.method),
            "code": code,
            "duration_ms": round(1e3 * seconds, 3),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "peer": _peer(context),
            "request_id": self.request_id,
        }
        level = logging.INFO if self.service == obs.main_service else logging.DEBUG
        if _access.isEnabledFor(level):
            # The JSON formatter puts the fields at the top level; the message is for text logs.
            message = f"{self.service}/{self.method} {code} {fields['duration_ms']} ms"
            _access.log(level, message, extra={"fields": fields})
        if self.token is not None:
            REQUEST_ID.reset(self.token)
            self.token = None

    def counted(self, messages: Iterator[Any]) -> Iterator[Any]:
        for message in messages:
            self.bytes_in += _size(message)
            yield message


def _peer(context: grpc.ServicerContext) -> str:
    try:
        return str(context.peer())
    except Exception:  # peer is informational only
        return ""


def _final_code(context: grpc.ServicerContext, exc: BaseException | None) -> str:
    """Status name the client sees for a handler that returned or raised ``exc``."""
    try:
        code = context.code()
    except Exception:
        code = None
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(exc, GeneratorExit):
        return "CANCELLED"
    if exc is not None:
        return "UNKNOWN"  # an exception escaped the handler: gRPC answers UNKNOWN
    if not context.is_active():
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    return "OK"


class ObservabilityInterceptor(grpc.ServerInterceptor):
    """Request ids, access log lines and metrics for every RPC.

    Parameters
    ----------
    metrics : Metrics or None
        Where to record the numbers; None = logs and request ids only.
    main_service : str
        Full name of the service logged at INFO (others at DEBUG).
    """

    def __init__(self, metrics: Metrics | None, main_service: str) -> None:
        self.metrics = metrics
        self.main_service = main_service

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        """Wrap the handler's behaviour; unknown methods pass through untouched."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        metadata = handler_call_details.invocation_metadata
        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, metadata, False), **kw
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, method, metadata, True), **kw
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, method, metadata, False), **kw
            )
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(handler.stream_stream, method, metadata, True), **kw
        )

    def _unary(
        self, behavior: Callable[..., Any], method: str, metadata: Any, streamed: bool
    ) -> Callable[..., Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            rpc = _Rpc(self, method, metadata)
            rpc.begin(context)
            if streamed:
                request = rpc.counted(request)
            else:
                rpc.bytes_in = _size(request)
            try:
                response = behavior(request, context)
            except BaseException as exc:
                rpc.end(context, exc)
                raise
            rpc.bytes_out = _size(response) if response is not None else 0
            rpc.end(context, None)
            return response

        return handle

    def _streaming(
        self, behavior: Callable[..., Any], method: str, metadata: Any, streamed: bool
    ) -> Callable[..., Iterator[Any]]:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            rpc = _Rpc(self, method, metadata)
            rpc.begin(context)
            if streamed:
                request = rpc.counted(request)
            else:
                rpc.bytes_in = _size(request)
            try:
                for message in behavior(request, context):
                    rpc.bytes_out += _size(message)
                    yield message
            except BaseException as exc:
                rpc.end(context, exc)
                raise
            rpc.end(context, None)

        return handle
