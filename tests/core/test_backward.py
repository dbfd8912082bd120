"""Gradients of conv and conv_transpose: torch.autograd goldens and the adjoint identities.

* Goldens (tests/core/golden/backward/, made by make_golden_backward.py): every case's three
  gradients match torch's, in float64 (to rounding) and in float32, with the error bounded
  element-wise by the sum of the magnitudes of its terms (as in helpers.assert_matches).
* Adjoint identities, a hypothesis property against the numpy oracle's forward ops: for random
  geometries (every padding form, output_padding/output_shape, groups, both layouts, both
  weight formats) and integer-valued float64 data (so every sum is exact),
  ``<g, F(dx, w)> == <grad_input, dx>``, ``<g, F(x, dw)> == <grad_weight, dw>`` and
  ``<g, F(0, 0, db)> == <grad_bias, db>`` where F is the oracle's forward op.
* Errors: grad_output of the wrong shape or dtype, bad ``need``, bad forward parameters.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deconv_core
from deconv_core import conv_backward, conv_transpose_backward

from . import oracle
from .helpers import REL_TOL

GOLDEN_DIR = Path(__file__).resolve().parent / "golden" / "backward"
GOLDEN_FILES = sorted(GOLDEN_DIR.glob("bwd_*.npz"))
SETTINGS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _load(path: Path):
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["params"]))
        return meta, z["x"], z["w"], z["g"], (z["gi"], z["gw"], z["gb"])


def _kwargs(meta: dict) -> dict:
    kw = dict(meta["kwargs"])
    if isinstance(kw.get("padding"), list):
        kw["padding"] = [tuple(p) if isinstance(p, list) else p for p in kw["padding"]]
    return kw


def _backward(op: str):
    return conv_transpose_backward if op == "conv_transpose" else conv_backward


def test_golden_set():
    metas = [_load(p)[0] for p in GOLDEN_FILES]
    assert len(metas) >= 28
    assert {m["op"] for m in metas} == {"conv", "conv_transpose"}
    kinds = {str(m["kwargs"].get("padding")) for m in metas}
    assert {"same", "same_lower", "valid"} <= kinds
    assert any(m["kwargs"].get("data_format") == "channels_last" for m in metas)
    assert any(m["kwargs"].get("weight_format") == "tf" for m in metas)
    assert any("output_shape" in m["kwargs"] for m in metas)
    fills = {m["kwargs"].get("padding_mode", "zeros") for m in metas}
    assert fills == {"zeros", "reflect", "replicate", "circular"}
    conventions = {m["kwargs"].get("convention", "default") for m in metas}
    assert conventions == {"default", "keras", "onnx", "onnxruntime"}
    assert all(m["source"].startswith("torch ") for m in metas)
    assert sum(p.stat().st_size for p in GOLDEN_FILES) < 300_000


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("path", GOLDEN_FILES, ids=[p.stem for p in GOLDEN_FILES])
def test_golden(path, dtype):
    meta, x, w, g, refs = _load(path)
    kw = _kwargs(meta)
    fn = _backward(meta["op"])
    got = fn(g.astype(dtype), x.astype(dtype), w.astype(dtype), **kw)
    # Term-magnitude bound of each gradient element: the same sums over |g|, |x|, |w|.
    bounds = fn(np.abs(g).astype(np.float64), np.abs(x).astype(np.float64),
                np.abs(w).astype(np.float64), **kw)
    for name, value, ref, bound in zip(("input", "weight", "bias"), got, refs, bounds,
                                       strict=True):
        assert value.dtype == dtype, f"{path.stem} grad_{name} dtype {value.dtype}"
        assert value.shape == ref.shape, f"{path.stem} grad_{name} shape {value.shape}"
        err = np.abs(value.astype(np.float64) - ref)
        allowed = REL_TOL[np.dtype(dtype)] * bound + 1e-300
        bad = err > allowed
        assert not bad.any(), (
            f"{path.stem} grad_{name}: {int(bad.sum())}/{bad.size} elements off, max abs err "
            f"{err.max():.3g}"
        )


def test_worked_example_gradient():
    """y = SAME conv_transpose of [1, 2, 3] by [1, 10, 100], stride 2 (docs/semantics.md):
    y[j] = full[j] for j < 6, full[2i + t] = x[i] w[t], so dL/dx[i] = sum_t g[2i + t] w[t]."""
    x = np.array([[[1.0, 2, 3]]])
    w = np.array([[[1.0, 10, 100]]])
    g = np.array([[[1.0, 0, 0, 0, 0, 1]]])
    gi, gw, gb = conv_transpose_backward(g, x, w, stride=2, padding="same")
    assert gi.ravel().tolist() == [1.0, 0.0, 10.0]  # g[0]*w[0]; g[5] = full[5] = x[2]*w[1]
    assert gw.ravel().tolist() == [1.0, 3.0, 0.0]  # x[0]*g[0]; x[2]*g[5]
    assert gb.tolist() == [2.0]


@pytest.mark.parametrize(
    "op, x_shape, w_shape, kw",
    [
        ("conv", (2, 3, 7, 6), (4, 3, 3, 3), {"stride": 2, "padding": 2,
                                              "padding_mode": "reflect"}),
        ("conv", (1, 2, 5), (2, 2, 4), {"padding": [(3, 1)], "padding_mode": "replicate"}),
        ("conv", (1, 4, 4, 5), (4, 2, 3, 3), {"padding": "same", "dilation": 2, "groups": 2,
                                              "padding_mode": "circular"}),
        ("conv", (2, 3, 5, 3, 2), (2, 2, 2, 3, 3), {"stride": [2, 1, 1], "padding": 1,
                                                    "padding_mode": "reflect",
                                                    "data_format": "channels_last"}),
        ("conv_transpose", (2, 3, 5), (3, 2, 3), {"stride": 2, "padding": "same",
                                                  "output_shape": [12], "convention": "onnx"}),
        ("conv_transpose", (1, 2, 3, 4), (2, 2, 2, 3), {"stride": 3, "padding": "valid",
                                                        "convention": "keras"}),
        ("conv_transpose", (1, 2, 3, 3), (2, 3, 3, 3), {"stride": 2, "padding": "same",
                                                        "output_shape": [7, 6],
                                                        "convention": "onnxruntime"}),
    ],
)
def test_adjoint_identities_fills_and_conventions(op, x_shape, w_shape, kw):
    """The identities of the property test below, with deconv_core's own forward op (the
    oracle has no fill modes or conventions; the forward ops have goldens of their own)."""
    forward = deconv_core.conv_transpose if op == "conv_transpose" else deconv_core.conv
    rng = np.random.default_rng(5)
    x, w, dx, dw = (_ints(rng, s) for s in (x_shape, w_shape, x_shape, w_shape))
    g = _ints(rng, forward(x, w, **kw).shape)
    gi, gw, gb = _backward(op)(g, x, w, **kw)
    assert np.vdot(g, forward(dx, w, **kw)) == np.vdot(gi, dx)
    assert np.vdot(g, forward(x, dw, **kw)) == np.vdot(gw, dw)
    channels = gb.shape[0]
    db = _ints(rng, (channels,))
    assert np.vdot(g, forward(0 * x, 0 * w, db, **kw)) == np.vdot(gb, db)


def test_empty_batch():
    x, w = np.ones((0, 2, 5)), np.ones((3, 2, 3))
    gi, gw, gb = conv_backward(np.ones((0, 3, 3)), x, w)
    assert gi.shape == x.shape and not gw.any() and gw.shape == w.shape and not gb.any()
    wt = np.ones((2, 3, 3))
    gi, gw, gb = conv_transpose_backward(np.ones((0, 3, 11)), x, wt, stride=2)
    assert gi.shape == x.shape and gw.shape == wt.shape and not gw.any() and not gb.any()


def test_need_selects():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 6)), rng.standard_normal((3, 2, 3))
    g = rng.standard_normal((1, 3, 4))
    full = conv_backward(g, x, w)
    assert isinstance(full, deconv_core.Gradients)
    only_w = conv_backward(g, x, w, need=("weight",))
    assert only_w.grad_input is None and only_w.grad_bias is None
    np.testing.assert_array_equal(only_w.grad_weight, full.grad_weight)
    gi, gw, gb = conv_backward(g, x, w, need="input")
    np.testing.assert_array_equal(gi, full.grad_input)
    assert gw is None and gb is None


def test_explicit_padding_object():
    """ExplicitPadding (the wire's form) gives the gradients of the equivalent pairs."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal((2, 3, 3, 2))
    pairs = [(2, 0), (1, 1)]
    kw = {"stride": 2, "output_padding": [1, 0]}
    g = rng.standard_normal(deconv_core.conv_transpose(x, w, padding=pairs, **kw).shape)
    ref = conv_transpose_backward(g, x, w, padding=pairs, **kw)
    got = conv_transpose_backward(
        g, x, w, padding=deconv_core.ExplicitPadding(before=[2, 1], after=[0, 1]), **kw
    )
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a, b)


def test_float16_computed_in_float32():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float16)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float16)
    g = rng.standard_normal((1, 3, 9, 9)).astype(np.float16)
    got = conv_transpose_backward(g, x, w, stride=2, padding=1)
    ref = conv_transpose_backward(*(a.astype(np.float32) for a in (g, x, w)), stride=2, padding=1)
    for a, b in zip(got, ref, strict=True):
        assert a.dtype == np.float16
        np.testing.assert_allclose(a.astype(np.float32), b, rtol=2e-3, atol=2e-2)


def test_zero_gradient_when_no_input_reaches_the_window():
    """The crop starts past the end of the full result: the output is bias only."""
    x, w = np.ones((1, 2, 1)), np.ones((2, 1, 1))
    g = np.ones((1, 1, 1))
    gi, gw, gb = conv_transpose_backward(g, x, w, stride=3, padding=1, output_padding=2)
    assert gi.shape == x.shape and not gi.any()
    assert gw.shape == w.shape and not gw.any()
    assert gb.tolist() == [1.0]


# --------------------------------------------------------------------------- errors


def test_grad_output_shape_is_checked():
    x, w = np.ones((2, 3, 8)), np.ones((4, 3, 3))
    with pytest.raises(deconv_core.InvalidArgumentError) as info:
        conv_backward(np.ones((2, 4, 5)), x, w, stride=2)
    msg = str(info.value)
    assert msg.startswith("conv_backward: grad_output shape (2, 4, 5)")
    assert "forward output shape (2, 4, 3)" in msg
    with pytest.raises(deconv_core.InvalidArgumentError, match="conv_transpose_backward: grad_"):
        conv_transpose_backward(np.ones((2, 3, 8)), np.ones((2, 4, 3)), w, stride=2)


def test_grad_output_dtype_is_checked():
    x, w = np.ones((1, 1, 4)), np.ones((1, 1, 2))
    with pytest.raises(deconv_core.UnsupportedDtypeError, match="grad_output dtype float32"):
        conv_backward(np.ones((1, 1, 3), np.float32), x, w)


@pytest.mark.parametrize(
    "need, text",
    [(("input", "grad"), "'grad'"), ((), "is empty"), (3, "must be a sequence")],
)
def test_bad_need(need, text):
    with pytest.raises(deconv_core.InvalidArgumentError, match=text):
        conv_backward(np.ones((1, 1, 3)), np.ones((1, 1, 4)), np.ones((1, 1, 2)), need=need)


def test_forward_rule_errors_name_the_backward():
    x, w = np.ones((1, 2, 4)), np.ones((2, 2, 2))
    with pytest.raises(deconv_core.InvalidArgumentError) as info:
        conv_backward(np.ones((1, 2, 3)), x, w, stride=0)
    assert str(info.value) == "conv_backward: conv: stride=0 must be >= 1"
    with pytest.raises(deconv_core.InvalidArgumentError, match="conv_transpose_backward: "
                       "conv_transpose: output_padding"):
        conv_transpose_backward(np.ones((1, 2, 5)), x, w, output_padding=1)
    with pytest.raises(deconv_core.UnsupportedDtypeError, match="conv_backward: conv: weight"):
        conv_backward(np.ones((1, 2, 3)), x, w.astype(np.float32))


# --------------------------------------------------------------------------- adjoint property

MODES = ("int", "axes", "pairs", "valid", "same", "same_lower")


@st.composite
def problems(draw):
    """A forward call (op, kwargs) with small random shapes and every parameter form."""
    op = draw(st.sampled_from(("conv", "conv_transpose")))
    r = draw(st.integers(1, 3))
    nmax, kmax = {1: (7, 4), 2: (5, 3), 3: (3, 2)}[r]
    mode = draw(st.sampled_from(MODES))
    s = [draw(st.integers(1, 3)) for _ in range(r)]
    d = [draw(st.integers(1, 2)) for _ in range(r)]
    k = [draw(st.integers(1, kmax)) for _ in range(r)]
    n = [draw(st.integers(1, nmax)) for _ in range(r)]
    ek = [da * (ka - 1) + 1 for ka, da in zip(k, d, strict=True)]
    kw: dict = {"stride": s, "dilation": d}
    if op == "conv":
        if mode == "valid":
            n = [max(na, e) for na, e in zip(n, ek, strict=True)]
            kw["padding"] = "valid"
        elif mode in ("same", "same_lower"):
            kw["padding"] = mode
        else:  # pads large enough for one output element on every axis
            pairs = []
            for e, na in zip(ek, n, strict=True):
                pb = draw(st.integers(0, 3))
                pairs.append((pb, max(draw(st.integers(0, 3)), e - na - pb)))
            if mode == "pairs":
                kw["padding"] = pairs
            else:
                kw["padding"] = [max(p) for p in pairs]
                if mode == "int":
                    kw["padding"] = max(kw["padding"])
    else:
        full = [(na - 1) * sa + e for na, sa, e in zip(n, s, ek, strict=True)]
        if mode in ("same", "same_lower", "valid"):
            kw["padding"] = mode
            if draw(st.booleans()):
                lo_hi = [
                    ((na - 1) * sa + 1, na * sa) if mode != "valid" else (L, L + sa - 1)
                    for na, sa, L in zip(n, s, full, strict=True)
                ]
                kw["output_shape"] = [draw(st.integers(lo, hi)) for lo, hi in lo_hi]
        else:
            pairs, extra = [], []
            for L, sa, da in zip(full, s, d, strict=True):
                e = draw(st.integers(0, max(sa, da) - 1))
                pb, pa = draw(st.integers(0, 3)), draw(st.integers(0, 3))
                while L - pb - pa + e < 1:
                    pb, pa = (pb - 1, pa) if pb >= pa else (pb, pa - 1)
                pairs.append((pb, pa))
                extra.append(e)
            if mode == "pairs":
                kw["padding"] = pairs
            else:
                sym = [min(pb, pa) for pb, pa in pairs]
                kw["padding"] = sym if mode == "axes" else min(sym)
            if draw(st.booleans()):
                kw["output_padding"] = extra
            else:
                pads = kw["padding"]
                pp = ([(pads, pads)] * r if isinstance(pads, int) else
                      [(p, p) if isinstance(p, int) else p for p in pads])
                kw["output_shape"] = [L - pb - pa + e for L, (pb, pa), e in
                                      zip(full, pp, extra, strict=True)]
    g, cig, cog = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    batch = draw(st.integers(1, 2))
    kw["groups"] = g
    if op == "conv":
        x_shape, w_shape = (batch, g * cig, *n), (g * cog, cig, *k)
    else:
        x_shape, w_shape = (batch, g * cig, *n), (g * cig, cog, *k)
    if draw(st.booleans()):
        kw["data_format"] = "channels_last"
        x_shape = (x_shape[0], *x_shape[2:], x_shape[1])
    if draw(st.booleans()):
        kw["weight_format"] = "tf"
        w_shape = (*w_shape[2:], w_shape[1], w_shape[0])
    return op, kw, x_shape, w_shape, draw(st.integers(0, 2**32 - 1))


def _ints(rng, shape):
    return rng.integers(-3, 4, shape).astype(np.float64)


@SETTINGS
@given(problems())
def test_adjoint_identities(problem):
    op, kw, x_shape, w_shape, seed = problem
    forward = oracle.conv_transpose if op == "conv_transpose" else oracle.conv
    rng = np.random.default_rng(seed)
    x, w, dx, dw = (_ints(rng, s) for s in (x_shape, w_shape, x_shape, w_shape))
    y = forward(x, w, **kw)
    channels = y.shape[-1] if kw.get("data_format") == "channels_last" else y.shape[1]
    g, db = _ints(rng, y.shape), _ints(rng, (channels,))
    gi, gw, gb = _backward(op)(g, x, w, **kw)
    assert gi.shape == x.shape and gw.shape == w.shape and gb.shape == (channels,)
    assert np.vdot(g, forward(dx, w, **kw)) == np.vdot(gi, dx)
    assert np.vdot(g, forward(x, dw, **kw)) == np.vdot(gw, dw)
    assert np.vdot(g, forward(0 * x, 0 * w, db, **kw)) == np.vdot(gb, db)


# --------------------------------------------------------------------------- benchmark script


def test_bench_backward_smoke(monkeypatch):
    """bench/backward.py runs a tiny case (without torch) and a tiny recovery."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not installed
    from bench import backward as bench_backward
    from bench.cases import Case

    monkeypatch.setattr(bench_backward, "_torch", lambda: None)
    case = Case("X1", "conv", (1, 2, 6, 6), (3, 2, 3, 3), stride=2, padding=1)
    row = bench_backward.run_case(case, repeat=1, parts=True)
    assert set(row["ms"]) == {"deconv_fwd", "deconv_bwd", "deconv_bwd_input",
                              "deconv_bwd_weight"}
    report = bench_backward.recovery(n=24, k=3, sigma=1.0, max_iter=3)
    errors = {r["method"]: r["error"] for r in report["rows"]}
    assert len(errors) == len(report["rows"]) and all(math.isfinite(e) for e in errors.values())
