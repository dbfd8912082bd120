"""Smoke test of the benchmark harness (bench/): runs in-process on tiny made-up cases, with
deconv_core alone (no torch, no onnxruntime), and checks the numpy oracle the harness uses (the
core tests' ``tests/core/oracle.py``), the FLOP counts, the error column (including that it
catches a wrong result), the table and the JSON file."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

# bench/ is not an installed package, and bench imports the oracle as tests.core.oracle
# (tests/ has no __init__.py: a namespace package found from the repository root).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backends import Backend, DeconvBackend, ReferenceBackend
from bench.cases import CASES, Case, make_inputs, select_cases
from bench.memory import hwm_reset_supported, peak_rss_delta_mib
from bench.report import format_report, write_json
from bench.runner import geomean, is_slow, paired_ratio, run_benchmark
from tests.core import oracle

TINY = (
    Case("X1", "conv_transpose", (2, 4, 5, 6), (4, 3, 3, 2), stride=(2, 3), padding=1,
         output_padding=(1, 0), note="tiny"),
    Case("X2", "conv", (2, 4, 7), (6, 2, 3), stride=2, padding=1, dilation=2, groups=2),
)


class OffByBias(Backend):
    """deconv with a deliberate error: the harness must report it as WRONG."""

    name = "deconv"

    def prepare(self, case, x, w, b):
        good = DeconvBackend().prepare(case, x, w, b)
        return lambda: good() + np.float32(0.5)


def test_reference_backend_on_the_worked_example():
    # docs/semantics.md, "Worked example": x=[1,2,3], w=[1,10,100], s=2; the full result is
    # [1,10,102,20,203,30,300]. PyTorch padding=1, output_padding=1 crops one pixel in front; the
    # bias is added to every element afterwards. Run through a Case, as the harness does.
    x = np.array([[[1.0, 2.0, 3.0]]])
    w = np.array([[[1.0, 10.0, 100.0]]])
    port = Case("W1", "conv_transpose", (1, 1, 3), (1, 1, 3), stride=2, padding=1,
                output_padding=1)
    y = ReferenceBackend().prepare(port, x, w, None)()
    np.testing.assert_array_equal(y[0, 0], [10, 102, 20, 203, 30, 300])
    full = Case("W2", "conv_transpose", (1, 1, 3), (1, 1, 3), stride=2)
    y = ReferenceBackend().prepare(full, x, w, np.array([5.0]))()
    np.testing.assert_array_equal(y[0, 0], np.array([1, 10, 102, 20, 203, 30, 300]) + 5)
    assert y.shape == full.output_shape


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_reference_pair_is_adjoint(rank):
    # <conv(y), x> == <y, conv_transpose(x)> with op = (n + 2p - ek) mod s (docs/semantics.md,
    # "Adjoint identity").
    rng = np.random.default_rng(rank)
    n, k, s, p, d, g = (7, 6, 5)[:rank], (3, 2, 2)[:rank], (2, 3, 1)[:rank], 1, (1, 2, 1)[:rank], 2
    op = tuple((n[a] + 2 * p - d[a] * (k[a] - 1) - 1) % s[a] for a in range(rank))
    w = rng.standard_normal((4, 3, *k))  # conv: C_out=4, C_in/g=3; transposed: C_in=4, C_out/g=3
    y = rng.standard_normal((2, 6, *n))
    cy = oracle.conv(y, w, stride=s, padding=p, dilation=d, groups=g)
    x = rng.standard_normal(cy.shape)
    tx = oracle.conv_transpose(x, w, stride=s, padding=p, output_padding=op, dilation=d, groups=g)
    assert tx.shape == y.shape
    assert math.isclose(np.vdot(cy, x), np.vdot(y, tx), rel_tol=1e-10)


def test_case_table_and_flops():
    assert [c.id for c in CASES] == ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "C1", "C2"]
    by_id = {c.id: c for c in CASES}
    # T1: every input element meets 128 output channels x 16 taps.
    assert by_id["T1"].flops == 2 * (8 * 256 * 16 * 16) * 128 * 16
    assert by_id["T1"].output_shape == (8, 128, 32, 32)
    # C1: every output element is a length-64*9 dot product.
    assert by_id["C1"].flops == 2 * (8 * 64 * 56 * 56) * 64 * 9
    assert by_id["C2"].output_shape == (8, 256, 16, 16)
    assert by_id["T3"].output_shape == (1, 21, 512, 512)
    assert by_id["T5"].output_shape == (1, 16, 32, 32, 32)
    assert [c.id for c in select_cases("c1, t1")] == ["C1", "T1"]
    with pytest.raises(ValueError, match="unknown case"):
        select_cases("T9")


def test_harness_runs_and_writes_json(tmp_path):
    report = run_benchmark(TINY, [DeconvBackend()], repeat=2, warmup=1)
    report.update({"threads": 2, "fp32_peak": {"n": 8, "gflops_best": 10.0, "gflops_median": 9.0}})
    path = write_json(report, tmp_path / "sub" / "latest.json")
    data = json.loads(path.read_text())
    assert [c["id"] for c in data["cases"]] == ["X1", "X2"]
    for c in data["cases"]:
        res = c["results"]["deconv"]
        assert len(res["times_ms"]) == 2 and res["median_ms"] > 0 and res["gflops"] > 0
        # No competitor ran, so the float64 numpy oracle fills the error column.
        assert 0 <= c["errors"]["reference"] < 1e-4
        assert c["correct"] is True and c["ratios"] == {} and c["slow"] is None
        assert c["flops"] == {t.id: t.flops for t in TINY}[c["id"]]
    assert data["summary"] == {"slow": [], "wrong": [], "failed": []}
    text = format_report(report)
    assert "X1" in text and "err ref" in text and "WRONG (" in text


def test_error_column_catches_a_wrong_result_and_ratios_flag_slowness():
    fake_fast = ReferenceBackend()
    fake_fast.name = "oracle"  # a "competitor": the numpy oracle, timed like the others
    report = run_benchmark(TINY[:1], [OffByBias(), fake_fast], repeat=1, warmup=0)
    case = report["cases"][0]
    assert case["errors"]["oracle"] == pytest.approx(0.5, abs=1e-4)
    assert case["correct"] is False and report["summary"]["wrong"] == ["X1"]
    ratio = case["ratios"]["oracle"]
    expected = case["results"]["oracle"]["median_ms"] / case["results"]["deconv"]["median_ms"]
    assert ratio == pytest.approx(expected)
    assert case["slow"] is (ratio < 0.5)
    assert report["summary"]["geomean_oracle_over_deconv"] == pytest.approx(ratio)


def test_unavailable_backend_is_skipped_not_fatal():
    class Missing(Backend):
        name = "torch"

        def unavailable(self):
            return "torch not installed"

    report = run_benchmark(TINY[1:], [DeconvBackend(), Missing()], repeat=1, warmup=0)
    case = report["cases"][0]
    assert case["results"]["torch"] == {"skipped": "torch not installed"}
    assert "reference" in case["errors"] and case["correct"] is True
    assert report["summary"]["geomean_torch_over_deconv"] is None


def test_float64_error_column_is_relative_to_the_references_max():
    def off_by_a_thousandth(case, x, w, b):
        return ReferenceBackend().prepare(case, x, w, b)() * (1 + 1e-3)

    report = run_benchmark(TINY[:1], [DeconvBackend()], repeat=1, warmup=0,
                           f64_reference=off_by_a_thousandth)
    err = report["cases"][0]["errors"]["float64/max|y|"]
    assert err == pytest.approx(1e-3 / (1 + 1e-3), rel=1e-2)  # deconv's own error is ~1e-7
    assert "err/max|y|" in format_report(report)


def test_ratios_are_medians_of_the_rounds_ratios():
    # a slow round (both 3x) moves neither: 2/1, 6/3, 2.2/1 -> median 2.0
    assert paired_ratio([2.0, 6.0, 2.2], [1.0, 3.0, 1.0]) == pytest.approx(2.0)
    assert paired_ratio([4.0, 2.0], [1.0]) == pytest.approx(3.0)  # unpaired: medians


def test_geomean_and_slow_flag():
    assert geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert geomean([]) is None
    # Ratios are competitor time / deconv time: the faster competitor decides.
    assert is_slow({"torch": 3.0, "ort": 0.4}) is True
    assert is_slow({"torch": 0.6, "ort": 0.5}) is False
    assert is_slow({}) is None


@pytest.mark.skipif(not hwm_reset_supported(), reason="kernel cannot reset VmHWM")
def test_peak_rss_delta_sees_a_known_allocation():
    mib = peak_rss_delta_mib(lambda: np.ones(48 * 1024 * 1024 // 8))
    assert 44 <= mib <= 60
    x, w, b = make_inputs(TINY[0])
    assert x.dtype == w.dtype == b.dtype == np.float32


def test_prepared_weights_backend_computes_the_same_bits():
    for case in TINY:
        x, w, b = make_inputs(case, 0)
        plain = DeconvBackend().prepare(case, x, w, b)()
        prepared = DeconvBackend(prepared_weights=True).prepare(case, x, w, b)()
        assert prepared.tobytes() == plain.tobytes(), case.id


def test_rpc_latency_runs_against_real_servers_and_checks_every_result(capsys):
    """bench.rpc_latency end to end, small: a deconv server and the bare echo server in
    subprocesses on 127.0.0.1, every group of cases timed, each result compared with the local
    core's inside the run (it raises on a difference), the table printed."""
    from bench import rpc_latency

    assert rpc_latency.main(["--calls", "20", "--mib", "2", "--repeat", "1"]) == 0
    table = capsys.readouterr().out
    for row in (
        "tiny conv_transpose p50",
        "T1 remote, weight cached",
        "T1 shared memory, frozen weight",
        "2 MiB chunked, 2 images (pipelined)",
        "2 MiB bare grpcio stream echo",
    ):
        assert row in table, table
