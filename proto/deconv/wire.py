"""Facts of the wire contract that the client and the server share, stated once.

The service name comes from the compiled descriptor, so it cannot drift from the .proto. This
module imports only the generated stubs (protobuf), like :mod:`deconv.codec`.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Sequence
from typing import Any

from deconv.v1 import deconv_pb2 as pb

__all__ = [
    "CONVENTION_NAMES",
    "DATA_FORMAT_NAMES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "METHODS",
    "PADDING_FILL_NAMES",
    "PADDING_MODE_NAMES",
    "RETRY_CHUNKED_KEY",
    "RETRY_CHUNKED_VALUE",
    "SERVICE_NAME",
    "SHARED_MEMORY_KEY",
    "SHARED_MEMORY_OFF",
    "SHARED_MEMORY_UNKNOWN",
    "WEIGHT_CACHE_KEY",
    "WEIGHT_CACHE_MISS",
    "WEIGHT_CACHE_OFF",
    "WEIGHT_DIGEST_BYTES",
    "WEIGHT_FORMAT_NAMES",
    "Methods",
    "PemSource",
    "enum_values",
    "read_pem",
    "weight_digest",
]

#: Full name of the compute service, ``deconv.v1.Deconv``.
SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["Deconv"].full_name

#: Each wire enum value -> the name the Python APIs use for it (an UNSPECIFIED value reads as
#: the default it stands for; PADDING_MODE_UNSPECIFIED means zero padding and has no name).
DATA_FORMAT_NAMES = {
    pb.DATA_FORMAT_UNSPECIFIED: "channels_first",
    pb.DATA_FORMAT_CHANNELS_FIRST: "channels_first",
    pb.DATA_FORMAT_CHANNELS_LAST: "channels_last",
}
WEIGHT_FORMAT_NAMES = {
    pb.WEIGHT_FORMAT_UNSPECIFIED: "torch",
    pb.WEIGHT_FORMAT_TORCH: "torch",
    pb.WEIGHT_FORMAT_TF: "tf",
}
PADDING_MODE_NAMES = {
    pb.PADDING_MODE_VALID: "valid",
    pb.PADDING_MODE_SAME: "same",
    pb.PADDING_MODE_SAME_LOWER: "same_lower",
}
PADDING_FILL_NAMES = {
    pb.PADDING_FILL_UNSPECIFIED: "zeros",
    pb.PADDING_FILL_ZEROS: "zeros",
    pb.PADDING_FILL_REFLECT: "reflect",
    pb.PADDING_FILL_REPLICATE: "replicate",
    pb.PADDING_FILL_CIRCULAR: "circular",
}
CONVENTION_NAMES = {
    pb.CONVENTION_UNSPECIFIED: "default",
    pb.CONVENTION_DEFAULT: "default",
    pb.CONVENTION_KERAS: "keras",
    pb.CONVENTION_ONNX: "onnx",
    pb.CONVENTION_ONNXRUNTIME: "onnxruntime",
}


def enum_values(names: dict[int, str]) -> dict[str, int]:
    """Name -> the explicit enum value a client sends for it (UNSPECIFIED left out), in order.

    Parameters
    ----------
    names : dict of int to str
        One of the ``*_NAMES`` tables.

    Returns
    -------
    dict of str to int
    """
    return {name: value for value, name in names.items() if value}


#: Default cap on one gRPC message, both ways, on both sides (256 MiB).
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024

#: Trailing-metadata key the server sets on RESOURCE_EXHAUSTED when the request would succeed over
#: the chunked RPC (the result is too large for one message). Its value is
#: :data:`RETRY_CHUNKED_VALUE`. Clients decide on this key, never on the message text.
RETRY_CHUNKED_KEY = "deconv-retry-rpc"
RETRY_CHUNKED_VALUE = "chunked"

#: Trailing-metadata key of a FAILED_PRECONDITION answer to a request that names its weight by
#: ``weight_digest`` the server does not hold: :data:`WEIGHT_CACHE_MISS` (send the weight's
#: bytes again) or :data:`WEIGHT_CACHE_OFF` (the server keeps no weights: stop naming them).
WEIGHT_CACHE_KEY = "deconv-weight-cache"
WEIGHT_CACHE_MISS = "miss"
WEIGHT_CACHE_OFF = "off"
#: Trailing-metadata key of answers about shared memory (the .proto, "SHARED MEMORY"):
#: :data:`SHARED_MEMORY_UNKNOWN` on NOT_FOUND for a region the server does not hold (register it
#: again, then repeat the call), :data:`SHARED_MEMORY_OFF` on FAILED_PRECONDITION from a server
#: without a shared-memory directory.
SHARED_MEMORY_KEY = "deconv-shared-memory"
SHARED_MEMORY_UNKNOWN = "unknown"
SHARED_MEMORY_OFF = "off"
#: Length of a ``weight_digest`` (SHA-256).
WEIGHT_DIGEST_BYTES = 32
_DIGEST_TAG = b"deconv-weight-v1"


def weight_digest(dtype: int, shape: Sequence[int], data: Any) -> bytes:
    """The ``weight_digest`` of a weight tensor (the .proto, "WEIGHT CACHE", defines it).

    SHA-256 of ``b"deconv-weight-v1"``, the dtype and the number of dims as uint32
    little-endian, each extent as int64 little-endian, then the data bytes.

    Parameters
    ----------
    dtype : int
        The tensor's ``deconv.v1.DType``.
    shape : sequence of int
    data : bytes-like
        The tensor's wire bytes (bytes, bytearray, memoryview or a C-contiguous array).

    Returns
    -------
    bytes
        32 bytes.
    """
    h = hashlib.sha256(_DIGEST_TAG)
    h.update(struct.pack(f"<II{len(shape)}q", dtype, len(shape), *shape))
    h.update(memoryview(data).cast("B") if not isinstance(data, bytes) else data)
    return h.digest()


class Methods:
    """The RPC names and message types of one operation.

    Attributes
    ----------
    op : str
        "conv" or "conv_transpose" (the Python API's name).
    unary, chunked : str
        Method names on the service ("Conv", "ConvChunked", ...).
    request, chunk : type
        Request message and chunked-request message classes.
    """

    __slots__ = ("chunk", "chunked", "op", "request", "unary")

    def __init__(self, op: str, unary: str, request: type, chunk: type) -> None:
        self.op = op
        self.unary = unary
        self.chunked = f"{unary}Chunked"
        self.request = request
        self.chunk = chunk

    def path(self, method: str) -> str:
        """Full gRPC path of ``method``, e.g. ``/deconv.v1.Deconv/Conv``."""
        return f"/{SERVICE_NAME}/{method}"


#: op -> its methods and messages.
METHODS: dict[str, Methods] = {
    "conv": Methods("conv", "Conv", pb.ConvRequest, pb.ConvRequestChunk),
    "conv_transpose": Methods(
        "conv_transpose", "TransposedConv", pb.TransposedConvRequest, pb.TransposedConvRequestChunk
    ),
}

#: A PEM given as its bytes, PEM text, or a path (str or os.PathLike) to a file holding it.
PemSource = bytes | str | os.PathLike[str]


def read_pem(source: PemSource, what: str) -> bytes:
    """PEM bytes from bytes as given, PEM text, or a path to a PEM file.

    Parameters
    ----------
    source : bytes, str or os.PathLike
        The PEM data, or the path of a file holding it.
    what : str
        What the PEM is (a setting or argument name), for error messages.

    Returns
    -------
    bytes

    Raises
    ------
    ValueError
        The file cannot be read or holds no PEM block.
    """
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    elif isinstance(source, str) and source.lstrip().startswith("-----BEGIN "):
        data = source.encode()
    else:
        try:
            with open(source, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ValueError(f"cannot read {what} {source}: {exc}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"{what} is not PEM data (no '-----BEGIN' line)")
    return data
