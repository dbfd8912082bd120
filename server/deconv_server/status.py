"""The one table from exception classes to gRPC status codes (docs/semantics.md, "Errors").

A raised exception is looked up along its MRO, so subclasses inherit their parent's code. Every
exception class of ``deconv_core.errors``, ``deconv.codec`` and ``deconv_server.errors`` has its
own entry (a test enforces it). Anything not in the table is a bug: INTERNAL with a generic
message, the traceback goes to the server log only.
"""

from __future__ import annotations

import logging

import grpc
from deconv import codec, wire

from deconv_core import errors as core_errors
from deconv_server import errors

__all__ = ["GENERIC_INTERNAL_MESSAGE", "STATUS_TABLE", "TRAILERS", "status_for", "trailers_for"]

_log = logging.getLogger("deconv_server")

GENERIC_INTERNAL_MESSAGE = "internal server error; the server log has the details"

#: Exception class -> status code. Entries of exact classes; lookup walks the MRO.
STATUS_TABLE: dict[type[BaseException], grpc.StatusCode] = {
    # deconv_core.errors
    core_errors.DeconvError: grpc.StatusCode.INVALID_ARGUMENT,
    core_errors.InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    core_errors.UnsupportedDtypeError: grpc.StatusCode.INVALID_ARGUMENT,
    # deconv.codec
    codec.CodecError: grpc.StatusCode.INVALID_ARGUMENT,
    codec.InvalidTensorError: grpc.StatusCode.INVALID_ARGUMENT,
    codec.TensorLimitError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # deconv_server.errors
    errors.ServerError: grpc.StatusCode.INTERNAL,
    errors.RequestError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.RequestLimitError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.ResultTooLargeError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.BusyError: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineError: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.RequestTimeoutError: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.CancelledError: grpc.StatusCode.CANCELLED,
    errors.WeightCacheMissError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.WeightCacheOffError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.SharedMemoryError: grpc.StatusCode.INVALID_ARGUMENT,
    errors.SharedMemoryOffError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.SharedMemoryNotFoundError: grpc.StatusCode.NOT_FOUND,
    errors.SharedMemoryFileError: grpc.StatusCode.NOT_FOUND,
    errors.SharedMemoryPermissionError: grpc.StatusCode.PERMISSION_DENIED,
    errors.SharedMemoryRangeError: grpc.StatusCode.OUT_OF_RANGE,
    errors.SharedMemoryLimitError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # Python: a huge allocation that failed despite the limits.
    MemoryError: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

#: Exception class -> trailing metadata of its status, for clients that act on it. A result too
#: large for one message tells the client to retry over the chunked RPC (a machine-readable
#: signal; clients never parse the message).
TRAILERS: dict[type[BaseException], tuple[tuple[str, str], ...]] = {
    errors.ResultTooLargeError: ((wire.RETRY_CHUNKED_KEY, wire.RETRY_CHUNKED_VALUE),),
    # A weight named by a digest the server does not hold: send its bytes (or stop naming it).
    errors.WeightCacheMissError: ((wire.WEIGHT_CACHE_KEY, wire.WEIGHT_CACHE_MISS),),
    errors.WeightCacheOffError: ((wire.WEIGHT_CACHE_KEY, wire.WEIGHT_CACHE_OFF),),
    # A region the server does not hold: register it again, then repeat the call.
    errors.SharedMemoryNotFoundError: ((wire.SHARED_MEMORY_KEY, wire.SHARED_MEMORY_UNKNOWN),),
    errors.SharedMemoryOffError: ((wire.SHARED_MEMORY_KEY, wire.SHARED_MEMORY_OFF),),
}

_GENERIC_MESSAGES = {
    MemoryError: "the server ran out of memory for this request; send smaller tensors",
    errors.ServerError: GENERIC_INTERNAL_MESSAGE,
}


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Status code and client-facing message for an exception raised while serving.

    Parameters
    ----------
    exc : BaseException
        The exception.

    Returns
    -------
    (grpc.StatusCode, str)
        The code of the nearest class in :data:`STATUS_TABLE`, and the exception's message; or
        INTERNAL and a generic message (the traceback is logged) when no class matches.
    """
    for cls in type(exc).__mro__:
        code = STATUS_TABLE.get(cls)
        if code is not None:
            message = _GENERIC_MESSAGES.get(cls) or str(exc) or cls.__name__
            if code is grpc.StatusCode.INTERNAL or cls is MemoryError:
                _log.error("request failed: %s", exc, exc_info=exc)
            return code, message
    _log.error("unexpected error while serving a request", exc_info=exc)
    return grpc.StatusCode.INTERNAL, GENERIC_INTERNAL_MESSAGE


def trailers_for(exc: BaseException) -> tuple[tuple[str, str], ...]:
    """Trailing metadata to send with the status of ``exc`` (usually none).

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    tuple of (str, str)
    """
    for cls in type(exc).__mro__:
        if cls in TRAILERS:
            return TRAILERS[cls]
    return ()
