"""Generate tests/core/golden/backward/*.npz, torch.autograd's gradients of conv and conv_transpose.

The goldens pin ``deconv_core.conv_backward`` / ``conv_transpose_backward`` to what PyTorch's
autograd computes. They are committed; the test suite never imports torch. Run once by hand,
from the repository root, with torch importable (it is never a runtime or test dependency)::

    .venv/bin/pip install torch==2.13.0       # the CPU build
    .venv/bin/python tests/core/make_golden_backward.py

It rewrites every ``tests/core/golden/backward/bwd_*.npz`` (a folder of its own: the forward
goldens' tests read every ``*.npz`` directly in ``golden/``). Conventions torch's functional
ops lack are built from them inside the autograd graph, so torch still differentiates every
case: per-side and "same"/"same_lower" conv padding and the fill ``padding_mode`` as ``F.pad``
before a padding-0 conv (as torch's own ``Conv*d(padding_mode=...)`` does); per-side crops, "same",
"valid", output_shape and framework-convention windows of a transposed conv as ``F.pad``
(negative pads crop, positive pads add rows no input reaches) of the uncropped result, the
conventions' windows read from ``deconv_core.plan_conv_transpose`` (they have goldens of their
own); channels-last data and TF weight layouts as permutes. Each file holds

* ``x``, ``w``, ``g`` (float32; input, weight and grad_output in the layouts the kwargs name),
* ``gi``, ``gw``, ``gb``: torch's gradients (float64, computed from the float32 values),
* ``params``: a JSON string ``{"op", "source", "torch", "kwargs"}``; ``kwargs`` are the
  deconv_core keyword arguments of the forward call.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import deconv_core
from tests.core import oracle

OUT = Path(__file__).resolve().parent / "golden" / "backward"
RNG = np.random.default_rng(20240914)
CV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _per_axis(value, r: int) -> list[int]:
    return [int(value)] * r if isinstance(value, int) else [int(v) for v in value]


def _pairs(padding, r: int):
    """Per-axis (before, after) pads of an int, per-axis ints or pairs; None for a string."""
    if isinstance(padding, str):
        return None
    if isinstance(padding, int):
        return [(padding, padding)] * r
    return [(p, p) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding]


def _to_torch_layout(tx, tw, kw, r):
    """Channels-first data and torch-layout weights, inside the graph."""
    if kw.get("data_format") == "channels_last":
        tx = tx.movedim(-1, 1)
    if kw.get("weight_format") == "tf":
        tw = tw.permute(r + 1, r, *range(r))
    return tx, tw


def _forward(op: str, tx, tw, tb, kw: dict, r: int):
    """The deconv_core call ``kw`` as a differentiable torch graph (channels-first result)."""
    x, w = _to_torch_layout(tx, tw, kw, r)
    s = _per_axis(kw.get("stride", 1), r)
    d = _per_axis(kw.get("dilation", 1), r)
    groups = kw.get("groups", 1)
    padding = kw.get("padding", 0)
    n = list(x.shape[2:])
    k = list(w.shape[2:])
    if op == "conv":
        fill = kw.get("padding_mode", "zeros")
        if fill != "zeros":  # torch's Conv*d(padding_mode=...): F.pad by the mode, then conv
            pads = oracle.conv_pads(n, k, s, d, padding)
            flat = [v for pb, pa in reversed(pads) for v in (pb, pa)]
            xp = F.pad(x, flat, mode=fill)
            return CV[r](xp, w, tb, stride=s, padding=0, dilation=d, groups=groups), "F.pad"
        if padding == "same" and s == [1] * r:
            return CV[r](x, w, tb, stride=s, padding="same", dilation=d, groups=groups), "same"
        pads = oracle.conv_pads(n, k, s, d, padding)
        if all(pb == pa for pb, pa in pads) and not isinstance(padding, str):
            p = [pb for pb, _ in pads]
            return CV[r](x, w, tb, stride=s, padding=p, dilation=d, groups=groups), "native"
        flat = [v for pb, pa in reversed(pads) for v in (pb, pa)]
        xp = F.pad(x, flat)
        return CV[r](xp, w, tb, stride=s, padding=0, dilation=d, groups=groups), "F.pad"
    op_pad = _per_axis(kw.get("output_padding", 0), r)
    out_shape = kw.get("output_shape")
    pairs = _pairs(padding, r)
    if (
        pairs is not None
        and out_shape is None
        and all(pb == pa for pb, pa in pairs)
        and all(o < max(sa, da) for o, sa, da in zip(op_pad, s, d, strict=True))
    ):
        p = [pb for pb, _ in pairs]
        y = CT[r](x, w, tb, stride=s, padding=p, output_padding=op_pad, dilation=d, groups=groups)
        return y, "native"
    if kw.get("convention", "default") != "default":
        # Framework conventions' windows (pinned by their own goldens) from deconv_core's plan.
        geom = deconv_core.plan_conv_transpose(tuple(x.shape), tuple(w.shape), **{
            key: v for key, v in kw.items() if key not in ("data_format", "weight_format")
        }).geometry
        windows = [(geom.offset[3 - r + a], geom.out_size[3 - r + a]) for a in range(r)]
    else:
        osh = [None] * r if out_shape is None else _per_axis(out_shape, r)
        spec = [padding] * r if pairs is None else pairs
        windows = [
            oracle.transpose_crop(n[a], k[a], s[a], d[a], spec[a], op_pad[a], osh[a])
            for a in range(r)
        ]
    full = CT[r](x, w, None, stride=s, padding=0, dilation=d, groups=groups)
    flat = []
    for a in reversed(range(r)):
        crop, size = windows[a]
        length = full.shape[2 + a]
        flat += [-crop, crop + size - length]
    y = F.pad(full, flat)
    if tb is not None:
        y = y + tb.reshape(1, -1, *([1] * r))
    return y, "window"


def case(name: str, op: str, x: np.ndarray, w: np.ndarray, **kw) -> None:
    """Differentiate one forward call in float64 and save it."""
    r = x.ndim - 2
    tx = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    tw = torch.from_numpy(w.astype(np.float64)).requires_grad_()
    _, wt = _to_torch_layout(tx, tw, kw, r)
    groups = kw.get("groups", 1)
    c_out = wt.shape[0] if op == "conv" else wt.shape[1] * groups
    tb = torch.zeros(c_out, dtype=torch.float64, requires_grad=True)
    y, how = _forward(op, tx, tw, tb, kw, r)
    if kw.get("data_format") == "channels_last":
        y = y.movedim(1, -1)
    g = _rand(*y.shape)
    gi, gw, gb = torch.autograd.grad(y, (tx, tw, tb), torch.from_numpy(g.astype(np.float64)))
    meta = {"op": op, "kwargs": kw, "torch": how, "source": f"torch {torch.__version__}"}
    np.savez_compressed(
        OUT / f"{name}.npz",
        x=x,
        w=w,
        g=g,
        gi=gi.numpy(),
        gw=gw.numpy(),
        gb=gb.numpy(),
        params=np.array(json.dumps(meta, sort_keys=True)),
    )
    print(f"{name:30s} {op:15s} {how:7s} x{x.shape} w{w.shape} -> y{tuple(y.shape)}")


def conv_cases() -> None:
    cv = "conv"
    case("bwd_cv1d_s2_p1_d2_g2", cv, _rand(2, 4, 9), _rand(6, 2, 3),
         stride=2, padding=1, dilation=2, groups=2)
    case("bwd_cv1d_k1_s3_tail", cv, _rand(1, 2, 8), _rand(3, 2, 1), stride=3)
    case("bwd_cv2d_mixed_axes", cv, _rand(2, 3, 7, 6), _rand(4, 3, 3, 2),
         stride=[2, 1], padding=[1, 0], dilation=[1, 2])
    case("bwd_cv2d_same_s1_even_k", cv, _rand(1, 2, 6, 5), _rand(3, 2, 2, 4),
         padding="same", dilation=[2, 1])
    case("bwd_cv2d_same_s2", cv, _rand(2, 2, 7, 6), _rand(3, 2, 3, 2), stride=2, padding="same")
    case("bwd_cv2d_same_lower_s2", cv, _rand(1, 2, 7, 8), _rand(2, 2, 2, 3),
         stride=[2, 3], padding="same_lower")
    case("bwd_cv2d_valid_s3_tail", cv, _rand(1, 3, 10, 8), _rand(2, 3, 3, 2),
         stride=3, padding="valid")
    case("bwd_cv2d_pairs", cv, _rand(2, 2, 6, 5), _rand(3, 2, 3, 3),
         stride=2, padding=[[2, 0], [1, 3]])
    case("bwd_cv2d_depthwise_mult2", cv, _rand(2, 4, 6, 6), _rand(8, 1, 3, 3),
         stride=2, padding=1, groups=4)
    case("bwd_cv3d_g2_mixed", cv, _rand(1, 4, 4, 5, 3), _rand(4, 2, 2, 3, 1),
         stride=[1, 2, 1], padding=[1, 0, 0], groups=2)
    case("bwd_cv2d_nhwc_tf_same", cv, _rand(2, 7, 6, 4), _rand(3, 3, 2, 6),
         stride=2, padding="same", groups=2, data_format="channels_last", weight_format="tf")
    case("bwd_cv1d_nwc", cv, _rand(2, 9, 3), _rand(2, 3, 2),
         stride=2, padding=2, dilation=3, data_format="channels_last")
    case("bwd_cv2d_reflect_s2", cv, _rand(2, 3, 7, 6), _rand(4, 3, 3, 3),
         stride=2, padding=1, padding_mode="reflect")
    case("bwd_cv1d_replicate_pairs", cv, _rand(2, 2, 9), _rand(3, 2, 3),
         padding=[[3, 2]], dilation=2, padding_mode="replicate")
    case("bwd_cv2d_circular_same_g2", cv, _rand(1, 4, 5, 6), _rand(4, 2, 3, 2),
         stride=[1, 2], padding="same", groups=2, padding_mode="circular")
    case("bwd_cv3d_reflect", cv, _rand(1, 2, 4, 5, 3), _rand(2, 2, 3, 2, 2),
         padding=1, padding_mode="reflect")
    case("bwd_cv3d_ndhwc_tf", cv, _rand(1, 5, 4, 4, 2), _rand(2, 2, 3, 2, 3),
         stride=2, padding=[[1, 0], [0, 1], [1, 1]], data_format="channels_last",
         weight_format="tf")


def transpose_cases() -> None:
    ct = "conv_transpose"
    x = np.array([[[1, 2, 3]]], np.float32)
    w = np.array([[[1, 10, 100]]], np.float32)
    case("bwd_ct1d_worked_same", ct, x, w, stride=2, padding="same", output_shape=[6])
    case("bwd_ct1d_s2_p1_op1", ct, _rand(2, 3, 5), _rand(3, 2, 4),
         stride=2, padding=1, output_padding=1)
    case("bwd_ct1d_d3_op2_g2", ct, _rand(1, 4, 4), _rand(4, 1, 3),
         padding=1, output_padding=2, dilation=3, groups=2)
    case("bwd_ct2d_s2_p1_g2", ct, _rand(2, 4, 3, 4), _rand(4, 2, 3, 3),
         stride=2, padding=1, output_padding=[1, 0], groups=2)
    case("bwd_ct2d_mixed_axes", ct, _rand(1, 2, 3, 2), _rand(2, 3, 2, 3),
         stride=[3, 1], padding=[0, 1], dilation=[1, 2])
    case("bwd_ct2d_depthwise", ct, _rand(2, 4, 4, 4), _rand(4, 1, 4, 4),
         stride=2, padding=1, groups=4)
    case("bwd_ct2d_k1_s3_op2", ct, _rand(1, 2, 3, 3), _rand(2, 2, 1, 1),
         stride=3, output_padding=2)
    case("bwd_ct2d_same_default", ct, _rand(2, 2, 3, 4), _rand(2, 3, 3, 3),
         stride=2, padding="same")
    case("bwd_ct2d_same_out_min", ct, _rand(1, 2, 3, 3), _rand(2, 2, 4, 3),
         stride=[2, 3], padding="same", output_shape=[5, 7])
    case("bwd_ct2d_same_lower", ct, _rand(1, 2, 3, 4), _rand(2, 2, 3, 2),
         stride=2, padding="same_lower", output_shape=[5, 8])
    case("bwd_ct2d_valid_out_plus1", ct, _rand(1, 3, 3, 2), _rand(3, 2, 3, 2),
         stride=2, padding="valid", output_shape=[8, 5])
    case("bwd_ct2d_pairs_op", ct, _rand(2, 2, 3, 4), _rand(2, 2, 3, 3),
         stride=2, padding=[[2, 0], [1, 3]], output_padding=[1, 0])
    case("bwd_ct2d_pairs_out_shape", ct, _rand(1, 2, 4, 3), _rand(2, 2, 2, 3),
         stride=[1, 2], dilation=[3, 1], padding=[[0, 1], [1, 0]], output_shape=[8, 6])
    case("bwd_ct1d_crop_past_full", ct, _rand(1, 2, 1), _rand(2, 1, 1),
         stride=3, padding=1, output_padding=2)
    case("bwd_ct3d_s2_p1_op1", ct, _rand(1, 2, 3, 2, 3), _rand(2, 2, 2, 3, 2),
         stride=2, padding=1, output_padding=1)
    case("bwd_ct2d_nhwc_tf_same", ct, _rand(2, 3, 4, 4), _rand(3, 3, 1, 4),
         stride=2, padding="same", groups=2, data_format="channels_last", weight_format="tf")
    case("bwd_ct1d_onnx_window_before_full", ct, _rand(2, 3, 5), _rand(3, 2, 3),
         stride=2, padding="same", output_shape=[12], convention="onnx")
    case("bwd_ct2d_keras_valid", ct, _rand(1, 2, 3, 4), _rand(2, 2, 2, 3),
         stride=3, padding="valid", convention="keras")
    case("bwd_ct2d_onnxruntime_same", ct, _rand(1, 2, 3, 3), _rand(2, 3, 3, 3),
         stride=2, padding="same", output_shape=[7, 6], convention="onnxruntime")
    case("bwd_ct1d_nwc_valid", ct, _rand(2, 4, 3), _rand(3, 2, 3),
         stride=2, dilation=2, padding="valid", output_shape=[12], data_format="channels_last")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("bwd_*.npz"):
        old.unlink()
    conv_cases()
    transpose_cases()
