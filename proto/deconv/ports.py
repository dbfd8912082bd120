"""A call's parameters in PyTorch, TensorFlow, Keras and ONNX terms, or why not: pure Python.

Given each spatial axis's geometry and its window (transposed conv: crop before and output size
of the full result, docs/semantics.md) or pads (conv), :func:`explanation` finds each framework's
parameters for the same result, the common PyTorch translation of a TF SAME layer when that one
is off, and a recipe (run uncropped, then slice) when a framework has no parameters for it.

Shared by the core and the client (``deconv.windows`` says why). Standard library only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Axis", "Explanation", "explanation"]

FRAMEWORKS = ("torch", "tf", "keras", "onnx")


@dataclass(frozen=True)
class Axis:
    """One spatial axis: input length n, taps k, stride s, dilation d, and its window or pads.

    Transposed conv: the output is ``full[crop : crop + size]`` (zeros outside ``[0, L)``).
    Conv: ``before``/``after`` pads (after: the rows an output reads) give ``size`` outputs.
    """

    n: int
    k: int
    s: int
    d: int
    size: int
    crop: int = 0
    before: int = 0
    after: int = 0

    @property
    def ek(self) -> int:
        """Effective kernel extent ``d*(k-1) + 1``."""
        return self.d * (self.k - 1) + 1

    @property
    def full(self) -> int:
        """Full transposed-conv length ``L = (n-1)*s + ek``."""
        return (self.n - 1) * self.s + self.ek

    @property
    def crop_after(self) -> int:
        """Rows of the full result after the window (negative: zero rows appended)."""
        return self.full - self.crop - self.size


@dataclass(frozen=True)
class Port:
    """One framework's way to compute the call.

    Attributes
    ----------
    params : dict or None
        The framework's keyword arguments (None: it has none for this call).
    text : str
        What to write, or why it cannot be written and what to do instead.
    """

    params: dict[str, Any] | None
    text: str


@dataclass(frozen=True)
class Explanation:
    """What a call computes per axis and its equivalent in each framework (``str()`` prints it)."""

    op: str
    convention: str
    padding_mode: str
    axes: tuple[Axis, ...]
    ports: dict[str, Port] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-serialisable): the axes and each framework's parameters and text."""
        return {
            "op": self.op,
            "convention": self.convention,
            "padding_mode": self.padding_mode,
            "axes": [asdict(a) | {"full": a.full} for a in self.axes],
            "ports": {k: {"params": p.params, "text": p.text} for k, p in self.ports.items()},
        }

    def __str__(self) -> str:
        count = f"{len(self.axes)} spatial axis" + ("es" if len(self.axes) > 1 else "")
        lines = [f"{self.op} ({count}, convention {self.convention!r})"]
        for i, a in enumerate(self.axes):
            head = f"axis {i}: n={a.n} k={a.k} stride={a.s} dilation={a.d}"
            if self.op == "conv":
                lines.append(f"{head}: pads ({a.before}, {a.after}) -> output {a.size}")
            else:
                lines.append(
                    f"{head}: full result L={a.full}, window [{a.crop}, {a.crop + a.size}) "
                    f"(crop {a.crop} before, {a.crop_after} after) -> output {a.size}"
                )
        names = {"torch": "PyTorch", "tf": "TensorFlow", "keras": "Keras", "onnx": "ONNX"}
        for key in FRAMEWORKS:
            text = self.ports[key].text.split("\n")
            lines.append(f"{names[key] + ':':12s}{text[0]}")
            lines += [" " * 12 + t for t in text[1:]]
        return "\n".join(lines)

    def to_json(self) -> str:
        """:meth:`as_dict` as JSON text."""
        return json.dumps(self.as_dict(), sort_keys=True)


def _ints(values: list[int]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _window_recipe(axes: tuple[Axis, ...]) -> str:
    pad = [(max(0, -a.crop), max(0, -a.crop_after)) for a in axes]
    cuts = ", ".join(f"{a.crop + p}:{a.crop + p + a.size}" for a, (p, _) in zip(axes, pad,
                                                                               strict=True))
    text = f"run uncropped without bias (padding 0: length {_ints([a.full for a in axes])})"
    if any(p for pair in pad for p in pair):
        text += f", zero-pad it by {pad} (before, after)"
    return text + f", take y[..., {cuts}], add the bias"


def _torch_transpose(axes: tuple[Axis, ...]) -> Port:
    pads, ops = [a.crop for a in axes], [a.size - a.full + 2 * a.crop for a in axes]
    if all(p >= 0 and 0 <= o < max(a.s, a.d) for a, p, o in zip(axes, pads, ops, strict=True)):
        params = {"padding": pads, "output_padding": ops}
        return Port(params, f"ConvTranspose{len(axes)}d(padding={_ints(pads)}, "
                            f"output_padding={_ints(ops)})")
    text = "not expressible: PyTorch crops padding=p from both ends, output_padding at the end"
    usual_p = [max(0, a.full - a.size) - max(0, a.full - a.size) // 2 for a in axes]
    usual_op = [a.size - a.full + 2 * p for a, p in zip(axes, usual_p, strict=True)]
    if all(0 <= o < max(a.s, a.d) for a, o in zip(axes, usual_op, strict=True)):
        off = [p - a.crop for a, p in zip(axes, usual_p, strict=True)]
        text += (f"\nthe usual port padding={_ints(usual_p)}, output_padding={_ints(usual_op)} "
                 f"has the right size but is shifted by {_ints(off)} pixel(s)")
    return Port(None, text + "\ninstead: " + _window_recipe(axes))


def _tf_transpose(axes: tuple[Axis, ...]) -> tuple[Port, Port]:
    sizes = [a.size for a in axes]
    same = all((a.n - 1) * a.s + 1 <= a.size <= a.n * a.s
               and a.crop == max(0, a.full - a.size) // 2 for a in axes)
    valid = all(a.crop == 0 and a.full <= a.size < a.full + a.s for a in axes)
    r = len(axes)
    tf: Port
    if same or valid:
        mode = "SAME" if same else "VALID"
        tf = Port({"padding": mode, "output_shape": sizes},
                  f'tf.nn.conv{r}d_transpose(..., output_shape=[N, *{_ints(sizes)}, C_out], '
                  f'padding="{mode}")')
    else:
        after = [max(0, a.crop_after) for a in axes]
        ok = r == 2 and all(a.crop >= 0 and 0 <= a.size - (a.full - a.crop - p) < a.s
                            for a, p in zip(axes, after, strict=True))
        if ok:
            pairs = [[a.crop, p] for a, p in zip(axes, after, strict=True)]
            tf = Port({"padding": pairs, "output_shape": sizes},
                      f"tf.nn.conv2d_transpose(..., output_shape=[N, *{_ints(sizes)}, C_out], "
                      f"padding=[[0, 0], *{pairs}, [0, 0]])")
        else:
            tf = Port(None, "not expressible with SAME/VALID (explicit pads: 2-D only)\n"
                            "instead: " + _window_recipe(axes))
    keras = _keras_transpose(axes)
    return tf, keras


def _keras_transpose(axes: tuple[Axis, ...]) -> Port:
    r = len(axes)
    if all(a.crop == 0 and 0 <= a.size - a.full < a.s for a in axes):
        ops = [a.size - a.full for a in axes]
        if all(a.size == a.full + max(a.s - a.ek, 0) for a in axes):
            return Port({"padding": "valid", "output_padding": None},
                        f'Conv{r}DTranspose(padding="valid")')
        return Port({"padding": "valid", "output_padding": ops},
                    f'Conv{r}DTranspose(padding="valid", output_padding={_ints(ops)})')
    if all(a.size == a.n * a.s and a.crop == max(0, a.full - a.size) // 2 for a in axes):
        return Port({"padding": "same", "output_padding": None},
                    f'Conv{r}DTranspose(padding="same")')
    ops = [a.size - (a.n - 1) * a.s - a.ek % 2 for a in axes]
    if all(0 <= o < a.s and a.crop == max(0, a.full - a.size) // 2
           for a, o in zip(axes, ops, strict=True)):
        return Port({"padding": "same", "output_padding": ops},
                    f'Conv{r}DTranspose(padding="same", output_padding={_ints(ops)})')
    return Port(None, "not expressible as a Conv*DTranspose layer\ninstead: "
                      + _window_recipe(axes) + " (Cropping/ZeroPadding layers)")


def _onnx_transpose(axes: tuple[Axis, ...]) -> Port:
    ops = [max(0, -a.crop_after) for a in axes]
    after = [a.crop_after + o for a, o in zip(axes, ops, strict=True)]
    if all(a.crop >= 0 and o < a.s for a, o in zip(axes, ops, strict=True)):
        pads = [a.crop for a in axes] + after
        params: dict[str, Any] = {"pads": pads}
        text = f"ConvTranspose(pads={_ints(pads)}"
        if any(ops):
            params["output_padding"] = ops
            text += f", output_padding={_ints(ops)}"
        return Port(params, text + ") (onnxruntime and the ONNX reference agree)")
    sizes = [a.size for a in axes]
    for mode, lower in (("SAME_UPPER", False), ("SAME_LOWER", True)):
        totals = [a.full - a.size for a in axes]
        crops = [t - t // 2 if lower else t // 2 for t in totals]
        if crops == [a.crop for a in axes]:
            return Port({"auto_pad": mode, "output_shape": sizes},
                        f'ConvTranspose(auto_pad="{mode}", output_shape={_ints(sizes)}) (the ONNX '
                        f"reference; onnxruntime clamps the negative total to 0 or refuses)")
    return Port(None, "not expressible as ConvTranspose attributes\ninstead: "
                + _window_recipe(axes))


_FILL_NAMES = {"reflect": ("REFLECT", "reflect"), "replicate": (None, "edge"),
               "circular": (None, "wrap")}


def _conv_ports(axes: tuple[Axis, ...], fill: str) -> dict[str, Port]:
    r = len(axes)
    before, after = [a.before for a in axes], [a.after for a in axes]
    same = all((a.before, a.after) == _same_pads(a) for a in axes)
    valid = not any(before + after)
    ports: dict[str, Port] = {}
    mode = "" if fill == "zeros" else f', padding_mode="{fill}"'
    if before == after:
        ports["torch"] = Port({"padding": before, "padding_mode": fill},
                              f"Conv{r}d(padding={_ints(before)}{mode})")
    elif same and all(a.s == 1 for a in axes):
        ports["torch"] = Port({"padding": "same", "padding_mode": fill},
                              f'Conv{r}d(padding="same"{mode})')
    else:
        flat = [v for a in reversed(axes) for v in (a.before, a.after)]
        how = "constant" if fill == "zeros" else fill
        ports["torch"] = Port(None, f"not expressible: Conv{r}d pads both sides alike\ninstead: "
                                    f'F.pad(x, {_ints(flat)}, mode="{how}"), then padding=0')
    pairs = [[a.before, a.after] for a in axes]
    tf_fill, onnx_fill = _FILL_NAMES.get(fill, ("CONSTANT", "constant"))
    if fill != "zeros":
        pre = (f'tf.pad(x, [[0, 0], *{pairs}, [0, 0]], mode="{tf_fill}"), then padding="VALID"'
               if tf_fill else f"no tf.pad mode fills like {fill!r}: pad by hand, then VALID")
        ports["tf"] = Port(None, pre)
        ports["keras"] = Port(None, f"no Keras padding layer fills like {fill!r}: pad first")
        ports["onnx"] = Port(None, f'Pad(mode="{onnx_fill}", pads=...) then Conv(pads=0)')
        return ports
    if same or valid:
        word = "SAME" if same else "VALID"
        ports["tf"] = Port({"padding": word}, f'tf.nn.conv{r}d(..., padding="{word}")')
        ports["keras"] = Port({"padding": word.lower()}, f'Conv{r}D(padding="{word.lower()}")')
    else:
        ports["tf"] = (Port({"padding": pairs}, f"tf.nn.conv2d(..., padding=[[0, 0], *{pairs}, "
                                                f"[0, 0]])") if r == 2 else
                       Port(None, f"explicit pads are 2-D only: tf.pad(x, [[0, 0], *{pairs}, "
                                  f'[0, 0]]), then padding="VALID"'))
        causal = r == 1 and before == [axes[0].ek - 1] and after == [0]
        ports["keras"] = (Port({"padding": "causal"}, 'Conv1D(padding="causal")') if causal else
                          Port(None, f"ZeroPadding{r}D({pairs}), then Conv{r}D(padding=\"valid\")"))
    pads = before + after
    ports["onnx"] = Port({"pads": pads}, f"Conv(pads={_ints(pads)})")
    return ports


def _same_pads(a: Axis) -> tuple[int, int]:
    total = max(0, (-(-a.n // a.s) - 1) * a.s + a.ek - a.n)
    return total // 2, total - total // 2


def explanation(op: str, axes: list[Axis], convention: str = "default",
                padding_mode: str = "zeros") -> Explanation:
    """The per-axis report and each framework's equivalent of one call.

    Parameters
    ----------
    op : {"conv", "conv_transpose"}
    axes : list of Axis
        Every spatial axis, windows (transposed conv) or pads (conv) already resolved.
    convention : str
        The convention the window was resolved by (for the report).
    padding_mode : str
        conv's fill mode.

    Returns
    -------
    Explanation
    """
    t = tuple(axes)
    if op == "conv":
        ports = _conv_ports(t, padding_mode)
    else:
        tf, keras = _tf_transpose(t)
        ports = {"torch": _torch_transpose(t), "tf": tf, "keras": keras, "onnx": _onnx_transpose(t)}
    return Explanation(op, convention, padding_mode, t, ports)
