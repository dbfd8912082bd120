"""Request messages that never fail to deserialize: bytes that do not parse become a stand-in.

gRPC answers INTERNAL ("Exception deserializing request!") when a deserializer raises. The
servicer's deserializers come from :func:`lenient_parser`, which returns an :class:`Unparsed`
instead; :func:`require_parsed` turns it into INVALID_ARGUMENT with the parser's reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deconv_server.errors import RequestError

__all__ = ["Unparsed", "lenient_parser", "require_parsed"]


@dataclass(frozen=True)
class Unparsed:
    """Stands for a request message whose bytes did not parse (see :func:`lenient_parser`).

    Attributes
    ----------
    type_name : str
        Full name of the expected message type.
    size : int
        Number of bytes received.
    reason : str
        The parser's complaint.
    """

    type_name: str
    size: int
    reason: str


def lenient_parser(message_type: Any) -> Callable[[bytes], Any]:
    """A gRPC request deserializer that never raises.

    gRPC answers INTERNAL ("Exception deserializing request!") when a deserializer raises; this
    one returns an :class:`Unparsed` instead, which :func:`require_parsed` turns into
    INVALID_ARGUMENT inside the servicer.
    """
    full_name = message_type.DESCRIPTOR.full_name

    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except Exception as exc:  # google.protobuf.message.DecodeError and kin
            return Unparsed(full_name, len(data), (str(exc) or type(exc).__name__)[:200])

    return parse


def require_parsed(op: str, message: Any) -> Any:
    """Return ``message``, or raise RequestError when it is an :class:`Unparsed` stand-in."""
    if isinstance(message, Unparsed):
        raise RequestError(
            f"{op}: the request ({message.size} bytes) does not parse as a {message.type_name} "
            f"message: {message.reason}"
        )
    return message
