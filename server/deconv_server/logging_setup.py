"""Server logging: JSON lines (default) or text on stderr, with the request id of the current RPC.

Every record carries ``request_id`` (the ``x-request-id`` of the RPC the thread is serving, or
"-"), set by :mod:`deconv_server.observe` through :data:`REQUEST_ID`. In JSON mode each record is
one object per line with ``ts``, ``level``, ``logger``, ``msg``, ``request_id`` and, for the
per-RPC access records of the ``deconv_server.access`` logger, the fields of the RPC (method,
code, duration_ms, bytes_in, bytes_out, peer) at top level. stdout stays reserved for the
"listening" line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

__all__ = ["ACCESS_LOGGER", "REQUEST_ID", "JsonFormatter", "configure_logging"]

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


def configure_logging(level: str, fmt: str = "json") -> None:
    """Route the root logger to stderr at ``level`` in ``fmt`` ("json" or "text").

    Replaces handlers a previous call installed, so it is safe to call twice.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_deconv", False):
            root.removeHandler(old)
    handler._deconv = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
