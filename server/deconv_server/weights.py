"""The content-addressed weight cache: weights kept by digest so callers need not resend them.

A Conv/TransposedConv request may name its weight by ``weight_digest`` (SHA-256 of its dtype,
shape and bytes, :func:`deconv.wire.weight_digest`; the .proto, "WEIGHT CACHE", has every rule).
The server keeps recently used weights in an LRU of at most ``weight_cache_bytes``
(``DECONV_WEIGHT_CACHE_BYTES``, 0 = off). That bound is separate from the in-flight budget: a
call that uses a cached weight still reserves the weight's bytes in the budget as if it had sent
them, so the cache adds at most ``weight_cache_bytes`` to what ``max_inflight_bytes`` bounds.

Nothing is stored under a digest the server has not checked: bytes that arrive with a digest are
hashed again (:func:`verify`, off the event loop for large weights) and refused with
INVALID_ARGUMENT when they do not match, so a caller cannot plant bytes under another weight's
digest. Concurrent inserts of the same weight store it once. A weight larger than the whole
cache is used but not kept.

Routes that transform the weight before computing (the phase route's window matrix, Winograd's
transform, the flipped kernel) have that form kept with the cached weight on first use
(:meth:`WeightCache.prepared`), counted in the same byte limit, so a call naming a cached weight
skips the transform too (T3: 30.5 -> 24.0 ms of compute).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from deconv import wire
from deconv.v1 import deconv_pb2 as pb

import deconv_core
from deconv_server.errors import RequestError, WeightCacheMissError, WeightCacheOffError

__all__ = ["CachedWeight", "WeightCache", "verify"]

#: Weights at least this large are hashed on a worker thread (hashlib releases the GIL), so
#: hashing never stalls the event loop for long.
_THREAD_HASH_BYTES = 1 << 20


#: Kernel-ready forms kept per weight at most (one per plan key: route, dtype, image geometry).
MAX_FORMS = 4


@dataclass(frozen=True)
class CachedWeight:
    """One kept weight: its wire dtype, shape and bytes (read-only), and the kernel-ready forms
    routes made of it (``deconv_core.prepare_weight``), by plan ``weight_key``."""

    dtype: int
    shape: tuple[int, ...]
    data: bytes
    forms: dict[Any, Any] = field(default_factory=dict, compare=False)

    @property
    def nbytes(self) -> int:
        """Size of the data in bytes."""
        return len(self.data)

    @property
    def total_bytes(self) -> int:
        """The data and every kept form."""
        return len(self.data) + sum(form.nbytes for form in self.forms.values())


async def verify(op: str, digest: bytes, tensor: Any, data: Any) -> None:
    """Check that ``digest`` names the weight ``tensor`` (its dtype and shape) with ``data``.

    Parameters
    ----------
    op : str
        For the message.
    digest : bytes
        The request's ``weight_digest``.
    tensor : deconv.v1.Tensor
        The weight's header (dtype, shape).
    data : bytes-like
        The weight's bytes as received.

    Raises
    ------
    RequestError
        The digest does not match (INVALID_ARGUMENT).
    """
    shape = tuple(tensor.shape)
    if len(data) >= _THREAD_HASH_BYTES:
        actual = await asyncio.to_thread(wire.weight_digest, tensor.dtype, shape, data)
    else:
        actual = wire.weight_digest(tensor.dtype, shape, data)
    if actual != digest:
        raise RequestError(
            f"{op}: weight_digest {digest.hex()[:16]}... does not match the weight sent (its "
            f"dtype, shape and bytes hash to {actual.hex()[:16]}...); compute it with "
            f"deconv.wire.weight_digest"
        )


class WeightCache:
    """Weights by digest, least recently used evicted first, within ``limit`` bytes.

    Parameters
    ----------
    limit : int
        Bytes of weight data kept at most; 0 turns the cache off.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: OrderedDict[bytes, CachedWeight] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()
        #: Lookups answered from the cache, and lookups that found nothing.
        self.hits = 0
        self.misses = 0
        #: Weights stored, and weights evicted to make room.
        self.inserts = 0
        self.evictions = 0
        #: Weight bytes that arrived on the wire (every call; cache hits add nothing).
        self.weight_bytes_received = 0
        #: Kernel-ready forms reused, and forms made and kept (:meth:`prepared`).
        self.form_hits = 0
        self.form_inserts = 0

    @property
    def used(self) -> int:
        """Bytes of weight data kept now."""
        return self._used

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._entries

    def lookup(self, op: str, digest: bytes, tensor: Any) -> bytes:
        """The bytes of the weight ``digest`` names, checked against the request's header.

        Parameters
        ----------
        op : str
        digest : bytes
            The request's ``weight_digest``.
        tensor : deconv.v1.Tensor
            The request's weight header (dtype and shape, no data).

        Returns
        -------
        bytes

        Raises
        ------
        WeightCacheOffError
            The cache is off (FAILED_PRECONDITION, trailer ``deconv-weight-cache: off``).
        WeightCacheMissError
            Not held (FAILED_PRECONDITION, trailer ``deconv-weight-cache: miss``).
        RequestError
            Held, but with another dtype or shape than the request declares.
        """
        if self.limit == 0:
            self.misses += 1
            raise WeightCacheOffError(
                f"{op}: the weight is named by weight_digest but this server keeps no weights "
                f"(DECONV_WEIGHT_CACHE_BYTES=0); send its bytes"
            )
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None:
                self._entries.move_to_end(digest)
        if entry is None:
            self.misses += 1
            raise WeightCacheMissError(
                f"{op}: no weight with weight_digest {digest.hex()[:16]}... is cached here; send "
                f"the call again with the weight's bytes"
            )
        shape = tuple(tensor.shape)
        if entry.dtype != tensor.dtype or entry.shape != shape:
            raise RequestError(
                f"{op}: weight_digest {digest.hex()[:16]}... names a weight of "
                f"{_dtype(entry.dtype)} {list(entry.shape)}, but the request declares "
                f"{_dtype(tensor.dtype)} {list(shape)}"
            )
        self.hits += 1
        return entry.data

    async def take(self, plan: Any, streamed: Any = None) -> None:
        """After a call's tensors arrived: count its weight's wire bytes, and keep a weight that
        came with its digest once :func:`verify` checked it.

        Parameters
        ----------
        plan : deconv_server.convert.RequestPlan
        streamed : bytes-like, optional
            The weight's bytes when they came in a chunked call's stream.

        Raises
        ------
        RequestError
            The digest does not match the bytes (INVALID_ARGUMENT).
        """
        if plan.weight_cached:
            return
        self.weight_bytes_received += plan.nbytes["weight"]
        if not plan.digest:
            return
        tensor = plan.tensors["weight"]
        data = streamed if streamed is not None else tensor.data
        await verify(plan.op, plan.digest, tensor, data)
        self.store(plan.digest, tensor, data)

    def store(self, digest: bytes, tensor: Any, data: Any) -> bool:
        """Keep a verified weight (see :func:`verify`); evict the least recently used to fit.

        Parameters
        ----------
        digest : bytes
        tensor : deconv.v1.Tensor
            The weight's header.
        data : bytes-like
            Its bytes (copied unless already ``bytes``).

        Returns
        -------
        bool
            Whether it is kept (False: the cache is off or the weight larger than all of it).
        """
        nbytes = len(data)
        if nbytes > self.limit:
            return False
        with self._lock:
            if digest in self._entries:  # a concurrent insert of the same weight won
                self._entries.move_to_end(digest)
                return True
        entry = CachedWeight(tensor.dtype, tuple(tensor.shape), bytes(data))
        with self._lock:
            if digest in self._entries:
                self._entries.move_to_end(digest)
                return True
            self._make_room(nbytes)
            self._entries[digest] = entry
            self._used += nbytes
            self.inserts += 1
        return True

    def _make_room(self, nbytes: int, keep: bytes | None = None) -> bool:
        """Evict least recently used weights (never ``keep``) until ``nbytes`` more fit; the
        caller holds the lock. Whether they fit."""
        if self._used + nbytes <= self.limit:  # the usual case: no copy of the key list
            return True
        for digest in list(self._entries):
            if self._used + nbytes <= self.limit:
                break
            if digest == keep:
                continue
            old = self._entries.pop(digest)
            self._used -= old.total_bytes
            self.evictions += 1
        return self._used + nbytes <= self.limit

    def prepared(self, digest: bytes, plan: Any, weight: Any) -> Any:
        """The kernel-ready form of the kept weight ``digest`` for ``plan`` (a
        ``deconv_core.PreparedWeight``), made on its first use and kept with the weight, its
        bytes counted in the cache's; None when the weight is not kept. Runs where the core
        runs (it may compute the form), thread-safe.

        Parameters
        ----------
        digest : bytes
        plan : deconv_core.Plan
        weight : ndarray
            The weight's values (as decoded for the call).
        """
        key = plan.weight_key
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            form = entry.forms.get(key)
            if form is not None:
                self.form_hits += 1
                return form
        form = deconv_core.prepare_weight(plan, weight)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None or key in entry.forms or len(entry.forms) >= MAX_FORMS:
                return form
            if entry.total_bytes + form.nbytes > self.limit:
                return form
            if not self._make_room(form.nbytes, keep=digest):
                return form
            entry.forms[key] = form
            self._used += form.nbytes
            self.form_inserts += 1
        return form


def _dtype(value: int) -> str:
    try:
        return pb.DType.Name(value)
    except ValueError:
        return str(value)
