"""padding_mode, convention, empty batches and imported layers over the wire (and the CLI)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from deconv_client import AsyncClient, Client, layers

import deconv_core

GOLDEN = Path(__file__).resolve().parents[1] / "core" / "golden_conventions"
sys.path.insert(0, str(GOLDEN.parents[2]))
from tests.core.test_conventions import layer_of, load  # noqa: E402

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_padding_mode_travels(client: Client, mode: str) -> None:
    x, w = RNG.standard_normal((1, 2, 5, 6)), RNG.standard_normal((3, 2, 3, 3))
    kw = {"stride": 2, "padding": (2, 1), "padding_mode": mode}
    np.testing.assert_allclose(client.conv(x, w, **kw), deconv_core.conv(x, w, **kw), 1e-12)


@pytest.mark.parametrize("convention", ["default", "keras", "onnx", "onnxruntime"])
def test_convention_travels_and_sizes_are_exact(client: Client, convention: str) -> None:
    x, w, b = RNG.standard_normal((1, 1, 3)), RNG.standard_normal((1, 2, 1)), np.ones(2)
    kw = {"stride": 2, "padding": "same", "output_shape": [6], "convention": convention}
    np.testing.assert_allclose(client.conv_transpose(x, w, b, **kw),
                               deconv_core.conv_transpose(x, w, b, **kw), 1e-12)


def test_onnx_extension_and_errors_over_the_wire(client: Client) -> None:
    x, w = np.ones((1, 1, 3)), np.ones((1, 1, 3))
    y = client.conv_transpose(x, w, np.array([2.0]), stride=2, padding="same",
                              output_shape=[10], convention="onnx")
    assert y.ravel()[:2].tolist() == [2.0, 2.0]
    with pytest.raises(ValueError, match="under convention='onnxruntime'"):
        client.conv_transpose(x, w, stride=2, padding="same", output_shape=[10],
                              convention="onnxruntime")


@pytest.mark.parametrize("op", ["conv", "conv_transpose"])
def test_empty_batch_over_the_wire(client: Client, op: str) -> None:
    x, w = np.zeros((0, 2, 4, 4), np.float32), np.ones((2, 2, 3, 3), np.float32)
    y = getattr(client, op)(x, w, np.ones(2, np.float32), stride=2, padding=1)
    assert y.shape == getattr(deconv_core, op)(x, w, stride=2, padding=1).shape
    assert y.shape[0] == 0


@pytest.mark.parametrize(
    "name", ["torch_fill_reflect_2d_s2_g2", "keras_convt2d_same_op", "keras_depthwise2d_mult2",
             "onnx_node_convtranspose_output_shape", "onnx_edge_notset_out_below_L_ort"]
)
def test_imported_layers_through_both_clients(client: Client, target: str, name: str) -> None:
    meta, x, w, b, y = load(GOLDEN / f"{name}.npz")
    layer = layer_of(meta, w, b)
    assert isinstance(layer, layers.Layer)
    np.testing.assert_allclose(layer(client, x), y, rtol=1e-5, atol=1e-4)

    async def run() -> np.ndarray:
        async with AsyncClient(target, timeout=60) as aclient:
            return await layer(aclient, x)

    np.testing.assert_allclose(asyncio.run(run()), y, rtol=1e-5, atol=1e-4)


def test_cli_explain_needs_no_server() -> None:
    args = ["explain", "conv-transpose", "--input-shape", "1", "1", "3", "--weight-shape", "1",
            "1", "3", "--stride", "2", "--padding", "same"]
    out = subprocess.run([sys.executable, "-m", "deconv_client.cli", *args, "--json"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert json.loads(out) == deconv_core.explain(
        "conv_transpose", (1, 1, 3), (1, 1, 3), stride=2, padding="same").as_dict()
    text = subprocess.run([sys.executable, "-m", "deconv_client.cli", *args],
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert "shifted by [1] pixel(s)" in text and 'padding="SAME"' in text
