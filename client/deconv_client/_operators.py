"""Client side of the gradient and deconvolution RPCs, shared by both clients.

:class:`OperatorsMixin` gives :class:`~deconv_client.Client` and
:class:`~deconv_client.AsyncClient` ``conv_backward``, ``conv_transpose_backward`` and
``deconvolve`` with the core's signatures; the classes supply the I/O (``_unary`` for one
request and one response, ``_updates`` for the stream of DeconvolveStream). Results mirror the
core's: :class:`Gradients` and :class:`DeconvolveResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from deconv import codec
from deconv.v1 import deconv_pb2 as pb

from deconv_client import _requests
from deconv_client.errors import InvalidArgumentError

__all__ = ["DeconvolveResult", "Gradients", "OperatorsMixin", "result_of", "update_of"]

_NEED = {"input": pb.GRADIENT_INPUT, "weight": pb.GRADIENT_WEIGHT, "bias": pb.GRADIENT_BIAS}
Progress = Callable[[int, float], Any]


class Gradients(NamedTuple):
    """Gradients of a forward call; those not asked for are None."""

    grad_input: np.ndarray | None
    grad_weight: np.ndarray | None
    grad_bias: np.ndarray | None


@dataclass(frozen=True)
class DeconvolveResult:
    """The solution of :meth:`OperatorsMixin.deconvolve` and how the solve went.

    Attributes
    ----------
    x : ndarray
        The input that best explains the observed output.
    residual_norm : float
    iterations : int
    converged : bool
    residual_history : tuple of float
    stop_reason : str
        "tol", "max_iter", "zero" or "time_limit" (the server's compute time limit).
    """

    x: np.ndarray
    residual_norm: float
    iterations: int
    converged: bool
    residual_history: tuple[float, ...]
    stop_reason: str


def _need(op: str, need: Sequence[str]) -> list[int]:
    if isinstance(need, str):
        need = (need,)
    out = []
    for name in need:
        if name not in _NEED:
            raise InvalidArgumentError(
                f"{op}: need={name!r} is not a gradient; use any of 'input', 'weight', 'bias'"
            )
        out.append(_NEED[name])
    if not out:
        raise InvalidArgumentError(f"{op}: need must name at least one gradient")
    return out


_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1,
             "data_format": "channels_first", "weight_format": "torch"}  # fmt: skip


def _forward(op: str, x: Any, weight: Any, bias: Any, params: dict[str, Any]) -> Any:
    return _requests.build_request(op, x, weight, bias, **{**_DEFAULTS, **params})


def _decoded(tensor: pb.Tensor, dtype: np.dtype) -> np.ndarray | None:
    if not tensor.shape and not tensor.data:
        return None
    return _requests.decode_output(tensor, dtype)


class OperatorsMixin:
    """``conv_backward``, ``conv_transpose_backward`` and ``deconvolve`` over the service."""

    _stub: Any

    def _unary_call(self, method: Any, request: Any, decode: Callable[[Any], Any]) -> Any:
        raise NotImplementedError  # pragma: no cover - provided by BaseClient

    def _updates(self, request: Any, dtype: np.dtype, progress: Progress) -> Any:
        raise NotImplementedError  # pragma: no cover - provided by the client classes

    def conv_backward(
        self, grad_output: Any, x: Any, weight: Any, *,
        need: Sequence[str] = ("input", "weight", "bias"), **params: Any,
    ) -> Any:  # fmt: skip
        """Gradients of ``conv(x, weight, ...)`` given ``grad_output`` (d loss / d output).

        Parameters
        ----------
        grad_output : ndarray
            Shaped like the forward output (its layout and dtype).
        x, weight : ndarray
            The forward call's input and weight.
        need : sequence of {"input", "weight", "bias"}
            Which gradients to compute; the others come back as None.
        **params
            The forward call's keyword parameters (stride, padding, dilation, groups,
            data_format, weight_format, padding_mode), as for ``conv``.

        Returns
        -------
        Gradients
            ``(grad_input, grad_weight, grad_bias)``, matching torch.autograd.
        """
        return self._backward("conv", grad_output, x, weight, need, params)

    def conv_transpose_backward(
        self, grad_output: Any, x: Any, weight: Any, *,
        need: Sequence[str] = ("input", "weight", "bias"), **params: Any,
    ) -> Any:  # fmt: skip
        """Gradients of ``conv_transpose(x, weight, ...)``; as :meth:`conv_backward` (the
        parameters also take output_padding, output_shape and convention)."""
        return self._backward("conv_transpose", grad_output, x, weight, need, params)

    def _backward(
        self, op: str, grad_output: Any, x: Any, weight: Any, need: Any, params: dict[str, Any]
    ) -> Any:
        name = f"{op}_backward"
        prepared = _forward(op, x, weight, None, params)
        g = np.asarray(grad_output)
        request_type = pb.ConvBackwardRequest if op == "conv" else pb.TransposedConvBackwardRequest
        request = request_type(forward=prepared.unary_request(), need=_need(name, need))
        try:
            dtype, arr = codec.wire_array(g)
        except codec.CodecError:
            raise InvalidArgumentError(
                f"{name}: grad_output dtype {g.dtype} is not supported"
            ) from None
        request.grad_output.CopyFrom(pb.Tensor(dtype=dtype, shape=arr.shape, data=arr.tobytes()))
        in_dtype, w_dtype = prepared.input_dtype, np.asarray(weight).dtype
        method = self._stub.ConvBackward if op == "conv" else self._stub.TransposedConvBackward

        def decode(response: pb.BackwardResponse) -> Gradients:
            return Gradients(
                _decoded(response.grad_input, in_dtype),
                _decoded(response.grad_weight, w_dtype),
                _decoded(response.grad_bias, w_dtype),
            )

        return self._unary_call(method, request, decode)

    def deconvolve(
        self, y: Any, weight: Any, bias: Any = None, *, op: str = "conv",
        input_shape: Sequence[int], damping: float = 0.0, tol: float = 1e-6,
        max_iter: int = 100, progress: Progress | None = None, **params: Any,
    ) -> Any:  # fmt: skip
        """True deconvolution on the server: ``x = C^+ (y - bias)``, bias subtracted first.

        Parameters
        ----------
        y : ndarray
            The layer's output.
        weight, bias : ndarray
            The layer's weight and (optional) bias.
        op : {"conv", "conv_transpose"}
            The layer C.
        input_shape : sequence of int
            Shape of x (the layer's input), in the layer's data layout.
        damping, tol, max_iter : float, float, int
            Tikhonov damping (>= 0), stopping tolerance (> 0), iteration limit (>= 1).
        progress : callable, optional
            ``progress(iteration, residual_norm)`` called as the server reports progress (a few
            times a second; uses the streaming RPC).
        **params
            The layer's keyword parameters, as for ``conv`` / ``conv_transpose``.

        Returns
        -------
        DeconvolveResult
        """
        if op not in ("conv", "conv_transpose"):
            raise InvalidArgumentError(f"deconvolve: op={op!r} must be 'conv' or 'conv_transpose'")
        ya = np.asarray(y)
        x = np.broadcast_to(np.zeros((), ya.dtype), tuple(int(v) for v in input_shape))
        prepared = _forward(op, x, weight, bias, params)
        forward = type(prepared.request)()
        forward.CopyFrom(prepared.request)  # the input: dtype and shape only
        for name, arr in prepared.payloads:
            if name != "input":
                getattr(forward, name).data = arr.tobytes()
        dtype, arr = codec.wire_array(ya)
        request = pb.DeconvolveRequest(
            observed=pb.Tensor(dtype=dtype, shape=arr.shape, data=arr.tobytes()),
            damping=float(damping), tol=float(tol), max_iter=int(max_iter),
        )  # fmt: skip
        getattr(request, op).CopyFrom(forward)
        if progress is not None:
            return self._updates(request, ya.dtype, progress)
        return self._unary_call(self._stub.Deconvolve, request, lambda r: result_of(r, ya.dtype))


def update_of(update: pb.DeconvolveUpdate, dtype: np.dtype, progress: Progress) -> Any:
    """Report a progress message; the :class:`DeconvolveResult` of the final one (else None)."""
    if update.WhichOneof("part") == "progress":
        progress(update.progress.iteration, update.progress.residual_norm)
        return None
    return result_of(update.result, dtype)


def result_of(response: pb.DeconvolveResponse, dtype: np.dtype) -> DeconvolveResult:
    """The :class:`DeconvolveResult` of a response."""
    return DeconvolveResult(
        x=_requests.decode_output(response.x, dtype),
        residual_norm=response.residual_norm,
        iterations=response.iterations,
        converged=response.converged,
        residual_history=tuple(response.residual_history),
        stop_reason=response.stop_reason,
    )
