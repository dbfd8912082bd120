"""Framework conventions, fill modes, layer import and explain, against real framework outputs.

The goldens (tests/core/golden_conventions/, made by make_golden_conventions.py) hold what
PyTorch 2.13, Keras 3 on TensorFlow, onnxruntime and the ONNX reference computed. No framework is
imported here: every layer is rebuilt as a duck-typed stand-in from its stored config and run
through ``deconv_client.layers`` with ``deconv_core`` as the "client" (same signatures); the
service tests run the same layers over the wire.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from deconv_client import layers

import deconv_core
from deconv_core import InvalidArgumentError

GOLDEN = Path(__file__).resolve().parent / "golden_conventions"
FILES = sorted(GOLDEN.glob("*.npz"))


def load(path: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        get = lambda k: z[k] if k in z.files else None  # noqa: E731
        return meta, z["x"], z["w"], get("b"), get("y")


def fake_torch(cls: str, cfg: dict, w: np.ndarray, b: np.ndarray | None) -> Any:
    """A stand-in with the class name and attributes of a torch.nn conv module."""
    module = type(cls, (), {})()
    for key, value in cfg.items():
        setattr(module, key, tuple(value) if isinstance(value, list) else value)
    module.weight, module.bias = w, b
    return module


def fake_keras(cls: str, cfg: dict, weights: list[np.ndarray]) -> Any:
    """A stand-in with the class name, get_config() and get_weights() of a Keras layer."""
    return type(cls, (), {"get_config": lambda self: dict(cfg),
                          "get_weights": lambda self: list(weights)})()


def fake_onnx(cls: str, attrs: dict, inputs: list[str]) -> Any:
    """A NodeProto stand-in: op_type, input names and AttributeProto-like attributes."""
    def attr(name: str, value: Any) -> SimpleNamespace:
        if isinstance(value, list):
            return SimpleNamespace(name=name, type=7, ints=value, i=0, s=b"")
        if isinstance(value, str):
            return SimpleNamespace(name=name, type=3, ints=[], i=0, s=value.encode())
        return SimpleNamespace(name=name, type=2, ints=[], i=value, s=b"")

    return SimpleNamespace(op_type=cls, input=inputs,
                           attribute=[attr(k, v) for k, v in attrs.items()])


def layer_of(meta: dict, w: np.ndarray, b: np.ndarray | None) -> layers.Layer:
    spec = meta["layer"]
    if spec["kind"] == "torch":
        return layers.from_torch(fake_torch(spec["class"], spec["config"], w, b))
    if spec["kind"] == "keras":
        return layers.from_keras(fake_keras(spec["class"], spec["config"],
                                            [w] if b is None else [w, b]))
    inits = {"W": w} if b is None else {"W": w, "B": b}
    names = spec["inputs"]
    node = fake_onnx(spec["class"], spec["config"], names)
    return layers.from_onnx(node, dict(zip(names[1:], inits.values(), strict=False)),
                            convention=meta.get("convention", "onnx"))


def check_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=what)


LAYER_FILES = [p for p in FILES if p.stem.split("_")[0] in ("torch", "keras", "onnx")]
EXPLAIN_FILES = [p for p in FILES if p.stem.startswith("explain_")]


def test_golden_set_covers_every_framework_and_node_test():
    names = {p.stem for p in FILES}
    node = {n for n in names if n.startswith("onnx_node_")}
    assert len(node) == 17 and "onnx_node_convtranspose_kernel_shape" in node
    assert {n.split("_")[0] for n in names} == {"torch", "keras", "onnx", "explain"}
    assert sum(p.stat().st_size for p in FILES) < 600_000


@pytest.mark.parametrize("path", LAYER_FILES, ids=lambda p: p.stem)
def test_layer_import_matches_the_framework(path: Path):
    meta, x, w, b, y = load(path)
    if "error" in meta and meta["layer"]["kind"] == "keras":
        # Keras on TensorFlow refuses it (TF's SAME range); Keras's own formula (its JAX and
        # torch backends) defines the size, and deconv follows the formula.
        spec = meta["layer"]
        kernel = np.ones((4, 4, 1, 1), np.float32)
        layer = layers.from_keras(fake_keras(spec["class"], spec["config"], [kernel]))
        assert layer(deconv_core, x).shape == (1, 4, 4, 1)
        return
    layer = layer_of(meta, w, b)
    if "error" in meta:  # the framework refuses the call: so does deconv under its convention
        with pytest.raises(InvalidArgumentError):
            layer(deconv_core, x)
        return
    check_close(layer(deconv_core, x), y, meta["source"])


@pytest.mark.parametrize("path", EXPLAIN_FILES, ids=lambda p: p.stem)
def test_explain_equivalents_ran_in_the_framework(path: Path):
    """The parameters explain states were run by the framework and give deconv's result."""
    meta, x, w, b, y = load(path)
    kw = meta["kwargs"]
    xs, ws = meta["shapes"]
    fw = path.stem.split("_")[-1] if path.stem.split("_")[-1] in ("torch", "tf", "keras") else \
        "onnx"
    port = deconv_core.explain("conv_transpose", xs, ws, **kw).as_dict()["ports"][fw]
    assert port == meta["ports"], f"explain's {fw} port changed since it was verified"
    if y is None:
        assert meta["error"] == "not expressible" or "onnxruntime" in port["text"]
        assert port["params"] is None or fw == "onnx"
        return
    check_close(deconv_core.conv_transpose(x, w, b, **kw), y, meta["source"])


def _edge(name: str, backend: str):
    return load(GOLDEN / f"onnx_edge_{name}_{backend}.npz")


@pytest.mark.parametrize("name", ["same_upper_neg_total", "same_upper_default_k1"])
def test_onnxruntime_and_the_reference_disagree_and_both_are_offered(name: str):
    _, _, _, _, ref = _edge(name, "ref")
    _, _, _, _, ort = _edge(name, "ort")
    assert ref.shape != ort.shape or not np.allclose(ref, ort)


def test_worked_example_in_every_convention():
    """docs/semantics.md: n=3, k=3, s=2 -> L=7; where the conventions put the window."""
    x, w = np.array([[[1.0, 2, 3]]]), np.array([[[1.0, 10, 100]]])
    ct = deconv_core.conv_transpose
    same = [1, 10, 102, 20, 203, 30]
    for conv in deconv_core.CONVENTIONS:
        assert ct(x, w, stride=2, padding="same", convention=conv).ravel().tolist() == same
    # output_padding with "same": Keras grows the window, ONNX shifts it
    assert ct(x, w, stride=2, padding="same", output_padding=1).ravel().tolist() == same
    onnx = ct(x, w, stride=2, padding="same", output_padding=1, convention="onnx")
    assert onnx.ravel().tolist() == [10, 102, 20, 203, 30, 300]
    # a size beyond L: the reference extends both ends (zeros + bias), onnxruntime refuses
    big = ct(x, w, np.array([5.0]), stride=2, padding="same", output_shape=[10],
             convention="onnx")
    assert big.ravel().tolist() == [5, 5, 6, 15, 107, 25, 208, 35, 305, 5]
    with pytest.raises(InvalidArgumentError, match=r"legal range 1\.\.8 under convention="):
        ct(x, w, stride=2, padding="same", output_shape=[10], convention="onnxruntime")
    # Keras's default VALID size n*s + max(ek - s, 0) vs L = (n-1)*s + ek when ek < s
    w1 = np.array([[[1.0]]])
    assert ct(x, w1, stride=2, padding="valid").shape[-1] == 5
    assert ct(x, w1, stride=2, padding="valid", convention="keras").shape[-1] == 6


@pytest.mark.parametrize("op", ["conv", "conv_transpose"])
def test_empty_batch_gives_the_empty_result(op: str):
    x = np.zeros((0, 2, 5, 4), np.float32)
    w = np.ones((2, 2, 3, 3), np.float32)
    plan_fn = deconv_core.plan_conv if op == "conv" else deconv_core.plan_conv_transpose
    plan = plan_fn(x.shape, w.shape, (2,), stride=2, padding=1)
    y = getattr(deconv_core, op)(x, w, np.ones(2, np.float32), stride=2, padding=1)
    assert y.shape == plan.output_shape and y.shape[0] == 0 and y.dtype == np.float32
    assert plan.workspace_bytes == 0
    with pytest.raises(InvalidArgumentError, match="only the batch may be 0"):
        getattr(deconv_core, op)(np.zeros((1, 0, 5, 4), np.float32), w)


def test_fill_is_counted_in_the_workspace():
    zeros = deconv_core.plan_conv((2, 3, 8, 8), (4, 3, 3, 3), padding=2)
    fill = deconv_core.plan_conv((2, 3, 8, 8), (4, 3, 3, 3), padding=2, padding_mode="reflect")
    assert fill.kernel_geometry is not None and fill.kernel_geometry.in_size == (1, 12, 12)
    assert fill.workspace_bytes - zeros.workspace_bytes >= 2 * 3 * 12 * 12 * 4
    assert zeros.kernel_geometry is None


def test_client_and_core_explain_agree():
    """deconv explain (client, no server) prints what deconv_core.explain prints."""
    from deconv_client import _explain

    calls = [
        ("conv_transpose", (1, 2, 3, 4), (2, 3, 3, 3), {"stride": 2, "padding": "same"}),
        ("conv_transpose", (1, 1, 3), (1, 1, 1),
         {"stride": 2, "padding": "same", "output_shape": [7], "convention": "onnx"}),
        ("conv_transpose", (1, 1, 5), (1, 1, 4),
         {"stride": 3, "padding": [(1, 0)], "output_padding": 2, "dilation": 2}),
        ("conv", (1, 1, 7, 6), (2, 1, 3, 2), {"stride": 2, "padding": "same_lower"}),
        ("conv", (1, 1, 7), (2, 1, 3), {"padding": [(2, 0)], "padding_mode": "circular"}),
    ]
    for op, xs, ws, kw in calls:
        core = deconv_core.explain(op, xs, ws, **kw)
        client = _explain.explain(op, xs, ws, **kw)
        assert str(core) == str(client) and core.as_dict() == client.as_dict()
