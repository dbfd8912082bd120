"""The framework runs behind make_golden_conventions.py (generation only; lazy framework imports).

Groups: ``torch`` (fill modes, module round trips, empty batch, explain's PyTorch ports),
``onnx`` (every ONNX Conv/ConvTranspose backend node test, onnxruntime vs the ONNX reference on
the convention edge cases, explain's ONNX ports) and ``keras`` (layer round trips, default sizes,
output_padding, explain's TF/Keras ports). Each function takes the generator module ``g``
(``g.save``, ``g.rand``, ``g.explain_axes``, ``g.ports``).
"""

from __future__ import annotations

import numpy as np

# deconv kwargs of the transposed-conv cases whose explain ports every framework runs
EXPLAIN_CASES = {
    "tf_same_s2_k3": ((1, 2, 3, 4), (2, 3, 3, 3), {"stride": 2, "padding": "same"}),
    "torch_p1_op1": ((1, 2, 3, 3), (2, 2, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    "valid_k1_s3": ((1, 2, 3), (2, 2, 1), {"stride": 3, "padding": "valid"}),
    "keras_same_op1": ((1, 1, 4, 3), (1, 2, 3, 3),
                       {"stride": 2, "padding": "same", "output_padding": 1}),
    "onnx_neg_total": ((1, 1, 3), (1, 1, 1),
                       {"stride": 2, "padding": "same", "output_shape": [7], "convention": "onnx"}),
}


def _explain_ports(g, name):
    xs, ws, kw = EXPLAIN_CASES[name]
    return g.ports.explanation("conv_transpose", g.explain_axes("conv_transpose", xs, ws, kw),
                               kw.get("convention", "default")).as_dict()["ports"]


# ------------------------------------------------------------------------------------ torch


def torch_group(g) -> None:
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    src = f"torch {torch.__version__}"

    def module_case(name, mod, x):
        with torch.no_grad():
            for p in mod.parameters():
                p.copy_(torch.from_numpy(g.rand(*p.shape)))
            y = mod(torch.from_numpy(x)).numpy()
        cfg = {k: getattr(mod, k) for k in ("stride", "padding", "dilation", "groups",
                                             "padding_mode", "output_padding")}
        cfg["has_bias"] = mod.bias is not None
        layer = {"kind": "torch", "class": type(mod).__name__, "config": cfg}
        b = None if mod.bias is None else mod.bias.detach().numpy()
        g.save(name, {"op": "layer", "source": src, "layer": layer, "kwargs": {}},
               x, mod.weight.detach().numpy(), b, y)

    for mode in ("reflect", "replicate", "circular"):
        module_case(f"torch_fill_{mode}_1d", nn.Conv1d(2, 3, 3, padding=2, padding_mode=mode),
                    g.rand(2, 2, 5))
        module_case(f"torch_fill_{mode}_2d_s2_g2",
                    nn.Conv2d(4, 2, (3, 2), stride=2, padding=(1, 2), groups=2,
                              padding_mode=mode), g.rand(1, 4, 5, 4))
        module_case(f"torch_fill_{mode}_2d_same_even",
                    nn.Conv2d(1, 2, (4, 3), padding="same", dilation=(1, 2), padding_mode=mode),
                    g.rand(1, 1, 6, 5))
        module_case(f"torch_fill_{mode}_3d", nn.Conv3d(1, 1, 3, padding=1, padding_mode=mode,
                                                       bias=False), g.rand(1, 1, 3, 4, 3))
    module_case("torch_layer_convt1d", nn.ConvTranspose1d(2, 4, 3, stride=2, padding=1,
                                                          output_padding=1, groups=2),
                g.rand(1, 2, 4))
    module_case("torch_layer_convt2d_dil", nn.ConvTranspose2d(2, 3, (2, 3), stride=(2, 1),
                                                              padding=(0, 1), dilation=(1, 3),
                                                              output_padding=(1, 2)),
                g.rand(2, 2, 3, 3))
    module_case("torch_layer_convt3d", nn.ConvTranspose3d(1, 2, 2, stride=2, bias=False),
                g.rand(1, 1, 2, 2, 3))
    module_case("torch_layer_conv2d_valid", nn.Conv2d(2, 2, 3, padding="valid", dilation=2),
                g.rand(1, 2, 6, 7))
    module_case("torch_layer_conv1d_zeros", nn.Conv1d(3, 3, 2, stride=2, padding=1, groups=3),
                g.rand(1, 3, 6))
    module_case("torch_empty_batch_conv2d", nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"),
                np.zeros((0, 2, 4, 4), np.float32))
    module_case("torch_empty_batch_convt2d", nn.ConvTranspose2d(2, 3, 3, stride=2),
                np.zeros((0, 2, 4, 4), np.float32))
    # explain: run the PyTorch port explain gives (None = not expressible: nothing to run)
    F = torch.nn.functional
    for name, (xs, ws, kw) in EXPLAIN_CASES.items():
        port = _explain_ports(g, name)["torch"]
        x, w, b = g.rand(*xs), g.rand(*ws), g.rand(ws[1])
        meta = {"op": "conv_transpose", "source": src, "kwargs": kw, "ports": port,
                "shapes": [xs, ws]}
        if port["params"] is None:
            g.save(f"explain_{name}_torch", meta, x, w, b, error="not expressible")
            continue
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(xs) - 2]
        y = fn(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
               stride=kw["stride"], **port["params"]).numpy()
        g.save(f"explain_{name}_torch", meta, x, w, b, y)


# ------------------------------------------------------------------------------------- onnx


def _onnx_model(op, attrs, x, w, b):
    from onnx import TensorProto, helper

    inputs = ["X", "W"] + (["B"] if b is not None else [])
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape))
          for n, a in zip(inputs, (x, w, b), strict=False)]
    node = helper.make_node(op, inputs, ["Y"], **attrs)
    graph = helper.make_graph([node], "g", vi,
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    model.ir_version = 10
    return model, dict(zip(inputs, (x, w, b), strict=False))


def _run_onnx(model, feeds):
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    out = {}
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        out["ort"] = sess.run(None, feeds)[0]
    except Exception as exc:
        out["ort"] = str(exc).split("Status Message:")[-1].strip()
    try:
        out["ref"] = ReferenceEvaluator(model).run(None, feeds)[0]
    except Exception as exc:
        out["ref"] = str(exc)
    return out


ONNX_EDGES = {  # (x shape, w shape, bias, attrs): where onnxruntime and the reference may part
    "same_upper_neg_total": ((1, 1, 3), (1, 1, 1), True, {"auto_pad": "SAME_UPPER", "strides": [2],
                                                          "output_shape": [6]}),
    "same_upper_default_k1": ((1, 1, 3), (1, 2, 1), True, {"auto_pad": "SAME_UPPER",
                                                           "strides": [3]}),
    "same_lower_big_out": ((1, 1, 3), (1, 1, 3), True, {"auto_pad": "SAME_LOWER", "strides": [2],
                                                        "output_shape": [11]}),
    # no bias: with group > 1 the ONNX reference adds bias[0] to every group (its bug)
    "same_upper_big_out_2d": ((1, 2, 2, 3), (2, 1, 3, 2), False,
                              {"auto_pad": "SAME_UPPER", "strides": [2, 1], "group": 2,
                               "output_shape": [8, 6]}),
    "same_upper_op1": ((1, 1, 3), (1, 1, 3), True, {"auto_pad": "SAME_UPPER", "strides": [2],
                                                    "output_padding": [1]}),
    "same_lower_op_out": ((1, 1, 4), (1, 1, 2), False, {"auto_pad": "SAME_LOWER", "strides": [3],
                                                        "output_padding": [2],
                                                        "output_shape": [9]}),
    "notset_out_below_L": ((1, 1, 3), (1, 1, 3), True, {"strides": [2], "output_shape": [4]}),
    "notset_pads_out": ((1, 1, 3), (1, 1, 3), True, {"strides": [2], "pads": [2, 0],
                                                     "output_shape": [5]}),
    "notset_out_plus2_s3": ((1, 1, 2), (1, 1, 2), True, {"strides": [3], "output_shape": [7]}),
    "valid_out_below_L": ((1, 1, 3), (1, 1, 3), False, {"auto_pad": "VALID", "strides": [2],
                                                        "output_shape": [5]}),
    "valid_op1": ((1, 2, 3), (2, 1, 2), True, {"auto_pad": "VALID", "strides": [2],
                                               "output_padding": [1]}),
    "pads_op_dil": ((1, 1, 3, 3), (1, 2, 2, 2), True, {"strides": [2, 3], "dilations": [2, 1],
                                                       "pads": [1, 0, 0, 2],
                                                       "output_padding": [1, 2]}),
}


def _attrs_json(node) -> dict:
    from onnx import helper

    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def onnx_group(g) -> None:
    import onnx
    import onnxruntime
    from onnx import numpy_helper
    from onnx.backend.test.case import node as node_cases

    src = f"onnx {onnx.__version__} / onnxruntime {onnxruntime.__version__}"
    for case in node_cases.collect_testcases(None):
        n = case.model.graph.node[0]
        if n.op_type not in ("Conv", "ConvTranspose") or not case.name.startswith("test_"):
            continue
        inputs, outputs = case.data_sets[0]
        attrs = _attrs_json(n)
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        layer = {"kind": "onnx", "class": n.op_type, "config": attrs, "inputs": list(n.input)}
        g.save(f"onnx_node_{case.name[5:]}", {"op": "layer", "source": f"onnx {onnx.__version__}"
               f" backend node test {case.name}", "layer": layer, "kwargs": {}},
               x, w, b, outputs[0])
    for name, (xs, ws, has_b, attrs) in ONNX_EDGES.items():
        x, w = g.rand(*xs), g.rand(*ws)
        b = g.rand(ws[1] * attrs.get("group", 1)) if has_b else None
        model, feeds = _onnx_model("ConvTranspose", attrs, x, w, b)
        got = _run_onnx(model, feeds)
        node = model.graph.node[0]
        layer = {"kind": "onnx", "class": "ConvTranspose", "config": _attrs_json(node),
                 "inputs": list(node.input)}
        for backend, conv in (("ref", "onnx"), ("ort", "onnxruntime")):
            meta = {"op": "layer", "source": src + f" ({backend})", "layer": layer,
                    "convention": conv, "kwargs": {}}
            y = got[backend]
            if isinstance(y, str):
                g.save(f"onnx_edge_{name}_{backend}", meta, x, w, b, error=y)
            else:
                g.save(f"onnx_edge_{name}_{backend}", meta, x, w, b, y)
    for name, (xs, ws, kw) in EXPLAIN_CASES.items():
        port = _explain_ports(g, name)["onnx"]
        x, w, b = g.rand(*xs), g.rand(*ws), g.rand(ws[1])
        meta = {"op": "conv_transpose", "source": src, "kwargs": kw, "ports": port,
                "shapes": [xs, ws]}
        if port["params"] is None:
            g.save(f"explain_{name}_onnx", meta, x, w, b, error="not expressible")
            continue
        attrs = {"strides": [kw["stride"]] * (len(xs) - 2), **port["params"]}
        got = _run_onnx(*_onnx_model("ConvTranspose", attrs, x, w, b))
        for backend in ("ref", "ort"):
            y = got[backend]
            g.save(f"explain_{name}_onnx_{backend}", meta, x, w, b,
                   **({"error": y} if isinstance(y, str) else {"y": y}))
    _ = numpy_helper


# ------------------------------------------------------------------------------------ keras


KERAS_LAYERS = {  # name: (class, config, input shape); channels_last unless stated
    "conv1d_valid": ("Conv1D", {"filters": 3, "kernel_size": 3, "strides": 2}, (2, 7, 2)),
    "conv1d_causal_d2": ("Conv1D", {"filters": 2, "kernel_size": 3, "padding": "causal",
                                    "dilation_rate": 2}, (1, 6, 2)),
    "conv2d_same_s2": ("Conv2D", {"filters": 3, "kernel_size": (3, 2), "strides": 2,
                                  "padding": "same"}, (1, 5, 6, 2)),
    "conv2d_groups_cf": ("Conv2D", {"filters": 4, "kernel_size": 3, "groups": 2,
                                    "data_format": "channels_first", "use_bias": False},
                         (1, 4, 5, 6)),
    "conv3d_same": ("Conv3D", {"filters": 2, "kernel_size": 2, "padding": "same"}, (1, 3, 4, 3, 1)),
    "depthwise2d_mult2": ("DepthwiseConv2D", {"kernel_size": 3, "strides": 2, "padding": "same",
                                              "depth_multiplier": 2}, (1, 5, 5, 3)),
    "convt1d_valid_default_k_lt_s": ("Conv1DTranspose", {"filters": 2, "kernel_size": 2,
                                                         "strides": 3}, (1, 4, 1)),
    "convt1d_valid_default_k_ge_s": ("Conv1DTranspose", {"filters": 1, "kernel_size": 4,
                                                         "strides": 2}, (1, 3, 2)),
    "convt2d_same_default_even": ("Conv2DTranspose", {"filters": 2, "kernel_size": 4,
                                                      "strides": 2, "padding": "same"},
                                  (1, 3, 4, 2)),
    "convt2d_same_op": ("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "strides": (2, 3),
                                            "padding": "same", "output_padding": (1, 2)},
                        (1, 3, 3, 1)),
    "convt2d_same_op0_odd": ("Conv2DTranspose", {"filters": 1, "kernel_size": 3, "strides": 2,
                                                 "padding": "same", "output_padding": 0},
                             (1, 3, 3, 1)),
    "convt2d_same_op0_even": ("Conv2DTranspose", {"filters": 1, "kernel_size": 4, "strides": 2,
                                                  "padding": "same", "output_padding": 0},
                              (1, 3, 3, 1)),
    "convt2d_valid_op_dil": ("Conv2DTranspose", {"filters": 2, "kernel_size": 2, "strides": 1,
                                                 "padding": "valid", "dilation_rate": 2},
                             (1, 3, 3, 2)),
    "convt2d_valid_op1": ("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2,
                                              "output_padding": 1}, (1, 3, 2, 2)),
    "convt3d_same_cf": ("Conv3DTranspose", {"filters": 1, "kernel_size": 3, "strides": 2,
                                            "padding": "same", "data_format": "channels_first"},
                        (1, 2, 2, 3, 2)),
}


def keras_group(g) -> None:
    import keras
    import tensorflow as tf

    src = f"keras {keras.__version__} (tensorflow {tf.__version__})"
    for name, (cls, cfg, xs) in KERAS_LAYERS.items():
        layer = getattr(keras.layers, cls)(**cfg)
        x = g.rand(*xs)
        meta = {"op": "layer", "source": src, "kwargs": {}}
        try:
            layer.build(xs)
            weights = [g.rand(*w.shape) for w in layer.get_weights()]
            layer.set_weights(weights)
            y = np.asarray(layer(x))
        except Exception as exc:
            meta["layer"] = {"kind": "keras", "class": cls, "config": cfg}
            g.save(f"keras_{name}", meta, x, np.zeros(1), None,
                   error=str(exc).split("\n")[0] or type(exc).__name__)
            continue
        full = {k: v for k, v in layer.get_config().items()
                if k in ("strides", "padding", "data_format", "dilation_rate", "groups",
                         "use_bias", "output_padding", "depth_multiplier")}
        meta["layer"] = {"kind": "keras", "class": cls, "config": full}
        g.save(f"keras_{name}", meta, x, weights[0], weights[1] if len(weights) > 1 else None, y)
    for name, (xs, ws, kw) in EXPLAIN_CASES.items():
        ex = _explain_ports(g, name)
        x, w, b = g.rand(*xs), g.rand(*ws), g.rand(ws[1])
        xl = np.moveaxis(x, 1, -1)  # channels last
        r = len(xs) - 2
        wt = np.transpose(w, (*range(2, 2 + r), 1, 0))  # (k..., C_out, C_in)
        for fw in ("tf", "keras"):
            port = ex[fw]
            meta = {"op": "conv_transpose", "source": src, "kwargs": kw, "ports": port,
                    "shapes": [xs, ws]}
            if port["params"] is None:
                g.save(f"explain_{name}_{fw}", meta, x, w, b, error="not expressible")
                continue
            p = port["params"]
            if fw == "tf":
                sizes = p["output_shape"]
                pad = p["padding"] if isinstance(p["padding"], str) else \
                    [[0, 0], *p["padding"], [0, 0]]
                y = tf.nn.conv_transpose(xl, wt, [xs[0], *sizes, ws[1]], kw["stride"],
                                         padding=pad).numpy() + b
            else:
                layer = getattr(keras.layers, f"Conv{r}DTranspose")(
                    ws[1], ws[2:], strides=kw["stride"], padding=p["padding"],
                    output_padding=p["output_padding"])
                layer.build(xl.shape)
                layer.set_weights([wt, b])
                y = np.asarray(layer(xl))
            g.save(f"explain_{name}_{fw}", meta, x, w, b, np.moveaxis(y, -1, 1))


GROUPS = {"torch": torch_group, "onnx": onnx_group, "keras": keras_group}
