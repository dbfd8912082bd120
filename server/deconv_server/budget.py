"""A process-wide budget of tensor bytes held by admitted requests.

The element, output and FLOPs limits bound one request; this bounds them all together, so many
large chunked uploads arriving at once cannot take the process's memory. A request reserves its
bytes after its metadata passed every check and before any buffer is allocated, and releases
them when its response is done.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from deconv_server.errors import BusyError, RequestLimitError

__all__ = ["ByteBudget", "Reservations"]


class ByteBudget:
    """Bytes that admitted requests may hold at once.

    Parameters
    ----------
    limit : int
        Total bytes.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        """Bytes reserved now."""
        with self._lock:
            return self._used

    def reserve(self, op: str, nbytes: int) -> int:
        """Reserve ``nbytes`` or refuse at once.

        Returns
        -------
        int
            ``nbytes``, to pass to :meth:`release`.

        Raises
        ------
        RequestLimitError
            The request alone exceeds the whole budget (RESOURCE_EXHAUSTED: it can never run).
        BusyError
            Other requests hold too much now (UNAVAILABLE: retry later or elsewhere).
        """
        if nbytes > self.limit:
            raise RequestLimitError(
                f"{op}: the request's tensors need {nbytes} bytes, more than the server's "
                f"in-flight limit of {self.limit} bytes (DECONV_MAX_INFLIGHT_BYTES); send smaller "
                f"tensors"
            )
        with self._lock:
            if self._used + nbytes > self.limit:
                raise BusyError(
                    f"{op}: server busy, requests in flight hold {self._used} of "
                    f"{self.limit} tensor bytes and this one needs {nbytes}; retry later or on "
                    f"another replica"
                )
            self._used += nbytes
        return nbytes

    def release(self, nbytes: int) -> None:
        """Give back bytes from :meth:`reserve`."""
        with self._lock:
            self._used -= nbytes

    def reservations(self) -> Reservations:
        """A set of reservations released together (see :class:`Reservations`)."""
        return Reservations(self)

    @contextlib.contextmanager
    def holding(self) -> Iterator[Callable[[str, int], None]]:
        """A ``reserve(op, nbytes)`` function whose reservations are released on exit."""
        held: list[int] = []
        try:
            yield lambda op, nbytes: held.append(self.reserve(op, nbytes))
        finally:
            for nbytes in held:
                self.release(nbytes)


class Reservations:
    """Reservations of one call, released together, once (whichever exit path comes first).

    Parameters
    ----------
    budget : ByteBudget
    """

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self._held: list[int] = []

    def reserve(self, op: str, nbytes: int) -> None:
        """Reserve ``nbytes`` more (see :meth:`ByteBudget.reserve`)."""
        self._held.append(self._budget.reserve(op, nbytes))

    def release(self) -> None:
        """Give everything back; later calls do nothing."""
        held, self._held = self._held, []
        for nbytes in held:
            self._budget.release(nbytes)
