"""ServerConfig: defaults, DECONV_* variables, flag precedence, validation; the server CLI."""

from __future__ import annotations

import pytest
from deconv_server.cli import build_parser
from deconv_server.config import ConfigError, ServerConfig


def test_defaults() -> None:
    c = ServerConfig.from_env({})
    assert (c.host, c.port, c.max_message_bytes) == ("127.0.0.1", 50051, 256 * 1024 * 1024)
    assert c.warmup is True and c.auth_token is None
    assert c.address == "127.0.0.1:50051"


def test_environment_and_overrides() -> None:
    env = {
        "DECONV_HOST": "0.0.0.0",
        "DECONV_PORT": "6000",
        "DECONV_MAX_MESSAGE_BYTES": "0x100000",
        "DECONV_MAX_TENSOR_ELEMENTS": "1000",
        "DECONV_WORKERS": "3",
        "DECONV_WARMUP": "off",
        "DECONV_LOG_LEVEL": "debug",
        "DECONV_GRACE_SECONDS": "2.5",
    }
    c = ServerConfig.from_env(env)
    assert (c.host, c.port, c.max_message_bytes, c.max_tensor_elements) == (
        "0.0.0.0",
        6000,
        1 << 20,
        1000,
    )
    assert (c.workers, c.warmup, c.grace_seconds) == (3, False, 2.5)
    c = ServerConfig.from_env(env, port=7000, workers=None)
    assert c.port == 7000 and c.workers == 3


def test_ipv6_address_is_bracketed() -> None:
    assert ServerConfig(host="::", port=1).address == "[::]:1"


@pytest.mark.parametrize(
    ("env", "pattern"),
    [
        ({"DECONV_PORT": "http"}, "DECONV_PORT='http' must be an integer"),
        ({"DECONV_PORT": "70000"}, r"port=70000 must be in \[0, 65535\]"),
        ({"DECONV_WORKERS": "0"}, "workers=0"),
        ({"DECONV_WARMUP": "maybe"}, "DECONV_WARMUP='maybe'"),
        ({"DECONV_LOG_LEVEL": "chatty"}, "log_level='chatty'"),
        ({"DECONV_GRACE_SECONDS": "-1"}, "grace_seconds=-1.0"),
    ],
)
def test_bad_values(env: dict[str, str], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        ServerConfig.from_env(env)


def test_cli_flags_map_to_fields() -> None:
    args = build_parser().parse_args(["--port", "0", "--no-warmup", "--workers", "2"])
    c = ServerConfig.from_env({"DECONV_PORT": "9"}, **vars(args))
    assert c.port == 0 and c.warmup is False and c.workers == 2
