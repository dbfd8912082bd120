"""deconv.codec: byte layout, header checks before allocation, bfloat16 rounding."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from deconv import codec, wire
from deconv.v1 import deconv_pb2 as pb


def _bf16_reference(value: float) -> int:
    """Round one float32 to bfloat16 by comparing the two neighbours exactly (ties to even)."""
    bits = struct.unpack("<I", struct.pack("<f", value))[0]
    if value != value:  # NaN: keep sign and payload top bits, force quiet
        return (bits >> 16) | 0x0040
    lo = bits >> 16
    hi = lo + 1

    def widen(b: int) -> float:
        return struct.unpack("<f", struct.pack("<I", (b & 0xFFFF) << 16))[0]

    exact = struct.unpack("<f", struct.pack("<I", bits))[0]
    if (lo & 0x7F80) == 0x7F80:  # already inf
        return lo
    lo_v = widen(lo)
    if (hi & 0x7FFF) == 0x7F80:  # the upper neighbour is inf: IEEE rounds as if it were 2**128
        hi_v = 2.0**128 if exact > 0 else -(2.0**128)
    else:
        hi_v = widen(hi)
    d_lo, d_hi = abs(exact - lo_v), abs(hi_v - exact)
    if d_lo < d_hi:
        return lo
    if d_hi < d_lo:
        return hi & 0xFFFF
    return lo if lo % 2 == 0 else hi & 0xFFFF


def test_bfloat16_rounding_matches_exact_reference() -> None:
    """Random values, exact ties both ways, subnormals, overflow, inf, NaN, signed zero."""
    rng = np.random.default_rng(0)
    specials = np.array(
        [0x3F808000, 0x3F818000, 0x3F80FFFF, 0x00008000, 0x00018000, 0x7F7FFFFF, 0xFF7FFFFF,
         0x7F800000, 0xFF800000, 0x7FC00001, 0xFFA00000, 0x80000000, 0x00000001, 0x3F7F8000],
        dtype=np.uint32,
    ).view(np.float32)  # fmt: skip
    values = np.concatenate([specials, rng.standard_normal(2000).astype(np.float32) * 1e3])
    got = codec.float32_to_bfloat16_bits(values)
    expected = np.array([_bf16_reference(float(v)) for v in values], dtype=np.uint16)
    np.testing.assert_array_equal(got, expected)


def test_bfloat16_matches_ml_dtypes() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.random.default_rng(1).standard_normal(5000).astype(np.float32) * 300
    np.testing.assert_array_equal(
        codec.float32_to_bfloat16_bits(values), values.astype(ml_dtypes.bfloat16).view(np.uint16)
    )


def test_bfloat16_widening_is_exact() -> None:
    bits = np.arange(0, 1 << 16, 37, dtype=np.uint16)
    wide = codec.bfloat16_bits_to_float32(bits)
    assert wide.dtype == np.float32
    back = wide.view(np.uint32) >> 16
    np.testing.assert_array_equal(back.astype(np.uint16), bits)


@pytest.mark.parametrize(
    ("dtype", "wire", "fmt"),
    [(np.float32, pb.DTYPE_FLOAT32, "<f"), (np.float64, pb.DTYPE_FLOAT64, "<d"),
     (np.float16, pb.DTYPE_FLOAT16, "<e")],
)  # fmt: skip
def test_encode_is_little_endian_c_order(dtype: type, wire: int, fmt: str) -> None:
    """Big-endian and Fortran-ordered arrays still go out as little-endian C order."""
    base = np.arange(6, dtype=dtype).reshape(2, 3) + 0.5
    for arr in (base, np.asfortranarray(base), base.astype(np.dtype(dtype).newbyteorder(">"))):
        t = codec.encode(arr)
        assert t.dtype == wire and list(t.shape) == [2, 3]
        expected = b"".join(struct.pack(fmt, float(v)) for v in base.ravel(order="C"))
        assert t.data == expected
        np.testing.assert_array_equal(codec.decode(t), base)


def test_decode_is_a_readonly_view_of_the_message_bytes() -> None:
    t = codec.encode(np.ones((3, 4), np.float32))
    arr = codec.decode(t)
    assert arr.shape == (3, 4) and arr.dtype == np.float32
    assert not arr.flags.writeable and not arr.flags.owndata
    assert isinstance(arr.base, bytes | memoryview) or isinstance(arr.base.base, bytes)


def test_scalar_and_empty_shapes() -> None:
    assert codec.decode(codec.encode(np.float64(2.5))).shape == ()
    empty = codec.decode(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[0, 3], data=b""))
    assert empty.shape == (0, 3)


def test_wrong_byte_length_names_both_sizes() -> None:
    t = pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2, 3], data=b"\0" * 20)
    with pytest.raises(codec.InvalidTensorError, match=r"20 bytes .* needs 24"):
        codec.decode(t, name="input")


def test_huge_declared_shape_fails_before_allocation() -> None:
    """10**12 declared elements with no data: a clean error, never a MemoryError."""
    t = pb.Tensor(dtype=pb.DTYPE_FLOAT64, shape=[10**6, 10**6], data=b"")
    with pytest.raises(codec.InvalidTensorError, match="needs 8000000000000"):
        codec.decode(t)
    with pytest.raises(codec.TensorLimitError, match="more than the server's limit of 1000"):
        codec.decode(t, max_elements=1000)
    t = pb.Tensor(dtype=pb.DTYPE_BFLOAT16, shape=[1 << 40], data=b"")
    with pytest.raises(codec.TensorLimitError):
        codec.decode(t, max_elements=1 << 20)


@pytest.mark.parametrize(
    ("tensor", "pattern"),
    [
        (pb.Tensor(dtype=pb.DTYPE_UNSPECIFIED, shape=[1]), "DTYPE_UNSPECIFIED"),
        (pb.Tensor(dtype=17, shape=[1]), "unknown dtype value 17"),
        (pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2, -1]), r"shape\[1\]=-1 must be >= 0"),
        (pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[1] * 9), "9 dims"),
    ],
)
def test_bad_headers(tensor: pb.Tensor, pattern: str) -> None:
    with pytest.raises(codec.InvalidTensorError, match=pattern):
        codec.decode(tensor)


def test_unsupported_numpy_dtypes() -> None:
    for arr in (np.ones(3, np.int32), np.ones(3, np.complex64), np.array(["a"])):
        with pytest.raises(codec.InvalidTensorError, match="cannot be sent"):
            codec.encode(arr)


def test_encode_to_bfloat16_and_back() -> None:
    """Ties round to the even neighbour: 1+2**-8 -> 1, 1+3*2**-8 -> 1+2**-6."""
    x = np.array([1.0, 1.00390625, -2.5, 1.01171875], np.float32)
    t = codec.encode(x, dtype=pb.DTYPE_BFLOAT16)
    assert t.dtype == pb.DTYPE_BFLOAT16 and len(t.data) == 8
    out = codec.decode(t)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [1.0, 1.0, -2.5, 1.015625])


@pytest.mark.parametrize(
    ("names", "enum", "unnamed"),
    [
        (wire.DATA_FORMAT_NAMES, pb.DataFormat, set()),
        (wire.WEIGHT_FORMAT_NAMES, pb.WeightFormat, set()),
        (wire.PADDING_MODE_NAMES, pb.PaddingMode, {pb.PADDING_MODE_UNSPECIFIED}),
        (wire.PADDING_FILL_NAMES, pb.PaddingFill, set()),
        (wire.CONVENTION_NAMES, pb.Convention, set()),
    ],
)
def test_every_enum_value_of_the_wire_has_its_one_name(names, enum, unnamed) -> None:
    """The one table client and server read: every value named (or deliberately not)."""
    assert set(names) | unnamed == set(enum.values())
    values = wire.enum_values(names)
    assert all(names[v] == n for n, v in values.items()) and 0 not in values.values()
