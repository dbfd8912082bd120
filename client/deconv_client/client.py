"""Synchronous client: :class:`Client`, numpy in, numpy out, over one gRPC channel."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import numpy as np
from deconv import codec
from deconv.v1 import deconv_pb2 as pb
from deconv.v1 import deconv_pb2_grpc as pb_grpc

from deconv_client import _requests, _service
from deconv_client._channel import (
    DEFAULT_MAX_MESSAGE_BYTES,
    PemSource,
    channel_setup,
    resolve_token,
)
from deconv_client.errors import (
    DeadlineExceededError,
    DeconvClientError,
    ResourceExhaustedError,
    from_rpc_error,
)

__all__ = ["Client"]

#: Largest request or expected result sent as one message; larger ones go in chunks.
UNARY_BYTES = 512 * 1024
#: Bytes a request needs beyond its tensor data (field tags, shapes, parameters).
_MESSAGE_MARGIN = 64 * 1024


def chunk_bytes(max_message_bytes: int) -> int:
    """Data bytes per chunked message: ``codec.CHUNK_BYTES``, or less under a small limit."""
    return max(1, min(codec.CHUNK_BYTES, max_message_bytes // 2))


def unary_fits(prepared: _requests.Prepared, max_message_bytes: int) -> bool:
    """Unary RPC for small calls; chunked when the request or the (estimated) result is large.

    Above about 512 KiB a unary message costs more than its chunks (gRPC Python handles one large
    message slowly), and above the message size limit it cannot travel at all.
    """
    if prepared.nbytes + _MESSAGE_MARGIN > max_message_bytes:
        return False
    return max(prepared.nbytes, prepared.output_estimate) <= UNARY_BYTES


def _too_large_for_one_message(exc: ResourceExhaustedError) -> bool:
    """The server refused a result too large for one message, or ours refused to receive it."""
    text = str(exc)
    return codec.CHUNKED_HINT in text or "Received message larger than max" in text


#: op -> (unary method, chunked method, chunked request message type)
_METHODS = {
    "conv": ("Conv", "ConvChunked", pb.ConvRequestChunk),
    "conv_transpose": ("TransposedConv", "TransposedConvChunked", pb.TransposedConvRequestChunk),
}


class Client:
    """Blocking client of the ``deconv.v1.Deconv`` service.

    :meth:`conv` and :meth:`conv_transpose` take exactly the arguments of ``deconv_core.conv``
    and ``deconv_core.conv_transpose`` and return the same arrays; failures raise
    :class:`~deconv_client.errors.DeconvClientError` subclasses keyed by status code.
    Calls whose tensors or expected result exceed 512 KiB (or ``max_message_bytes``) travel
    over the chunked streaming RPCs automatically, and so do results the server reports as too
    large for one message. Thread-safe: share one client between threads.

    Parameters
    ----------
    target : str
        "host:port", or a gRPC URI such as "dns:///deconv:50051" or
        "ipv4:///10.0.0.1:50051,10.0.0.2:50051".
    timeout : float, optional
        Deadline of every call, in seconds (default: none).
    max_message_bytes : int
        Largest message sent and accepted (default 256 MiB, like the server); keep it at or
        below the server's limit. Larger tensors are sent in chunks.
    load_balancing : {"round_robin", "pick_first"}, optional
        Default: round_robin when the target lists several addresses or is a dns:/// name.
    retry : bool
        Retry UNAVAILABLE Deconv calls with backoff, up to 5 attempts (default True).
    credentials : grpc.ChannelCredentials, optional
        Ready-made channel credentials (exclusive with the PEM arguments below).
    root_certificates : bytes or path, optional
        PEM CA bundle that signed the server certificate; turns TLS on.
    private_key, certificate_chain : bytes or path, optional
        PEM client key and certificate for mutual TLS.
    tls : bool, optional
        TLS with the system CA roots even without ``root_certificates``.
    server_name : str, optional
        Name to verify the server certificate against, when it differs from the target host.
    token : str, optional
        Sent as ``authorization: Bearer <token>`` on every Deconv call (never on health).
    token_file : str or path, optional
        File holding the token (exclusive with ``token``).
    options : sequence of (str, value)
        Extra gRPC channel arguments; they win over the client's own.
    """

    def __init__(
        self,
        target: str,
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
    ) -> None:
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
            self._channel = grpc.secure_channel(target, credentials, options=opts)
        else:
            self._channel = grpc.insecure_channel(target, options=opts)
        self.target = target
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._stub = pb_grpc.DeconvStub(self._channel)
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
    ) -> np.ndarray:
        """N-d convolution on the server; see ``deconv_core.conv`` for every argument.

        Returns
        -------
        ndarray
            The result in the dtype and layout of ``x``.

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
        )
        return self._run(prepared)

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
    ) -> np.ndarray:
        """N-d transposed convolution on the server; see ``deconv_core.conv_transpose``.

        Returns
        -------
        ndarray
            The result in the dtype and layout of ``x``.

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
        )
        return self._run(prepared)

    # -- service -----------------------------------------------------------------------------

    def health(self, service: str = "") -> str:
        """``grpc.health.v1`` status of ``service`` ("" = the whole server): "SERVING", ...

        Raises
        ------
        deconv_client.errors.DeconvClientError
            Unreachable (UnavailableError), unknown service (NotFoundError), ...
        """
        raw = self._call(self._health_check, _service.encode_health(service), metadata=False)
        return _service.decode_health(raw)

    def wait_until_serving(self, timeout: float = 60.0, service: str = "") -> None:
        """Poll :meth:`health` until SERVING.

        Raises
        ------
        deconv_client.errors.DeadlineExceededError
            Not SERVING within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        status = "UNREACHABLE"
        while time.monotonic() < deadline:
            try:
                status = self.health(service)
            except DeconvClientError as exc:
                status = exc.code.name
            if status == "SERVING":
                return
            time.sleep(0.05)
        raise DeadlineExceededError(
            f"{self.target} not SERVING after {timeout} s (last status {status})"
        )

    def server_info(self) -> _service.ServerInfo:
        """Version, dtypes, ranks, limits, runtime, instance id and counters of the server."""
        return _service.server_info(self._call(self._stub.GetServerInfo, pb.GetServerInfoRequest()))

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.target!r}, timeout={self.timeout!r})"

    def _run(self, prepared: _requests.Prepared) -> np.ndarray:
        """Unary when the tensors fit in a message, else (or when the result does not) chunked."""
        unary, chunked, chunk_type = _METHODS[prepared.op]
        if self._unary(prepared):
            try:
                response = self._call(getattr(self._stub, unary), prepared.unary_request())
                return _requests.decode_output(response.output, prepared.input_dtype)
            except ResourceExhaustedError as exc:
                if not _too_large_for_one_message(exc):
                    raise
        assembler = _requests.OutputAssembler(prepared.input_dtype)
        try:
            for message in getattr(self._stub, chunked)(
                prepared.chunks(chunk_type, chunk_bytes(self.max_message_bytes)),
                timeout=self.timeout,
                metadata=self._metadata,
            ):
                assembler.add(message)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        return assembler.result()

    def _unary(self, prepared: _requests.Prepared) -> bool:
        return unary_fits(prepared, self.max_message_bytes)

    def _call(self, method: Callable[..., Any], request: Any, *, metadata: bool = True) -> Any:
        try:
            return method(
                request, timeout=self.timeout, metadata=self._metadata if metadata else None
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
