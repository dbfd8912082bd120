"""Pre-framed chunk messages (deconv.frames) and the plan cache's key agree with protobuf."""

from __future__ import annotations

import numpy as np
import pytest
from deconv import frames
from deconv.v1 import deconv_pb2 as pb
from deconv_server.parsing import Unparsed, lenient_parser
from deconv_server.plan_cache import PlanCache, request_key
from hypothesis import given, settings
from hypothesis import strategies as st

CHUNKS = [pb.ConvRequestChunk, pb.TransposedConvRequestChunk, pb.TensorChunk]


@pytest.mark.parametrize("kind", CHUNKS)
@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16383, 16384, 1 << 21])
def test_encode_data_is_protobufs_own_encoding(kind: type, size: int) -> None:
    payload = np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes()
    framed = frames.encode_data(memoryview(payload))
    assert framed == kind(data=payload).SerializeToString()
    assert bytes(frames.parse_data(framed)) == payload  # type: ignore[arg-type]
    parsed = frames.chunk_parser(kind)(framed)
    assert isinstance(parsed, frames.DataFrame)
    assert parsed.WhichOneof("part") == "data" and bytes(parsed.data) == payload
    assert parsed.ByteSize() == len(framed)


@pytest.mark.parametrize("kind", CHUNKS[:2])
def test_other_messages_are_left_to_protobuf(kind: type) -> None:
    parse = frames.chunk_parser(kind, lenient_parser(kind))
    data_then_field = kind(data=b"abc", response_chunk_bytes=5).SerializeToString()
    first = kind(response_chunk_bytes=7).SerializeToString()
    for raw in (data_then_field, first, b""):
        assert frames.parse_data(raw) is None
        parsed = parse(raw)
        assert not isinstance(parsed, frames.DataFrame)
        assert parsed == kind.FromString(raw)
    # a truncated length or payload: protobuf's complaint, not a short view
    for raw in (b"\x12", b"\x12\x05ab", b"\x12\xff\xff"):
        assert frames.parse_data(raw) is None
        assert isinstance(parse(raw), Unparsed)


def test_a_type_without_the_data_field_is_refused() -> None:
    with pytest.raises((TypeError, KeyError)):
        frames.chunk_parser(pb.ConvRequest)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_parse_like_protobuf(raw: bytes) -> None:
    kind = pb.ConvRequestChunk
    parsed = frames.chunk_parser(kind, lenient_parser(kind))(raw)
    try:
        reference = kind.FromString(raw)
    except Exception:
        assert isinstance(parsed, Unparsed)
        return
    if isinstance(parsed, frames.DataFrame):
        assert reference.WhichOneof("part") == "data"
        assert bytes(parsed.data) == reference.data
        assert reference.ByteSize() == len(raw)  # nothing else was in the message
    else:
        assert parsed == reference


def _request() -> pb.TransposedConvRequest:
    request = pb.TransposedConvRequest(stride=[2], groups=1)
    request.input.dtype = pb.DTYPE_FLOAT32
    request.input.shape[:] = [1, 2, 4, 4]
    request.input.data = bytes(128)
    request.weight.dtype = pb.DTYPE_FLOAT32
    request.weight.shape[:] = [2, 3, 3, 3]
    request.explicit_padding.before[:] = [1]
    request.explicit_padding.after[:] = [1]
    return request


def test_the_plan_key_ignores_bytes_and_digest_only() -> None:
    base = request_key("conv_transpose", _request())
    same = _request()
    same.input.data = b"\1" * 128
    same.weight_digest = b"\2" * 32
    assert request_key("conv_transpose", same) == base
    assert request_key("conv", _request()) != base
    changes = {
        "input.shape": lambda r: r.input.shape.__setitem__(0, 2),
        "input.dtype": lambda r: setattr(r.input, "dtype", pb.DTYPE_FLOAT64),
        "weight.shape": lambda r: r.weight.shape.__setitem__(3, 5),
        "bias": lambda r: r.bias.shape.append(3),
        "stride": lambda r: r.stride.append(1),
        "dilation": lambda r: r.dilation.append(2),
        "groups": lambda r: setattr(r, "groups", 2),
        "data_format": lambda r: setattr(r, "data_format", pb.DATA_FORMAT_CHANNELS_LAST),
        "weight_format": lambda r: setattr(r, "weight_format", pb.WEIGHT_FORMAT_TF),
        "padding": lambda r: r.explicit_padding.after.__setitem__(0, 0),
        "padding_mode": lambda r: setattr(r, "padding_mode", pb.PADDING_MODE_SAME),
        "output_padding": lambda r: r.output_padding.append(1),
        "output_shape": lambda r: r.output_shape.append(9),
        "convention": lambda r: setattr(r, "convention", pb.CONVENTION_ONNX),
    }
    keys = {}
    for name, change in changes.items():
        request = _request()
        change(request)
        keys[name] = request_key("conv_transpose", request)
        assert keys[name] != base, name
    assert len(set(keys.values())) == len(keys)
    # every field of the request is either in the key or known to be irrelevant
    covered = {name.split(".")[0] for name in changes} | {"input", "weight", "weight_digest"}
    fields = {f.name for f in pb.TransposedConvRequest.DESCRIPTOR.fields}
    assert fields - covered <= {"explicit_padding", "output_shared_memory"}


def test_the_cache_is_a_bounded_lru() -> None:
    cache = PlanCache(capacity=2)
    plans = [object(), object(), object()]
    cache.put(("a",), plans[0])  # type: ignore[arg-type]
    cache.put(("b",), plans[1])  # type: ignore[arg-type]
    assert cache.get(("a",)) is plans[0]  # "a" is now the most recent
    cache.put(("c",), plans[2])  # type: ignore[arg-type]
    assert cache.get(("b",)) is None and len(cache) == 2
    assert cache.get(("a",)) is plans[0] and cache.get(("c",)) is plans[2]
    assert (cache.hits, cache.misses) == (3, 1)
    off = PlanCache(capacity=0)
    off.put(("a",), plans[0])  # type: ignore[arg-type]
    assert off.get(("a",)) is None
