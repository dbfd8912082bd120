"""Synchronous client: :class:`Client`, numpy in, numpy out, over one gRPC channel.

Only the blocking I/O lives here; the arguments, the transport choice and the error handling are
:class:`deconv_client._base.BaseClient`'s, shared with :class:`deconv_client.AsyncClient`.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import grpc
import numpy as np

from deconv_client import _requests, _service
from deconv_client._base import BaseClient, ServingWait, UnaryCall, chunked_when_asked, rpc_errors
from deconv_client._operators import DeconvolveResult, update_of
from deconv_client._weights import weight_missed
from deconv_client.errors import DataLossError, DeconvClientError

__all__ = ["Client"]

T = TypeVar("T")


class Client(BaseClient[np.ndarray]):
    """Blocking client of the ``deconv.v1.Deconv`` service.

    :meth:`conv` and :meth:`conv_transpose` take exactly the arguments of ``deconv_core.conv``
    and ``deconv_core.conv_transpose`` and return the same arrays; failures raise
    :class:`~deconv_client.errors.DeconvClientError` subclasses keyed by status code.
    Calls whose tensors or result exceed 512 KiB (or ``max_message_bytes``) travel over the
    chunked streaming RPCs automatically, and so do results the server reports as too large for
    one message (it says so in the trailing metadata). Thread-safe: share one client between
    threads.

    Parameters
    ----------
    target : str or sequence of str
        "host:port", or a gRPC URI such as "dns:///deconv:50051" or
        "ipv4:///10.0.0.1:50051,10.0.0.2:50051"; or a list of replica targets (balanced round
        robin over one channel, names resolved now).
    timeout : float, optional
        Deadline of every call, in seconds (default: none).
    max_message_bytes : int
        Largest message sent and accepted (default 256 MiB, like the server); keep it at or
        below the server's limit. Larger tensors and results travel in chunks.
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
    weight_cache : bool
        Name weights of 64 KiB or more by their digest once sent, so repeated calls with the
        same weight send none of its bytes (default True; see ``deconv_client._weights``).
    shared_memory : str or path, optional
        The server's shared-memory directory as this process sees it (same host): ``conv`` and
        ``conv_transpose`` then pass their tensors and results through files the client creates
        there instead of gRPC messages (see ``deconv_client._shared_memory``); ``close()``
        unregisters and deletes them.
    split_batch : bool
        Split each ``conv``/``conv_transpose`` batch of two images or more into one contiguous
        part per replica (the addresses the target names, a dns:/// name resolved once),
        computed concurrently over one channel per replica and concatenated in order: the same
        bits as one call. UNAVAILABLE parts move to another replica; any other error fails the
        call and cancels the other parts; ``timeout`` bounds the whole call (default False; a
        client setting, so ``conv``/``conv_transpose`` keep the core's signatures; see
        ``deconv_client._split``).
    """

    _grpc = grpc

    def health(self, service: str = "") -> str:
        """``grpc.health.v1`` status of ``service`` ("" = the whole server): "SERVING", ...

        Raises
        ------
        deconv_client.errors.DeconvClientError
            Unreachable (UnavailableError), unknown service (NotFoundError), ...
        """
        return self._unary(self._health_call(service))

    def wait_until_serving(self, timeout: float = 60.0, service: str = "") -> None:
        """Poll :meth:`health` until SERVING.

        Raises
        ------
        deconv_client.errors.DeadlineExceededError
            Not SERVING within ``timeout`` seconds.
        """
        wait = ServingWait(self.target, timeout)
        while wait.again(self._health_status(service)):
            time.sleep(wait.interval)

    def server_info(self) -> _service.ServerInfo:
        """Version, dtypes, ranks, limits, runtime, instance id and counters of the server."""
        return self._unary(self._info_call())

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        if self._shm is not None:
            self._shm.close(self)  # unregister the regions, delete the files
        self._replicas.close()  # split_batch's replica channels and thread pool
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, prepared: _requests.Prepared) -> np.ndarray:
        """Name the weight by digest when sent before; with its bytes again after a miss."""
        prepared = self._weights.attach(prepared)
        if prepared.by_reference:
            with weight_missed(self._weights, prepared):
                return self._send(prepared)
            prepared = prepared.with_weight_bytes()
        return self._send(prepared)

    def _send(self, prepared: _requests.Prepared) -> np.ndarray:
        """Unary when the call fits in a message, else (or when the server asks) chunked."""
        if self._shm is not None:
            return self._shm.call(self, prepared)
        if self._unary_fits(prepared):
            with chunked_when_asked():
                return self._unary(self._compute_call(prepared))
        assembler = _requests.OutputAssembler(prepared.input_dtype)
        with rpc_errors():
            for message in self._start_chunked(prepared):
                assembler.add(message)
        return assembler.result()

    def _unary(self, call: UnaryCall[T]) -> T:
        with rpc_errors():
            return call.decode(self._start(call))

    def _updates(self, request: Any, dtype: np.dtype, progress: Any) -> DeconvolveResult:
        with rpc_errors():
            stream = self._stub.DeconvolveStream(
                request, timeout=self.timeout, metadata=self._metadata
            )
            for update in stream:
                result = update_of(update, dtype, progress)
                if result is not None:
                    return result
        raise DataLossError("deconvolve: the stream ended without a result")

    def _health_status(self, service: str) -> str:
        try:
            return self.health(service)
        except DeconvClientError as exc:
            return exc.code.name
