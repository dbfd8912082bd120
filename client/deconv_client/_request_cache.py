"""Request templates of recently made calls, so a repeated call is not checked again.

A caller mostly repeats the same few calls (a layer on batch after batch). Checking the
arguments, building the request's metadata and working out the result's size from the window
arithmetic cost about 50 microseconds of Python per call, a tenth of a tiny call's round trip.
None of it depends on the tensors' bytes, only on their dtypes and shapes and on the parameters,
so :func:`key` builds a key from exactly those (each parameter with its type, so ``True`` is
never taken for ``1`` nor ``(1, 1)`` for ``[1, 1]``), and :class:`RequestCache` (a
:class:`deconv.lru.LRU`, as the plan caches are) keeps the checked template under it. Only
arguments that passed the checks are kept; parameters of other types (numpy scalars, arrays)
are simply not cached. The templates are shared, so nothing may modify one: every sender copies
it before filling in the data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from deconv.lru import LRU

__all__ = ["CAPACITY", "RequestCache", "key"]

#: Templates kept (each a request without data: a few hundred bytes).
CAPACITY = 256


class _UnkeyableError(Exception):
    """A parameter of a type the cache does not key on."""


def _frozen(value: Any) -> Any:
    if value is None or type(value) in (int, str, float, bool):
        return (type(value), value)
    if type(value) in (tuple, list):
        return (type(value), tuple(_frozen(v) for v in value))
    raise _UnkeyableError


def key(
    op: str,
    input_dtype: np.dtype,
    payloads: Iterable[tuple[str, int, tuple[int, ...]]],
    params: dict[str, Any],
) -> tuple[Any, ...] | None:
    """What a call's template depends on, or None when a parameter cannot be keyed.

    Parameters
    ----------
    op : {"conv", "conv_transpose"}
    input_dtype : numpy.dtype
        The caller's input dtype (the result comes back in it).
    payloads : iterable of (str, int, tuple)
        Each tensor's name, wire dtype and shape.
    params : dict
        The call's keyword parameters.
    """
    try:
        frozen = tuple(sorted((name, _frozen(v)) for name, v in params.items()))
    except _UnkeyableError:
        return None
    return (op, input_dtype.str, tuple(payloads), frozen)


class RequestCache(LRU[Any]):
    """A thread-safe LRU of templates (:class:`deconv.lru.LRU`).

    Parameters
    ----------
    capacity : int
    """

    def __init__(self, capacity: int = CAPACITY) -> None:
        super().__init__(capacity)
