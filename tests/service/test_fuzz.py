"""Hypothesis fuzzer of Deconv requests: never INTERNAL, never a crash or a hang.

Random field values (shapes, dtypes, enums, per-axis parameters, padding), random or mutated
bytes, and random chunk streams go to a server built by ``deconv_server.app`` (which registers
with :func:`deconv_server.handlers.add_to_server`). Every answer must be OK, INVALID_ARGUMENT or
RESOURCE_EXHAUSTED within the per-call timeout; an OK answer must carry a well-formed tensor of
the input's dtype. Afterwards a good call still gets the exact result. Bounded: derandomized,
150 examples per test, small limits so that every accepted request computes in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from deconv import codec
from deconv.v1 import deconv_pb2 as pb
from deconv_server.app import ServerHandle
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from .conftest import extra_server
from .helpers import core

SERVICE = "/deconv.v1.Deconv/"
TIMEOUT = 20.0
ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LIMITS = {
    "max_tensor_elements": 1 << 16,
    "max_output_elements": 1 << 16,
    "max_message_bytes": 4 << 20,
    "max_flops_per_request": 10**7,
    "workers": 8,
}
ITEMSIZE = {1: 4, 2: 8, 3: 2, 4: 2}

X = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
W = np.ones((1, 2, 3, 3), np.float32)
GOOD = pb.TransposedConvRequest(input=codec.encode(X), weight=codec.encode(W), stride=[2])


@pytest.fixture(scope="module")
def channel(server: ServerHandle) -> Iterator[grpc.Channel]:
    """A channel to a server with small limits (``server`` guarantees compiled kernels)."""
    handle = extra_server(**LIMITS)
    ch = grpc.insecure_channel(handle.target)
    try:
        yield ch
    finally:
        ch.close()
        handle.stop(0).wait(5)


# ---- strategies ----------------------------------------------------------------------------

WEIRD_INTS = st.sampled_from([-1, -7, -(2**63), 2**62, 2**63 - 1, 2**31, 1 << 20, 1000])
SMALL_OR_WEIRD = st.one_of(st.integers(0, 5), st.integers(0, 5), WEIRD_INTS)
DTYPES = st.one_of(st.sampled_from([1, 2, 3, 4]), st.sampled_from([0, 5, 42, -1]))
ENUMS = st.one_of(st.integers(0, 3), st.integers(-3, 100))


@st.composite
def tensors(draw: Any) -> pb.Tensor:
    """A Tensor with a plausible or absurd header and matching, random or missing bytes."""
    dtype = draw(st.one_of(st.sampled_from([1, 2, 3, 4]), DTYPES))
    shape = draw(
        st.one_of(
            st.lists(st.integers(1, 5), min_size=3, max_size=5),
            st.lists(SMALL_OR_WEIRD, min_size=0, max_size=6),
            st.lists(st.integers(0, 3), min_size=9, max_size=10),
        )
    )
    count = int(np.prod(shape, dtype=object)) if shape else 1
    kind = draw(st.sampled_from(["exact", "exact", "random", "empty", "off by one"]))
    itemsize = ITEMSIZE.get(dtype, 4)
    if kind in ("exact", "off by one") and 0 <= count <= 4096 and min(shape, default=1) >= 0:
        n = count * itemsize + (draw(st.sampled_from([-1, 1])) if kind == "off by one" else 0)
        values = draw(st.sampled_from(["normal", "special"]))
        if values == "special":
            data = bytes(draw(st.binary(min_size=max(n, 0), max_size=max(n, 0))))
        else:
            rng = np.random.default_rng(count)
            data = rng.standard_normal(max(n, 0)).astype(np.float32).tobytes()[: max(n, 0)]
    elif kind == "random":
        data = draw(st.binary(max_size=64))
    else:
        data = b""
    return pb.Tensor(dtype=dtype, shape=shape, data=data)


def per_axis() -> Any:
    return st.lists(SMALL_OR_WEIRD, max_size=4)


@st.composite
def requests(draw: Any, message: Any) -> Any:
    """A ConvRequest or TransposedConvRequest with any mix of fields set."""
    req = message()
    for name in ("input", "weight", "bias"):
        if draw(st.integers(0, 9)) > (1 if name != "bias" else 5):
            getattr(req, name).CopyFrom(draw(tensors()))
    req.stride.extend(draw(per_axis()))
    req.dilation.extend(draw(per_axis()))
    req.groups = draw(st.one_of(st.integers(0, 3), WEIRD_INTS))
    req.data_format = draw(ENUMS)
    req.weight_format = draw(ENUMS)
    padding = draw(st.sampled_from(["none", "mode", "explicit"]))
    if padding == "mode":
        req.padding_mode = draw(ENUMS)
    elif padding == "explicit":
        req.explicit_padding.before.extend(draw(per_axis()))
        req.explicit_padding.after.extend(draw(per_axis()))
    if isinstance(req, pb.TransposedConvRequest):
        req.output_padding.extend(draw(per_axis()))
        req.output_shape.extend(draw(per_axis()))
    return req


def _wire_bytes(values: np.ndarray, dtype: int) -> bytes:
    if dtype == pb.DTYPE_BFLOAT16:
        return codec.float32_to_bfloat16_bits(values).tobytes()
    return values.astype(codec.numpy_dtype(dtype)).tobytes()


@st.composite
def near_valid(draw: Any, op: str) -> tuple[Any, dict[str, Any] | None]:
    """A valid request of random geometry, maybe with one field replaced by a wild value.

    Returns the request and, when nothing was replaced, the deconv_core arguments that give
    its exact result (``None`` after a replacement).
    """
    rank = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    sizes = draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank))
    kernel = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    stride = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    dilation = draw(st.lists(st.integers(1, 2), min_size=rank, max_size=rank))
    dtype = draw(st.sampled_from([1, 2, 3, 4]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((draw(st.integers(1, 2)), c_in, *sizes)).astype(np.float32)
    if op == "conv":
        w_shape = (c_out, c_in // groups, *kernel)
        message: Any = pb.ConvRequest()
    else:
        w_shape = (c_in, c_out // groups, *kernel)
        message = pb.TransposedConvRequest()
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32) if draw(st.booleans()) else None
    message.input.CopyFrom(pb.Tensor(dtype=dtype, shape=x.shape, data=_wire_bytes(x, dtype)))
    message.weight.CopyFrom(pb.Tensor(dtype=dtype, shape=w.shape, data=_wire_bytes(w, dtype)))
    if b is not None:
        message.bias.CopyFrom(pb.Tensor(dtype=dtype, shape=b.shape, data=_wire_bytes(b, dtype)))
    message.stride.extend(stride)
    message.dilation.extend(dilation)
    message.groups = groups
    kwargs: dict[str, Any] = {"stride": stride, "dilation": dilation, "groups": groups}
    mode = draw(st.sampled_from([0, 1, 2, 3, "explicit"]))
    if mode == "explicit":
        pads = draw(st.lists(st.integers(0, 2), min_size=rank, max_size=rank))
        message.explicit_padding.before.extend(pads)
        message.explicit_padding.after.extend(pads)
        kwargs["padding"] = pads
    else:
        message.padding_mode = mode
        kwargs["padding"] = [0, "valid", "same", "same_lower"][mode]
    if op == "conv_transpose" and mode in (0, "explicit"):
        op_pad = [
            draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation, strict=True)
        ]
        message.output_padding.extend(op_pad)
        kwargs["output_padding"] = op_pad
    if draw(st.booleans()):
        field = draw(st.sampled_from(["stride", "dilation", "groups", "padding", "tensor"]))
        if field in ("stride", "dilation"):
            del getattr(message, field)[:]
            getattr(message, field).extend(draw(per_axis()))
        elif field == "groups":
            message.groups = draw(st.one_of(st.integers(-2, 5), WEIRD_INTS))
        elif field == "padding":
            message.explicit_padding.before.extend(draw(per_axis()))
            message.explicit_padding.after.extend(draw(per_axis()))
        else:
            getattr(message, draw(st.sampled_from(["input", "weight", "bias"]))).CopyFrom(
                draw(tensors())
            )
        return message, None
    arrays = [codec.decode(t) for t in (message.input, message.weight)]
    bias = codec.decode(message.bias) if b is not None else None
    return message, {"arrays": (*arrays, bias), "kwargs": kwargs}


@st.composite
def mutated_bytes(draw: Any) -> bytes:
    """A valid serialized request with bytes flipped, cut, inserted, or pure noise."""
    raw = bytearray(GOOD.SerializeToString())
    how = draw(st.sampled_from(["noise", "flip", "cut", "insert"]))
    if how == "noise":
        return draw(st.binary(max_size=256))
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] = draw(st.integers(0, 255))
    elif how == "cut":
        raw = raw[: draw(st.integers(0, len(raw)))]
    else:
        i = draw(st.integers(0, len(raw)))
        raw[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(raw)


# ---- calls ---------------------------------------------------------------------------------


def _serialize(message: Any) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def _check_unary(channel: grpc.Channel, method: str, payload: Any) -> None:
    unary = channel.unary_unary(
        SERVICE + method, request_serializer=_serialize, response_deserializer=bytes
    )
    try:
        raw = unary(payload, timeout=TIMEOUT)
    except grpc.RpcError as err:
        event(f"status {err.code().name}")
        assert err.code() in ALLOWED, f"{err.code()}: {err.details()}"
        assert err.details(), "an error status needs a message"
        return
    event("status OK")
    out = pb.ConvResponse.FromString(raw).output
    assert isinstance(payload, pb.ConvRequest | pb.TransposedConvRequest) or payload
    y = codec.decode_bits(out)  # well-formed: byte length matches the shape
    if not isinstance(payload, bytes):
        assert out.dtype == payload.input.dtype
        assert y.ndim == len(payload.input.shape)


@FUZZ
@given(req=requests(pb.TransposedConvRequest))
def test_fuzz_transposed_conv_fields(channel: grpc.Channel, req: Any) -> None:
    _check_unary(channel, "TransposedConv", req)


@FUZZ
@given(req=requests(pb.ConvRequest))
def test_fuzz_conv_fields(channel: grpc.Channel, req: Any) -> None:
    _check_unary(channel, "Conv", req)


@FUZZ
@given(case=near_valid("conv_transpose") | near_valid("conv"))
def test_fuzz_near_valid_requests(channel: grpc.Channel, case: Any) -> None:
    """Valid geometry (maybe with one wild field): OK results equal deconv_core's exactly."""
    req, reference = case
    method = "Conv" if isinstance(req, pb.ConvRequest) else "TransposedConv"
    unary = channel.unary_unary(
        SERVICE + method, request_serializer=_serialize, response_deserializer=bytes
    )
    try:
        raw = unary(req, timeout=TIMEOUT)
    except grpc.RpcError as err:
        event(f"status {err.code().name}")
        assert err.code() in ALLOWED, f"{err.code()}: {err.details()}"
        return
    event("status OK")
    out = pb.ConvResponse.FromString(raw).output
    assert out.dtype == req.input.dtype
    if reference is not None:
        op = "conv" if method == "Conv" else "conv_transpose"
        expected = core(op, *reference["arrays"], **reference["kwargs"])
        expected_out = codec.encode(expected, dtype=req.input.dtype)
        assert list(out.shape) == list(expected_out.shape)
        assert out.data == expected_out.data  # bit for bit


@FUZZ
@given(raw=mutated_bytes(), method=st.sampled_from(["Conv", "TransposedConv", "GetServerInfo"]))
def test_fuzz_raw_bytes(channel: grpc.Channel, raw: bytes, method: str) -> None:
    if method == "GetServerInfo":
        unary = channel.unary_unary(
            SERVICE + method, request_serializer=_serialize, response_deserializer=bytes
        )
        try:
            unary(raw, timeout=TIMEOUT)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        return
    _check_unary(channel, method, raw)


@st.composite
def chunk_streams(draw: Any) -> list[Any]:
    """A TransposedConvChunked stream: a (maybe absent) request, then data or stray messages."""
    messages: list[Any] = []
    if draw(st.booleans()):
        req = draw(st.one_of(requests(pb.TransposedConvRequest), st.just(GOOD)))
        if draw(st.booleans()):  # make its tensors pending
            req = pb.TransposedConvRequest.FromString(req.SerializeToString())
            req.input.data = b""
        messages.append(
            pb.TransposedConvRequestChunk(
                request=req, response_chunk_bytes=draw(st.one_of(st.integers(-5, 100), WEIRD_INTS))
            )
        )
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["data", "data", "exact", "request", "noise"]))
        if kind == "data":
            messages.append(pb.TransposedConvRequestChunk(data=draw(st.binary(max_size=80))))
        elif kind == "exact":
            messages.append(pb.TransposedConvRequestChunk(data=X.tobytes()))
        elif kind == "request":
            messages.append(pb.TransposedConvRequestChunk(request=GOOD))
        else:
            messages.append(draw(st.binary(min_size=1, max_size=32)))
    return messages


@FUZZ
@given(messages=chunk_streams())
def test_fuzz_chunked_streams(channel: grpc.Channel, messages: list[Any]) -> None:
    stream = channel.stream_stream(
        SERVICE + "TransposedConvChunked",
        request_serializer=_serialize,
        response_deserializer=bytes,
    )
    try:
        replies = [pb.TensorChunk.FromString(r) for r in stream(iter(messages), timeout=TIMEOUT)]
    except grpc.RpcError as err:
        event(f"status {err.code().name}")
        assert err.code() in ALLOWED, f"{err.code()}: {err.details()}"
        return
    event("status OK")
    assert replies and replies[0].WhichOneof("part") == "header"
    header = replies[0].header
    data = b"".join(r.data for r in replies[1:])
    codec.decode_bits(header, data=data)


def test_after_fuzzing_a_good_call_still_works(channel: grpc.Channel) -> None:
    reply = channel.unary_unary(
        SERVICE + "TransposedConv", request_serializer=_serialize, response_deserializer=bytes
    )(GOOD, timeout=TIMEOUT)
    got = codec.decode(pb.ConvResponse.FromString(reply).output)
    np.testing.assert_array_equal(got, core("conv_transpose", X, W, stride=2))
