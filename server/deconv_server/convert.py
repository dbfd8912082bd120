"""Turn a Conv/TransposedConv request into a checked plan, then into arrays.

Order matters. :func:`plan_request` reads only the message's metadata: the tensor headers (dtype,
shape, element limit), the enums, and the parameters straight from the wire's repeated fields,
which it hands to the core's planner (``deconv_core.plan_conv``/``plan_conv_transpose``: the one
place the parameters are canonicalised, and the one source of every rule's message). Every limit
(elements, output, message size, FLOPs, scratch memory) is then checked on that plan. Only then
does :func:`decode_plan` wrap the tensors' bytes (zero-copy views, except bfloat16 which widens to
float32); the servicer executes the same plan. Chunked requests run the same checks on their first
message before any of their bytes are held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from deconv import codec, wire
from deconv.v1 import deconv_pb2 as pb

import deconv_core
from deconv_server import plan_cache
from deconv_server.config import ServerConfig
from deconv_server.errors import RequestError, RequestLimitError, ResultTooLargeError
from deconv_server.parsing import Unparsed, lenient_parser, require_parsed

__all__ = [
    "RequestPlan",
    "Unparsed",
    "core_parameters",
    "decode_plan",
    "lenient_parser",
    "plan_request",
    "require_parsed",
]

#: Bytes a response needs beyond its tensor data (field tags, lengths, the shape).
_RESPONSE_OVERHEAD = 256

_DATA_FORMATS = wire.DATA_FORMAT_NAMES
_WEIGHT_FORMATS = wire.WEIGHT_FORMAT_NAMES
_PADDING_MODES: dict[int, Any] = {pb.PADDING_MODE_UNSPECIFIED: 0, **wire.PADDING_MODE_NAMES}
_PADDING_FILLS = wire.PADDING_FILL_NAMES
_CONVENTIONS = wire.CONVENTION_NAMES
#: Wire dtype -> the planner's dtype name.
_DTYPE_NAMES = {
    pb.DTYPE_FLOAT32: "float32",
    pb.DTYPE_FLOAT64: "float64",
    pb.DTYPE_FLOAT16: "float16",
    pb.DTYPE_BFLOAT16: "bfloat16",
}


@dataclass(frozen=True)
class RequestPlan:
    """A request whose metadata passed every check; nothing decoded or allocated yet.

    Attributes
    ----------
    wire_dtype : int
        ``deconv.v1.DType`` of the request; the response uses it too.
    tensors : dict of str to deconv.v1.Tensor
        "input", "weight" and, when present, "bias".
    nbytes : dict of str to int
        Exact data size of each tensor.
    core : deconv_core.Plan
        The core's plan: geometry, output shape, route, work and scratch memory.
    digest : bytes
        The request's ``weight_digest`` (empty: the weight cache is not involved).
    weight_cached : bool
        The weight is named by its digest and comes from the server's cache: its bytes are
        neither in the message nor in a chunked call's data stream.
    shared : tuple of str
        Tensors whose bytes lie in shared memory (:mod:`deconv_server.shared_memory`).
    output_ref : deconv.v1.SharedMemoryRef or None
        Where the caller wants the result written instead of the response.
    """

    wire_dtype: int
    tensors: dict[str, Any]
    nbytes: dict[str, int]
    core: deconv_core.Plan
    digest: bytes = b""
    weight_cached: bool = False
    shared: tuple[str, ...] = ()
    output_ref: Any = None

    @property
    def op(self) -> str:
        """"conv" or "conv_transpose"."""
        return self.core.op

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of the result in the caller's layout."""
        return self.core.output_shape

    @property
    def output_bytes(self) -> int:
        """Bytes of the result on the wire."""
        return self.core.output_elements * codec.numpy_dtype(self.wire_dtype).itemsize

    @property
    def tensor_bytes(self) -> int:
        """Bytes of the request's tensors plus its result, as sent on the wire."""
        return sum(self.nbytes.values()) + self.output_bytes

    def pending(self) -> list[str]:
        """Tensors of a chunked request whose bytes follow the first message, in stream order."""
        return [
            n
            for n, t in self.tensors.items()
            if self.nbytes[n] and not (n == "weight" and self.weight_cached) and not t.data
        ]


def _enum(op: str, name: str, value: int, table: dict[int, Any], enum: Any) -> Any:
    try:
        return table[value]
    except KeyError:
        known = ", ".join(enum.Name(v) for v in table)
        raise RequestError(f"{op}: unknown {name} value {value}; expected one of {known}") from None


def _padding(op: str, request: Any) -> Any:
    """The padding oneof as the planner's argument (a mode name or explicit per-side lists)."""
    which = request.WhichOneof("padding")
    if which is None:
        return 0
    if which == "padding_mode":
        return _enum(op, "padding_mode", request.padding_mode, _PADDING_MODES, pb.PaddingMode)
    explicit = request.explicit_padding
    if not len(explicit.before) and not len(explicit.after):
        return 0
    return deconv_core.ExplicitPadding(explicit.before, explicit.after)


def _dtype_name(tensor: Any) -> str:
    return _DTYPE_NAMES[tensor.dtype]  # codec.tensor_nbytes has refused unknown dtypes


def core_parameters(op: str, request: Any) -> dict[str, Any]:
    """The op's keyword parameters from the wire fields as they are (empty = the default).

    Parameters
    ----------
    op : {"conv", "conv_transpose"}
    request : deconv.v1.ConvRequest or deconv.v1.TransposedConvRequest

    Returns
    -------
    dict
        Keyword arguments of ``deconv_core.plan_conv`` (or ``plan_conv_transpose``) beyond the
        shapes and dtypes; also those of the core's backward and deconvolve functions.

    Raises
    ------
    RequestError
        An enum value is unknown.
    """
    params: dict[str, Any] = dict(
        stride=request.stride or 1,
        padding=_padding(op, request),
        dilation=request.dilation or 1,
        groups=request.groups or 1,
        data_format=_enum(
            op, "data_format", request.data_format, _DATA_FORMATS, pb.DataFormat
        ),
        weight_format=_enum(
            op, "weight_format", request.weight_format, _WEIGHT_FORMATS, pb.WeightFormat
        ),
    )
    if op == "conv":
        params["padding_mode"] = _enum(
            op, "padding_fill", request.padding_fill, _PADDING_FILLS, pb.PaddingFill
        )
    else:
        params["output_padding"] = request.output_padding or 0
        params["output_shape"] = request.output_shape or None
        params["convention"] = _enum(
            op, "convention", request.convention, _CONVENTIONS, pb.Convention
        )
    return params


def _core_plan(op: str, request: Any, tensors: dict[str, Any]) -> deconv_core.Plan:
    """The core's plan, from the wire fields as they are (empty repeated field = default).

    A request whose parameters, dtypes and shapes were planned before gets that plan back
    (:mod:`deconv_server.plan_cache`); only a new geometry is canonicalised.
    """
    key = plan_cache.request_key(op, request)
    plan = plan_cache.PLANS.get(key)
    if plan is None:
        plan = _new_core_plan(op, request, tensors)
        plan_cache.PLANS.put(key, plan)
    return plan


def _new_core_plan(op: str, request: Any, tensors: dict[str, Any]) -> deconv_core.Plan:
    bias = tensors.get("bias")
    dtypes = dict(
        dtype=_dtype_name(tensors["input"]),
        weight_dtype=_dtype_name(tensors["weight"]),
        bias_dtype=None if bias is None else _dtype_name(bias),
    )
    shapes = (tensors["input"].shape, tensors["weight"].shape, None if bias is None else bias.shape)
    planner = deconv_core.plan_conv if op == "conv" else deconv_core.plan_conv_transpose
    return planner(*shapes, **dtypes, **core_parameters(op, request))


def plan_request(
    op: str,
    request: Any,
    config: ServerConfig,
    *,
    chunked: bool = False,
    digest_ok: bool = False,
    weight_pending: bool = False,
    shared_ok: bool = False,
) -> RequestPlan:
    """Check a ``ConvRequest`` (op "conv") or ``TransposedConvRequest`` from its metadata.

    Parameters
    ----------
    op : {"conv", "conv_transpose"}
    request : deconv.v1.ConvRequest or deconv.v1.TransposedConvRequest
    config : ServerConfig
        Supplies the limits.
    chunked : bool
        The result goes back in chunks, so the message size does not bound it.
    digest_ok : bool
        The RPC serves the weight cache (Conv/TransposedConv and their chunked RPCs); elsewhere
        a ``weight_digest`` is INVALID_ARGUMENT.
    weight_pending : bool
        A chunked call's ``weight_pending``: a weight named by digest follows in the stream.
    shared_ok : bool
        The RPC serves shared memory (unary Conv/TransposedConv); elsewhere a tensor's
        ``shared_memory`` or the request's ``output_shared_memory`` is INVALID_ARGUMENT.

    Returns
    -------
    RequestPlan

    Raises
    ------
    RequestError
        A tensor is missing or an enum value is unknown (INVALID_ARGUMENT).
    RequestLimitError
        The result would be over the element limit, the computation over the FLOPs limit, or
        its scratch memory over the workspace limit (RESOURCE_EXHAUSTED).
    ResultTooLargeError
        The result does not fit one response message (RESOURCE_EXHAUSTED; the chunked RPC
        would succeed, and the status says so in its trailing metadata).
    deconv.codec.CodecError
        A tensor header is malformed or over the element limit.
    deconv_core.DeconvError
        A shape, dtype or parameter breaks a rule of the operation (INVALID_ARGUMENT).
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
    digest = _digest(op, request, digest_ok, weight_pending)
    shared = tuple(n for n, t in tensors.items() if t.HasField("shared_memory"))
    output_ref = request.output_shared_memory if request.HasField("output_shared_memory") else None
    if (shared or output_ref is not None) and not shared_ok:
        raise RequestError(
            f"{op}: shared memory is only for the unary Conv/TransposedConv RPCs; send the bytes"
        )
    cached = bool(digest) and not weight_pending and nbytes["weight"] > 0
    if cached and (tensors["weight"].data or "weight" in shared):
        cached = False  # the bytes came along: checked against the digest, then kept
    core = _core_plan(op, request, tensors)
    plan = RequestPlan(
        tensors["input"].dtype, tensors, nbytes, core, digest, cached, shared, output_ref
    )
    _check_limits(plan, config, chunked=chunked or output_ref is not None)
    return plan


def _digest(op: str, request: Any, digest_ok: bool, weight_pending: bool) -> bytes:
    """The request's ``weight_digest``, checked (length, where it is allowed)."""
    digest = bytes(request.weight_digest)
    if weight_pending and not digest:
        raise RequestError(f"{op}: weight_pending is set but weight_digest is empty")
    if not digest:
        return b""
    if not digest_ok:
        raise RequestError(
            f"{op}: weight_digest is only for Conv/TransposedConv calls; send the weight's bytes"
        )
    if len(digest) != wire.WEIGHT_DIGEST_BYTES:
        raise RequestError(
            f"{op}: weight_digest has {len(digest)} bytes; a SHA-256 digest has "
            f"{wire.WEIGHT_DIGEST_BYTES}"
        )
    return digest


def decode_plan(
    plan: RequestPlan, payloads: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Decode a plan's tensors (zero-copy views; bfloat16 widens to float32).

    Parameters
    ----------
    plan : RequestPlan
    payloads : dict of str to bytes-like, optional
        Bytes of tensors that arrived in chunks; they replace the tensors' own (empty) data.

    Returns
    -------
    (x, weight, bias)
        Arrays of the plan's shapes; bias is None without one.

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
    return arrays["input"], arrays["weight"], arrays.get("bias")


def _check_limits(plan: RequestPlan, config: ServerConfig, *, chunked: bool) -> None:
    op, core, shape = plan.op, plan.core, list(plan.output_shape)
    count = core.output_elements
    if count > config.max_output_elements:
        raise RequestLimitError(
            f"{op}: the result {shape} has {count} elements, more than the server's "
            f"limit of {config.max_output_elements}"
        )
    if core.flops > config.max_flops_per_request:
        raise RequestLimitError(
            f"{op}: the request needs {core.flops} FLOPs (2 x {core.macs} multiply-adds), more "
            f"than the server's limit of {config.max_flops_per_request} FLOPs per request; "
            f"split the batch or send smaller tensors"
        )
    if core.workspace_bytes > config.max_workspace_bytes:
        raise RequestLimitError(
            f"{op}: the request needs {core.workspace_bytes} bytes of scratch memory (route "
            f"{core.route!r}), more than the server's limit of {config.max_workspace_bytes} "
            f"bytes; split the batch or send smaller tensors"
        )
    nbytes = count * codec.numpy_dtype(plan.wire_dtype).itemsize + _RESPONSE_OVERHEAD
    if not chunked and nbytes > config.max_message_bytes:
        raise ResultTooLargeError(
            f"{op}: the result {shape} of {pb.DType.Name(plan.wire_dtype)} needs a "
            f"{nbytes}-byte response, more than the max message size of "
            f"{config.max_message_bytes} bytes; use the chunked RPC"
        )
