"""A corpus of malformed requests sent through raw gRPC channels: status, message, no harm done.

The client library checks arguments locally, so these go through generic calls whose serializer
sends messages or raw bytes as they are (the server registers with
:func:`deconv_server.handlers.add_to_server`, so bytes that do not parse get INVALID_ARGUMENT
rather than gRPC's INTERNAL). Every case names its expected
status code and a pattern its message must match; afterwards a good call still gets the exact
result, health is SERVING, and the process RSS has not jumped (the element bombs were refused
before any allocation).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
from deconv import codec
from deconv.v1 import deconv_pb2 as pb
from deconv_server.app import ServerHandle
from deconv_server.config import ServerConfig
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .conftest import extra_server
from .helpers import core

INV = grpc.StatusCode.INVALID_ARGUMENT
RES = grpc.StatusCode.RESOURCE_EXHAUSTED
OK = grpc.StatusCode.OK
MAX_FLOPS = 10**8
LIMITS = {
    "max_tensor_elements": 1 << 20,
    "max_output_elements": 1 << 21,
    "max_message_bytes": 16 << 20,
    "max_flops_per_request": MAX_FLOPS,
    "workers": 8,
}
SERVICE = "/deconv.v1.Deconv/"

X = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4) / 8
WT = np.linspace(-1, 1, 54, dtype=np.float32).reshape(2, 3, 3, 3)  # transposed: (C_in, C_out, k, k)
WC = np.linspace(-1, 1, 54, dtype=np.float32).reshape(3, 2, 3, 3)  # conv: (C_out, C_in, k, k)
B = np.array([0.5, -1.0, 2.0], np.float32)


def tconv(**fields: Any) -> pb.TransposedConvRequest:
    """A valid transposed conv (stride 2, padding 1, bias), with ``fields`` set on top."""
    req = pb.TransposedConvRequest(
        input=codec.encode(X),
        weight=codec.encode(WT),
        bias=codec.encode(B),
        stride=[2],
        explicit_padding=pb.ExplicitPadding(before=[1], after=[1]),
    )
    for name, value in fields.items():
        _set(req, name, value)
    return req


def conv(**fields: Any) -> pb.ConvRequest:
    """A valid conv (padding 1, bias), with ``fields`` set on top."""
    req = pb.ConvRequest(
        input=codec.encode(X),
        weight=codec.encode(WC),
        bias=codec.encode(B),
        explicit_padding=pb.ExplicitPadding(before=[1], after=[1]),
    )
    for name, value in fields.items():
        _set(req, name, value)
    return req


def _set(req: Any, name: str, value: Any) -> None:
    if value is None:
        req.ClearField(name)
    elif isinstance(value, pb.Tensor | pb.ExplicitPadding):
        getattr(req, name).CopyFrom(value)
    elif isinstance(value, list):
        del getattr(req, name)[:]
        getattr(req, name).extend(value)
    else:
        setattr(req, name, value)


def tensor(shape: list[int], data: bytes = b"", dtype: int = pb.DTYPE_FLOAT32) -> pb.Tensor:
    """A Tensor with any header and any bytes (no consistency checks)."""
    return pb.Tensor(dtype=dtype, shape=shape, data=data)


def with_tensor(make: Callable[..., Any], name: str, **changes: Any) -> Any:
    """A request whose tensor ``name`` has some header fields or bytes changed."""
    req = make()
    t = getattr(req, name)
    for key, value in changes.items():
        if key == "shape":
            del t.shape[:]
            t.shape.extend(value)
        elif key == "cut":
            t.data = t.data[: len(t.data) - value]
        else:
            setattr(t, key, value)
    return req


def f32(n: int) -> bytes:
    return np.zeros(n, np.float32).tobytes()


@dataclass(frozen=True)
class Case:
    """One malformed request: method, payload, expected code and message pattern."""

    method: str
    payload: Any  # a message, raw bytes, or a list of chunk messages / raw bytes (streaming)
    code: grpc.StatusCode
    pattern: str


GOOD_T = tconv().SerializeToString()
BOMB = 2**62

CASES: dict[str, Case] = {
    # ---- bytes that do not parse (a generic call with an identity serializer) ----
    "garbage bytes": Case(
        "TransposedConv",
        b"\xff\xff\xff",
        INV,
        "does not parse as a deconv.v1.TransposedConvRequest",
    ),
    "truncated submessage": Case(
        "Conv", b"\x0a\x05abc", INV, "does not parse as a deconv.v1.ConvRequest"
    ),
    "good request cut short": Case(
        "TransposedConv", GOOD_T[:-10], INV, r"request \(\d+ bytes\) does not parse"
    ),
    "good request plus a stray byte": Case(
        "TransposedConv", GOOD_T + b"\xff", INV, "does not parse"
    ),
    "11-byte varint": Case(
        "TransposedConv", b"\x30" + b"\xff" * 10 + b"\x01", INV, "does not parse"
    ),
    "length prefix past the end": Case("Conv", b"\x0a\xff\xff\xff\xff\x0f", INV, "does not parse"),
    "known field, wrong wire type": Case(
        "Conv", b"\x0d\x00\x00\x00\x00", INV, "conv: the input tensor is missing"
    ),
    "empty message": Case(
        "TransposedConv", b"", INV, "conv_transpose: the input tensor is missing"
    ),
    "garbage GetServerInfo": Case(
        "GetServerInfo", b"\xff\x00", INV, "does not parse as a deconv.v1.GetServerInfoRequest"
    ),
    "garbage first chunk": Case(
        "ConvChunked", [b"\xff\xff"], INV, "does not parse as a deconv.v1.ConvRequestChunk"
    ),
    "garbage second chunk": Case(
        "TransposedConvChunked",
        [pb.TransposedConvRequestChunk(request=tconv()).SerializeToString(), b"\x12\x09ab"],
        INV,
        "does not parse as a deconv.v1.TransposedConvRequestChunk",
    ),
    # ---- tensor headers and bytes ----
    "input 4 bytes short": Case(
        "TransposedConv",
        with_tensor(tconv, "input", cut=4),
        INV,
        r"input: data has 124 bytes but shape \[1, 2, 4, 4\] of DTYPE_FLOAT32 needs 128",
    ),
    "weight 1 byte long": Case(
        "Conv",
        with_tensor(conv, "weight", data=WC.tobytes() + b"\x00"),
        INV,
        r"weight: data has 217 bytes but shape \[3, 2, 3, 3\] of DTYPE_FLOAT32 needs 216",
    ),
    "bias without data": Case(
        "TransposedConv", with_tensor(tconv, "bias", data=b""), INV, r"bias: data has 0 bytes"
    ),
    "float16 odd byte count": Case(
        "Conv",
        conv(
            input=tensor([1, 2, 4, 4], b"\x00" * 63, pb.DTYPE_FLOAT16),
            weight=tensor([3, 2, 3, 3], b"\x00" * 108, pb.DTYPE_FLOAT16),
            bias=None,
        ),
        INV,
        r"input: data has 63 bytes but shape \[1, 2, 4, 4\] of DTYPE_FLOAT16 needs 64",
    ),
    "negative extent": Case(
        "TransposedConv",
        with_tensor(tconv, "input", shape=[1, 2, -4, 4]),
        INV,
        r"input: shape\[2\]=-4 must be >= 0",
    ),
    "most negative int64 extent": Case(
        "Conv",
        with_tensor(conv, "weight", shape=[3, 2, -(2**63), 3]),
        INV,
        r"weight: shape\[2\]=-9223372036854775808 must be >= 0",
    ),
    "element bomb (product overflows int64)": Case(
        "TransposedConv",
        tconv(input=tensor([BOMB, BOMB, 4, 4])),
        RES,
        r"input: shape \[4611686018427387904, 4611686018427387904, 4, 4\] has \d{39} elements, "
        r"more than the server's limit of 1048576",
    ),
    "element bomb (far above the limit, tiny data)": Case(
        "Conv",
        conv(input=tensor([1, 2, 1 << 20, 1 << 20], f32(4))),
        RES,
        r"input: shape \[1, 2, 1048576, 1048576\] has 2199023255552 elements, more than the "
        r"server's limit of 1048576",
    ),
    "weight bomb": Case(
        "TransposedConv",
        tconv(weight=tensor([2, 3, 1 << 16, 1 << 16])),
        RES,
        r"weight: shape \[2, 3, 65536, 65536\] has 25769803776 elements, more than the "
        r"server's limit",
    ),
    "bias bomb": Case(
        "Conv", conv(bias=tensor([1 << 40])), RES, r"bias: shape \[1099511627776\] has"
    ),
    "nine dims": Case(
        "Conv",
        conv(input=tensor([1] * 9, f32(1))),
        INV,
        "input: 9 dims is more than the 8 allowed",
    ),
    "scalar input": Case(
        "Conv", conv(input=tensor([], f32(1))), INV, r"input must have 3, 4 or 5 dims .* got 0 dims"
    ),
    "2-d input (no spatial axis)": Case(
        "TransposedConv",
        tconv(input=tensor([1, 2], f32(2))),
        INV,
        r"input must have 3, 4 or 5 dims .* got 2 dims with shape \(1, 2\)",
    ),
    "too many spatial dims (4)": Case(
        "Conv",
        conv(input=tensor([1, 2, 2, 2, 2, 2], f32(32)), weight=tensor([3, 2, 1, 1, 1, 1], f32(6))),
        INV,
        r"input must have 3, 4 or 5 dims .* got 6 dims",
    ),
    "weight rank differs from input rank": Case(
        "TransposedConv",
        tconv(weight=tensor([2, 3, 3], f32(18))),
        INV,
        r"weight must have 4 dims like the input \(rank 2\), got shape \(2, 3, 3\)",
    ),
    "dtype unspecified": Case(
        "Conv",
        with_tensor(conv, "input", dtype=pb.DTYPE_UNSPECIFIED),
        INV,
        "input: dtype is DTYPE_UNSPECIFIED",
    ),
    "dtype unknown": Case(
        "TransposedConv",
        with_tensor(tconv, "weight", dtype=42),
        INV,
        "weight: unknown dtype value 42",
    ),
    "dtype negative": Case(
        "Conv", with_tensor(conv, "bias", dtype=-7), INV, "bias: unknown dtype value -7"
    ),
    "weight dtype float64": Case(
        "Conv",
        conv(weight=codec.encode(WC.astype(np.float64))),
        INV,
        "weight dtype float64 must match the input dtype float32",
    ),
    "bias dtype bfloat16": Case(
        "TransposedConv",
        tconv(bias=codec.encode(B, dtype=pb.DTYPE_BFLOAT16)),
        INV,
        "bias dtype bfloat16 must match the input dtype float32",
    ),
    "missing input": Case("Conv", conv(input=None), INV, "conv: the input tensor is missing"),
    "missing weight": Case(
        "TransposedConv", tconv(weight=None), INV, "conv_transpose: the weight tensor is missing"
    ),
    "empty spatial axis": Case(
        "TransposedConv",
        tconv(input=tensor([1, 2, 0, 4])),
        INV,
        r"input size 0 on axis 2 must be >= 1 .*only the batch may be 0",
    ),
    "zero channels": Case(
        "Conv", conv(input=tensor([1, 0, 4, 4])), INV, r"input size 0 on axis 1 must be >= 1"
    ),
    "zero-size kernel": Case(
        "TransposedConv",
        tconv(weight=tensor([2, 3, 0, 3])),
        INV,
        r"weight size 0 on axis 2 must be >= 1",
    ),
    "bias wrong length": Case(
        "Conv",
        conv(bias=codec.encode(np.ones(4, np.float32))),
        INV,
        r"bias shape \(4,\) must be \(C_out,\)=\(3,\)",
    ),
    "bias 2-d": Case(
        "TransposedConv",
        tconv(bias=codec.encode(np.ones((1, 3), np.float32))),
        INV,
        r"bias must be 1-D with one value per output channel, got shape \(1, 3\)",
    ),
    # ---- parameters ----
    "groups do not divide C_in": Case(
        "TransposedConv", tconv(groups=3), INV, "groups=3 must divide input channels C_in=2"
    ),
    "groups negative": Case("Conv", conv(groups=-1), INV, "groups=-1 must be >= 1"),
    "groups enormous": Case(
        "Conv",
        conv(groups=2**62),
        INV,
        "groups=4611686018427387904 must be <= 2147483647",
    ),
    "groups mismatch the weight": Case(
        "Conv", conv(groups=2), INV, r"groups=2 must divide output channels C_out=3"
    ),
    "zero stride": Case("TransposedConv", tconv(stride=[0]), INV, r"stride.*=0 must be >= 1"),
    "negative stride": Case("Conv", conv(stride=[1, -2]), INV, r"stride\[1\]=-2 must be >= 1"),
    "stride count wrong": Case("Conv", conv(stride=[1, 1, 1]), INV, r"stride must be one int"),
    "zero dilation": Case("TransposedConv", tconv(dilation=[0]), INV, r"dilation.*=0 must be >= 1"),
    "output_padding too big": Case(
        "TransposedConv",
        tconv(output_padding=[2]),
        INV,
        r"output_padding\[0\]=2 must be < max\(stride, dilation\)=2",
    ),
    "output_padding negative": Case(
        "TransposedConv", tconv(output_padding=[-1]), INV, "output_padding=-1 must be >= 0"
    ),
    "output_shape count wrong": Case(
        "TransposedConv",
        tconv(output_shape=[7, 7, 7]),
        INV,
        "output_shape must be one int or a sequence of 2 ints",
    ),
    "output_shape out of range": Case(
        "TransposedConv",
        tconv(output_shape=[100, 100]),
        INV,
        r"output_shape\[0\]=100 is outside the legal range 7..8",
    ),
    "output_shape zero": Case(
        "TransposedConv", tconv(output_shape=[0, 0]), INV, r"output_shape\[0\]=0 must be >= 1"
    ),
    "ragged explicit padding": Case(
        "Conv",
        conv(explicit_padding=pb.ExplicitPadding(before=[1, 1], after=[1])),
        INV,
        "explicit padding has 2 'before' and 1 'after'",
    ),
    "negative padding": Case(
        "Conv",
        conv(explicit_padding=pb.ExplicitPadding(before=[-1], after=[-1])),
        INV,
        r"padding\.before=-1 must be >= 0",
    ),
    "crop larger than the result": Case(
        "TransposedConv",
        tconv(explicit_padding=pb.ExplicitPadding(before=[9], after=[9])),
        INV,
        "output size -9 on spatial axis 0 must be >= 1",
    ),
    "kernel larger than the padded input": Case(
        "Conv",
        conv(dilation=[5], explicit_padding=None),
        INV,
        "output size 0 on spatial axis 0 must be >= 1",
    ),
    "unknown padding_mode": Case(
        "TransposedConv", tconv(padding_mode=11), INV, "unknown padding_mode value 11"
    ),
    "unknown data_format": Case("Conv", conv(data_format=9), INV, "unknown data_format value 9"),
    "unknown weight_format": Case(
        "TransposedConv", tconv(weight_format=-5), INV, "unknown weight_format value -5"
    ),
    "TF weight layout with torch shape": Case(
        "Conv",
        conv(weight_format=pb.WEIGHT_FORMAT_TF),
        INV,
        r"weight.shape\[2\]=3 must be C_in/groups=2/1=2 .*weight_format='tf'",
    ),
    # ---- limits: RESOURCE_EXHAUSTED naming the limit and the asked size ----
    "result over the element limit": Case(
        "TransposedConv",
        tconv(stride=[4000]),
        RES,
        r"the result \[1, 3, 12001, 12001\] has 432072003 elements, more than the server's "
        r"limit of 2097152",
    ),
    "enormous stride": Case(
        "TransposedConv", tconv(stride=[2**62]), INV, r"stride=4611686018427387904 must be <= 2\d+"
    ),
    "enormous dilation": Case(
        "TransposedConv", tconv(dilation=[2**40]), INV, r"dilation=1099511627776 must be <= 2\d+"
    ),
    "FLOPs over the limit, no data sent": Case(
        "TransposedConv",
        tconv(input=tensor([1, 16, 64, 64]), weight=tensor([16, 16, 9, 9]), bias=None),
        RES,
        rf"conv_transpose: the request needs 169869312 FLOPs \(2 x 84934656 multiply-adds\), "
        rf"more than the server's limit of {MAX_FLOPS} FLOPs per request",
    ),
    "conv FLOPs over the limit": Case(
        "Conv",
        conv(input=tensor([4, 64, 32, 32]), weight=tensor([64, 64, 3, 3]), bias=None),
        RES,
        rf"conv: the request needs \d+ FLOPs .* limit of {MAX_FLOPS} FLOPs",
    ),
    # ---- chunked streams ----
    "chunked: data first": Case(
        "ConvChunked",
        [pb.ConvRequestChunk(data=b"1234")],
        INV,
        "the first message of a chunked call must carry the request",
    ),
    "chunked: empty stream": Case(
        "TransposedConvChunked", [], INV, "the first message of a chunked call must carry"
    ),
    "chunked: request twice": Case(
        "TransposedConvChunked",
        [pb.TransposedConvRequestChunk(request=tconv())] * 2,
        INV,
        "only data messages may follow the first message",
    ),
    "chunked: too many bytes": Case(
        "TransposedConvChunked",
        [
            pb.TransposedConvRequestChunk(request=with_tensor(tconv, "input", data=b"")),
            pb.TransposedConvRequestChunk(data=X.tobytes() + b"\x00"),
        ],
        INV,
        "the stream carries more than the 128 bytes its pending tensors",
    ),
    "chunked: too few bytes": Case(
        "ConvChunked",
        [
            pb.ConvRequestChunk(request=with_tensor(conv, "input", data=b"")),
            pb.ConvRequestChunk(data=X.tobytes()[:100]),
        ],
        INV,
        r"the stream ended after 100 of the 128 bytes its pending tensors \(input\) need",
    ),
    "chunked: element bomb in the header": Case(
        "ConvChunked",
        [pb.ConvRequestChunk(request=conv(input=tensor([1, 2, 1 << 30, 1 << 30])))],
        RES,
        r"input: shape \[1, 2, 1073741824, 1073741824\] has \d+ elements, more than",
    ),
    "chunked: FLOPs over the limit": Case(
        "TransposedConvChunked",
        [
            pb.TransposedConvRequestChunk(
                request=tconv(
                    input=tensor([1, 16, 64, 64]), weight=tensor([16, 16, 9, 9]), bias=None
                )
            )
        ],
        RES,
        rf"more than the server's limit of {MAX_FLOPS} FLOPs per request",
    ),
}


def _serialize(message: Any) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def call(channel: grpc.Channel, case: Case, timeout: float = 30) -> None:
    """Send a case's payload as it is; raises grpc.RpcError on a non-OK status."""
    path = SERVICE + case.method
    if isinstance(case.payload, list):
        stream = channel.stream_stream(
            path, request_serializer=_serialize, response_deserializer=bytes
        )
        list(stream(iter(case.payload), timeout=timeout))
    else:
        unary = channel.unary_unary(
            path, request_serializer=_serialize, response_deserializer=bytes
        )
        unary(case.payload, timeout=timeout)


def rss_bytes() -> int:
    """Resident set size of this process (the in-process servers live here)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def good_call(channel: grpc.Channel) -> None:
    """A valid transposed conv with bias gets the core's exact result."""
    reply = pb.ConvResponse.FromString(
        channel.unary_unary(
            SERVICE + "TransposedConv", request_serializer=_serialize, response_deserializer=bytes
        )(tconv(), timeout=30)
    )
    expected = core("conv_transpose", X, WT, B, stride=2, padding=1)
    np.testing.assert_array_equal(codec.decode(reply.output), expected)


@dataclass
class Servers:
    """The module's server (deconv_server.app, as deployed) and the RSS after a good call."""

    channel: grpc.Channel
    handle: ServerHandle
    rss_start: int


@pytest.fixture(scope="module")
def servers(server: ServerHandle) -> Iterator[Servers]:
    """A server with the module's small limits; ``server`` ensures warm kernels."""
    handle = extra_server(**LIMITS)
    channel = grpc.insecure_channel(handle.target)
    try:
        good_call(channel)
        yield Servers(channel, handle, rss_bytes())
    finally:
        channel.close()
        handle.stop(0).wait(5)


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 50
    assert sum(isinstance(c.payload, bytes) for c in CASES.values()) >= 8


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_malformed_request(servers: Servers, name: str) -> None:
    case = CASES[name]
    with pytest.raises(grpc.RpcError) as info:
        call(servers.channel, case)
    err = info.value
    assert err.code() == case.code, f"{name}: {err.code()} {err.details()}"
    assert re.search(case.pattern, err.details()), f"{name}: {err.details()}"


def test_unknown_fields_are_ignored(servers: Servers) -> None:
    """Forward compatibility: a field number this version does not know is skipped."""
    extra = b"\xfa\x3e\x03abc"  # field 999, length-delimited
    reply = servers.channel.unary_unary(
        SERVICE + "TransposedConv", request_serializer=_serialize, response_deserializer=bytes
    )(GOOD_T + extra, timeout=30)
    got = codec.decode(pb.ConvResponse.FromString(reply).output)
    np.testing.assert_array_equal(got, core("conv_transpose", X, WT, B, stride=2, padding=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_compute_like_ieee(servers: Servers, dtype: Any) -> None:
    """NaN and Inf are legal values: they propagate as IEEE arithmetic (and torch) does.

    1-D transposed conv, stride 1: full[i + t] += x[i] * w[t]. A zero tap still multiplies:
    NaN * 0 = NaN and Inf * 0 = NaN, so no kernel may skip zero weights.
    """
    nan, inf = np.nan, np.inf
    x = np.array([[[1.0, nan, 2.0, inf, 1.0]]], dtype)
    w = np.array([[[1.0, 0.0]]], dtype)
    expected = np.array([[[1.0, nan, nan, inf, nan, 0.0]]], dtype)
    stub_call = servers.channel.unary_unary(
        SERVICE + "TransposedConv", request_serializer=_serialize, response_deserializer=bytes
    )
    reply = stub_call(
        pb.TransposedConvRequest(input=codec.encode(x), weight=codec.encode(w)), timeout=30
    )
    got = codec.decode(pb.ConvResponse.FromString(reply).output)
    np.testing.assert_array_equal(got, expected)  # NaN positions must match too
    # conv: -Inf + Inf = NaN inside a window, plain Inf where only one of them is seen.
    x = np.array([[[-inf, inf, 1.0, 1.0]]], dtype)
    w = np.array([[[1.0, 1.0]]], dtype)
    reply = servers.channel.unary_unary(
        SERVICE + "Conv", request_serializer=_serialize, response_deserializer=bytes
    )(pb.ConvRequest(input=codec.encode(x), weight=codec.encode(w)), timeout=30)
    got = codec.decode(pb.ConvResponse.FromString(reply).output)
    np.testing.assert_array_equal(got, np.array([[[nan, inf, 2.0]]], dtype))


def test_flops_limit_from_the_environment() -> None:
    assert ServerConfig.from_env({"DECONV_MAX_FLOPS": "12345"}).max_flops_per_request == 12345
    assert ServerConfig().max_flops_per_request == 2 * 10**12


def test_after_the_corpus_the_servers_are_healthy_and_small(servers: Servers) -> None:
    good_call(servers.channel)
    health = health_pb2_grpc.HealthStub(servers.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="deconv.v1.Deconv"), timeout=10)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert servers.handle.servicer.in_flight == 0
    grown = rss_bytes() - servers.rss_start
    assert grown < 64 << 20, f"RSS grew by {grown / 2**20:.1f} MiB during the corpus"


def test_server_info_reports_the_flops_limit(servers: Servers) -> None:
    reply = pb.GetServerInfoResponse.FromString(
        servers.channel.unary_unary(
            SERVICE + "GetServerInfo", request_serializer=_serialize, response_deserializer=bytes
        )(pb.GetServerInfoRequest(), timeout=10)
    )
    assert reply.limits.max_flops_per_request == MAX_FLOPS
