"""Backward benchmark: deconv_core's gradients beside torch's, and a deconvolution recovery.

``python -m bench.backward`` (from the repository root) times, per benchmark case of
:mod:`bench.cases` (default T1 and C1):

* deconv's forward (``conv``/``conv_transpose`` with bias) and backward
  (``conv_backward``/``conv_transpose_backward`` computing all three gradients; with
  ``--parts`` also the input and the weight gradient alone),
* when torch is installed, its forward (``torch.nn.functional``, inference mode) and its
  backward alone (``torch.ops.aten.convolution_backward`` with all three outputs, what autograd
  calls), and the largest gradient difference between the two.

Every callable runs once untimed, then the repetitions are interleaved (one run of each
callable per round) and the median of each is reported, so drifting machine load hits all of
them alike. ``deconv_core`` is imported before torch so that torch's OpenMP workers also sleep
when idle (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning against the next callable.

``python -m bench.backward --recovery`` measures instead how well ``deconvolve`` undoes a
known blur: a synthetic 256x256 image, blurred by ``conv`` with a 9x9 Gaussian (sigma 2,
``padding="same"``) plus Gaussian noise (sigma 0.01), restored by CGLS (early stopping and a
few dampings) and, for comparison, by Wiener and Richardson-Lucy; it prints the relative L2
errors over the whole image and over its interior.

torch is optional (``pip install torch==2.13.0``, the CPU build); without it only deconv's
columns are filled.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import deconv_core
from bench.cases import Case, make_inputs, select_cases

__all__ = ["main", "recovery", "run_case"]


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _kwargs(case: Case) -> dict[str, Any]:
    p = case.params()
    kw: dict[str, Any] = {
        "stride": p["stride"], "padding": p["padding"], "dilation": p["dilation"],
        "groups": case.groups,
    }
    if case.op == "conv_transpose":
        kw["output_padding"] = p["output_padding"]
    return kw


def _interleaved(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Median milliseconds of each callable over ``repeat`` interleaved rounds."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(1e3 * (time.perf_counter() - start))
    return {name: statistics.median(ts) for name, ts in times.items()}


def run_case(case: Case, *, repeat: int = 7, parts: bool = False) -> dict[str, Any]:
    """Time one case's forward and backward on deconv (and torch when installed)."""
    x, w, b = make_inputs(case)
    g = np.random.default_rng(1).standard_normal(case.output_shape, dtype=np.float32)
    kw = _kwargs(case)
    if case.op == "conv":
        fwd, bwd = deconv_core.conv, deconv_core.conv_backward
    else:
        fwd, bwd = deconv_core.conv_transpose, deconv_core.conv_transpose_backward
    fns: dict[str, Callable[[], Any]] = {
        "deconv_fwd": lambda: fwd(x, w, b, **kw),
        "deconv_bwd": lambda: bwd(g, x, w, **kw),
    }
    if parts:
        fns["deconv_bwd_input"] = lambda: bwd(g, x, w, **kw, need="input")
        fns["deconv_bwd_weight"] = lambda: bwd(g, x, w, **kw, need="weight")
    torch = _torch()
    err = None
    if torch is not None:
        import torch.nn.functional as F  # noqa: N812

        tx, tw, tb, tg = (torch.from_numpy(np.ascontiguousarray(a)) for a in (x, w, b, g))
        p = case.params()
        transposed = case.op == "conv_transpose"
        fn = getattr(F, f"conv_transpose{case.rank}d" if transposed else f"conv{case.rank}d")
        extra = {"output_padding": p["output_padding"]} if transposed else {}

        def torch_fwd() -> Any:
            with torch.inference_mode():
                return fn(tx, tw, tb, stride=p["stride"], padding=p["padding"],
                          dilation=p["dilation"], groups=case.groups, **extra)

        def torch_bwd() -> Any:
            return torch.ops.aten.convolution_backward(
                tg, tx, tw, [case.out_channels], list(p["stride"]), list(p["padding"]),
                list(p["dilation"]), transposed, list(p["output_padding"]), case.groups,
                [True, True, True])

        fns["torch_fwd"] = torch_fwd
        fns["torch_bwd"] = torch_bwd
        ours = bwd(g, x, w, **kw)
        theirs = [t.numpy() for t in torch_bwd()]
        err = max(
            float(np.abs(a - t).max() / max(1.0, float(np.abs(t).max())))
            for a, t in zip(ours, theirs, strict=True)
        )
    ms = _interleaved(fns, repeat)
    row: dict[str, Any] = {"id": case.id, "describe": case.describe(), "ms": ms}
    row["bwd_over_fwd"] = ms["deconv_bwd"] / ms["deconv_fwd"]
    if torch is not None:
        row["deconv_over_torch_bwd"] = ms["deconv_bwd"] / ms["torch_bwd"]
        row["deconv_over_torch_fwd"] = ms["deconv_fwd"] / ms["torch_fwd"]
        row["max_rel_diff"] = err
    return row


def _print_rows(rows: Sequence[dict[str, Any]], parts: bool) -> None:
    head = f"{'case':4s} {'fwd ms':>8s} {'bwd ms':>8s} {'bwd/fwd':>7s}"
    if parts:
        head += f" {'input':>8s} {'weight':>8s}"
    head += f" {'torch fwd':>9s} {'torch bwd':>9s} {'bwd ratio':>9s} {'max diff':>9s}"
    print(head)
    for row in rows:
        ms = row["ms"]
        line = f"{row['id']:4s} {ms['deconv_fwd']:8.1f} {ms['deconv_bwd']:8.1f} "
        line += f"{row['bwd_over_fwd']:7.2f}"
        if parts:
            line += f" {ms['deconv_bwd_input']:8.1f} {ms['deconv_bwd_weight']:8.1f}"
        if "torch_bwd" in ms:
            line += (f" {ms['torch_fwd']:9.1f} {ms['torch_bwd']:9.1f} "
                     f"{row['deconv_over_torch_bwd']:9.2f} {row['max_rel_diff']:9.1e}")
        else:
            line += f" {'-':>9s} {'-':>9s} {'-':>9s} {'-':>9s}"
        print(line)
    print("ms: median of interleaved runs; bwd ratio = deconv backward / torch backward "
          "(below 1: deconv faster); max diff = largest |deconv - torch| gradient element / "
          "max(1, max |torch|)")


# --------------------------------------------------------------------------- recovery


def synthetic_image(n: int = 256) -> np.ndarray:
    """A deterministic synthetic image in [0, ~1.3]: shapes, a blob, a ramp and a texture."""
    yy, xx = np.mgrid[:n, :n] / n
    img = 0.2 + 0.3 * xx
    img = img + np.where((xx - 0.3) ** 2 + (yy - 0.35) ** 2 < 0.02, 0.6, 0.0)
    img = img + np.where((np.abs(xx - 0.7) < 0.12) & (np.abs(yy - 0.3) < 0.08), 0.5, 0.0)
    img = img + 0.5 * np.exp(-((xx - 0.65) ** 2 + (yy - 0.72) ** 2) / 0.005)
    stripes = (np.abs(yy - 0.75) < 0.1) & (xx < 0.4)
    img = img + np.where(stripes, 0.25 * (np.sin(2 * np.pi * 24 * xx) > 0), 0.0)
    return img


def gaussian_kernel(k: int, sigma: float) -> np.ndarray:
    """Normalised ``k x k`` Gaussian."""
    t = np.arange(k) - k // 2
    g = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def recovery(*, n: int = 256, k: int = 9, sigma: float = 2.0, noise: float = 0.01,
             max_iter: int = 200, seed: int = 0) -> dict[str, Any]:
    """Blur a known image with ``conv`` ("same"), add noise, restore it; relative L2 errors."""
    img = synthetic_image(n)
    psf = gaussian_kernel(k, sigma)
    w = psf.reshape(1, 1, k, k)
    blurred = deconv_core.conv(img.reshape(1, 1, n, n), w, padding="same")
    y = blurred + noise * np.random.default_rng(seed).standard_normal(blurred.shape)

    border = 2 * k  # the interior error leaves out the boundary, where the models differ
    inner = (slice(border, n - border),) * 2

    def errors(a: np.ndarray) -> dict[str, float]:
        a = a.reshape(n, n)
        return {
            "error": float(np.linalg.norm(a - img) / np.linalg.norm(img)),
            "interior_error": float(np.linalg.norm(a[inner] - img[inner])
                                    / np.linalg.norm(img[inner])),
        }

    rows: list[dict[str, Any]] = [
        {"method": "blurred, noise-free (no restoration)", **errors(blurred)},
        {"method": "blurred + noise (no restoration)", **errors(y)},
    ]
    runs = [(0.0, 10), (0.0, max_iter), (3e-3, max_iter), (1e-2, max_iter), (3e-2, max_iter)]
    for damping, iters in runs:
        start = time.perf_counter()
        res = deconv_core.deconvolve(y, w, padding="same", damping=damping, max_iter=iters,
                                     tol=1e-6)
        rows.append({
            "method": f"deconvolve damping={damping:g} max_iter={iters}",
            **errors(res.x),
            "iterations": res.iterations,
            "converged": res.converged,
            "residual_norm": res.residual_norm,
            "seconds": time.perf_counter() - start,
        })
    start = time.perf_counter()
    clean = deconv_core.deconvolve(blurred, w, padding="same", max_iter=max_iter, tol=1e-8)
    rows.append({"method": f"deconvolve of the noise-free blur, max_iter={max_iter}",
                 **errors(clean.x), "iterations": clean.iterations,
                 "converged": clean.converged, "seconds": time.perf_counter() - start})
    y2 = y.reshape(n, n)
    for nsr in (1e-2, 3e-2):
        out = deconv_core.wiener_deconvolve(y2, psf, nsr=nsr, boundary="symmetric")
        rows.append({"method": f"wiener_deconvolve nsr={nsr:g} boundary=symmetric",
                     **errors(out)})
    for iters in (10, 30):
        out = deconv_core.richardson_lucy(y2, psf, iterations=iters, boundary="symmetric")
        rows.append({"method": f"richardson_lucy iterations={iters} boundary=symmetric",
                     **errors(out)})
    return {"image": f"{n}x{n} synthetic", "blur": f"{k}x{k} Gaussian sigma={sigma}, conv "
            f"padding='same'", "noise_sigma": noise, "border": border, "rows": rows}


def _print_recovery(report: dict[str, Any]) -> None:
    print(f"{report['image']}, blur {report['blur']}, noise sigma {report['noise_sigma']}")
    print(f"{'method':52s} {'rel L2 err':>10s} {'interior':>9s} {'iters':>6s} {'seconds':>8s}")
    for row in report["rows"]:
        iters = row.get("iterations")
        secs = row.get("seconds")
        print(f"{row['method']:52s} {row['error']:10.4f} {row['interior_error']:9.4f} "
              f"{'' if iters is None else iters:>6} "
              f"{'' if secs is None else f'{secs:.2f}':>8s}")
    print(f"rel L2 err = ||restored - image|| / ||image||; interior: the same without a "
          f"{report['border']}-pixel border (Wiener and Richardson-Lucy assume a mirrored "
          f"boundary, the data were blurred with zero padding, which deconvolve models exactly)")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m bench.backward", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="T1,C1", help="comma-separated case ids, or 'all'")
    parser.add_argument("--repeat", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=2, help="threads for deconv and torch")
    parser.add_argument("--parts", action="store_true",
                        help="also time the input and weight gradients alone")
    parser.add_argument("--recovery", action="store_true",
                        help="measure the 256x256 deconvolution recovery instead")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    deconv_core.set_num_threads(args.threads)
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(args.threads)
    deconv_core.warmup()
    if args.recovery:
        report: Any = recovery()
        _print_recovery(report)
    else:
        print(f"deconv {deconv_core.__version__}, torch "
              f"{torch.__version__ if torch is not None else 'not installed'}, "
              f"{args.threads} threads, {args.repeat} interleaved rounds")
        report = [run_case(c, repeat=args.repeat, parts=args.parts)
                  for c in select_cases(args.cases)]
        for row in report:
            print(f"{row['id']}: {row['describe']}")
        _print_rows(report, args.parts)
        ratios = [r["deconv_over_torch_bwd"] for r in report if "deconv_over_torch_bwd" in r]
        if ratios:
            geo = math.exp(sum(math.log(v) for v in ratios) / len(ratios))
            print(f"geomean deconv/torch backward time: {geo:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
