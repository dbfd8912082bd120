"""A server's request counters as clients see them: GetServerInfo, not the servicer's internals."""

from __future__ import annotations

from deconv_client import Client


def counters(target: str) -> tuple[int, int]:
    """``(requests_served, requests_failed)`` of the server at ``target``.

    Parameters
    ----------
    target : str
        host:port of one server (not a list of replicas: each has its own counters).

    Returns
    -------
    (int, int)
        Compute RPCs answered OK and failed so far; GetServerInfo itself counts in neither.
    """
    with Client(target, timeout=30) as client:
        info = client.server_info()
    return info.requests_served, info.requests_failed
