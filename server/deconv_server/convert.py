"""Turn a Conv/TransposedConv request into the arguments of a deconv_core call.

Order matters: the tensor headers, the dtypes, the parameters and the size of the result are all
checked from the message's metadata first (no allocation); only then are the tensors decoded
(zero-copy views, except bfloat16 which widens to float32). Chunked requests run the same checks
on their first message, receive the pending bytes, then decode. Parameter rules themselves are
the core's: the result's shape comes from ``deconv_core.params`` so its messages are the core's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from deconv import codec
from deconv.v1 import deconv_pb2 as pb

from deconv_core import params as core_params
from deconv_core.layout import Layout
from deconv_server.config import ServerConfig
from deconv_server.errors import RequestError, RequestLimitError

__all__ = [
    "CoreCall",
    "Plan",
    "Unparsed",
    "decode_plan",
    "lenient_parser",
    "parse_request",
    "plan_request",
    "require_parsed",
]

#: Bytes a response needs beyond its tensor data (field tags, lengths, the shape).
_RESPONSE_OVERHEAD = 256

_DATA_FORMATS = {
    pb.DATA_FORMAT_UNSPECIFIED: "channels_first",
    pb.DATA_FORMAT_CHANNELS_FIRST: "channels_first",
    pb.DATA_FORMAT_CHANNELS_LAST: "channels_last",
}
_WEIGHT_FORMATS = {
    pb.WEIGHT_FORMAT_UNSPECIFIED: "torch",
    pb.WEIGHT_FORMAT_TORCH: "torch",
    pb.WEIGHT_FORMAT_TF: "tf",
}
_PADDING_MODES: dict[int, Any] = {
    pb.PADDING_MODE_UNSPECIFIED: 0,
    pb.PADDING_MODE_VALID: "valid",
    pb.PADDING_MODE_SAME: "same",
    pb.PADDING_MODE_SAME_LOWER: "same_lower",
}


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
            return Unparsed(full_name, len(data), str(exc) or type(exc).__name__)

    return parse


def require_parsed(op: str, message: Any) -> Any:
    """Return ``message``, or raise RequestError when it is an :class:`Unparsed` stand-in."""
    if isinstance(message, Unparsed):
        raise RequestError(
            f"{op}: the request ({message.size} bytes) does not parse as a {message.type_name} "
            f"message: {message.reason}"
        )
    return message


@dataclass(frozen=True)
class CoreCall:
    """One decoded request, ready for ``deconv_core.<op>(x, weight, bias, **params)``.

    Attributes
    ----------
    op : str
        "conv" or "conv_transpose".
    wire_dtype : int
        ``deconv.v1.DType`` of the request; the response uses it too.
    x, weight : ndarray
    bias : ndarray or None
    params : dict
        Keyword arguments of the core function.
    output_shape : tuple of int or None
        Shape of the result in the caller's layout, when it could be derived up front.
    """

    op: str
    wire_dtype: int
    x: np.ndarray
    weight: np.ndarray
    bias: np.ndarray | None
    params: dict[str, Any]
    output_shape: tuple[int, ...] | None


def _enum(op: str, name: str, value: int, table: dict[int, Any], enum: Any) -> Any:
    try:
        return table[value]
    except KeyError:
        known = ", ".join(enum.Name(v) for v in table)
        raise RequestError(f"{op}: unknown {name} value {value}; expected one of {known}") from None


def _ints(values: Any, default: int) -> int | tuple[int, ...]:
    """Repeated int64 -> the core's form: empty = default, one value = every axis."""
    items = tuple(int(v) for v in values)
    if not items:
        return default
    if len(items) == 1:
        return items[0]
    return items


def _padding(op: str, request: Any, rank: int | None) -> Any:
    which = request.WhichOneof("padding")
    if which is None:
        return 0
    if which == "padding_mode":
        return _enum(op, "padding_mode", request.padding_mode, _PADDING_MODES, pb.PaddingMode)
    before = tuple(int(v) for v in request.explicit_padding.before)
    after = tuple(int(v) for v in request.explicit_padding.after)
    if len(before) != len(after):
        raise RequestError(
            f"{op}: explicit_padding has {len(before)} 'before' and {len(after)} 'after' "
            f"values; give both one value, or both one value per spatial axis"
        )
    if not before:
        return 0
    if before == after:
        return before[0] if len(before) == 1 else before
    if len(before) == 1 and rank is not None:
        before, after = before * rank, after * rank
    return [(b, a) for b, a in zip(before, after, strict=True)]


def _result_geometry(
    op: str,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    b_shape: tuple[int, ...] | None,
    kwargs: dict[str, Any],
) -> tuple[tuple[int, ...], int] | None:
    """Shape of the result in the caller's layout and the MACs of the call.

    None when the core will reject the ranks (it then says why).
    """
    nd = len(x_shape)
    if nd not in (3, 4, 5) or len(w_shape) != nd or (b_shape is not None and len(b_shape) != 1):
        return None
    data_format = kwargs["data_format"]
    layout = Layout(data_format=data_format, weight_format=kwargs["weight_format"])
    rest = {k: v for k, v in kwargs.items() if k not in ("data_format", "weight_format")}
    if op == "conv":
        geom = core_params.conv_geometry(x_shape, w_shape, b_shape, layout=layout, **rest)
    else:
        geom = core_params.transpose_geometry(x_shape, w_shape, b_shape, layout=layout, **rest)
    out = geom.output_shape
    if data_format == "channels_last":
        out = (out[0], *out[2:], out[1])
    return tuple(out), int(geom.macs)


@dataclass(frozen=True)
class Plan:
    """A request whose metadata passed every check; nothing decoded or allocated yet.

    Attributes
    ----------
    op : str
    wire_dtype : int
    tensors : dict of str to deconv.v1.Tensor
        "input", "weight" and, when present, "bias".
    nbytes : dict of str to int
        Exact data size of each tensor.
    params : dict
    output_shape : tuple of int or None
    """

    op: str
    wire_dtype: int
    tensors: dict[str, Any]
    nbytes: dict[str, int]
    params: dict[str, Any]
    output_shape: tuple[int, ...] | None

    @property
    def tensor_bytes(self) -> int:
        """Bytes of the request's tensors plus its result, as sent on the wire."""
        out = 0
        if self.output_shape is not None:
            out = int(np.prod(self.output_shape, dtype=np.int64))
            out *= codec.numpy_dtype(self.wire_dtype).itemsize
        return sum(self.nbytes.values()) + out

    def pending(self) -> list[str]:
        """Tensors of a chunked request whose bytes follow the first message, in stream order."""
        return [n for n, t in self.tensors.items() if self.nbytes[n] and not t.data]


def plan_request(op: str, request: Any, config: ServerConfig, *, chunked: bool = False) -> Plan:
    """Check a ``ConvRequest`` (op "conv") or ``TransposedConvRequest`` from its metadata.

    Parameters
    ----------
    op : {"conv", "conv_transpose"}
    request : deconv.v1.ConvRequest or deconv.v1.TransposedConvRequest
    config : ServerConfig
        Supplies the size limits.
    chunked : bool
        The result goes back in chunks, so the message size does not bound it.

    Returns
    -------
    Plan

    Raises
    ------
    RequestError
        A tensor is missing, dtypes differ, an enum value is unknown (INVALID_ARGUMENT).
    RequestLimitError
        The result would be over the element or message-size limit, or the computation over the
        FLOPs limit (RESOURCE_EXHAUSTED).
    deconv.codec.CodecError
        A tensor header is malformed or over the element limit.
    deconv_core.InvalidArgumentError
        A parameter breaks a rule of the operation.
    """
    tensors: dict[str, Any] = {}
    for name in ("input", "weight", "bias"):
        if request.HasField(name):
            tensors[name] = getattr(request, name)
        elif name != "bias":
            raise RequestError(f"{op}: the {name} tensor is missing")
    nbytes = {
        name: codec.tensor_nbytes(
            tensor, name=f"{op}: {name}", max_elements=config.max_tensor_elements
        )
        for name, tensor in tensors.items()
    }
    wire = tensors["input"].dtype
    for name in ("weight", "bias"):
        if name in tensors and tensors[name].dtype != wire:
            raise RequestError(
                f"{op}: {name} dtype {pb.DType.Name(tensors[name].dtype)} must match the input "
                f"dtype {pb.DType.Name(wire)}; mixed dtypes are not computed"
            )

    x_shape = tuple(int(v) for v in tensors["input"].shape)
    rank = len(x_shape) - 2 if len(x_shape) in (3, 4, 5) else None
    kwargs: dict[str, Any] = {
        "stride": _ints(request.stride, 1),
        "padding": _padding(op, request, rank),
        "dilation": _ints(request.dilation, 1),
        "groups": int(request.groups) or 1,
        "data_format": _enum(op, "data_format", request.data_format, _DATA_FORMATS, pb.DataFormat),
        "weight_format": _enum(
            op, "weight_format", request.weight_format, _WEIGHT_FORMATS, pb.WeightFormat
        ),
    }
    if op == "conv_transpose":
        kwargs["output_padding"] = _ints(request.output_padding, 0)
        out_req = tuple(int(v) for v in request.output_shape)
        kwargs["output_shape"] = out_req or None

    geometry = _result_geometry(
        op,
        x_shape,
        tuple(int(v) for v in tensors["weight"].shape),
        tuple(int(v) for v in tensors["bias"].shape) if "bias" in tensors else None,
        kwargs,
    )
    shape = None
    if geometry is not None:
        shape, macs = geometry
        _check_result_size(op, shape, wire, config, chunked=chunked)
        _check_flops(op, macs, config)
    return Plan(op, wire, tensors, nbytes, kwargs, shape)


def decode_plan(plan: Plan, payloads: dict[str, Any] | None = None) -> CoreCall:
    """Decode a plan's tensors (zero-copy views; bfloat16 widens to float32).

    Parameters
    ----------
    plan : Plan
    payloads : dict of str to bytes-like, optional
        Bytes of tensors that arrived in chunks; they replace the tensors' own (empty) data.

    Raises
    ------
    deconv.codec.InvalidTensorError
        A tensor's byte length does not match its shape.
    """
    payloads = payloads or {}
    arrays = {
        name: codec.decode(t, name=f"{plan.op}: {name}", data=payloads.get(name))
        for name, t in plan.tensors.items()
    }
    return CoreCall(
        op=plan.op,
        wire_dtype=plan.wire_dtype,
        x=arrays["input"],
        weight=arrays["weight"],
        bias=arrays.get("bias"),
        params=plan.params,
        output_shape=plan.output_shape,
    )


def parse_request(op: str, request: Any, config: ServerConfig) -> CoreCall:
    """:func:`plan_request` then :func:`decode_plan`, for a unary request."""
    return decode_plan(plan_request(op, request, config))


def _check_result_size(
    op: str, shape: tuple[int, ...], wire: int, config: ServerConfig, *, chunked: bool
) -> None:
    count = math.prod(shape)
    if count > config.max_output_elements:
        raise RequestLimitError(
            f"{op}: the result {list(shape)} has {count} elements, more than the server's "
            f"limit of {config.max_output_elements}"
        )
    nbytes = count * codec.numpy_dtype(wire).itemsize + _RESPONSE_OVERHEAD
    if not chunked and nbytes > config.max_message_bytes:
        raise RequestLimitError(
            f"{op}: the result {list(shape)} of {pb.DType.Name(wire)} needs a {nbytes}-byte "
            f"response, more than the max message size of {config.max_message_bytes} bytes; "
            f"{codec.CHUNKED_HINT}"
        )


def _check_flops(op: str, macs: int, config: ServerConfig) -> None:
    flops = 2 * macs
    if flops > config.max_flops_per_request:
        raise RequestLimitError(
            f"{op}: the request needs {flops} FLOPs (2 x {macs} multiply-adds), more than the "
            f"server's limit of {config.max_flops_per_request} FLOPs per request; split the "
            f"batch or send smaller tensors"
        )
