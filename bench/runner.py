"""Run cases on backends: time each, compare deconv's result with every other result.

Per case, every backend is prepared once and called once (the result kept for the error
columns). Then the backends are timed *interleaved*: ``warmup`` untimed rounds, then ``repeat``
rounds in which every backend runs once (the order rotating from round to round), so a burst of
load from another process on this shared machine hits all of them alike and the ratios of the
medians compare like with like. A pause of ``PAUSE_S`` before each timed call lets the previous
library's worker threads go idle (onnxruntime's pool spins after a run; OpenMP workers spin
after a parallel region unless ``OMP_WAIT_POLICY=PASSIVE``), so one library's spinning does not
tax the next. deconv's result
is compared with each competitor's and, when asked, with the float64 numpy oracle.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.backends import Backend, ReferenceBackend
from bench.cases import Case, make_inputs

__all__ = ["SLOW_FRACTION", "geomean", "is_slow", "paired_ratio", "run_benchmark", "run_case"]

#: Seconds of idle time before each timed call: longer than the competitors' idle worker
#: threads spin (measured: deconv's C1 ran 1.6x slower 5 ms after an onnxruntime call, 1.3x
#: after 20 ms, unaffected after 50-100 ms).
PAUSE_S = 0.1
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


def _time_interleaved(runners: dict[str, Callable[[], Any]], repeat: int,
                      warmup: int) -> dict[str, dict[str, Any]]:
    """Median wall time of each runner over ``repeat`` interleaved rounds (see module doc).

    Garbage collection is paused while timing. A runner that raises is reported as an error and
    dropped from the following rounds.
    """
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    times: dict[str, list[float]] = {name: [] for name in runners}
    out: dict[str, dict[str, Any]] = {}
    names = list(runners)
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for rnd in range(warmup + repeat):
            shift = rnd % max(1, len(names))
            for name in names[shift:] + names[:shift]:
                if name in out:
                    continue
                time.sleep(PAUSE_S)
                t0 = time.perf_counter()
                try:
                    runners[name]()
                except Exception as exc:
                    out[name] = {"error": f"{type(exc).__name__}: {exc}",
                                 "trace": traceback.format_exc(limit=3)}
                    continue
                if rnd >= warmup:
                    times[name].append((time.perf_counter() - t0) * 1e3)
    finally:
        if was_enabled:
            gc.enable()
    for name, ts in times.items():
        if name not in out:
            out[name] = {"median_ms": statistics.median(ts), "min_ms": min(ts),
                         "max_ms": max(ts), "times_ms": list(ts)}
    return out


def paired_ratio(theirs: Sequence[float], mine: Sequence[float]) -> float:
    """Median over the rounds of ``theirs[r] / mine[r]``: each round runs both back to back,
    so a slow minute of the machine (runs here drift by 1.5x) cancels out of each ratio.

    Parameters
    ----------
    theirs, mine : sequence of float
        Times of the same rounds (equal lengths; otherwise the ratio of the medians).

    Returns
    -------
    float
    """
    if len(theirs) != len(mine) or not mine:
        return statistics.median(theirs) / statistics.median(mine)
    return statistics.median(t / m for t, m in zip(theirs, mine, strict=True))


def run_case(case: Case, backends: Sequence[Backend], *, repeat: int = 7, warmup: int = 2,
             seed: int = 0, reference: bool | str = "auto",
             f64_reference: Callable[[Case, np.ndarray, np.ndarray, np.ndarray], Any] | None = None,
             ) -> dict[str, Any]:
    """Time one case on every backend and compute deconv's errors.

    Parameters
    ----------
    case : Case
        The case to run.
    backends : sequence of Backend
        Backends to time; the one named ``"deconv"`` is the subject, the rest competitors.
        Backends whose ``unavailable()`` gives a reason are recorded as skipped.
    repeat, warmup : int
        Timed and untimed rounds (each runs every backend once, interleaved).
    seed : int
        Input seed.
    reference : bool or "auto"
        Compare with the numpy oracle: always, never, or ("auto") only when no competitor
        produced a result.
    f64_reference : callable, optional
        ``f(case, x, w, b)`` computing the case in float64 (PyTorch's, when installed): deconv's
        max abs error over the reference's max |y| is then ``errors["float64/max|y|"]``.

    Returns
    -------
    dict
        The case description plus ``results`` (per backend timings or ``skipped``/``error``),
        ``errors`` (deconv's max abs error against each other result), ``ratios``
        (competitor time / deconv time, the median of the rounds' ratios: :func:`paired_ratio`),
        ``ratios_of_medians``, ``correct`` and ``slow``.
    """
    x, w, b = make_inputs(case, seed)
    gflop = case.flops / 1e9
    results: dict[str, dict[str, Any]] = {}
    outputs: dict[str, np.ndarray] = {}
    runners: dict[str, Callable[[], Any]] = {}
    for backend in backends:
        reason = backend.unavailable()
        if reason:
            results[backend.name] = {"skipped": reason}
            continue
        try:
            fn = backend.prepare(case, x, w, b)
            t0 = time.perf_counter()
            outputs[backend.name] = np.asarray(fn())
            results[backend.name] = {"first_call_ms": round((time.perf_counter() - t0) * 1e3, 3)}
            runners[backend.name] = fn
        except Exception as exc:  # one failing backend must not stop the run
            results[backend.name] = {"error": f"{type(exc).__name__}: {exc}",
                                     "trace": traceback.format_exc(limit=3)}
    for name, timing in _time_interleaved(runners, repeat, warmup).items():
        if "error" in timing:
            results[name] = timing
            outputs.pop(name, None)
            continue
        timing["gflops"] = gflop / (timing["median_ms"] * 1e-3)
        results[name].update(timing)

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
    of_medians: dict[str, float] = {}
    slow = None
    mine_ms = results.get(PRIMARY, {}).get("median_ms")
    if mine_ms:
        mine_ts = results[PRIMARY]["times_ms"]
        for name in competitors:
            ms = results[name].get("median_ms")
            if ms:
                of_medians[name] = ms / mine_ms
                ratios[name] = paired_ratio(results[name]["times_ms"], mine_ts)
        slow = is_slow(ratios)
    if mine is not None and f64_reference is not None:
        try:
            ref64 = np.asarray(f64_reference(case, x, w, b))
            scale = float(np.max(np.abs(ref64), initial=0.0)) or 1.0
            errors["float64/max|y|"] = _max_abs_err(mine, ref64) / scale
        except Exception as exc:  # informational: the run goes on without it
            errors["float64/max|y|"] = float("nan")
            results[PRIMARY]["float64_error"] = f"{type(exc).__name__}: {exc}"
    route = next((b.route(case) for b in backends
                  if b.name == PRIMARY and hasattr(b, "route") and not b.unavailable()), None)
    return {**case.to_dict(), "gflop": gflop, "route": route, "results": results, "errors": errors,
            "tolerance": tol, "ref_scale": ref_scale, "correct": correct, "ratios": ratios,
            "ratios_of_medians": of_medians, "slow": slow}


def run_benchmark(cases: Sequence[Case], backends: Sequence[Backend], *, repeat: int = 7,
                  warmup: int = 2, seed: int = 0, reference: bool | str = "auto",
                  progress: Callable[[str], None] | None = None,
                  f64_reference: Callable[..., Any] | None = None) -> dict[str, Any]:
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
                                  reference=reference, f64_reference=f64_reference))
    names = [b.name for b in backends if b.name != PRIMARY]
    summary: dict[str, Any] = {}
    for name in names:
        summary[f"geomean_{name}_over_deconv"] = geomean(
            [c["ratios"][name] for c in out_cases if name in c["ratios"]])
    if names:  # the target metric: the faster competitor's time over deconv's, per case
        summary["geomean_faster_peer_over_deconv"] = geomean(
            [min(c["ratios"].values()) for c in out_cases if c["ratios"]])
    summary["slow"] = [c["id"] for c in out_cases if c["slow"]]
    summary["wrong"] = [c["id"] for c in out_cases if c["correct"] is False]
    summary["failed"] = [c["id"] for c in out_cases
                         if "median_ms" not in c["results"].get(PRIMARY, {})]
    return {"settings": {"repeat": repeat, "warmup": warmup, "seed": seed,
                         "slow_fraction": SLOW_FRACTION, "rel_tol": REL_TOL,
                         "timing": f"interleaved rounds, {PAUSE_S * 1e3:g} ms pause per call; "
                                   "ratios are medians of the rounds' ratios"},
            "backends": {b.name: {"version": b.version() if not b.unavailable() else None,
                                  "skipped": b.unavailable()} for b in backends},
            "cases": out_cases, "summary": summary}
