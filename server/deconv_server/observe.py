"""Per-RPC observability: request ids, one access log line and the Prometheus numbers of each RPC.

:class:`ObservabilityInterceptor` (a grpc.aio interceptor, applied by the server at handler lookup:
:mod:`deconv_server.lookup`) wraps every method handler (unary and streaming, every service).
For each RPC it

- takes the request id from ``x-request-id`` metadata (printable, at most 128 characters) or
  generates one, puts it in :data:`deconv_server.logging_setup.REQUEST_ID` for the server's own
  log records and echoes it in the trailing metadata;
- counts serialized request and response bytes (handlers that read and write through the
  context report theirs with :func:`count_received` and :func:`count_sent`), the latency and the
  final status code;
- logs one record on ``deconv_server.access`` (INFO for ``deconv.v1.Deconv``, DEBUG for
  health and reflection, so probes do not flood the log) whose message is the JSON of the RPC;
- feeds :class:`deconv_server.metrics.Metrics` when metrics are on.

It must be the first interceptor so rejected calls (e.g. UNAUTHENTICATED) are logged too.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio

from deconv_server.logging_setup import ACCESS_LOGGER, REQUEST_ID
from deconv_server.metrics import Metrics

__all__ = ["REQUEST_ID_KEY", "ObservabilityInterceptor", "count_received", "count_sent"]

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
#: Wrapped handlers kept (one per registered method: a few dozen).
_MAX_WRAPPED = 1024


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
    except AttributeError:  # raw bytes, or an unparsed stand-in
        if isinstance(message, bytes | bytearray):
            return len(message)
        return int(getattr(message, "size", 0))


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
        self.tokens: list[Any] = []

    def begin(self, context: grpc.aio.ServicerContext) -> None:
        self.tokens = [REQUEST_ID.set(self.request_id), _CURRENT.set(self)]
        context.set_trailing_metadata(((REQUEST_ID_KEY, self.request_id),))
        if self.obs.metrics is not None:
            self.obs.metrics.in_flight.inc()

    def end(self, context: grpc.aio.ServicerContext, exc: BaseException | None) -> None:
        seconds = time.perf_counter() - self.start
        code = _final_code(context, exc)
        obs = self.obs
        if obs.metrics is not None:
            obs.metrics.in_flight.dec()
            obs.metrics.observe(
                self.service, self.method, code, seconds, self.bytes_in, self.bytes_out
            )
        level = logging.INFO if self.service == obs.main_service else logging.DEBUG
        if _access.isEnabledFor(level):
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
            # The JSON formatter puts the fields at the top level; the message is for text logs.
            message = f"{self.service}/{self.method} {code} {fields['duration_ms']} ms"
            _access.log(level, message, extra={"fields": fields})
        for var, token in zip((REQUEST_ID, _CURRENT), self.tokens, strict=False):
            try:
                var.reset(token)
            except ValueError:  # ended in another task's context (streams): nothing to undo
                pass
        self.tokens = []

    async def counted(self, messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for message in messages:
            self.bytes_in += _size(message)
            yield message


_CURRENT: contextvars.ContextVar[_Rpc | None] = contextvars.ContextVar(
    "deconv_current_rpc", default=None
)


def count_received(message: Any) -> None:
    """Count a request message the current RPC's handler read itself."""
    rpc = _CURRENT.get()
    if rpc is not None:
        rpc.bytes_in += _size(message)


def count_sent(message: Any) -> None:
    """Count a response message the current RPC's handler wrote itself."""
    rpc = _CURRENT.get()
    if rpc is not None:
        rpc.bytes_out += _size(message)


def _peer(context: grpc.aio.ServicerContext) -> str:
    try:
        return str(context.peer())
    except Exception:  # peer is informational only
        return ""


def _final_code(context: grpc.aio.ServicerContext, exc: BaseException | None) -> str:
    """Status name the client sees for a handler that returned or raised ``exc``."""
    if isinstance(exc, asyncio.CancelledError):
        remaining = context.time_remaining()
        return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
    try:
        code = context.code()
    except Exception:
        code = None
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int) and code:  # grpc.aio reports the raw status number
        return grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == code)).name
    if exc is not None:
        return "UNKNOWN"  # an exception escaped the handler: gRPC answers UNKNOWN
    return "OK"


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
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
        # (id of a handler, method) -> (that handler, its wrapped form)
        self._wrapped: dict[tuple[int, str], tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Wrap the handler's behaviour; unknown methods pass through untouched."""
        return self.transform(await continuation(handler_call_details), handler_call_details)

    def transform(self, handler: Any, details: grpc.HandlerCallDetails, keep: bool = False) -> Any:
        """``handler`` with its behaviour wrapped (None passes through).

        The call's metadata (its request id) is read from the context when the call starts, so
        with ``keep`` (a registered handler, not one made for this call) the wrapped handler is
        made once per handler and method and reused.
        """
        if handler is None:
            return None
        key = (id(handler), details.method)
        found = self._wrapped.get(key) if keep else None
        if found is not None and found[0] is handler:
            return found[1]
        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        wrapped = handler
        for kind, make in _KINDS:
            behavior = getattr(handler, kind)
            if behavior is not None:
                streamed = kind.startswith("stream")
                wrapped = make(self._wrap(behavior, details.method, streamed), **kw)
                break
        if keep and len(self._wrapped) < _MAX_WRAPPED:  # one per registered method
            self._wrapped[key] = (handler, wrapped)
        return wrapped

    def _wrap(
        self, behavior: Callable[..., Any], method: str, streamed: bool
    ) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                rpc = self._start(method, request, context, streamed)
                try:
                    async for message in behavior(_input(rpc, request, streamed), context):
                        rpc.bytes_out += _size(message)
                        yield message
                except BaseException as exc:
                    rpc.end(context, exc)
                    raise
                rpc.end(context, None)

            return stream

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            rpc = self._start(method, request, context, streamed)
            try:
                response = await behavior(_input(rpc, request, streamed), context)
            except BaseException as exc:
                rpc.end(context, exc)
                raise
            if response is not None:
                rpc.bytes_out += _size(response)
            rpc.end(context, None)
            return response

        return call

    def _start(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext,
        streamed: bool,
    ) -> _Rpc:
        rpc = _Rpc(self, method, context.invocation_metadata())
        rpc.begin(context)
        if not streamed:
            rpc.bytes_in = _size(request)
        return rpc


def _input(rpc: _Rpc, request: Any, streamed: bool) -> Any:
    return rpc.counted(request) if streamed else request


_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler),
    ("unary_stream", grpc.unary_stream_rpc_method_handler),
    ("stream_unary", grpc.stream_unary_rpc_method_handler),
    ("stream_stream", grpc.stream_stream_rpc_method_handler),
)
