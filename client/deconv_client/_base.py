"""Everything the blocking and the asyncio client share: all of a client but its I/O.

:class:`BaseClient` turns the constructor's arguments into channel options, credentials and the
authorization metadata; turns the arguments of ``conv``/``conv_transpose`` into a prepared call;
picks the transport (unary for small calls, the chunked RPC for large tensors or results); and
tells from a failed unary call's trailing metadata whether to repeat it over the chunked RPC.
:class:`~deconv_client.Client` and :class:`~deconv_client.AsyncClient` add only their I/O: the
gRPC module whose channel they open (``grpc`` or ``grpc.aio``), waiting for calls, iterating
over chunked responses, sleeping between health polls and closing the channel.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar

import grpc
import numpy as np
from deconv import codec, frames
from deconv.v1 import deconv_pb2 as pb
from deconv.v1 import deconv_pb2_grpc as pb_grpc
from deconv.wire import (
    DEFAULT_MAX_MESSAGE_BYTES,
    METHODS,
    RETRY_CHUNKED_KEY,
    RETRY_CHUNKED_VALUE,
    PemSource,
)

from deconv_client import _requests, _service, _split
from deconv_client._channel import channel_setup, resolve_token
from deconv_client._operators import OperatorsMixin
from deconv_client._service import ServingWait
from deconv_client._shared_memory import SharedMemory
from deconv_client._weights import WeightMemo
from deconv_client.errors import DeconvClientError, from_rpc_error

__all__ = [
    "MESSAGE_MARGIN",
    "UNARY_BYTES",
    "BaseClient",
    "ServingWait",
    "UnaryCall",
    "asks_for_chunked",
    "chunk_bytes",
    "chunked_when_asked",
    "rpc_errors",
    "unary_fits",
]

#: Largest request or result sent as one message; larger ones go in chunks.
UNARY_BYTES = 512 * 1024
#: Bytes a message needs beyond its tensor data (field tags, shapes, parameters).
MESSAGE_MARGIN = 64 * 1024

#: What ``conv`` and ``conv_transpose`` return: an ndarray, or a coroutine that yields one.
ResultT = TypeVar("ResultT")
T = TypeVar("T")


def chunk_bytes(max_message_bytes: int) -> int:
    """Data bytes per chunked message: ``codec.CHUNK_BYTES``, or less under a small limit.

    Parameters
    ----------
    max_message_bytes : int
        The client's message size limit.

    Returns
    -------
    int
    """
    return max(1, min(codec.CHUNK_BYTES, max_message_bytes // 2))


def unary_fits(prepared: _requests.Prepared, max_message_bytes: int) -> bool:
    """Whether ``prepared`` goes unary: small tensors and a small result of known size.

    Above about 512 KiB a unary message costs more than its chunks (gRPC Python handles one large
    message slowly). Above the message size limit a request cannot travel and a result would be
    refused by the client's own gRPC, so such calls start chunked. A result of unknown size (shapes
    the client cannot read, which the server rejects) goes unary when the request is small: the
    server's answer is then one quick INVALID_ARGUMENT (and a result too large for one message
    would come back with the retry signal).

    Parameters
    ----------
    prepared : Prepared
        The call, with its tensor bytes and result size.
    max_message_bytes : int
        The client's limit on one message, sent or received.

    Returns
    -------
    bool
    """
    largest = max(prepared.nbytes, prepared.output_nbytes or 0)
    return largest <= UNARY_BYTES and largest + MESSAGE_MARGIN <= max_message_bytes


def asks_for_chunked(error: DeconvClientError) -> bool:
    """Whether the server asks for the request again over the chunked RPC.

    The server says so in the trailing metadata (``deconv.wire.RETRY_CHUNKED_KEY`` set to
    ``RETRY_CHUNKED_VALUE``) when a unary result is too large for one message; the status message
    is never read.

    Parameters
    ----------
    error : DeconvClientError
        The failed unary call's error, with its trailing metadata.

    Returns
    -------
    bool
    """
    return (RETRY_CHUNKED_KEY, RETRY_CHUNKED_VALUE) in error.trailing_metadata


@contextlib.contextmanager
def rpc_errors() -> Iterator[None]:
    """Raise a ``grpc.RpcError`` (blocking or asyncio) of the block as its typed client error.

    The typed error carries the code, message and trailing metadata, with the ``grpc.RpcError`` as
    its ``__cause__``.
    """
    try:
        yield
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc


@contextlib.contextmanager
def chunked_when_asked() -> Iterator[None]:
    """Swallow the block's client error when the server asks for the chunked RPC instead.

    Wrap the unary attempt in it; after a swallowed error, make the chunked call.
    """
    try:
        yield
    except DeconvClientError as exc:
        if not asks_for_chunked(exc):
            raise


@dataclass(frozen=True)
class UnaryCall(Generic[T]):
    """One unary call to make: the stub method, its request and how to read the response.

    Attributes
    ----------
    method : callable
        A unary-unary multi-callable of the channel.
    request : message or bytes
    decode : callable
        Response -> the value the public method returns.
    authorized : bool
        Send the authorization metadata (health checks go without).
    """

    method: Callable[..., Any]
    request: Any
    decode: Callable[[Any], T]
    authorized: bool = True


class BaseClient(OperatorsMixin, Generic[ResultT]):
    """A client of the ``deconv.v1.Deconv`` service without its I/O.

    Subclasses set :attr:`_grpc` and implement ``_run``; see :class:`deconv_client.Client` for
    the constructor's arguments.
    """

    #: The gRPC module whose channel the client opens: ``grpc`` or ``grpc.aio``.
    _grpc: ClassVar[ModuleType]

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        timeout: float | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        load_balancing: str | None = None,
        retry: bool = True,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        options: Sequence[tuple[str, Any]] = (),
        root_certificates: PemSource | None = None,
        private_key: PemSource | None = None,
        certificate_chain: PemSource | None = None,
        tls: bool | None = None,
        server_name: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        weight_cache: bool = True,
        split_batch: bool = False,
        shared_memory: str | os.PathLike[str] | None = None,
    ) -> None:
        # split_batch's replica clients are made from these same arguments (deconv_client._split).
        self._replicas = _split.Replicas(target, dict(locals()))
        target = self._replicas.channel_target
        credentials, opts = channel_setup(
            target,
            max_message_bytes=max_message_bytes,
            load_balancing=load_balancing,
            retry=retry,
            credentials=credentials,
            options=options,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
            tls=tls,
            server_name=server_name,
        )
        token = resolve_token(token, token_file)
        if credentials is not None:
            self._channel = self._grpc.secure_channel(target, credentials, options=opts)
        else:
            self._channel = self._grpc.insecure_channel(target, options=opts)
        self.target = target
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._stub = pb_grpc.DeconvStub(self._channel)
        # Data messages of the chunked RPCs are framed and read without protobuf (deconv.frames).
        self._chunked_calls = {
            op: self._channel.stream_stream(
                m.path(m.chunked),
                request_serializer=frames.chunk_serializer(m.chunk),
                response_deserializer=frames.chunk_parser(pb.TensorChunk),
            )
            for op, m in METHODS.items()
        }
        self._weights = WeightMemo(weight_cache)
        # conv/conv_transpose through files of the server's host (deconv_client._shared_memory)
        self._shm = SharedMemory(shared_memory, self) if shared_memory is not None else None
        self._health_check = self._channel.unary_unary(_service.HEALTH_CHECK_METHOD)

    # -- compute -----------------------------------------------------------------------------

    def conv(
        self,
        x: Any,
        weight: Any,
        bias: Any = None,
        *,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        data_format: str = "channels_first",
        weight_format: str = "torch",
        padding_mode: str = "zeros",
    ) -> ResultT:
        """N-d convolution on the server; see ``deconv_core.conv`` for every argument.

        Returns
        -------
        ndarray
            The result in the dtype and layout of ``x`` (from an AsyncClient, await it). A
            client made with ``split_batch=True`` computes parts of the batch on its replicas
            concurrently and returns the same bits (``deconv_client._split``).

        Raises
        ------
        deconv_client.errors.DeconvClientError
            The subclass of the status code (InvalidArgumentError is also a ValueError).
        """
        prepared = _requests.build_request(
            "conv",
            x,
            weight,
            bias,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            data_format=data_format,
            weight_format=weight_format,
            padding_mode=padding_mode,
        )
        return _split.run(self, prepared)  # across the replicas with split_batch=True

    def conv_transpose(
        self,
        x: Any,
        weight: Any,
        bias: Any = None,
        *,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        output_shape: Any = None,
        dilation: Any = 1,
        groups: int = 1,
        data_format: str = "channels_first",
        weight_format: str = "torch",
        convention: str = "default",
    ) -> ResultT:
        """N-d transposed convolution on the server; see ``deconv_core.conv_transpose``.

        Returns
        -------
        ndarray
            The result in the dtype and layout of ``x`` (from an AsyncClient, await it). A
            client made with ``split_batch=True`` computes parts of the batch on its replicas
            concurrently and returns the same bits (``deconv_client._split``).

        Raises
        ------
        deconv_client.errors.DeconvClientError
            The subclass of the status code (InvalidArgumentError is also a ValueError).
        """
        prepared = _requests.build_request(
            "conv_transpose",
            x,
            weight,
            bias,
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            output_shape=output_shape,
            dilation=dilation,
            groups=groups,
            data_format=data_format,
            weight_format=weight_format,
            convention=convention,
        )
        return _split.run(self, prepared)  # across the replicas with split_batch=True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r}, timeout={self.timeout!r})"

    # -- the steps the subclasses' I/O runs --------------------------------------------------

    def _run(self, prepared: _requests.Prepared) -> ResultT:
        """Make the call ``prepared``: :meth:`_unary_fits`, :meth:`_compute_call` and
        :func:`chunked_when_asked`, else (or after) :meth:`_start_chunked`."""
        raise NotImplementedError

    def _unary_fits(self, prepared: _requests.Prepared) -> bool:
        return unary_fits(prepared, self.max_message_bytes)

    def _compute_call(self, prepared: _requests.Prepared) -> UnaryCall[np.ndarray]:
        """The unary Conv/TransposedConv call of ``prepared``, decoding to the result."""
        dtype = prepared.input_dtype
        return UnaryCall(
            getattr(self._stub, METHODS[prepared.op].unary),
            prepared.unary_request(),
            lambda response: _requests.decode_output(response.output, dtype),
        )

    def _unary_call(self, method: Any, request: Any, decode: Callable[[Any], Any]) -> Any:
        return self._unary(UnaryCall(method, request, decode))

    def _health_call(self, service: str) -> UnaryCall[str]:
        return UnaryCall(
            self._health_check,
            _service.encode_health(service),
            _service.decode_health,
            authorized=False,
        )

    def _info_call(self) -> UnaryCall[_service.ServerInfo]:
        return UnaryCall(self._stub.GetServerInfo, pb.GetServerInfoRequest(), _service.server_info)

    def _start(self, call: UnaryCall[Any]) -> Any:
        """Invoke ``call``: its response (blocking stub) or an awaitable of it (asyncio stub)."""
        metadata = self._metadata if call.authorized else None
        return call.method(call.request, timeout=self.timeout, metadata=metadata)

    def _start_chunked(self, prepared: _requests.Prepared) -> Any:
        """Start the chunked RPC of ``prepared``; iterate over it (blocking client)."""
        stream = self._chunked_calls[prepared.op]
        return stream(self._chunks(prepared), timeout=self.timeout, metadata=self._metadata)

    def _chunks(self, prepared: _requests.Prepared) -> Any:
        """The request messages of ``prepared``'s chunked RPC."""
        methods = METHODS[prepared.op]
        return prepared.chunks(methods.chunk, chunk_bytes(self.max_message_bytes))
