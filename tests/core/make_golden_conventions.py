"""Generate tests/core/golden_conventions/*.npz with the real frameworks (run ONCE by hand).

The files pin the framework conventions (docs/semantics.md, "Conventions"), the fill modes, the
layer importers (client/deconv_client/layers.py) and the explainer's equivalents to what
PyTorch 2.13, onnxruntime, the ONNX reference implementation and TensorFlow/Keras compute. The
tests never import a framework: they rebuild duck-typed stand-ins from the stored configs.

Run with an interpreter that has the frameworks of the chosen groups::

    .venv/bin/python tests/core/make_golden_conventions.py torch onnx   # torch, onnx, onnxruntime
    /tmp/tfvenv/bin/python tests/core/make_golden_conventions.py keras  # tensorflow-cpu (Keras 3)

(``.venv/bin/pip install torch==2.13.0 onnx onnxruntime`` resp. ``pip install tensorflow-cpu`` in
a separate venv; never as project dependencies.) Each file holds ``x``, ``w``, ``b`` (optional),
``y`` (or ``error``: the framework refused the call) and ``meta``: JSON with ``op``, ``source``,
``kwargs`` (deconv_core's arguments for the same call), ``layer`` (the framework layer's class and
config, when there is one) and ``ports`` (explain's parameters that were run).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "golden_conventions"
RNG = np.random.default_rng(20250113)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _load(name: str):
    """The shared pure-python window and port modules, without numba (by file path)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "proto" / "deconv" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


windows, ports = _load("windows"), _load("ports")


def rand(*shape: int) -> np.ndarray:
    """Small integers (exact in float32) so every framework agrees to the last bit."""
    return RNG.integers(-4, 5, size=shape).astype(np.float32)


def save(name: str, meta: dict, x, w, b, y=None, error: str | None = None) -> None:
    arrays = {"x": np.asarray(x, np.float32), "w": np.asarray(w, np.float32)}
    if b is not None:
        arrays["b"] = np.asarray(b, np.float32)
    if y is not None:
        arrays["y"] = np.asarray(y, np.float32)
    if error is not None:
        meta = {**meta, "error": error[:300]}
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True, default=list))
    OUT.mkdir(exist_ok=True)
    np.savez_compressed(OUT / f"{name}.npz", **arrays)
    shape = "error" if y is None else tuple(np.shape(y))
    print(f"{name:44s} {meta['source']:28s} -> {shape}")


def explain_axes(op: str, x_shape, w_shape, kw: dict) -> list:
    """Per-axis windows (channels first, torch weights) with the pure window maths."""
    r = len(x_shape) - 2
    per = lambda v: list(v) if isinstance(v, list | tuple) else [v] * r  # noqa: E731
    s, d = per(kw.get("stride", 1)), per(kw.get("dilation", 1))
    pads = kw.get("padding", 0)
    ops = per(kw.get("output_padding", 0))
    outs = kw.get("output_shape")
    axes = []
    for i in range(r):
        p = pads if isinstance(pads, str) else (per(pads)[i],) * 2
        crop, size = windows.window(x_shape[2 + i], w_shape[2 + i], s[i], d[i], p, ops[i],
                                    None if outs is None else outs[i],
                                    kw.get("convention", "default"), i)
        axes.append(ports.Axis(x_shape[2 + i], w_shape[2 + i], s[i], d[i], size, crop=crop))
    return axes


from golden_frameworks import GROUPS  # noqa: E402  (tests/core/golden_frameworks.py)

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(GROUPS)
    for group in chosen:
        GROUPS[group](sys.modules[__name__])
