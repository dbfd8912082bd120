"""Data messages of the chunked RPCs, framed and parsed without copying through protobuf.

Every chunk message of the wire (``ConvRequestChunk``, ``TransposedConvRequestChunk``,
``TensorChunk``) keeps its tensor bytes in field 2, ``bytes data``. A data message that carries
nothing else is, in protobuf's encoding, the tag byte ``0x12`` (field 2, length-delimited), the
payload's length as a varint, then the payload. :func:`encode_data` writes exactly that from a
view of the caller's array (one copy, into the bytes gRPC sends), and :func:`parse_data` reads it
back as a view of the received bytes (no copy). Any other message, including a data message with
further fields, is left to protobuf, so what a peer may send is unchanged: these functions are a
shortcut for the common form, never a second grammar.

:func:`chunk_serializer` and :func:`chunk_parser` wrap a chunk message type for gRPC: the
serializer passes pre-framed ``bytes`` through, the parser returns a :class:`DataFrame` for a
plain data message and a parsed message for the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "DATA_TAG",
    "DataFrame",
    "chunk_parser",
    "chunk_serializer",
    "encode_data",
    "parse_data",
    "varint",
]

#: Field 2 with wire type 2 (length-delimited): the ``data`` member of every chunk message.
DATA_TAG = 0x12

_MAX_VARINT_BYTES = 10


def varint(n: int) -> bytes:
    """``n`` (>= 0) as a protobuf base-128 varint."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_data(payload: memoryview | bytes) -> bytes:
    """The wire form of a chunk message whose only field is ``data = payload``.

    Parameters
    ----------
    payload : bytes-like
        The slice of tensor bytes (a view; it is copied once, into the returned bytes).

    Returns
    -------
    bytes
        Exactly what ``SerializeToString()`` of ``Chunk(data=payload)`` gives.
    """
    view = memoryview(payload).cast("B") if not isinstance(payload, bytes) else payload
    return b"".join((bytes((DATA_TAG,)), varint(len(view)), view))


def parse_data(raw: bytes | memoryview) -> memoryview | None:
    """The payload of a message made of the ``data`` field alone, as a view of ``raw``.

    Returns
    -------
    memoryview or None
        None when ``raw`` is anything else (parse it with protobuf then).
    """
    view = memoryview(raw)
    if len(view) < 2 or view[0] != DATA_TAG:
        return None
    length = 0
    shift = 0
    pos = 1
    while pos < len(view) and pos <= _MAX_VARINT_BYTES:
        byte = view[pos]
        length |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return view[pos:] if pos + length == len(view) else None
        shift += 7
    return None


class DataFrame:
    """A received data message: the payload as a view, read like the parsed message.

    Parameters
    ----------
    data : memoryview
        The payload (a view of the bytes gRPC received).
    """

    __slots__ = ("data",)

    def __init__(self, data: memoryview) -> None:
        self.data = data

    def WhichOneof(self, group: str) -> str:  # noqa: N802 - protobuf's name, so both read alike
        """``"data"``, as the parsed message would say for its ``part`` oneof."""
        return "data"

    @property
    def size(self) -> int:
        """Bytes of payload (what the metrics count)."""
        return len(self.data)

    def ByteSize(self) -> int:  # noqa: N802 - protobuf's name
        """Size on the wire, as protobuf would report it."""
        return 1 + len(varint(len(self.data))) + len(self.data)


def chunk_serializer(message_type: Any) -> Callable[[Any], bytes]:
    """gRPC serializer for ``message_type`` that passes pre-framed ``bytes`` through."""

    def serialize(message: Any) -> bytes:
        if isinstance(message, bytes):
            return message
        return message.SerializeToString()

    serialize.__qualname__ = f"serialize_{message_type.DESCRIPTOR.name}"
    return serialize


def chunk_parser(
    message_type: Any, fallback: Callable[[bytes], Any] | None = None
) -> Callable[[bytes], Any]:
    """gRPC deserializer: a :class:`DataFrame` for a plain data message, else ``fallback(raw)``.

    Parameters
    ----------
    message_type : protobuf message class
        One of the chunk messages (its field 2 is ``bytes data``).
    fallback : callable, optional
        Parser of every other message (default ``message_type.FromString``).
    """
    field = message_type.DESCRIPTOR.fields_by_number[2]
    if field.name != "data" or field.type != field.TYPE_BYTES:  # a wire change must fail loudly
        raise TypeError(f"{message_type.DESCRIPTOR.full_name} has no 'bytes data = 2' field")
    parse_other = fallback or message_type.FromString

    def parse(raw: bytes) -> Any:
        payload = parse_data(raw)
        if payload is not None:
            return DataFrame(payload)
        return parse_other(raw)

    return parse
