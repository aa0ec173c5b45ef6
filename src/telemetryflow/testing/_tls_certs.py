"""Certificate generation for :func:`telemetryflow.testing.make_test_certificates`.

Kept apart from ``_tls.py`` because it needs ``cryptography``, which only the
``testing`` extra installs: importing ``telemetryflow.testing`` (and so the pytest
plugin every install registers) must work without it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["write_test_pki"]

_Key = ec.EllipticCurvePrivateKey


def _new_key() -> _Key:
    # P-256 keys take microseconds to make; RSA would slow every TLS test.
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TelemetryFlow tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject: str, issuer: x509.Name, key: _Key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Backdated so a test machine whose clock lags a little still accepts it.
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
    )


def _make_ca(common_name: str) -> tuple[x509.Certificate, _Key]:
    key = _new_key()
    cert = (
        _builder(common_name, _name(common_name), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    common_name: str,
    hostname: str,
    ca_cert: x509.Certificate,
    ca_key: _Key,
    usages: list[x509.ObjectIdentifier],
) -> tuple[x509.Certificate, _Key]:
    key = _new_key()
    names: list[x509.GeneralName] = [
        x509.DNSName(hostname),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        _builder(common_name, ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: _Key) -> Path:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created owner-only from the start: TLS libraries may refuse world-readable keys.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return path


def write_test_pki(out: Path, hostname: str) -> dict[str, Path]:
    """Write a fresh CA, server and client leaves and an unrelated CA into ``out``;
    returns the paths by ``TLSFiles`` field name."""
    server_auth = ExtendedKeyUsageOID.SERVER_AUTH
    client_auth = ExtendedKeyUsageOID.CLIENT_AUTH
    ca_cert, ca_key = _make_ca("TelemetryFlow test CA")
    server_cert, server_key = _make_leaf("server", hostname, ca_cert, ca_key, [server_auth])
    client_cert, client_key = _make_leaf("client", hostname, ca_cert, ca_key, [client_auth])
    # Same names and usages as the trusted leaves, so only the issuer differs.
    other_ca_cert, other_ca_key = _make_ca("Untrusted test CA")
    other_cert, other_key = _make_leaf(
        "untrusted", hostname, other_ca_cert, other_ca_key, [server_auth, client_auth]
    )
    return {
        "ca_cert": _write_cert(out / "ca.pem", ca_cert),
        "server_cert": _write_cert(out / "server.pem", server_cert),
        "server_key": _write_key(out / "server-key.pem", server_key),
        "client_cert": _write_cert(out / "client.pem", client_cert),
        "client_key": _write_key(out / "client-key.pem", client_key),
        "untrusted_ca_cert": _write_cert(out / "untrusted-ca.pem", other_ca_cert),
        "untrusted_cert": _write_cert(out / "untrusted.pem", other_cert),
        "untrusted_key": _write_key(out / "untrusted-key.pem", other_key),
    }
