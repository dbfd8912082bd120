"""True deconvolution: the pseudo-inverse C^+ of a convolution or transposed convolution.

``deconvolve`` solves ``min_x ||C x + b - y||^2 + damping * ||x||^2`` without ever forming C:
CGLS (conjugate gradients on the normal equations ``(C^T C + damping I) x = C^T (y - b)``),
with C one of the library's ops and C^T its adjoint (for ``op="conv"`` the transposed conv with
the same parameters sized back to the conv input, for ``op="conv_transpose"`` the conv), both
planned once and executed on the same fast routes as a forward call. The bias is subtracted
*before* (``y - b``): this is the inverse of a layer that added it after.

Started from ``x = 0``, CGLS stays in the range of C^T, so without damping it converges to the
minimum-norm least-squares solution (``pinv(C) @ (y - b)``); when C has full column rank that
is the unique x with ``C x + b = y`` whenever y is consistent. docs/operators.md explains when
this is what you want.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deconv_core.adjoint import conv_adjoint, planned, transpose_adjoint
from deconv_core.errors import DeconvError, InvalidArgumentError, UnsupportedDtypeError
from deconv_core.plan import Plan, execute, plan_conv, plan_conv_transpose

__all__ = ["OPS", "DeconvolveResult", "deconvolve"]

#: The forward ops ``deconvolve`` inverts.
OPS = ("conv", "conv_transpose")
#: Most candidate input shapes tried when deriving ``input_shape`` from ``y``.
_MAX_CANDIDATES = 4096
_FN = "deconvolve"

Callback = Callable[[int, float], Any]
Operator = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class DeconvolveResult:
    """What :func:`deconvolve` found.

    Attributes
    ----------
    x : ndarray
        The solution, of ``input_shape`` in the layout and dtype of ``y``.
    residual_norm : float
        ``sqrt(||C x + b - y||^2 + damping * ||x||^2)`` at ``x`` (the data misfit when
        ``damping`` is 0).
    iterations : int
        CGLS iterations run (0 when ``y - b`` is orthogonal to the range of C).
    converged : bool
        Whether a tolerance test passed (see :func:`deconvolve`).
    residual_history : tuple of float
        ``residual_norm`` before the first iteration (``||y - b||``) and after each one;
        non-increasing up to rounding.
    stop_reason : str
        "tol", "max_iter", "callback" (the callback returned False), or "zero" (``C^T(y - b)``
        is zero, so ``x = 0`` is the solution).
    """

    x: np.ndarray
    residual_norm: float
    iterations: int
    converged: bool
    residual_history: tuple[float, ...]
    stop_reason: str


def _real(name: str, value: Any, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(f"{_FN}: {name}={value!r} must be a real number")
    v = float(value)
    if not math.isfinite(v):
        raise InvalidArgumentError(f"{_FN}: {name}={value!r} must be finite")
    if positive and v <= 0:
        raise InvalidArgumentError(f"{_FN}: {name}={value!r} must be > 0")
    if not positive and v < 0:
        raise InvalidArgumentError(f"{_FN}: {name}={value!r} must be >= 0")
    return v


def _max_iter(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgumentError(f"{_FN}: max_iter={value!r} must be an integer")
    if value < 1:
        raise InvalidArgumentError(f"{_FN}: max_iter={value!r} must be >= 1")
    return int(value)


def _array(name: str, value: Any) -> np.ndarray:
    try:
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{_FN}: {name} is not an array: {exc}") from exc
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InvalidArgumentError(f"{_FN}: {name} has non-finite values (NaN or inf)")
    return arr


def _planner(op: str, params: dict[str, Any]) -> Callable[[tuple[int, ...], Any], Plan]:
    """``plan(input_shape, dtype)`` for the forward op, errors renamed to ``deconvolve``."""
    make = plan_conv if op == "conv" else plan_conv_transpose
    return lambda shape, dtype: planned(_FN, make, input_shape=shape, dtype=dtype, **params)


def _derive_input_shape(
    op: str, y_shape: tuple[int, ...], params: dict[str, Any], dtype: Any
) -> tuple[int, ...]:
    """The one input shape whose forward output is ``y_shape``; an error when it is not unique.

    A first guess comes from the other op (the adjoint maps the output size back); the
    neighbours of the guess on each axis are then tried, since several input sizes can give the
    same output size (a stride-s conv maps s sizes onto one).
    """
    other = plan_conv_transpose if op == "conv" else plan_conv
    own = ("output_padding", "output_shape", "padding_mode", "convention")
    shared = {k: v for k, v in params.items() if k not in own}
    try:
        guess_plan = other(input_shape=y_shape, dtype=dtype, **shared)
    except UnsupportedDtypeError as exc:
        raise UnsupportedDtypeError(f"{_FN}: {exc}") from exc
    except DeconvError as exc:
        raise InvalidArgumentError(
            f"{_FN}: cannot derive input_shape: y shape {y_shape} does not map back through "
            f"the adjoint op ({exc}); check y's shape and the weight, or pass input_shape"
        ) from exc
    guess = guess_plan.output_shape
    geom = guess_plan.geometry
    nd = len(guess)
    spatial = [guess_plan.layout.x_axis(2 + a, nd) for a in range(geom.rank)]
    windows: list[range] = []
    for a, axis in enumerate(spatial):
        s, d = geom.stride[3 - geom.rank + a], geom.dilation[3 - geom.rank + a]
        below = 1 if op == "conv" else (d - 1) // s + 1
        windows.append(range(max(1, guess[axis] - below), guess[axis] + 2))
    if math.prod(len(w) for w in windows) > _MAX_CANDIDATES:
        raise InvalidArgumentError(
            f"{_FN}: cannot derive input_shape from y shape {y_shape} (too many candidates); "
            f"pass input_shape"
        )
    plan = _planner(op, params)
    found = []
    for sizes in itertools.product(*windows):
        shape = list(guess)
        for axis, size in zip(spatial, sizes, strict=True):
            shape[axis] = size
        try:
            if plan(tuple(shape), dtype).output_shape == y_shape:
                found.append(tuple(shape))
        except InvalidArgumentError:
            continue
    if not found:
        raise InvalidArgumentError(
            f"{_FN}: no input shape gives y shape {y_shape} with these parameters (tried "
            f"around {guess}); check y and the parameters, or pass input_shape"
        )
    if len(found) > 1:
        ranges = []
        for a, axis in enumerate(spatial):
            sizes = sorted({f[axis] for f in found})
            if len(sizes) > 1:
                ranges.append(f"spatial axis {a}: sizes {sizes[0]}..{sizes[-1]}")
        raise InvalidArgumentError(
            f"{_FN}: input_shape is ambiguous: {len(found)} input shapes give y shape {y_shape} "
            f"({'; '.join(ranges)}; a stride > 1 maps several sizes onto one); pass input_shape"
        )
    return found[0]


def _input_shape(value: Any) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidArgumentError(
            f"{_FN}: input_shape={value!r} must be a sequence of ints (the full x shape)"
        )
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise InvalidArgumentError(f"{_FN}: input_shape={value!r} must hold ints")
        out.append(int(v))
    return tuple(out)


def _operators(op: str, plan64: Plan, w64: np.ndarray) -> tuple[Operator, Operator]:
    """``(C, C^T)`` as float64 closures over plans made once."""
    adjoint = (conv_adjoint if op == "conv" else transpose_adjoint)(_FN, plan64)
    return (lambda v: execute(plan64, v, w64)), (lambda r: adjoint(r, w64))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.ravel(), b.ravel()))


def deconvolve(
    y: Any,
    weight: Any,
    bias: Any = None,
    *,
    op: str = "conv",
    stride: int | Sequence[int] = 1,
    padding: Any = 0,
    output_padding: int | Sequence[int] = 0,
    output_shape: int | Sequence[int] | None = None,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    data_format: str = "channels_first",
    weight_format: str = "torch",
    padding_mode: str = "zeros",
    convention: str = "default",
    input_shape: Sequence[int] | None = None,
    damping: float = 0.0,
    tol: float = 1e-6,
    max_iter: int = 100,
    callback: Callback | None = None,
) -> DeconvolveResult:
    """Invert a (transposed) convolution: ``x = C^+ (y - b)``, matrix-free, by CGLS.

    Solves ``min_x ||C x + b - y||^2 + damping * ||x||^2`` where ``C x = op(x, weight)`` is
    :func:`deconv_core.conv` (``op="conv"``) or :func:`deconv_core.conv_transpose` without bias,
    with the given parameters. The bias is subtracted first: ``y - b`` is what C produced.
    Without damping, the iterates converge to the minimum-norm least-squares solution; with
    ``damping > 0`` to the unique Tikhonov-regularised one. The iteration runs in float64
    whatever the dtype of ``y``.

    Iteration stops when the normal equations are solved to relative accuracy ``tol``
    (``||C^T(y - b - C x) - damping*x|| <= tol * ||C^T(y - b)||``), when the data are fit to it
    (``residual_norm <= tol * ||y - b||``), after ``max_iter`` iterations, or when
    ``callback`` returns False.

    Parameters
    ----------
    y : ndarray
        The forward op's output (data), ``(N, C_out, *out)`` or channels-last.
    weight : ndarray
        The forward op's weight, in that op's layout for ``weight_format``.
    bias : ndarray, optional
        ``(C_out,)``, the bias the forward op added; subtracted from ``y`` before solving.
    op : {"conv", "conv_transpose"}
        The forward op C.
    stride, padding, dilation, groups, data_format, weight_format
        The forward op's parameters, as for :func:`deconv_core.conv` or
        :func:`deconv_core.conv_transpose`.
    padding_mode : str
        ``op="conv"`` only: the conv's fill of its padded border, as for
        :func:`deconv_core.conv` (a fill is linear too: C then includes it).
    output_padding, output_shape, convention
        ``op="conv_transpose"`` only, as for :func:`deconv_core.conv_transpose`.
    input_shape : sequence of int, optional
        The full shape of the x to solve for, in the data layout. Default: derived from
        ``y.shape`` when exactly one input shape gives it (a stride > 1 conv maps several onto
        one; pass it then).
    damping : float
        Tikhonov weight ``>= 0``.
    tol : float
        Relative tolerance ``> 0`` of the stopping tests.
    max_iter : int
        Iteration limit ``>= 1`` (each costs one C and one C^T).
    callback : callable, optional
        ``callback(iteration, residual_norm)`` after every iteration; returning False stops
        the solve (``stop_reason="callback"``); an exception it raises propagates to the caller
        (use it for deadlines and cancellation).

    Returns
    -------
    DeconvolveResult
        ``x``, ``residual_norm``, ``iterations``, ``converged``, ``residual_history``,
        ``stop_reason``.

    Raises
    ------
    InvalidArgumentError
        A bad parameter (``damping < 0``, ``max_iter < 1``, ``tol <= 0``, an unknown op,
        conv_transpose-only parameters with ``op="conv"``), an all-zero or non-finite weight,
        non-finite data, a ``y`` whose shape is not the forward output of ``input_shape``, or an
        ``input_shape`` that cannot be derived.
    UnsupportedDtypeError
        Unsupported or mixed dtypes, as for the forward op.
    """
    if not isinstance(op, str) or op not in OPS:
        raise InvalidArgumentError(f"{_FN}: op={op!r} must be one of {', '.join(map(repr, OPS))}")
    damping_v = _real("damping", damping, positive=False)
    tol_v = _real("tol", tol, positive=True)
    iters = _max_iter(max_iter)
    if callback is not None and not callable(callback):
        raise InvalidArgumentError(f"{_FN}: callback={callback!r} must be callable or None")
    ya = _array("y", y)
    wa = _array("weight", weight)
    ba = None if bias is None else _array("bias", bias)
    params: dict[str, Any] = dict(
        weight_shape=wa.shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        data_format=data_format,
        weight_format=weight_format,
    )
    if op == "conv_transpose":
        params.update(output_padding=output_padding, output_shape=output_shape)
        if convention != "default":
            params["convention"] = convention
        if padding_mode != "zeros":
            raise InvalidArgumentError(
                f"{_FN}: padding_mode={padding_mode!r} applies to op='conv' only (a transposed "
                f"conv crops its result, it reads no padded border)"
            )
    else:
        if output_shape is not None or np.any(np.asarray(output_padding, dtype=object) != 0):
            raise InvalidArgumentError(
                f"{_FN}: output_padding={output_padding!r} and output_shape={output_shape!r} "
                f"apply to op='conv_transpose' only; a conv's output size follows from "
                f"input_shape"
            )
        if convention != "default":
            raise InvalidArgumentError(
                f"{_FN}: convention={convention!r} applies to op='conv_transpose' only"
            )
        if padding_mode != "zeros":
            params["padding_mode"] = padding_mode
    plan = _planner(op, params)
    if input_shape is None:
        x_shape = _derive_input_shape(op, tuple(ya.shape), params, ya.dtype)
    else:
        x_shape = _input_shape(input_shape)
    user_plan = planned(
        _FN,
        plan_conv if op == "conv" else plan_conv_transpose,
        input_shape=x_shape,
        dtype=ya.dtype,
        weight_dtype=wa.dtype,
        bias_shape=None if ba is None else ba.shape,
        bias_dtype=None if ba is None else ba.dtype,
        **params,
    )
    if user_plan.output_shape != tuple(ya.shape):
        raise InvalidArgumentError(
            f"{_FN}: y shape {tuple(ya.shape)} must equal the output shape "
            f"{user_plan.output_shape} that {op} gives for input_shape {x_shape}"
        )
    if not np.any(wa):
        raise InvalidArgumentError(
            f"{_FN}: weight is all zeros; C = 0 has no inverse (every x fits equally badly)"
        )
    plan64 = plan(x_shape, np.float64)
    forward, adjoint = _operators(op, plan64, np.asarray(wa, dtype=np.float64))
    rhs = np.array(ya, dtype=np.float64)
    if ba is not None:
        channel = user_plan.layout.x_axis(1, rhs.ndim)
        shape = [1] * rhs.ndim
        shape[channel] = -1
        rhs -= np.asarray(ba, dtype=np.float64).reshape(shape)
    return _cgls(forward, adjoint, rhs, x_shape, damping_v, tol_v, iters, callback, ya.dtype)


def _cgls(
    forward: Callable[[np.ndarray], np.ndarray],
    adjoint: Callable[[np.ndarray], np.ndarray],
    rhs: np.ndarray,
    x_shape: tuple[int, ...],
    damping: float,
    tol: float,
    max_iter: int,
    callback: Callback | None,
    dtype: np.dtype,
) -> DeconvolveResult:
    """CGLS for ``min ||C x - rhs||^2 + damping ||x||^2`` from ``x = 0``."""
    x = np.zeros(x_shape)
    r = rhs.copy()
    s = adjoint(r)
    p = s.copy()
    gamma = _dot(s, s)
    normal0 = math.sqrt(gamma)
    res0 = math.sqrt(_dot(r, r))
    history = [res0]
    if gamma == 0.0:
        return DeconvolveResult(x.astype(dtype), res0, 0, True, tuple(history), "zero")
    reason, res, it = "max_iter", res0, 0
    for it in range(1, max_iter + 1):
        q = forward(p)
        delta = _dot(q, q) + damping * _dot(p, p)
        if delta <= 0.0:  # p is in the null space of C^T C (rounding): nothing left to gain
            it -= 1
            reason = "tol"
            break
        alpha = gamma / delta
        x += alpha * p
        r -= alpha * q
        s = adjoint(r)
        if damping:
            s -= damping * x
        gamma_new = _dot(s, s)
        res = math.sqrt(_dot(r, r) + damping * _dot(x, x))
        history.append(res)
        done = math.sqrt(gamma_new) <= tol * normal0 or res <= tol * res0
        if callback is not None and callback(it, res) is False:
            reason = "tol" if done else "callback"
            break
        if done:
            reason = "tol"
            break
        p *= gamma_new / gamma
        p += s
        gamma = gamma_new
    return DeconvolveResult(
        x=x.astype(dtype, copy=False),
        residual_norm=history[-1],
        iterations=it,
        converged=reason == "tol",
        residual_history=tuple(history),
        stop_reason=reason,
    )
