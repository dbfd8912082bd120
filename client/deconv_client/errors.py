"""Typed client errors, one class per gRPC status code.

Every failed call raises a :class:`DeconvClientError` subclass chosen by the status code, with
the server's message as ``str(err)``, the code as ``err.code``, the call's trailing metadata as
``err.trailing_metadata`` and the original ``grpc.RpcError`` as ``__cause__``. Builtin bases make
plain ``except`` clauses work: INVALID_ARGUMENT is also a :class:`ValueError`, DEADLINE_EXCEEDED
a :class:`TimeoutError`, UNAVAILABLE a :class:`ConnectionError`. Arguments the client can reject
before sending (a dtype that cannot travel, an unknown padding mode) raise
:class:`InvalidArgumentError` too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc

__all__ = [
    "STATUS_ERRORS",
    "AbortedError",
    "AlreadyExistsError",
    "CancelledError",
    "DataLossError",
    "DeadlineExceededError",
    "DeconvClientError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "error_class",
    "from_rpc_error",
]


#: Trailing metadata of a failed call: (key, value) pairs; values of "-bin" keys are bytes.
Metadata = tuple[tuple[str, str | bytes], ...]


class DeconvClientError(Exception):
    """Base class of every error the client raises.

    Parameters
    ----------
    message : str
        The server's status message (or the client's own, for local checks).
    code : grpc.StatusCode
        The status code.
    trailing_metadata : sequence of (str, str or bytes)
        The call's trailing metadata, as (key, value) pairs (empty for local checks).

    Attributes
    ----------
    message : str
    code : grpc.StatusCode
    trailing_metadata : tuple of (str, str or bytes)
        Machine-readable signals of the server, e.g. the request id or the chunked-retry key of
        :mod:`deconv.wire`; decide on these, never on the message text.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode | None = None,
        trailing_metadata: Iterable[tuple[str, str | bytes]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.trailing_metadata: Metadata = tuple((k, v) for k, v in trailing_metadata)

    def __str__(self) -> str:
        return self.message


class CancelledError(DeconvClientError):
    """CANCELLED: the call was cancelled, usually by the caller."""

    code = grpc.StatusCode.CANCELLED


class UnknownError(DeconvClientError):
    """UNKNOWN: an error the server did not classify."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgumentError(DeconvClientError, ValueError):
    """INVALID_ARGUMENT: a bad tensor, shape, dtype or parameter; the message says which."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(DeconvClientError, TimeoutError):
    """DEADLINE_EXCEEDED: the call's timeout passed."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFoundError(DeconvClientError):
    """NOT_FOUND: e.g. a health check for a service the server does not know."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(DeconvClientError):
    """ALREADY_EXISTS."""

    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDeniedError(DeconvClientError):
    """PERMISSION_DENIED: the credentials do not allow this call."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(DeconvClientError):
    """RESOURCE_EXHAUSTED: a tensor, result or message over the server's size limits."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(DeconvClientError):
    """FAILED_PRECONDITION."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(DeconvClientError):
    """ABORTED."""

    code = grpc.StatusCode.ABORTED


class OutOfRangeError(DeconvClientError):
    """OUT_OF_RANGE."""

    code = grpc.StatusCode.OUT_OF_RANGE


class UnimplementedError(DeconvClientError):
    """UNIMPLEMENTED: the server does not have this method (an older server?)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(DeconvClientError):
    """INTERNAL: a server bug; the details are in the server's log."""

    code = grpc.StatusCode.INTERNAL


class UnavailableError(DeconvClientError, ConnectionError):
    """UNAVAILABLE: unreachable, busy or shutting down; safe to retry."""

    code = grpc.StatusCode.UNAVAILABLE


class DataLossError(DeconvClientError):
    """DATA_LOSS."""

    code = grpc.StatusCode.DATA_LOSS


class UnauthenticatedError(DeconvClientError):
    """UNAUTHENTICATED: missing or wrong credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


#: Status code -> exception class, for every code but OK.
STATUS_ERRORS: dict[grpc.StatusCode, type[DeconvClientError]] = {
    cls.code: cls
    for cls in (
        CancelledError,
        UnknownError,
        InvalidArgumentError,
        DeadlineExceededError,
        NotFoundError,
        AlreadyExistsError,
        PermissionDeniedError,
        ResourceExhaustedError,
        FailedPreconditionError,
        AbortedError,
        OutOfRangeError,
        UnimplementedError,
        InternalError,
        UnavailableError,
        DataLossError,
        UnauthenticatedError,
    )
}


def error_class(code: grpc.StatusCode) -> type[DeconvClientError]:
    """Exception class of a status code (the base class for codes without one)."""
    return STATUS_ERRORS.get(code, DeconvClientError)


def from_rpc_error(error: grpc.RpcError) -> DeconvClientError:
    """Typed error for a failed call; raise it ``from error`` to keep the cause.

    Parameters
    ----------
    error : grpc.RpcError
        Raised by a stub (sync or asyncio).

    Returns
    -------
    DeconvClientError
    """
    code = _ask(error, "code") or grpc.StatusCode.UNKNOWN
    message = _ask(error, "details") or f"call failed with {code.name}"
    return error_class(code)(message, code, _ask(error, "trailing_metadata") or ())


def _ask(error: grpc.RpcError, name: str) -> Any:
    """``error.name()``, or None when the error has no such method (a bare grpc.RpcError)."""
    method = getattr(error, name, None)
    return method() if callable(method) else None
