"""Server configuration: one frozen :class:`ServerConfig`, from defaults, DECONV_* env vars, flags.

Precedence: command-line flag > environment variable > default. Every value is checked once
here, so the rest of the server can trust it.

========================== =============================== ==================================
field                      env var                         default
========================== =============================== ==================================
host                       DECONV_HOST                     127.0.0.1
port                       DECONV_PORT                     50051 (0 = pick a free port)
max_message_bytes          DECONV_MAX_MESSAGE_BYTES        268435456 (256 MiB), both ways
max_tensor_elements        DECONV_MAX_TENSOR_ELEMENTS      67108864 (2**26) per input tensor
max_output_elements        DECONV_MAX_OUTPUT_ELEMENTS      67108864 (2**26) per result
workers                    DECONV_WORKERS                  16 compute RPCs admitted at once
log_level                  DECONV_LOG_LEVEL                INFO
warmup                     DECONV_WARMUP                   true (compile kernels before SERVING)
grace_seconds              DECONV_GRACE_SECONDS            10 (drain time on SIGTERM)
auth_token                 DECONV_AUTH_TOKEN               unset (no authentication)
========================== =============================== ==================================
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ENV_VARS", "ConfigError", "ServerConfig"]

MIB = 1024 * 1024


class ConfigError(ValueError):
    """A configuration value is malformed or out of range."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs to start; immutable once built.

    Attributes
    ----------
    host : str
        Interface to bind ("127.0.0.1", "0.0.0.0", "::", ...).
    port : int
        TCP port; 0 binds a free port (see :func:`deconv_server.app.create_server`).
    max_message_bytes : int
        Largest request accepted and response sent, in bytes.
    max_tensor_elements : int
        Largest element count of any input tensor (RESOURCE_EXHAUSTED beyond).
    max_output_elements : int
        Largest element count of a result (RESOURCE_EXHAUSTED beyond, before computing).
    workers : int
        Compute RPCs admitted at once, running or waiting for the core; the next one gets
        UNAVAILABLE. The thread pool has a few more threads so health checks still answer.
    log_level : str
        Python logging level name.
    warmup : bool
        Compile every kernel before health reports SERVING (tests may switch it off).
    grace_seconds : float
        Time in-flight RPCs get to finish on SIGTERM/SIGINT.
    auth_token : str or None
        When set, Deconv RPCs need metadata ``authorization: Bearer <token>`` (health and
        reflection stay open).
    """

    host: str = "127.0.0.1"
    port: int = 50051
    max_message_bytes: int = 256 * MIB
    max_tensor_elements: int = 1 << 26
    max_output_elements: int = 1 << 26
    workers: int = 16
    log_level: str = "INFO"
    warmup: bool = True
    grace_seconds: float = 10.0
    auth_token: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("host must be a non-empty string")
        _check_int("port", self.port, 0, 65535)
        _check_int("max_message_bytes", self.max_message_bytes, 1024, 2**31 - 1)
        _check_int("max_tensor_elements", self.max_tensor_elements, 1, 2**62)
        _check_int("max_output_elements", self.max_output_elements, 1, 2**62)
        _check_int("workers", self.workers, 1, 1024)
        if not isinstance(logging.getLevelName(str(self.log_level).upper()), int):
            raise ConfigError(f"log_level={self.log_level!r} is not a logging level name")
        if not isinstance(self.warmup, bool):
            raise ConfigError(f"warmup={self.warmup!r} must be a bool")
        if not isinstance(self.grace_seconds, int | float) or not self.grace_seconds >= 0:
            raise ConfigError(f"grace_seconds={self.grace_seconds!r} must be >= 0")
        if self.auth_token is not None and not self.auth_token:
            raise ConfigError("auth_token must be unset or non-empty")

    @property
    def address(self) -> str:
        """``host:port`` in the form gRPC binds (IPv6 hosts in brackets)."""
        return f"{format_host(self.host)}:{self.port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerConfig:
        """Build a config from DECONV_* variables, then ``overrides`` (None values ignored).

        Parameters
        ----------
        environ : mapping, optional
            Environment to read; default ``os.environ``.
        **overrides
            Field values that win over the environment (e.g. parsed command-line flags).

        Raises
        ------
        ConfigError
            A variable or override is malformed or out of range.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_VARS[field.name])
            if raw is not None and raw != "":
                values[field.name] = _parse(field.name, raw)
        for name, value in overrides.items():
            if name not in ENV_VARS:
                raise ConfigError(f"unknown setting {name!r}")
            if value is not None:
                values[name] = value
        return cls(**values)


ENV_VARS: dict[str, str] = {
    f.name: "DECONV_" + f.name.upper() for f in dataclasses.fields(ServerConfig)
}

_INT_FIELDS = {
    "port",
    "max_message_bytes",
    "max_tensor_elements",
    "max_output_elements",
    "workers",
}


def format_host(host: str) -> str:
    """Bracket a bare IPv6 address so ``host:port`` parses."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} must be an integer")
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value} must be in [{lo}, {hi}]")


def _parse(name: str, raw: str) -> Any:
    var = ENV_VARS[name]
    if name in _INT_FIELDS:
        try:
            return int(raw, 0)
        except ValueError:
            raise ConfigError(f"{var}={raw!r} must be an integer") from None
    if name == "grace_seconds":
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{var}={raw!r} must be a number of seconds") from None
    if name == "warmup":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{var}={raw!r} must be true/false/1/0")
    return raw
