"""Container health probe: ``python -m deconv_server.healthcheck [--target 127.0.0.1:50051]``.

The default target is 127.0.0.1 on $DECONV_PORT (50051 when unset), the server's own port.

Exits 0 only if ``grpc.health.v1`` reports SERVING for the service (default ``""``, the whole
server), 1 otherwise (NOT_SERVING, unreachable, timeout), printing one line either way. Uses the
grpcio-health-checking stubs only, so it loads neither the core nor the client package.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["check", "main"]


def check(target: str, service: str = "", timeout: float = 3.0) -> str:
    """Health status name of ``service`` at ``target`` ("SERVING", "NOT_SERVING", ...).

    Raises
    ------
    grpc.RpcError
        The server is unreachable or the call failed.
    """
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: Sequence[str] | None = None) -> int:
    """Probe once; 0 when SERVING, 1 otherwise."""
    p = argparse.ArgumentParser(prog="python -m deconv_server.healthcheck", description=__doc__)
    default = f"127.0.0.1:{os.environ.get('DECONV_PORT') or 50051}"
    p.add_argument("--target", default=default, help="host:port (default %(default)s)")
    p.add_argument("--service", default="", help="service name (default: the whole server)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds (default %(default)s)")
    args = p.parse_args(argv)
    try:
        status = check(args.target, args.service, args.timeout)
    except grpc.RpcError as exc:
        print(f"UNHEALTHY: {exc.code().name}: {exc.details()}")
        return 1
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
