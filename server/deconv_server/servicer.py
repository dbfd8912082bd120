"""The ``deconv.v1.Deconv`` servicer on grpc.aio: read, plan, compute on the core, write.

Every call runs as a coroutine, so a call that waits (for its request, for the core, for its
caller to read the result) holds no thread. Each phase a caller controls has a time bound:
``message_timeout_s`` from the headers to each request message (and between chunks of an upload),
``upload_timeout_s`` for a whole chunked upload, ``write_timeout_s`` for each response message,
and ``max_compute_seconds`` for the core's time, estimated from the plan before anything is
decoded. The unary ``Conv``/``TransposedConv`` are served through gRPC's reader/writer API
(identical on the wire to unary), so their request and response get the same bounds.

A call is admitted (``workers`` at once, then UNAVAILABLE) only once its first request message has
arrived, so calls that never send one cost the server nothing but a coroutine until their timeout.
Bytes are reserved in the in-flight budget as they arrive (:mod:`deconv_server.chunked`), the
result and the plan's scratch memory before computing, and released when the call ends on any
path. A caller that cancels, or whose deadline passes, stops its computation at the next batch
slice (:mod:`deconv_server.compute`). Errors map to status codes through
:func:`deconv_server.status.status_for`.

Register the servicer with :func:`add_to_server`: its deserializers never raise, so a request
whose bytes do not parse gets INVALID_ARGUMENT instead of gRPC's INTERNAL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

import grpc
import grpc.aio
import numpy as np
from deconv import codec
from deconv.v1 import deconv_pb2 as pb

import deconv_core
from deconv_server import __version__, compute, logging_setup, operators, pipeline
from deconv_server.budget import ByteBudget
from deconv_server.chunked import (
    output_chunks,
    plan_first_chunk,
    receive_chunked,
    upload_time_bound,
)
from deconv_server.config import ServerConfig
from deconv_server.convert import (
    RequestPlan,
    Unparsed,
    decode_plan,
    plan_request,
    require_parsed,
)
from deconv_server.errors import (
    BusyError,
    RequestError,
    RequestLimitError,
)
from deconv_server.messages import read_message, write_message
from deconv_server.shared_memory import SharedMemoryRegistry, SharedMemoryRpcs
from deconv_server.status import status_for, trailers_for
from deconv_server.weights import WeightCache

__all__ = ["CORE_LOCK", "INSTANCE_ID", "DeconvServicer", "plan_unary"]

_log = logging.getLogger("deconv_server")

#: Serialises every deconv_core call of the process (see :mod:`deconv_server.compute`).
CORE_LOCK = compute.CORE_LOCK

#: Identifies this process among replicas: hostname:pid:random.
INSTANCE_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def plan_unary(op: str, message: Any, config: ServerConfig) -> RequestPlan:
    """The plan of a unary request message (checked, limits included; nothing decoded)."""
    return plan_request(op, require_parsed(op, message), config, digest_ok=True, shared_ok=True)


class DeconvServicer(SharedMemoryRpcs):
    """Implements the Deconv RPCs on grpc.aio.

    Parameters
    ----------
    config : ServerConfig
        Limits and timeouts in force.
    warm : threading.Event, optional
        Set once the kernels are compiled; reported by GetServerInfo.
    lock : lock-like, optional
        What core jobs hold while computing (default :data:`CORE_LOCK`; a metered wrapper).
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        warm: threading.Event | None = None,
        lock: Any = CORE_LOCK,
    ) -> None:
        self._config = config
        self._warm = warm if warm is not None else threading.Event()
        self._lock = lock
        self._in_flight = 0
        self._budget = ByteBudget(config.max_inflight_bytes)
        self._weights = WeightCache(config.weight_cache_bytes)
        #: Shared-memory regions of callers on this host (off without shared_memory_dir).
        self.shared_memory = SharedMemoryRegistry(config)
        self._served = 0
        self._failed = 0

    @property
    def budget(self) -> ByteBudget:
        """Bytes held by admitted requests (``config.max_inflight_bytes``)."""
        return self._budget

    @property
    def weights(self) -> WeightCache:
        """Weights kept by digest (``config.weight_cache_bytes``) and the cache's counters."""
        return self._weights

    @property
    def in_flight(self) -> int:
        """Compute RPCs admitted and not finished (receiving, queued, computing or sending)."""
        return self._in_flight

    async def Conv(self, requests: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Convolution: one request message, one response message (see the proto)."""
        return await self._serve("conv", context, chunked=False)

    async def TransposedConv(self, requests: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Transposed convolution: one request message, one response message."""
        return await self._serve("conv_transpose", context, chunked=False)

    async def ConvChunked(self, requests: Any, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        """Convolution with tensors sent and received in chunks."""
        await self._serve("conv", context, chunked=True)

    async def TransposedConvChunked(  # noqa: N802
        self, requests: Any, context: grpc.aio.ServicerContext
    ) -> None:
        """Transposed convolution with tensors sent and received in chunks."""
        await self._serve("conv_transpose", context, chunked=True)

    async def ConvBackward(self, requests: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """Gradients of a Conv call (see :mod:`deconv_server.operators`)."""
        return await self._serve("conv", context, handle=operators.backward_rpc(self, "conv"))

    async def TransposedConvBackward(  # noqa: N802
        self, requests: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        """Gradients of a TransposedConv call."""
        handle = operators.backward_rpc(self, "conv_transpose")
        return await self._serve("conv_transpose", context, handle=handle)

    async def Deconvolve(self, requests: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        """True deconvolution, one response."""
        handle = operators.deconvolve_rpc(self, False)
        return await self._serve("deconvolve", context, handle=handle)

    async def DeconvolveStream(self, requests: Any, context: grpc.aio.ServicerContext) -> None:  # noqa: N802
        """True deconvolution with progress messages."""
        await self._serve("deconvolve", context, handle=operators.deconvolve_rpc(self, True))

    async def GetServerInfo(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> pb.GetServerInfoResponse:
        """Version, dtypes, ranks, limits in force, compute runtime, counters."""
        if isinstance(request, Unparsed):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"GetServerInfo: the request ({request.size} bytes) does not parse as a "
                f"{request.type_name} message: {request.reason}",
            )
        cfg = self._config
        runtime = deconv_core.runtime_info()
        return pb.GetServerInfoResponse(
            version=__version__,
            dtypes=[pb.DTYPE_FLOAT32, pb.DTYPE_FLOAT64, pb.DTYPE_FLOAT16, pb.DTYPE_BFLOAT16],
            ranks=[1, 2, 3],
            limits=pb.Limits(
                max_message_bytes=cfg.max_message_bytes,
                max_tensor_elements=cfg.max_tensor_elements,
                max_output_elements=cfg.max_output_elements,
                workers=cfg.workers,
                max_flops_per_request=cfg.max_flops_per_request,
                max_inflight_bytes=cfg.max_inflight_bytes,
                max_workspace_bytes=cfg.max_workspace_bytes,
                weight_cache_bytes=cfg.weight_cache_bytes,
                **_shared_memory_limits(cfg, self.shared_memory.max_regions),
            ),
            numba_version=runtime["numba_version"],
            threading_layer=runtime["threading_layer"],
            threads=runtime["num_threads"],
            runtime={
                **{str(k): _text(v) for k, v in runtime.items()},
                # log records dropped because stderr fell QUEUE_MAX_RECORDS behind
                "log_records_dropped": str(logging_setup.dropped_records()),
            },
            instance_id=INSTANCE_ID,
            requests_served=self._served,
            requests_failed=self._failed,
            warm=self._warm.is_set(),
            shared_memory_regions=len(self.shared_memory),
        )

    # -- internals ---------------------------------------------------------------------------

    async def _serve(
        self,
        op: str,
        context: grpc.aio.ServicerContext,
        *,
        chunked: bool = False,
        handle: Any = None,
    ) -> Any:
        """Run one RPC's handler with reservations released on every exit; map errors.

        ``handle(context, reserve)`` is the RPC's work (default: a Conv/TransposedConv call); it
        returns the response of a unary-response RPC (sent by gRPC with the status, in one
        piece: a replica that dies mid-answer leaves a call the client can retry), or None after
        writing a stream's messages itself.
        """
        start = time.perf_counter()
        held = self._budget.reservations()
        response = None
        try:
            try:
                if handle is None:
                    response = await self._handle(op, context, held.reserve, chunked=chunked)
                else:
                    response = await handle(context, held.reserve)
            finally:
                if response is None:
                    held.release()
                else:  # gRPC sends it after we return: the bytes stay counted until then
                    context.add_done_callback(lambda _: held.release())
        except asyncio.CancelledError:  # the caller left (cancel or deadline): no status to send
            self._failed += 1
            _log.info("%s -> CANCELLED: the caller left (cancel or deadline)", op)
            raise
        except Exception as exc:
            self._failed += 1
            code, message = status_for(exc)
            _log.info("%s -> %s: %s", op, code.name, message)
            # abort() replaces the trailing metadata: keep what is set (the request id).
            trailers = (*(context.trailing_metadata() or ()), *trailers_for(exc))
            await context.abort(code, message, trailing_metadata=trailers)
        self._served += 1
        _log.debug("%s done in %.1f ms", op, 1e3 * (time.perf_counter() - start))
        return response

    async def _handle(
        self, op: str, context: grpc.aio.ServicerContext, reserve: Any, *, chunked: bool
    ) -> pb.ConvResponse | None:
        cfg = self._config
        first = await read_message(context, op, cfg.message_timeout_s)
        if first is grpc.aio.EOF:
            if chunked:
                raise RequestError(
                    f"{op}: the first message of a chunked call must carry the request (the "
                    f"stream was empty)"
                )
            raise RequestError(f"{op}: the call ended without a request message")
        # Judged before admission: a bad request is refused at once, even when the server is busy.
        plan = plan_first_chunk(op, first, cfg) if chunked else plan_unary(op, first, cfg)
        # A weight named by digest: from the cache, or a miss answered before any upload.
        cached = {}
        if plan.weight_cached:
            cached["weight"] = self._weights.lookup(op, plan.digest, plan.tensors["weight"])
        self._admit(op)
        shm = None
        try:
            if plan.shared or plan.output_ref is not None:  # tensors in shared memory
                shm = self.shared_memory.bind(plan, self.shared_memory.owner(context))
            if chunked:
                # Headers now tell the caller its request was accepted: it may send the data.
                await context.send_initial_metadata(())
                if pipeline.applies(plan):  # a batch computed and sent as it arrives
                    self._check_time(plan)
                    await self._weights.take(plan, None)
                    await pipeline.run_pipelined(
                        plan, first, context, cfg, reserve, self._run_job, cached
                    )
                    return None
                async with upload_time_bound(op, cfg):
                    arrays, asked, streamed = await receive_chunked(
                        op, plan, first, context, cfg, reserve, cached
                    )
                # the tensors' bytes were reserved as they came; now the result and the scratch
                reserve(op, plan.output_bytes + plan.core.workspace_bytes)
                await self._weights.take(plan, streamed.get("weight"))
                del streamed
            else:
                reserve(op, plan.tensor_bytes + plan.core.workspace_bytes)  # it has arrived
                await self._expect_end(op, context)
                read = await shm.read(plan) if shm is not None else {}
                arrays = decode_plan(plan, {**cached, **read})
                await self._weights.take(plan, read.get("weight"))
                del read
            del first, cached
            y = await self._compute(plan, arrays)
            del arrays
            if chunked:
                for message in output_chunks(y, plan.wire_dtype, cfg.max_message_bytes, asked):
                    await write_message(context, op, message, cfg.write_timeout_s)
                return None
            if shm is not None and shm.output is not None:
                return await shm.respond(y, plan)
            response = pb.ConvResponse()
            codec.encode(y, dtype=plan.wire_dtype, out=response.output)
            return response
        finally:
            self._in_flight -= 1
            if shm is not None:
                shm.release()

    async def _expect_end(self, op: str, context: grpc.aio.ServicerContext) -> None:
        extra = await read_message(context, op, self._config.message_timeout_s)
        if extra is not grpc.aio.EOF:
            raise RequestError(f"{op}: a unary call carries exactly one request message")

    async def _compute(self, plan: RequestPlan, arrays: Any) -> np.ndarray:
        self._check_time(plan)
        job = compute.Job(plan.core, arrays, weights=self._weights, digest=plan.digest or b"")
        return await self._run_job(job)

    def _check_time(self, plan: RequestPlan) -> None:
        cfg = self._config
        seconds = compute.estimate_seconds(plan.core)
        if seconds > cfg.max_compute_seconds:
            raise RequestLimitError(
                f"{plan.op}: the request would hold the compute core for about {seconds:.0f} s "
                f"({plan.core.flops} FLOPs on route {plan.core.route!r}), more than the "
                f"server's limit of {cfg.max_compute_seconds:g} s; split the batch or send "
                f"smaller tensors"
            )

    async def _run_job(self, job: compute.Job) -> np.ndarray:
        """The result of ``job`` on the core thread (a tiny one inline when the core is free); a
        cancel of the RPC stops the job."""
        y = compute.try_inline(job, self._lock)
        if y is not None:
            return y
        future = compute.submit(job, self._lock)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            job.cancelled.set()  # a queued job never starts; a running one stops at its next slice
            raise

    @property
    def config(self) -> ServerConfig:
        """The settings in force."""
        return self._config

    @contextlib.contextmanager
    def admitted(self, op: str) -> Any:
        """Hold one of the ``workers`` admission slots for the block (UNAVAILABLE when full)."""
        self._admit(op)
        try:
            yield
        finally:
            self._in_flight -= 1

    async def on_core(self, fn: Any) -> Any:
        """Run ``fn(cancelled)`` on the core thread; a cancel of this RPC sets ``cancelled``."""
        task = compute.Task(fn)
        future = compute.submit(task, self._lock)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            task.cancelled.set()
            raise

    def _admit(self, op: str) -> None:
        if self._in_flight >= self._config.workers:
            raise BusyError(
                f"{op}: server busy, {self._in_flight} requests in flight (limit "
                f"{self._config.workers}); retry later or on another replica"
            )
        self._in_flight += 1


def _shared_memory_limits(cfg: ServerConfig, max_regions: int) -> dict[str, Any]:
    """The region limits in force (the total may be below the setting: see
    ``shared_memory_io.region_descriptor_room``)."""
    if cfg.shared_memory_dir is None:
        return {}
    return dict(
        max_shared_memory_regions=max_regions,
        max_shared_memory_regions_per_owner=cfg.max_shared_memory_regions_per_owner,
        shared_memory_lease_seconds=cfg.shared_memory_lease_s,
    )


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)
