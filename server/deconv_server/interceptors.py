"""Interceptors that gate Deconv RPCs: the drain gate and bearer-token authentication.

Both act only on methods of ``deconv.v1.Deconv`` (:data:`deconv.wire.SERVICE_NAME`); health and
reflection always pass, so probes and tools keep working while the server drains or when they
hold no token. A refused call gets a handler of the same streaming kind as the real one, which
aborts with the status before reading any request message of a streaming call (the compute
RPCs), so a refused caller makes the server hold no more than gRPC's flow-control window.
Both are grpc.aio interceptors; the server applies them at handler lookup instead
(:mod:`deconv_server.lookup`, through their synchronous ``transform``).
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import grpc.aio
from deconv.wire import SERVICE_NAME

__all__ = ["DrainGate", "TokenAuth", "abort_keeping_trailers", "is_deconv_method", "rejecting"]

#: What a rejecting handler runs: ``async (request or request iterator, context)``, aborting.
Reject = Callable[[Any, grpc.aio.ServicerContext], Any]

_PREFIX = f"/{SERVICE_NAME}/"


async def abort_keeping_trailers(
    context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str
) -> None:
    """``context.abort`` that keeps the trailing metadata already set (the request id)."""
    await context.abort(code, message, trailing_metadata=tuple(context.trailing_metadata() or ()))


def is_deconv_method(method: str) -> bool:
    """True when the full method path ``method`` belongs to the Deconv service."""
    return method.startswith(_PREFIX)


def rejecting(handler: grpc.RpcMethodHandler, reject: Reject) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as ``handler`` that runs ``reject``.

    Parameters
    ----------
    handler : grpc.RpcMethodHandler
        The handler the call would have had.
    reject : callable
        Called with the request (or request iterator) and the context; aborts the call.

    Returns
    -------
    grpc.RpcMethodHandler
    """
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(reject)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(reject)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(reject)
    return grpc.unary_unary_rpc_method_handler(reject)


class _DeconvGate(grpc.aio.ServerInterceptor):
    """Hands Deconv RPCs that :meth:`_admits` refuses a handler that runs :meth:`_reject`.

    Health and reflection always pass.
    """

    def _admits(self, details: grpc.HandlerCallDetails) -> bool:
        raise NotImplementedError

    @staticmethod
    async def _reject(request: Any, context: grpc.aio.ServicerContext) -> None:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """The call's handler, or a rejecting one for a Deconv RPC the gate refuses."""
        return self.transform(await continuation(handler_call_details), handler_call_details)

    def transform(
        self, handler: grpc.RpcMethodHandler | None, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        """``handler``, or a rejecting one for a Deconv RPC the gate refuses."""
        if handler is None or not is_deconv_method(details.method) or self._admits(details):
            return handler
        return rejecting(handler, self._reject)


class DrainGate(_DeconvGate):
    """Once closed, answer every new Deconv RPC UNAVAILABLE (health and reflection stay open)."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    def close(self) -> None:
        """Start refusing new Deconv RPCs."""
        self._closed.set()

    def _admits(self, details: grpc.HandlerCallDetails) -> bool:
        return not self._closed.is_set()

    @staticmethod
    async def _reject(request: Any, context: grpc.aio.ServicerContext) -> None:
        await abort_keeping_trailers(
            context, grpc.StatusCode.UNAVAILABLE, "server shutting down: retry on another replica"
        )


class TokenAuth(_DeconvGate):
    """Require ``authorization: Bearer <token>`` on Deconv RPCs (health/reflection stay open).

    Parameters
    ----------
    token : str or sequence of str
        The token clients must send, or several (one per tenant: any of them is accepted).
        Each is compared in constant time, and every one is compared on every call.
    """

    def __init__(self, token: str | Sequence[str]) -> None:
        tokens = (token,) if isinstance(token, str) else tuple(token)
        self._expected = tuple(f"Bearer {t}".encode() for t in tokens)

    @staticmethod
    async def _reject(request: Any, context: grpc.aio.ServicerContext) -> None:
        await abort_keeping_trailers(
            context,
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or wrong credentials: send metadata 'authorization: Bearer <token>'",
        )

    def _admits(self, details: grpc.HandlerCallDetails) -> bool:
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                given = value if isinstance(value, bytes) else str(value).encode()
                matched = False
                for expected in self._expected:  # no early exit: the time names no token
                    matched |= hmac.compare_digest(given, expected)
                if matched:
                    return True
        return False
