"""What :func:`deconv_core.execute` does around the compute engine, planned from shapes alone.

Three cases never reach the engine as the caller wrote them:

* **Fill padding** (conv's ``padding_mode``, PyTorch's names): "reflect", "replicate" and
  "circular" pad the input with numpy first (``np.pad`` modes "reflect", "edge", "wrap"); the
  engine then runs an unpadded conv on the padded input. PyTorch's rules apply: reflect needs
  each pad < the input size, circular each pad <= the input size.
* **A window that starts before the full result** (transposed conv, ``convention="onnx"`` with a
  negative total padding): the engine computes the part from position 0 on, and the rows before
  it are zero plus the bias.
* **An empty batch** (N = 0): the result is the empty array of the planned shape.

:func:`kernel_geometry` is the geometry the engine runs; the copies these steps make are counted
by :func:`extra_workspace` in the plan's ``workspace_bytes``. The fill rules are checked by
:func:`deconv_core.values.check_fill` when the call is planned.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from deconv_core.params import Geometry

__all__ = [
    "extra_workspace",
    "finish_output",
    "kernel_geometry",
    "pad_input",
    "to_kernel",
]

_NUMPY_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _conv_pads(geom: Geometry) -> list[tuple[int, int]]:
    """Per-axis (before, after) pads a conv reads (after pads no output reaches are dropped)."""
    pads = []
    for n, k, s, d, pb, out in zip(
        geom.in_size, geom.kernel, geom.stride, geom.dilation, geom.offset, geom.out_size,
        strict=True,
    ):
        needed = (out - 1) * s + d * (k - 1) + 1
        pads.append((pb, max(0, needed - n - pb)))
    return pads


def kernel_geometry(geom: Geometry, padding_mode: str) -> Geometry:
    """The geometry the engine computes: ``geom`` unless a fill or a negative crop applies.

    Parameters
    ----------
    geom : Geometry
        The call's canonical geometry (crop before may be negative for a transposed conv).
    padding_mode : str
        conv's fill mode ("zeros" for transposed convs).

    Returns
    -------
    Geometry
        A conv over the pre-padded input (offset 0), or a transposed conv whose window starts at
        position 0 or later.
    """
    if geom.op == "conv":
        if padding_mode == "zeros":
            return geom
        pads = _conv_pads(geom)
        size = tuple(n + pb + pa for n, (pb, pa) in zip(geom.in_size, pads, strict=True))
        return dataclasses.replace(geom, in_size=size, offset=(0, 0, 0))
    if min(geom.offset) >= 0:
        return geom
    offset = tuple(max(0, c) for c in geom.offset)
    out = tuple(o + min(0, c) for o, c in zip(geom.out_size, geom.offset, strict=True))
    return dataclasses.replace(geom, offset=offset, out_size=out)


def extra_workspace(geom: Geometry, kernel: Geometry, itemsize: int) -> int:
    """Bytes of the padded input or of the engine's partial output (0 when neither is made)."""
    if kernel is geom or geom.batch == 0:
        return 0
    if geom.op == "conv":
        return geom.batch * geom.c_in * math.prod(kernel.in_size) * itemsize
    return geom.batch * geom.c_out * math.prod(kernel.out_size) * itemsize


def pad_input(x3: np.ndarray, geom: Geometry, padding_mode: str) -> np.ndarray:
    """The channels-first input padded by ``padding_mode`` as the kernel geometry expects."""
    if padding_mode == "zeros":
        return x3
    widths = [(0, 0), (0, 0), *_conv_pads(geom)]
    return np.pad(x3, widths, mode=_NUMPY_MODES[padding_mode])


def finish_output(y: np.ndarray, geom: Geometry, bias: np.ndarray) -> np.ndarray:
    """The engine's result placed in the full window: rows before it are the bias alone."""
    lead = [max(0, -c) for c in geom.offset]
    if not any(lead):
        return y
    out = np.empty((geom.batch, geom.c_out, *geom.out_size), dtype=y.dtype)
    out[...] = bias.reshape(1, -1, 1, 1, 1)
    out[:, :, lead[0] :, lead[1] :, lead[2] :] = y
    return out


def to_kernel(arr: np.ndarray, dtype: np.dtype, rank: int) -> np.ndarray:
    """C-contiguous, writable, compute dtype, three spatial axes (one kernel type per dtype)."""
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not out.flags.writeable:
        out = out.copy()
    return out.reshape(*out.shape[:2], *((1,) * (3 - rank)), *out.shape[2:])
