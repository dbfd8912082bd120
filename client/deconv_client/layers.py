"""Framework layers as deconv calls: :func:`from_torch`, :func:`from_keras`, :func:`from_onnx`.

Each returns a :class:`Layer` (weight, bias and deconv's parameters for the same computation) that
runs through a client: ``layer(client, x)`` with a :class:`~deconv_client.Client`, ``await
layer(aclient, x)`` with an :class:`~deconv_client.AsyncClient` (anything with deconv's ``conv``
and ``conv_transpose`` signatures works, ``deconv_core`` included). The layer's result equals the
framework's own output for the same input, in the framework's data layout.

No framework is imported, here or anywhere in deconv: the layers are read by duck typing (PyTorch
modules by class name and attributes, Keras layers by ``get_config()`` and ``get_weights()``,
ONNX nodes by ``op_type`` and ``attribute`` with initializers as arrays or ``TensorProto``-like
objects).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deconv_client._weights import frozen_array
from deconv_client.errors import InvalidArgumentError

__all__ = ["Layer", "from_keras", "from_onnx", "from_torch"]


@dataclass(frozen=True)
class Layer:
    """One conv or transposed conv with its weights, ready to run through a client.

    Attributes
    ----------
    op : {"conv", "conv_transpose"}
    weight : ndarray
        In the layout ``params["weight_format"]`` names; a read-only copy over immutable memory,
        so a client hashes it for the weight cache once, not on every call.
    bias : ndarray or None
    params : dict
        Keyword arguments of ``conv`` / ``conv_transpose`` (stride, padding, ...).
    source : str
        The framework layer it came from, e.g. "torch Conv2d".
    output_shape_for : callable, optional
        Spatial input sizes -> output_shape, for layers whose size depends on the input (Keras
        "same" with output_padding given).
    """

    op: str
    weight: np.ndarray
    bias: np.ndarray | None
    params: dict[str, Any]
    source: str
    output_shape_for: Callable[[list[int]], list[int]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Immutable copies: the client hashes a layer's weight once, not on every call.
        object.__setattr__(self, "weight", frozen_array(self.weight))
        if self.bias is not None:
            object.__setattr__(self, "bias", frozen_array(self.bias))

    def call_params(self, input_shape: Sequence[int]) -> dict[str, Any]:
        """The keyword arguments for an input of ``input_shape`` (sizes filled in if needed)."""
        params = dict(self.params)
        if self.output_shape_for is not None:
            shape = list(input_shape)
            last = params.get("data_format") == "channels_last"
            params["output_shape"] = self.output_shape_for(shape[1:-1] if last else shape[2:])
        return params

    def __call__(self, client: Any, x: Any) -> Any:
        """``client.conv`` or ``client.conv_transpose`` on ``x``: an ndarray, or (AsyncClient)
        a coroutine to await."""
        x = np.asarray(x)
        return getattr(client, self.op)(x, self.weight, self.bias, **self.call_params(x.shape))


def _array(value: Any) -> np.ndarray:
    """A tensor (torch, numpy, anything with ``numpy()`` or ``__array__``) as an ndarray."""
    for step in ("detach", "cpu"):
        if hasattr(value, step):
            value = getattr(value, step)()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    return np.asarray(value)


def _ints(value: Any, rank: int) -> list[int]:
    items = [int(v) for v in value] if isinstance(value, Sequence) else [int(value)]
    return items * rank if len(items) == 1 else items


_TORCH = {f"{kind}{r}d": (op, r) for r in (1, 2, 3)
          for kind, op in (("Conv", "conv"), ("ConvTranspose", "conv_transpose"))}


def from_torch(module: Any) -> Layer:
    """A ``torch.nn.Conv{1,2,3}d`` or ``ConvTranspose{1,2,3}d`` as a :class:`Layer`.

    Reads ``weight``, ``bias``, ``stride``, ``padding`` (ints or "same"/"valid"), ``dilation``,
    ``groups``, ``padding_mode`` and (transposed) ``output_padding``. Data is channels first.

    Raises
    ------
    InvalidArgumentError
        Not one of those classes.
    """
    name = type(module).__name__
    if name not in _TORCH:
        raise InvalidArgumentError(
            f"from_torch: {name} is not a Conv1d-3d or ConvTranspose1d-3d module"
        )
    op, rank = _TORCH[name]
    padding = module.padding
    params: dict[str, Any] = {
        "stride": _ints(module.stride, rank),
        "padding": padding if isinstance(padding, str) else _ints(padding, rank),
        "dilation": _ints(module.dilation, rank),
        "groups": int(module.groups),
    }
    if op == "conv":
        params["padding_mode"] = str(module.padding_mode)
    else:
        params["output_padding"] = _ints(module.output_padding, rank)
    bias = None if module.bias is None else _array(module.bias)
    return Layer(op, _array(module.weight), bias, params, f"torch {name}")


_KERAS_CONV = {f"Conv{r}D": r for r in (1, 2, 3)}
_KERAS_TRANSPOSE = {f"Conv{r}DTranspose": r for r in (1, 2, 3)}
_KERAS_DEPTHWISE = {"DepthwiseConv1D": 1, "DepthwiseConv2D": 2}


def _keras_same_sizes(stride: list[int], ek: list[int], ops: list[int]) -> Callable:
    def sizes(spatial: list[int]) -> list[int]:
        axes = zip(spatial, stride, ek, ops, strict=True)
        return [(n - 1) * s + e % 2 + o for n, s, e, o in axes]

    return sizes


def from_keras(layer: Any) -> Layer:
    """A Keras ``Conv{1,2,3}D``, ``Conv{1,2,3}DTranspose`` or ``DepthwiseConv{1,2}D`` layer.

    Reads ``get_config()`` (strides, padding "valid"/"same"/"causal", data_format,
    dilation_rate, groups, output_padding, depth_multiplier, use_bias) and ``get_weights()``
    (kernel, then bias). Transposed layers use ``convention="keras"``.

    Raises
    ------
    InvalidArgumentError
        An unknown layer class or padding.
    """
    name = type(layer).__name__
    cfg = layer.get_config()
    weights = [np.asarray(w) for w in layer.get_weights()]
    rank = _KERAS_CONV.get(name) or _KERAS_TRANSPOSE.get(name) or _KERAS_DEPTHWISE.get(name)
    if rank is None:
        raise InvalidArgumentError(
            f"from_keras: {name} is not a Conv1D-3D, Conv1D-3DTranspose or DepthwiseConv1D/2D "
            f"layer"
        )
    kernel = weights[0]
    bias = weights[1] if cfg.get("use_bias", True) and len(weights) > 1 else None
    stride = _ints(cfg.get("strides", 1), rank)
    dilation = _ints(cfg.get("dilation_rate", 1), rank)
    padding = str(cfg.get("padding", "valid")).lower()
    params: dict[str, Any] = {
        "stride": stride,
        "dilation": dilation,
        "data_format": cfg.get("data_format") or "channels_last",
        "weight_format": "tf",
    }
    ek = [d * (k - 1) + 1 for d, k in zip(dilation, kernel.shape[:rank], strict=True)]
    if padding == "causal":
        params["padding"] = [(e - 1, 0) for e in ek]
    elif padding in ("valid", "same"):
        params["padding"] = padding
    else:
        raise InvalidArgumentError(f"from_keras: {name} padding={padding!r} is not supported")
    if name in _KERAS_DEPTHWISE:
        c_in, mult = kernel.shape[-2], kernel.shape[-1]
        # (k..., C_in, mult) -> torch (C_in*mult, 1, k...): output channel c*mult + m
        moved = np.moveaxis(kernel, (rank, rank + 1), (0, 1))
        kernel = np.ascontiguousarray(moved.reshape(c_in * mult, 1, *kernel.shape[:rank]))
        params.update(groups=c_in, weight_format="torch")
        return Layer("conv", kernel, bias, params, f"keras {name}")
    if name in _KERAS_CONV:
        params["groups"] = int(cfg.get("groups", 1))
        return Layer("conv", kernel, bias, params, f"keras {name}")
    params["convention"] = "keras"
    op_pad = cfg.get("output_padding")
    sizes = None
    if op_pad is not None:
        ops = _ints(op_pad, rank)
        if padding == "same":  # Keras distinguishes output_padding=0 from None here
            sizes = _keras_same_sizes(stride, ek, ops)
        else:
            params["output_padding"] = ops
    return Layer("conv_transpose", kernel, bias, params, f"keras {name}", sizes)


def _attribute(attr: Any) -> Any:
    """An ONNX AttributeProto's value (INT, INTS, STRING; others by the first field set)."""
    kind = getattr(attr, "type", None)
    if kind == 7 or (kind is None and list(getattr(attr, "ints", []))):
        return [int(v) for v in attr.ints]
    if kind == 3 or (kind is None and getattr(attr, "s", b"")):
        value = attr.s
        return value.decode() if isinstance(value, bytes) else str(value)
    return int(attr.i)


_ONNX_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64}


def _initializer(value: Any) -> np.ndarray:
    """An initializer as an array: array-likes as they are, TensorProto-likes from raw_data."""
    if hasattr(value, "raw_data") and hasattr(value, "dims"):
        dtype = _ONNX_DTYPES.get(int(value.data_type))
        if dtype is None:
            raise InvalidArgumentError(f"from_onnx: initializer data_type {value.data_type}")
        dims = [int(d) for d in value.dims]
        if value.raw_data:
            little = np.dtype(dtype).newbyteorder("<")
            return np.frombuffer(value.raw_data, dtype=little).reshape(dims)
        data = value.double_data if dtype is np.float64 else value.float_data
        return np.asarray(list(data), dtype=dtype).reshape(dims)
    return _array(value)


def from_onnx(node: Any, initializers: Mapping[str, Any] | Sequence[Any],
              convention: str = "onnx") -> Layer:
    """An ONNX ``Conv`` or ``ConvTranspose`` node with its weight (and bias) initializers.

    Reads every attribute: auto_pad, pads, strides, dilations, group, kernel_shape,
    output_padding, output_shape. ``convention`` is "onnx" (the ONNX reference implementation,
    which produced ONNX's own backend tests) or "onnxruntime" (whose ConvTranspose differs where
    the total padding is negative; docs/semantics.md). Data is channels first.

    Parameters
    ----------
    node : onnx.NodeProto-like
        ``op_type``, ``input`` (names) and ``attribute``.
    initializers : mapping of name to array, or sequence of TensorProto-likes
        Must hold the node's weight (and bias, when it has a third input).
    convention : {"onnx", "onnxruntime"}

    Raises
    ------
    InvalidArgumentError
        Another op type, a missing initializer, or a kernel_shape that differs from the weight.
    """
    if node.op_type not in ("Conv", "ConvTranspose"):
        raise InvalidArgumentError(f"from_onnx: op_type {node.op_type!r} is not Conv/ConvTranspose")
    if convention not in ("onnx", "onnxruntime"):
        raise InvalidArgumentError(f"from_onnx: convention={convention!r} must be 'onnx' or "
                                   f"'onnxruntime'")
    if not isinstance(initializers, Mapping):
        initializers = {t.name: t for t in initializers}
    names = list(node.input)
    try:
        weight = _initializer(initializers[names[1]])
        bias = _initializer(initializers[names[2]]) if len(names) > 2 and names[2] else None
    except KeyError as exc:
        raise InvalidArgumentError(f"from_onnx: no initializer {exc} for {node.op_type}") from None
    rank = weight.ndim - 2
    attrs = {a.name: _attribute(a) for a in node.attribute}
    if "kernel_shape" in attrs and list(attrs["kernel_shape"]) != list(weight.shape[2:]):
        raise InvalidArgumentError(f"from_onnx: kernel_shape={attrs['kernel_shape']} differs "
                                   f"from the weight's {list(weight.shape[2:])}")
    auto = attrs.get("auto_pad", "NOTSET")
    pads = attrs.get("pads", [0] * 2 * rank)
    modes = {"SAME_UPPER": "same", "SAME_LOWER": "same_lower", "VALID": "valid"}
    padding = modes.get(auto) or [(pads[i], pads[i + rank]) for i in range(rank)]
    params: dict[str, Any] = {
        "stride": _ints(attrs.get("strides", 1), rank),
        "dilation": _ints(attrs.get("dilations", 1), rank),
        "groups": int(attrs.get("group", 1)),
        "padding": padding,
    }
    if node.op_type == "Conv":
        return Layer("conv", weight, bias, params, "onnx Conv")
    params["convention"] = convention
    params["output_padding"] = _ints(attrs.get("output_padding", 0), rank)
    if "output_shape" in attrs:
        shape = list(attrs["output_shape"])
        params["output_shape"] = shape[-rank:]
        if convention == "onnxruntime" and not isinstance(padding, str):
            params["padding"] = 0  # onnxruntime ignores pads when output_shape is given
    return Layer("conv_transpose", weight, bias, params, f"onnx ConvTranspose ({convention})")
