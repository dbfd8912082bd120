"""Chunked transfer of the ``*Chunked`` RPCs: receive pending tensor bytes, send the result.

The first message's request is checked like a unary one (limits included) before any buffer is
allocated; each pending tensor then gets one buffer of its exact size, filled in stream order
(input, weight, bias). The result goes back as a header plus ``CHUNK_BYTES`` slices of one
little-endian array, so no message comes near the size limit however large the tensors are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from deconv import codec
from deconv.v1 import deconv_pb2 as pb

from deconv_server.config import ServerConfig
from deconv_server.convert import RequestPlan, decode_plan, plan_request, require_parsed
from deconv_server.errors import RequestError

__all__ = ["output_chunks", "receive_call"]


def receive_call(
    op: str,
    messages: Iterable[Any],
    config: ServerConfig,
    reserve: Callable[[RequestPlan], None] | None = None,
) -> tuple[RequestPlan, tuple[Any, ...], int]:
    """Read a whole chunked request and decode it.

    Parameters
    ----------
    op : {"conv", "conv_transpose"}
    messages : iterable of ConvRequestChunk or TransposedConvRequestChunk
    config : ServerConfig
    reserve : callable, optional
        Called with the checked plan before any buffer is allocated (the in-flight byte
        budget); may raise to refuse the call.

    Returns
    -------
    (RequestPlan, arrays, int)
        The plan, its decoded (input, weight, bias) arrays, and the data bytes per response
        message the caller asked for (0 = default).

    Raises
    ------
    RequestError
        No request first, a request again later, or a byte total that does not match.
    """
    stream = iter(messages)
    first = next(stream, None)
    if first is not None:
        first = require_parsed(op, first)
    if first is None or first.WhichOneof("part") != "request":
        raise RequestError(f"{op}: the first message of a chunked call must carry the request")
    plan = plan_request(op, first.request, config, chunked=True)
    if reserve is not None:
        reserve(plan)
    pending = plan.pending()
    buffers = {name: bytearray(plan.nbytes[name]) for name in pending}
    total = sum(plan.nbytes[name] for name in pending)
    views = [memoryview(buffers[name]) for name in pending]
    slot, pos, received = 0, 0, 0
    for message in stream:
        message = require_parsed(op, message)
        if message.WhichOneof("part") != "data":
            raise RequestError(f"{op}: only data messages may follow the first message")
        data = memoryview(message.data)
        off = 0
        while off < len(data):
            if slot == len(views):
                raise RequestError(
                    f"{op}: the stream carries more than the {total} bytes its pending tensors "
                    f"({', '.join(pending) or 'none'}) need"
                )
            view = views[slot]
            n = min(len(view) - pos, len(data) - off)
            view[pos : pos + n] = data[off : off + n]
            pos, off, received = pos + n, off + n, received + n
            if pos == len(view):
                slot, pos = slot + 1, 0
    if received != total:
        raise RequestError(
            f"{op}: the stream ended after {received} of the {total} bytes its pending tensors "
            f"({', '.join(pending)}) need"
        )
    return plan, decode_plan(plan, buffers), max(0, int(first.response_chunk_bytes))


def output_chunks(
    y: np.ndarray, wire_dtype: int, max_message_bytes: int, requested: int = 0
) -> Iterator[pb.TensorChunk]:
    """The result as a header message plus data messages.

    Each carries at most ``codec.CHUNK_BYTES``, half the message size limit, and ``requested``
    (the caller's ``response_chunk_bytes``, when not 0).
    """
    step = max(1, min(codec.CHUNK_BYTES, max_message_bytes // 2, requested or codec.CHUNK_BYTES))
    dtype, arr = codec.wire_array(y, dtype=wire_dtype)
    yield pb.TensorChunk(header=pb.Tensor(dtype=dtype, shape=arr.shape))
    raw = memoryview(arr).cast("B") if arr.size else memoryview(b"")
    for start in range(0, len(raw), step):
        yield pb.TensorChunk(data=bytes(raw[start : start + step]))
