"""Server logging: JSON lines (default) or text on stderr, with the request id of the current RPC.

Every record carries ``request_id`` (the ``x-request-id`` of the RPC the thread is serving, or
"-"), set by :mod:`deconv_server.observe` through :data:`REQUEST_ID`. In JSON mode each record is
one object per line with ``ts``, ``level``, ``logger``, ``msg``, ``request_id`` and, for the
per-RPC access records of the ``deconv_server.access`` logger, the fields of the RPC (method,
code, duration_ms, bytes_in, bytes_out, peer) at top level. stdout stays reserved for the
"listening" line. A writer thread formats and writes the records, in order, so the event loop
only queues them (at most ``QUEUE_MAX_RECORDS``; a stuck stderr drops and counts records rather
than stall the server, and the queue is written out at exit).
"""

from __future__ import annotations

import atexit
import contextvars
import json
import logging
import logging.handlers
import queue
import sys
import time
from typing import Any

__all__ = [
    "ACCESS_LOGGER",
    "QUEUE_MAX_RECORDS",
    "REQUEST_ID",
    "JsonFormatter",
    "configure_logging",
    "dropped_records",
]

#: Request id of the RPC the current thread serves ("-" outside RPCs).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("deconv_request_id", default="-")
#: Logger of the one-line-per-RPC access records.
ACCESS_LOGGER = "deconv_server.access"
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` from :data:`REQUEST_ID` (unless the record has one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate and keep every record."""
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``record.fields`` (a dict) is merged in at top level."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise ``record`` (exceptions as a ``traceback`` string)."""
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", REQUEST_ID.get()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


#: Records waiting for the writer thread, at most; beyond it records are dropped and counted.
QUEUE_MAX_RECORDS = 10_000
#: Longest the exit waits for the writer thread to write out the queue.
STOP_WAIT_S = 5.0
_dropped = 0
_listener: logging.handlers.QueueListener | None = None


class _QueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are: formatting and the write to stderr
    (about 17 us per access record, more after an idle pause) leave the event loop's thread.

    The request id is read here, in the RPC's own context; a full queue drops the record and
    counts it (:func:`dropped_records`) instead of blocking the event loop.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record itself: the writer thread formats it (same process, no pickling)."""
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        """Queue ``record``, or drop and count it when the queue is full."""
        global _dropped
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            _dropped += 1


class _Listener(logging.handlers.QueueListener):
    """The writer thread; its stop waits for room in a full queue, at most ``STOP_WAIT_S``."""

    def enqueue_sentinel(self) -> None:
        """Queue the stop mark behind the records (never lost to a full queue)."""
        try:
            self.queue.put(self._sentinel, timeout=STOP_WAIT_S)
        except queue.Full:  # stderr stuck: give up on the rest rather than hang the exit
            pass

    def stop(self) -> None:
        """Write out what is queued and end the thread (at most ``STOP_WAIT_S`` each)."""
        self.enqueue_sentinel()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S)
            self._thread = None


def dropped_records() -> int:
    """Records dropped because the writer thread was :data:`QUEUE_MAX_RECORDS` behind."""
    return _dropped


def _stop_listener() -> None:
    """Write out every queued record and stop the writer thread (at exit, or on reconfigure)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


def configure_logging(level: str, fmt: str = "json") -> None:
    """Route the root logger to stderr at ``level`` in ``fmt`` ("json" or "text").

    Records are formatted and written by one writer thread, in the order they were logged
    (at most :data:`QUEUE_MAX_RECORDS` waiting); the queue is written out at exit. Replaces
    handlers a previous call installed, so it is safe to call twice.
    """
    global _listener
    writer = logging.StreamHandler(sys.stderr)
    writer.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT))
    records: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_MAX_RECORDS)
    handler = _QueueHandler(records)
    handler.addFilter(RequestIdFilter())  # in the caller's context, before the queue
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_deconv", False):
            root.removeHandler(old)
    _stop_listener()
    handler._deconv = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    _listener = _Listener(records, writer)
    _listener.start()


atexit.register(_stop_listener)
