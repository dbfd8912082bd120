"""Goldens from PyTorch 2.13 and TensorFlow (tests/core/golden/, made by make_golden.py).

The oracle must reproduce every golden (this is what makes it a trustworthy reference for the
parametrised tests), and so must deconv_core, in float32 and float64.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import deconv_core

from . import oracle

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.npz"))


def _load(path: Path):
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["params"]))
        b = z["b"] if "b" in z.files else None
        return meta, z["x"], z["w"], b, z["y"]


def _kwargs(meta: dict) -> dict:
    kw = dict(meta["kwargs"])
    if isinstance(kw.get("padding"), list):
        kw["padding"] = [tuple(p) if isinstance(p, list) else p for p in kw["padding"]]
    return kw


def test_golden_set_is_complete():
    names = {p.stem for p in GOLDEN_FILES}
    assert len(names) >= 30
    assert "tf_ct1d_worked_same" in names and "torch_ct1d_worked_port" in names
    sources = {_load(p)[0]["source"].split()[0] for p in GOLDEN_FILES}
    assert sources == {"torch", "tensorflow"}
    assert sum(p.stat().st_size for p in GOLDEN_FILES) < 1_000_000


def test_worked_example_values():
    """docs/semantics.md worked example: TF SAME [1,10,102,20,203,30], the PyTorch port shifted."""
    _, x, w, _, y = _load(GOLDEN_DIR / "tf_ct1d_worked_same.npz")
    assert y.ravel().tolist() == [1, 10, 102, 20, 203, 30]
    _, _, _, _, y = _load(GOLDEN_DIR / "torch_ct1d_worked_port.npz")
    assert y.ravel().tolist() == [10, 102, 20, 203, 30, 300]
    got = deconv_core.conv_transpose(
        x, w, stride=2, padding="same", output_shape=[6],
        data_format="channels_last", weight_format="tf",
    )
    assert got.ravel().tolist() == [1, 10, 102, 20, 203, 30]
    got = deconv_core.conv_transpose(
        np.array([[[1.0, 2, 3]]]), np.array([[[1.0, 10, 100]]]), stride=2, padding="same"
    )
    assert got.ravel().tolist() == [1, 10, 102, 20, 203, 30]


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_oracle_matches_golden(path):
    meta, x, w, b, y = _load(path)
    fn = oracle.conv_transpose if meta["op"] == "conv_transpose" else oracle.conv
    got = fn(x, w, b, **_kwargs(meta))
    assert got.shape == y.shape, meta["call"]
    np.testing.assert_allclose(
        got, y, rtol=1e-12, atol=1e-12 * np.abs(y).max(), err_msg=meta["call"]
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_core_matches_golden(path, dtype):
    meta, x, w, b, y = _load(path)
    fn = getattr(deconv_core, meta["op"])
    bb = None if b is None else b.astype(dtype)
    got = fn(x.astype(dtype), w.astype(dtype), bb, **_kwargs(meta))
    assert got.dtype == dtype
    assert got.shape == y.shape, meta["call"]
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(
        got, y, rtol=rtol, atol=rtol * np.abs(y).max(), err_msg=meta["call"]
    )
