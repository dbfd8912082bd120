"""Server transport security: TLS and mutual TLS credentials from PEM files.

With ``tls_cert`` and ``tls_key`` set the server listens with TLS only (a plaintext client gets
UNAVAILABLE: the handshake never completes). With ``tls_client_ca`` also set every client must
present a certificate signed by that CA (mutual TLS), checked during the handshake.
"""

from __future__ import annotations

import grpc

from deconv_server.config import ConfigError, ServerConfig

__all__ = ["read_pem", "server_credentials"]


def read_pem(path: str, what: str) -> bytes:
    """The bytes of a PEM file.

    Parameters
    ----------
    path : str
    what : str
        Setting name, for the error message.

    Raises
    ------
    ConfigError
        The file cannot be read or holds no PEM block.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{what} {path} is not a PEM file")
    return data


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials of ``config``, or None for a plaintext server.

    Raises
    ------
    ConfigError
        A certificate, key or CA file is unreadable or not PEM.
    """
    if config.tls_cert is None or config.tls_key is None:
        return None
    chain = read_pem(config.tls_cert, "tls_cert")
    key = read_pem(config.tls_key, "tls_key")
    ca = read_pem(config.tls_client_ca, "tls_client_ca") if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=ca, require_client_auth=ca is not None
    )
