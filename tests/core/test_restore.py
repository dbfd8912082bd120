"""Wiener and Richardson-Lucy restorations on synthetic blurred data with known truth.

The blur here is built independently of deconv_core.restore: a sum of shifted copies
(``numpy.roll``) weighted by the PSF, i.e. the circular true convolution the restorations
assume, with the PSF's origin at its centre. Errors are relative L2 errors against the truth;
the bounds below are the measured values (in the comments) with some margin.
"""

from __future__ import annotations

import numpy as np
import pytest

from deconv_core import InvalidArgumentError, UnsupportedDtypeError
from deconv_core import richardson_lucy as rl
from deconv_core import wiener_deconvolve as wiener


def scene(n: int = 64) -> np.ndarray:
    """Rectangles and a Gaussian blob on a 0.1 background (positive, sharp edges)."""
    yy, xx = np.mgrid[:n, :n]
    img = np.full((n, n), 0.1)
    img[10:30, 12:40] += 1.0
    img += 0.8 * np.exp(-((yy - 45) ** 2 + (xx - 45) ** 2) / 30.0)
    img[50:55, 5:20] += 0.5
    return img


def gaussian_psf(k: int, sigma: float) -> np.ndarray:
    t = np.arange(k) - k // 2
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def circular_blur(img: np.ndarray, psf: np.ndarray, center=None) -> np.ndarray:
    """``sum_t psf[t] * x[i - (t - center)]`` with wrap-around."""
    center = [k // 2 for k in psf.shape] if center is None else center
    out = np.zeros_like(img, dtype=np.float64)
    axes = tuple(range(img.ndim))
    for idx in np.ndindex(psf.shape):
        shift = tuple(i - c for i, c in zip(idx, center, strict=True))
        out += psf[idx] * np.roll(img, shift, axis=axes)
    return out


def rel_err(a: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(a - truth) / np.linalg.norm(truth))


@pytest.fixture(scope="module")
def blurred():
    img, psf = scene(), gaussian_psf(7, 1.2)
    clean = circular_blur(img, psf)
    noisy = clean + 0.005 * np.random.default_rng(0).standard_normal(clean.shape)
    return img, psf, clean, noisy


def test_wiener_noise_free(blurred):
    img, psf, clean, _ = blurred
    assert rel_err(clean, img) > 0.17  # measured 0.182
    assert rel_err(wiener(clean, psf, nsr=1e-6), img) < 0.06  # measured 0.045


def test_wiener_noisy(blurred):
    img, psf, _, noisy = blurred
    before = rel_err(noisy, img)  # 0.181
    after = rel_err(wiener(noisy, psf, nsr=1e-2), img)  # 0.124
    assert after < 0.14 and after < 0.75 * before
    # Too small an nsr amplifies the noise: the regularisation matters.
    assert rel_err(wiener(noisy, psf, nsr=1e-6), img) > 1.0  # 2.26


def test_wiener_1d_inverse_filter_is_exact():
    x = np.zeros(127)
    x[20:40], x[70], x[90:110] = 1.0, 3.0, np.linspace(0, 1, 20)
    psf = np.array([1.0, 4, 6, 4, 1]) / 16  # no zero of its transfer function at odd n
    y = circular_blur(x, psf)
    np.testing.assert_allclose(wiener(y, psf, nsr=0.0), x, atol=1e-7)


def test_wiener_float32_and_psf_center():
    x = np.random.default_rng(1).standard_normal((16, 12)).astype(np.float32)
    delta = np.zeros((3, 3), np.float32)
    delta[0, 0] = 1.0
    np.testing.assert_allclose(wiener(x, delta, nsr=0, psf_center=(0, 0)), x, atol=1e-5)
    # Origin at the default centre (1, 1): the delta at (0, 0) shifts by (-1, -1).
    got = wiener(np.roll(x, (-1, -1), axis=(0, 1)), delta, nsr=0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, x, atol=1e-5)


def test_symmetric_boundary_for_non_periodic_data():
    """A ramp is far from periodic: blurring its mirror extension and restoring with the
    symmetric assumption is close to exact, the periodic assumption rings at the edges."""
    yy, xx = np.mgrid[:48, :40]
    img = 0.02 * xx + 0.01 * yy + np.where((yy - 20) ** 2 + (xx - 18) ** 2 < 60, 0.5, 0.0)
    psf = gaussian_psf(5, 1.0)
    k = psf.shape[0]
    ext = np.pad(img, k, mode="symmetric")
    y = circular_blur(ext, psf)[k:-k, k:-k]
    assert rel_err(y, img) > 0.04  # measured 0.049
    sym = rel_err(wiener(y, psf, nsr=1e-6, boundary="symmetric"), img)  # 0.017
    per = rel_err(wiener(y, psf, nsr=1e-6, boundary="periodic"), img)  # 1.67
    assert sym < 0.03 and per > 10 * sym
    assert rel_err(rl(y, psf, iterations=50, boundary="symmetric"), img) < 0.06  # 0.037


def test_richardson_lucy(blurred):
    img, psf, _, noisy = blurred
    before = rel_err(noisy, img)  # 0.181
    e10 = rel_err(rl(noisy, psf, iterations=10), img)  # 0.149
    out = rl(noisy, psf, iterations=100)
    e100 = rel_err(out, img)  # 0.117
    assert e100 < e10 < before and e100 < 0.13
    assert out.min() >= 0.0
    # The normalised PSF keeps the total flux of the (clipped) data.
    assert out.sum() == pytest.approx(np.maximum(noisy, 0).sum(), rel=1e-9)


def test_richardson_lucy_1d_and_clip():
    x = np.zeros(100)
    x[30], x[60:70] = 5.0, 1.0
    psf = np.array([1.0, 2, 3, 2, 1])  # not normalised: RL normalises it
    y = circular_blur(x, psf / psf.sum())
    out = rl(y, psf, iterations=500)
    assert rel_err(out, x) < 0.02 and rel_err(y, x) > 0.6  # measured 0.0025 and 0.65
    y_neg = y - 0.01
    with pytest.raises(InvalidArgumentError, match="image has negative values"):
        rl(y_neg, psf, iterations=3, clip=False)
    assert rl(y_neg, psf, iterations=3).min() >= 0.0
    assert not rl(np.zeros(8), np.ones(3), iterations=2).any()


@pytest.mark.parametrize(
    "call, error, text",
    [
        (lambda: wiener(np.ones(5), np.ones(3), nsr=-1), InvalidArgumentError,
         "wiener_deconvolve: nsr=-1 must be >= 0"),
        (lambda: wiener(np.ones(5), np.ones(3), nsr=float("inf")), InvalidArgumentError,
         "nsr=inf must be a finite real number"),
        (lambda: wiener(np.ones((2, 2, 2)), np.ones((1, 1, 1)), nsr=0), InvalidArgumentError,
         "image must be 1-D or 2-D"),
        (lambda: wiener(np.ones(5), np.ones((3, 3)), nsr=0), InvalidArgumentError,
         "psf must have as many dims as the image (1)"),
        (lambda: wiener(np.ones(5), np.ones(7), nsr=0), InvalidArgumentError,
         "psf size 7 on axis 0 must be <= the image size 5"),
        (lambda: wiener(np.ones(5), np.zeros(3), nsr=0), InvalidArgumentError,
         "psf is all zeros"),
        (lambda: wiener(np.ones(5), np.ones(3), nsr=0, boundary="zero"), InvalidArgumentError,
         "boundary='zero' must be one of 'periodic', 'symmetric'"),
        (lambda: wiener(np.ones(5), np.ones(3), nsr=0, psf_center=(3,)), InvalidArgumentError,
         "psf_center[0]=3 must be an integer in 0..2"),
        (lambda: wiener(np.ones(5) * 1j, np.ones(3), nsr=0), UnsupportedDtypeError,
         "image dtype complex128 is not supported"),
        (lambda: wiener(np.array([1.0, np.inf]), np.ones(1), nsr=0), InvalidArgumentError,
         "image has non-finite values"),
        (lambda: rl(np.ones(5), np.ones(3), iterations=0), InvalidArgumentError,
         "richardson_lucy: iterations=0 must be >= 1"),
        (lambda: rl(np.ones(5), np.ones(3), iterations=2.0), InvalidArgumentError,
         "iterations=2.0 must be an integer"),
        (lambda: rl(np.ones(5), np.ones(3), iterations=1, epsilon=0), InvalidArgumentError,
         "epsilon=0 must be a finite number > 0"),
        (lambda: rl(np.ones(5), np.array([1.0, -1, 1]), iterations=1), InvalidArgumentError,
         "psf has negative values"),
    ],
)
def test_errors(call, error, text):
    with pytest.raises(error) as info:
        call()
    assert text in str(info.value)
