"""Server transport security: TLS and mutual TLS credentials from PEM files.

With ``tls_cert`` and ``tls_key`` set the server listens with TLS only (a plaintext client gets
UNAVAILABLE: the handshake never completes). With ``tls_client_ca`` also set every client must
present a certificate signed by that CA (mutual TLS), checked during the handshake. PEM files are
read by :func:`deconv.wire.read_pem`, as the client reads its own.
"""

from __future__ import annotations

import grpc
from deconv.wire import read_pem

from deconv_server.config import ConfigError, ServerConfig

__all__ = ["server_credentials"]


def _pem(path: str, setting: str) -> bytes:
    """The PEM bytes of file ``path``, errors as :class:`ConfigError` naming ``setting``."""
    try:
        return read_pem(path, setting)
    except ValueError as exc:
        message = str(exc)
        raise ConfigError(message if path in message else f"{message}: {path}") from None


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials of ``config``, or None for a plaintext server.

    Parameters
    ----------
    config : ServerConfig

    Returns
    -------
    grpc.ServerCredentials or None

    Raises
    ------
    ConfigError
        A certificate, key or CA file is unreadable or not PEM.
    """
    if config.tls_cert is None or config.tls_key is None:
        return None
    chain = _pem(config.tls_cert, "tls_cert")
    key = _pem(config.tls_key, "tls_key")
    ca = _pem(config.tls_client_ca, "tls_client_ca") if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=ca, require_client_auth=ca is not None
    )
