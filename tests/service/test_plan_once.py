"""One plan per RPC: the server canonicalises a request's parameters exactly once, from the wire.

Counts calls of the core's single canonicalisation step (``deconv_core.params._common``) while
real RPCs run against the session's in-process server, and checks the bounds the planner puts on
what a caller sends: repeated fields longer than the rank are refused before anything is built
from them, messages quote a bounded prefix of the caller's values, and shapes that would overflow
are INVALID_ARGUMENT, never INTERNAL.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from deconv import codec
from deconv.v1 import deconv_pb2 as pb
from deconv.v1 import deconv_pb2_grpc as pb_grpc
from deconv_client import Client, ResourceExhaustedError
from deconv_server.app import ServerHandle

import deconv_core
from deconv_core import params

from .conftest import extra_server

MAX_MESSAGE_CHARS = 1000


@pytest.fixture
def stub(server: ServerHandle) -> Iterator[pb_grpc.DeconvStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield pb_grpc.DeconvStub(channel)


@pytest.fixture
def canonicalisations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ops of every canonicalisation the process runs while the test runs."""
    seen: list[str] = []
    original = params._common

    def counting(op: str, *args: object, **kwargs: object) -> object:
        seen.append(op)
        return original(op, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(params, "_common", counting)
    return seen


def _tensor(arr: np.ndarray) -> pb.Tensor:
    out = pb.Tensor()
    codec.encode(arr, out=out)
    return out


def _transposed(**fields: object) -> pb.TransposedConvRequest:
    x = np.arange(1 * 2 * 4 * 4, dtype=np.float32).reshape(1, 2, 4, 4)
    w = np.linspace(-1, 1, 2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3)
    request = pb.TransposedConvRequest(input=_tensor(x), weight=_tensor(w), stride=[2])
    request.explicit_padding.before.append(1)
    request.explicit_padding.after.append(1)
    request.output_padding.append(1)
    for name, value in fields.items():
        field = getattr(request, name)
        if isinstance(value, list):
            del field[:]
            field.extend(value)
        else:
            setattr(request, name, value)
    return request


def test_each_rpc_canonicalises_once(stub: pb_grpc.DeconvStub, canonicalisations: list[str]):
    x = np.linspace(0, 1, 1 * 2 * 5 * 5, dtype=np.float32).reshape(1, 2, 5, 5)
    w = np.linspace(-1, 1, 4 * 2 * 3 * 3, dtype=np.float32).reshape(4, 2, 3, 3)
    conv = pb.ConvRequest(input=_tensor(x), weight=_tensor(w), stride=[1, 2], dilation=[1])
    reply = stub.Conv(conv, timeout=30)
    want = deconv_core.conv(x, w, stride=(1, 2))
    np.testing.assert_array_equal(codec.decode(reply.output), want)
    assert canonicalisations == ["conv", "conv"]  # the RPC's one, then the reference's one

    del canonicalisations[:]
    reply = stub.TransposedConv(_transposed(), timeout=30)
    assert canonicalisations == ["conv_transpose"]
    assert codec.decode(reply.output).shape == (1, 3, 8, 8)

    del canonicalisations[:]
    chunks = stub.TransposedConvChunked(
        iter([pb.TransposedConvRequestChunk(request=_transposed(stride=[3]))]), timeout=30
    )
    parts = [c.WhichOneof("part") for c in chunks]
    assert parts[0] == "header" and set(parts[1:]) == {"data"}
    assert canonicalisations == ["conv_transpose"]


def test_a_repeated_geometry_is_not_planned_again(
    stub: pb_grpc.DeconvStub, canonicalisations: list[str]
):
    """The plan cache: same parameters, dtypes and shapes (other bytes) reuse the plan."""
    first = stub.TransposedConv(_transposed(dilation=[2]), timeout=30)
    assert canonicalisations == ["conv_transpose"]
    other = _transposed(dilation=[2])
    other.input.data = np.full((1, 2, 4, 4), 3, np.float32).tobytes()
    other.weight_digest = b""  # not part of the plan either
    del canonicalisations[:]
    again = stub.TransposedConv(other, timeout=30)
    chunked = stub.TransposedConvChunked(
        iter([pb.TransposedConvRequestChunk(request=other)]), timeout=30
    )
    parts = [c.WhichOneof("part") for c in chunked]  # the whole stream: the call completes
    assert parts[0] == "header"
    assert canonicalisations == []  # both served from the cached plan
    x = np.full((1, 2, 4, 4), 3, np.float32)
    w = codec.decode(other.weight)
    want = deconv_core.conv_transpose(x, w, stride=2, padding=1, output_padding=1, dilation=2)
    np.testing.assert_array_equal(codec.decode(again.output), want)
    assert codec.decode(first.output).shape == want.shape
    # a different shape of the same parameters is a new plan
    del canonicalisations[:]
    bigger = _transposed(dilation=[2])
    bigger.input.shape[:] = [2, 2, 4, 4]
    bigger.input.data = np.zeros((2, 2, 4, 4), np.float32).tobytes()
    stub.TransposedConv(bigger, timeout=30)
    assert canonicalisations == ["conv_transpose"]


def test_a_bad_request_is_judged_once_and_never_decoded(
    stub: pb_grpc.DeconvStub, canonicalisations: list[str], monkeypatch: pytest.MonkeyPatch
):
    decoded: list[object] = []
    monkeypatch.setattr(codec, "decode", lambda *a, **k: decoded.append(a))
    with pytest.raises(grpc.RpcError) as err:
        stub.TransposedConv(_transposed(output_padding=[2]), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output_padding[0]=2 must be < max(stride, dilation)=2" in err.value.details()
    assert canonicalisations == ["conv_transpose"]
    assert decoded == []


@pytest.mark.parametrize("field", ["stride", "dilation", "output_padding", "output_shape"])
def test_long_repeated_fields_are_refused_with_a_bounded_message(
    stub: pb_grpc.DeconvStub, field: str
):
    request = _transposed(**{field: list(range(1, 10**6 + 1))})
    if field == "output_shape":
        del request.output_padding[:]
    with pytest.raises(grpc.RpcError) as err:
        stub.TransposedConv(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.value.details()
    assert f"{field} must be one int or a sequence of 2 ints" in details
    assert "got 1000000" in details and "1000000 values in all" in details
    assert len(details) < MAX_MESSAGE_CHARS


def test_long_explicit_padding_is_refused_with_a_bounded_message(stub: pb_grpc.DeconvStub):
    request = _transposed()
    request.explicit_padding.before.extend([1] * 10**6)
    request.explicit_padding.after.extend([1] * 10**6)
    with pytest.raises(grpc.RpcError) as err:
        stub.TransposedConv(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "padding.before must be one int or a sequence of 2 ints" in err.value.details()
    assert len(err.value.details()) < MAX_MESSAGE_CHARS


def test_overflowing_shapes_and_values_are_invalid_not_internal(stub: pb_grpc.DeconvStub):
    huge = 2**63 - 1
    request = _transposed()
    request.input.CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[huge, huge, 0]))
    with pytest.raises(grpc.RpcError) as err:
        stub.TransposedConv(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "weight must have 3 dims like the input" in err.value.details()

    request = _transposed(dilation=[2**62])
    request.padding_mode = pb.PADDING_MODE_SAME
    with pytest.raises(grpc.RpcError) as err:
        stub.TransposedConv(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"dilation={2**62} must be <= {deconv_core.MAX_VALUE}" in err.value.details()


def test_mixed_dtypes_have_one_rule_and_one_message(stub: pb_grpc.DeconvStub):
    request = _transposed()
    request.weight.dtype = pb.DTYPE_BFLOAT16  # 2 bytes per element
    request.weight.data = request.weight.data[: len(request.weight.data) // 2]
    with pytest.raises(grpc.RpcError) as err:
        stub.TransposedConv(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(deconv_core.UnsupportedDtypeError) as core_err:
        deconv_core.plan_conv_transpose(
            (1, 2, 4, 4), (2, 3, 3, 3), dtype="float32", weight_dtype="bfloat16", stride=2
        )
    assert err.value.details() == str(core_err.value)


def test_workspace_limit_is_checked_on_the_plan_before_decoding(server: ServerHandle):
    """A request whose route needs more scratch memory than allowed is refused up front."""
    x = np.zeros((4, 64, 12, 12), np.float32)
    w = np.zeros((64, 32, 4, 4), np.float32)
    plan = deconv_core.plan_conv_transpose(x.shape, w.shape, stride=2, padding=1)
    limit = plan.workspace_bytes - 1
    handle = extra_server(max_workspace_bytes=limit)
    try:
        with Client(handle.target, timeout=30) as c:
            assert c.server_info().limits["max_workspace_bytes"] == limit
            with pytest.raises(ResourceExhaustedError) as err:
                c.conv_transpose(x, w, stride=2, padding=1)
            assert f"needs {plan.workspace_bytes} bytes of scratch memory" in str(err.value)
            assert f"route {plan.route!r}" in str(err.value)
            assert c.server_info().limits["max_workspace_bytes"] == limit
    finally:
        handle.stop(0).wait(5)
    with Client(server.target, timeout=30) as c:  # the default limit lets it run
        np.testing.assert_array_equal(
            c.conv_transpose(x, w, stride=2, padding=1),
            deconv_core.conv_transpose(x, w, stride=2, padding=1),
        )
