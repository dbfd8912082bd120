"""Run cases on backends: time each, compare deconv's result with every other result.

Per case, every backend is prepared once, called once (the result kept for the error columns),
then timed with :func:`bench.environment.time_callable` (warm-up runs, then the median of
``repeat`` runs). Backends run one after another, never interleaved, so one library's spinning
worker threads do not tax the next. deconv's result is compared with each competitor's and,
when asked, with the float64 numpy oracle.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.backends import Backend, ReferenceBackend
from bench.cases import Case, make_inputs
from bench.environment import time_callable

__all__ = ["SLOW_FRACTION", "geomean", "is_slow", "run_benchmark", "run_case"]

#: A case is flagged when deconv runs below this fraction of the faster competitor's speed.
SLOW_FRACTION = 0.5
#: A result is called wrong when its max abs error exceeds this times max(1, max |reference|).
REL_TOL = 1e-3
PRIMARY = "deconv"


def geomean(values: Sequence[float]) -> float | None:
    """Geometric mean of positive numbers, None for an empty sequence."""
    vals = [v for v in values if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def is_slow(ratios: dict[str, float]) -> bool | None:
    """True if deconv runs below ``SLOW_FRACTION`` of the faster competitor's speed.

    ``ratios`` maps competitor name to competitor time / deconv time, so the faster competitor
    has the smallest ratio. None when there is no competitor.
    """
    return min(ratios.values()) < SLOW_FRACTION if ratios else None


def _max_abs_err(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return math.inf
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


def run_case(case: Case, backends: Sequence[Backend], *, repeat: int = 7, warmup: int = 2,
             seed: int = 0, reference: bool | str = "auto") -> dict[str, Any]:
    """Time one case on every backend and compute deconv's errors.

    Parameters
    ----------
    case : Case
        The case to run.
    backends : sequence of Backend
        Backends to time; the one named ``"deconv"`` is the subject, the rest competitors.
        Backends whose ``unavailable()`` gives a reason are recorded as skipped.
    repeat, warmup : int
        Timed and untimed runs per backend.
    seed : int
        Input seed.
    reference : bool or "auto"
        Compare with the numpy oracle: always, never, or ("auto") only when no competitor
        produced a result.

    Returns
    -------
    dict
        The case description plus ``results`` (per backend timings or ``skipped``/``error``),
        ``errors`` (deconv's max abs error against each other result), ``ratios``
        (competitor time / deconv time), ``correct`` and ``slow``.
    """
    x, w, b = make_inputs(case, seed)
    gflop = case.flops / 1e9
    results: dict[str, dict[str, Any]] = {}
    outputs: dict[str, np.ndarray] = {}
    for backend in backends:
        reason = backend.unavailable()
        if reason:
            results[backend.name] = {"skipped": reason}
            continue
        try:
            fn = backend.prepare(case, x, w, b)
            t0 = time.perf_counter()
            outputs[backend.name] = np.asarray(fn())
            first_ms = (time.perf_counter() - t0) * 1e3
            timing = time_callable(fn, repeat=repeat, warmup=warmup)
        except Exception as exc:  # one failing backend must not stop the run
            results[backend.name] = {"error": f"{type(exc).__name__}: {exc}",
                                     "trace": traceback.format_exc(limit=3)}
            continue
        timing["first_call_ms"] = round(first_ms, 3)
        timing["gflops"] = gflop / (timing["median_ms"] * 1e-3)
        results[backend.name] = timing
        time.sleep(0.05)  # let the previous library's threads go idle

    errors: dict[str, float] = {}
    ref_scale = None
    mine = outputs.get(PRIMARY)
    competitors = [n for n in outputs if n != PRIMARY]
    if mine is not None:
        for name in competitors:
            errors[name] = _max_abs_err(mine, outputs[name])
        if reference is True or (reference == "auto" and not competitors):
            ref = ReferenceBackend().prepare(case, x, w, b)()
            ref_scale = float(np.max(np.abs(ref), initial=0.0))
            errors["reference"] = _max_abs_err(mine, ref)
    if ref_scale is None and competitors:
        ref_scale = float(np.max(np.abs(outputs[competitors[0]]), initial=0.0))
    tol = REL_TOL * max(1.0, ref_scale or 0.0)
    correct = all(e <= tol for e in errors.values()) if errors else None

    ratios: dict[str, float] = {}
    slow = None
    mine_ms = results.get(PRIMARY, {}).get("median_ms")
    if mine_ms:
        for name in competitors:
            ms = results[name].get("median_ms")
            if ms:
                ratios[name] = ms / mine_ms
        slow = is_slow(ratios)
    return {**case.to_dict(), "gflop": gflop, "results": results, "errors": errors,
            "tolerance": tol, "ref_scale": ref_scale, "correct": correct, "ratios": ratios,
            "slow": slow}


def run_benchmark(cases: Sequence[Case], backends: Sequence[Backend], *, repeat: int = 7,
                  warmup: int = 2, seed: int = 0, reference: bool | str = "auto",
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every case and summarise.

    Returns
    -------
    dict
        ``settings``, ``cases`` (list of :func:`run_case` dicts) and ``summary``:
        ``geomean_<competitor>_over_deconv``, the ``slow`` and ``wrong`` case ids and
        ``failed`` (cases where deconv raised or was skipped).
    """
    out_cases = []
    for case in cases:
        if progress:
            progress(f"{case.id}: {case.describe()}")
        out_cases.append(run_case(case, backends, repeat=repeat, warmup=warmup, seed=seed,
                                  reference=reference))
    names = [b.name for b in backends if b.name != PRIMARY]
    summary: dict[str, Any] = {}
    for name in names:
        summary[f"geomean_{name}_over_deconv"] = geomean(
            [c["ratios"][name] for c in out_cases if name in c["ratios"]])
    summary["slow"] = [c["id"] for c in out_cases if c["slow"]]
    summary["wrong"] = [c["id"] for c in out_cases if c["correct"] is False]
    summary["failed"] = [c["id"] for c in out_cases
                         if "median_ms" not in c["results"].get(PRIMARY, {})]
    return {"settings": {"repeat": repeat, "warmup": warmup, "seed": seed,
                         "slow_fraction": SLOW_FRACTION, "rel_tol": REL_TOL},
            "backends": {b.name: {"version": b.version() if not b.unavailable() else None,
                                  "skipped": b.unavailable()} for b in backends},
            "cases": out_cases, "summary": summary}
