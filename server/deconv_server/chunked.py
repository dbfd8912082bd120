"""Chunked transfer of the ``*Chunked`` RPCs: receive pending tensor bytes, send the result.

The first message's request is checked like a unary one (limits included) before any of its
bytes are held. Nothing is allocated from what the header claims: each pending tensor's buffer
(:class:`GrowingBuffer`) is backed by memory only as its bytes arrive, and each arrival is
reserved in the in-flight budget before it is stored, so a header that promises gigabytes and
sends a byte holds a byte. Every data
message must arrive within ``message_timeout_s`` of the previous one. The result goes back as a
header plus slices of at most ``CHUNK_BYTES`` (``response_chunk_bytes`` is clamped to
``[MIN_RESPONSE_CHUNK_BYTES, CHUNK_BYTES]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import platform
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import grpc.aio
import numpy as np
from deconv import codec, frames
from deconv.v1 import deconv_pb2 as pb

from deconv_server.config import ServerConfig
from deconv_server.convert import RequestPlan, decode_plan, plan_request, require_parsed
from deconv_server.errors import RequestError, RequestTimeoutError, ServerError
from deconv_server.messages import read_message

__all__ = [
    "MIN_RESPONSE_CHUNK_BYTES",
    "GrowingBuffer",
    "caller_left",
    "clamp_chunk_bytes",
    "next_data",
    "output_chunks",
    "receive_chunked",
    "upload_time_bound",
]

#: Smallest data size per response message the server honours (smaller requests are raised to
#: it: one message per few bytes would take hours for a large result).
MIN_RESPONSE_CHUNK_BYTES = 64 * 1024


class GrowingBuffer:
    """``size`` bytes filled in order, in a numpy array backed by memory only as they arrive.

    Nothing is allocated from what a header claims. On Linux (unless the kernel accounts every
    mapping strictly, ``vm.overcommit_memory=2``) a buffer of at least :data:`MAPPED_BYTES` is an
    address range of ``size`` bytes mapped with ``MAP_NORESERVE``: the kernel backs a page only
    when a byte is written into it, so the buffer holds what arrived, each byte is copied once,
    and each arrival is reserved in the in-flight budget before it is stored. Once
    :data:`HUGE_PAGES_AFTER` bytes are in, the range asks for huge pages (2 MiB, a thousandth of
    the page faults), so it may then hold one huge page more than arrived, and the reservation
    runs that far ahead of the bytes (never past ``size``). Elsewhere, and
    for small buffers, the array grows instead, at most to twice what arrived (each growth
    reserved before it is allocated), and copies each byte about once more in all.

    Parameters
    ----------
    size : int
        Bytes the buffer ends with.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.filled = 0
        self._huge = False
        self._reserved = 0  # bytes of a mapped range counted in the budget so far
        self._range = _address_range(size)
        self.array = (
            np.empty(0, np.uint8) if self._range is None else np.frombuffer(self._range, np.uint8)
        )

    def append(self, data: memoryview, reserve: Callable[[int], None]) -> None:
        """Copy ``data`` in after the bytes already there (at most ``size`` in all).

        ``reserve(nbytes)`` is called with the bytes about to be held before they are; it may
        raise.
        """
        end = self.filled + len(data)
        if self._range is not None:
            huge = self._huge or end >= HUGE_PAGES_AFTER
            held = min(self.size, end + HUGE_PAGE_BYTES) if huge else end  # at most backed
            if held > self._reserved:
                reserve(held - self._reserved)
                self._reserved = held
            if huge and not self._huge:
                self._huge = True
                with contextlib.suppress(OSError, AttributeError):
                    self._range.madvise(mmap.MADV_HUGEPAGE)
        elif end > len(self.array):
            capacity = min(self.size, max(end, 2 * self.filled))
            reserve(capacity - len(self.array))
            grown = np.empty(capacity, np.uint8)
            grown[: self.filled] = self.array[: self.filled]
            self.array = grown
        self.array[self.filled : end] = np.frombuffer(data, np.uint8)
        self.filled = end

    @property
    def full(self) -> bool:
        """Whether all ``size`` bytes are in."""
        return self.filled == self.size


#: Buffers at least this large are reserved address ranges (:class:`GrowingBuffer`).
MAPPED_BYTES = 1 << 20
#: Bytes a mapped buffer holds before it asks for huge pages.
HUGE_PAGES_AFTER = 4 << 20
#: A huge page: what a mapped range may back beyond its last byte once it uses them.
HUGE_PAGE_BYTES = 2 << 20
#: Linux's MAP_NORESERVE: the mmap module of Python 3.11 does not name it, and its value is
#: 0x4000 on x86 and ARM but not on every architecture (elsewhere the mapping goes without it,
#: and the kernel's overcommit heuristic still backs pages only when written).
_MAP_NORESERVE = getattr(
    mmap, "MAP_NORESERVE", 0x4000 if platform.machine() in ("x86_64", "aarch64") else 0
)


def _strict_overcommit() -> bool:
    try:
        with open("/proc/sys/vm/overcommit_memory") as fh:
            return fh.read().strip() == "2"
    except OSError:
        return True


#: Whether a mapping's pages are backed only when written (Linux without strict accounting).
LAZY_PAGES = sys.platform.startswith("linux") and not _strict_overcommit()


def _address_range(size: int) -> mmap.mmap | None:
    """A private anonymous mapping of ``size`` bytes whose pages are backed when written, or
    None (small, not Linux, strict accounting, or the mapping failed)."""
    if size < MAPPED_BYTES or not LAZY_PAGES:
        return None
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
    try:
        return mmap.mmap(-1, size, flags=flags)
    except (OSError, ValueError, OverflowError):
        return None


class _Buffers:
    """The pending tensors' bytes as they arrive (:class:`GrowingBuffer` each); :meth:`clear`
    frees them at once."""

    def __init__(self, plan: RequestPlan) -> None:
        self.names = plan.pending()
        self.total = sum(plan.nbytes[name] for name in self.names)
        self.data = [GrowingBuffer(plan.nbytes[name]) for name in self.names]
        self.received = 0
        self._slot = 0

    def add(self, op: str, data: memoryview, reserve: Callable[[int], None]) -> None:
        off = 0
        while off < len(data):
            while self._slot < len(self.data) and self.data[self._slot].full:
                self._slot += 1
            if self._slot == len(self.data):
                raise RequestError(
                    f"{op}: the stream carries more than the {self.total} bytes its pending "
                    f"tensors ({', '.join(self.names) or 'none'}) need"
                )
            buf = self.data[self._slot]
            n = min(buf.size - buf.filled, len(data) - off)
            buf.append(data[off : off + n], reserve)
            off += n
            self.received += n

    def payloads(self) -> dict[str, np.ndarray]:
        return {name: buf.array for name, buf in zip(self.names, self.data, strict=True)}

    def clear(self) -> None:
        self.data = []  # frees the memory even while a traceback lives


def plan_first_chunk(op: str, first: Any, config: ServerConfig) -> RequestPlan:
    """The plan of a chunked call's first message (checked, limits included; nothing held).

    Raises
    ------
    RequestError
        The first message does not carry the request.
    """
    first = require_parsed(op, first)
    if first.WhichOneof("part") != "request":
        raise RequestError(f"{op}: the first message of a chunked call must carry the request")
    return plan_request(
        op,
        first.request,
        config,
        chunked=True,
        digest_ok=True,
        weight_pending=bool(first.weight_pending),
    )


async def receive_chunked(
    op: str,
    plan: RequestPlan,
    first: Any,
    context: grpc.aio.ServicerContext,
    config: ServerConfig,
    reserve: Callable[[str, int], None],
    cached: dict[str, Any] | None = None,
) -> tuple[tuple[Any, ...], int, dict[str, Any]]:
    """Receive a planned chunked call's pending bytes and decode its tensors.

    Parameters
    ----------
    op : {"conv", "conv_transpose"}
    plan : RequestPlan
        From :func:`plan_first_chunk`.
    first : ConvRequestChunk or TransposedConvRequestChunk
        The call's first message (already read and planned).
    context : grpc.aio.ServicerContext
        Where the data messages are read from.
    config : ServerConfig
    reserve : callable
        ``reserve(op, nbytes)`` of the in-flight budget; may raise to refuse the call.
    cached : dict of str to bytes, optional
        Tensors that come from the weight cache (not in the stream; reserved here all the same).

    Returns
    -------
    (arrays, int, dict)
        The decoded (input, weight, bias) arrays, the data bytes per response message (the
        caller's ``response_chunk_bytes``, clamped; 0 = the server's choice), and the bytes of
        the tensors that arrived in the stream, by name.

    Raises
    ------
    RequestError
        A request again later, or a byte total that does not match.
    deconv_server.errors.RequestTimeoutError
        A data message did not come within ``config.message_timeout_s``.
    """
    reserve(op, sum(plan.nbytes.values()) - sum(plan.nbytes[n] for n in plan.pending()))
    asked = int(first.response_chunk_bytes)
    buffers = _Buffers(plan)
    try:
        while (data := await next_data(op, context, config)) is not None:
            buffers.add(op, data, lambda n: reserve(op, n))
            del data
        if buffers.received != buffers.total:
            if await caller_left(context):  # the stream ended because its caller left
                raise asyncio.CancelledError
            raise RequestError(
                f"{op}: the stream ended after {buffers.received} of the {buffers.total} bytes "
                f"its pending tensors ({', '.join(buffers.names)}) need"
            )
        streamed = buffers.payloads()
        arrays = decode_plan(plan, {**streamed, **(cached or {})})
    except BaseException:
        buffers.clear()
        raise
    return arrays, clamp_chunk_bytes(asked), streamed


@contextlib.asynccontextmanager
async def upload_time_bound(op: str, config: ServerConfig) -> AsyncIterator[None]:
    """Bound a chunked upload by ``config.upload_timeout_s`` (DEADLINE_EXCEEDED past it).

    Raises
    ------
    deconv_server.errors.RequestTimeoutError
        The upload, or one of its messages (``message_timeout_s``), took too long.
    """
    try:
        async with asyncio.timeout(config.upload_timeout_s):
            yield
    except TimeoutError as exc:
        if isinstance(exc, ServerError):  # one message's timeout, already explained
            raise
        raise RequestTimeoutError(
            f"{op}: the chunked upload took longer than {config.upload_timeout_s:g} s "
            f"(DECONV_UPLOAD_TIMEOUT_S)"
        ) from None


async def next_data(
    op: str, context: grpc.aio.ServicerContext, config: ServerConfig
) -> memoryview | None:
    """The payload of a chunked call's next data message, or None at the end of the stream.

    Raises
    ------
    RequestError
        The message does not parse, or is not a data message.
    deconv_server.errors.RequestTimeoutError
        No message within ``config.message_timeout_s``.
    """
    message = await read_message(context, op, config.message_timeout_s)
    if message is grpc.aio.EOF:
        return None
    message = require_parsed(op, message)
    if message.WhichOneof("part") != "data":
        raise RequestError(f"{op}: only data messages may follow the first message")
    return memoryview(message.data)


async def caller_left(context: grpc.aio.ServicerContext, wait: float = 0.1) -> bool:
    """Whether the call was cancelled, polling up to ``wait`` seconds (a cancel's stream end may
    arrive before the cancel itself)."""
    end = asyncio.get_running_loop().time() + wait
    while not context.cancelled():
        if asyncio.get_running_loop().time() >= end:
            return False
        await asyncio.sleep(0.005)
    return True


def clamp_chunk_bytes(asked: int) -> int:
    """A caller's ``response_chunk_bytes`` within the honoured range (0 = the server's choice)."""
    if asked <= 0:
        return 0
    return max(MIN_RESPONSE_CHUNK_BYTES, min(codec.CHUNK_BYTES, asked))


def output_chunks(
    y: np.ndarray, wire_dtype: int, max_message_bytes: int, requested: int = 0
) -> Iterator[pb.TensorChunk | bytes]:
    """The result as a header message plus data messages (pre-framed bytes, :mod:`deconv.frames`).

    Each carries at most ``codec.CHUNK_BYTES``, half the message size limit, and ``requested``
    (the caller's clamped ``response_chunk_bytes``, when not 0).
    """
    step = max(1, min(codec.CHUNK_BYTES, max_message_bytes // 2, requested or codec.CHUNK_BYTES))
    dtype, arr = codec.wire_array(y, dtype=wire_dtype)
    yield pb.TensorChunk(header=pb.Tensor(dtype=dtype, shape=arr.shape))
    raw = memoryview(arr).cast("B") if arr.size else memoryview(b"")
    for start in range(0, len(raw), step):
        yield frames.encode_data(raw[start : start + step])  # one copy; no protobuf object
