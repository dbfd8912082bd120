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
max_flops_per_request      DECONV_MAX_FLOPS                2000000000000 (2e12) per request
auth_token_file            DECONV_AUTH_TOKEN_FILE          unset (file holding the token)
tls_cert                   DECONV_TLS_CERT                 unset (PEM certificate chain: TLS on)
tls_key                    DECONV_TLS_KEY                  unset (PEM private key of tls_cert)
tls_client_ca              DECONV_TLS_CLIENT_CA            unset (PEM CA: require client certs)
metrics_port               DECONV_METRICS_PORT             0 (off; 9090 in deployments)
log_format                 DECONV_LOG_FORMAT               json (or text)
max_connection_age_s       DECONV_MAX_CONNECTION_AGE_S     300 (0 = unlimited)
max_connection_age_grace_s DECONV_MAX_CONNECTION_AGE_GRACE_S 30
keepalive_time_s           DECONV_KEEPALIVE_TIME_S         60 (server pings idle connections)
keepalive_timeout_s        DECONV_KEEPALIVE_TIMEOUT_S      20
shutdown_delay_s           DECONV_SHUTDOWN_DELAY_S         0 (NOT_SERVING before draining)
max_inflight_bytes         DECONV_MAX_INFLIGHT_BYTES       4294967296 (4 GiB) of tensors at once
upload_timeout_s           DECONV_UPLOAD_TIMEOUT_S         300 (to send a chunked request)
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
    auth_token_file : str or None
        File whose content (stripped) is the token; exclusive with ``auth_token``.
    tls_cert, tls_key : str or None
        PEM files of the server certificate chain and its key; both set = TLS only.
    tls_client_ca : str or None
        PEM CA bundle; when set every client must present a certificate it signed (mTLS).
    metrics_port : int
        Prometheus ``/metrics`` HTTP port on ``host``; 0 = no metrics endpoint.
    log_format : str
        "json" (one JSON object per line) or "text".
    max_connection_age_s, max_connection_age_grace_s : float
        Connections get GOAWAY after this age (0 = never), and then this long to finish, so
        clients re-resolve and new replicas receive traffic.
    keepalive_time_s, keepalive_timeout_s : float
        The server pings a connection idle this long and drops it when no ack comes in time.
    shutdown_delay_s : float
        On SIGTERM, report NOT_SERVING and keep serving this long before draining, so load
        balancers stop routing here first.
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
    #: Largest 2*MACs of one request (RESOURCE_EXHAUSTED beyond, before decoding); env
    #: DECONV_MAX_FLOPS, default 2e12 (tens of seconds of compute on two cores).
    max_flops_per_request: int = 2 * 10**12
    auth_token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    metrics_port: int = 0
    log_format: str = "json"
    max_connection_age_s: float = 300.0
    max_connection_age_grace_s: float = 30.0
    keepalive_time_s: float = 60.0
    keepalive_timeout_s: float = 20.0
    shutdown_delay_s: float = 0.0
    #: Bytes of tensors (inputs and result) that admitted requests may hold at once; a request
    #: that would go over waits for no one: UNAVAILABLE at once (RESOURCE_EXHAUSTED if it could
    #: never fit). Bounds the memory of many large chunked uploads arriving together.
    max_inflight_bytes: int = 4 * 1024 * MIB
    #: Seconds a chunked call may take to send its request; then the server cancels it, so a
    #: stalled or trickling client cannot hold an admission slot and its buffers forever.
    upload_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        _check_int("max_flops_per_request", self.max_flops_per_request, 1, 2**62)
        _check_int("max_inflight_bytes", self.max_inflight_bytes, 1, 2**62)
        if not isinstance(self.upload_timeout_s, int | float) or not self.upload_timeout_s > 0:
            raise ConfigError(f"upload_timeout_s={self.upload_timeout_s!r} must be > 0")
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
        self._check_ops()

    def _check_ops(self) -> None:
        """Security and operations settings (TLS, token file, metrics, connections)."""
        if self.auth_token and self.auth_token_file:
            raise ConfigError("set auth_token or auth_token_file, not both")
        for name in ("auth_token_file", "tls_cert", "tls_key", "tls_client_ca"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{name}={value!r} must be unset or a file path")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key must be set together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        _check_int("metrics_port", self.metrics_port, 0, 65535)
        if self.log_format not in ("json", "text"):
            raise ConfigError(f"log_format={self.log_format!r} must be 'json' or 'text'")
        for name in _SECONDS_FIELDS - {"grace_seconds"}:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(f"{name}={value!r} must be a number of seconds >= 0")
        if self.keepalive_time_s <= 0 or self.keepalive_timeout_s <= 0:
            raise ConfigError("keepalive_time_s and keepalive_timeout_s must be > 0")

    @property
    def tls(self) -> bool:
        """True when the server listens with TLS only."""
        return self.tls_cert is not None

    def token(self) -> str | None:
        """The bearer token in force: ``auth_token``, or the content of ``auth_token_file``.

        Raises
        ------
        ConfigError
            The token file cannot be read or is empty.
        """
        if self.auth_token_file is None:
            return self.auth_token
        try:
            with open(self.auth_token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read auth_token_file {self.auth_token_file}: {exc}"
            ) from None
        if not token:
            raise ConfigError(f"auth_token_file {self.auth_token_file} is empty")
        return token

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
ENV_VARS["max_flops_per_request"] = "DECONV_MAX_FLOPS"

_INT_FIELDS = {
    "max_flops_per_request",
    "max_inflight_bytes",
    "port",
    "max_message_bytes",
    "max_tensor_elements",
    "max_output_elements",
    "workers",
    "metrics_port",
}

_SECONDS_FIELDS = {
    "grace_seconds",
    "upload_timeout_s",
    "max_connection_age_s",
    "max_connection_age_grace_s",
    "keepalive_time_s",
    "keepalive_timeout_s",
    "shutdown_delay_s",
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
    if name in _SECONDS_FIELDS:
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
