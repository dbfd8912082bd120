"""The committed stubs equal a fresh `make proto` with the pinned grpcio-tools, byte for byte."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTO = Path("deconv/v1/deconv.proto")
GENERATED = ("deconv_pb2.py", "deconv_pb2.pyi", "deconv_pb2_grpc.py")


def _pinned_tools_version() -> str:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for req in data["project"]["optional-dependencies"]["test"]:
        if req.replace(" ", "").startswith("grpcio-tools=="):
            return req.split("==", 1)[1].strip()
    pytest.fail("grpcio-tools is not pinned with == in the test extra of pyproject.toml")


def test_installed_grpcio_tools_is_the_pinned_one() -> None:
    assert metadata.version("grpcio-tools") == _pinned_tools_version()


def test_generated_stubs_have_not_drifted(tmp_path: Path) -> None:
    proto_root = ROOT / "proto"
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", f"-I{proto_root}",
        f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
        str(proto_root / PROTO),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    stale = []
    for name in GENERATED:
        fresh = (tmp_path / PROTO.parent / name).read_bytes()
        committed = (proto_root / PROTO.parent / name).read_bytes()
        if fresh != committed:
            stale.append(name)
    assert not stale, f"regenerate with `make proto`: {stale} differ from {PROTO}"
