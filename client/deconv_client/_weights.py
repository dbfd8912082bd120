"""The client's half of the server's weight cache: name a weight by digest once it was sent.

The first call with a weight sends its bytes and its ``weight_digest`` (the server checks and
keeps them); later calls with the same weight (same dtype, shape and bytes) send only the
digest. When the server does not hold it (evicted, another replica, restarted) it answers
FAILED_PRECONDITION with the trailing metadata ``deconv-weight-cache: miss`` and the client makes
the call again with the bytes; ``deconv-weight-cache: off`` (a server without a cache) makes the
client stop naming weights. Weights under :data:`MIN_DIGEST_BYTES` always travel as bytes: their
hash and a possible second round trip would cost more than they do. The digest is computed on
every call (SHA-256, about 1 ms per 2 MiB), never trusted from an earlier call, so a weight
changed in place is never confused with its old value, with one exception that cannot change:
a weight whose memory belongs to a ``bytes`` object (:func:`frozen_array`; the layers of
:mod:`deconv_client.layers` hold theirs that way) is hashed once and remembered by that object.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np
from deconv.wire import WEIGHT_CACHE_KEY, WEIGHT_CACHE_MISS, WEIGHT_CACHE_OFF, weight_digest

from deconv_client._requests import Prepared
from deconv_client.errors import DeconvClientError

__all__ = ["MIN_DIGEST_BYTES", "WeightMemo", "frozen_array", "weight_missed"]

#: Smallest weight (in bytes) named by digest.
MIN_DIGEST_BYTES = 64 * 1024
#: Digests remembered as held by the server, most recent last.
_REMEMBERED = 4096
#: Weights over immutable memory whose digest is remembered (weakly: a freed weight's entry goes).
_FROZEN = 64


def frozen_array(value: Any) -> np.ndarray:
    """A read-only copy of ``value`` whose memory is a ``bytes`` object, so it can never change.

    The client hashes such a weight once and names it by that digest on every later call.

    Parameters
    ----------
    value : array-like

    Returns
    -------
    ndarray
        C-contiguous, same dtype and shape, not writeable.
    """
    arr = np.ascontiguousarray(value)
    return np.frombuffer(arr.tobytes(), dtype=arr.dtype).reshape(arr.shape)


def _frozen_key(arr: np.ndarray, dtype: int) -> tuple[np.ndarray, tuple[Any, ...]] | None:
    """The array that owns ``arr``'s memory and a key of the view, when that memory is a
    ``bytes`` object (through any chain of views), else None."""
    owner = arr
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    if not isinstance(owner.base, bytes):
        return None
    address = arr.__array_interface__["data"][0]
    return owner, (id(owner), address, dtype, arr.dtype.str, arr.shape, arr.strides)


class WeightMemo:
    """Which weights this client has sent (so the server probably holds them).

    Parameters
    ----------
    enabled : bool
        False: never name a weight by digest (the client's ``weight_cache=False``).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._sent: OrderedDict[bytes, None] = OrderedDict()
        self._frozen: OrderedDict[tuple[Any, ...], tuple[weakref.ref[np.ndarray], bytes]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def attach(self, prepared: Prepared) -> Prepared:
        """``prepared`` with its weight's digest, by reference when it was sent before.

        Parameters
        ----------
        prepared : Prepared

        Returns
        -------
        Prepared
            Unchanged when the memo is off or the weight small.
        """
        weight = prepared.weight
        if not self.enabled or weight.nbytes < MIN_DIGEST_BYTES:
            return prepared
        tensor = prepared.request.weight
        frozen = _frozen_key(weight, tensor.dtype)
        digest = None if frozen is None else self._frozen_digest(frozen)
        if digest is None:
            digest = weight_digest(tensor.dtype, tuple(tensor.shape), weight)
            if frozen is not None:
                self._remember_frozen(frozen, digest)
        with self._lock:
            known = digest in self._sent
            self._sent[digest] = None
            self._sent.move_to_end(digest)
            while len(self._sent) > _REMEMBERED:
                self._sent.popitem(last=False)
        return prepared.with_digest(digest, by_reference=known)

    def _frozen_digest(self, frozen: tuple[np.ndarray, tuple[Any, ...]]) -> bytes | None:
        owner, key = frozen
        with self._lock:
            entry = self._frozen.get(key)
            if entry is None or entry[0]() is not owner:
                return None
            self._frozen.move_to_end(key)
            return entry[1]

    def _remember_frozen(self, frozen: tuple[np.ndarray, tuple[Any, ...]], digest: bytes) -> None:
        owner, key = frozen
        # A weak reference: a dropped layer's weight is freed, and its entries go with it (before
        # its id can name another array).
        ref = weakref.ref(owner, lambda _, k=key: self._forget(k))
        with self._lock:
            self._frozen[key] = (ref, digest)
            while len(self._frozen) > _FROZEN:
                self._frozen.popitem(last=False)

    def _forget(self, key: tuple[Any, ...]) -> None:
        with self._lock:
            self._frozen.pop(key, None)

    def missed(self, digest: bytes, value: str) -> None:
        """The server does not hold ``digest`` (``value`` "miss"), or keeps no weights ("off")."""
        if value == WEIGHT_CACHE_OFF:
            self.enabled = False
        with self._lock:
            self._sent.pop(digest, None)


def cache_answer(error: DeconvClientError) -> str | None:
    """The ``deconv-weight-cache`` trailer of a failed call ("miss", "off"), else None."""
    for key, value in error.trailing_metadata:
        if key == WEIGHT_CACHE_KEY and value in (WEIGHT_CACHE_MISS, WEIGHT_CACHE_OFF):
            return value
    return None


@contextlib.contextmanager
def weight_missed(memo: WeightMemo, prepared: Prepared) -> Iterator[None]:
    """Swallow the block's error when the server does not hold the weight ``prepared`` names.

    Wrap the by-reference attempt in it; after a swallowed error, make the call again with
    ``prepared.with_weight_bytes()``.
    """
    try:
        yield
    except DeconvClientError as exc:
        value = cache_answer(exc)
        if value is None or not prepared.by_reference:
            raise
        memo.missed(prepared.digest, value)
