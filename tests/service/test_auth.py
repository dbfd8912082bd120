"""Bearer-token auth from a token file: server side (DECONV_AUTH_TOKEN_FILE), client and CLI side
(token, token_file, --token-file, DECONV_TOKEN, DECONV_TOKEN_FILE); health needs no token; the
token is compared with hmac.compare_digest."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from deconv_client import Client, UnauthenticatedError
from deconv_client import cli as client_cli
from deconv_server import interceptors as interceptors_module
from deconv_server.app import ServerHandle, start_server
from deconv_server.config import ConfigError, ServerConfig
from deconv_server.logging_setup import ACCESS_LOGGER

from .conftest import extra_server
from .helpers import core

X = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
W = np.ones((1, 2, 2, 2), np.float32)
TOKEN = "t0k3n-from-a-file"


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A token file with a trailing newline, as secrets are usually mounted."""
    path = tmp_path_factory.mktemp("auth") / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def auth_server(server: ServerHandle, token_file: Path) -> Iterator[ServerHandle]:
    """A server whose token comes from DECONV_AUTH_TOKEN_FILE."""
    config = ServerConfig.from_env(
        {"DECONV_AUTH_TOKEN_FILE": str(token_file)},
        host="127.0.0.1",
        port=0,
        warmup=False,
        log_level="WARNING",
    )
    assert config.auth_token is None and config.token() == TOKEN
    handle = start_server(config)
    yield handle
    handle.stop(0).wait(5)


def test_token_file_server(
    auth_server: ServerHandle, token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    with Client(auth_server.target, timeout=10) as c:
        assert c.health() == "SERVING"  # probes need no token
        assert c.health("deconv.v1.Deconv") == "SERVING"
        with pytest.raises(UnauthenticatedError):
            c.conv_transpose(X, W)
        with pytest.raises(UnauthenticatedError):
            c.server_info()
    with Client(auth_server.target, timeout=10, token_file=token_file) as c:
        np.testing.assert_array_equal(c.conv_transpose(X, W), core("conv_transpose", X, W))
    codes = [r.fields["code"] for r in caplog.records if r.name == ACCESS_LOGGER]
    assert codes.count("UNAUTHENTICATED") == 2 and "OK" in codes  # rejections are logged too


def test_token_is_compared_in_constant_time(
    auth_server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = interceptors_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(interceptors_module.hmac, "compare_digest", spy)
    with (
        Client(auth_server.target, timeout=10, token="nope") as c,
        pytest.raises(UnauthenticatedError),
    ):
        c.server_info()
    with Client(auth_server.target, timeout=10, token=TOKEN) as c:
        c.server_info()
    assert (b"Bearer nope", f"Bearer {TOKEN}".encode()) in seen
    assert (f"Bearer {TOKEN}".encode(),) * 2 in seen


def test_cli_token_sources(
    auth_server: ServerHandle,
    token_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = ["--target", auth_server.target, "--timeout", "10"]
    monkeypatch.delenv("DECONV_TOKEN", raising=False)
    monkeypatch.delenv("DECONV_TOKEN_FILE", raising=False)
    assert client_cli.main(["info", *target]) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert client_cli.main(["info", *target, "--token-file", str(token_file)]) == 0
    assert '"warm": true' in capsys.readouterr().out
    monkeypatch.setenv("DECONV_TOKEN_FILE", str(token_file))
    assert client_cli.main(["info", *target]) == 0
    capsys.readouterr()
    monkeypatch.setenv("DECONV_TOKEN", "wrong")  # the variable wins over DECONV_TOKEN_FILE
    assert client_cli.main(["info", *target]) == 1
    capsys.readouterr()
    assert client_cli.main(["info", *target, "--token", TOKEN]) == 0  # a flag wins over both
    capsys.readouterr()
    assert client_cli.main(["info", *target, "--token-file", "/nonexistent/token"]) == 2
    assert "cannot read token_file /nonexistent/token" in capsys.readouterr().err


def test_token_configuration_errors(token_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        ServerConfig(auth_token="a", auth_token_file=str(token_file))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        extra_server(auth_token_file=str(empty))
    with pytest.raises(ConfigError, match="cannot read auth_token_file"):
        extra_server(auth_token_file=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not both"):
        Client("127.0.0.1:1", token="a", token_file=token_file)
