"""Python arguments -> request messages, response messages -> numpy; shared by both clients.

The arguments are those of ``deconv_core.conv``/``conv_transpose``. The client checks only what
the wire cannot express (a dtype that cannot travel, ``groups=0`` which the wire reads as "unset",
a one-element list that the wire would read as "every axis") and leaves every other rule to the
server, so errors read the same whether they come from the core or through the service. A
:class:`Prepared` call keeps the request's metadata and the tensor bytes apart until the client
picks the unary RPC or, for large tensors or results, the chunked one.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from deconv import codec, frames, wire
from deconv.v1 import deconv_pb2 as pb

from deconv_client import _request_cache
from deconv_client._shapes import result_nbytes
from deconv_client.errors import DataLossError, InvalidArgumentError

__all__ = ["OutputAssembler", "Prepared", "build_request", "decode_output"]

_DATA_FORMATS = wire.enum_values(wire.DATA_FORMAT_NAMES)
_WEIGHT_FORMATS = wire.enum_values(wire.WEIGHT_FORMAT_NAMES)
_PADDING_MODES = wire.enum_values(wire.PADDING_MODE_NAMES)
_PADDING_FILLS = wire.enum_values(wire.PADDING_FILL_NAMES)
_CONVENTIONS = wire.enum_values(wire.CONVENTION_NAMES)


def _is_seq(value: Any) -> bool:
    return isinstance(value, Sequence | np.ndarray) and not isinstance(value, str | bytes)


def _int(op: str, name: str, value: Any) -> int:
    if isinstance(value, bool | np.bool_):
        raise InvalidArgumentError(f"{op}: {name}={value!r} must be an integer, not a bool")
    try:
        return operator.index(value)
    except TypeError:
        raise InvalidArgumentError(
            f"{op}: {name}={value!r} must be an integer (got {type(value).__name__})"
        ) from None


def _per_axis(op: str, name: str, value: Any, rank: int | None) -> list[int]:
    """An int or one int per spatial axis, as a repeated field (one value = every axis)."""
    if not _is_seq(value):
        return [_int(op, name, value)]
    items = list(value)
    if rank is not None and len(items) != rank:
        raise InvalidArgumentError(
            f"{op}: {name} must be one int or {rank} ints (one per spatial axis), "
            f"got {len(items)}: {tuple(items)!r}"
        )
    return [_int(op, f"{name}[{i}]", v) for i, v in enumerate(items)]


def _choice(op: str, name: str, value: Any, table: dict[str, int]) -> int:
    if isinstance(value, str) and value in table:
        return table[value]
    raise InvalidArgumentError(
        f"{op}: {name}={value!r} must be one of {', '.join(map(repr, table))}"
    )


def _set_padding(op: str, request: Any, padding: Any, rank: int | None) -> None:
    if isinstance(padding, str):
        mode = _PADDING_MODES.get(padding.lower())
        if mode is None:
            raise InvalidArgumentError(
                f"{op}: padding={padding!r} is not a padding mode; use an int, per-axis ints, "
                f"(before, after) pairs, or one of {', '.join(map(repr, _PADDING_MODES))}"
            )
        request.padding_mode = mode
        return
    if _is_seq(padding) and any(_is_seq(p) for p in padding):
        pairs = list(padding)
        if rank is not None and len(pairs) != rank:
            raise InvalidArgumentError(
                f"{op}: padding must have one (before, after) pair per spatial axis ({rank}), "
                f"got {len(pairs)}: {tuple(pairs)!r}"
            )
        before, after = [], []
        for i, pair in enumerate(pairs):
            if not _is_seq(pair) or len(pair) != 2:
                raise InvalidArgumentError(
                    f"{op}: padding[{i}]={pair!r} must be a (before, after) pair of ints"
                )
            before.append(_int(op, f"padding[{i}][0]", pair[0]))
            after.append(_int(op, f"padding[{i}][1]", pair[1]))
    else:
        before = after = _per_axis(op, "padding", padding, rank)
    request.explicit_padding.before.extend(before)
    request.explicit_padding.after.extend(after)


def _wire(op: str, name: str, value: Any) -> tuple[int, np.ndarray]:
    arr = np.asarray(value)
    try:
        return codec.wire_array(arr)
    except codec.CodecError:
        raise InvalidArgumentError(
            f"{op}: {name} dtype {arr.dtype} is not supported; use float32 or float64 "
            f"(float16 and bfloat16 are computed in float32)"
        ) from None


@dataclass
class Prepared:
    """A checked call: the request's metadata plus the tensor bytes, not yet joined.

    Attributes
    ----------
    op : str
        "conv" or "conv_transpose".
    request : ConvRequest or TransposedConvRequest
        Every field, tensors with dtype and shape but no data. Calls with the same template
        share it: never modify it (copy it, as :meth:`unary_request` does).
    input_dtype : numpy.dtype
        The result comes back in it.
    payloads : list of (str, ndarray)
        ("input" | "weight" | "bias", little-endian C-contiguous wire array), in stream order.
    output_nbytes : int or None
        Size of the result's data in bytes, from the shapes (None = unknown); it steers the
        transport: a result too large for one message must come over the chunked RPC.
    digest : bytes
        The weight's ``weight_digest`` (empty: the weight cache is not used).
    by_reference : bool
        Send the digest instead of the weight's bytes (the server holds them, or says it does
        not and the call is made again with them: :meth:`with_weight_bytes`).
    """

    op: str
    request: Any
    input_dtype: np.dtype
    payloads: list[tuple[str, np.ndarray]]
    output_nbytes: int | None = None
    digest: bytes = b""
    by_reference: bool = False

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data to send."""
        return sum(arr.nbytes for _, arr in self._sent())

    @property
    def weight(self) -> np.ndarray:
        """The weight's wire array."""
        return next(arr for name, arr in self.payloads if name == "weight")

    def with_digest(self, digest: bytes, by_reference: bool) -> Prepared:
        """This call naming its weight by ``digest``, without its bytes when ``by_reference``."""
        return dataclasses.replace(self, digest=digest, by_reference=by_reference)

    def with_weight_bytes(self) -> Prepared:
        """This call sending the weight's bytes (with the digest, so the server keeps them)."""
        return dataclasses.replace(self, by_reference=False)

    def _sent(self) -> list[tuple[str, np.ndarray]]:
        if not self.by_reference:
            return self.payloads
        return [(name, arr) for name, arr in self.payloads if name != "weight"]

    def _request_with(self, tensors: list[tuple[str, np.ndarray]]) -> Any:
        """A copy of the request with the digest, and the data of ``tensors`` filled in."""
        request = type(self.request)()
        request.CopyFrom(self.request)
        request.weight_digest = self.digest
        for name, arr in tensors:
            getattr(request, name).data = arr.tobytes()
        return request

    def unary_request(self) -> Any:
        """A copy of the request with the tensors' data filled in (a referenced weight's not)."""
        return self._request_with(self._sent())

    def chunks(self, message_type: Any, chunk_bytes: int = codec.CHUNK_BYTES) -> Iterator[Any]:
        """Messages of the chunked RPC: the request, then ``chunk_bytes`` slices of the data.

        The weight and bias travel inside the first message when together they take at most
        ``chunk_bytes``: only the input is then streamed, image after image, and the server can
        compute the first images of a batch while the rest arrive. The first message also asks
        for response messages of at most ``chunk_bytes``, and says whether a weight named by its
        digest follows in the stream (``weight_pending``).
        """
        sent = self._sent()
        extras = [(name, arr) for name, arr in sent if name != "input"]
        inline = sum(arr.nbytes for _, arr in extras) <= chunk_bytes
        header = self._request_with(extras if inline else [])
        streamed = [(name, arr) for name, arr in sent if name == "input"] if inline else sent
        names = {name for name, _ in streamed}
        pending = bool(self.digest) and "weight" in names and self.weight.size > 0
        yield message_type(request=header, response_chunk_bytes=chunk_bytes, weight_pending=pending)
        for _, arr in streamed:
            if not arr.size:
                continue
            raw = memoryview(arr).cast("B")
            for start in range(0, len(raw), chunk_bytes):
                yield frames.encode_data(raw[start : start + chunk_bytes])  # pre-framed


def build_request(
    op: str,
    x: Any,
    weight: Any,
    bias: Any,
    *,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    data_format: Any,
    weight_format: Any,
    output_padding: Any = 0,
    output_shape: Any = None,
    padding_mode: Any = "zeros",
    convention: Any = "default",
) -> Prepared:
    """Check the arguments of ``op`` ("conv" or "conv_transpose") and prepare the call.

    A call whose tensors have the dtypes and shapes, and whose parameters the values and
    types, of a recent call reuses that call's checked request (:mod:`._request_cache`).

    Raises
    ------
    InvalidArgumentError
        An argument the wire cannot carry faithfully.
    """
    xa = np.asarray(x)
    wired = []
    for name, value in (("input", xa), ("weight", weight), ("bias", bias)):
        if value is None and name == "bias":
            continue
        dtype, arr = _wire(op, name, value)
        wired.append((name, dtype, arr))
    payloads = [(name, arr) for name, _, arr in wired]
    params = dict(
        stride=stride, padding=padding, dilation=dilation, groups=groups,
        data_format=data_format, weight_format=weight_format, output_padding=output_padding,
        output_shape=output_shape, padding_mode=padding_mode, convention=convention,
    )  # fmt: skip
    k = _request_cache.key(op, xa.dtype, ((n, d, a.shape) for n, d, a in wired), params)
    found = None if k is None else _TEMPLATES.get(k)
    if found is None:
        found = _new_request(op, xa.ndim, wired, params)
        if k is not None:
            _TEMPLATES.put(k, found)
    request, output_nbytes = found
    return Prepared(op, request, xa.dtype, payloads, output_nbytes)


#: Checked requests of recent calls (shared: never modified, copied before data goes in).
_TEMPLATES = _request_cache.RequestCache()


def _new_request(
    op: str, ndim: int, wired: list[tuple[str, int, np.ndarray]], params: dict[str, Any]
) -> tuple[Any, int | None]:
    """The checked request of a call (tensors without data) and its result's size in bytes."""
    p = params
    rank = ndim - 2 if ndim in (3, 4, 5) else None
    request: Any = pb.ConvRequest() if op == "conv" else pb.TransposedConvRequest()
    request.data_format = _choice(op, "data_format", p["data_format"], _DATA_FORMATS)
    request.weight_format = _choice(op, "weight_format", p["weight_format"], _WEIGHT_FORMATS)
    for name, dtype, arr in wired:
        getattr(request, name).CopyFrom(pb.Tensor(dtype=dtype, shape=arr.shape))
    request.stride.extend(_per_axis(op, "stride", p["stride"], rank))
    request.dilation.extend(_per_axis(op, "dilation", p["dilation"], rank))
    _set_padding(op, request, p["padding"], rank)
    request.groups = _int(op, "groups", p["groups"])
    if request.groups < 1:  # 0 would read as "unset" (1) on the wire
        raise InvalidArgumentError(f"{op}: groups={request.groups} must be >= 1")
    if op == "conv":
        request.padding_fill = _choice(op, "padding_mode", p["padding_mode"], _PADDING_FILLS)
    if op == "conv_transpose":
        request.convention = _choice(op, "convention", p["convention"], _CONVENTIONS)
        request.output_padding.extend(_per_axis(op, "output_padding", p["output_padding"], rank))
        shape = p["output_shape"]
        if shape is not None:
            items = list(shape) if _is_seq(shape) else [shape]
            request.output_shape.extend(
                _int(op, f"output_shape[{i}]", v) for i, v in enumerate(items)
            )
    return request, result_nbytes(request, wired[0][2].itemsize)


def decode_output(tensor: pb.Tensor, input_dtype: np.dtype, data: Any = None) -> np.ndarray:
    """Writable numpy result in the input's dtype (bfloat16 types keep their own dtype).

    ``data`` holds the bytes of a chunked result (then the tensor is only the header).
    """
    if tensor.dtype == pb.DTYPE_BFLOAT16 and input_dtype.name == "bfloat16":
        bits = codec.decode_bits(tensor, name="output", data=data).view(input_dtype)
        return bits if bits.flags.writeable else bits.copy()
    arr = codec.decode(tensor, name="output", data=data)
    return arr if arr.flags.writeable else arr.copy()


class OutputAssembler:
    """Collects the ``TensorChunk`` messages of a chunked result into one array.

    Feed every message to :meth:`add`, then call :meth:`result`.
    """

    def __init__(self, input_dtype: np.dtype) -> None:
        self._dtype = input_dtype
        self._header: pb.Tensor | None = None
        self._buffer = np.empty(0, np.uint8)
        self._pos = 0

    def add(self, message: pb.TensorChunk) -> None:
        """Take one message (header first, then data).

        Raises
        ------
        DataLossError
            Out-of-order or surplus data.
        """
        if message.WhichOneof("part") == "header":
            if self._header is not None:
                raise DataLossError("chunked result: a second header arrived")
            self._header = message.header
            # np.empty: memory is committed (in huge pages where possible) as data lands in it
            self._buffer = np.empty(codec.tensor_nbytes(message.header, name="output"), np.uint8)
            return
        if self._header is None:
            raise DataLossError("chunked result: data arrived before the header")
        data = message.data
        end = self._pos + len(data)
        if end > len(self._buffer):
            raise DataLossError(f"chunked result: more than the {len(self._buffer)} bytes declared")
        self._buffer[self._pos : end] = np.frombuffer(data, np.uint8)
        self._pos = end

    def result(self) -> np.ndarray:
        """The assembled array, in the input's dtype.

        Raises
        ------
        DataLossError
            No header, or fewer bytes than the header declared.
        """
        if self._header is None or self._pos != len(self._buffer):
            raise DataLossError(
                f"chunked result: the stream ended after {self._pos} of {len(self._buffer)} bytes"
            )
        return decode_output(self._header, self._dtype, self._buffer)
