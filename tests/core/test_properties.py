"""Hypothesis properties of the core: the adjoint identity and the bias added after the op.

Adjoint (docs/semantics.md, "Adjoint identity"): with the same weight, stride, padding,
dilation and groups, and ``op = (n + pb + pa - ek) mod s`` (or output_shape = n for the string
modes), ``<conv(y), x> == <y, conv_transpose(x)>`` in float64. Bias: ``op(x, w, b) - op(x, w)`` is
exactly ``b`` broadcast over every output element (integer-valued float64 data makes every sum
exact), including output rows that no input reaches.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deconv_core

from .helpers import assert_matches, run_oracle

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MODES = ("int", "axes", "pairs", "valid", "same", "same_lower")


@st.composite
def geometries(draw):
    """A random conv geometry whose transposed op maps back onto the conv input size n."""
    r = draw(st.integers(1, 3))
    nmax, kmax = {1: (7, 4), 2: (5, 3), 3: (4, 2)}[r]
    mode = draw(st.sampled_from(MODES))
    s = [draw(st.integers(1, 3)) for _ in range(r)]
    d = [draw(st.integers(1, 2)) for _ in range(r)]
    k = [draw(st.integers(1, kmax)) for _ in range(r)]
    n = [draw(st.integers(1, nmax)) for _ in range(r)]
    ek = [da * (ka - 1) + 1 for ka, da in zip(k, d, strict=True)]
    if mode == "valid":  # the dilated kernel must fit in the input
        n = [max(na, e) for na, e in zip(n, ek, strict=True)]
    if mode == "int":
        p = max(draw(st.integers(0, 3)), *(-(-(e - na) // 2) for e, na in zip(ek, n, strict=True)))
        pairs = [(p, p)] * r
        padding = p
    elif mode == "axes":
        pl = [max(draw(st.integers(0, 3)), -(-(e - na) // 2)) for e, na in zip(ek, n, strict=True)]
        pairs, padding = [(p, p) for p in pl], pl
    elif mode == "pairs":
        pairs = []
        for e, na in zip(ek, n, strict=True):
            pb = draw(st.integers(0, 3))
            pa = max(draw(st.integers(0, 3)), e - na - pb)
            pairs.append((pb, pa))
        padding = pairs
    else:
        pairs, padding = None, mode
    g = draw(st.integers(1, 2))
    return {
        "r": r, "n": n, "k": k, "s": s, "d": d, "pairs": pairs, "padding": padding,
        "groups": g, "cig": draw(st.integers(1, 2)), "cog": draw(st.integers(1, 2)),
        "N": draw(st.integers(1, 2)), "channels_last": draw(st.booleans()),
        "tf_weights": draw(st.booleans()),
    }


def _arrays(geo, rng, integer: bool):
    """Conv input y (N, C_in, n), weight (C_out, C_in/g, k), bias for conv (C_out,) and for
    the transposed op (C_in,), channels-first and torch layout."""
    g, cig, cog = geo["groups"], geo["cig"], geo["cog"]

    def draw(*shape):
        if integer:
            return rng.integers(-3, 4, shape).astype(np.float64)
        return rng.standard_normal(shape)

    y = draw(geo["N"], g * cig, *geo["n"])
    w = draw(g * cog, cig, *geo["k"])
    return y, w, draw(g * cog), draw(g * cig)


def _layout_kwargs(geo):
    return {
        "data_format": "channels_last" if geo["channels_last"] else "channels_first",
        "weight_format": "tf" if geo["tf_weights"] else "torch",
    }


def _to_user(a, geo, weight=False):
    """Channels-first data / torch weights -> the layouts named by the geometry."""
    if weight:
        r = a.ndim - 2
        return np.transpose(a, (*range(2, r + 2), 1, 0)) if geo["tf_weights"] else a
    return np.moveaxis(a, 1, -1) if geo["channels_last"] else a


def _from_user(a, geo):
    return np.moveaxis(a, -1, 1) if geo["channels_last"] else a


def _params(geo):
    """conv and conv_transpose kwargs that make conv_transpose the adjoint of conv."""
    common = {"stride": geo["s"], "dilation": geo["d"], "groups": geo["groups"],
              "padding": geo["padding"], **_layout_kwargs(geo)}
    t_extra = {}
    if geo["pairs"] is None:
        t_extra["output_shape"] = list(geo["n"])
    else:
        t_extra["output_padding"] = [
            (na + pb + pa - (da * (ka - 1) + 1)) % sa
            for na, ka, sa, da, (pb, pa) in zip(
                geo["n"], geo["k"], geo["s"], geo["d"], geo["pairs"], strict=True)
        ]
    return common, {**common, **t_extra}


@SETTINGS
@given(geo=geometries(), seed=st.integers(0, 2**32 - 1))
def test_adjoint_identity(geo, seed):
    rng = np.random.default_rng(seed)
    y, w, _, _ = _arrays(geo, rng, integer=False)
    ckw, tkw = _params(geo)
    wu = _to_user(w, geo, weight=True)
    cy = _from_user(deconv_core.conv(_to_user(y, geo), wu, **ckw), geo)
    x = rng.standard_normal(cy.shape)
    tx = _from_user(deconv_core.conv_transpose(_to_user(x, geo), wu, **tkw), geo)
    assert tx.shape == y.shape, (tx.shape, y.shape)
    lhs, rhs = float(np.vdot(cy, x)), float(np.vdot(y, tx))
    scale = float(np.vdot(np.abs(cy), np.abs(x)) + np.vdot(np.abs(y), np.abs(tx))) + 1e-300
    assert abs(lhs - rhs) <= 1e-9 * scale, (lhs, rhs, geo)


@SETTINGS
@given(geo=geometries(), seed=st.integers(0, 2**32 - 1))
def test_bias_is_added_after_every_output_element(geo, seed):
    rng = np.random.default_rng(seed)
    y, w, b_conv, b_t = _arrays(geo, rng, integer=True)
    ckw, tkw = _params(geo)
    wu = _to_user(w, geo, weight=True)
    yu = _to_user(y, geo)
    with_b = _from_user(deconv_core.conv(yu, wu, b_conv, **ckw), geo)
    without = _from_user(deconv_core.conv(yu, wu, **ckw), geo)
    expect = np.broadcast_to(b_conv.reshape((1, -1) + (1,) * geo["r"]), with_b.shape)
    np.testing.assert_array_equal(with_b - without, expect)

    x = rng.integers(-3, 4, without.shape).astype(np.float64)
    xu = _to_user(x, geo)
    with_b = _from_user(deconv_core.conv_transpose(xu, wu, b_t, **tkw), geo)
    without = _from_user(deconv_core.conv_transpose(xu, wu, **tkw), geo)
    expect = np.broadcast_to(b_t.reshape((1, -1) + (1,) * geo["r"]), with_b.shape)
    np.testing.assert_array_equal(with_b - without, expect)


def _label(op, geo):
    return (f"hypothesis-{op}-n{geo['n']}-k{geo['k']}-s{geo['s']}-d{geo['d']}-g{geo['groups']}"
            f"-p{geo['padding']}").replace(" ", "")


@SETTINGS
@given(geo=geometries(), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from(["float32", "float64", "float16"]))
def test_random_geometry_matches_oracle(geo, seed, dtype):
    """Both ops on hypothesis-drawn geometries (incl. output_shape of the string modes)."""
    rng = np.random.default_rng(seed)
    y, w, b_conv, b_t = (a.astype(dtype) for a in _arrays(geo, rng, integer=False))
    ckw, tkw = _params(geo)
    wu, yu = _to_user(w, geo, weight=True), _to_user(y, geo)
    got = deconv_core.conv(yu, wu, b_conv, **ckw)
    ref, bound = run_oracle("conv", yu, wu, b_conv, ckw)
    assert_matches(got, ref, bound, dtype, _label("conv", geo))
    xu = rng.standard_normal(got.shape).astype(dtype)
    got = deconv_core.conv_transpose(xu, wu, b_t, **tkw)
    ref, bound = run_oracle("conv_transpose", xu, wu, b_t, tkw)
    assert_matches(got, ref, bound, dtype, _label("conv_transpose", geo))
