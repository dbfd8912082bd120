"""Every parameter rule of docs/semantics.md ("Parameter rules", "Dtypes") fails with a clear error.

Each case asserts the exception class (InvalidArgumentError is a DeconvError and a ValueError;
UnsupportedDtypeError is a DeconvError and a TypeError) and that the message names the op, the
parameter, the rule and the offending value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pytest

import deconv_core
from deconv_core import DeconvError, InvalidArgumentError, UnsupportedDtypeError

CT, CV = "conv_transpose", "conv"
BAD_VALUE, BAD_DTYPE = InvalidArgumentError, UnsupportedDtypeError


@dataclass
class Bad:
    """One bad call: shapes, dtypes, kwargs, the expected class and message regex."""

    name: str
    op: str
    x: tuple
    w: tuple
    kwargs: dict = field(default_factory=dict)
    exc: type = BAD_VALUE
    match: str = ""
    b: tuple | None = None
    dtypes: tuple = ("float32", "float32", "float32")


def _cases() -> list[Bad]:
    c = []
    # stride / dilation: zero, negative, non-integer, bool, wrong count
    for op in (CT, CV):
        c += [
            Bad("stride0", op, (1, 2, 5), (2, 2, 3), {"stride": 0},
                match=rf"^{op}: stride=0 must be >= 1"),
            Bad("stride_neg_axis", op, (1, 2, 5, 5), (2, 2, 3, 3), {"stride": (1, -2)},
                match=rf"^{op}: stride\[1\]=-2 must be >= 1"),
            Bad("dilation0", op, (1, 2, 5), (2, 2, 3), {"dilation": 0},
                match=rf"^{op}: dilation=0 must be >= 1"),
            Bad("dilation_neg_axis", op, (1, 2, 5, 5), (2, 2, 3, 3), {"dilation": [1, -1]},
                match=rf"^{op}: dilation\[1\]=-1 must be >= 1"),
            Bad("stride_float", op, (1, 2, 5), (2, 2, 3), {"stride": 1.5},
                match=rf"^{op}: stride=1\.5 must be an integer"),
            Bad("stride_float_axis", op, (1, 2, 5, 5), (2, 2, 3, 3), {"stride": (2, 2.0)},
                match=rf"^{op}: stride\[1\]=2\.0 must be an integer"),
            Bad("stride_bool", op, (1, 2, 5), (2, 2, 3), {"stride": True},
                match=rf"^{op}: stride=True must be an integer"),
            Bad("dilation_str", op, (1, 2, 5), (2, 2, 3), {"dilation": "2"},
                match=rf"^{op}: dilation='2' must be an integer"),
            Bad("stride_count", op, (1, 2, 5), (2, 2, 3), {"stride": (1, 2)},
                match=rf"^{op}: stride must be one int or a sequence of 1 ints .*got 2"),
            # groups
            Bad("groups0", op, (1, 2, 5), (2, 2, 3), {"groups": 0},
                match=rf"^{op}: groups=0 must be >= 1"),
            Bad("groups_cin", op, (1, 3, 5), (3, 1, 3), {"groups": 2},
                match=rf"^{op}: groups=2 must divide input channels C_in=3"),
            Bad("groups_float", op, (1, 2, 5), (2, 1, 3), {"groups": 2.0},
                match=rf"^{op}: groups=2\.0 must be an integer"),
            # negative and malformed padding
            Bad("pad_neg", op, (1, 2, 5), (2, 2, 3), {"padding": -1},
                match=rf"^{op}: padding=-1 must be >= 0"),
            Bad("pad_neg_axis", op, (1, 2, 5, 5), (2, 2, 3, 3), {"padding": (1, -2)},
                match=rf"^{op}: padding\[1\]=-2 must be >= 0"),
            Bad("pad_neg_pair", op, (1, 2, 5, 5), (2, 2, 3, 3),
                {"padding": [(0, 0), (1, -1)]},
                match=rf"^{op}: padding\[1\]\[1\]=-1 must be >= 0"),
            Bad("pad_pair_len", op, (1, 2, 5), (2, 2, 3), {"padding": [(1,)]},
                match=rf"^{op}: padding\[0\]=\(1,\) must be a \(before, after\) pair"),
            Bad("pad_pairs_count", op, (1, 2, 5), (2, 2, 3), {"padding": [(1, 1), (0, 0)]},
                match=rf"^{op}: padding must have one \(before, after\) pair per spatial axis"),
            Bad("pad_float", op, (1, 2, 5), (2, 2, 3), {"padding": 1.0},
                match=rf"^{op}: padding=1\.0 must be an integer"),
            Bad("pad_unknown_str", op, (1, 2, 5), (2, 2, 3), {"padding": "full"},
                match=rf"^{op}: padding='full' is not a padding mode.*'valid'.*'same'"),
            # formats
            Bad("data_format", op, (1, 2, 5), (2, 2, 3), {"data_format": "NCHW"},
                match=rf"^{op}: data_format='NCHW' must be one of 'channels_first', "
                      "'channels_last'"),
            Bad("weight_format", op, (1, 2, 5), (2, 2, 3), {"weight_format": "onnx"},
                match=rf"^{op}: weight_format='onnx' must be one of 'torch', 'tf'"),
            # rank
            Bad("rank_low", op, (2, 5), (2, 2, 3),
                match=rf"^{op}: input must have 3, 4 or 5 dims .*got 2 dims"),
            Bad("rank_high", op, (1, 1, 2, 2, 2, 2), (1, 1, 1, 1, 1, 1),
                match=rf"^{op}: input must have 3, 4 or 5 dims .*got 6 dims"),
            Bad("weight_rank", op, (1, 2, 5, 5), (2, 2, 3),
                match=rf"^{op}: weight must have 4 dims like the input \(rank 2\), "
                      r"got shape \(2, 2, 3\)"),
            Bad("zero_size_axis", op, (1, 2, 0), (2, 2, 1),
                match=rf"^{op}: input size 0 on axis 2 must be >= 1"),
            Bad("zero_size_kernel", op, (1, 2, 3), (2, 2, 0),
                match=rf"^{op}: weight size 0 on axis 2 must be >= 1"),
            # bias
            Bad("bias_len", op, (1, 2, 5), (2, 2, 3), b=(3,),
                match=rf"^{op}: bias shape \(3,\) must be \(C_out,\)=\(2,\)"),
            Bad("bias_2d", op, (1, 2, 5), (2, 2, 3), b=(2, 1),
                match=rf"^{op}: bias must be 1-D with one value per output channel, got "
                      r"shape \(2, 1\)"),
            # dtypes
            Bad("mixed_weight", op, (1, 2, 5), (2, 2, 3), exc=BAD_DTYPE,
                dtypes=("float32", "float64", "float32"),
                match=rf"^{op}: weight dtype float64 must match the input dtype float32"),
            Bad("mixed_bias", op, (1, 2, 5), (2, 2, 3), b=(2,), exc=BAD_DTYPE,
                dtypes=("float64", "float64", "float16"),
                match=rf"^{op}: bias dtype float16 must match the input dtype float64"),
            Bad("int_input", op, (1, 2, 5), (2, 2, 3), exc=BAD_DTYPE,
                dtypes=("int32", "int32", "int32"),
                match=rf"^{op}: input dtype int32 is not supported; use float32 or float64"),
            Bad("int_weight", op, (1, 2, 5), (2, 2, 3), exc=BAD_DTYPE,
                dtypes=("float32", "int64", "float32"),
                match=rf"^{op}: weight dtype int64 is not supported"),
            Bad("complex_input", op, (1, 2, 5), (2, 2, 3), exc=BAD_DTYPE,
                dtypes=("complex128", "complex128", "complex128"),
                match=rf"^{op}: input dtype complex128 is not supported"),
            Bad("complex_bias", op, (1, 2, 5), (2, 2, 3), b=(2,), exc=BAD_DTYPE,
                dtypes=("float64", "float64", "complex64"),
                match=rf"^{op}: bias dtype complex64 is not supported"),
            Bad("bool_input", op, (1, 2, 5), (2, 2, 3), exc=BAD_DTYPE,
                dtypes=("bool", "float32", "float32"),
                match=rf"^{op}: input dtype bool is not supported"),
        ]
    # channel mismatches (each op has its own weight layout)
    c += [
        Bad("channels", CV, (1, 3, 5), (2, 2, 3),
            match=r"^conv: weight\.shape\[1\]=2 must be C_in/groups=3/1=3"),
        Bad("channels", CT, (1, 3, 5), (2, 2, 3),
            match=r"^conv_transpose: weight\.shape\[0\]=2 must equal input channels C_in=3"),
        Bad("groups_cout", CV, (1, 4, 5), (3, 2, 3), {"groups": 2},
            match=r"^conv: groups=2 must divide output channels C_out=3"),
        # output size < 1
        Bad("out_lt_1", CV, (1, 1, 2), (1, 1, 3),
            match=r"^conv: output size 0 on spatial axis 0 must be >= 1 \(input size 2, "
                  r"kernel 3"),
        Bad("out_lt_1_dilated", CV, (1, 1, 4, 4), (1, 1, 2, 2), {"dilation": (1, 4)},
            match=r"^conv: output size 0 on spatial axis 1 must be >= 1 .*dilation 4"),
        Bad("out_lt_1_valid", CV, (1, 1, 2), (1, 1, 3), {"padding": "valid"},
            match=r"^conv: output size 0 on spatial axis 0 must be >= 1"),
        Bad("out_lt_1", CT, (1, 1, 1), (1, 1, 1), {"padding": 1},
            match=r"^conv_transpose: output size -1 on spatial axis 0 must be >= 1"),
        Bad("out_lt_1_pairs", CT, (1, 1, 2, 2), (1, 1, 2, 2), {"padding": [(0, 0), (2, 1)]},
            match=r"^conv_transpose: output size 0 on spatial axis 1 must be >= 1"),
        # output_padding >= max(stride, dilation)
        Bad("op_eq_stride", CT, (1, 1, 3), (1, 1, 3), {"stride": 2, "output_padding": 2},
            match=r"^conv_transpose: output_padding\[0\]=2 must be < max\(stride, dilation\)=2"),
        Bad("op_eq_dilation", CT, (1, 1, 3), (1, 1, 3), {"dilation": 3, "output_padding": 3},
            match=r"^conv_transpose: output_padding\[0\]=3 must be < max\(stride, dilation\)=3"),
        Bad("op_axis1", CT, (1, 1, 3, 3), (1, 1, 3, 3),
            {"stride": (3, 2), "padding": 1, "output_padding": (2, 2)},
            match=r"^conv_transpose: output_padding\[1\]=2 must be < max\(stride, dilation\)=2"),
        Bad("op_stride1", CT, (1, 1, 3), (1, 1, 3), {"output_padding": 1},
            match=r"^conv_transpose: output_padding\[0\]=1 must be < max\(stride, dilation\)=1"),
        Bad("op_negative", CT, (1, 1, 3), (1, 1, 3), {"stride": 2, "output_padding": -1},
            match=r"^conv_transpose: output_padding=-1 must be >= 0"),
        # output_padding with a named mode: Keras's rule (< stride); same_lower is ONNX's only
        Bad("op_with_same_lower", CT, (1, 1, 3), (1, 1, 3), {"stride": 2, "padding": "same_lower",
                                                             "output_padding": 1},
            match=r"^conv_transpose: output_padding\[0\]=1 with padding='same_lower' is defined "
                  r"only by ONNX.*convention='onnx'"),
        Bad("op_with_same_ge_stride", CT, (1, 1, 3), (1, 1, 3),
            {"stride": 2, "dilation": 3, "padding": "same", "output_padding": 2},
            match=r"^conv_transpose: output_padding\[0\]=2 must be < stride=2 with "
                  r"padding='same' \(Keras's rule\)"),
        Bad("op_with_valid_ge_stride", CT, (1, 1, 3), (1, 1, 3),
            {"stride": 1, "padding": "valid", "output_padding": 1},
            match=r"^conv_transpose: output_padding\[0\]=1 must be < stride=1 with "
                  r"padding='valid'"),
        # conventions
        Bad("convention_unknown", CT, (1, 1, 3), (1, 1, 3), {"convention": "caffe"},
            match=r"^conv_transpose: convention='caffe' must be one of 'default', 'keras', "
                  r"'onnx', 'onnxruntime'"),
        Bad("onnx_explicit_os_range", CT, (1, 1, 3), (1, 1, 3),
            {"stride": 2, "dilation": 3, "output_shape": [13], "convention": "onnx"},
            match=r"^conv_transpose: output_shape\[0\]=13 is outside the legal range 11\.\.12 "
                  r"for this padding under convention='onnx'"),
        Bad("onnx_op_ge_stride", CT, (1, 1, 3), (1, 1, 3),
            {"stride": 2, "padding": "same", "output_padding": 2, "dilation": 3,
             "convention": "onnx"},
            match=r"^conv_transpose: output_padding\[0\]=2 must be < stride=2 under "
                  r"convention='onnx'"),
        Bad("ort_os_high", CT, (1, 1, 3), (1, 1, 3),
            {"stride": 2, "padding": "same", "output_shape": [9], "convention": "onnxruntime"},
            match=r"^conv_transpose: output_shape\[0\]=9 is outside the legal range 1\.\.8 "
                  r"under convention='onnxruntime'"),
        Bad("ort_pads_with_os", CT, (1, 1, 3), (1, 1, 3),
            {"stride": 2, "padding": 1, "output_shape": [5], "convention": "onnxruntime"},
            match=r"^conv_transpose: padding\[0\]=\(1, 1\) together with output_shape: "
                  r"onnxruntime ignores pads"),
        Bad("keras_same_os_low", CT, (1, 1, 3), (1, 1, 4),
            {"stride": 2, "padding": "same", "output_shape": [3], "convention": "keras"},
            match=r"^conv_transpose: output_shape\[0\]=3 is outside the legal range 4\.\.6 "
                  r"of padding='same' \(\(n-1\)\*stride\+ek%2\.\.n\*stride"),
        # padding_mode (conv's fill): PyTorch's names and size rules
        Bad("fill_unknown", CV, (1, 1, 5), (1, 1, 3), {"padding": 1, "padding_mode": "symmetric"},
            match=r"^conv: padding_mode='symmetric' must be one of 'zeros', 'reflect', "
                  r"'replicate', 'circular'"),
        Bad("fill_reflect_big", CV, (1, 1, 3, 4), (1, 1, 3, 3),
            {"padding": (1, 4), "padding_mode": "reflect"},
            match=r"^conv: padding_mode='reflect' needs each pad < the input size \(PyTorch's "
                  r"rule\): spatial axis 1 has padding \(4, 4\) and input size 4"),
        Bad("fill_circular_big", CV, (1, 1, 3), (1, 1, 3),
            {"padding": [(4, 0)], "padding_mode": "circular"},
            match=r"^conv: padding_mode='circular' needs each pad <= the input size"),
        Bad("op_and_output_shape", CT, (1, 1, 3), (1, 1, 3),
            {"stride": 2, "output_padding": 1, "output_shape": [8]},
            match=r"^conv_transpose: give output_padding=1 or output_shape=\[8\], not both"),
        # output_shape outside its legal range; the message states the range.
        # n=3, k=3, s=2: L=7; valid 7..8, same (n-1)s+1..ns = 5..6, padding=1 -> 5..6
        Bad("os_valid_low", CT, (1, 1, 3), (1, 1, 3), {"stride": 2, "padding": "valid",
                                                       "output_shape": [6]},
            match=r"^conv_transpose: output_shape\[0\]=6 is outside the legal range 7\.\.8 "
                  r"of padding='valid'"),
        Bad("os_valid_high", CT, (1, 1, 3), (1, 1, 3), {"stride": 2, "padding": "valid",
                                                        "output_shape": [9]},
            match=r"^conv_transpose: output_shape\[0\]=9 is outside the legal range 7\.\.8"),
        Bad("os_same_low", CT, (1, 1, 3, 3), (1, 1, 3, 3),
            {"stride": 2, "padding": "same", "output_shape": [6, 4]},
            match=r"^conv_transpose: output_shape\[1\]=4 is outside the legal range 5\.\.6 "
                  r"of padding='same'"),
        Bad("os_same_high", CT, (1, 1, 3), (1, 1, 3), {"stride": 2, "padding": "same_lower",
                                                       "output_shape": [7]},
            match=r"^conv_transpose: output_shape\[0\]=7 is outside the legal range 5\.\.6 "
                  r"of padding='same_lower'"),
        Bad("os_int_pad_high", CT, (1, 1, 3), (1, 1, 3), {"stride": 2, "padding": 1,
                                                          "output_shape": [7]},
            match=r"^conv_transpose: output_shape\[0\]=7 is outside the legal range 5\.\.6"),
        Bad("os_int_pad_low", CT, (1, 1, 3), (1, 1, 3), {"stride": 2, "padding": 1,
                                                         "output_shape": [4]},
            match=r"^conv_transpose: output_shape\[0\]=4 is outside the legal range 5\.\.6"),
        Bad("os_count", CT, (1, 1, 3), (1, 1, 3), {"output_shape": [4, 5]},
            match=r"^conv_transpose: output_shape must be one int or a sequence of 1 ints .*got 2"),
        Bad("os_zero", CT, (1, 1, 3), (1, 1, 3), {"output_shape": [0]},
            match=r"^conv_transpose: output_shape\[0\]=0 must be >= 1"),
    ]
    return c


CASES = _cases()


def _array(shape: tuple, dtype: str) -> np.ndarray:
    return np.ones(shape, dtype=dtype)


@pytest.mark.parametrize("bad", [pytest.param(b, id=f"{b.op}-{b.name}") for b in CASES])
def test_bad_call_raises_clear_error(bad: Bad):
    x = _array(bad.x, bad.dtypes[0])
    w = _array(bad.w, bad.dtypes[1])
    b = None if bad.b is None else _array(bad.b, bad.dtypes[2])
    fn = getattr(deconv_core, bad.op)
    with pytest.raises(bad.exc, match=bad.match) as info:
        fn(x, w, b, **bad.kwargs)
    assert isinstance(info.value, DeconvError)
    builtin = ValueError if bad.exc is BAD_VALUE else TypeError
    assert isinstance(info.value, builtin)
    other = TypeError if builtin is ValueError else ValueError
    assert not isinstance(info.value, other), "an error should be a ValueError or a TypeError"


def test_every_rule_is_covered_for_both_ops():
    names: dict[str, set[str]] = {}
    for b in CASES:
        names.setdefault(b.op, set()).add(b.name)
    common = {"stride0", "dilation0", "groups_cin", "channels", "bias_len", "out_lt_1",
              "rank_low", "mixed_weight", "int_input", "complex_input", "pad_unknown_str",
              "data_format", "weight_format", "pad_neg", "stride_float"}
    assert common <= names[CV] and common <= names[CT]


@pytest.mark.parametrize(
    ("op", "x_shape", "w_shape"),
    [
        # NHWC C_in=3; tf conv weight (kh, kw, C_in/g=2, C_out=4): channel mismatch
        (CV, (1, 5, 5, 3), (3, 3, 2, 4)),
        # NHWC C_in=3; tf transposed weight (kh, kw, C_out/g=4, C_in=2): channel mismatch
        (CT, (1, 5, 5, 3), (3, 3, 4, 2)),
        # NHWC with an empty spatial axis (axis 1 of the caller's array)
        (CV, (1, 0, 5, 3), (1, 1, 3, 2)),
    ],
    ids=["conv-tf-channels", "conv_transpose-tf-channels", "conv-nhwc-empty-axis"],
)
def test_messages_quote_the_callers_layout(op, x_shape, w_shape):
    """With channels_last data / tf weights, a shape error must describe the arrays as passed
    (messages name the op, the parameter, the rule and the value), not the transposed
    channels-first / torch-layout views the core computes on."""
    x, w = np.ones(x_shape, np.float32), np.ones(w_shape, np.float32)
    with pytest.raises(InvalidArgumentError, match=rf"^{op}: ") as info:
        getattr(deconv_core, op)(x, w, data_format="channels_last", weight_format="tf")
    msg = str(info.value)
    assert str(x_shape) in msg or str(w_shape) in msg, (
        f"message quotes neither the caller's input {x_shape} nor weight {w_shape}: {msg}"
    )


@pytest.mark.parametrize("op", [CT, CV])
def test_input_that_is_not_an_array(op: str):
    with pytest.raises(DeconvError, match=rf"^{op}: input"):
        getattr(deconv_core, op)([[[1.0, 2.0], [3.0]]], np.ones((1, 1, 1)))


def test_padding_string_is_not_iterated_as_ints():
    """A str padding is a mode name even when it could pass as a sequence."""
    x, w = np.ones((1, 1, 4)), np.ones((1, 1, 2))
    with pytest.raises(InvalidArgumentError, match=r"padding='1' is not a padding mode"):
        deconv_core.conv(x, w, padding="1")


def test_error_messages_are_single_clear_sentences():
    """Messages start with the op name and never leak a Python repr of an internal object."""
    for bad in CASES:
        x = _array(bad.x, bad.dtypes[0])
        w = _array(bad.w, bad.dtypes[1])
        b = None if bad.b is None else _array(bad.b, bad.dtypes[2])
        try:
            getattr(deconv_core, bad.op)(x, w, b, **bad.kwargs)
        except DeconvError as exc:
            msg = str(exc)
            assert msg.startswith(f"{bad.op}: "), msg
            assert "\n" not in msg, msg
            assert not re.search(r"<[A-Za-z_.]+ (object )?at 0x", msg), msg
        else:  # pragma: no cover - the parametrised test reports which
            pytest.fail(f"{bad.op}-{bad.name}: no error")
