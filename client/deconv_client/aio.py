"""asyncio client: :class:`AsyncClient`, the twin of :class:`deconv_client.Client` on grpc.aio."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import grpc.aio
import numpy as np
from deconv.v1 import deconv_pb2 as pb
from deconv.v1 import deconv_pb2_grpc as pb_grpc

from deconv_client import _requests, _service
from deconv_client._channel import (
    DEFAULT_MAX_MESSAGE_BYTES,
    PemSource,
    channel_setup,
    resolve_token,
)
from deconv_client.client import (
    _METHODS,
    _too_large_for_one_message,
    chunk_bytes,
    unary_fits,
)
from deconv_client.errors import (
    DeadlineExceededError,
    DeconvClientError,
    ResourceExhaustedError,
    from_rpc_error,
)

__all__ = ["AsyncClient"]


class AsyncClient:
    """asyncio client of the ``deconv.v1.Deconv`` service; every method is a coroutine.

    Same arguments, methods and errors as :class:`deconv_client.Client`. Create it inside the
    event loop that uses it; close it with ``await client.close()`` or ``async with``.
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
            self._channel = grpc.aio.secure_channel(target, credentials, options=opts)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=opts)
        self.target = target
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._stub = pb_grpc.DeconvStub(self._channel)
        self._health_check = self._channel.unary_unary(_service.HEALTH_CHECK_METHOD)

    async def conv(
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
        """N-d convolution on the server; see ``deconv_core.conv`` for every argument."""
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
        return await self._run(prepared)

    async def conv_transpose(
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
        """N-d transposed convolution on the server; see ``deconv_core.conv_transpose``."""
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
        return await self._run(prepared)

    async def health(self, service: str = "") -> str:
        """``grpc.health.v1`` status of ``service`` ("" = the whole server)."""
        raw = await self._call(self._health_check, _service.encode_health(service), metadata=False)
        return _service.decode_health(raw)

    async def wait_until_serving(self, timeout: float = 60.0, service: str = "") -> None:
        """Poll :meth:`health` until SERVING; DeadlineExceededError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        status = "UNREACHABLE"
        while time.monotonic() < deadline:
            try:
                status = await self.health(service)
            except DeconvClientError as exc:
                status = exc.code.name
            if status == "SERVING":
                return
            await asyncio.sleep(0.05)
        raise DeadlineExceededError(
            f"{self.target} not SERVING after {timeout} s (last status {status})"
        )

    async def server_info(self) -> _service.ServerInfo:
        """Version, dtypes, ranks, limits, runtime, instance id and counters of the server."""
        response = await self._call(self._stub.GetServerInfo, pb.GetServerInfoRequest())
        return _service.server_info(response)

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient({self.target!r}, timeout={self.timeout!r})"

    async def _run(self, prepared: _requests.Prepared) -> np.ndarray:
        """Unary when the tensors fit in a message, else (or when the result does not) chunked."""
        unary, chunked, chunk_type = _METHODS[prepared.op]
        if self._unary(prepared):
            try:
                response = await self._call(getattr(self._stub, unary), prepared.unary_request())
                return _requests.decode_output(response.output, prepared.input_dtype)
            except ResourceExhaustedError as exc:
                if not _too_large_for_one_message(exc):
                    raise
        assembler = _requests.OutputAssembler(prepared.input_dtype)
        try:
            call = getattr(self._stub, chunked)(
                prepared.chunks(chunk_type, chunk_bytes(self.max_message_bytes)),
                timeout=self.timeout,
                metadata=self._metadata,
            )
            async for message in call:
                assembler.add(message)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        return assembler.result()

    def _unary(self, prepared: _requests.Prepared) -> bool:
        return unary_fits(prepared, self.max_message_bytes)

    async def _call(
        self, method: Callable[..., Any], request: Any, *, metadata: bool = True
    ) -> Any:
        try:
            return await method(
                request, timeout=self.timeout, metadata=self._metadata if metadata else None
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
