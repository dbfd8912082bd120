"""TLS and mutual TLS: certificates made at test time by a throwaway CA (the cryptography package).

Checks the real handshake on 127.0.0.1: a TLS server answers clients that trust its CA (PEM as
a path or as bytes, from the library and from the ``deconv`` CLI) and refuses plaintext or
untrusting clients with UNAVAILABLE; with a client CA set it also refuses clients without a
certificate, or with one from another CA.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from deconv_client import Client, UnavailableError
from deconv_client import cli as client_cli
from deconv_server.app import ServerHandle, start_server
from deconv_server.config import ConfigError, ServerConfig

from .conftest import extra_server
from .helpers import core

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

X = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
W = np.ones((1, 2, 2, 2), np.float32)


@dataclass
class Pki:
    """PEM files of one CA and the certificates it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    cn: str,
    *,
    sans: list[x509.GeneralName] | None = None,
    usage: x509.ObjectIdentifier | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if usage is None:  # the CA itself
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    signer = key if usage is None else ca_key
    return builder.sign(signer, hashes.SHA256()), key


def make_pki(directory: Path, server_names: tuple[str, ...] = ("localhost",)) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and ``server_names``, and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = _issue(None, _name("deconv test CA"), "deconv test CA")  # type: ignore[arg-type]
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
    if "localhost" in server_names:
        sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    server_cert, server_key = _issue(
        ca_key, ca_cert.subject, "deconv server", sans=sans, usage=ExtendedKeyUsageOID.SERVER_AUTH
    )
    client_cert, client_key = _issue(
        ca_key, ca_cert.subject, "deconv client", usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    return Pki(
        ca=_write_cert(ca_cert, directory / "ca.pem"),
        server_cert=_write_cert(server_cert, directory / "server.pem"),
        server_key=_write_key(server_key, directory / "server.key"),
        client_cert=_write_cert(client_cert, directory / "client.pem"),
        client_key=_write_key(client_key, directory / "client.key"),
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The trusted PKI of this module."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A second, untrusted CA and its certificates."""
    return make_pki(tmp_path_factory.mktemp("other-pki"))


@pytest.fixture(scope="module")
def tls_server(server: ServerHandle, pki: Pki) -> Iterator[ServerHandle]:
    """A TLS-only server (no client certificates required)."""
    handle = extra_server(tls_cert=str(pki.server_cert), tls_key=str(pki.server_key))
    yield handle
    handle.stop(0).wait(5)


@pytest.fixture(scope="module")
def mtls_server(server: ServerHandle, pki: Pki) -> Iterator[ServerHandle]:
    """A mutual-TLS server: client certificates signed by ``pki.ca`` required."""
    handle = extra_server(
        tls_cert=str(pki.server_cert), tls_key=str(pki.server_key), tls_client_ca=str(pki.ca)
    )
    yield handle
    handle.stop(0).wait(5)


def _expected() -> np.ndarray:
    return core("conv_transpose", X, W, stride=2)


def test_tls_round_trip_with_path_and_bytes(tls_server: ServerHandle, pki: Pki) -> None:
    for ca in (str(pki.ca), pki.ca.read_bytes(), pki.ca):
        with Client(tls_server.target, timeout=10, root_certificates=ca) as c:
            assert c.health() == "SERVING"
            np.testing.assert_array_equal(c.conv_transpose(X, W, stride=2), _expected())


def test_plaintext_client_gets_unavailable(tls_server: ServerHandle) -> None:
    with (
        Client(tls_server.target, timeout=5, retry=False) as c,
        pytest.raises(UnavailableError),
    ):
        c.conv_transpose(X, W, stride=2)


def test_client_trusting_another_ca_gets_unavailable(
    tls_server: ServerHandle, other_pki: Pki
) -> None:
    with (
        Client(tls_server.target, timeout=5, retry=False, root_certificates=other_pki.ca) as c,
        pytest.raises(UnavailableError),
    ):
        c.health()


def test_server_name_override(server: ServerHandle, tmp_path: Path) -> None:
    named = make_pki(tmp_path / "named", server_names=("deconv.internal",))
    handle = extra_server(tls_cert=str(named.server_cert), tls_key=str(named.server_key))
    try:
        with (  # the certificate does not name 127.0.0.1
            Client(handle.target, timeout=5, retry=False, root_certificates=named.ca) as c,
            pytest.raises(UnavailableError),
        ):
            c.health()
        with Client(
            handle.target, timeout=10, root_certificates=named.ca, server_name="deconv.internal"
        ) as c:
            np.testing.assert_array_equal(c.conv_transpose(X, W, stride=2), _expected())
    finally:
        handle.stop(0).wait(5)


def test_mtls_requires_a_client_certificate(mtls_server: ServerHandle, pki: Pki) -> None:
    with (
        Client(mtls_server.target, timeout=5, retry=False, root_certificates=pki.ca) as c,
        pytest.raises(UnavailableError),
    ):
        c.health()


def test_mtls_rejects_a_certificate_from_another_ca(
    mtls_server: ServerHandle, pki: Pki, other_pki: Pki
) -> None:
    with (
        Client(
            mtls_server.target,
            timeout=5,
            retry=False,
            root_certificates=pki.ca,
            certificate_chain=other_pki.client_cert,
            private_key=other_pki.client_key,
        ) as c,
        pytest.raises(UnavailableError),
    ):
        c.health()


def test_mtls_accepts_a_signed_client_certificate(mtls_server: ServerHandle, pki: Pki) -> None:
    with Client(
        mtls_server.target,
        timeout=10,
        root_certificates=pki.ca,
        certificate_chain=pki.client_cert,
        private_key=pki.client_key.read_bytes(),
    ) as c:
        assert c.health() == "SERVING"
        np.testing.assert_array_equal(c.conv_transpose(X, W, stride=2), _expected())


async def _async_round_trip(target: str, pki: Pki) -> np.ndarray:
    from deconv_client import AsyncClient

    async with AsyncClient(
        target,
        timeout=10,
        root_certificates=pki.ca,
        certificate_chain=pki.client_cert,
        private_key=pki.client_key,
    ) as c:
        return await c.conv_transpose(X, W, stride=2)


def test_mtls_async_client(mtls_server: ServerHandle, pki: Pki) -> None:
    import asyncio

    np.testing.assert_array_equal(
        asyncio.run(_async_round_trip(mtls_server.target, pki)), _expected()
    )


def test_cli_flags_and_environment(
    mtls_server: ServerHandle,
    pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = ["--target", mtls_server.target, "--timeout", "10"]
    tls = ["--ca", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(pki.client_key)]
    assert client_cli.main(["health", *target, *tls]) == 0
    assert capsys.readouterr().out.strip() == "SERVING"
    assert client_cli.main(["health", *target, "--ca", str(pki.ca)]) == 1  # no client cert
    assert "UNAVAILABLE" in capsys.readouterr().err
    monkeypatch.setenv("DECONV_CA", str(pki.ca))
    monkeypatch.setenv("DECONV_CERT", str(pki.client_cert))
    monkeypatch.setenv("DECONV_KEY", str(pki.client_key))
    assert client_cli.main(["info", *target]) == 0
    assert '"warm": true' in capsys.readouterr().out
    assert client_cli.main(["health", *target, "--key", "/nonexistent.key"]) == 2
    assert "cannot read private_key /nonexistent.key" in capsys.readouterr().err


def test_client_argument_errors(pki: Pki) -> None:
    with pytest.raises(ValueError, match="go together"):
        Client("127.0.0.1:1", private_key=pki.client_key)
    with pytest.raises(ValueError, match="not PEM"):
        Client("127.0.0.1:1", root_certificates=b"not a certificate")
    with pytest.raises(ValueError, match="contradicts"):
        Client("127.0.0.1:1", tls=False, root_certificates=pki.ca)


def test_server_config_errors(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set together"):
        ServerConfig(tls_cert=str(pki.server_cert))
    with pytest.raises(ConfigError, match="needs tls_cert"):
        ServerConfig(tls_client_ca=str(pki.ca))
    env = {"DECONV_TLS_CERT": str(pki.server_cert), "DECONV_TLS_KEY": str(tmp_path / "none")}
    config = ServerConfig.from_env(env, port=0, warmup=False)
    assert config.tls and config.tls_key == str(tmp_path / "none")
    with pytest.raises(ConfigError, match="cannot read tls_key"):
        start_server(config)


def test_health_probe_speaks_tls_and_mtls(
    tls_server: ServerHandle, mtls_server: ServerHandle, pki: Pki, tmp_path: Path
) -> None:
    from deconv_server import healthcheck

    ca = ["--ca", str(pki.ca), "--server-name", "localhost"]
    assert healthcheck.main(["--target", tls_server.target, *ca]) == 0
    assert healthcheck.main(["--target", tls_server.target, "--timeout", "2"]) == 1  # plaintext
    client = ["--cert", str(pki.client_cert), "--key", str(pki.client_key)]
    assert healthcheck.main(["--target", mtls_server.target, *ca, *client]) == 0
    assert healthcheck.main(["--target", mtls_server.target, *ca, "--timeout", "2"]) == 1
    missing = ["--ca", str(tmp_path / "missing.pem")]
    assert healthcheck.main(["--target", tls_server.target, *missing]) == 1
