"""A chunked batch computed as it arrives: upload, compute and download overlap.

When a chunked call streams only its input (the weight and bias came in the first message or from
the weight cache) and the batch has several images, the server need not wait for the whole input:
images are independent, so each group of images is computed as soon as its bytes are in, and its
result is sent while later images still arrive and compute. The result's bytes go out in batch
order, exactly as the unpipelined path sends them, and every group is computed with the call's
one plan (same route), so the bits are the same.

What a call holds is what the unpipelined path holds: the input's buffer grows as bytes arrive
(each message reserved in the in-flight budget when it comes), the result and the plan's scratch
are reserved before the first group computes, and every phase keeps its time bound (the upload's
and each message's on reads, ``write_timeout_s`` on each response message, the compute estimate
checked before anything is decoded).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import numpy as np
from deconv import codec, frames
from deconv.v1 import deconv_pb2 as pb

from deconv_server import compute
from deconv_server.chunked import (
    GrowingBuffer,
    caller_left,
    clamp_chunk_bytes,
    next_data,
    upload_time_bound,
)
from deconv_server.config import ServerConfig
from deconv_server.convert import RequestPlan
from deconv_server.errors import RequestError
from deconv_server.messages import write_message

__all__ = ["GROUP_BYTES", "TRANSFER_BYTES_PER_SECOND", "applies", "run_pipelined"]

#: Rough rate of a chunked transfer (both ways) that a pipelined call must be slower than.
TRANSFER_BYTES_PER_SECOND = 500 * 1024 * 1024

#: Input bytes per group of images computed together (at least one image): the size of the
#: clients' data messages, so that a group often arrives in one message and is used without a copy.
GROUP_BYTES = codec.CHUNK_BYTES


def applies(plan: RequestPlan) -> bool:
    """Whether a chunked call should compute its batch as it arrives.

    Only the input may be pending (its bytes come image after image, batch axis first in both
    data formats), the batch must hold at least two images, and moving the call's bytes must
    take longer than computing it (the compute estimate at most the transfer at
    :data:`TRANSFER_BYTES_PER_SECOND`). On a machine whose cores the compute already fills,
    overlapping only helps calls whose time goes to the wire: cutting a compute-heavy batch into
    groups made it slower (measured: C1 with a batch of 8, 28.6 ms pipelined against 21.9 ms).
    A 64 MiB batch of 1x1 convs, which this rule does pipeline, measured 143 against 151 ms and
    140 against 135 ms in two runs with client and server on the same two cores: no gain there;
    the overlap is for callers on other machines, whose CPUs do not compete with the server's.
    """
    if plan.pending() != ["input"] or plan.core.geometry.batch < 2:
        return False
    moved = plan.nbytes["input"] + plan.output_bytes
    return compute.estimate_seconds(plan.core) <= moved / TRANSFER_BYTES_PER_SECOND


def _group_size(plan: RequestPlan) -> int:
    batch = plan.core.geometry.batch
    image = plan.nbytes["input"] // batch
    by_bytes = max(1, GROUP_BYTES // max(image, 1))
    per_image = compute.estimate_seconds(plan.core) / batch
    by_time = max(1, int(compute.SLICE_SECONDS / max(per_image, 1e-9)))
    return min(batch, by_bytes, by_time)


class _Groups:
    """The input's bytes cut into groups of images, each decoded once all its bytes are in.

    A group whose bytes arrived in one message is decoded from that message's bytes (no copy;
    the message is reserved in the in-flight budget); otherwise its bytes are copied into a
    :class:`~deconv_server.chunked.GrowingBuffer` (whose growth is reserved).
    """

    def __init__(self, plan: RequestPlan) -> None:
        self.plan = plan
        self.batch = plan.core.geometry.batch
        self.image = plan.nbytes["input"] // self.batch
        self.size = _group_size(plan)
        self.received = 0
        self.start = 0  # first image of the group being filled
        self._buffer: GrowingBuffer | None = None

    def _bounds(self) -> tuple[int, int]:
        return self.start, min(self.batch, self.start + self.size)

    def add(
        self, data: memoryview, reserve: Callable[[int], None]
    ) -> list[tuple[int, int, np.ndarray]]:
        """Take one data message; return the groups ``(b0, b1, x)`` it completed."""
        done = []
        off = 0
        while off < len(data):
            b0, b1 = self._bounds()
            need = (b1 - b0) * self.image
            filled = 0 if self._buffer is None else self._buffer.filled
            take = min(need - filled, len(data) - off)
            raw: Any = None
            if filled == 0 and take == need:  # the whole group in this message
                reserve(take)
                raw = data[off : off + take]
            else:
                if self._buffer is None:
                    self._buffer = GrowingBuffer(need)
                self._buffer.append(data[off : off + take], reserve)
                if self._buffer.full:
                    raw = self._buffer.array
            off += take
            self.received += take
            if raw is not None:
                done.append((b0, b1, self._decode(b0, b1, raw)))
                self.start, self._buffer = b1, None
        return done

    def _decode(self, b0: int, b1: int, raw: Any) -> np.ndarray:
        tensor = self.plan.tensors["input"]
        part = pb.Tensor(dtype=tensor.dtype, shape=[b1 - b0, *tensor.shape[1:]])
        return codec.decode(part, name=f"{self.plan.op}: input", data=raw)


async def run_pipelined(
    plan: RequestPlan,
    first: Any,
    context: grpc.aio.ServicerContext,
    config: ServerConfig,
    reserve: Callable[[str, int], None],
    submit: Callable[[compute.Job], Any],
    cached: dict[str, Any] | None = None,
) -> None:
    """Receive a planned call's input, compute each group of images as it lands, send results.

    Parameters
    ----------
    plan : RequestPlan
        A chunked call's plan for which :func:`applies` holds.
    first : ConvRequestChunk or TransposedConvRequestChunk
        The call's first message.
    context : grpc.aio.ServicerContext
    config : ServerConfig
    reserve : callable
        ``reserve(op, nbytes)`` of the in-flight budget; may raise to refuse the call.
    submit : callable
        ``submit(job)`` -> awaitable result of a core job (cancels the job when cancelled).
    cached : dict of str to bytes, optional
        The weight's bytes when it comes from the weight cache.

    Raises
    ------
    RequestError
        A message other than data, or a byte total that does not match.
    deconv_server.errors.RequestTimeoutError
        A message did not come, or was not taken, in time.
    """
    op = plan.op
    reserve(op, sum(plan.nbytes.values()) - plan.nbytes["input"])
    weight = codec.decode(
        plan.tensors["weight"], name=f"{op}: weight", data=(cached or {}).get("weight")
    )
    bias = plan.tensors.get("bias")
    b = None if bias is None else codec.decode(bias, name=f"{op}: bias")
    total = plan.nbytes["input"]
    step = clamp_chunk_bytes(int(first.response_chunk_bytes)) or codec.CHUNK_BYTES
    step = max(1, min(step, config.max_message_bytes // 2))
    groups = _Groups(plan)
    results: collections.deque[asyncio.Future[np.ndarray]] = collections.deque()
    ready = asyncio.Event()
    finished = False

    async def send_results() -> None:
        header = pb.Tensor(dtype=plan.wire_dtype, shape=plan.output_shape)
        await write_message(context, op, pb.TensorChunk(header=header), config.write_timeout_s)
        while results or not finished:
            if not results:
                ready.clear()
                await ready.wait()
                continue
            y = await results.popleft()
            _, arr = codec.wire_array(y, dtype=plan.wire_dtype)
            del y
            view = memoryview(arr).cast("B") if arr.size else memoryview(b"")
            for start in range(0, len(view), step):
                message = frames.encode_data(view[start : start + step])
                await write_message(context, op, message, config.write_timeout_s)

    writer: asyncio.Future[None] | None = None
    try:
        async with upload_time_bound(op, config):
            while (data := await next_data(op, context, config)) is not None:
                if groups.received + len(data) > total:
                    raise RequestError(
                        f"{op}: the stream carries more than the {total} bytes its pending "
                        f"tensors (input) need"
                    )
                if writer is None:  # the first data: the result and scratch are held from now
                    reserve(op, plan.output_bytes + plan.core.workspace_bytes)
                    writer = asyncio.ensure_future(send_results())
                for b0, b1, x in groups.add(data, lambda n: reserve(op, n)):
                    job = compute.Job(compute.slice_plan(plan.core, b1 - b0), (x, weight, b))
                    results.append(asyncio.ensure_future(submit(job)))
                    ready.set()
                del data
                if writer.done():  # it failed: a result the caller does not take, a job error
                    writer.result()
        if groups.received != total:
            if await caller_left(context):  # the stream ended because its caller left
                raise asyncio.CancelledError
            raise RequestError(
                f"{op}: the stream ended after {groups.received} of the {total} bytes its "
                f"pending tensors (input) need"
            )
        finished = True
        ready.set()
        if writer is not None:
            await writer
    finally:
        finished = True
        for pending in results:
            pending.cancel()
        if writer is not None and not writer.done():
            writer.cancel()
