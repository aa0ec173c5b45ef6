"""Throw-away certificates for TLS and mTLS tests.

Generated at test time rather than checked in, so no private key ever lives in
the repository and nothing expires under a test suite that runs years later.

Generating them needs ``cryptography`` (the ``testing`` extra). It is imported
only when :func:`make_test_certificates` is called, so ``telemetryflow.testing``
and the pytest plugin load on a plain install.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

__all__ = ["TLSFiles", "make_test_certificates"]

_INSTALL_HINT = (
    "make_test_certificates needs the 'cryptography' package: "
    'pip install "telemetryflow[testing]"'
)


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


def make_test_certificates(
    directory: str | os.PathLike[str], hostname: str = "localhost"
) -> TLSFiles:
    """Write a fresh test PKI into ``directory`` (created if missing).

    Leaf certificates name ``hostname`` and the IP 127.0.0.1, so clients can
    verify the server whether they dial a name or the loopback address.

    Raises:
        ImportError: ``cryptography`` is not installed; the message names the
            extra to install.
    """
    try:
        from telemetryflow.testing._tls_certs import write_test_pki
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] != "cryptography":
            raise
        raise ImportError(_INSTALL_HINT, name=exc.name) from exc
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    return TLSFiles(**write_test_pki(out, hostname))


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
