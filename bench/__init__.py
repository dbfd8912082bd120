"""Benchmark harness for deconv_core against PyTorch and onnxruntime.

Run ``python -m bench --help`` (or ``make bench``) from the repository root. Modules:
:mod:`bench.cases` (the nine-case table T1-T7, C1-C2 and FLOP counts), :mod:`bench.backends`
(what is timed, and the numpy oracle of ``tests/core/oracle.py`` that checks it),
:mod:`bench.environment` (threads, BLAS, timing, FP32 peak), :mod:`bench.runner`
(timing and error checks), :mod:`bench.memory` and :mod:`bench.startup` (subprocess
measurements), :mod:`bench.report` (table and JSON), :mod:`bench.cli` (command line).
PyTorch, onnx and onnxruntime are optional (``pip install -e '.[bench]'``); without them the
harness times deconv alone and checks it against the numpy oracle.
"""
