"""A thread-safe LRU of plans by a hashable key, for callers that see the same geometry again.

A plan depends only on shapes, dtypes and parameters, never on tensor bytes, and is immutable, so
a kept plan is the plan planning would return. :func:`deconv_core.conv` and
:func:`deconv_core.conv_transpose` keep theirs keyed by their arguments; the server keys its own
by the request's fields (``deconv_server.plan_cache``). Only successful plans are put.
"""

from __future__ import annotations

from deconv.lru import LRU

from deconv_core.plan import Plan

__all__ = ["PlanCache"]


class PlanCache(LRU[Plan]):
    """A thread-safe LRU of plans by a hashable key (:class:`deconv.lru.LRU`).

    Parameters
    ----------
    capacity : int
        Plans kept (0 turns the cache off).
    """
