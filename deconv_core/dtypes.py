"""Dtype names a call may use and the one rule for unsupported and mixed dtypes."""

from __future__ import annotations

from typing import Any

import numpy as np

from deconv_core.errors import UnsupportedDtypeError
from deconv_core.values import preview

__all__ = ["DTYPES", "call_dtype"]

#: Accepted dtype names -> the dtype the kernels compute in.
DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "float16": np.dtype(np.float32),
    "bfloat16": np.dtype(np.float32),
}


def _dtype_name(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return np.dtype(value).name
    except TypeError:
        return preview(value)


def call_dtype(op: str, dtype: Any, weight_dtype: Any, bias_dtype: Any, has_bias: bool) -> str:
    """The call's dtype name; one rule for unsupported and mixed dtypes.

    Raises
    ------
    UnsupportedDtypeError
        A dtype outside :data:`DTYPES`, or weight/bias dtypes that differ from the input's.
    """
    name = _dtype_name(dtype)
    w_name = name if weight_dtype is None else _dtype_name(weight_dtype)
    given = [("input", name), ("weight", w_name)]
    if has_bias:
        given.append(("bias", name if bias_dtype is None else _dtype_name(bias_dtype)))
    for what, other in given:
        if other not in DTYPES:
            raise UnsupportedDtypeError(
                f"{op}: {what} dtype {other} is not supported; use float32 or float64 (float16 "
                f"and bfloat16 are computed in float32)"
            )
    for what, other in given[1:]:
        if other != name:
            raise UnsupportedDtypeError(
                f"{op}: {what} dtype {other} must match the input dtype {name}; cast one of "
                f"them (mixed dtypes are not computed)"
            )
    return name
