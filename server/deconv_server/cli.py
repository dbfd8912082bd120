"""``deconv-server``: run the gRPC service (flags override DECONV_* environment variables)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from deconv_server import __version__
from deconv_server.config import ENV_VARS, ConfigError, ServerConfig

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``deconv-server``; every flag defaults to its DECONV_* variable."""
    d = ServerConfig()
    p = argparse.ArgumentParser(
        prog="deconv-server",
        description="gRPC service for N-d convolution and transposed convolution. "
        "Prints 'deconv-server listening on HOST:PORT' once bound; logs to stderr.",
    )

    def env(name: str) -> str:
        return f"(env {ENV_VARS[name]}, default {getattr(d, name)})"

    p.add_argument("--host", help=f"interface to bind {env('host')}")
    p.add_argument("--port", type=int, help=f"port, 0 = any free port {env('port')}")
    p.add_argument(
        "--max-message-bytes", type=int, help=f"request/response cap {env('max_message_bytes')}"
    )
    p.add_argument(
        "--max-tensor-elements", type=int, help=f"per input tensor {env('max_tensor_elements')}"
    )
    p.add_argument(
        "--max-output-elements", type=int, help=f"per result {env('max_output_elements')}"
    )
    p.add_argument(
        "--max-inflight-bytes",
        type=int,
        help=f"tensor bytes admitted requests may hold at once {env('max_inflight_bytes')}",
    )
    p.add_argument(
        "--upload-timeout-s",
        type=float,
        help=f"seconds a chunked call may take to upload {env('upload_timeout_s')}",
    )
    p.add_argument("--workers", type=int, help=f"compute RPCs admitted at once {env('workers')}")
    p.add_argument("--log-level", help=f"logging level {env('log_level')}")
    warm = p.add_mutually_exclusive_group()
    warm.add_argument(
        "--warmup",
        dest="warmup",
        action="store_true",
        default=None,
        help=f"compile kernels before SERVING {env('warmup')}",
    )
    warm.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip warmup")
    p.add_argument(
        "--grace-seconds", type=float, help=f"drain time on SIGTERM {env('grace_seconds')}"
    )
    ops = p.add_argument_group("security and operations")
    ops.add_argument("--tls-cert", help=f"PEM certificate chain: TLS only {env('tls_cert')}")
    ops.add_argument("--tls-key", help=f"PEM private key of --tls-cert {env('tls_key')}")
    ops.add_argument(
        "--tls-client-ca", help=f"PEM CA: require client certificates {env('tls_client_ca')}"
    )
    ops.add_argument(
        "--auth-token-file",
        help=f"file holding the bearer token (or env DECONV_AUTH_TOKEN) {env('auth_token_file')}",
    )
    ops.add_argument(
        "--metrics-port",
        type=int,
        help=f"Prometheus /metrics port, 0 = off, 9090 usual {env('metrics_port')}",
    )
    ops.add_argument("--log-format", choices=("json", "text"), help=f"{env('log_format')}")
    ops.add_argument(
        "--max-connection-age-s",
        type=float,
        help=f"GOAWAY after this age, 0 = never {env('max_connection_age_s')}",
    )
    ops.add_argument(
        "--max-connection-age-grace-s",
        type=float,
        help=f"time to finish after GOAWAY {env('max_connection_age_grace_s')}",
    )
    ops.add_argument(
        "--keepalive-time-s", type=float, help=f"ping idle connections {env('keepalive_time_s')}"
    )
    ops.add_argument(
        "--keepalive-timeout-s", type=float, help=f"ping ack timeout {env('keepalive_timeout_s')}"
    )
    ops.add_argument(
        "--shutdown-delay-s",
        type=float,
        help=f"NOT_SERVING this long before draining {env('shutdown_delay_s')}",
    )
    p.add_argument("--version", action="version", version=f"deconv-server {__version__}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``deconv-server``; returns the exit code (2 for a bad configuration)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = ServerConfig.from_env(**vars(args))
    except ConfigError as exc:
        parser.error(str(exc))
    from deconv_server.app import serve  # loads the core: keep --help fast

    try:
        return serve(config)
    except ConfigError as exc:  # an unreadable token or TLS file
        print(f"deconv-server: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"deconv-server: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
