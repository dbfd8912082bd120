"""The pure-python files deconv_core and the client both need exist twice, byte for byte equal.

deconv_core may import only numpy and numba and the client never imports deconv_core, so the
window maths (``_windows.py``) and the framework ports (``_ports.py``) have one copy in each
package; this test is what keeps them one source.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["_windows.py", "_ports.py"])
def test_copies_are_identical(name: str) -> None:
    core = (ROOT / "deconv_core" / name).read_bytes()
    client = (ROOT / "client" / "deconv_client" / name).read_bytes()
    assert core == client, f"deconv_core/{name} and client/deconv_client/{name} differ: copy one"
