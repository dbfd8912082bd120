"""Benchmark harness for deconv_core against PyTorch and onnxruntime (DESIGN.md section 5).

Run ``python -m bench --help`` (or ``make bench``). Modules: :mod:`bench.cases` (the case
table and FLOP counts), :mod:`bench.backends` (what is timed), :mod:`bench.reference` (numpy
oracle), :mod:`bench.environment` (threads, BLAS, timing, FP32 peak), :mod:`bench.runner`
(timing and error checks), :mod:`bench.memory` and :mod:`bench.startup` (subprocess
measurements), :mod:`bench.report` (table and JSON), :mod:`bench.cli` (command line).
PyTorch, onnx and onnxruntime are optional (``pip install -e '.[bench]'``); without them the
harness times deconv alone and checks it against the numpy oracle.
"""
