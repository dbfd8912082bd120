"""deconv_client: Python client of the deconv gRPC service (numpy in, numpy out).

>>> from deconv_client import Client
>>> with Client("127.0.0.1:50051", timeout=10) as c:          # doctest: +SKIP
...     y = c.conv_transpose(x, w, b, stride=2, padding=1)

:class:`Client` (blocking) and :class:`AsyncClient` (asyncio) have the methods ``conv`` and
``conv_transpose`` with exactly the signatures of ``deconv_core``, plus ``health``,
``wait_until_serving`` and ``server_info``. Errors are :class:`DeconvClientError` subclasses
keyed by gRPC status code (see :mod:`deconv_client.errors`). :mod:`deconv_client.layers` turns
PyTorch, Keras and ONNX layers into calls (``layer(client, x)``), importing no framework;
``deconv explain`` (:mod:`deconv_client.cli`) explains a call without a server.
:func:`frozen_array` makes a read-only copy of a weight that the client hashes for the server's
weight cache once, instead of on every call. This package
needs only grpcio, protobuf and numpy: it never imports numba, deconv_core or deconv_server.
"""

from deconv_client import errors
from deconv_client._operators import DeconvolveResult, Gradients
from deconv_client._service import ServerInfo
from deconv_client._weights import frozen_array
from deconv_client.aio import AsyncClient
from deconv_client.client import Client
from deconv_client.errors import (
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    DataLossError,
    DeadlineExceededError,
    DeconvClientError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
)

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "AsyncClient",
    "CancelledError",
    "Client",
    "DataLossError",
    "DeadlineExceededError",
    "DeconvClientError",
    "DeconvolveResult",
    "FailedPreconditionError",
    "Gradients",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "ServerInfo",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "errors",
    "frozen_array",
]
