"""One large call across replicas: ``split_batch=True`` cuts a batch into one part per replica.

A client made with ``split_batch=True`` over several replicas (an address list such as
``"ipv4:///10.0.0.1:50051,10.0.0.2:50051"``, a list of targets such as ``["a:50051", "b:50051"]``,
or a ``dns:///`` name, resolved with :func:`socket.getaddrinfo` on its first split call) sends a
``conv``/``conv_transpose`` whose batch holds two images or more as contiguous parts of the batch
(axis 0 in both data formats): one part per live replica, never an empty one (a batch smaller
than the replicas makes fewer parts). The parts travel concurrently, each over its replica's own
channel and through the client's normal path (unary or chunked, weight cache included: each
replica's client remembers the weights it sent), and the results are concatenated in order.

The result is bit-identical to the whole batch computed on one replica (replicas on the same CPU
type with the same thread count): the server's dispatcher picks a route from the work per image
(``deconv_core._engine.choose_route``), never from the batch size, and every route cuts its GEMMs,
tiles and blocks from one image's geometry, so each image gets the same bits in any batch
(BLAS results depend on the GEMM's shape). The server's own time slices of a batch,
``deconv_server.compute.Job``, rely on the same two facts.

Failures. A part answered UNAVAILABLE (its replica died, is draining or is busy) moves to another
live replica, at most :data:`MAX_ATTEMPTS` attempts per part, with exponential backoff once every
replica has failed; a replica that failed is avoided for :data:`DOWN_SECONDS`. Any other error
fails the whole call at once with its typed :class:`~deconv_client.errors.DeconvClientError` (the
``grpc.RpcError`` as its ``__cause__``) and cancels the other parts. The client's ``timeout`` is
the deadline of the whole call: every attempt gets what is left of it.

I/O. The blocking client runs the parts on a small thread pool it owns (closed by ``close()``);
the asyncio client runs them as tasks (``asyncio.gather``, the others cancelled on a failure).
The replicas' clients are built from the client's own arguments with ``retry=False`` (this module
moves UNAVAILABLE parts itself, at once, instead of retrying the dead address).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from typing import Any

import numpy as np

from deconv_client._replicas import ATTEMPT, DOWN_SECONDS, Attempt, Replica, Replicas, Scope
from deconv_client._requests import Prepared
from deconv_client._shapes import result_nbytes
from deconv_client.errors import DeadlineExceededError, UnavailableError

__all__ = [
    "DOWN_SECONDS",
    "MAX_ATTEMPTS",
    "Replicas",
    "part_sizes",
    "run",
    "split_prepared",
]

#: Attempts per part (the first included), like the channel's retry policy.
MAX_ATTEMPTS = 5


# -- the parts --------------------------------------------------------------------------------


def part_sizes(batch: int, replicas: int) -> list[int]:
    """Sizes of the contiguous parts of a batch: as even as possible, none empty.

    Parameters
    ----------
    batch : int
        Images in the batch.
    replicas : int
        Replicas available (at most one part each).

    Returns
    -------
    list of int
        ``min(batch, replicas)`` sizes summing to ``batch``, the larger ones first.
    """
    parts = max(1, min(batch, replicas))
    size, extra = divmod(batch, parts)
    return [size + (i < extra) for i in range(parts)]


def _input(prepared: Prepared) -> np.ndarray:
    return next(arr for name, arr in prepared.payloads if name == "input")


def split_prepared(prepared: Prepared, sizes: Sequence[int]) -> list[Prepared]:
    """``prepared`` cut into calls on consecutive parts of its batch (axis 0 of the input).

    Parameters
    ----------
    prepared : Prepared
        A call whose input has a batch axis.
    sizes : sequence of int
        Images per part, summing to the batch.

    Returns
    -------
    list of Prepared
        The same request (weight, bias, parameters) on each part of the input.
    """
    x = _input(prepared)
    parts, start = [], 0
    for n in sizes:
        request = type(prepared.request)()
        request.CopyFrom(prepared.request)
        request.input.shape[0] = n
        payloads = [
            (name, arr[start : start + n] if name == "input" else arr)
            for name, arr in prepared.payloads
        ]
        parts.append(
            dataclasses.replace(
                prepared,
                request=request,
                payloads=payloads,
                output_nbytes=result_nbytes(request, x.itemsize),
            )
        )
        start += n
    return parts


# -- one split call ---------------------------------------------------------------------------


class _SplitCall:
    """The state the parts of one split call share: deadline, scope, replicas."""

    def __init__(self, replicas: Replicas, op: str, timeout: float | None) -> None:
        self.replicas = replicas
        self.op = op
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.scope = Scope()

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check(self, cause: BaseException | None) -> None:
        """Raise DeadlineExceededError when the deadline has passed (``cause`` as its cause)."""
        left = self.remaining()
        if left is not None and left <= 0:
            raise DeadlineExceededError(
                f"{self.op}: the deadline passed before every part of the batch was computed"
            ) from cause

    def delay(self, seconds: float) -> float:
        """``seconds`` of backoff, cut to what is left of the deadline."""
        left = self.remaining()
        return seconds if left is None else max(0.0, min(seconds, left))


def _part(call: _SplitCall, replica: Replica, prepared: Prepared) -> np.ndarray:
    """One part on the blocking client, moved to another replica after UNAVAILABLE."""
    cause: BaseException | None = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        call.check(cause)
        if call.scope.cancelled:
            raise _StoppedError
        call.replicas.enter(replica)
        token = ATTEMPT.set(Attempt(call.deadline, call.scope))
        try:
            return replica.client._run(prepared)
        except UnavailableError as exc:
            if call.scope.cancelled or attempt == MAX_ATTEMPTS:
                raise
            cause = exc
        finally:
            ATTEMPT.reset(token)
            call.replicas.leave(replica)
        replica, backoff = call.replicas.failover(replica, attempt)
        time.sleep(call.delay(backoff))
    raise AssertionError("unreachable")  # pragma: no cover


async def _part_async(call: _SplitCall, replica: Replica, prepared: Prepared) -> np.ndarray:
    """One part on the asyncio client, moved to another replica after UNAVAILABLE."""
    cause: BaseException | None = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        call.check(cause)
        call.replicas.enter(replica)
        token = ATTEMPT.set(Attempt(call.deadline, call.scope))
        try:
            return await replica.client._run(prepared)
        except UnavailableError as exc:
            if attempt == MAX_ATTEMPTS:
                raise
            cause = exc
        finally:
            ATTEMPT.reset(token)
            call.replicas.leave(replica)
        replica, backoff = call.replicas.failover(replica, attempt)
        await asyncio.sleep(call.delay(backoff))
    raise AssertionError("unreachable")  # pragma: no cover


class _StoppedError(Exception):
    """A part that did not start because another part failed the call."""


def _plan(client: Any, prepared: Prepared, asynchronous: bool) -> list[tuple[Any, Prepared]]:
    """(replica, part) pairs of a split call, or [] when the call is not split."""
    replicas: Replicas = client._replicas
    x = _input(prepared)
    if x.ndim not in (3, 4, 5) or x.shape[0] < 2 or replicas.closed:
        return []
    if len(replicas.targets()) < 2:  # one replica: the client's own channel is enough
        return []
    members = replicas.members(asynchronous)
    if len(members) < 2:
        return []
    chosen = replicas.assign(x.shape[0])
    parts = split_prepared(prepared, part_sizes(x.shape[0], len(chosen)))
    return list(zip(chosen, parts, strict=True))


def _run_sync(client: Any, prepared: Prepared) -> np.ndarray:
    replicas: Replicas = client._replicas
    replicas.targets()
    pieces = _plan(client, prepared, asynchronous=False)
    if not pieces:
        return client._run(prepared)
    call = _SplitCall(replicas, prepared.op, client.timeout)
    pool = replicas.pool()
    futures: list[Future[np.ndarray]] = [pool.submit(_part, call, r, p) for r, p in pieces]
    finished = False
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and not f.cancelled() and f.exception()]
        if failed:
            error = failed[0].exception()
            assert error is not None
            raise error
        results = [f.result() for f in futures]
        finished = True
        return np.concatenate(results, axis=0)
    finally:
        if not finished:
            call.scope.cancel()
            for f in futures:
                f.cancel()
            wait(futures)


async def _run_async(client: Any, prepared: Prepared) -> np.ndarray:
    replicas: Replicas = client._replicas
    if replicas._targets is None:  # resolving a dns: name blocks
        await asyncio.to_thread(replicas.targets)
    pieces = _plan(client, prepared, asynchronous=True)
    if not pieces:
        return await client._run(prepared)
    call = _SplitCall(replicas, prepared.op, client.timeout)
    tasks = [asyncio.ensure_future(_part_async(call, r, p)) for r, p in pieces]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException:
        call.scope.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return np.concatenate(results, axis=0)


def run(client: Any, prepared: Prepared) -> Any:
    """Make the call ``prepared`` of ``client``: split across its replicas when it says so.

    Parameters
    ----------
    client : Client or AsyncClient
    prepared : Prepared

    Returns
    -------
    ndarray, or a coroutine of it (AsyncClient)
        What ``client._run(prepared)`` returns; the same bits.
    """
    replicas: Replicas = client._replicas
    if not replicas.enabled:
        return client._run(prepared)
    if client._grpc is grpc_aio():
        coroutine: Coroutine[Any, Any, np.ndarray] = _run_async(client, prepared)
        return coroutine
    return _run_sync(client, prepared)


def grpc_aio() -> Any:
    """The ``grpc.aio`` module (the asyncio client's ``_grpc``)."""
    import grpc.aio

    return grpc.aio
