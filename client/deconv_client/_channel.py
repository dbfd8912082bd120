"""Channel options and credentials of :class:`~deconv_client.Client` and its asyncio twin.

The service config always carries a retry policy for the ``deconv.v1.Deconv`` methods (retry
UNAVAILABLE with exponential backoff, at most 5 attempts): the compute RPCs are pure functions,
so a retry is always safe, and a replica that goes away or is briefly busy costs no call. With
``load_balancing="round_robin"`` (the default when the target names several addresses or is a
``dns:///`` name) calls spread over every resolved address.

:func:`channel_credentials` and :func:`resolve_token` turn the security arguments the clients
share (PEM paths or bytes, a token or a token file) into gRPC credentials and a token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import grpc
from deconv.wire import SERVICE_NAME, PemSource, read_pem

__all__ = [
    "channel_credentials",
    "channel_options",
    "channel_setup",
    "default_load_balancing",
    "resolve_token",
]

#: HTTP/2 SETTINGS_MAX_FRAME_SIZE we accept (the protocol's maximum).
MAX_FRAME_SIZE = (1 << 24) - 1
_POLICIES = ("round_robin", "pick_first")

RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def default_load_balancing(target: str) -> str:
    """``round_robin`` for ``dns:`` targets and URIs listing several addresses, else pick_first.

    Parameters
    ----------
    target : str
        "host:port", "dns:///name:port", "ipv4:///a:1,b:2", ...
    """
    scheme, sep, rest = target.partition(":")
    if sep and scheme == "dns":
        return "round_robin"
    if sep and scheme in ("ipv4", "ipv6") and "," in rest:
        return "round_robin"
    return "pick_first"


def service_config(load_balancing: str, retry: bool) -> dict[str, Any]:
    """The channel's service config (load balancing plus the Deconv retry policy)."""
    config: dict[str, Any] = {"loadBalancingConfig": [{load_balancing: {}}]}
    if retry:
        method = {"name": [{"service": SERVICE_NAME}], "retryPolicy": RETRY_POLICY}
        config["methodConfig"] = [method]
    return config


#: Interval of the client's keepalive pings while calls are open.
KEEPALIVE_MS = 30_000


def channel_options(
    target: str,
    *,
    max_message_bytes: int,
    load_balancing: str | None,
    retry: bool,
    options: Sequence[tuple[str, Any]],
) -> list[tuple[str, Any]]:
    """gRPC channel arguments; caller ``options`` come last and win.

    Raises
    ------
    ValueError
        An unknown load-balancing policy or a non-positive message size.
    """
    policy = load_balancing or default_load_balancing(target)
    if policy not in _POLICIES:
        raise ValueError(f"load_balancing={policy!r} must be one of {', '.join(_POLICIES)}")
    if max_message_bytes <= 0:
        raise ValueError(f"max_message_bytes={max_message_bytes} must be > 0")
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.service_config", json.dumps(service_config(policy, retry))),
        ("grpc.enable_retries", 1 if retry else 0),
        # A retried call must be buffered whole; the default 256 KiB would stop retries of
        # any realistic tensor after the first attempt.
        ("grpc.per_rpc_retry_buffer_size", max_message_bytes),
        ("grpc.retry_buffer_size", max(max_message_bytes, 256 * 1024 * 1024)),
        # Larger HTTP/2 frames: about twice as fast for messages of a few hundred KiB.
        ("grpc.http2.max_frame_size", MAX_FRAME_SIZE),
        # Ping during calls so a replica that died mid-computation fails the call (and the retry
        # policy moves it) within about 40 s instead of waiting for the deadline. The server
        # accepts pings every 10 s or slower.
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", 10_000),
        *options,
    ]


def channel_credentials(
    *,
    tls: bool | None = None,
    root_certificates: PemSource | None = None,
    private_key: PemSource | None = None,
    certificate_chain: PemSource | None = None,
) -> grpc.ChannelCredentials | None:
    """TLS channel credentials, or None for a plaintext channel.

    Parameters
    ----------
    tls : bool, optional
        Force TLS on (with the system roots when ``root_certificates`` is None) or off; default:
        on when any certificate argument is given.
    root_certificates : bytes or path, optional
        CA bundle that signed the server certificate.
    private_key, certificate_chain : bytes or path, optional
        Client key and certificate for mutual TLS; give both or neither.

    Raises
    ------
    ValueError
        Only one of key and chain, ``tls=False`` with certificates, or unreadable PEM.
    """
    given = (root_certificates, private_key, certificate_chain)
    if (private_key is None) != (certificate_chain is None):
        raise ValueError("private_key and certificate_chain (client certificate) go together")
    if tls is False and any(g is not None for g in given):
        raise ValueError("tls=False contradicts the certificate arguments")
    if not tls and all(g is None for g in given):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(root_certificates, "root_certificates")
        if root_certificates is not None
        else None,
        private_key=read_pem(private_key, "private_key") if private_key is not None else None,
        certificate_chain=read_pem(certificate_chain, "certificate_chain")
        if certificate_chain is not None
        else None,
    )


def channel_setup(
    target: str,
    *,
    max_message_bytes: int,
    load_balancing: str | None,
    retry: bool,
    credentials: grpc.ChannelCredentials | None,
    options: Sequence[tuple[str, Any]],
    root_certificates: PemSource | None,
    private_key: PemSource | None,
    certificate_chain: PemSource | None,
    tls: bool | None,
    server_name: str | None,
) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, Any]]]:
    """Credentials (None = plaintext) and channel arguments of a client, from its arguments.

    The sync and async clients open their channel from this; see :class:`deconv_client.Client`
    for the arguments.

    Raises
    ------
    ValueError
        Both ``credentials`` and PEM arguments, or any error of :func:`channel_credentials` and
        :func:`channel_options`.
    """
    pem = channel_credentials(
        tls=tls,
        root_certificates=root_certificates,
        private_key=private_key,
        certificate_chain=certificate_chain,
    )
    if pem is not None and credentials is not None:
        raise ValueError("give credentials or the PEM arguments, not both")
    if server_name:
        options = (("grpc.ssl_target_name_override", server_name), *options)
    opts = channel_options(
        target,
        max_message_bytes=max_message_bytes,
        load_balancing=load_balancing,
        retry=retry,
        options=options,
    )
    return (credentials if credentials is not None else pem), opts


def resolve_token(token: str | None, token_file: str | os.PathLike[str] | None) -> str | None:
    """The bearer token: ``token`` as given, or the stripped content of ``token_file``.

    Raises
    ------
    ValueError
        Both given, or the file is unreadable or empty.
    """
    if token is not None and token_file is not None:
        raise ValueError("give token or token_file, not both")
    if token_file is None:
        return token or None
    try:
        with open(token_file, encoding="utf-8") as f:
            text = f.read().strip()
    except OSError as exc:
        raise ValueError(f"cannot read token_file {token_file}: {exc}") from None
    if not text:
        raise ValueError(f"token_file {token_file} is empty")
    return text
