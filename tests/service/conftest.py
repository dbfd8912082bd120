"""One in-process server for the whole service-test session (port 0, kernels warmed once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from deconv_client import Client
from deconv_server.app import ServerHandle, start_server
from deconv_server.config import ServerConfig

#: Small limits so RESOURCE_EXHAUSTED paths are cheap to reach.
MAX_TENSOR_ELEMENTS = 1 << 20
MAX_OUTPUT_ELEMENTS = 1 << 21
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@pytest.fixture(scope="session")
def server() -> Iterator[ServerHandle]:
    """The session's server on 127.0.0.1:<free port>, SERVING (warm) before any test uses it."""
    handle = start_server(
        ServerConfig(
            host="127.0.0.1",
            port=0,
            workers=16,
            max_tensor_elements=MAX_TENSOR_ELEMENTS,
            max_output_elements=MAX_OUTPUT_ELEMENTS,
            max_message_bytes=MAX_MESSAGE_BYTES,
            warmup=True,
            log_level="WARNING",
        )
    )
    try:
        assert handle.wait_warm(300), "kernel warmup did not finish"
        yield handle
    finally:
        handle.stop(0).wait(10)


@pytest.fixture(scope="session")
def target(server: ServerHandle) -> str:
    """host:port of the session's server."""
    return server.target


@pytest.fixture
def client(target: str) -> Iterator[Client]:
    """A fresh client with a generous deadline."""
    with Client(target, timeout=60, max_message_bytes=MAX_MESSAGE_BYTES) as c:
        yield c


def extra_server(**overrides: object) -> ServerHandle:
    """A second server (no warmup: the session server already compiled the kernels)."""
    settings = {"host": "127.0.0.1", "port": 0, "warmup": False, "log_level": "WARNING"}
    settings.update(overrides)
    return start_server(ServerConfig(**settings))  # type: ignore[arg-type]
