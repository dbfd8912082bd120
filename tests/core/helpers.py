"""Shared helpers of the core tests: array builders, the oracle comparison, error statistics.

The comparison bounds the error element-wise by ``tol * bound`` where ``bound`` is the oracle
run on ``|x|, |w|, |b|``: the sum of the magnitudes of every term of each output element. Any
indexing bug moves an output by a whole term, far above the float32 accumulation error, while
honest rounding stays below ``K * eps * bound`` however the sum cancels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import oracle

# Tolerance relative to the term-magnitude bound, per input dtype.
REL_TOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5, np.dtype(np.float16): 1e-5}
# float16 results are rounded once from float32: half an ulp is 2**-11 relative; allow 2**-10.
F16_ROUND = 2.0**-10
F16_TINY = 2.0**-24

# Largest error seen per dtype name: {"abs": .., "rel": .., "case": ..}; printed by conftest.
ERROR_STATS: dict[str, dict[str, Any]] = {}


def _record(dtype: np.dtype, abs_err: float, rel_err: float, case: str) -> None:
    st = ERROR_STATS.setdefault(
        dtype.name, {"abs": 0.0, "rel": 0.0, "abs_case": "", "rel_case": "", "n": 0}
    )
    st["n"] += 1
    if abs_err > st["abs"]:
        st["abs"], st["abs_case"] = abs_err, case
    if rel_err > st["rel"]:
        st["rel"], st["rel_case"] = rel_err, case


def run_oracle(op: str, x, w, b, kwargs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Oracle result and its term-magnitude bound (both float64)."""
    fn = oracle.conv_transpose if op == "conv_transpose" else oracle.conv
    ref = fn(x, w, b, **kwargs)
    absb = None if b is None else np.abs(np.asarray(b, np.float64))
    bound = fn(np.abs(np.asarray(x, np.float64)), np.abs(np.asarray(w, np.float64)), absb, **kwargs)
    return ref, bound


def assert_matches(got: np.ndarray, ref: np.ndarray, bound: np.ndarray, dtype, case: str) -> None:
    """Assert dtype, shape and element-wise error of a core result against the oracle."""
    dtype = np.dtype(dtype)
    assert isinstance(got, np.ndarray), f"{case}: result is {type(got)}"
    assert got.dtype == dtype, f"{case}: result dtype {got.dtype}, input dtype {dtype}"
    assert got.shape == ref.shape, f"{case}: shape {got.shape}, expected {ref.shape}"
    g = got.astype(np.float64)
    assert np.all(np.isfinite(g)), f"{case}: non-finite values in the result"
    err = np.abs(g - ref)
    allowed = REL_TOL[dtype] * bound + 1e-300
    if dtype == np.float16:
        allowed = allowed + F16_ROUND * np.abs(ref) + F16_TINY
    abs_err = float(err.max(initial=0.0))
    rel_err = float((err / np.maximum(bound, 1e-300)).max(initial=0.0))
    _record(dtype, abs_err, rel_err, case)
    bad = err > allowed
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{case}: {int(bad.sum())}/{bad.size} elements off; first at {idx}: "
            f"got {g[idx]!r}, expected {ref[idx]!r} (allowed error {allowed[idx]:.3g}); "
            f"max abs err {abs_err:.3g}"
        )


def rand(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Standard-normal array of ``dtype`` (values exactly representable in it)."""
    return rng.standard_normal(shape).astype(dtype)


def with_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """Same values as ``a`` with another memory layout.

    ``contiguous``: C order. ``sliced``: every other element of a twice-as-long buffer along each
    axis. ``transposed``: a transpose of a reversed-axes C array (Fortran-like strides).
    ``reversed``: negative strides on every axis. ``readonly``: np.frombuffer over immutable
    bytes (a non-writable view).
    """
    if layout == "contiguous":
        return np.ascontiguousarray(a)
    if layout == "sliced":
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        assert a.size <= 1 or not view.flags.c_contiguous
        return view
    if layout == "transposed":
        return np.ascontiguousarray(a.T).T
    if layout == "reversed":
        flip = tuple(slice(None, None, -1) for _ in a.shape)
        out = np.ascontiguousarray(a[flip])[flip]
        assert a.size <= 1 or min(out.strides) < 0
        return out
    if layout == "readonly":
        out = np.frombuffer(np.ascontiguousarray(a).tobytes(), dtype=a.dtype).reshape(a.shape)
        assert not out.flags.writeable
        return out
    raise ValueError(layout)
