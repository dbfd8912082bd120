"""Container health probe: ``python -m deconv_server.healthcheck [--target 127.0.0.1:50051]``.

The default target is 127.0.0.1 on $DECONV_PORT (50051 when unset), the server's own port.

Exits 0 only if ``grpc.health.v1`` reports SERVING for the service (default ``""``, the whole
server), 1 otherwise (NOT_SERVING, unreachable, timeout), printing one line either way. Uses the
grpcio-health-checking stubs only, so it loads neither the core nor the client package.

Against a TLS server give ``--ca`` (the CA that signed the server's certificate), and for mutual
TLS also ``--cert``/``--key`` (a client certificate); ``--server-name`` when the certificate does
not name the target's host. Each defaults to ``DECONV_HEALTHCHECK_CA``, ``_CERT``, ``_KEY``,
``_SERVER_NAME``, so a container's HEALTHCHECK needs no change when TLS is switched on.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc
from deconv.wire import read_pem
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deconv_server.config import ENV_VARS, format_default

__all__ = ["check", "main"]


def _read(path: str | None, what: str) -> bytes | None:
    return read_pem(path, what) if path else None


def check(
    target: str,
    service: str = "",
    timeout: float = 3.0,
    *,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    server_name: str | None = None,
) -> str:
    """Health status name of ``service`` at ``target`` ("SERVING", "NOT_SERVING", ...).

    Parameters
    ----------
    target : str
        host:port.
    service : str
        Service name; "" is the whole server.
    timeout : float
        Seconds.
    ca, cert, key : str, optional
        PEM files: the CA to trust (turns TLS on) and a client certificate and key (mutual TLS).
    server_name : str, optional
        Host name to check the server's certificate against.

    Raises
    ------
    grpc.RpcError
        The server is unreachable or the call failed.
    ValueError
        A PEM file could not be read or holds no PEM block.
    """
    if ca or cert:
        creds = grpc.ssl_channel_credentials(
            _read(ca, "--ca"), _read(key, "--key"), _read(cert, "--cert")
        )
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        channel = grpc.secure_channel(target, creds, options=options)
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: Sequence[str] | None = None) -> int:
    """Probe once; 0 when SERVING, 1 otherwise."""
    p = argparse.ArgumentParser(prog="python -m deconv_server.healthcheck", description=__doc__)
    default = f"127.0.0.1:{os.environ.get(ENV_VARS['port']) or format_default('port')}"
    p.add_argument("--target", default=default, help="host:port (default %(default)s)")
    p.add_argument("--service", default="", help="service name (default: the whole server)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds (default %(default)s)")
    for name, what in (
        ("ca", "PEM CA of the server's certificate: TLS on"),
        ("cert", "PEM client certificate (mutual TLS)"),
        ("key", "PEM key of --cert"),
        ("server-name", "name to check the server's certificate against"),
    ):
        var = "DECONV_HEALTHCHECK_" + name.upper().replace("-", "_")
        p.add_argument(f"--{name}", default=os.environ.get(var) or None, help=f"{what} (${var})")
    args = p.parse_args(argv)
    try:
        status = check(
            args.target,
            args.service,
            args.timeout,
            ca=args.ca,
            cert=args.cert,
            key=args.key,
            server_name=args.server_name,
        )
    except grpc.RpcError as exc:
        print(f"UNHEALTHY: {exc.code().name}: {exc.details()}")
        return 1
    except ValueError as exc:
        print(f"UNHEALTHY: {exc}")
        return 1
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
