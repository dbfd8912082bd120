"""Which replicas a client's target names: one single-address target per replica.

A client's target may be "host:port" (one replica), an address list ("ipv4:///a:1,b:2",
"ipv6:///..."), a ``dns:///`` name (one replica per address it resolves to, resolved with
:func:`socket.getaddrinfo` when asked) or a list of targets. :func:`replica_targets` turns any of
them into one target per replica (what :mod:`deconv_client._split` sends parts to) and
:func:`channel_target` joins a list into the one gRPC target of the client's main channel.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

__all__ = ["DEFAULT_PORT", "channel_target", "host_port", "replica_targets", "strip_authority"]

#: Port of a ``dns:`` name without one (gRPC's default).
DEFAULT_PORT = 443


def strip_authority(rest: str) -> str:
    """``//authority/endpoint`` -> ``endpoint`` (gRPC URIs may name a resolver authority)."""
    return rest[2:].partition("/")[2] if rest.startswith("//") else rest


def host_port(endpoint: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` -> (host, port)."""
    if endpoint.startswith("["):
        host, _, port = endpoint[1:].partition("]")
        return host, int(port.lstrip(":") or DEFAULT_PORT)
    host, sep, port = endpoint.rpartition(":")
    if not sep or ":" in host:  # no port, or a bare IPv6 address
        return endpoint, DEFAULT_PORT
    return host, int(port or DEFAULT_PORT)


def _resolve(host: str, port: int) -> list[str]:
    """Single-address ``ipv4:``/``ipv6:`` targets of ``host``'s addresses, in resolver order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    targets: list[str] = []
    for family, _, _, _, sockaddr in infos:
        ip = str(sockaddr[0])
        target = f"ipv6:///[{ip}]:{port}" if family == socket.AF_INET6 else f"ipv4:///{ip}:{port}"
        if target not in targets:
            targets.append(target)
    return targets


def replica_targets(target: str | Sequence[str]) -> list[str]:
    """One single-address target per replica that ``target`` names.

    Parameters
    ----------
    target : str or sequence of str
        A client's target: "host:port" (one replica), "ipv4:///a:1,b:2" or "ipv6:///..." (one
        per address), "dns:///name:port" (one per address it resolves to, resolved now), or a
        list of targets (each one replica, as given).

    Returns
    -------
    list of str
        At least one target (a name that does not resolve stays as it is: the call then fails
        as an unsplit call would).
    """
    if not isinstance(target, str):
        return [str(t) for t in target]
    scheme, sep, rest = target.partition(":")
    if sep and scheme in ("ipv4", "ipv6"):
        addresses = [a for a in strip_authority(rest).split(",") if a]
        return [f"{scheme}:///{a}" for a in addresses] or [target]
    if sep and scheme == "dns":
        host, port = host_port(strip_authority(rest))
        try:
            return _resolve(host, port) or [target]
        except (OSError, UnicodeError):
            return [target]
    return [target]


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def channel_target(targets: Sequence[str]) -> str:
    """The one gRPC target of a client's main channel over a list of replica targets.

    Parameters
    ----------
    targets : sequence of str
        "host:port" entries (IP literals or names, resolved now) or ``ipv4:``/``ipv6:``/``dns:``
        URIs.

    Returns
    -------
    str
        The entry itself when there is one, else an ``ipv4:///a,b`` (or ``ipv6:``) address list,
        which the channel balances round robin.

    Raises
    ------
    ValueError
        An empty list, or IPv4 and IPv6 addresses mixed (one gRPC URI holds one family).
    """
    if isinstance(targets, str) or not targets:
        raise ValueError("target: give a target string or a non-empty list of targets")
    if len(targets) == 1:
        return str(targets[0])
    addresses: dict[str, list[str]] = {"ipv4": [], "ipv6": []}
    for entry in targets:
        scheme, sep, _ = str(entry).partition(":")
        if sep and scheme in ("ipv4", "ipv6", "dns"):
            singles = replica_targets(str(entry))
        else:
            host, port = host_port(str(entry))
            ip = _ip(host)
            if ip is None:
                singles = _resolve(host, port)
            elif ip.version == 6:
                singles = [f"ipv6:///[{ip}]:{port}"]
            else:
                singles = [f"ipv4:///{ip}:{port}"]
        for single in singles:
            family, _, address = single.partition(":///")
            if family not in addresses:
                raise ValueError(f"target: cannot resolve {entry!r} to addresses")
            addresses[family].append(address)
    if addresses["ipv4"] and addresses["ipv6"]:
        raise ValueError("target: a list of replicas mixes IPv4 and IPv6 addresses")
    family = "ipv6" if addresses["ipv6"] else "ipv4"
    return f"{family}:///" + ",".join(addresses[family])
