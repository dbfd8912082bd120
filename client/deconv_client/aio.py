"""asyncio client: :class:`AsyncClient`, :class:`deconv_client.Client` on ``grpc.aio``.

Only the asyncio I/O lives here; the arguments, the transport choice and the error handling are
:class:`deconv_client._base.BaseClient`'s, shared with the blocking client.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import grpc.aio
import numpy as np

from deconv_client import _requests, _service
from deconv_client._base import BaseClient, ServingWait, UnaryCall, chunked_when_asked, rpc_errors
from deconv_client._operators import DeconvolveResult, update_of
from deconv_client._weights import weight_missed
from deconv_client.errors import DataLossError, DeconvClientError

__all__ = ["AsyncClient"]

P = ParamSpec("P")
T = TypeVar("T")


def _coroutine(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """``method``, which returns an awaitable, as a coroutine function of the same signature.

    Like any coroutine, the result checks its arguments when awaited, not when called.
    """

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        return await method(*args, **kwargs)

    return call


class AsyncClient(BaseClient[Coroutine[Any, Any, np.ndarray]]):
    """asyncio client of the ``deconv.v1.Deconv`` service; every method is a coroutine.

    Same arguments, methods and errors as :class:`deconv_client.Client`. Create it inside the
    event loop that uses it; close it with ``await client.close()`` or ``async with``.
    """

    _grpc = grpc.aio

    conv = _coroutine(BaseClient.conv)
    conv_transpose = _coroutine(BaseClient.conv_transpose)
    conv_backward = _coroutine(BaseClient.conv_backward)
    conv_transpose_backward = _coroutine(BaseClient.conv_transpose_backward)
    deconvolve = _coroutine(BaseClient.deconvolve)

    async def health(self, service: str = "") -> str:
        """``grpc.health.v1`` status of ``service`` ("" = the whole server).

        Raises
        ------
        deconv_client.errors.DeconvClientError
            UnavailableError when unreachable, NotFoundError for an unknown service, ...
        """
        return await self._unary(self._health_call(service))

    async def wait_until_serving(self, timeout: float = 60.0, service: str = "") -> None:
        """Poll :meth:`health` until SERVING, without blocking the event loop.

        Raises
        ------
        deconv_client.errors.DeadlineExceededError
            Still not SERVING after ``timeout`` seconds.
        """
        wait = ServingWait(self.target, timeout)
        while wait.again(await self._health_status(service)):
            await asyncio.sleep(wait.interval)

    async def server_info(self) -> _service.ServerInfo:
        """What ``GetServerInfo`` reports: version, dtypes, limits, counters, ..."""
        return await self._unary(self._info_call())

    async def close(self) -> None:
        """Close the channel, cancelling the calls in flight."""
        if self._shm is not None:
            await self._shm.aclose(self)  # unregister the regions, delete the files
        await self._replicas.aclose()  # split_batch's replica channels
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _run(self, prepared: _requests.Prepared) -> np.ndarray:
        """Name the weight by digest when sent before; with its bytes again after a miss."""
        prepared = self._weights.attach(prepared)
        if prepared.by_reference:
            with weight_missed(self._weights, prepared):
                return await self._send(prepared)
            prepared = prepared.with_weight_bytes()
        return await self._send(prepared)

    async def _send(self, prepared: _requests.Prepared) -> np.ndarray:
        """The unary call when it fits; the chunked one otherwise, or when the server asks."""
        if self._shm is not None:
            return await self._shm.acall(self, prepared)
        if self._unary_fits(prepared):
            with chunked_when_asked():
                return await self._unary(self._compute_call(prepared))
        assembler = _requests.OutputAssembler(prepared.input_dtype)
        stream = self._chunked_calls[prepared.op]
        started: dict[str, Any] = {}

        async def requests() -> AsyncIterator[Any]:
            chunks = iter(self._chunks(prepared))
            yield next(chunks)  # the request itself
            # The server sends its headers once it accepted the request; if it refused it, the
            # call is over and sending data would hide the refusal behind a local send error.
            call = started["call"]
            await call.initial_metadata()
            if call.done():
                return
            for chunk in chunks:
                yield chunk

        with rpc_errors():
            started["call"] = stream(requests(), timeout=self.timeout, metadata=self._metadata)
            async for message in started["call"]:
                assembler.add(message)
        return assembler.result()

    async def _updates(self, request: Any, dtype: np.dtype, progress: Any) -> DeconvolveResult:
        with rpc_errors():
            stream = self._stub.DeconvolveStream(
                request, timeout=self.timeout, metadata=self._metadata
            )
            async for update in stream:
                result = update_of(update, dtype, progress)
                if result is not None:
                    return result
        raise DataLossError("deconvolve: the stream ended without a result")

    async def _unary(self, call: UnaryCall[T]) -> T:
        with rpc_errors():
            return call.decode(await self._start(call))

    async def _health_status(self, service: str) -> str:
        try:
            return await self.health(service)
        except DeconvClientError as exc:
            return exc.code.name
