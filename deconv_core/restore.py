"""Classic signal-processing deconvolution of 1-D and 2-D single-channel data (numpy.fft only).

To most of the world "deconvolution" means undoing a blur: an observed signal or image is the
true one convolved with a known point-spread function (PSF) plus noise, and the task is to get
the true one back. Both restorations here assume that model,

    image = psf (*) x + noise,

with ``(*)`` a true convolution (the PSF flipped, as in signal processing; a symmetric PSF makes
no difference) whose origin is the PSF element at ``psf_center`` (default ``k // 2`` per axis,
the centre of an odd-sized PSF), on a **periodic** domain: the blur wraps around the edges,
which is what the discrete Fourier transform diagonalises. With ``boundary="symmetric"`` the
data are first extended by mirror images (one PSF size on each side) so that a
non-periodic image does not ring at its edges; the result is cropped back.

* :func:`wiener_deconvolve`: the linear minimum-mean-square-error filter
  ``X = conj(H) Y / (|H|^2 + nsr)`` for a noise-to-signal power ratio ``nsr``.
* :func:`richardson_lucy`: the iterative maximum-likelihood restoration for Poisson noise;
  keeps the estimate non-negative and (for a PSF summing to 1) its total flux.

For the pseudo-inverse of the library's own convolutions (any rank, channels, stride) see
:func:`deconv_core.deconvolve`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from deconv_core.errors import InvalidArgumentError, UnsupportedDtypeError

__all__ = ["BOUNDARIES", "richardson_lucy", "wiener_deconvolve"]

#: Boundary assumptions of the restorations.
BOUNDARIES = ("periodic", "symmetric")


def _data(fn: str, name: str, value: Any) -> np.ndarray:
    """A real 1-D or 2-D array of finite values, as float32 or float64."""
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.dtype.kind not in "fiub" or arr.dtype.kind == "b":
        raise UnsupportedDtypeError(
            f"{fn}: {name} dtype {arr.dtype} is not supported; use a real float or integer array"
        )
    if arr.ndim not in (1, 2):
        raise InvalidArgumentError(
            f"{fn}: {name} must be 1-D or 2-D (one channel), got {arr.ndim} dims with shape "
            f"{arr.shape}"
        )
    if arr.size == 0:
        raise InvalidArgumentError(f"{fn}: {name} is empty (shape {arr.shape})")
    out = arr.astype(np.float32 if arr.dtype == np.float32 else np.float64, copy=False)
    if not np.all(np.isfinite(out)):
        raise InvalidArgumentError(f"{fn}: {name} has non-finite values (NaN or inf)")
    return out


def _center(fn: str, psf: np.ndarray, psf_center: Sequence[int] | None) -> tuple[int, ...]:
    if psf_center is None:
        return tuple(k // 2 for k in psf.shape)
    if isinstance(psf_center, numbers.Integral) and psf.ndim == 1:
        psf_center = (int(psf_center),)
    if not isinstance(psf_center, Sequence) or len(psf_center) != psf.ndim:
        raise InvalidArgumentError(
            f"{fn}: psf_center={psf_center!r} must be one index per PSF axis ({psf.ndim})"
        )
    center = []
    for axis, (c, k) in enumerate(zip(psf_center, psf.shape, strict=True)):
        if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 0 <= c < k:
            raise InvalidArgumentError(
                f"{fn}: psf_center[{axis}]={c!r} must be an integer in 0..{k - 1}"
            )
        center.append(int(c))
    return tuple(center)


def _prepare(
    fn: str, image: Any, psf: Any, boundary: str, psf_center: Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], tuple[slice, ...]]:
    """The (extended) image, the PSF, its centre and the slice that crops the result back."""
    img = _data(fn, "image", image)
    h = _data(fn, "psf", psf).astype(img.dtype, copy=False)
    if h.ndim != img.ndim:
        raise InvalidArgumentError(
            f"{fn}: psf must have as many dims as the image ({img.ndim}), got shape {h.shape}"
        )
    if not isinstance(boundary, str) or boundary not in BOUNDARIES:
        raise InvalidArgumentError(
            f"{fn}: boundary={boundary!r} must be one of {', '.join(map(repr, BOUNDARIES))}"
        )
    for axis, (k, n) in enumerate(zip(h.shape, img.shape, strict=True)):
        if k > n:
            raise InvalidArgumentError(
                f"{fn}: psf size {k} on axis {axis} must be <= the image size {n} (psf shape "
                f"{h.shape}, image shape {img.shape})"
            )
    if not np.any(h):
        raise InvalidArgumentError(f"{fn}: psf is all zeros; it blurs everything to nothing")
    center = _center(fn, h, psf_center)
    crop = tuple(slice(0, n) for n in img.shape)
    if boundary == "symmetric":
        crop = tuple(slice(k, k + n) for k, n in zip(h.shape, img.shape, strict=True))
        img = np.pad(img, [(k, k) for k in h.shape], mode="symmetric")
    return img, h, center, crop


def _transfer(h: np.ndarray, shape: tuple[int, ...], center: tuple[int, ...]) -> np.ndarray:
    """The PSF's transfer function on a grid of ``shape``: origin at ``center``, periodic."""
    padded = np.zeros(shape, dtype=h.dtype)
    padded[tuple(slice(0, k) for k in h.shape)] = h
    padded = np.roll(padded, tuple(-c for c in center), axis=tuple(range(h.ndim)))
    return np.fft.rfftn(padded)


def wiener_deconvolve(
    image: Any,
    psf: Any,
    *,
    nsr: float,
    boundary: str = "periodic",
    psf_center: Sequence[int] | None = None,
) -> np.ndarray:
    """Wiener deconvolution: ``X = conj(H) Y / (|H|^2 + nsr)`` in the Fourier domain.

    Assumes ``image = psf (*) x + noise`` with a circular (periodic) convolution, the PSF's
    origin at ``psf_center`` (see the module docstring); ``nsr`` is the noise-to-signal power
    ratio, constant over frequencies (``noise variance / signal variance`` for white noise).
    ``nsr = 0`` is the plain inverse filter, except that frequencies the PSF removes entirely
    (``H = 0``) are set to zero instead of dividing by zero.

    Parameters
    ----------
    image : array_like
        The blurred data, 1-D or 2-D, one channel.
    psf : array_like
        The point-spread function, same number of dims, no larger than the image; used as
        given (not normalised).
    nsr : float
        Noise-to-signal power ratio, ``>= 0``; larger values smooth more.
    boundary : {"periodic", "symmetric"}
        "periodic": the image wraps around (exact for a circular blur). "symmetric": the image
        is mirrored by one PSF size on each side first, so non-periodic images do not ring.
    psf_center : sequence of int, optional
        Index of the PSF element at the origin; default ``k // 2`` per axis.

    Returns
    -------
    ndarray
        The restored data, the image's shape; float32 for a float32 image, else float64.

    Raises
    ------
    InvalidArgumentError
        A bad shape, a negative or non-finite ``nsr``, an all-zero PSF, a PSF larger than the
        image, non-finite data, an unknown boundary.
    UnsupportedDtypeError
        Complex or non-numeric data.
    """
    fn = "wiener_deconvolve"
    if isinstance(nsr, bool) or not isinstance(nsr, numbers.Real) or not math.isfinite(nsr):
        raise InvalidArgumentError(f"{fn}: nsr={nsr!r} must be a finite real number")
    if nsr < 0:
        raise InvalidArgumentError(f"{fn}: nsr={nsr!r} must be >= 0")
    img, h, center, crop = _prepare(fn, image, psf, boundary, psf_center)
    H = _transfer(h.astype(np.float64), img.shape, center)
    Y = np.fft.rfftn(img.astype(np.float64))
    denom = np.abs(H) ** 2 + float(nsr)
    with np.errstate(divide="ignore", invalid="ignore"):
        X = np.where(denom > 0, np.conj(H) * Y / np.where(denom > 0, denom, 1.0), 0.0)
    x = np.fft.irfftn(X, s=img.shape, axes=tuple(range(img.ndim)))
    return np.ascontiguousarray(x[crop]).astype(img.dtype, copy=False)


def richardson_lucy(
    image: Any,
    psf: Any,
    *,
    iterations: int,
    epsilon: float = 1e-12,
    clip: bool = True,
    boundary: str = "periodic",
    psf_center: Sequence[int] | None = None,
) -> np.ndarray:
    """Richardson-Lucy deconvolution: ``x <- x * (psf^T (*) (image / (psf (*) x)))``.

    The maximum-likelihood restoration for Poisson noise under ``image = psf (*) x``, a
    circular (periodic) convolution with the PSF's origin at ``psf_center`` (see the module
    docstring). The PSF is normalised to sum 1, so every iterate keeps the image's total flux;
    the start is a flat image of the data's mean, and every iterate is non-negative. More
    iterations sharpen more and amplify more noise (stopping early is the regularisation).

    Parameters
    ----------
    image : array_like
        The blurred data, 1-D or 2-D, one channel, non-negative (see ``clip``).
    psf : array_like
        The point-spread function, non-negative, same number of dims, no larger than the
        image.
    iterations : int
        Number of iterations, ``>= 1``.
    epsilon : float
        Floor ``> 0`` of the re-blurred estimate in the ratio ``image / blurred``, so pixels
        the estimate has driven to zero do not divide by zero.
    clip : bool
        True: negative data values (noise around a zero background) are clipped to 0 first.
        False: negative data values are an error.
    boundary : {"periodic", "symmetric"}
        As for :func:`wiener_deconvolve`.
    psf_center : sequence of int, optional
        Index of the PSF element at the origin; default ``k // 2`` per axis.

    Returns
    -------
    ndarray
        The non-negative restored data, the image's shape; float32 for a float32 image, else
        float64.

    Raises
    ------
    InvalidArgumentError
        A bad shape, ``iterations < 1``, ``epsilon <= 0``, a PSF with negative values or all
        zeros, negative data with ``clip=False``, non-finite data, an unknown boundary.
    UnsupportedDtypeError
        Complex or non-numeric data.
    """
    fn = "richardson_lucy"
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral):
        raise InvalidArgumentError(f"{fn}: iterations={iterations!r} must be an integer")
    if iterations < 1:
        raise InvalidArgumentError(f"{fn}: iterations={iterations!r} must be >= 1")
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, numbers.Real)
        or not math.isfinite(epsilon)
        or epsilon <= 0
    ):
        raise InvalidArgumentError(f"{fn}: epsilon={epsilon!r} must be a finite number > 0")
    img, h, center, crop = _prepare(fn, image, psf, boundary, psf_center)
    if np.any(h < 0):
        raise InvalidArgumentError(
            f"{fn}: psf has negative values (min {float(h.min()):.3g}); Richardson-Lucy needs "
            f"a non-negative PSF"
        )
    data = img.astype(np.float64)
    if data.min() < 0:
        if not clip:
            raise InvalidArgumentError(
                f"{fn}: image has negative values (min {float(data.min()):.3g}) and clip=False; "
                f"Richardson-Lucy needs non-negative data (pass clip=True to clip them to 0)"
            )
        data = np.maximum(data, 0.0)
    h64 = h.astype(np.float64)
    H = _transfer(h64 / h64.sum(), data.shape, center)
    Hc = np.conj(H)
    axes = tuple(range(data.ndim))

    def blur(v: np.ndarray, t: np.ndarray) -> np.ndarray:
        return np.fft.irfftn(np.fft.rfftn(v) * t, s=data.shape, axes=axes)

    estimate = np.full(data.shape, data.mean())
    for _ in range(int(iterations)):
        ratio = data / np.maximum(blur(estimate, H), epsilon)
        estimate *= blur(ratio, Hc)
        np.maximum(estimate, 0.0, out=estimate)  # FFT rounding can dip below zero
    return np.ascontiguousarray(estimate[crop]).astype(img.dtype, copy=False)
