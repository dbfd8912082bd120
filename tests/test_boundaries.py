"""Import boundaries between the packages, checked on sys.modules in fresh interpreters.

deconv_core (numpy + numba) never loads gRPC or protobuf; the shared stubs + codec (package
``deconv``) and the client never load numba or the core; the server never loads the client; the
container health probe stays light. No installed package loads the test or benchmark code
(``tests``, ``bench``: the shared numpy oracle lives in tests/core/oracle.py). The bare install
(no extra) is the client only.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Repository-only code (test oracle, benchmark) that no installed package may load.
REPO_ONLY = ["tests", "bench"]
#: Frameworks deconv reads layers of (duck-typed) but never imports.
FRAMEWORKS = ["torch", "tensorflow", "keras", "onnx", "onnxruntime"]

CASES = {
    # package imports (all its public modules) -> module prefixes it must never load
    "deconv_client": (
        ["deconv_client", "deconv_client.aio", "deconv_client.cli", "deconv_client.errors",
         "deconv_client.layers"],
        ["numba", "llvmlite", "deconv_core", "deconv_server", *FRAMEWORKS],
    ),
    "deconv_core": (
        ["deconv_core"],
        ["grpc", "google.protobuf", "deconv_server", "deconv_client", *FRAMEWORKS],
    ),
    "deconv (stubs + codec)": (
        ["deconv.codec", "deconv.v1.deconv_pb2", "deconv.v1.deconv_pb2_grpc"],
        ["numba", "llvmlite", "deconv_core", "deconv_server", "deconv_client"],
    ),
    "deconv_server": (
        ["deconv_server.app", "deconv_server.cli", "deconv_server.servicer"],
        ["deconv_client"],
    ),
    "deconv_server.healthcheck": (
        ["deconv_server.healthcheck"],
        ["numba", "deconv_core", "deconv_client"],
    ),
}


def _loaded(modules: list[str]) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("name", list(CASES))
def test_import_boundary(name: str) -> None:
    imports, forbidden = CASES[name]
    forbidden = [*forbidden, *REPO_ONLY]
    loaded = _loaded(imports)
    assert set(imports) <= loaded
    bad = sorted(m for m in loaded for f in forbidden if m == f or m.startswith(f + "."))
    assert not bad, f"{name} pulled in {bad}"


def test_server_really_loads_the_core() -> None:
    """The check above can fail: the server side does load numba and the core."""
    loaded = _loaded(["deconv_server.app"])
    assert {"numba", "deconv_core", "grpc"} <= loaded


def test_bare_install_is_the_client_only() -> None:
    """`pip install deconv` with no extra pulls grpcio, protobuf and numpy, nothing else
    (no numba, no compiler); numba comes only with the `server` extra."""
    import re
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in reqs}

    assert names(project["dependencies"]) == {"grpcio", "protobuf", "numpy"}
    assert "numba" in names(project["optional-dependencies"]["server"])
    assert {"torch", "tensorflow", "tensorflow-cpu", "onnxruntime"}.isdisjoint(
        names(project["optional-dependencies"]["test"]) | names(project["dependencies"])
    )
