"""Throw-away certificates for TLS and mTLS tests.

Generated at test time rather than checked in, so no private key ever lives in
the repository and nothing expires under a test suite that runs years later.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TLSFiles", "make_test_certificates"]

_Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class TLSFiles:
    """PEM paths of one test PKI.

    ``ca_cert`` signs ``server_cert`` and ``client_cert``. The ``untrusted_*``
    files come from an unrelated CA, so a peer that presents ``untrusted_cert``
    (or trusts only ``untrusted_ca_cert``) must be rejected.
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    untrusted_ca_cert: Path
    untrusted_cert: Path
    untrusted_key: Path


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


def make_test_certificates(
    directory: str | os.PathLike[str], hostname: str = "localhost"
) -> TLSFiles:
    """Write a fresh test PKI into ``directory`` (created if missing).

    Leaf certificates name ``hostname`` and the IP 127.0.0.1, so clients can
    verify the server whether they dial a name or the loopback address.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
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
    return TLSFiles(
        ca_cert=_write_cert(out / "ca.pem", ca_cert),
        server_cert=_write_cert(out / "server.pem", server_cert),
        server_key=_write_key(out / "server-key.pem", server_key),
        client_cert=_write_cert(out / "client.pem", client_cert),
        client_key=_write_key(out / "client-key.pem", client_key),
        untrusted_ca_cert=_write_cert(out / "untrusted-ca.pem", other_ca_cert),
        untrusted_cert=_write_cert(out / "untrusted.pem", other_cert),
        untrusted_key=_write_key(out / "untrusted-key.pem", other_key),
    )


def server_ssl_context(tls: TLSFiles, require_client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tls.server_cert, tls.server_key)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=tls.ca_cert)
    return ctx


def grpc_server_credentials(tls: TLSFiles, require_client_cert: bool) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(tls.server_key.read_bytes(), tls.server_cert.read_bytes())],
        root_certificates=tls.ca_cert.read_bytes() if require_client_cert else None,
        require_client_auth=require_client_cert,
    )
