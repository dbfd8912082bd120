"""Private compute routes and the dispatcher that picks one per call.

A route takes channels-first, C-contiguous arrays in the compute dtype with three spatial axes,
a :class:`~deconv_core.params.Geometry` and a bias (zeros when the caller gave none), and returns
the output with three spatial axes. Routes:

``direct``
    One Numba kernel, prange over (batch, output channel). Best for depthwise and tiny work.
``phase``
    Convs by input phases (``deconv_core._phase_conv``: one GEMM over contiguous shifted copies
    of each image's phase images, any stride) and strided transposed convs by output phases
    (``deconv_core._phase``: a stride-1 window conv with one output channel per phase, then a
    depth-to-space copy; no col2im). (It replaced ``tiled``, an im2col of strided row gathers,
    which measured 1.1-2x slower on every conv tried.)
``patch``
    Transposed conv only: one GEMM producing a kernel patch per input pixel, then a Numba scatter
    of whole kernel rows; for large kernels the phase route cannot take (dilated and strided).
``flip``
    Stride-1 transposed conv only: the same sum as a conv with the flipped kernel, through the
    conv ``phase`` route.
``gemm``
    Transposed conv only: per image and block of output channels, one BLAS GEMM per group plus
    a Numba col2im, on the core's workers (``deconv_core._gemm``); for strided convs whose
    phases waste many zero taps (3x3 stride 2: 16 taps computed for 9) or that are dilated.
``winograd``
    float32 3x3 stride-1 2-D convs (any dilation), and stride-1 transposed convs through the
    flipped kernel: Winograd F(4x4, 3x3), 4x fewer multiplications (``deconv_core._winograd``);
    float32 3x3 stride-2 2-D convs: Winograd F(2, 2) on the even input phase of each axis, 25
    multiplications per 2x2 output tile instead of 36 (``deconv_core._winograd_s2``).
    float64 calls keep the exact routes (:func:`choose_route` with ``dtype``; a float64 call
    forced onto a float32-only route runs ``EXACT_FALLBACK``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from deconv_core import _gemm, _kernels, _phase, _phase_conv, _threads, _winograd, _winograd_s2
from deconv_core.params import Geometry

__all__ = [
    "PREPARERS",
    "ROUTES",
    "choose_route",
    "image_macs",
    "phase_waste",
    "prepare",
    "route_applies",
    "run",
    "workspace_bytes",
]

#: Below this many multiply-accumulates per image the direct kernel beats the GEMM's fixed costs
#: (and with at most 4 channel pairs per group: depthwise T6 runs direct, 3-5x faster than peers).
#: Every threshold of :func:`choose_route` is per image (:func:`image_macs`), and every route
#: cuts its work (GEMM shapes, tiles, blocks) from one image's geometry, never across images:
#: so an image's result, bit for bit, does not depend on its batch, and a batch split into
#: parts (the server's time slices, a client's parts on several replicas) computes exactly what
#: the whole batch does, given the same CPU, BLAS build and thread count.
SMALL_MACS = 1 << 20
#: Shortest piece of an output row a job of the row-split direct conv computes.
DIRECT_MIN_CHUNK = 1024
#: Transposed convs whose 2-D kernel window is at least this long and wide (FCN-style
#: upsampling) add whole kernel rows at a time; 1-D long kernels measured faster through GEMM.
PATCH_MIN_KERNEL_WIDTH = 8
#: Winograd's fixed costs (weight transform, tile bookkeeping) pay off above this many MACs per
#: image (measured on 3x3 64->64 convs, batches 1 and 2: phase/flip faster at 14.7M per image,
#: about equal at 21M, Winograd 1.1-2.7x faster from 29M; 1.7x faster at 150M).
WINOGRAD_MIN_MACS = 1 << 24
#: The transposed phase route computes ``phase_waste`` times the direct work (zero taps of
#: phases with fewer taps, windows that straddle two phases' ranges, row padding). Where the
#: kernel windows of neighbouring inputs overlap (a kernel longer than its stride on some axis)
#: the gemm route, whose col2im adds the overlaps, won every benchmark case on the 2-core AVX2
#: machine (100 ms pauses, interleaved: T1 gemm 27.1 ms, phase 35.7; T4 85.4 vs 96.6; T5 3-D
#: 5.96 vs 7.01); without overlap the phase route needs no col2im at all and wins below this
#: waste (T2, k = s = 2: phase 8.2 ms, gemm 8.7). Large 2-D kernels (>=
#: PATCH_MIN_KERNEL_WIDTH) take the phase route in any case: their col2im costs most (T3:
#: phase 31 ms, gemm 53, patch 58).
PHASE_MAX_WASTE = 1.1


def _prod(values: tuple[int, ...]) -> int:
    return math.prod(values)


def _cols_per_image(geom: Geometry) -> int:
    """Elements of one image's column buffer in the gemm and patch routes."""
    return geom.c_out * _prod(geom.kernel) * _prod(geom.in_size)


def _direct_planes(geom: Geometry) -> int:
    """Elements of the direct transposed kernel's per-thread buffers (see ``transpose_direct``)."""
    sizes = []
    for n, o, k, s, d, f in zip(
        geom.in_size[1:], geom.out_size[1:], geom.kernel[1:], geom.stride[1:],
        geom.dilation[1:], geom.offset[1:], strict=True,
    ):
        shifts = [(t * d - f) // s for t in range(k)]
        L = -(-o // s)
        E = max(0, max(shifts))
        sizes.append((L, E, max(L + E - min(0, min(shifts)), E + n)))
    (L1, E1, _), (_, _, LW) = sizes
    rows = max(E1 + geom.in_size[1], L1 + E1 - min(0, min(
        (t * geom.dilation[1] - geom.offset[1]) // geom.stride[1] for t in range(geom.kernel[1])
    )))
    return (rows + geom.stride[1] * geom.stride[2] * L1) * LW


def workspace_bytes(route: str, geom: Geometry, itemsize: int, threads: int) -> int:
    """Scratch bytes ``route`` allocates beyond its inputs and its output (an upper bound).

    Parameters
    ----------
    route : str
        A key of ``ROUTES[geom.op]``.
    geom : Geometry
        The call; for ``flip`` the transposed geometry (the route builds its conv itself).
    itemsize : int
        Bytes per element of the compute dtype.
    threads : int
        Worker threads (each has its own buffers).

    Returns
    -------
    int
    """
    if route in FLOAT32_ROUTES and itemsize != 4:
        return workspace_bytes(EXACT_FALLBACK[geom.op], geom, itemsize, threads)
    if route == "direct":
        if geom.op == "conv":
            return 0
        return max(1, threads) * _direct_planes(geom) * itemsize
    flipped = geom.c_in * geom.c_out_per_group * _prod(geom.kernel) * itemsize
    if route == "flip":
        _, conv_geom = _as_conv_geometry(geom)
        return flipped + _phase_conv.workspace_bytes(conv_geom, itemsize, threads)
    if route == "winograd":
        if geom.op == "conv_transpose":  # plus the flipped copy of the weight
            return flipped + _winograd.workspace_bytes(_as_conv_geometry(geom)[1], threads)
        if _winograd_s2.applies(geom):
            return _winograd_s2.workspace_bytes(geom, threads)
        return _winograd.workspace_bytes(geom, threads)
    if route == "phase" and geom.op == "conv":
        return _phase_conv.workspace_bytes(geom, itemsize, threads)
    if route == "phase":
        return _phase.workspace_bytes(geom, itemsize, threads)
    if route == "gemm":
        return _gemm.workspace_bytes(geom, itemsize, threads)
    # patch: one image's columns at a time
    staged_input = geom.c_in * _prod(geom.in_size)  # the image, should BLAS stage it
    weight = geom.c_in * geom.c_out_per_group * _prod(geom.kernel)  # BLAS may stage it
    return (_cols_per_image(geom) + staged_input + weight) * itemsize


def _direct(x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry) -> np.ndarray:
    y = np.empty((geom.batch, geom.c_out, *geom.out_size), dtype=x.dtype)
    threads = numba.get_num_threads()
    if geom.op == "conv" and geom.batch * geom.c_out < threads:
        # Fewer output planes than threads (a mono signal or image): split the rows instead.
        rows = geom.batch * geom.c_out * geom.out_size[0] * geom.out_size[1]
        pieces = -(-4 * threads // rows)
        chunk = max(DIRECT_MIN_CHUNK, -(-geom.out_size[2] // pieces))
        _kernels.conv_direct_rows(
            x, w, bias, y, geom.groups, geom.stride, geom.dilation, geom.offset, chunk
        )
        return y
    kernel = _kernels.conv_direct if geom.op == "conv" else _kernels.transpose_direct
    kernel(x, w, bias, y, geom.groups, geom.stride, geom.dilation, geom.offset)
    return y


def _as_conv_geometry(geom: Geometry) -> tuple[tuple[int, int, int], Geometry]:
    """The conv a stride-1 transposed conv equals (see :func:`_as_conv`) and its kernel."""
    offset = tuple(
        d * (k - 1) - crop
        for d, k, crop in zip(geom.dilation, geom.kernel, geom.offset, strict=True)
    )
    return geom.kernel, dataclasses.replace(geom, op="conv", offset=offset)


def _as_conv(w: np.ndarray, geom: Geometry) -> tuple[np.ndarray, Geometry]:
    """A stride-1 transposed conv as a conv with the kernel flipped and its channels swapped.

    With stride 1, ``y[j] = sum_t x[j + crop - t*d] * w[t]``: a correlation with the flipped
    kernel at offset ``d*(k-1) - crop`` (negative offsets are fine for the kernels).
    """
    G, Cig, Cog = geom.groups, geom.c_in_per_group, geom.c_out_per_group
    kernel, conv_geom = _as_conv_geometry(geom)
    wf = w.reshape(G, Cig, Cog, *kernel)[:, :, :, ::-1, ::-1, ::-1].transpose(0, 2, 1, 3, 4, 5)
    wf = np.ascontiguousarray(wf).reshape(geom.c_out, Cig, *kernel)
    return wf, conv_geom


def _flipped_conv(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry, prepared: Any = None
) -> np.ndarray:
    """Stride-1 transposed conv through the conv phase route (see :func:`_as_conv`)."""
    _, conv_geom = _as_conv_geometry(geom)
    wf = prepared if prepared is not None else _as_conv(w, geom)[0]
    return _phase_conv.conv(x, wf, bias, conv_geom)


def _winograd_route(
    x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry, prepared: Any = None
) -> np.ndarray:
    """Winograd F(4x4, 3x3) or, for stride-2 convs, the stride-2 Winograd; stride-1 transposed
    convs through the flipped kernel."""
    if _winograd_s2.applies(geom):
        return _winograd_s2.conv(x, w, bias, geom, u=prepared)
    if prepared is not None:  # the transformed weight: the flip is in it
        conv_geom = _as_conv_geometry(geom)[1] if geom.op == "conv_transpose" else geom
        return _winograd.conv(x, w, bias, conv_geom, u=prepared)
    if geom.op == "conv_transpose":
        w, geom = _as_conv(w, geom)
    return _winograd.conv(x, w, bias, geom)


def _winograd_weight(w: np.ndarray, geom: Geometry) -> np.ndarray:
    if _winograd_s2.applies(geom):
        return _winograd_s2.transform_weight(w)
    if geom.op == "conv_transpose":
        w, geom = _as_conv(w, geom)
    return _winograd.transform_weight(w)


#: The routes that turn the weight into a kernel-ready form on every call, and how: a caller
#: that keeps the form (the server's weight cache) passes it back to :func:`run`.
PREPARERS: dict[tuple[str, str], Callable[[np.ndarray, Geometry], np.ndarray]] = {
    ("conv_transpose", "phase"): lambda w, geom: _phase.weight_matrix(w, geom, _phase.layout(geom)),
    ("conv_transpose", "flip"): lambda w, geom: _as_conv(w, geom)[0],
    ("conv_transpose", "winograd"): _winograd_weight,
    ("conv", "winograd"): _winograd_weight,
}


def _patch_transpose(x: np.ndarray, w: np.ndarray, bias: np.ndarray, geom: Geometry) -> np.ndarray:
    """Transposed conv as (pixels x C_in) @ (C_in x C_out*K), then add whole kernel patches."""
    G, Cig, Cog = geom.groups, geom.c_in_per_group, geom.c_out_per_group
    K = w.shape[2] * w.shape[3] * w.shape[4]
    N = int(np.prod(geom.in_size))
    wg = w.reshape(G, Cig, Cog * K)
    y = np.empty((geom.batch, geom.c_out, *geom.out_size), dtype=x.dtype)
    for b in range(geom.batch):
        xs = x[b].reshape(G, Cig, N).transpose(0, 2, 1)  # (G, N, Cig): pixels as rows, a view
        cols = _threads.matmul(xs, wg).reshape(G, 1, *geom.in_size, Cog, *w.shape[2:])
        _kernels.col2im_patch(cols, bias, y[b : b + 1], geom.stride, geom.dilation, geom.offset)
        del cols  # before the next image's: one column buffer alive at a time
    return y


Route = Callable[[np.ndarray, np.ndarray, np.ndarray, Geometry], np.ndarray]
ROUTES: dict[str, dict[str, Route]] = {
    "conv": {"direct": _direct, "phase": _phase_conv.conv, "winograd": _winograd_route},
    "conv_transpose": {
        "direct": _direct,
        "gemm": _gemm.transpose,
        "patch": _patch_transpose,
        "flip": _flipped_conv,
        "winograd": _winograd_route,
        "phase": _phase.transpose,
    },
}
#: Routes that compute in float32 only (float64 calls take the exact routes).
FLOAT32_ROUTES = frozenset({"winograd"})
#: The exact route a float64 call forced onto a float32-only route runs instead (it applies
#: wherever ``winograd`` does: stride-1 transposed convs and any conv).
EXACT_FALLBACK = {"conv": "phase", "conv_transpose": "flip"}


def _winograd_applies(geom: Geometry) -> bool:
    if geom.op == "conv_transpose":
        if geom.stride != (1, 1, 1):
            return False
        geom = _as_conv_geometry(geom)[1]
    return _winograd.applies(geom) or _winograd_s2.applies(geom)


def phase_waste(geom: Geometry) -> float:
    """Multiply-adds of the transposed phase route per multiply-add of the direct algorithm:
    zero taps (``prod(ceil(k/s)*s / k)``) times window positions per input pixel."""
    taps = math.prod(-(-k // s) * s / k for k, s in zip(geom.kernel, geom.stride, strict=True))
    axes = _phase.layout(geom)
    windows = ((axes[0].J - 1) * (axes[1].J + axes[1].L - 1) + axes[1].J) * (
        axes[2].J + axes[2].L - 1
    )
    return taps * windows / _prod(geom.in_size)


def route_applies(route: str, geom: Geometry, dtype: np.dtype | None = None) -> bool:
    """Whether ``route`` can compute ``geom``.

    ``flip`` needs stride 1, ``winograd`` a 3x3 2-D kernel, stride 1 (see
    :func:`deconv_core._winograd.applies`) or a conv's stride 2 without dilation (see
    :func:`deconv_core._winograd_s2.applies`), the transposed ``phase`` a stride above 1 and no
    dilation; the others apply to any geometry. With ``dtype``
    given, float32-only routes refuse other dtypes (without it they run the exact route instead).
    """
    if route not in ROUTES[geom.op]:
        return False
    if dtype is not None and route in FLOAT32_ROUTES and np.dtype(dtype) != np.float32:
        return False
    if route == "flip":
        return geom.stride == (1, 1, 1)
    if route == "winograd":
        return _winograd_applies(geom)
    if route == "phase":
        return _phase.applies(geom) or _phase_conv.applies(geom)
    return True


def image_macs(geom: Geometry) -> int:
    """Multiply-accumulates of one image of the batch: what :func:`choose_route` weighs.

    Parameters
    ----------
    geom : Geometry

    Returns
    -------
    int
        ``geom.macs`` of a batch of one (for an empty batch too).
    """
    return dataclasses.replace(geom, batch=1).macs


def choose_route(geom: Geometry, dtype: np.dtype | None = None) -> str:
    """Pick the route for a geometry (thresholds measured on the benchmark cases, bench/cases.py).

    The choice depends on the work per image, never on the batch size (see
    :data:`SMALL_MACS`).

    Parameters
    ----------
    geom : Geometry
        The canonical geometry of the call.
    dtype : numpy dtype, optional
        The compute dtype; None stands for float32 (the float32-only routes may be chosen).

    Returns
    -------
    str
        A key of ``ROUTES[geom.op]``.
    """
    per_image = image_macs(geom)
    if geom.c_in_per_group * geom.c_out_per_group <= 4 or per_image < SMALL_MACS:
        return "direct"
    fast = dtype is None or np.dtype(dtype) == np.float32
    if fast and _winograd_applies(geom):
        strided = _winograd_s2.applies(geom)
        if _winograd_s2.pays_off(geom) if strided else per_image >= WINOGRAD_MIN_MACS:
            return "winograd"
    if geom.op == "conv":
        return "phase"
    if geom.stride == (1, 1, 1):
        return "flip"
    large = min(geom.kernel[1], geom.kernel[2]) >= PATCH_MIN_KERNEL_WIDTH
    overlap = any(k > s for k, s in zip(geom.kernel, geom.stride, strict=True))
    if _phase.applies(geom) and (
        large or (not overlap and phase_waste(geom) <= PHASE_MAX_WASTE)
    ):
        return "phase"
    return "patch" if large else "gemm"


def _effective(geom: Geometry, dtype: np.dtype, route: str | None) -> str:
    """The route that runs: the chosen one, or its exact fallback for a non-float32 call."""
    chosen = route or choose_route(geom, dtype)
    if chosen in FLOAT32_ROUTES and np.dtype(dtype) != np.float32:
        return EXACT_FALLBACK[geom.op]
    return chosen


def prepare(w: np.ndarray, geom: Geometry, route: str | None = None) -> np.ndarray | None:
    """The kernel-ready form of the canonical weight ``w`` for the route that runs ``geom``
    (read-only), or None when that route uses the weight as it is."""
    make = PREPARERS.get((geom.op, _effective(geom, w.dtype, route)))
    if make is None:
        return None
    form = np.ascontiguousarray(make(w, geom))  # Numba kernels and copies: no BLAS
    form.setflags(write=False)
    return form


def run(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    geom: Geometry,
    route: str | None = None,
    prepared: np.ndarray | None = None,
) -> np.ndarray:
    """Compute one call on canonical arrays (see module docstring) by the chosen route;
    ``prepared`` is :func:`prepare`'s form of ``w`` for the same geometry and route."""
    chosen = _effective(geom, x.dtype, route)
    fn = ROUTES[geom.op][chosen]
    extra = () if prepared is None or (geom.op, chosen) not in PREPARERS else (prepared,)
    if chosen == "direct":
        return fn(x, w, bias, geom)
    with _threads.blas_single_threaded():
        return fn(x, w, bias, geom, *extra)
