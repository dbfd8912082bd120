"""deconvolve: C^+ (y - b) by CGLS, checked against explicit matrices and exact recoveries.

The explicit matrix of C is built for tiny sizes by applying the numpy oracle's forward op to
every basis vector (``explicit_matrix``), independently of deconv_core; numpy.linalg.lstsq and
the closed-form Tikhonov solution on it are the references.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import deconv_core
from deconv_core import DeconvolveResult, InvalidArgumentError, deconvolve

from . import oracle


def explicit_matrix(op: str, x_shape: tuple[int, ...], w: np.ndarray, **kw) -> np.ndarray:
    """The matrix C (rows: output elements, columns: input elements, C order) of the op.

    Built with the numpy oracle; fill modes and framework conventions, which the oracle does
    not know, with deconv_core's forward op (tested against the frameworks elsewhere).
    """
    if "padding_mode" in kw or "convention" in kw:
        fn = deconv_core.conv_transpose if op == "conv_transpose" else deconv_core.conv
    else:
        fn = oracle.conv_transpose if op == "conv_transpose" else oracle.conv
    size = math.prod(x_shape)
    columns = []
    for i in range(size):
        e = np.zeros(size)
        e[i] = 1.0
        columns.append(fn(e.reshape(x_shape), w, **kw).ravel())
    return np.stack(columns, axis=1)


def _rand(rng, *shape):
    return rng.standard_normal(shape)


def _monotone(history: tuple[float, ...]) -> bool:
    return all(b <= a * (1 + 1e-9) + 1e-12 for a, b in itertools.pairwise(history))


# --------------------------------------------------------------------------- exact recovery


@pytest.mark.parametrize(
    "op, x_shape, w_shape, kw",
    [
        ("conv", (2, 2, 12), (3, 2, 3), {"padding": 1}),
        ("conv", (1, 2, 6, 5), (3, 2, 3, 3), {"padding": "same"}),
        ("conv", (1, 1, 9, 9), (1, 1, 3, 3), {"padding": 2, "dilation": 2}),
        ("conv_transpose", (2, 3, 5, 4), (3, 2, 4, 4), {"stride": 2, "padding": 1}),
        ("conv_transpose", (1, 2, 7), (2, 2, 3), {"stride": 2, "output_padding": 1}),
        ("conv_transpose", (1, 4, 3, 3, 2), (4, 1, 2, 2, 2), {"stride": 2, "groups": 2}),
        ("conv", (1, 2, 8, 7), (3, 2, 3, 3), {"padding": 1, "padding_mode": "reflect"}),
        ("conv_transpose", (1, 2, 5), (2, 1, 3),
         {"stride": 2, "padding": "same", "output_shape": [12], "convention": "onnx"}),
    ],
)
def test_exact_recovery_full_column_rank(op, x_shape, w_shape, kw):
    rng = np.random.default_rng(7)
    x, w = _rand(rng, *x_shape), _rand(rng, *w_shape)
    fwd = deconv_core.conv_transpose if op == "conv_transpose" else deconv_core.conv
    b = _rand(rng, fwd(x, w, **kw).shape[1])
    y = fwd(x, w, b, **kw)
    assert np.linalg.matrix_rank(explicit_matrix(op, x_shape, w, **kw)) == x.size
    res = deconvolve(y, w, b, op=op, input_shape=x_shape, tol=1e-10, max_iter=500, **kw)
    assert isinstance(res, DeconvolveResult)
    assert res.converged and res.stop_reason == "tol"
    assert res.x.shape == x.shape and res.x.dtype == np.float64
    np.testing.assert_allclose(res.x, x, atol=1e-7 * np.abs(x).max())
    assert res.residual_norm <= 1e-8 * np.linalg.norm(y)
    assert len(res.residual_history) == res.iterations + 1
    assert _monotone(res.residual_history)


def test_bias_is_subtracted_before():
    rng = np.random.default_rng(3)
    x, w, b = _rand(rng, 1, 2, 10), _rand(rng, 3, 2, 3), np.array([5.0, -2.0, 1.0])
    y = deconv_core.conv(x, w, b, padding=1)
    got = deconvolve(y, w, b, padding=1, tol=1e-12, max_iter=200)
    np.testing.assert_allclose(got.x, x, atol=1e-8)
    no_bias = deconvolve(y, w, padding=1, tol=1e-12, max_iter=200)
    assert np.abs(no_bias.x - x).max() > 0.1  # y - b is what C produced, not y


def test_layouts_and_float32():
    rng = np.random.default_rng(4)
    x = _rand(rng, 2, 6, 5, 2).astype(np.float32)  # NHWC
    w = _rand(rng, 3, 3, 2, 3).astype(np.float32)  # (k, k, C_in, C_out)
    b = _rand(rng, 3).astype(np.float32)
    kw = {"padding": 1, "data_format": "channels_last", "weight_format": "tf"}
    y = deconv_core.conv(x, w, b, **kw)
    res = deconvolve(y, w, b, tol=1e-9, max_iter=300, **kw)
    assert res.x.dtype == np.float32 and res.x.shape == x.shape
    np.testing.assert_allclose(res.x, x, atol=1e-4)


def test_input_shape_derived_when_unique():
    rng = np.random.default_rng(5)
    w = _rand(rng, 2, 1, 3)
    x = _rand(rng, 1, 1, 7)
    y = deconv_core.conv(x, w, padding=1)
    assert deconvolve(y, w, padding=1, max_iter=3).x.shape == (1, 1, 7)
    wt = _rand(rng, 1, 2, 3)
    yt = deconv_core.conv_transpose(x, wt, stride=2, padding="same")
    assert deconvolve(yt, wt, op="conv_transpose", stride=2, padding="same",
                      max_iter=3).x.shape == (1, 1, 7)
    yo = deconv_core.conv_transpose(x, wt, stride=2, output_padding=1)
    assert deconvolve(yo, wt, op="conv_transpose", stride=2, output_padding=1,
                      max_iter=3).x.shape == (1, 1, 7)


# --------------------------------------------------------------------------- vs explicit C


LSTSQ_CASES = [
    # stride 2 conv: 3 equations, 7 unknowns (the worked example's C)
    ("conv", (1, 1, 7), np.array([[[1.0, 10, 100]]]), {"stride": 2}),
    # kernel shorter than the stride: C has zero columns
    ("conv", (1, 2, 9), None, {"stride": 3, "padding": 0, "w_shape": (2, 2, 2)}),
    ("conv", (1, 2, 5, 4), None, {"stride": 2, "padding": "same", "w_shape": (3, 2, 3, 2)}),
    ("conv", (1, 4, 5), None, {"stride": 2, "groups": 2, "w_shape": (2, 2, 3)}),
    # cropped transposed conv: more unknowns than the window shows
    ("conv_transpose", (1, 2, 4), None, {"stride": 2, "padding": 2, "w_shape": (2, 1, 3)}),
    ("conv_transpose", (1, 1, 3, 3), None,
     {"stride": 3, "padding": "same", "output_shape": [7, 8], "w_shape": (1, 2, 2, 2)}),
    # a fill: C = C0 P, its adjoint folds the wrapped border back
    ("conv", (1, 1, 6, 5), None,
     {"stride": 2, "padding": 1, "padding_mode": "circular", "w_shape": (1, 1, 3, 3)}),
]


def _lstsq_problem(op, x_shape, w, kw, seed=11):
    rng = np.random.default_rng(seed)
    kw = dict(kw)
    w_shape = kw.pop("w_shape", None)
    if w is None:
        w = _rand(rng, *w_shape)
    C = explicit_matrix(op, x_shape, w, **kw)
    y = _rand(rng, C.shape[0]).reshape(
        (deconv_core.conv_transpose if op == "conv_transpose" else deconv_core.conv)(
            np.zeros(x_shape), w, **kw).shape)
    return w, kw, C, y


@pytest.mark.parametrize("op, x_shape, w, kw", LSTSQ_CASES)
def test_agrees_with_lstsq(op, x_shape, w, kw):
    w, kw, C, y = _lstsq_problem(op, x_shape, w, kw)
    ref = np.linalg.lstsq(C, y.ravel(), rcond=None)[0]  # minimum-norm least squares
    res = deconvolve(y, w, op=op, input_shape=x_shape, tol=1e-12, max_iter=500, **kw)
    assert res.converged
    np.testing.assert_allclose(res.x.ravel(), ref, atol=1e-8 * max(1.0, np.abs(ref).max()))
    assert res.residual_norm == pytest.approx(np.linalg.norm(C @ ref - y.ravel()), abs=1e-8)
    assert _monotone(res.residual_history)


@pytest.mark.parametrize("damping", [1e-3, 0.1, 10.0])
@pytest.mark.parametrize("op, x_shape, w, kw", LSTSQ_CASES[:3] + LSTSQ_CASES[4:])
def test_damping_converges_to_tikhonov(op, x_shape, w, kw, damping):
    w, kw, C, y = _lstsq_problem(op, x_shape, w, kw, seed=12)
    n = C.shape[1]
    ref = np.linalg.solve(C.T @ C + damping * np.eye(n), C.T @ y.ravel())
    res = deconvolve(y, w, op=op, input_shape=x_shape, damping=damping, tol=1e-10,
                     max_iter=4 * n, **kw)
    assert res.converged, res.residual_history
    np.testing.assert_allclose(res.x.ravel(), ref, atol=1e-7 * max(1.0, np.abs(ref).max()))
    objective = np.linalg.norm(C @ ref - y.ravel()) ** 2 + damping * ref @ ref
    assert res.residual_norm == pytest.approx(math.sqrt(objective), rel=1e-7)
    assert _monotone(res.residual_history)


def test_stride2_transpose_is_not_the_inverse():
    """The worked example: C^T C is not the identity, so C^T y is not x; C^+ on a consistent
    y from a full-column-rank C (the transposed conv) recovers x exactly."""
    w = np.array([[[1.0, 10, 100]]])
    C = explicit_matrix("conv", (1, 1, 7), w, stride=2)
    assert not np.allclose(C.T @ C, np.eye(7))
    x = np.array([[[1.0, 2, 3]]])
    z = deconv_core.conv_transpose(x, w, 5.0 * np.ones(1), stride=2)  # C^T x + b
    assert z.ravel().tolist() == [6, 15, 107, 25, 208, 35, 305]
    res = deconvolve(z, w, np.array([5.0]), op="conv_transpose", stride=2, tol=1e-12)
    np.testing.assert_allclose(res.x.ravel(), [1, 2, 3], atol=1e-10)
    # The conv side of docs/operators.md: y = C u + b, C^T (y - b) and C^+ (y - b).
    u = np.arange(1.0, 8).reshape(1, 1, 7)
    y = deconv_core.conv(u, w, np.array([5.0]), stride=2)
    assert y.ravel().tolist() == [326, 548, 770]
    back = deconv_core.conv_transpose(y - 5, w, stride=2)
    assert back.ravel().tolist() == [321, 3210, 32643, 5430, 55065, 7650, 76500]
    inv = deconvolve(y, w, np.array([5.0]), stride=2, input_shape=(1, 1, 7), tol=1e-12)
    np.testing.assert_allclose(inv.x.ravel(), np.linalg.pinv(C) @ (y.ravel() - 5), atol=1e-10)
    np.testing.assert_allclose(np.round(inv.x.ravel(), 4),
                               [0.0313, 0.3126, 3.1784, 0.5270, 5.3455, 0.7521, 7.5213])
    assert np.linalg.matrix_rank(C.T @ C) == 3


# --------------------------------------------------------------------------- stopping


def test_max_iter_and_callback():
    rng = np.random.default_rng(8)
    x, w = _rand(rng, 1, 1, 40), _rand(rng, 1, 1, 5)
    y = deconv_core.conv(x, w, padding=2)
    seen = []
    res = deconvolve(y, w, padding=2, tol=1e-14, max_iter=4,
                     callback=lambda it, r: seen.append((it, r)))
    assert res.iterations == 4 and not res.converged and res.stop_reason == "max_iter"
    assert seen == list(enumerate(res.residual_history[1:], start=1))
    stop = deconvolve(y, w, padding=2, tol=1e-14, max_iter=50, callback=lambda it, r: it < 2)
    assert stop.iterations == 2 and stop.stop_reason == "callback" and not stop.converged
    np.testing.assert_array_equal(stop.residual_history, res.residual_history[:3])

    class CancelledError(Exception):
        pass

    def cancel(it, r):
        raise CancelledError

    with pytest.raises(CancelledError):
        deconvolve(y, w, padding=2, callback=cancel)


def test_zero_data_is_solved_by_zero():
    w = np.ones((1, 1, 3))
    res = deconvolve(np.zeros((1, 1, 5)), w, padding=1)
    assert res.iterations == 0 and res.converged and res.stop_reason == "zero"
    assert not res.x.any()


# --------------------------------------------------------------------------- errors

Y, W = np.ones((1, 1, 4)), np.ones((1, 1, 3))


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"damping": -1.0}, "deconvolve: damping=-1.0 must be >= 0"),
        ({"damping": float("nan")}, "deconvolve: damping=nan must be finite"),
        ({"max_iter": 0}, "deconvolve: max_iter=0 must be >= 1"),
        ({"max_iter": 2.5}, "deconvolve: max_iter=2.5 must be an integer"),
        ({"max_iter": True}, "deconvolve: max_iter=True must be an integer"),
        ({"tol": 0}, "deconvolve: tol=0 must be > 0"),
        ({"tol": -1e-3}, "deconvolve: tol=-0.001 must be > 0"),
        ({"tol": "small"}, "deconvolve: tol='small' must be a real number"),
        ({"op": "deconv"}, "deconvolve: op='deconv' must be one of 'conv', 'conv_transpose'"),
        ({"callback": 3}, "deconvolve: callback=3 must be callable or None"),
        ({"output_padding": 1}, "apply to op='conv_transpose' only"),
        ({"convention": "onnx"}, "deconvolve: convention='onnx' applies to op='conv_transpose'"),
        ({"op": "conv_transpose", "padding_mode": "reflect"},
         "deconvolve: padding_mode='reflect' applies to op='conv' only"),
        ({"input_shape": (1, 1, 9)}, "deconvolve: y shape (1, 1, 4) must equal the output "
                                     "shape (1, 1, 7) that conv gives for input_shape (1, 1, 9)"),
        ({"input_shape": "abc"}, "must be a sequence of ints"),
        ({"stride": 0, "input_shape": (1, 1, 6)}, "deconvolve: conv: stride=0 must be >= 1"),
    ],
)
def test_bad_parameters(kwargs, text):
    with pytest.raises(InvalidArgumentError) as info:
        deconvolve(Y, W, **kwargs)
    assert text in str(info.value)


def test_bad_data():
    with pytest.raises(InvalidArgumentError, match="deconvolve: weight is all zeros"):
        deconvolve(Y, np.zeros((1, 1, 3)))
    with pytest.raises(InvalidArgumentError, match="deconvolve: y has non-finite values"):
        deconvolve(np.array([[[1.0, np.nan, 0, 0]]]), W)
    with pytest.raises(InvalidArgumentError, match=r"deconvolve: conv: bias shape \(2,\)"):
        deconvolve(Y, W, np.ones(2), input_shape=(1, 1, 6))
    with pytest.raises(deconv_core.UnsupportedDtypeError, match="deconvolve: conv: weight"):
        deconvolve(Y, W.astype(np.float32), input_shape=(1, 1, 6))


def test_ambiguous_input_shape():
    with pytest.raises(InvalidArgumentError) as info:
        deconvolve(np.ones((1, 1, 4)), W, stride=2)
    msg = str(info.value)
    assert "input_shape is ambiguous" in msg and "sizes 9..10" in msg and "pass input_shape" in msg
