"""The ``deconv.v1.Deconv`` servicer: decode, compute under the core lock, encode.

Unary RPCs carry whole tensors; the ``*Chunked`` RPCs stream them (see
:mod:`deconv_server.chunked`) and otherwise run the same checks, lock and status mapping.

The core's Numba parallel region is not safe for two callers at once (the workqueue threading
layer aborts the process), and each call already uses every core, so all core calls of the
process go through :data:`CORE_LOCK`. Requests admitted beyond ``config.workers`` get
UNAVAILABLE at once; a request whose deadline passes while it waits for the lock gets
DEADLINE_EXCEEDED without computing, and one its caller cancels leaves the queue (and frees its
admission slot) within :data:`_POLL_SECONDS`. Errors map to status codes through
:func:`deconv_server.status.status_for`.

Register the servicer with :func:`add_to_server` rather than the generated
``add_DeconvServicer_to_server``: its deserializers never raise, so a request whose bytes do not
parse gets INVALID_ARGUMENT instead of gRPC's INTERNAL "Exception deserializing request!".
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
from deconv import codec
from deconv.v1 import deconv_pb2 as pb
from deconv.v1 import deconv_pb2_grpc as pb_grpc

import deconv_core
from deconv_server import __version__
from deconv_server.budget import ByteBudget
from deconv_server.chunked import output_chunks, receive_call
from deconv_server.config import ServerConfig
from deconv_server.convert import (
    RequestPlan,
    Unparsed,
    decode_plan,
    lenient_parser,
    plan_request,
    require_parsed,
)
from deconv_server.errors import BusyError, CancelledError, DeadlineError, RequestError
from deconv_server.status import status_for, trailers_for

__all__ = ["CORE_LOCK", "INSTANCE_ID", "DeconvServicer", "add_to_server"]

_log = logging.getLogger("deconv_server")

#: Serialises every deconv_core call of the process (warmup included).
CORE_LOCK = threading.Lock()

#: Identifies this process among replicas: hostname:pid:random.
INSTANCE_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

#: A planned request and its decoded arrays (input, weight, bias or None).
Call = tuple[RequestPlan, tuple[np.ndarray, np.ndarray, np.ndarray | None]]
_NO_DEADLINE = 1e8
#: How often a request waiting for the core checks whether its caller is still there.
_POLL_SECONDS = 0.05


class DeconvServicer(pb_grpc.DeconvServicer):
    """Implements Conv, TransposedConv and GetServerInfo.

    Parameters
    ----------
    config : ServerConfig
        Limits in force.
    warm : threading.Event, optional
        Set once the kernels are compiled; reported by GetServerInfo.
    lock : threading.Lock, optional
        The lock serialising core calls (default :data:`CORE_LOCK`).
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
        self._state = threading.Lock()
        self._in_flight = 0
        self._budget = ByteBudget(config.max_inflight_bytes)
        self._served = 0
        self._failed = 0

    @property
    def budget(self) -> ByteBudget:
        """Tensor bytes held by admitted requests (``config.max_inflight_bytes``)."""
        return self._budget

    @property
    def in_flight(self) -> int:
        """Compute RPCs admitted and not finished (running or waiting for the core)."""
        with self._state:
            return self._in_flight

    def Conv(self, request: pb.ConvRequest, context: grpc.ServicerContext) -> pb.ConvResponse:  # noqa: N802
        """Convolution (see the proto)."""
        return self._serve("conv", request, context)

    def TransposedConv(  # noqa: N802
        self, request: pb.TransposedConvRequest, context: grpc.ServicerContext
    ) -> pb.ConvResponse:
        """Transposed convolution (see the proto)."""
        return self._serve("conv_transpose", request, context)

    def ConvChunked(  # noqa: N802
        self, request_iterator: Iterator[pb.ConvRequestChunk], context: grpc.ServicerContext
    ) -> Iterator[pb.TensorChunk]:
        """Convolution with tensors sent and received in chunks."""
        return self._serve_chunked("conv", request_iterator, context)

    def TransposedConvChunked(  # noqa: N802
        self,
        request_iterator: Iterator[pb.TransposedConvRequestChunk],
        context: grpc.ServicerContext,
    ) -> Iterator[pb.TensorChunk]:
        """Transposed convolution with tensors sent and received in chunks."""
        return self._serve_chunked("conv_transpose", request_iterator, context)

    def GetServerInfo(  # noqa: N802
        self, request: pb.GetServerInfoRequest, context: grpc.ServicerContext
    ) -> pb.GetServerInfoResponse:
        """Version, dtypes, ranks, limits in force, compute runtime, counters."""
        if isinstance(request, Unparsed):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"GetServerInfo: the request ({request.size} bytes) does not parse as a "
                f"{request.type_name} message: {request.reason}",
            )
        cfg = self._config
        runtime = deconv_core.runtime_info()
        with self._state:
            served, failed = self._served, self._failed
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
            ),
            numba_version=runtime["numba_version"],
            threading_layer=runtime["threading_layer"],
            threads=runtime["num_threads"],
            runtime={str(k): _text(v) for k, v in runtime.items()},
            instance_id=INSTANCE_ID,
            requests_served=served,
            requests_failed=failed,
            warm=self._warm.is_set(),
        )

    # -- internals ---------------------------------------------------------------------------

    def _serve(self, op: str, request: Any, context: grpc.ServicerContext) -> pb.ConvResponse:
        with self._budget.holding() as reserve:

            def prepare() -> Call:
                plan = plan_request(op, require_parsed(op, request), self._config)
                reserve(op, plan.tensor_bytes)
                return plan, decode_plan(plan)

            y, wire = self._execute(op, context, prepare)
            response = pb.ConvResponse()
            codec.encode(y, dtype=wire, out=response.output)
            return response

    def _serve_chunked(
        self, op: str, messages: Iterator[Any], context: grpc.ServicerContext
    ) -> Iterator[pb.TensorChunk]:
        asked: list[int] = []
        with self._budget.holding() as reserve:

            def prepare() -> Call:
                # A stalled upload would block this thread, its admission slot and its buffers
                # forever: the server cancels the call when the upload takes too long.
                timer = threading.Timer(self._config.upload_timeout_s, context.cancel)
                timer.daemon = True
                timer.start()
                try:
                    plan, arrays, chunk = receive_call(
                        op, messages, self._config, lambda plan: reserve(op, plan.tensor_bytes)
                    )
                except (RequestError, grpc.RpcError) as exc:
                    # A cancelled stream may end early before the context turns inactive:
                    # give gRPC a moment to say whether the caller left (then it was no bad
                    # request).
                    if _caller_left(context):
                        raise CancelledError(
                            f"{op}: the caller left while sending the request"
                        ) from exc
                    raise
                finally:
                    timer.cancel()
                asked.append(chunk)
                return plan, arrays

            y, wire = self._execute(op, context, prepare)
            yield from output_chunks(y, wire, self._config.max_message_bytes, asked[0])

    def _execute(
        self, op: str, context: grpc.ServicerContext, prepare: Callable[[], Call]
    ) -> tuple[np.ndarray, int]:
        """Admit, prepare the call, compute under the lock; abort with the mapped status."""
        admitted = False
        start = time.perf_counter()
        try:
            self._admit(op)
            admitted = True
            plan, arrays = prepare()
            y = self._compute(plan, arrays, context)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError) and not context.is_active():
                # The request stream broke because the caller left (cancel or deadline).
                exc = CancelledError(f"{op}: the caller left while sending the request")
            code, message = status_for(exc)
            with self._state:
                self._failed += 1
            _log.info("%s -> %s: %s", op, code.name, message)
            trailers = trailers_for(exc)
            if trailers:
                context.set_trailing_metadata(trailers)
            context.abort(code, message)
            raise  # context.abort always raises; this keeps type checkers informed
        finally:
            if admitted:
                with self._state:
                    self._in_flight -= 1
        with self._state:
            self._served += 1
        _log.debug(
            "%s %s %s via %s -> %s in %.1f ms",
            op,
            list(plan.core.input_shape),
            pb.DType.Name(plan.wire_dtype),
            plan.core.route,
            list(y.shape),
            1e3 * (time.perf_counter() - start),
        )
        return y, plan.wire_dtype

    def _admit(self, op: str) -> None:
        with self._state:
            if self._in_flight >= self._config.workers:
                raise BusyError(
                    f"{op}: server busy, {self._in_flight} requests in flight (limit "
                    f"{self._config.workers}); retry later or on another replica"
                )
            self._in_flight += 1

    def _acquire_core(self, op: str, context: grpc.ServicerContext) -> None:
        """Wait for the core lock; give up when the deadline passes or the caller leaves."""
        remaining = context.time_remaining()
        start = time.monotonic()
        deadline = None
        if remaining is not None and remaining <= _NO_DEADLINE:
            deadline = start + max(0.0, remaining)
        while True:
            step = _POLL_SECONDS
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            if self._lock.acquire(timeout=step):
                return
            expired = deadline is not None and time.monotonic() >= deadline
            if expired or not context.is_active():
                waited = time.monotonic() - start
                if expired or (deadline is not None and deadline - time.monotonic() < 0.1):
                    raise DeadlineError(
                        f"{op}: the deadline passed after {waited:.3f} s waiting for the "
                        f"compute core (busy with other requests)"
                    )
                raise CancelledError(
                    f"{op}: the call was cancelled after {waited:.3f} s waiting for the "
                    f"compute core"
                )

    def _compute(
        self, plan: RequestPlan, arrays: tuple[Any, ...], context: grpc.ServicerContext
    ) -> np.ndarray:
        self._acquire_core(plan.op, context)
        try:
            if not context.is_active():
                raise DeadlineError(f"{plan.op}: the call ended before the core was free")
            return deconv_core.execute(plan.core, *arrays)
        finally:
            self._lock.release()


def _caller_left(context: grpc.ServicerContext, wait: float = 0.05) -> bool:
    """Whether the call ended (cancel, deadline), polling up to ``wait`` seconds."""
    end = time.monotonic() + wait
    while context.is_active():
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)
    return True


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def add_to_server(servicer: DeconvServicer, server: grpc.Server) -> None:
    """Register ``servicer`` on ``server`` as ``deconv.v1.Deconv``.

    Same handlers as the generated ``add_DeconvServicer_to_server``, except that the request
    deserializers never raise: a request whose bytes do not parse reaches the servicer as an
    :class:`~deconv_server.convert.Unparsed` and gets INVALID_ARGUMENT with the parser's reason
    (the generated registration makes gRPC answer INTERNAL).

    Parameters
    ----------
    servicer : DeconvServicer
    server : grpc.Server
    """
    unary = grpc.unary_unary_rpc_method_handler
    stream = grpc.stream_stream_rpc_method_handler
    reply = pb.ConvResponse.SerializeToString
    chunk = pb.TensorChunk.SerializeToString
    handlers = {
        "Conv": unary(
            servicer.Conv,
            request_deserializer=lenient_parser(pb.ConvRequest),
            response_serializer=reply,
        ),
        "TransposedConv": unary(
            servicer.TransposedConv,
            request_deserializer=lenient_parser(pb.TransposedConvRequest),
            response_serializer=reply,
        ),
        "GetServerInfo": unary(
            servicer.GetServerInfo,
            request_deserializer=lenient_parser(pb.GetServerInfoRequest),
            response_serializer=pb.GetServerInfoResponse.SerializeToString,
        ),
        "ConvChunked": stream(
            servicer.ConvChunked,
            request_deserializer=lenient_parser(pb.ConvRequestChunk),
            response_serializer=chunk,
        ),
        "TransposedConvChunked": stream(
            servicer.TransposedConvChunked,
            request_deserializer=lenient_parser(pb.TransposedConvRequestChunk),
            response_serializer=chunk,
        ),
    }
    name = pb.DESCRIPTOR.services_by_name["Deconv"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)
