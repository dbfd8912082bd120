"""Time-bounded reads and writes of one call's messages (gRPC's aio reader/writer API).

Every phase a caller controls has a bound: a request message must arrive within its timeout of
the call's start or of the previous message, and each response message must be taken by the
caller within its timeout; otherwise the call ends with DEADLINE_EXCEEDED and everything it held
is freed. Message sizes are counted for the access log and metrics (:mod:`deconv_server.observe`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio

from deconv_server import observe
from deconv_server.errors import RequestTimeoutError

__all__ = ["read_message", "write_message"]


async def read_message(context: grpc.aio.ServicerContext, op: str, timeout: float) -> Any:
    """The next request message, or ``grpc.aio.EOF``; DEADLINE_EXCEEDED after ``timeout`` s.

    Raises
    ------
    deconv_server.errors.RequestTimeoutError
        No message (and no end of stream) within ``timeout`` seconds.
    """
    try:
        # asyncio.timeout, not wait_for: a read in another task hides the caller's cancel.
        async with asyncio.timeout(timeout):
            message = await context.read()
    except TimeoutError:
        raise RequestTimeoutError(
            f"{op}: no request message within {timeout:g} s (DECONV_MESSAGE_TIMEOUT_S)"
        ) from None
    if message is not grpc.aio.EOF:
        observe.count_received(message)
    return message


async def write_message(
    context: grpc.aio.ServicerContext, op: str, message: Any, timeout: float
) -> None:
    """Send one response message; DEADLINE_EXCEEDED when the caller does not take it in time.

    Raises
    ------
    deconv_server.errors.RequestTimeoutError
        The message was not taken within ``timeout`` seconds.
    """
    try:
        async with asyncio.timeout(timeout):
            await context.write(message)
    except TimeoutError:
        raise RequestTimeoutError(
            f"{op}: the caller did not read the response within {timeout:g} s "
            f"(DECONV_WRITE_TIMEOUT_S)"
        ) from None
    observe.count_sent(message)
