"""The implementations the benchmark times: deconv_core, PyTorch and onnxruntime.

Each backend has a ``name``, ``unavailable()`` (None when usable, else the reason it is skipped)
and ``prepare(case, x, w, b)`` returning a zero-argument callable that computes the case and
returns a numpy array. Preparation (model building, weight packing, tensor wrapping) is done
once, outside the timed callable. PyTorch and onnxruntime are optional: importing this module
never imports them.

The correctness column's float64 numpy oracle is the core tests' own, ``tests/core/oracle.py``
(one reference for tests and benchmark). ``tests`` has no ``__init__.py``, so it is imported as a
namespace package: run the benchmark from the repository root (``python -m bench``), as for
``bench`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bench.cases import Case
from tests.core import oracle

__all__ = [
    "Backend",
    "DeconvBackend",
    "OrtBackend",
    "ReferenceBackend",
    "TorchBackend",
    "default_backends",
    "torch_float64",
]

Runner = Callable[[], np.ndarray]


class Backend:
    """Base class: a named implementation of a :class:`~bench.cases.Case`."""

    name = "base"

    def unavailable(self) -> str | None:
        """None if the backend can run, otherwise why not (shown as a skip)."""
        return None

    def version(self) -> str | None:
        """Version string of the underlying library."""
        return None

    def prepare(self, case: Case, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> Runner:
        """Return a callable computing ``case`` on ``(x, w, b)``."""
        raise NotImplementedError


class DeconvBackend(Backend):
    """deconv_core.conv / deconv_core.conv_transpose, channels-first, PyTorch weight layout.

    With ``prepared_weights`` each case is planned once and its weight's kernel-ready form kept
    (``deconv_core.prepare_weight``, as the server's weight cache does and as onnxruntime
    prepacks the initializers of its session); every call then runs ``execute`` on the plan.
    """

    name = "deconv"

    def __init__(self, prepared_weights: bool = False) -> None:
        self.prepared_weights = prepared_weights

    def unavailable(self) -> str | None:
        try:
            import deconv_core
        except ImportError as exc:  # pragma: no cover - core is part of the repo
            return f"deconv_core not importable: {exc}"
        missing = [f for f in ("conv", "conv_transpose") if not hasattr(deconv_core, f)]
        return f"deconv_core lacks {', '.join(missing)}" if missing else None

    def version(self) -> str | None:
        try:
            from importlib.metadata import version

            return version("deconv")
        except Exception:  # pragma: no cover - not installed as a distribution
            return None

    @staticmethod
    def plan(case: Case) -> Any:
        """deconv_core's float32 plan of ``case`` (with a bias)."""
        import deconv_core

        p = case.params()
        kw = {"stride": p["stride"], "padding": p["padding"], "dilation": p["dilation"],
              "groups": case.groups}
        if case.op == "conv_transpose":
            return deconv_core.plan_conv_transpose(
                case.input_shape, case.weight_shape, (case.out_channels,),
                output_padding=p["output_padding"], **kw)
        return deconv_core.plan_conv(case.input_shape, case.weight_shape,
                                     (case.out_channels,), **kw)

    def route(self, case: Case) -> str:
        """The compute route deconv_core's planner picks for ``case`` (float32)."""
        return self.plan(case).route

    def prepare(self, case: Case, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> Runner:
        import deconv_core

        if self.prepared_weights:
            plan = self.plan(case)
            ready = deconv_core.prepare_weight(plan, w)
            return lambda: deconv_core.execute(plan, x, w, b, prepared=ready)
        p = case.params()
        if case.op == "conv_transpose":
            return lambda: deconv_core.conv_transpose(
                x, w, b, stride=p["stride"], padding=p["padding"],
                output_padding=p["output_padding"], dilation=p["dilation"], groups=case.groups)
        return lambda: deconv_core.conv(
            x, w, b, stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
            groups=case.groups)


class ReferenceBackend(Backend):
    """The float64 numpy oracle ``tests/core/oracle.py`` (used for errors, never timed)."""

    name = "reference"

    def prepare(self, case: Case, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> Runner:
        p = case.params()
        if case.op == "conv_transpose":
            return lambda: oracle.conv_transpose(
                x, w, b, stride=p["stride"], padding=p["padding"],
                output_padding=p["output_padding"], dilation=p["dilation"], groups=case.groups)
        return lambda: oracle.conv(x, w, b, stride=p["stride"], padding=p["padding"],
                                   dilation=p["dilation"], groups=case.groups)


class TorchBackend(Backend):
    """torch.nn.functional.conv{,_transpose}{1,2,3}d under inference_mode, fixed threads."""

    name = "torch"

    def __init__(self, threads: int = 2) -> None:
        self.threads = threads

    def unavailable(self) -> str | None:
        try:
            import torch
        except ImportError as exc:
            return f"torch not installed ({exc.name})"
        torch.set_num_threads(self.threads)
        return None

    def version(self) -> str | None:
        import torch

        return torch.__version__

    def prepare(self, case: Case, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> Runner:
        import torch
        import torch.nn.functional as F  # noqa: N812 - the usual spelling

        p = case.params()
        tx, tw, tb = (torch.from_numpy(np.ascontiguousarray(a)) for a in (x, w, b))
        if case.op == "conv_transpose":
            fn = getattr(F, f"conv_transpose{case.rank}d")
            kwargs: dict[str, Any] = {"output_padding": p["output_padding"]}
        else:
            fn = getattr(F, f"conv{case.rank}d")
            kwargs = {}

        def run() -> np.ndarray:
            with torch.inference_mode():
                return fn(tx, tw, tb, stride=p["stride"], padding=p["padding"],
                          dilation=p["dilation"], groups=case.groups, **kwargs).numpy()

        return run


def torch_float64(case: Case, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The case computed by PyTorch in float64 (an accuracy reference, never timed)."""
    import torch

    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    with torch.inference_mode():
        return TorchBackend().prepare(case, x64, w64, b64)()


class OrtBackend(Backend):
    """A one-node ONNX Conv/ConvTranspose model (weights as initializers) on onnxruntime's CPU
    provider with ``intra_op_num_threads=threads``, one inter-op thread, sequential execution."""

    name = "ort"
    opset = 17
    ir_version = 8

    def __init__(self, threads: int = 2) -> None:
        self.threads = threads

    def unavailable(self) -> str | None:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return f"onnx/onnxruntime not installed ({exc.name})"
        return None

    def version(self) -> str | None:
        import onnxruntime

        return onnxruntime.__version__

    def build_model(self, case: Case, w: np.ndarray, b: np.ndarray) -> bytes:
        """Serialized one-node ONNX model computing ``case`` with ``w``/``b`` baked in."""
        from onnx import TensorProto, helper, numpy_helper

        p = case.params()
        attrs: dict[str, Any] = {
            "kernel_shape": list(case.kernel),
            "strides": list(p["stride"]),
            "pads": list(p["padding"]) * 2,  # all begins, then all ends
            "dilations": list(p["dilation"]),
            "group": case.groups,
        }
        op_type = "Conv"
        if case.op == "conv_transpose":
            op_type = "ConvTranspose"
            attrs["output_padding"] = list(p["output_padding"])
        node = helper.make_node(op_type, ["X", "W", "B"], ["Y"], **attrs)
        graph = helper.make_graph(
            [node], f"bench_{case.id}",
            [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(case.input_shape))],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, list(case.output_shape))],
            initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = self.ir_version
        return model.SerializeToString()

    def prepare(self, case: Case, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> Runner:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(self.build_model(case, w, b), opts,
                                    providers=["CPUExecutionProvider"])
        feed = {"X": np.ascontiguousarray(x)}
        return lambda: sess.run(None, feed)[0]


def default_backends(
    threads: int = 2, *, torch: bool = True, ort: bool = True, prepared_weights: bool = False
) -> list[Backend]:
    """deconv first, then the competitors that were not switched off."""
    out: list[Backend] = [DeconvBackend(prepared_weights)]
    if torch:
        out.append(TorchBackend(threads))
    if ort:
        out.append(OrtBackend(threads))
    return out
