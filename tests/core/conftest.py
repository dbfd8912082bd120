"""pytest hooks of the core tests: fresh plans per test; the largest core-vs-oracle errors at
session end."""

from __future__ import annotations

import pytest

from deconv_core import api

from .helpers import ERROR_STATS


@pytest.fixture(autouse=True)
def _fresh_plans():
    """Tests force routes by patching the dispatcher and its constants: every test plans its
    calls afresh (``conv``/``conv_transpose`` keep plans between calls)."""
    api.clear_plan_cache()
    yield
    api.clear_plan_cache()


def pytest_terminal_summary(terminalreporter):
    """Report the largest abs and bound-relative error per dtype seen against the oracle."""
    if not ERROR_STATS:
        return
    tr = terminalreporter
    tr.section("deconv_core vs oracle: largest errors")
    for name in sorted(ERROR_STATS):
        st = ERROR_STATS[name]
        tr.write_line(
            f"{name:8s} {st['n']:5d} results  max abs err {st['abs']:.3e} ({st['abs_case']})  "
            f"max rel err {st['rel']:.3e} ({st['rel_case']})"
        )
    tr.write_line("(rel err = |core - oracle| / sum of |terms| of the element)")
