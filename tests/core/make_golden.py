"""Generate the golden files of tests/core/golden/ with PyTorch and TensorFlow (run ONCE by hand).

The goldens pin deconv_core (and the test oracle) to what the real frameworks compute. They are
committed; the test suite never imports torch or tensorflow.

How to rerun (outside the project venv; torch/tensorflow must never enter it)::

    python3 -m venv ../refvenv      # beside the checkout, never inside it
    ../refvenv/bin/pip install torch==2.13.0 tensorflow-cpu numpy
    ../refvenv/bin/python tests/core/make_golden.py   # from the repository root

It rewrites every ``tests/core/golden/*.npz``. Each file holds

* ``x``, ``w`` (float32, in the layout named by the kwargs) and ``b`` when the case has a bias,
* ``y``: the framework's result, computed in float64 from the float32 inputs,
* ``params``: a JSON string ``{"op", "source", "call", "kwargs"}`` where ``kwargs`` are the
  deconv_core keyword arguments that reproduce ``y`` (``op(x, w, b, **kwargs)``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
import torch
import torch.nn.functional as F  # noqa: N812

OUT = Path(__file__).resolve().parent / "golden"
RNG = np.random.default_rng(20240611)
TORCH_CT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
TORCH_CV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TF_CT = {1: tf.nn.conv1d_transpose, 2: tf.nn.conv2d_transpose, 3: tf.nn.conv3d_transpose}
TF_CV = {1: tf.nn.conv1d, 2: tf.nn.conv2d, 3: tf.nn.conv3d}


def _rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _save(name: str, op: str, source: str, call: str, kwargs: dict, x, w, b, y) -> None:
    arrays = {"x": np.asarray(x, np.float32), "w": np.asarray(w, np.float32)}
    if b is not None:
        arrays["b"] = np.asarray(b, np.float32)
    arrays["y"] = np.asarray(y, np.float64)
    meta = {"op": op, "source": source, "call": call, "kwargs": kwargs}
    arrays["params"] = np.array(json.dumps(meta, sort_keys=True))
    np.savez_compressed(OUT / f"{name}.npz", **arrays)
    print(f"{name:34s} {op:15s} x{arrays['x'].shape} w{arrays['w'].shape} -> y{arrays['y'].shape}")


# --------------------------------------------------------------------------- PyTorch


def torch_case(name: str, op: str, x, w, b, **kw) -> None:
    """Run F.conv{r}d / F.conv_transpose{r}d in float64; kwargs are PyTorch's (NCHW, OIHW)."""
    r = x.ndim - 2
    fn = (TORCH_CT if op == "conv_transpose" else TORCH_CV)[r]
    tb = None if b is None else torch.from_numpy(b.astype(np.float64))
    y = fn(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)), tb, **kw)
    call = f"torch.nn.functional.{fn.__name__}(x, w, b, **{kw})"
    _save(name, op, f"torch {torch.__version__}", call, kw, x, w, b, y.numpy())


def torch_cases() -> None:
    ct, cv = "conv_transpose", "conv"
    x = np.array([[[1, 2, 3]]], np.float32)
    w = np.array([[[1, 10, 100]]], np.float32)
    torch_case("torch_ct1d_worked_port", ct, x, w, None, stride=2, padding=1, output_padding=1)
    torch_case("torch_ct1d_s2_p1_op1", ct, _rand(2, 3, 5), _rand(3, 2, 4), _rand(2),
               stride=2, padding=1, output_padding=1)
    torch_case("torch_ct1d_d3_op2_g2", ct, _rand(1, 4, 4), _rand(4, 1, 3), _rand(2),
               stride=1, padding=1, output_padding=2, dilation=3, groups=2)
    torch_case("torch_ct2d_s2_p1_g2", ct, _rand(2, 4, 3, 4), _rand(4, 2, 3, 3), _rand(4),
               stride=2, padding=1, output_padding=(1, 0), groups=2)
    torch_case("torch_ct2d_mixed_axes", ct, _rand(1, 2, 3, 2), _rand(2, 3, 2, 3), None,
               stride=(3, 2), padding=(0, 2), output_padding=(2, 1), dilation=(1, 2))
    torch_case("torch_ct2d_depthwise", ct, _rand(2, 3, 3, 3), _rand(3, 1, 4, 4), _rand(3),
               stride=2, padding=1, groups=3)
    torch_case("torch_ct2d_k1_s3", ct, _rand(1, 2, 3, 2), _rand(2, 3, 1, 1), _rand(3),
               stride=3, output_padding=2)
    torch_case("torch_ct3d_s2_p1_op1", ct, _rand(1, 2, 2, 3, 2), _rand(2, 2, 3, 3, 3), _rand(2),
               stride=2, padding=1, output_padding=1)
    torch_case("torch_ct3d_g2_mixed", ct, _rand(2, 2, 2, 2, 3), _rand(2, 1, 2, 2, 2), _rand(2),
               stride=(1, 2, 3), padding=(1, 0, 1), dilation=(2, 1, 1), groups=2)
    torch_case("torch_cv1d_s2_p1_d2", cv, _rand(2, 3, 7), _rand(2, 3, 3), _rand(2),
               stride=2, padding=1, dilation=2)
    torch_case("torch_cv2d_s2_g2", cv, _rand(1, 4, 5, 6), _rand(4, 2, 3, 2), _rand(4),
               stride=2, padding=(1, 0), groups=2)
    torch_case("torch_cv2d_same_d2", cv, _rand(1, 2, 5, 4), _rand(3, 2, 2, 3), _rand(3),
               padding="same", dilation=(2, 1))
    torch_case("torch_cv2d_valid", cv, _rand(2, 2, 5, 5), _rand(2, 2, 3, 2), None,
               padding="valid", stride=(2, 1))
    torch_case("torch_cv2d_depthwise_mult2", cv, _rand(1, 2, 4, 5), _rand(4, 1, 3, 3), _rand(4),
               padding=1, groups=2)
    torch_case("torch_cv3d_g2_mixed", cv, _rand(1, 2, 3, 4, 5), _rand(4, 1, 2, 2, 3), _rand(4),
               stride=(1, 2, 2), padding=1, dilation=(1, 1, 2), groups=2)


# --------------------------------------------------------------------------- TensorFlow


def _tf_pad(padding, r: int):
    """TF padding argument: "SAME"/"VALID" or explicit NHWC pairs."""
    if isinstance(padding, str):
        return padding.upper()
    return [[0, 0], *[list(p) for p in padding], [0, 0]]


def tf_transpose_case(name: str, x, w, b, *, stride, padding, out, dilation=1) -> None:
    """tf.nn.conv{r}d_transpose, NHWC data, filters (k..., C_out, C_in), float64."""
    r = x.ndim - 2
    fn = TF_CT[r]
    out_shape = [x.shape[0], *out, w.shape[-2]]
    kw = {"strides": stride, "padding": _tf_pad(padding, r)}
    if dilation != 1:
        kw["dilations"] = dilation
    y = fn(tf.constant(x, tf.float64), tf.constant(w, tf.float64), out_shape, **kw)
    if b is not None:
        y = tf.nn.bias_add(y, tf.constant(b, tf.float64))
    core_kw = {
        "stride": stride,
        "dilation": dilation,
        "data_format": "channels_last",
        "weight_format": "tf",
    }
    if isinstance(padding, str):
        core_kw.update(padding=padding, output_shape=list(out))
    else:
        # explicit (before, after) pairs: express the TF output_shape as output_padding
        s = [stride] * r if isinstance(stride, int) else stride
        d = [dilation] * r if isinstance(dilation, int) else dilation
        k = w.shape[:r]
        n = x.shape[1:-1]
        op = []
        for a in range(r):
            L = (n[a] - 1) * s[a] + d[a] * (k[a] - 1) + 1
            op.append(int(out[a] - (L - padding[a][0] - padding[a][1])))
        core_kw.update(padding=[list(p) for p in padding], output_padding=op)
    call = f"tf.nn.{fn.__name__}(x, w, output_shape={out_shape}, **{kw}) (+ bias_add)"
    _save(name, "conv_transpose", f"tensorflow {tf.__version__}", call, core_kw, x, w, b, y.numpy())


def tf_conv_case(name: str, x, w, b, *, stride, padding, dilation=1) -> None:
    """tf.nn.conv{r}d, NHWC data, filters (k..., C_in, C_out), float64."""
    r = x.ndim - 2
    fn = TF_CV[r]
    kw = {"padding": _tf_pad(padding, r)}
    if r == 1:
        kw["stride"] = stride
    elif r == 3:  # tf.nn.conv3d wants the full NDHWC strides list
        kw["strides"] = [1, *([stride] * 3 if isinstance(stride, int) else stride), 1]
    else:
        kw["strides"] = stride
    if dilation != 1:
        kw["dilations"] = dilation
    y = fn(tf.constant(x, tf.float64), tf.constant(w, tf.float64), **kw)
    if b is not None:
        y = tf.nn.bias_add(y, tf.constant(b, tf.float64))
    core_kw = {
        "stride": stride,
        "dilation": dilation,
        "padding": padding if isinstance(padding, str) else [list(p) for p in padding],
        "data_format": "channels_last",
        "weight_format": "tf",
    }
    call = f"tf.nn.{fn.__name__}(x, w, **{kw}) (+ bias_add)"
    _save(name, "conv", f"tensorflow {tf.__version__}", call, core_kw, x, w, b, y.numpy())


def tf_cases() -> None:
    # docs/semantics.md "Worked example": TF SAME, x=[1,2,3], w=[1,10,100], s=2, out=6.
    x = np.array([1, 2, 3], np.float32).reshape(1, 3, 1)
    w = np.array([1, 10, 100], np.float32).reshape(3, 1, 1)
    tf_transpose_case("tf_ct1d_worked_same", x, w, None, stride=2, padding="same", out=[6])
    got = np.load(OUT / "tf_ct1d_worked_same.npz")["y"].ravel()
    assert got.tolist() == [1, 10, 102, 20, 203, 30], got

    # SAME, default out n*s; k=3, s=2 gives an odd total crop T = L - out = 1.
    tf_transpose_case("tf_ct2d_same_default_odd", _rand(2, 3, 2, 3), _rand(3, 3, 2, 3), _rand(2),
                      stride=2, padding="same", out=[6, 4])
    # SAME, non-default legal outputs (n-1)s+1 .. n*s.
    tf_transpose_case("tf_ct2d_same_out_nondefault", _rand(1, 3, 3, 2), _rand(4, 2, 3, 2),
                      _rand(3), stride=(2, 3), padding="same", out=[5, 8])
    tf_transpose_case("tf_ct2d_same_out_min", _rand(1, 3, 2, 2), _rand(3, 3, 2, 2), None,
                      stride=3, padding="same", out=[7, 4])
    # VALID: default L and non-default L .. L+s-1; kernel smaller than stride.
    tf_transpose_case("tf_ct2d_valid_default", _rand(2, 3, 2, 2), _rand(3, 2, 2, 2), _rand(2),
                      stride=2, padding="valid", out=[7, 4])
    tf_transpose_case("tf_ct2d_valid_out_plus1", _rand(1, 2, 3, 3), _rand(3, 3, 2, 3), None,
                      stride=2, padding="valid", out=[6, 8])
    tf_transpose_case("tf_ct2d_valid_k_lt_s", _rand(1, 2, 3, 2), _rand(2, 2, 3, 2), _rand(3),
                      stride=3, padding="valid", out=[7, 10])
    tf_transpose_case("tf_ct1d_valid_s3", _rand(2, 4, 3), _rand(2, 2, 3), _rand(2),
                      stride=3, padding="valid", out=[12])
    # (TF's CPU transposed conv rejects dilation > 1, so dilated cases come from PyTorch.)
    tf_transpose_case("tf_ct1d_same_out_odd", _rand(1, 4, 2), _rand(4, 2, 2), _rand(2),
                      stride=2, padding="same", out=[7])
    tf_transpose_case("tf_ct3d_same_default", _rand(1, 2, 3, 2, 2), _rand(3, 3, 2, 2, 2),
                      _rand(2), stride=2, padding="same", out=[4, 6, 4])
    tf_transpose_case("tf_ct3d_valid_nondefault", _rand(1, 2, 2, 3, 2), _rand(2, 3, 3, 2, 2),
                      None, stride=(2, 1, 2), padding="valid", out=[5, 4, 7])
    tf_transpose_case("tf_ct2d_explicit_pairs", _rand(1, 3, 3, 2), _rand(4, 2, 2, 2), _rand(2),
                      stride=2, padding=[(0, 2), (1, 0)], out=[7, 6])

    tf_conv_case("tf_cv2d_same_s2_odd", _rand(2, 6, 5, 2), _rand(3, 2, 2, 3), _rand(3),
                 stride=2, padding="same")
    tf_conv_case("tf_cv2d_valid_s2", _rand(1, 6, 5, 3), _rand(3, 3, 3, 2), _rand(2),
                 stride=2, padding="valid")
    tf_conv_case("tf_cv2d_same_dilated", _rand(1, 5, 5, 2), _rand(3, 2, 2, 2), None,
                 stride=1, padding="same", dilation=2)
    tf_conv_case("tf_cv2d_explicit_pairs", _rand(1, 4, 5, 2), _rand(3, 3, 2, 2), _rand(2),
                 stride=(2, 1), padding=[(2, 0), (0, 1)])
    tf_conv_case("tf_cv1d_same_s3", _rand(2, 7, 2), _rand(4, 2, 3), _rand(3),
                 stride=3, padding="same")
    tf_conv_case("tf_cv3d_same_s2", _rand(1, 3, 4, 5, 2), _rand(2, 3, 2, 2, 2), _rand(2),
                 stride=2, padding="same")


def main() -> None:
    """Rewrite every golden file."""
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.npz"):
        old.unlink()
    torch_cases()
    tf_cases()
    total = sum(p.stat().st_size for p in OUT.glob("*.npz"))
    print(f"{len(list(OUT.glob('*.npz')))} files, {total} bytes")


if __name__ == "__main__":
    main()
