"""A thread-safe LRU of plans by a hashable key, for callers that see the same geometry again.

A plan depends only on shapes, dtypes and parameters, never on tensor bytes, and is immutable, so
a kept plan is the plan planning would return. :func:`deconv_core.conv` and
:func:`deconv_core.conv_transpose` keep theirs keyed by their arguments; the server keys its own
by the request's fields (``deconv_server.plan_cache``). Only successful plans are put.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from deconv_core.plan import Plan

__all__ = ["PlanCache"]


class PlanCache:
    """A thread-safe LRU of plans by a hashable key.

    Parameters
    ----------
    capacity : int
        Plans kept (0 turns the cache off).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._plans: collections.OrderedDict[tuple[Any, ...], Plan] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> Plan | None:
        """The plan kept for ``key``, or None (counted as a miss)."""
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                self.misses += 1
                return None
            self._plans.move_to_end(key)
            self.hits += 1
            return plan

    def put(self, key: tuple[Any, ...], plan: Plan) -> None:
        """Keep ``plan`` for ``key``, dropping the least recently used beyond the capacity."""
        if self.capacity <= 0:
            return
        with self._lock:
            self._plans[key] = plan
            self._plans.move_to_end(key)
            while len(self._plans) > self.capacity:
                self._plans.popitem(last=False)

    def clear(self) -> None:
        """Forget every plan (tests)."""
        with self._lock:
            self._plans.clear()

    def __len__(self) -> int:
        return len(self._plans)
