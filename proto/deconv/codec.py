"""numpy <-> ``deconv.v1.Tensor`` codec (docs/semantics.md, section "Wire tensors").

A Tensor is ``{dtype, shape, data}`` with ``data`` little-endian, C order, no padding. Decoding
checks the dtype, the shape (ndim, non-negative extents, element-count limit) and
``len(data) == prod(shape) * itemsize`` *before* anything is allocated, then wraps the bytes with
:func:`numpy.frombuffer` (no copy; the result is read-only). bfloat16 travels as its uint16 bit
patterns: decoding widens it exactly to float32, encoding rounds float32 to nearest, ties to even.

This module imports only numpy and the generated protobuf stubs, so client and server share it.
"""

from __future__ import annotations

import math

import numpy as np

from deconv.v1 import deconv_pb2 as pb

__all__ = [
    "CHUNKED_HINT",
    "CHUNK_BYTES",
    "MAX_NDIM",
    "CodecError",
    "InvalidTensorError",
    "TensorLimitError",
    "bfloat16_bits_to_float32",
    "decode",
    "decode_bits",
    "encode",
    "float32_to_bfloat16_bits",
    "numpy_dtype",
    "tensor_nbytes",
    "wire_array",
    "wire_dtype",
]

#: Most dimensions a tensor may declare (the service uses at most 5).
MAX_NDIM = 8
#: Payload bytes per message of the chunked RPCs.
CHUNK_BYTES = 1 << 20
#: Ends the server's message when a result is too large for a unary response; a client that
#: sees it may repeat the call on the chunked RPC.
CHUNKED_HINT = "use the chunked RPC"

#: Wire dtype -> little-endian numpy dtype of the bytes on the wire.
_WIRE: dict[int, np.dtype] = {
    pb.DTYPE_FLOAT32: np.dtype("<f4"),
    pb.DTYPE_FLOAT64: np.dtype("<f8"),
    pb.DTYPE_FLOAT16: np.dtype("<f2"),
    pb.DTYPE_BFLOAT16: np.dtype("<u2"),
}
_FROM_NUMPY: dict[np.dtype, int] = {
    np.dtype(np.float32): pb.DTYPE_FLOAT32,
    np.dtype(np.float64): pb.DTYPE_FLOAT64,
    np.dtype(np.float16): pb.DTYPE_FLOAT16,
}


class CodecError(ValueError):
    """Base class of every error raised while converting a Tensor."""


class InvalidTensorError(CodecError):
    """The Tensor is malformed: unknown dtype, bad shape, wrong byte length (INVALID_ARGUMENT)."""


class TensorLimitError(CodecError):
    """The Tensor declares more elements than allowed (RESOURCE_EXHAUSTED)."""


def _dtype_name(dtype: int) -> str:
    try:
        return pb.DType.Name(dtype)
    except ValueError:
        return str(dtype)


def numpy_dtype(dtype: int, *, name: str = "tensor") -> np.dtype:
    """Little-endian numpy dtype of the bytes of a wire dtype (uint16 for bfloat16).

    Parameters
    ----------
    dtype : int
        A ``deconv.v1.DType`` value.
    name : str
        Name of the tensor, used in error messages.

    Returns
    -------
    numpy.dtype

    Raises
    ------
    InvalidTensorError
        ``DTYPE_UNSPECIFIED`` or a value this version does not know.
    """
    if dtype == pb.DTYPE_UNSPECIFIED:
        raise InvalidTensorError(f"{name}: dtype is DTYPE_UNSPECIFIED; set the tensor's dtype")
    try:
        return _WIRE[dtype]
    except KeyError:
        known = ", ".join(pb.DType.Name(v) for v in _WIRE)
        raise InvalidTensorError(
            f"{name}: unknown dtype value {dtype}; expected one of {known}"
        ) from None


def wire_dtype(dtype: np.dtype | type | str) -> int:
    """``deconv.v1.DType`` of a numpy dtype (float16/32/64, or a 2-byte ``bfloat16`` type).

    Raises
    ------
    InvalidTensorError
        Any other dtype.
    """
    dt = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
    found = _WIRE_OF.get(dt)
    if found is not None:
        return found
    if dt.name == "bfloat16" and dt.itemsize == 2:
        value = pb.DTYPE_BFLOAT16
    else:
        try:
            value = _FROM_NUMPY[dt.newbyteorder("=")]
        except KeyError:
            raise InvalidTensorError(
                f"dtype {dt} cannot be sent; use float32, float64, float16 or bfloat16"
            ) from None
    if len(_WIRE_OF) < 64:  # a handful of dtypes in practice; the bound is against odd ones
        _WIRE_OF[dt] = value
    return value


#: Wire dtypes of the numpy dtypes seen (the name lookup above costs microseconds per call).
_WIRE_OF: dict[np.dtype, int] = {}


def tensor_nbytes(tensor: pb.Tensor, *, name: str = "tensor", max_elements: int = 0) -> int:
    """Check a Tensor's header and return its exact data size in bytes; allocates nothing.

    Parameters
    ----------
    tensor : deconv.v1.Tensor
        Only ``dtype`` and ``shape`` are read.
    name : str
        Name of the tensor, used in error messages.
    max_elements : int
        Largest element count accepted; 0 means no limit.

    Returns
    -------
    int
        ``prod(shape) * itemsize``.

    Raises
    ------
    InvalidTensorError
        Unknown dtype, too many dims, negative extents.
    TensorLimitError
        More than ``max_elements`` elements.
    """
    dt = numpy_dtype(tensor.dtype, name=name)
    shape = tuple(tensor.shape)
    if len(shape) > MAX_NDIM:
        raise InvalidTensorError(f"{name}: {len(shape)} dims is more than the {MAX_NDIM} allowed")
    for axis, extent in enumerate(shape):
        if extent < 0:
            raise InvalidTensorError(f"{name}: shape[{axis}]={extent} must be >= 0")
    count = math.prod(shape)
    if max_elements and count > max_elements:
        raise TensorLimitError(
            f"{name}: shape {list(shape)} has {count} elements, more than the server's "
            f"limit of {max_elements}"
        )
    return count * dt.itemsize


def decode_bits(
    tensor: pb.Tensor,
    *,
    name: str = "tensor",
    max_elements: int = 0,
    data: bytes | bytearray | memoryview | None = None,
) -> np.ndarray:
    """View of a Tensor's data in its wire dtype (bfloat16 as uint16 bit patterns).

    No copy is made: the array wraps the message's bytes (read-only), or ``data`` when given
    (the bytes of a chunked transfer; then the tensor's own data is ignored).

    Raises
    ------
    InvalidTensorError
        Bad header, or ``len(data) != prod(shape) * itemsize``.
    TensorLimitError
        More than ``max_elements`` elements.
    """
    nbytes = tensor_nbytes(tensor, name=name, max_elements=max_elements)
    if data is None:
        data = tensor.data
    if len(data) != nbytes:
        raise InvalidTensorError(
            f"{name}: data has {len(data)} bytes but shape {list(tensor.shape)} of "
            f"{_dtype_name(tensor.dtype)} needs {nbytes}"
        )
    dt = _WIRE[tensor.dtype]
    return np.frombuffer(data, dtype=dt).reshape(tuple(tensor.shape))


def decode(
    tensor: pb.Tensor,
    *,
    name: str = "tensor",
    max_elements: int = 0,
    data: bytes | bytearray | memoryview | None = None,
) -> np.ndarray:
    """numpy array of a Tensor: a zero-copy view, except bfloat16 which widens to float32.

    Parameters
    ----------
    tensor : deconv.v1.Tensor
    name : str
        Name of the tensor, used in error messages.
    max_elements : int
        Largest element count accepted; 0 means no limit. Checked before any allocation.
    data : bytes-like, optional
        The tensor's bytes when they arrived apart from the message (chunked transfer).

    Returns
    -------
    ndarray
        float32/float64/float16 (read-only, little-endian), or float32 for bfloat16.

    Raises
    ------
    InvalidTensorError
        Unknown dtype, bad shape, or a byte length that does not match the shape.
    TensorLimitError
        More than ``max_elements`` elements.
    """
    arr = decode_bits(tensor, name=name, max_elements=max_elements, data=data)
    if tensor.dtype == pb.DTYPE_BFLOAT16:
        return bfloat16_bits_to_float32(arr)
    return arr


def wire_array(array: np.ndarray, *, dtype: int | None = None) -> tuple[int, np.ndarray]:
    """Wire dtype and a C-contiguous little-endian array whose raw bytes are the Tensor data.

    No copy when the array already has that form; chunked senders slice its bytes directly.

    Parameters
    ----------
    array : array_like
        float16/32/64, or a 2-byte ``bfloat16`` dtype (e.g. ``ml_dtypes.bfloat16``) whose bits
        are sent as they are.
    dtype : int, optional
        Wire dtype; default: the array's own. ``DTYPE_BFLOAT16`` with a float array rounds it
        to nearest, ties to even; other conversions use numpy's ``astype``.

    Returns
    -------
    (int, ndarray)
        The ``deconv.v1.DType`` and the array (uint16 bit patterns for bfloat16).

    Raises
    ------
    InvalidTensorError
        A dtype that cannot travel on the wire.
    """
    arr = np.asarray(array)
    src = wire_dtype(arr.dtype)
    target = src if dtype is None else dtype
    dt = numpy_dtype(target)
    if target == pb.DTYPE_BFLOAT16:
        bits = arr.view(np.uint16) if src == pb.DTYPE_BFLOAT16 else float32_to_bfloat16_bits(arr)
        return target, np.asarray(bits, dtype=dt, order="C")
    if src == pb.DTYPE_BFLOAT16:
        arr = bfloat16_bits_to_float32(arr.view(np.uint16))
    return target, np.asarray(arr, dtype=dt, order="C")


def encode(
    array: np.ndarray, *, dtype: int | None = None, out: pb.Tensor | None = None
) -> pb.Tensor:
    """Tensor of a numpy array, in C order and little-endian (see :func:`wire_array`).

    Parameters
    ----------
    array : array_like
    dtype : int, optional
        Wire dtype; default: the array's own.
    out : deconv.v1.Tensor, optional
        Fill this (sub)message in place, e.g. ``response.output``: assigning a built Tensor to a
        field would copy its data once more.

    Returns
    -------
    deconv.v1.Tensor
        ``out`` when given.

    Raises
    ------
    InvalidTensorError
        A dtype that cannot travel on the wire.
    """
    target, wire = wire_array(array, dtype=dtype)
    tensor = pb.Tensor() if out is None else out
    tensor.dtype = target
    del tensor.shape[:]
    tensor.shape.extend(wire.shape)
    tensor.data = wire.tobytes()
    return tensor


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bit patterns (uint16) to float32 exactly."""
    wide = np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)
    return wide.view(np.float32)


def float32_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """Round values to bfloat16 (nearest, ties to even) and return the uint16 bit patterns.

    float64 input is first rounded to float32. NaN stays a quiet NaN with its sign; overflow
    rounds to infinity, as IEEE rounding does.
    """
    f32 = np.asarray(values, dtype=np.float32, order="C")
    u = f32.view(np.uint32)
    lsb = (u >> np.uint32(16)) & np.uint32(1)
    rounded = (u + (np.uint32(0x7FFF) + lsb)) >> np.uint32(16)
    nan = np.isnan(f32)
    if nan.any():
        rounded = np.where(nan, (u >> np.uint32(16)) | np.uint32(0x0040), rounded)
    return rounded.astype(np.uint16)
