"""Exceptions the server raises itself (the core and the codec have their own).

Each class maps to exactly one gRPC status code in :mod:`deconv_server.status`.
"""

from __future__ import annotations

__all__ = [
    "BusyError",
    "CancelledError",
    "DeadlineError",
    "RequestError",
    "RequestLimitError",
    "RequestTimeoutError",
    "ResultTooLargeError",
    "ServerError",
    "SharedMemoryError",
    "SharedMemoryFileError",
    "SharedMemoryLimitError",
    "SharedMemoryNotFoundError",
    "SharedMemoryOffError",
    "SharedMemoryPermissionError",
    "SharedMemoryRangeError",
    "WeightCacheMissError",
    "WeightCacheOffError",
]


class ServerError(Exception):
    """Base class of the server's own errors."""


class RequestError(ServerError, ValueError):
    """The request is malformed: a missing tensor, an unknown enum value (INVALID_ARGUMENT)."""


class RequestLimitError(ServerError):
    """The request or its result is over a configured size limit (RESOURCE_EXHAUSTED)."""


class ResultTooLargeError(RequestLimitError):
    """The result does not fit one response message; the chunked RPC would carry it.

    Answered RESOURCE_EXHAUSTED with the trailing metadata ``deconv.wire.RETRY_CHUNKED_KEY``,
    so a client can retry over the chunked RPC without reading the message.
    """


class BusyError(ServerError):
    """Too many requests are in flight, or the server is shutting down (UNAVAILABLE)."""


class DeadlineError(ServerError, TimeoutError):
    """The deadline passed before the core was free (DEADLINE_EXCEEDED)."""


class RequestTimeoutError(DeadlineError):
    """A phase the caller controls took too long: sending a request message, the whole upload,
    or reading a response message (DEADLINE_EXCEEDED; the call's buffers are freed)."""


class CancelledError(ServerError):
    """The caller cancelled the call before the core was free (CANCELLED)."""


class WeightCacheMissError(ServerError):
    """The request names its weight by a digest the server does not hold (FAILED_PRECONDITION).

    Answered with the trailing metadata ``deconv.wire.WEIGHT_CACHE_KEY: miss``: the client sends
    the call again with the weight's bytes.
    """


class WeightCacheOffError(WeightCacheMissError):
    """A weight named by digest while the server's weight cache is off (FAILED_PRECONDITION,
    trailing metadata ``deconv.wire.WEIGHT_CACHE_KEY: off``)."""


class SharedMemoryError(ServerError):
    """A malformed shared-memory request: a bad name, key, window or reference
    (INVALID_ARGUMENT; :mod:`deconv_server.shared_memory`)."""


class SharedMemoryOffError(SharedMemoryError):
    """Shared memory asked of a server without a shared-memory directory (FAILED_PRECONDITION,
    trailing metadata ``deconv.wire.SHARED_MEMORY_KEY: off``)."""


class SharedMemoryNotFoundError(SharedMemoryError):
    """A request names a region the server does not hold: never registered, unregistered,
    expired, its file removed, or a restarted server (NOT_FOUND, trailing metadata
    ``deconv.wire.SHARED_MEMORY_KEY: unknown``: register it again and repeat the call)."""


class SharedMemoryFileError(SharedMemoryError):
    """The file a registration names does not exist in the shared-memory directory (NOT_FOUND,
    without the re-register trailer)."""


class SharedMemoryPermissionError(SharedMemoryError):
    """A region of another owner, or a result asked into a region the server may only read
    (PERMISSION_DENIED)."""


class SharedMemoryRangeError(SharedMemoryError):
    """A window outside its region or file, or a short read or write: the file shrank
    (OUT_OF_RANGE)."""


class SharedMemoryLimitError(SharedMemoryError):
    """One region more than the server's limits allow, per owner or in all
    (RESOURCE_EXHAUSTED)."""
