"""The nine benchmark cases (T1-T7 transposed, C1-C2 conv), as data, with shapes and FLOP counts.

Every case is float32, channels-first, PyTorch-style parameters (symmetric integer padding plus
``output_padding`` for transposed convolution). The FLOP count is ``2 * MACs`` where the MACs
are the multiply-adds of the direct algorithm: for a transposed convolution every input element
meets every tap of its group's kernel (``N * C_in * prod(n) * C_out/groups * prod(k)``, cropped
outputs included, the usual convention); for a convolution every output element is a dot product
of length ``C_in/groups * prod(k)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["CASES", "Case", "make_inputs", "select_cases"]


def _per_axis(value: int | Sequence[int], rank: int) -> tuple[int, ...]:
    """Broadcast an int to ``rank`` axes, or check a per-axis sequence has ``rank`` entries."""
    if isinstance(value, int):
        return (value,) * rank
    out = tuple(int(v) for v in value)
    if len(out) != rank:
        raise ValueError(f"expected {rank} per-axis values, got {out}")
    return out


@dataclass(frozen=True)
class Case:
    """One benchmark case: an operation with its input and weight shapes and parameters.

    Parameters
    ----------
    id : str
        Short name shown in the table (``"T1"``).
    op : str
        ``"conv_transpose"`` or ``"conv"``.
    input_shape : tuple of int
        ``(N, C_in, *spatial)``, channels-first.
    weight_shape : tuple of int
        PyTorch layout: ``(C_in, C_out/groups, *k)`` for transposed convolution,
        ``(C_out, C_in/groups, *k)`` for convolution.
    stride, padding, dilation, output_padding : int or tuple of int
        PyTorch-style parameters (``output_padding`` is for transposed convolution only).
    groups : int
        Number of groups.
    note : str
        Free text shown in reports (``"1-D"``, ``"depthwise"``...).
    """

    id: str
    op: str
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    stride: int | tuple[int, ...] = 1
    padding: int | tuple[int, ...] = 0
    dilation: int | tuple[int, ...] = 1
    output_padding: int | tuple[int, ...] = 0
    groups: int = 1
    note: str = ""

    def __post_init__(self) -> None:
        if self.op not in ("conv", "conv_transpose"):
            raise ValueError(f"case {self.id}: unknown op {self.op!r}")
        if len(self.input_shape) != len(self.weight_shape) or self.rank not in (1, 2, 3):
            raise ValueError(f"case {self.id}: input {self.input_shape} / weight "
                             f"{self.weight_shape} do not give a 1-3 d convolution")

    @property
    def rank(self) -> int:
        """Number of spatial axes."""
        return len(self.input_shape) - 2

    @property
    def kernel(self) -> tuple[int, ...]:
        """Kernel sizes per spatial axis."""
        return tuple(self.weight_shape[2:])

    def params(self) -> dict[str, tuple[int, ...]]:
        """Per-axis ``stride``, ``padding``, ``dilation``, ``output_padding`` tuples."""
        r = self.rank
        return {
            "stride": _per_axis(self.stride, r),
            "padding": _per_axis(self.padding, r),
            "dilation": _per_axis(self.dilation, r),
            "output_padding": _per_axis(self.output_padding, r),
        }

    @property
    def out_channels(self) -> int:
        """Number of output channels."""
        if self.op == "conv_transpose":
            return self.weight_shape[1] * self.groups
        return self.weight_shape[0]

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Full output shape ``(N, C_out, *spatial)``, PyTorch's size formulas."""
        p = self.params()
        sizes = []
        for ax in range(self.rank):
            n, k = self.input_shape[2 + ax], self.kernel[ax]
            s, pad, d = p["stride"][ax], p["padding"][ax], p["dilation"][ax]
            ek = d * (k - 1) + 1
            if self.op == "conv_transpose":
                sizes.append((n - 1) * s + ek - 2 * pad + p["output_padding"][ax])
            else:
                sizes.append((n + 2 * pad - ek) // s + 1)
        return (self.input_shape[0], self.out_channels, *sizes)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the direct algorithm (see the module docstring)."""
        taps = math.prod(self.kernel)
        if self.op == "conv_transpose":
            c_out_per_group = self.weight_shape[1]
            return math.prod(self.input_shape) * c_out_per_group * taps
        c_in_per_group = self.weight_shape[1]
        return math.prod(self.output_shape) * c_in_per_group * taps

    @property
    def flops(self) -> int:
        """Floating-point operations, ``2 * macs``."""
        return 2 * self.macs

    def describe(self) -> str:
        """One-line human description of the case."""
        p = self.params()
        bits = [f"x{self.input_shape}", f"w{self.weight_shape}"]
        for name in ("stride", "padding", "dilation", "output_padding"):
            if any(v != (1 if name in ("stride", "dilation") else 0) for v in p[name]):
                bits.append(f"{name}={p[name][0] if len(set(p[name])) == 1 else p[name]}")
        if self.groups != 1:
            bits.append(f"groups={self.groups}")
        return f"{self.op} " + " ".join(bits)

    def to_dict(self) -> dict:
        """JSON-ready description (shapes, parameters, FLOPs)."""
        return {
            "id": self.id,
            "op": self.op,
            "note": self.note,
            "input_shape": list(self.input_shape),
            "weight_shape": list(self.weight_shape),
            "output_shape": list(self.output_shape),
            **{k: list(v) for k, v in self.params().items()},
            "groups": self.groups,
            "flops": self.flops,
        }


#: The benchmark table (the cases README.md's results and tests/test_bench_smoke.py name).
CASES: tuple[Case, ...] = (
    Case("T1", "conv_transpose", (8, 256, 16, 16), (256, 128, 4, 4), stride=2, padding=1),
    Case("T2", "conv_transpose", (1, 64, 128, 128), (64, 32, 2, 2), stride=2),
    Case("T3", "conv_transpose", (1, 21, 16, 16), (21, 21, 64, 64), stride=32, padding=16),
    Case("T4", "conv_transpose", (1, 512, 2048), (512, 256, 16), stride=8, padding=4,
         note="1-D"),
    Case("T5", "conv_transpose", (1, 32, 16, 16, 16), (32, 16, 3, 3, 3), stride=2, padding=1,
         output_padding=1, note="3-D"),
    Case("T6", "conv_transpose", (8, 64, 32, 32), (64, 1, 4, 4), stride=2, padding=1,
         groups=64, note="depthwise"),
    Case("T7", "conv_transpose", (4, 64, 32, 32), (64, 64, 3, 3), padding=2, dilation=2,
         note="dilated"),
    Case("C1", "conv", (8, 64, 56, 56), (64, 64, 3, 3), padding=1),
    Case("C2", "conv", (8, 128, 32, 32), (256, 128, 3, 3), stride=2, padding=1),
)


def select_cases(ids: str | Iterable[str] | None, cases: Sequence[Case] = CASES) -> list[Case]:
    """Pick cases by id, in the order given.

    Parameters
    ----------
    ids : str, iterable of str or None
        Comma-separated ids (``"T1,C1"``, case-insensitive) or a list of ids; None or ``"all"``
        selects every case.
    cases : sequence of Case
        The table to pick from.

    Returns
    -------
    list of Case

    Raises
    ------
    ValueError
        If an id is not in the table.
    """
    if ids is None or (isinstance(ids, str) and ids.strip().lower() in ("", "all")):
        return list(cases)
    wanted = ids.split(",") if isinstance(ids, str) else list(ids)
    by_id = {c.id.upper(): c for c in cases}
    out = []
    for raw in wanted:
        key = raw.strip().upper()
        if not key:
            continue
        if key not in by_id:
            raise ValueError(f"unknown case {raw!r}; known: {', '.join(by_id)}")
        out.append(by_id[key])
    return out


def make_inputs(case: Case, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic float32 ``(x, weight, bias)`` for a case.

    Weights are scaled by ``1/sqrt(fan_in)`` so outputs stay of order one and the absolute
    error columns are comparable across cases.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.input_shape, dtype=np.float32)
    fan = math.prod(case.weight_shape[1:])
    w = rng.standard_normal(case.weight_shape, dtype=np.float32)
    w *= np.float32(1.0 / math.sqrt(fan))
    b = rng.standard_normal(case.out_channels, dtype=np.float32)
    return x, w, b
