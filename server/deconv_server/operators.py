"""The RPCs of the other two operators: gradients (C^T at work) and true deconvolution (C^+).

``ConvBackward``/``TransposedConvBackward`` carry the forward request and the gradient of its
output; ``Deconvolve``/``DeconvolveStream`` carry a forward layer (whose ``input`` gives only the
shape of the x to solve for) and the observed output. Each is planned from its forward request
exactly like a Conv call (every rule and limit, before anything is decoded), admitted, given the
same time bounds on its messages, and run on the core thread; a cancel stops a solve at its next
iteration, and a solve stops at the server's compute time limit with ``stop_reason
"time_limit"``. Their tensors travel in single messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import numpy as np
from deconv import codec
from deconv.v1 import deconv_pb2 as pb

import deconv_core
from deconv_server import compute
from deconv_server.convert import RequestPlan, core_parameters, plan_request, require_parsed
from deconv_server.errors import RequestError, RequestLimitError
from deconv_server.messages import read_message, write_message

__all__ = ["backward_rpc", "deconvolve_rpc"]

#: ``handle(context, reserve)``: the response of a unary-response RPC, or None for a stream.
Handler = Callable[[grpc.aio.ServicerContext, Callable[[str, int], None]], Awaitable[Any]]

_NEED = {
    pb.GRADIENT_INPUT: "input",
    pb.GRADIENT_WEIGHT: "weight",
    pb.GRADIENT_BIAS: "bias",
}
#: Progress messages of DeconvolveStream are at least this far apart (seconds).
PROGRESS_INTERVAL_S = 0.2
#: Bytes a float64 solve holds per element of x beyond the tensors (CGLS vectors).
_SOLVE_BYTES_PER_X = 6 * 8


async def _request(op: str, context: grpc.aio.ServicerContext, servicer: Any) -> Any:
    cfg = servicer.config
    message = await read_message(context, op, cfg.message_timeout_s)
    if message is grpc.aio.EOF:
        raise RequestError(f"{op}: the call ended without a request message")
    request = require_parsed(op, message)
    extra = await read_message(context, op, cfg.message_timeout_s)
    if extra is not grpc.aio.EOF:
        raise RequestError(f"{op}: a unary call carries exactly one request message")
    return request


def _check_time(op: str, seconds: float, limit: float) -> None:
    if seconds > limit:
        raise RequestLimitError(
            f"{op}: the request would hold the compute core for about {seconds:.0f} s, more "
            f"than the server's limit of {limit:g} s; split the batch or send smaller tensors"
        )


def _tensor(op: str, name: str, tensor: Any, wire: int, cfg: Any) -> int:
    if tensor.dtype != wire:
        raise RequestError(
            f"{op}: {name} dtype {pb.DType.Name(tensor.dtype)} must match the forward input's "
            f"{pb.DType.Name(wire)}"
        )
    return codec.tensor_nbytes(tensor, name=f"{op}: {name}", max_elements=cfg.max_tensor_elements)


def _encode(arr: np.ndarray | None, wire: int, out: Any) -> int:
    if arr is None:
        return 0
    codec.encode(arr, dtype=wire, out=out)
    return len(out.data)


def backward_rpc(servicer: Any, op: str) -> Handler:
    """The handler of ConvBackward (``op="conv"``) or TransposedConvBackward."""

    async def handle(
        context: grpc.aio.ServicerContext, reserve: Callable[[str, int], None]
    ) -> pb.BackwardResponse:
        cfg = servicer.config
        name = f"{op}_backward"
        request = await _request(name, context, servicer)
        if not request.HasField("forward"):
            raise RequestError(f"{name}: the forward request is missing")
        plan: RequestPlan = plan_request(op, request.forward, cfg, chunked=True)
        if not request.HasField("grad_output"):
            raise RequestError(f"{name}: the grad_output tensor is missing")
        g_bytes = _tensor(name, "grad_output", request.grad_output, plan.wire_dtype, cfg)
        need = tuple(sorted({_need(name, v) for v in request.need})) or ("input", "weight", "bias")
        _check_time(name, 3 * compute.estimate_seconds(plan.core), cfg.max_compute_seconds)
        with servicer.admitted(name):
            inputs = plan.nbytes["input"] + plan.nbytes["weight"]
            reserve(name, 2 * inputs + 2 * g_bytes + 3 * plan.core.workspace_bytes)
            x = codec.decode(plan.tensors["input"], name=f"{name}: input")
            w = codec.decode(plan.tensors["weight"], name=f"{name}: weight")
            g = codec.decode(request.grad_output, name=f"{name}: grad_output")
            fn = deconv_core.conv_backward if op == "conv" else deconv_core.conv_transpose_backward
            params = core_parameters(op, request.forward)
            grads = await servicer.on_core(lambda _: fn(g, x, w, **params, need=need))
            response = pb.BackwardResponse()
            sent = _encode(grads.grad_input, plan.wire_dtype, response.grad_input)
            sent += _encode(grads.grad_weight, plan.wire_dtype, response.grad_weight)
            sent += _encode(grads.grad_bias, plan.wire_dtype, response.grad_bias)
            if sent + 1024 > cfg.max_message_bytes:
                raise RequestLimitError(
                    f"{name}: the gradients need {sent} bytes, more than the max message size "
                    f"of {cfg.max_message_bytes} bytes; ask for fewer (need) or split the batch"
                )
            return response

    return handle


def _need(op: str, value: int) -> str:
    try:
        return _NEED[value]
    except KeyError:
        known = ", ".join(pb.Gradient.Name(v) for v in _NEED)
        raise RequestError(f"{op}: unknown need value {value}; expected one of {known}") from None


def deconvolve_rpc(servicer: Any, stream: bool) -> Handler:
    """The handler of Deconvolve (``stream=False``) or DeconvolveStream."""

    async def handle(context: grpc.aio.ServicerContext, reserve: Callable[[str, int], None]) -> Any:
        cfg = servicer.config
        name = "deconvolve"
        request = await _request(name, context, servicer)
        which = request.WhichOneof("forward")
        if which is None:
            raise RequestError(f"{name}: set the forward layer (conv or conv_transpose)")
        op = "conv" if which == "conv" else "conv_transpose"
        forward = getattr(request, which)
        if forward.HasField("input") and forward.input.data:
            raise RequestError(
                f"{name}: the forward input gives only the dtype and shape of x; leave its data "
                f"empty (send the layer's output as observed)"
            )
        plan: RequestPlan = plan_request(op, forward, cfg, chunked=True)
        if not request.HasField("observed"):
            raise RequestError(f"{name}: the observed tensor is missing")
        y_bytes = _tensor(name, "observed", request.observed, plan.wire_dtype, cfg)
        x_elems = plan.nbytes["input"] // codec.numpy_dtype(plan.wire_dtype).itemsize
        iteration_s = 2 * compute.estimate_seconds(plan.core)
        _check_time(name, iteration_s, cfg.max_compute_seconds)  # not even one iteration fits
        with servicer.admitted(name):
            held = plan.nbytes["weight"] + plan.nbytes.get("bias", 0) + 2 * y_bytes
            reserve(name, held + x_elems * _SOLVE_BYTES_PER_X + 2 * plan.core.workspace_bytes)
            w = codec.decode(plan.tensors["weight"], name=f"{name}: weight")
            b = None
            if "bias" in plan.tensors:
                b = codec.decode(plan.tensors["bias"], name=f"{name}: bias")
            y = codec.decode(request.observed, name=f"{name}: observed")
            progress = _Progress(asyncio.get_running_loop(), cfg.max_compute_seconds)
            kwargs = dict(
                op=op,
                input_shape=plan.core.input_shape,
                damping=request.damping,
                tol=request.tol or 1e-6,
                max_iter=request.max_iter or 100,
                **core_parameters(op, forward),
            )

            def solve(cancelled: Any) -> Any:
                return deconv_core.deconvolve(
                    y, w, b, callback=progress.callback(cancelled), **kwargs
                )

            work = asyncio.ensure_future(servicer.on_core(solve))
            try:
                if stream:
                    await progress.forward(context, work, cfg.write_timeout_s)
                result = await work
            finally:
                if not work.done():
                    work.cancel()
            response = _response(result, plan.wire_dtype, progress.timed_out)
            if not stream:
                return response
            update = pb.DeconvolveUpdate(result=response)
            await write_message(context, name, update, cfg.write_timeout_s)
            return None

    return handle


def _response(result: Any, wire: int, timed_out: bool) -> pb.DeconvolveResponse:
    response = pb.DeconvolveResponse(
        residual_norm=float(result.residual_norm),
        iterations=int(result.iterations),
        converged=bool(result.converged),
        residual_history=[float(r) for r in result.residual_history],
        stop_reason="time_limit" if timed_out and result.stop_reason == "callback" else (
            result.stop_reason
        ),
    )
    codec.encode(np.asarray(result.x), dtype=wire, out=response.x)
    return response


class _Progress:
    """The solve's callback (on the core thread) and the stream of progress messages."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit_s: float) -> None:
        self._loop = loop
        self._deadline = time.monotonic() + limit_s
        self._last = 0.0
        self._queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue(maxsize=1)
        self.timed_out = False

    def callback(self, cancelled: Any) -> Callable[[int, float], bool]:
        def on_iteration(iteration: int, residual: float) -> bool:
            now = time.monotonic()
            if cancelled.is_set():
                return False
            if now > self._deadline:
                self.timed_out = True
                return False
            if now - self._last >= PROGRESS_INTERVAL_S:
                self._last = now
                self._loop.call_soon_threadsafe(self._offer, (iteration, float(residual)))
            return True

        return on_iteration

    def _offer(self, item: tuple[int, float]) -> None:
        if self._queue.full():  # the writer is behind: keep only the newest
            self._queue.get_nowait()
        self._queue.put_nowait(item)

    async def forward(
        self, context: grpc.aio.ServicerContext, work: asyncio.Future[Any], timeout: float
    ) -> None:
        """Write progress messages until the solve is done."""
        while not work.done():
            getter = asyncio.ensure_future(self._queue.get())
            try:
                done, _ = await asyncio.wait({getter, work}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():  # the solve ended first, or this call was cancelled
                    getter.cancel()
            if getter not in done:
                continue
            iteration, residual = getter.result()
            update = pb.DeconvolveUpdate(
                progress=pb.DeconvolveProgress(iteration=iteration, residual_norm=residual)
            )
            await write_message(context, "deconvolve", update, timeout)
