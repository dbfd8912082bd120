"""Channel options shared by :class:`~deconv_client.Client` and :class:`~deconv_client.AsyncClient`.

The service config always carries a retry policy for the ``deconv.v1.Deconv`` methods (retry
UNAVAILABLE with exponential backoff, at most 5 attempts): the compute RPCs are pure functions,
so a retry is always safe, and a replica that goes away or is briefly busy costs no call. With
``load_balancing="round_robin"`` (the default when the target names several addresses or is a
``dns:///`` name) calls spread over every resolved address.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "SERVICE", "channel_options", "default_load_balancing"]

#: Default send/receive cap, matching the server's default.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024
SERVICE = "deconv.v1.Deconv"
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
        config["methodConfig"] = [{"name": [{"service": SERVICE}], "retryPolicy": RETRY_POLICY}]
    return config


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
        *options,
    ]
