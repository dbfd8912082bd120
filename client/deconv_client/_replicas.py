"""The replicas of a client with ``split_batch=True``: one client per replica, and their health.

:class:`Replicas` builds, on first use, one client per replica target
(:func:`deconv_client._targets.replica_targets`) from the parent client's own arguments, with
``retry=False``: :mod:`deconv_client._split` moves a part answered UNAVAILABLE to another replica
itself. It remembers which replicas failed recently (avoided for :data:`DOWN_SECONDS`), owns the
blocking client's thread pool, and tracks every attempt's RPC so the other parts of a failed call
can be cancelled from any thread.
"""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from deconv_client._requests import Prepared
from deconv_client._targets import channel_target, host_port, replica_targets, strip_authority

__all__ = ["ATTEMPT", "DOWN_SECONDS", "Attempt", "Replica", "Replicas", "Scope"]

#: A replica that answered UNAVAILABLE gets no new part for this long (unless none is left).
DOWN_SECONDS = 2.0
#: Backoff before an attempt on a replica that failed already: this, doubling, up to the max.
INITIAL_BACKOFF = 0.1
MAX_BACKOFF = 2.0
#: Most threads of the blocking client's pool.
MAX_THREADS = 16


# -- the replicas' clients ----------------------------------------------------------------------


@dataclasses.dataclass
class Attempt:
    """What a part's attempt tells the replica's client: the deadline and the call's scope."""

    deadline: float | None
    scope: Scope


#: The attempt the current thread (blocking) or task (asyncio) is making, if any.
ATTEMPT: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar(
    "deconv_split_attempt", default=None
)


class Scope:
    """The RPCs of one split call, so that a failure can cancel them all (blocking client)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Any] = []
        self.cancelled = False

    def track(self, call: Any) -> None:
        """Remember ``call`` (anything with ``cancel()``); cancel it now if the scope is."""
        with self._lock:
            if not self.cancelled:
                self._calls.append(call)
                return
        call.cancel()

    def cancel(self) -> None:
        """Cancel every tracked RPC, and any tracked later."""
        with self._lock:
            self.cancelled = True
            calls, self._calls = self._calls, []
        for call in calls:
            call.cancel()


class _ReplicaMixin:
    """A replica's client: each attempt's deadline comes from the split call (:data:`ATTEMPT`)."""

    _own_timeout: float | None = None

    @property
    def timeout(self) -> float | None:
        """What is left of the split call's deadline, else the client's own timeout."""
        attempt = ATTEMPT.get()
        if attempt is None:
            return self._own_timeout
        if attempt.deadline is None:
            return None
        return max(0.0, attempt.deadline - time.monotonic())

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._own_timeout = value


def _sync_replica_class() -> type:
    from deconv_client.client import Client

    class ReplicaClient(_ReplicaMixin, Client):  # type: ignore[misc]
        """A blocking replica client whose RPCs the split call can cancel from another thread."""

        def _start(self, call: Any) -> Any:
            attempt = ATTEMPT.get()
            future = getattr(call.method, "future", None)
            if attempt is None or future is None:
                return super()._start(call)
            scope = attempt.scope

            def start(request: Any, **kwargs: Any) -> Any:
                rpc = future(request, **kwargs)
                scope.track(rpc)
                return rpc.result()

            return super()._start(dataclasses.replace(call, method=start))

        def _start_chunked(self, prepared: Prepared) -> Any:
            stream = super()._start_chunked(prepared)
            attempt = ATTEMPT.get()
            if attempt is not None and hasattr(stream, "cancel"):
                attempt.scope.track(stream)
            return stream

    return ReplicaClient


def _async_replica_class() -> type:
    from deconv_client.aio import AsyncClient

    class AsyncReplicaClient(_ReplicaMixin, AsyncClient):  # type: ignore[misc]
        """An asyncio replica client (cancelling its task cancels its RPC)."""

    return AsyncReplicaClient


_REPLICA_CLASSES: dict[bool, type] = {}


def _replica_class(asynchronous: bool) -> type:
    if asynchronous not in _REPLICA_CLASSES:
        make = _async_replica_class if asynchronous else _sync_replica_class
        _REPLICA_CLASSES[asynchronous] = make()
    return _REPLICA_CLASSES[asynchronous]


@dataclasses.dataclass(eq=False)
class Replica:
    """One replica: its client, how many parts it is computing, until when it counts as down."""

    target: str
    client: Any
    busy: int = 0
    down_until: float = 0.0


class Replicas:
    """A client's replicas for ``split_batch``: their clients (made on first use) and the pool.

    Parameters
    ----------
    target : str or sequence of str
        The client's target (a list: one replica per entry).
    settings : dict
        The client constructor's arguments (its ``locals()``, ``split_batch`` among them); the
        replicas' clients are made from those the constructor takes, with ``retry=False`` and
        ``split_batch=False``.

    Attributes
    ----------
    enabled : bool
        The client's ``split_batch``.
    channel_target : str
        The target of the client's main channel (a list joined into one address list).
    """

    def __init__(self, target: str | Sequence[str], settings: dict[str, Any]) -> None:
        settings = {k: v for k, v in settings.items() if k not in ("self", "target")}
        self.enabled = bool(settings.pop("split_batch", False))
        self.channel_target = target if isinstance(target, str) else channel_target(target)
        self._target = target
        self._settings = {**settings, "split_batch": False, "retry": False, "load_balancing": None}
        self._lock = threading.Lock()
        self._targets: list[str] | None = None
        self._members: list[Replica] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.closed = False

    def targets(self) -> list[str]:
        """The replicas' single-address targets (a ``dns:`` name resolved once, now)."""
        if self._targets is None:
            self._targets = replica_targets(self._target)
        return self._targets

    def members(self, asynchronous: bool) -> list[Replica]:
        """The replicas, their clients made on the first call (call :meth:`targets` first)."""
        with self._lock:
            if self._members is None:
                settings = dict(self._settings)
                if isinstance(self._target, str) and self._target.startswith("dns:"):
                    # Channels to resolved addresses still verify the name's TLS certificate.
                    host, _ = host_port(strip_authority(self._target[4:]))
                    settings["server_name"] = settings.get("server_name") or host
                cls = _replica_class(asynchronous)
                accepted = inspect.signature(cls.__init__).parameters
                settings = {k: v for k, v in settings.items() if k in accepted}
                self._members = [Replica(t, cls(t, **settings)) for t in self.targets()]
            return self._members

    def pool(self) -> ThreadPoolExecutor:
        """The blocking client's thread pool (made on first use)."""
        with self._lock:
            if self._pool is None:
                workers = min(MAX_THREADS, 2 * len(self._members or ()) or 2)
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="deconv-split")
            return self._pool

    def assign(self, batch: int) -> list[Replica]:
        """One replica per part of a batch of ``batch``: the live ones, least busy first."""
        now = time.monotonic()
        with self._lock:
            members = self._members or []
            live = [r for r in members if r.down_until <= now] or list(members)
            live.sort(key=lambda r: r.busy)
            return live[: min(batch, len(live))]  # one part per replica, none empty

    def failover(self, failed: Replica, attempt: int) -> tuple[Replica, float]:
        """Where a part goes after ``failed`` answered UNAVAILABLE, and the backoff before it.

        A live replica other than ``failed`` (the least busy) at once; when every replica is
        down, the one that failed longest ago after ``INITIAL_BACKOFF * 2**(attempt-1)`` s.
        """
        now = time.monotonic()
        with self._lock:
            failed.down_until = now + DOWN_SECONDS
            members = self._members or [failed]
            live = [r for r in members if r is not failed and r.down_until <= now]
            if live:
                return min(live, key=lambda r: r.busy), 0.0
            choice = min(members, key=lambda r: r.down_until)
            return choice, min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** (attempt - 1))

    def enter(self, replica: Replica) -> None:
        with self._lock:
            replica.busy += 1

    def leave(self, replica: Replica) -> None:
        with self._lock:
            replica.busy -= 1

    def _detach(self) -> tuple[list[Replica], ThreadPoolExecutor | None]:
        with self._lock:
            self.closed = True
            members, self._members = self._members or [], None
            pool, self._pool = self._pool, None
        return members, pool

    def close(self) -> None:
        """Close the replicas' channels (cancelling their calls) and the thread pool."""
        members, pool = self._detach()
        for replica in members:
            replica.client.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    async def aclose(self) -> None:
        """Close the asyncio replicas' channels, cancelling their calls."""
        members, _ = self._detach()
        for replica in members:
            await replica.client.close()
