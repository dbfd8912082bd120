"""Every op x rank x dtype x layout through the service equals deconv_core bit for bit."""

from __future__ import annotations

import itertools
import zlib
from typing import Any

import numpy as np
import pytest
from deconv import codec
from deconv.v1 import deconv_pb2 as pb
from deconv_client import Client

from .helpers import core, rand, raw_stub

OPS = ("conv", "conv_transpose")
RANKS = (1, 2, 3)
DTYPES = ("float32", "float64", "float16", "bfloat16")
LAYOUTS = (
    ("channels_first", "torch"),
    ("channels_first", "tf"),
    ("channels_last", "torch"),
    ("channels_last", "tf"),
)
_WIRE = {
    "float32": pb.DTYPE_FLOAT32,
    "float64": pb.DTYPE_FLOAT64,
    "float16": pb.DTYPE_FLOAT16,
    "bfloat16": pb.DTYPE_BFLOAT16,
}
_DATA = {
    "channels_first": pb.DATA_FORMAT_CHANNELS_FIRST,
    "channels_last": pb.DATA_FORMAT_CHANNELS_LAST,
}
_WEIGHT = {"torch": pb.WEIGHT_FORMAT_TORCH, "tf": pb.WEIGHT_FORMAT_TF}


def make_case(
    op: str, rank: int, data_format: str, weight_format: str, seed: int
) -> dict[str, Any]:
    """Small float64 arrays in the requested layouts plus parameters that exercise every field."""
    rng = np.random.default_rng(seed)
    n, c_in, c_out, groups = 2, 4, 6, 2
    spatial = (5, 4, 3)[:rank]
    kernel = (3, 2, 2)[:rank]
    x = rand(rng, (n, c_in, *spatial), np.float64)
    if op == "conv":
        w = rand(rng, (c_out, c_in // groups, *kernel), np.float64)
        params: dict[str, Any] = {"stride": (2, 1, 1)[:rank], "padding": 1, "dilation": 1}
    else:
        w = rand(rng, (c_in, c_out // groups, *kernel), np.float64)
        params = {
            "stride": 2,
            "padding": [(1, 0), (0, 1), (1, 1)][:rank],
            "output_padding": 1,
            "dilation": (1, 2, 1)[:rank],
        }
    params["groups"] = groups
    b = rand(rng, (c_out,), np.float64)
    if data_format == "channels_last":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    if weight_format == "tf":
        w = np.ascontiguousarray(np.moveaxis(w, (0, 1), (-1, -2)))
    params.update(data_format=data_format, weight_format=weight_format)
    return {"x": x, "w": w, "b": b, "params": params}


def _request(op: str, tensors: dict[str, pb.Tensor], params: dict[str, Any]) -> Any:
    req: Any = pb.ConvRequest() if op == "conv" else pb.TransposedConvRequest()
    req.input.CopyFrom(tensors["x"])
    req.weight.CopyFrom(tensors["w"])
    req.bias.CopyFrom(tensors["b"])
    for name in ("stride", "dilation", "output_padding"):
        if name in params:
            value = params[name]
            getattr(req, name).extend([value] if isinstance(value, int) else list(value))
    pad = params["padding"]
    if isinstance(pad, int):
        req.explicit_padding.before.append(pad)
        req.explicit_padding.after.append(pad)
    else:
        req.explicit_padding.before.extend(p[0] for p in pad)
        req.explicit_padding.after.extend(p[1] for p in pad)
    req.groups = params["groups"]
    req.data_format = _DATA[params["data_format"]]
    req.weight_format = _WEIGHT[params["weight_format"]]
    return req


GRID = list(itertools.product(OPS, RANKS, DTYPES, LAYOUTS))


@pytest.mark.parametrize(
    ("op", "rank", "dtype", "layout"),
    GRID,
    ids=["-".join(map(str, g[:3])) + "-" + "-".join(g[3]) for g in GRID],
)
def test_wire_roundtrip_equals_core(
    target: str, op: str, rank: int, dtype: str, layout: tuple[str, str]
) -> None:
    """Raw stub: encode in the wire dtype, the server's answer equals the core's bit for bit.

    bfloat16: the server widens to float32, computes, and rounds back to bfloat16; the expected
    value is the core's float32 result on the widened inputs, rounded to nearest even.
    """
    case = make_case(op, rank, *layout, seed=zlib.crc32(f"{op}{rank}{layout}".encode()))
    wire = _WIRE[dtype]
    tensors = {k: codec.encode(case[k], dtype=wire) for k in ("x", "w", "b")}
    with raw_stub(target) as stub:
        method = stub.Conv if op == "conv" else stub.TransposedConv
        reply = method(_request(op, tensors, case["params"]), timeout=60)
    assert reply.output.dtype == wire
    got_bits = codec.decode_bits(reply.output)
    inputs = [codec.decode(tensors[k]) for k in ("x", "w", "b")]
    expected = core(op, *inputs, **case["params"])
    if dtype == "bfloat16":
        assert expected.dtype == np.float32
        expected_bits = codec.float32_to_bfloat16_bits(expected)
    else:
        assert expected.dtype == np.dtype(dtype)
        expected_bits = expected
    assert got_bits.shape == expected_bits.shape
    np.testing.assert_array_equal(
        got_bits.view(np.uint8), np.ascontiguousarray(expected_bits).view(np.uint8)
    )


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("layout", LAYOUTS, ids="-".join)
def test_client_roundtrip_equals_core(
    client: Client, op: str, dtype: str, layout: tuple[str, str]
) -> None:
    """The Python client, same arguments as the core: same array, dtype and layout."""
    case = make_case(op, 2, *layout, seed=7)
    x, w, b = (case[k].astype(dtype) for k in ("x", "w", "b"))
    got = getattr(client, op)(x, w, b, **case["params"])
    expected = core(op, x, w, b, **case["params"])
    assert got.dtype == expected.dtype == np.dtype(dtype)
    assert got.flags.writeable and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)


def test_client_bfloat16_arrays(client: Client) -> None:
    """ml_dtypes.bfloat16 arrays go out as BFLOAT16 and come back as bfloat16."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    case = make_case("conv_transpose", 2, "channels_first", "torch", seed=3)
    x, w, b = (case[k].astype(ml_dtypes.bfloat16) for k in ("x", "w", "b"))
    got = client.conv_transpose(x, w, b, **case["params"])
    assert got.dtype == np.dtype(ml_dtypes.bfloat16)
    expected = core("conv_transpose", *(a.astype(np.float32) for a in (x, w, b)), **case["params"])
    np.testing.assert_array_equal(
        got.view(np.uint16), expected.astype(ml_dtypes.bfloat16).view(np.uint16)
    )


PARAM_FORMS = [
    ("conv_transpose", {"stride": 2, "padding": 1, "output_padding": 1}),
    ("conv_transpose", {"stride": (2, 3), "padding": (1, 0), "output_padding": (1, 2)}),
    ("conv_transpose", {"stride": 2, "padding": "same", "output_shape": (8, 7)}),
    ("conv_transpose", {"stride": 2, "padding": "same_lower", "output_shape": [8, 8]}),
    ("conv_transpose", {"stride": 2, "padding": "valid"}),
    ("conv_transpose", {"stride": 2, "padding": "valid", "output_shape": (10, 10)}),
    ("conv_transpose", {"stride": 1, "padding": 2, "dilation": 2}),
    ("conv_transpose", {"stride": 2, "padding": ((1, 2), (0, 1))}),
    ("conv", {"stride": 2, "padding": "same"}),
    ("conv", {"stride": 2, "padding": "same_lower"}),
    ("conv", {"padding": "valid", "stride": (1, 2)}),
    ("conv", {"padding": 2, "dilation": (2, 1)}),
    ("conv", {"stride": (1, 2), "padding": ((2, 0), (1, 1))}),
]


@pytest.mark.parametrize(
    ("op", "params"), PARAM_FORMS, ids=lambda v: str(v) if isinstance(v, str) else ""
)
def test_every_parameter_form(client: Client, op: str, params: dict[str, Any]) -> None:
    """Ints, per-axis ints, (before, after) pairs, modes and output_shape all survive the wire."""
    rng = np.random.default_rng(1)
    x = rand(rng, (1, 2, 4, 4))
    w = rand(rng, (2, 3, 3, 3)) if op == "conv_transpose" else rand(rng, (3, 2, 3, 3))
    got = getattr(client, op)(x, w, None, **params)
    np.testing.assert_array_equal(got, core(op, x, w, None, **params))


def test_worked_example_tf_same(client: Client) -> None:
    """docs/semantics.md, "Worked example": TF SAME, x=[1,2,3], w=[1,10,100], s=2, out=6."""
    x = np.array([[[1, 2, 3]]], np.float64)
    w = np.array([[[1, 10, 100]]], np.float64)
    y = client.conv_transpose(x, w, stride=2, padding="same", output_shape=[6])
    np.testing.assert_array_equal(y[0, 0], [1, 10, 102, 20, 203, 30])
    y = client.conv_transpose(x, w, stride=2, padding=1, output_padding=1)
    np.testing.assert_array_equal(y[0, 0], [10, 102, 20, 203, 30, 300])
    y = client.conv_transpose(x, w, np.array([5.0]), stride=2, padding="same", output_shape=[6])
    np.testing.assert_array_equal(y[0, 0], [6, 15, 107, 25, 208, 35])
