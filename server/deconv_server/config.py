"""Server configuration: one frozen :class:`ServerConfig`, from defaults, DECONV_* env vars, flags.

Precedence: command-line flag > environment variable > default. Every value is checked once
here, so the rest of the server can trust it.

Each field states in its metadata (a :class:`Setting`) its help text, its :class:`Kind` (how text
parses and which values are valid) and its range; the environment reader, the validation and the
``deconv-server`` flags (:mod:`deconv_server.cli`) all derive from it, so they cannot disagree.
Names derive from the field name: ``max_message_bytes`` is the variable
``DECONV_MAX_MESSAGE_BYTES`` and the flag ``--max-message-bytes``, and a bool such as ``warmup``
has ``--warmup``/``--no-warmup``. The one exception keeps an older name: ``max_flops_per_request``
reads ``DECONV_MAX_FLOPS``. :data:`ENV_VARS` maps every field to its variable, and
``deconv-server --help`` lists every setting with its variable and default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ENV_VARS",
    "SETTINGS",
    "ConfigError",
    "Kind",
    "ServerConfig",
    "Setting",
    "format_default",
    "format_host",
]

from deconv_server.settings import GRPC_MAX_SECONDS, MIB, ConfigError, Kind, Setting
from deconv_server.settings import setting as _setting

_OPS = "security and operations"
_GRPC_SECONDS = {"lo": 0, "hi": GRPC_MAX_SECONDS, "group": _OPS}


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs to start; immutable once built.

    Each field's help text, kind, range and variable are in its metadata (:data:`SETTINGS`);
    the list below is generated from them. Cross-field rules: ``auth_token`` and
    ``auth_token_file`` exclude each other, ``tls_cert`` and ``tls_key`` go together, and
    ``tls_client_ca`` needs them.
    """

    host: str = _setting("127.0.0.1", Kind.STR, "interface to bind")
    port: int = _setting(50051, Kind.INT, "port, 0 = any free port", lo=0, hi=65535)
    max_message_bytes: int = _setting(
        256 * MIB, Kind.INT, "largest request and response, in bytes", lo=1024, hi=2**31 - 1
    )
    max_tensor_elements: int = _setting(
        1 << 26, Kind.INT, "elements of any input tensor, RESOURCE_EXHAUSTED beyond", lo=1, hi=2**62
    )
    max_output_elements: int = _setting(
        1 << 26, Kind.INT, "elements of a result, RESOURCE_EXHAUSTED beyond", lo=1, hi=2**62
    )
    #: Running or waiting for the core; the next one gets UNAVAILABLE. The thread pool has a few
    #: more threads, so health checks still answer under full load.
    workers: int = _setting(16, Kind.INT, "compute RPCs admitted at once", lo=1, hi=1024)
    log_level: str = _setting("INFO", Kind.LEVEL, "logging level name")
    warmup: bool = _setting(True, Kind.BOOL, "compile every kernel before health is SERVING")
    grace_seconds: float = _setting(
        10.0, Kind.SECONDS, "time in-flight RPCs get to finish on SIGTERM/SIGINT", lo=0
    )
    #: Deconv RPCs then need metadata ``authorization: Bearer <token>``; health and reflection
    #: stay open. A flag shows in the process list: prefer the variable or ``auth_token_file``.
    auth_token: str | None = _setting(
        None,
        Kind.SECRET,
        "bearer token Deconv RPCs must send; prefer the env var or --auth-token-file",
        group=_OPS,
    )
    #: Checked before decoding; the default is tens of seconds of compute on two cores.
    max_flops_per_request: int = _setting(
        2 * 10**12,
        Kind.INT,
        "largest 2*MACs of one request, RESOURCE_EXHAUSTED beyond",
        lo=1,
        hi=2**62,
        env="DECONV_MAX_FLOPS",
    )
    auth_token_file: str | None = _setting(
        None, Kind.PATH, "file of bearer tokens, one per line, stripped", group=_OPS
    )
    tls_cert: str | None = _setting(
        None, Kind.PATH, "PEM certificate chain: TLS only, with --tls-key", group=_OPS
    )
    tls_key: str | None = _setting(None, Kind.PATH, "PEM private key of --tls-cert", group=_OPS)
    tls_client_ca: str | None = _setting(
        None, Kind.PATH, "PEM CA: clients must present a certificate it signed", group=_OPS
    )
    metrics_port: int = _setting(
        0, Kind.INT, "Prometheus /metrics port on the host, 0 = off", lo=0, hi=65535, group=_OPS
    )
    log_format: str = _setting(
        "json", Kind.STR, "JSON lines or text", choices=("json", "text"), group=_OPS
    )
    #: Clients reconnect, re-resolve and spread over replicas that started after them.
    max_connection_age_s: float = _setting(
        300.0, Kind.SECONDS, "GOAWAY to connections this old, 0 = never", **_GRPC_SECONDS
    )
    max_connection_age_grace_s: float = _setting(
        30.0, Kind.SECONDS, "time a connection gets to finish after GOAWAY", **_GRPC_SECONDS
    )
    keepalive_time_s: float = _setting(
        60.0, Kind.SECONDS, "ping connections idle this long", lo_open=True, **_GRPC_SECONDS
    )
    keepalive_timeout_s: float = _setting(
        20.0, Kind.SECONDS, "drop connections whose ping ack is late", lo_open=True, **_GRPC_SECONDS
    )
    #: So load balancers stop routing here before the server starts refusing calls.
    shutdown_delay_s: float = _setting(
        0.0, Kind.SECONDS, "NOT_SERVING this long on SIGTERM before draining", lo=0, group=_OPS
    )
    #: A request that would go over waits for no one: UNAVAILABLE at once (RESOURCE_EXHAUSTED if
    #: it could never fit). Bounds the memory of many large chunked uploads arriving together.
    max_inflight_bytes: int = _setting(
        4 * 1024 * MIB, Kind.INT, "tensor bytes admitted requests may hold at once", lo=1, hi=2**62
    )
    #: Checked before decoding, from the core's plan of the call (route and thread count).
    max_workspace_bytes: int = _setting(
        2048 * MIB, Kind.INT, "scratch bytes the core may need for one request", lo=1, hi=2**62
    )
    #: Then the server cancels the call, so a stalled or trickling client cannot hold an
    #: admission slot and its buffers forever.
    upload_timeout_s: float = _setting(
        120.0, Kind.SECONDS, "time a chunked call may take to send its request", lo=0, lo_open=True
    )
    #: From a call's headers to its (first) request message, and between two messages of a
    #: chunked upload; then DEADLINE_EXCEEDED and everything the call held is freed.
    message_timeout_s: float = _setting(
        10.0, Kind.SECONDS, "wait for each request message of a call", lo=0, lo_open=True
    )
    #: Per response message; a caller that stops reading its result is cut off and its bytes freed.
    write_timeout_s: float = _setting(
        10.0, Kind.SECONDS, "wait for the caller to take each response message", lo=0, lo_open=True
    )
    #: Estimated from the call's plan (its FLOPs and its route's throughput) before decoding.
    max_compute_seconds: float = _setting(
        30.0, Kind.SECONDS, "longest a call may hold the compute core", lo=0, lo_open=True
    )
    #: Weights kept for requests that name them by digest (LRU); a fixed bound of its own, on top
    #: of ``max_inflight_bytes`` (a call using a cached weight also reserves its bytes there).
    weight_cache_bytes: int = _setting(
        256 * MIB,
        Kind.INT,
        "bytes of weights kept by digest (LRU, their kernel-ready forms included), 0 = no cache",
        lo=0,
        hi=2**62,
    )
    #: HTTP/2 streams one connection may have open at once (gRPC's MAX_CONCURRENT_STREAMS).
    max_streams_per_connection: int = _setting(
        32, Kind.INT, "concurrent RPCs on one connection", lo=1, hi=2**31 - 1, group=_OPS
    )
    #: Callers on this host may register windows of files in it (a tmpfs) and let Conv calls
    #: read their tensors and write their results there (the .proto, "SHARED MEMORY"). The
    #: server never creates, resizes or deletes those files.
    shared_memory_dir: str | None = _setting(
        None, Kind.PATH, "directory of shared-memory files (a tmpfs), unset = off", group=_OPS
    )
    #: Every use of a region, and registering it again, renews it.
    shared_memory_lease_s: float = _setting(
        60.0, Kind.SECONDS, "a shared-memory region unused this long is dropped", lo=0, lo_open=True
    )
    max_shared_memory_regions: int = _setting(
        1024, Kind.INT, "shared-memory regions held at once, all callers", lo=1, hi=2**20
    )
    max_shared_memory_regions_per_owner: int = _setting(
        64, Kind.INT, "shared-memory regions one token may hold at once", lo=1, hi=2**20
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            f.metadata["setting"].check(f.name, getattr(self, f.name))
        if self.auth_token and self.auth_token_file:
            raise ConfigError("set auth_token or auth_token_file, not both")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key must be set together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ConfigError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")

    @property
    def tls(self) -> bool:
        """True when the server listens with TLS only."""
        return self.tls_cert is not None

    def token(self) -> str | None:
        """The (first) bearer token in force: ``auth_token``, or the first of ``auth_token_file``.

        Raises
        ------
        ConfigError
            The token file cannot be read or is empty.
        """
        tokens = self.tokens()
        return tokens[0] if tokens else None

    def tokens(self) -> tuple[str, ...]:
        """Every bearer token in force (empty: no authentication).

        ``auth_token``, or each line of ``auth_token_file`` with its surrounding whitespace
        stripped, blank lines skipped: one line per tenant. A file of one token reads as before.

        Raises
        ------
        ConfigError
            The token file cannot be read or holds no token.
        """
        if self.auth_token_file is None:
            return (self.auth_token,) if self.auth_token else ()
        try:
            with open(self.auth_token_file, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as exc:
            message = f"cannot read auth_token_file {self.auth_token_file}: {exc}"
            raise ConfigError(message) from None
        tokens = tuple(dict.fromkeys(t for line in lines if (t := line.strip())))
        if not tokens:
            raise ConfigError(f"auth_token_file {self.auth_token_file} is empty")
        return tokens

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
            Environment to read; default ``os.environ``. Empty variables count as unset.
        **overrides
            Field values that win over the environment (e.g. parsed command-line flags).

        Returns
        -------
        ServerConfig

        Raises
        ------
        ConfigError
            A variable or override is malformed or out of range, or names no setting.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, setting in SETTINGS.items():
            raw = env.get(ENV_VARS[name])
            if not raw:  # unset or empty
                continue
            try:
                values[name] = setting.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{ENV_VARS[name]}={raw!r} {exc}") from None
        for name, value in overrides.items():
            if name not in SETTINGS:
                raise ConfigError(f"unknown setting {name!r}")
            if value is not None:
                values[name] = value
        return cls(**values)


_FIELDS = dataclasses.fields(ServerConfig)
#: Field name -> its :class:`Setting`, in declaration order.
SETTINGS: dict[str, Setting] = {f.name: f.metadata["setting"] for f in _FIELDS}

#: Field name -> its environment variable (``DECONV_<NAME>`` unless the setting names another).
ENV_VARS: dict[str, str] = {name: s.env or f"DECONV_{name.upper()}" for name, s in SETTINGS.items()}


def format_default(name: str) -> str:
    """The default of field ``name`` as written in an env var (``unset`` for None).

    Parameters
    ----------
    name : str
        A :class:`ServerConfig` field.

    Returns
    -------
    str
    """
    value = next(f.default for f in _FIELDS if f.name == name)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_host(host: str) -> str:
    """Bracket a bare IPv6 address so ``host:port`` parses."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _attributes_doc() -> str:
    lines = ["", "    Attributes", "    ----------"]
    for f in _FIELDS:
        s: Setting = f.metadata["setting"]
        lines.append(f"    {f.name} : {f.type}")
        text = f"{s.help[0].upper()}{s.help[1:]} (env {ENV_VARS[f.name]}, "
        lines.append(f"        {text}default {format_default(f.name)}).")
    return "\n".join(lines) + "\n"


if ServerConfig.__doc__:  # None under python -OO
    ServerConfig.__doc__ += _attributes_doc()
