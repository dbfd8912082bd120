"""Core plans of recently seen requests, so a repeated geometry is not planned again.

A service mostly sees the same few layer geometries over and over: planning one (canonicalising
the parameters, choosing the route, bounding the scratch memory) costs about 0.1 ms, as much as a
tiny call's compute. A plan depends only on the request's parameters and its tensors' dtypes and
shapes, never on their bytes, so :func:`request_key` builds a key from exactly those: every set
field of the request, generically (a field added to the wire later is part of the key without a
change here), with each tensor reduced to its dtype and shape and the weight's digest left out.
Only successful plans are kept, and a plan is immutable, so a hit is the same plan planning would
return. The cache is an LRU (:class:`deconv_core.plan_cache.PlanCache`) of :data:`CAPACITY`
entries; the keys of plannable requests are small (every per-axis list holds at most three
values), so it holds a few hundred kilobytes at most.
"""

from __future__ import annotations

from typing import Any

from deconv_core.plan_cache import PlanCache

__all__ = ["CAPACITY", "PLANS", "PlanCache", "request_key"]

#: Plans kept.
CAPACITY = 512

#: Fields that do not shape the plan.
_IGNORED = frozenset({"weight_digest"})


def request_key(op: str, request: Any) -> tuple[Any, ...]:
    """What a request's core plan depends on, as a hashable value.

    Parameters
    ----------
    op : {"conv", "conv_transpose"}
    request : deconv.v1.ConvRequest or deconv.v1.TransposedConvRequest

    Returns
    -------
    tuple
    """
    items: list[Any] = [op]
    for field, value in request.ListFields():
        if field.name in _IGNORED:
            continue
        if field.message_type is not None and field.message_type.name == "Tensor":
            items.append((field.number, value.dtype, tuple(value.shape)))
        elif field.message_type is not None:
            items.append((field.number, value.SerializeToString(deterministic=True)))
        elif isinstance(value, int | float | str | bytes):  # a scalar (enums are ints)
            items.append((field.number, value))
        else:  # a repeated scalar field
            items.append((field.number, tuple(value)))
    return tuple(items)


#: The process's plan cache.
PLANS = PlanCache(CAPACITY)
