"""The planner: a call's shapes, dtypes and parameters become one frozen :class:`Plan`.

``plan_conv``/``plan_conv_transpose`` need no arrays. They check every rule (dtypes, layouts,
shapes, parameters) and canonicalise the parameters exactly once, so a service can judge a request
(its output shape, work and scratch memory) before it decodes or allocates anything;
:func:`execute` then runs that plan on arrays of the planned shapes and dtypes without
canonicalising again. ``deconv_core.conv`` and ``deconv_core.conv_transpose`` are plan + execute.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from deconv import windows as _windows

from deconv_core import _engine, stages
from deconv_core.dtypes import DTYPES, call_dtype
from deconv_core.errors import InvalidArgumentError, UnsupportedDtypeError
from deconv_core.layout import Layout
from deconv_core.params import Geometry, conv_geometry, transpose_geometry
from deconv_core.values import PADDING_FILLS, preview

__all__ = [
    "CONVENTIONS",
    "DATA_FORMATS",
    "DTYPES",
    "WEIGHT_FORMATS",
    "Plan",
    "execute",
    "kernel_weight",
    "plan_conv",
    "plan_conv_transpose",
]

DATA_FORMATS = ("channels_first", "channels_last")
WEIGHT_FORMATS = ("torch", "tf")
#: Framework conventions of a transposed conv's window (docs/semantics.md, "Conventions").
CONVENTIONS = _windows.CONVENTIONS


@dataclass(frozen=True)
class Plan:
    """Everything known about a call before its arrays exist.

    Attributes
    ----------
    geometry : Geometry
        Canonical geometry (channels-first, three spatial axes).
    layout : Layout
        The caller's data and weight formats.
    dtype : str
        The caller's dtype name ("float32", "float64", "float16", "bfloat16").
    input_shape, weight_shape : tuple of int
        The caller's shapes, in the caller's layout.
    bias_shape : tuple of int or None
        ``(C_out,)``, or None without a bias.
    output_shape : tuple of int
        Shape of the result in the caller's layout.
    route : str
        The compute route the dispatcher takes (see ``deconv_core._engine``).
    workspace_bytes : int
        Upper bound of the scratch memory the call allocates beyond its inputs and its result
        (the route's buffers, layout and dtype conversions, a fill-padded input).
    padding_mode : str
        conv's fill of the padded border ("zeros" for transposed convs).
    convention : str
        The framework convention of a transposed conv's window ("default" for convs).
    kernel_geometry : Geometry or None
        What the engine computes when it differs from ``geometry`` (a fill-padded conv, or a
        window starting before the full result; see ``deconv_core.stages``), else None.
    """

    geometry: Geometry
    layout: Layout
    dtype: str
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    bias_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...]
    route: str
    workspace_bytes: int
    padding_mode: str = "zeros"
    convention: str = "default"
    kernel_geometry: Geometry | None = None

    @property
    def engine_geometry(self) -> Geometry:
        """The geometry the engine runs: ``kernel_geometry`` or else ``geometry``."""
        return self.kernel_geometry or self.geometry

    @property
    def op(self) -> str:
        """"conv" or "conv_transpose"."""
        return self.geometry.op

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the dense computation."""
        return self.geometry.macs

    @property
    def flops(self) -> int:
        """Floating-point operations, ``2 * macs``."""
        return 2 * self.geometry.macs

    @property
    def compute_dtype(self) -> np.dtype:
        """The dtype the kernels compute in (float32 for float16 and bfloat16)."""
        return DTYPES[self.dtype]

    @property
    def output_elements(self) -> int:
        """Elements of the result."""
        return math.prod(self.output_shape)

    @property
    def weight_key(self) -> tuple[Any, ...]:
        """What a kernel-ready weight (``deconv_core.prepare_weight``) depends on: the route,
        the compute dtype and the engine's geometry of one image (any batch, any slice)."""
        kernel = dataclasses.replace(self.engine_geometry, batch=0)
        return (self.route, self.compute_dtype.str, kernel)

    def with_route(self, route: str) -> Plan:
        """The same plan on another compute route (for tests and benchmarks).

        Raises
        ------
        InvalidArgumentError
            The route does not exist for this op or cannot compute this geometry.
        """
        if not _engine.route_applies(route, self.engine_geometry):
            raise InvalidArgumentError(
                f"{self.op}: route {route!r} cannot compute this call; routes of {self.op}: "
                f"{', '.join(_engine.ROUTES[self.op])}"
            )
        workspace = _workspace(route, self.geometry, self.engine_geometry, self.layout, self.dtype)
        return dataclasses.replace(self, route=route, workspace_bytes=workspace)


def _choice(op: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(
            f"{op}: {name}={preview(value)} must be one of {', '.join(map(repr, choices))}"
        )
    return value


def _output_shape(geom: Geometry, layout: Layout) -> tuple[int, ...]:
    out = geom.output_shape
    if layout.data_format == "channels_last":
        out = (out[0], *out[2:], out[1])
    return tuple(out)


def _workspace(route: str, geom: Geometry, kernel: Geometry, layout: Layout, dtype: str) -> int:
    """Route scratch plus the copies that bring arrays to and from the kernels' form."""
    if geom.batch == 0:
        return 0  # an empty batch never reaches the engine
    compute = DTYPES[dtype].itemsize
    x_elems = geom.batch * geom.c_in * math.prod(geom.in_size)
    w_elems = geom.c_in * geom.c_out_per_group * math.prod(geom.kernel)
    y_elems = geom.batch * geom.c_out * math.prod(geom.out_size)
    copies = (x_elems + w_elems + geom.c_out) * compute  # contiguous, writable operands
    if layout.data_format == "channels_last":
        copies += y_elems * compute
    if dtype in ("float16", "bfloat16"):
        copies += y_elems * 2  # the result cast back to the 2-byte dtype
    threads = numba.get_num_threads()
    scratch = _engine.workspace_bytes(route, kernel, compute, threads)
    return copies + scratch + stages.extra_workspace(geom, kernel, compute)


def _finish(
    geom: Geometry,
    layout: Layout,
    dtype: str,
    shapes: tuple[Any, ...],
    padding_mode: str = "zeros",
    convention: str = "default",
) -> Plan:
    kernel = stages.kernel_geometry(geom, padding_mode)
    route = _engine.choose_route(kernel, DTYPES[dtype])
    x_shape, w_shape, b_shape = shapes
    return Plan(
        geometry=geom,
        layout=layout,
        dtype=dtype,
        input_shape=tuple(int(v) for v in x_shape),
        weight_shape=tuple(int(v) for v in w_shape),
        bias_shape=None if b_shape is None else (int(b_shape[0]),),
        output_shape=_output_shape(geom, layout),
        route=route,
        workspace_bytes=_workspace(route, geom, kernel, layout, dtype),
        padding_mode=padding_mode,
        convention=convention,
        kernel_geometry=None if kernel is geom else kernel,
    )


IntOrSeq = int | Sequence[int]


def _layout_and_dtype(
    op: str, data_format: Any, weight_format: Any, dtypes: tuple[Any, Any, Any], bias_shape: Any
) -> tuple[Layout, str]:
    layout = Layout(
        _choice(op, "data_format", data_format, DATA_FORMATS),
        _choice(op, "weight_format", weight_format, WEIGHT_FORMATS),
    )
    return layout, call_dtype(op, *dtypes, bias_shape is not None)


def plan_conv(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    bias_shape: Sequence[int] | None = None,
    *,
    dtype: Any = "float32",
    weight_dtype: Any = None,
    bias_dtype: Any = None,
    stride: IntOrSeq = 1,
    padding: Any = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    data_format: str = "channels_first",
    weight_format: str = "torch",
    padding_mode: str = "zeros",
) -> Plan:
    """Plan a convolution from shapes, dtypes and the parameters of ``deconv_core.conv``.

    Parameters
    ----------
    input_shape, weight_shape : sequence of int
        The caller's shapes, in the layouts ``data_format`` and ``weight_format`` name.
    bias_shape : sequence of int, optional
        ``(C_out,)``; None without a bias.
    dtype : dtype-like or str
        The input's dtype ("bfloat16" may be given by name).
    weight_dtype, bias_dtype : dtype-like or str, optional
        Default: the input's; any other dtype is refused (mixed dtypes).
    stride, padding, dilation, groups, data_format, weight_format, padding_mode
        As for ``deconv_core.conv``; a one-element sequence stands for every axis, and padding
        may also be a :class:`~deconv_core.values.ExplicitPadding`.

    Returns
    -------
    Plan

    Raises
    ------
    InvalidArgumentError
        A shape or parameter breaks a rule (also a ValueError).
    UnsupportedDtypeError
        An unsupported or mixed dtype (also a TypeError).
    """
    layout, name = _layout_and_dtype(
        "conv", data_format, weight_format, (dtype, weight_dtype, bias_dtype), bias_shape
    )
    fill = _choice("conv", "padding_mode", padding_mode, PADDING_FILLS)
    geom = conv_geometry(
        input_shape,
        weight_shape,
        bias_shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        layout=layout,
        padding_mode=fill,
    )
    return _finish(geom, layout, name, (input_shape, weight_shape, bias_shape), padding_mode=fill)


def plan_conv_transpose(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    bias_shape: Sequence[int] | None = None,
    *,
    dtype: Any = "float32",
    weight_dtype: Any = None,
    bias_dtype: Any = None,
    stride: IntOrSeq = 1,
    padding: Any = 0,
    output_padding: IntOrSeq = 0,
    output_shape: IntOrSeq | None = None,
    dilation: IntOrSeq = 1,
    groups: int = 1,
    data_format: str = "channels_first",
    weight_format: str = "torch",
    convention: str = "default",
) -> Plan:
    """Plan a transposed convolution from shapes, dtypes and ``conv_transpose``'s parameters.

    Parameters are those of :func:`plan_conv` (without ``padding_mode``) plus
    ``output_padding``, ``output_shape`` and ``convention`` (as for
    ``deconv_core.conv_transpose``).

    Returns
    -------
    Plan

    Raises
    ------
    InvalidArgumentError
        A shape or parameter breaks a rule (also a ValueError).
    UnsupportedDtypeError
        An unsupported or mixed dtype (also a TypeError).
    """
    layout, name = _layout_and_dtype(
        "conv_transpose", data_format, weight_format, (dtype, weight_dtype, bias_dtype), bias_shape
    )
    rules = _choice("conv_transpose", "convention", convention, CONVENTIONS)
    geom = transpose_geometry(
        input_shape,
        weight_shape,
        bias_shape,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        output_shape=output_shape,
        dilation=dilation,
        groups=groups,
        layout=layout,
        convention=rules,
    )
    shapes = (input_shape, weight_shape, bias_shape)
    return _finish(geom, layout, name, shapes, convention=rules)


def _array(plan: Plan, what: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as an array of the planned shape and dtype (native byte order)."""
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.dtype.kind == "f" and not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))  # byte order only; same values
    if arr.dtype != plan.compute_dtype and arr.dtype.name != plan.dtype:  # name: microseconds
        raise UnsupportedDtypeError(
            f"{plan.op}: {what} dtype {arr.dtype} differs from the plan's {plan.dtype}"
        )
    if arr.shape != shape:
        raise InvalidArgumentError(
            f"{plan.op}: {what} shape {arr.shape} differs from the plan's {shape}"
        )
    return arr


def kernel_weight(plan: Plan, weight: Any) -> np.ndarray:
    """``weight`` checked against the plan and laid out for the engine (channels-first, three
    spatial axes, the compute dtype)."""
    wa = _array(plan, "weight", weight, plan.weight_shape)
    nd = len(plan.weight_shape)
    wl = wa.transpose(*(plan.layout.w_axis(j, nd) for j in range(nd)))
    return stages.to_kernel(wl, plan.compute_dtype, plan.geometry.rank)


def execute(
    plan: Plan, x: Any, weight: Any, bias: Any = None, *, prepared: Any = None
) -> np.ndarray:
    """Run a plan on arrays of its shapes; no parameter is canonicalised again.

    Parameters
    ----------
    plan : Plan
        From :func:`plan_conv` or :func:`plan_conv_transpose`.
    x, weight : array-like
        Of ``plan.input_shape`` and ``plan.weight_shape``, in the plan's dtype (arrays already
        widened to float32 are accepted for float16 and bfloat16 plans).
    bias : array-like, optional
        Of ``plan.bias_shape``; required exactly when the plan has a bias.
    prepared : PreparedWeight, optional
        ``deconv_core.prepare_weight(plan, weight)`` kept from an earlier call (same route,
        dtype and per-image geometry, any batch): the route skips transforming the weight.

    Returns
    -------
    ndarray
        ``plan.output_shape``, in the dtype of ``x``.

    Raises
    ------
    InvalidArgumentError
        An array's shape differs from the plan's, the bias is missing or unexpected, or
        ``prepared`` was made for another plan.
    UnsupportedDtypeError
        An array's dtype differs from the plan's.
    """
    if (bias is None) != (plan.bias_shape is None):
        given = "no bias" if bias is None else "a bias"
        raise InvalidArgumentError(
            f"{plan.op}: {given} given, but the plan was made "
            f"{'with' if plan.bias_shape else 'without'} one"
        )
    if prepared is not None and prepared.key != plan.weight_key:
        raise InvalidArgumentError(
            f"{plan.op}: the prepared weight was made for another plan (route, dtype or "
            f"geometry differ); prepare it with deconv_core.prepare_weight for this plan"
        )
    xa = _array(plan, "input", x, plan.input_shape)
    w3 = kernel_weight(plan, weight)
    geom, layout = plan.geometry, plan.layout
    if geom.batch == 0:  # an empty batch: nothing to compute (docs/semantics.md)
        if bias is not None:
            _array(plan, "bias", bias, plan.bias_shape or ())
        return np.zeros(plan.output_shape, dtype=xa.dtype)
    nd = len(plan.input_shape)
    xl = xa.transpose(*(layout.x_axis(j, nd) for j in range(nd)))
    dtype = plan.compute_dtype
    x3 = stages.to_kernel(xl, dtype, geom.rank)
    if bias is None:
        b = np.zeros(geom.c_out, dtype)
    else:
        b = np.array(_array(plan, "bias", bias, plan.bias_shape or ()), dtype=dtype)  # writable
    kernel = plan.engine_geometry
    x3 = stages.pad_input(x3, geom, plan.padding_mode)
    form = None if prepared is None else prepared.array
    y = stages.finish_output(_engine.run(x3, w3, b, kernel, plan.route, form), geom, b)
    y = y.reshape(geom.output_shape)
    if layout.data_format == "channels_last":
        y = np.ascontiguousarray(np.moveaxis(y, 1, -1))
    return y.astype(xa.dtype, copy=False)
