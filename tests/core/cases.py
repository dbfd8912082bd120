"""Compact, deterministic case lists for the core-vs-oracle tests.

Every case is tiny (spatial sizes <= 7, channels <= 4) and reproducible: its arrays come from
a generator seeded by the case id. The lists cover rank x stride x padding mode x dilation x
groups (with dtype, data_format, weight_format, memory layout and bias cycled through), the
dtype x format product, every legal output_padding / output_shape of small strided geometries,
and named edge cases.
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import oracle
from .helpers import rand, with_layout

CT, CV = "conv_transpose", "conv"
DTYPES = ("float32", "float64", "float16")
DATA_FORMATS = ("channels_first", "channels_last")
WEIGHT_FORMATS = ("torch", "tf")
LAYOUTS = ("contiguous", "sliced", "transposed", "readonly")
PAD_MODES = ("int", "axes", "pairs", "valid", "same", "same_lower")


@dataclass(frozen=True)
class Case:
    """One call of the core: geometry, parameters, dtype, layouts."""

    op: str
    n: tuple[int, ...]
    k: tuple[int, ...]
    C_in: int = 1
    C_out: int = 1
    groups: int = 1
    N: int = 1
    stride: Any = 1
    dilation: Any = 1
    padding: Any = 0
    output_padding: Any = 0
    output_shape: Any = None
    dtype: str = "float32"
    data_format: str = "channels_first"
    weight_format: str = "torch"
    bias: bool = True
    layout: str = "contiguous"
    tag: str = field(default="", compare=False)

    @property
    def rank(self) -> int:
        return len(self.n)

    def kwargs(self) -> dict:
        kw: dict[str, Any] = {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "data_format": self.data_format,
            "weight_format": self.weight_format,
        }
        if self.op == CT:
            kw["output_padding"] = self.output_padding
            kw["output_shape"] = self.output_shape
        return kw

    @property
    def id(self) -> str:
        kw = self.kwargs()
        parts = [self.tag, self.op, f"N{self.N}C{self.C_in}>{self.C_out}", f"n{list(self.n)}",
                 f"k{list(self.k)}", f"s{kw['stride']}", f"d{kw['dilation']}", f"g{self.groups}",
                 f"p{kw['padding']}"]
        if self.op == CT:
            parts += [f"op{self.output_padding}", f"os{self.output_shape}"]
        parts += [self.dtype, self.data_format[9:], self.weight_format, self.layout,
                  "b" if self.bias else "nob"]
        return "-".join(str(p) for p in parts if p != "").replace(" ", "")

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """x, weight, bias in the case's formats, dtype and memory layout."""
        rng = np.random.default_rng(zlib.crc32(self.id.encode()))
        r, g = self.rank, self.groups
        x = rand(rng, (self.N, self.C_in, *self.n), self.dtype)
        if self.op == CT:
            w = rand(rng, (self.C_in, self.C_out // g, *self.k), self.dtype)
        else:
            w = rand(rng, (self.C_out, self.C_in // g, *self.k), self.dtype)
        b = rand(rng, (self.C_out,), self.dtype) if self.bias else None
        if self.data_format == "channels_last":
            x = np.moveaxis(x, 1, -1)
        if self.weight_format == "tf":
            w = np.transpose(w, (*range(2, r + 2), 1, 0))
        x, w = with_layout(x, self.layout), with_layout(w, self.layout)
        b = None if b is None else with_layout(b, self.layout)
        return x, w, b


def _full_len(n: int, k: int, s: int, d: int) -> int:
    return (n - 1) * s + d * (k - 1) + 1


def _per(v: Any, r: int) -> tuple[int, ...]:
    return (v,) * r if isinstance(v, int) else tuple(v)


def _replace(case: Case, **changes) -> Case:
    fields = {f: getattr(case, f) for f in case.__dataclass_fields__}
    fields.update(changes)
    return Case(**fields)


# --------------------------------------------------------------------------- main grid


def _grid_case(op: str, rank: int, stride: int, mode: str, dil: int, groups: int, i: int) -> Case:
    rng = np.random.default_rng(7919 * i + (op == CV))
    nmax, kmax = {1: (7, 5), 2: (5, 4), 3: (4, 3)}[rank]
    s = [stride] * rank
    d = [dil] * rank
    mixed = rank > 1 and i % 5 == 0  # per-axis stride / dilation on some cases
    if mixed:
        s = [stride] + [int(v) for v in rng.integers(1, 4, rank - 1)]
        d = [dil] + [int(v) for v in rng.integers(1, 3, rank - 1)]
    n = [int(v) for v in rng.integers(1, nmax + 1, rank)]
    k = [int(v) for v in rng.integers(1, kmax + 1, rank)]
    if op == CV and mode == "valid":  # the kernel must fit in the input
        n = [max(na, 2) for na in n]
        k = [min(ka, (na - 1) // da + 1) for ka, na, da in zip(k, n, d, strict=True)]
    ek = [da * (ka - 1) + 1 for ka, da in zip(k, d, strict=True)]
    Lx = [_full_len(*t) for t in zip(n, k, s, d, strict=True)]
    output_padding: Any = 0
    output_shape = None
    if op == CT:
        if mode in ("int", "axes", "pairs"):
            op_ax = [int(rng.integers(0, max(sa, da))) for sa, da in zip(s, d, strict=True)]
            output_padding = op_ax[0] if (i % 2 and len(set(op_ax)) == 1) else op_ax
        if mode == "int":
            padding: Any = int(rng.integers(0, min(3, (min(Lx) - 1) // 2) + 1))
        elif mode == "axes":
            padding = [int(rng.integers(0, min(3, (La - 1) // 2) + 1)) for La in Lx]
        elif mode == "pairs":
            padding = []
            for La in Lx:
                pb = int(rng.integers(0, min(3, La - 1) + 1))
                pa = int(rng.integers(0, min(3, La - 1 - pb) + 1))
                padding.append((pb, pa))
        else:
            padding = mode
            if i % 3:  # a random legal output_shape, else the default
                rngs = [oracle.transpose_legal_out_range(*t, mode)
                        for t in zip(n, k, s, d, strict=True)]
                output_shape = [int(rng.integers(lo, hi + 1)) for lo, hi in rngs]
    else:
        lo = [max(0, -(-(e - na) // 2)) for e, na in zip(ek, n, strict=True)]
        if mode == "int":
            padding = int(rng.integers(max(lo), max(lo) + 3))
        elif mode == "axes":
            padding = [int(rng.integers(la, la + 3)) for la in lo]
        elif mode == "pairs":
            padding = []
            for e, na in zip(ek, n, strict=True):
                pb = int(rng.integers(0, 4))
                pa = int(rng.integers(max(0, e - na - pb), max(0, e - na - pb) + 3))
                padding.append((pb, pa))
        else:
            padding = mode
    Cig, Cog = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    return Case(
        op=op, n=tuple(n), k=tuple(k), C_in=groups * Cig, C_out=groups * Cog, groups=groups,
        N=int(rng.integers(1, 3)), stride=s if mixed else stride, dilation=d if mixed else dil,
        padding=padding, output_padding=output_padding, output_shape=output_shape,
        dtype=DTYPES[i % 3], data_format=DATA_FORMATS[(i // 3) % 2],
        weight_format=WEIGHT_FORMATS[(i // 2) % 2], layout=LAYOUTS[(i // 7) % 4],
        bias=i % 4 != 0, tag="grid",
    )


def grid_cases(op: str) -> list[Case]:
    """rank x stride x padding mode x dilation x groups, other axes cycled (216 cases)."""
    out = []
    combos = itertools.product((1, 2, 3), (1, 2, 3), PAD_MODES, (1, 2), (1, 2))
    for i, (rank, stride, mode, dil, groups) in enumerate(combos):
        out.append(_grid_case(op, rank, stride, mode, dil, groups, i))
    return out


# --------------------------------------------------------------------------- dtype x format


_BASES = [
    Case(CT, n=(3, 4), k=(3, 3), C_in=2, C_out=4, groups=2, N=2, stride=2, padding=1,
         output_padding=1),
    Case(CT, n=(5,), k=(4,), C_in=3, C_out=2, stride=3, padding="same"),
    Case(CT, n=(2, 3, 2), k=(2, 2, 3), C_in=2, C_out=2, stride=(2, 1, 2), padding="valid",
         output_shape=(5, 4, 6)),
    Case(CV, n=(5, 6), k=(3, 3), C_in=4, C_out=2, groups=2, stride=2, padding="same"),
    Case(CV, n=(7,), k=(3,), C_in=2, C_out=3, dilation=2, padding=[(2, 1)]),
    Case(CV, n=(3, 4, 3), k=(2, 2, 2), C_in=2, C_out=2, N=2, padding=1, stride=(1, 2, 1)),
]


def format_cases() -> list[Case]:
    """Every dtype x data_format x weight_format on a few base geometries (72 cases)."""
    out = []
    for base in _BASES:
        for dt, df, wf in itertools.product(DTYPES, DATA_FORMATS, WEIGHT_FORMATS):
            out.append(_replace(base, dtype=dt, data_format=df, weight_format=wf, tag="fmt"))
    return out


def layout_cases() -> list[Case]:
    """Non-contiguous and read-only inputs (x, weight and bias alike)."""
    out = []
    for base in (_BASES[0], _BASES[2], _BASES[3], _BASES[5]):
        layouts = (*LAYOUTS[1:], "reversed")
        for lay, dt, df in itertools.product(layouts, ("float32", "float64"), DATA_FORMATS):
            out.append(_replace(base, layout=lay, dtype=dt, data_format=df, tag="layout"))
    return out




# --------------------------------------------------------------------------- output size ranges


def output_size_cases() -> list[Case]:
    """Every legal output_padding and output_shape of small strided / dilated geometries."""
    out = []
    n = 3
    for s, d, k in itertools.product((2, 3), (1, 2, 3), (1, 2, 3)):
        for p in (0, 1):
            for op in range(max(s, d)):
                out.append(Case(CT, n=(n,), k=(k,), C_out=2, stride=s, dilation=d, padding=p,
                                output_padding=op, tag="op"))
        for mode in (1, (1, 0), (0, 2), "valid", "same", "same_lower"):
            per_axis = mode if isinstance(mode, str | int) else tuple(mode)
            lo, hi = oracle.transpose_legal_out_range(n, k, s, d, per_axis)
            padding = [mode] if isinstance(mode, tuple) else mode
            for size in range(max(lo, 1), hi + 1):
                out.append(Case(CT, n=(n,), k=(k,), C_out=2, stride=s, dilation=d,
                                padding=padding, output_shape=(size,), tag="os"))
    # per-axis combinations on 2-d and 3-d
    for op in itertools.product(range(2), range(3)):
        out.append(Case(CT, n=(2, 3), k=(3, 2), C_in=2, C_out=2, stride=(2, 3), padding=(1, 0),
                        output_padding=op, dtype="float64", tag="op2d"))
    for mode in ("valid", "same", "same_lower"):
        ranges = [oracle.transpose_legal_out_range(nn, kk, ss, 1, mode)
                  for nn, kk, ss in ((2, 3, 2), (3, 2, 3))]
        for shape in itertools.product(*(range(lo, hi + 1) for lo, hi in ranges)):
            out.append(Case(CT, n=(2, 3), k=(3, 2), C_in=2, C_out=2, stride=(2, 3),
                            padding=mode, output_shape=shape, data_format="channels_last",
                            tag="os2d"))
    for op in itertools.product(range(2), repeat=3):
        out.append(Case(CT, n=(2, 2, 2), k=(3, 2, 3), C_out=2, stride=2, padding=1,
                        output_padding=op, weight_format="tf", tag="op3d"))
    return out


# --------------------------------------------------------------------------- named edge cases


def edge_cases() -> list[Case]:
    """Named corner cases, each in float32 and float64."""
    E = []
    # output_padding >= stride but < dilation
    E += [Case(CT, n=(4,), k=(2,), C_out=2, stride=1, dilation=3, output_padding=op,
               tag="op_ge_stride") for op in (1, 2)]
    E.append(Case(CT, n=(3, 2), k=(2, 3), C_in=2, C_out=1, stride=(2, 1), dilation=(3, 2),
                  output_padding=(2, 1), padding=(1, 0), tag="op_ge_stride"))
    # odd total crop under same / same_lower (T = L - out odd), and odd total conv pad
    for mode in ("same", "same_lower"):
        E.append(Case(CT, n=(3,), k=(3,), C_out=2, stride=2, padding=mode, tag="odd_crop"))
        E.append(Case(CT, n=(2, 3), k=(3, 5), C_in=2, C_out=2, stride=2, padding=mode,
                      tag="odd_crop"))
        E.append(Case(CT, n=(2, 2, 3), k=(2, 3, 4), stride=(1, 2, 1), padding=mode,
                      tag="odd_crop"))
        E.append(Case(CV, n=(6, 5), k=(3, 2), C_in=2, C_out=2, stride=2, padding=mode,
                      tag="odd_pad"))
        E.append(Case(CV, n=(4,), k=(2,), C_out=2, dilation=3, padding=mode, tag="odd_pad"))
    # kernel smaller than stride: zero gaps between the scattered taps
    E.append(Case(CT, n=(3, 2), k=(2, 1), C_out=2, stride=(3, 4), tag="k_lt_s"))
    E.append(Case(CT, n=(4,), k=(1,), stride=4, padding="valid", output_shape=(16,),
                  tag="k_lt_s"))
    E.append(Case(CT, n=(2, 3), k=(2, 2), C_in=2, C_out=2, stride=3, padding="same",
                  tag="k_lt_s"))
    E.append(Case(CV, n=(7, 6), k=(1, 2), C_out=2, stride=(3, 4), tag="k_lt_s"))
    # padding larger than the kernel's reach: outputs that are the bias alone
    E.append(Case(CV, n=(2,), k=(1,), C_out=2, padding=3, tag="pad_beyond"))
    E.append(Case(CV, n=(2, 3), k=(2, 2), C_out=3, padding=[(4, 0), (0, 3)], tag="pad_beyond"))
    E.append(Case(CV, n=(1, 1, 2), k=(1, 2, 1), padding=2, stride=2, tag="pad_beyond"))
    E.append(Case(CT, n=(2,), k=(1,), C_out=2, stride=3, padding="same", output_shape=(6,),
                  tag="out_beyond_L"))
    E.append(Case(CT, n=(2, 2), k=(2, 1), C_out=2, stride=(3, 2), padding="valid",
                  output_shape=(6, 4), tag="out_beyond_L"))
    E.append(Case(CT, n=(3,), k=(2,), C_out=2, stride=3, padding=[(0, 0)], output_padding=2,
                  tag="out_beyond_L"))
    # 1x1 kernels
    E.append(Case(CT, n=(3, 4), k=(1, 1), C_in=3, C_out=2, tag="k1"))
    E.append(Case(CT, n=(3, 4), k=(1, 1), C_in=2, C_out=4, groups=2, stride=2, tag="k1"))
    E.append(Case(CV, n=(3, 4), k=(1, 1), C_in=3, C_out=2, stride=2, tag="k1"))
    E.append(Case(CV, n=(2, 3, 2), k=(1, 1, 1), C_in=2, C_out=2, tag="k1"))
    # size-1 axes (input, kernel, channels, batch)
    E.append(Case(CT, n=(1, 5), k=(1, 3), stride=2, tag="size1"))
    E.append(Case(CT, n=(1,), k=(1,), tag="size1"))
    E.append(Case(CT, n=(1, 1, 1), k=(2, 1, 3), stride=(2, 3, 1), tag="size1"))
    E.append(Case(CV, n=(1, 1, 4), k=(1, 1, 2), tag="size1"))
    E.append(Case(CV, n=(1,), k=(1,), tag="size1"))
    # asymmetric (before, after) pads
    E.append(Case(CT, n=(3, 3), k=(3, 4), C_out=2, stride=2, padding=[(0, 2), (3, 1)],
                  output_padding=(1, 0), tag="asym"))
    E.append(Case(CV, n=(3, 4, 2), k=(2, 2, 2), C_out=2, padding=[(2, 0), (0, 1), (1, 3)],
                  tag="asym"))
    # depthwise groups, with and without a channel multiplier
    E.append(Case(CT, n=(3, 3), k=(3, 3), C_in=4, C_out=4, groups=4, stride=2, padding=1,
                  tag="depthwise"))
    E.append(Case(CT, n=(4,), k=(3,), C_in=2, C_out=4, groups=2, stride=2, tag="depthwise"))
    E.append(Case(CV, n=(4, 4), k=(3, 3), C_in=4, C_out=4, groups=4, padding=1,
                  tag="depthwise"))
    E.append(Case(CV, n=(5,), k=(2,), C_in=2, C_out=4, groups=2, stride=2, tag="depthwise"))
    # batch > 1
    E.append(Case(CT, n=(2, 3), k=(2, 2), C_in=4, C_out=2, groups=2, N=3, stride=2,
                  tag="batch"))
    E.append(Case(CV, n=(4, 3), k=(2, 2), C_in=2, C_out=4, groups=2, N=4, padding=1,
                  tag="batch"))
    out = []
    for j, c in enumerate(E):
        for dt in ("float32", "float64"):
            out.append(_replace(c, dtype=dt, data_format=DATA_FORMATS[j % 2],
                                weight_format=WEIGHT_FORMATS[(j // 2) % 2]))
    return out
