"""Text table and JSON file for a benchmark report (the dict built by :mod:`bench.cli`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["format_report", "format_table", "write_json"]

_SHORT_OP = {"conv_transpose": "convT", "conv": "conv"}


#: deconv's error against a float64 computation, over the reference's max |y|.
F64 = "float64/max|y|"
_ERR_HEADS = {"reference": "err ref", F64: "err/max|y|"}


def _num(v: float | None, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, fmt)


def _competitors(report: dict[str, Any]) -> list[str]:
    return [n for n in report.get("backends", {}) if n != "deconv"]


def format_table(report: dict[str, Any]) -> str:
    """The per-case table: times, GFLOP/s, ratios, errors, memory and flags."""
    comps = _competitors(report)
    err_names = [*comps]
    if any("reference" in c["errors"] for c in report["cases"]):
        err_names.append("reference")
    if any(F64 in c["errors"] for c in report["cases"]):
        err_names.append(F64)
    peak = (report.get("fp32_peak") or {}).get("gflops_best")
    mem = (report.get("memory") or {}).get("cases", {})
    header = ["case", "op", "route", "GFLOP", "deconv ms", "GFLOP/s"]
    if peak:
        header.append("%peak")
    header += [f"{n} ms" for n in comps] + [f"{n}/dc" for n in comps]
    header += [_ERR_HEADS.get(n, f"err {n}") for n in err_names]
    if mem:
        header.append("peak MiB")
    header.append("flag")
    rows = []
    for c in report["cases"]:
        res = c["results"]
        mine = res.get("deconv", {})
        row = [c["id"], _SHORT_OP[c["op"]] + (f" {c['note']}" if c["note"] else ""),
               c.get("route") or "-", _num(c["gflop"], ".2f"), _num(mine.get("median_ms"), ".2f"),
               _num(mine.get("gflops"), ".1f")]
        if peak:
            g = mine.get("gflops")
            row.append(_num(100 * g / peak if g else None, ".0f"))
        row += [_num(res.get(n, {}).get("median_ms"), ".2f") for n in comps]
        row += [_num(c["ratios"].get(n), ".2f") for n in comps]
        row += [_num(c["errors"].get(n), ".1e") for n in err_names]
        if mem:
            row.append(_num(mem.get(c["id"], {}).get("peak_mib"), ".1f"))
        flags = []
        if "median_ms" not in mine:
            flags.append("FAIL")
        if c["correct"] is False:
            flags.append("WRONG")
        if c["slow"]:
            flags.append("SLOW")
        row.append(",".join(flags))
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    left = {0, 1, 2, len(header) - 1}

    def fmt(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) if i in left else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    lines = [fmt(header), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    """The table plus summary lines: geomeans, flags, peak, BLAS, memory, start-up, failures."""
    out = [format_table(report), ""]
    summary = report["summary"]
    for name in _competitors(report):
        skipped = report["backends"][name].get("skipped")
        g = summary.get(f"geomean_{name}_over_deconv")
        out.append(f"geomean {name}/deconv: {_num(g, '.3f')}"
                   + (f"  (skipped: {skipped})" if skipped else ""))
    if "geomean_faster_peer_over_deconv" in summary:
        out.append("geomean (faster competitor)/deconv: "
                   f"{_num(summary['geomean_faster_peer_over_deconv'], '.3f')}")
    frac = report["settings"]["slow_fraction"]
    out.append(f"SLOW (deconv below {frac:g}x the faster competitor): "
               f"{', '.join(summary['slow']) or 'none'}")
    out.append(f"WRONG (max abs error > {report['settings']['rel_tol']:g} x max(1, |ref|)): "
               f"{', '.join(summary['wrong']) or 'none'}")
    for c in report["cases"]:
        for name, res in c["results"].items():
            if "error" in res:
                out.append(f"{c['id']} {name} failed: {res['error']}")
    host = report.get("host", {})
    if host.get("cpu"):
        out.append(f"machine: {host['cpu']}, {host.get('cores')} cores, "
                   f"SIMD {host.get('simd', '?')}")
    if host.get("wait"):
        out.append("thread wait settings: "
                   + ", ".join(f"{k}={v}" for k, v in host["wait"].items())
                   + f"; core workers pinned one per CPU: {host.get('workers_pinned', '?')}")
    if report.get("settings_blas"):
        out.append(f"deconv BLAS: {report['settings_blas']}")
    if report.get("settings", {}).get("deconv_weights"):
        out.append(f"deconv weights: {report['settings']['deconv_weights']} "
                   f"(--prepared-weights keeps them, as onnxruntime's session does)")
    if report.get("settings", {}).get("timing"):
        out.append(f"timing: {report['settings']['timing']}, median of "
                   f"{report['settings']['repeat']} rounds after {report['settings']['warmup']}")
    load0 = report.get("host", {}).get("loadavg_1_5_15")
    load1 = report.get("loadavg_after_timing")
    if load0 and load1:
        out.append(f"load average (1 min): {load0[0]:.2f} before timing, {load1[0]:.2f} after "
                   f"(includes this run) on {report['host'].get('cores')} cores")
    peak = report.get("fp32_peak")
    if peak:
        out.append(f"FP32 peak (numpy matmul {peak['n']}^2, {report['threads']} threads): "
                   f"{peak['gflops_best']:.1f} GFLOP/s best, {peak['gflops_median']:.1f} median")
    for lib in report.get("blas", []):
        out.append(f"threadpool: {lib.get('internal_api')} {lib.get('version')} "
                   f"kernel={lib.get('architecture', '-')} threads={lib.get('num_threads')} "
                   f"[{Path(lib.get('filepath') or '-').name}]")
    rt = report.get("runtime_info")
    if rt:
        out.append("deconv_core.runtime_info(): " + ", ".join(
            f"{k}={v}" for k, v in rt.items() if not isinstance(v, list | dict)))
    mem = report.get("memory")
    if mem:
        cal = mem.get("calibration")
        out.append(f"memory: {mem.get('method')}"
                   + (f"; calibration {cal['measured_mib']} MiB for {cal['allocated_mib']} MiB"
                      if cal else "") + (f"; ERROR {mem['error']}" if "error" in mem else ""))
        for cid, m in mem.get("cases", {}).items():
            if "error" in m:
                out.append(f"memory {cid}: {m['error']}")
    st = report.get("startup")
    if st:
        for phase in ("cold", "cached"):
            p = st.get(phase, {})
            if "error" in p:
                out.append(f"startup {phase}: {p['error']}")
            else:
                out.append(f"startup {phase}: import {p['import_s']:.2f} s + warmup "
                           f"{p['warmup_s']:.2f} s, process {p['process_s']:.2f} s")
    return "\n".join(out)


def _clean(obj: Any) -> Any:
    """JSON cannot hold inf/nan: turn them into None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report as indented JSON (creating parent folders); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(report), indent=2, sort_keys=False) + "\n")
    return path
