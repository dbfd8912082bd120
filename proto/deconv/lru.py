"""A thread-safe least-recently-used map with a fixed capacity, for the project's small caches.

The core's plan cache (``deconv_core.plan_cache``), the server's (``deconv_server.plan_cache``)
and the client's request templates (``deconv_client._request_cache``) keep immutable values
under hashable keys and drop the least recently used beyond their capacity; this is the one
structure they share.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Generic, TypeVar

__all__ = ["LRU"]

V = TypeVar("V")


class LRU(Generic[V]):
    """A thread-safe LRU of at most ``capacity`` values by a hashable key.

    Parameters
    ----------
    capacity : int
        Values kept (0 or less turns the map off: nothing is kept).

    Attributes
    ----------
    hits, misses : int
        Lookups that found a value, and those that did not.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: collections.OrderedDict[Any, V] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> V | None:
        """The value kept for ``key`` (now the most recently used), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Any, value: V) -> None:
        """Keep ``value`` for ``key``, dropping the least recently used beyond the capacity."""
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
