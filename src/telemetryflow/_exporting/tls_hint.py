"""Say what to do when TLS and plaintext meet on one connection.

A client speaking TLS to a plaintext collector (or the reverse) gets only a
cryptic ``WRONG_VERSION_NUMBER``, a reset, or ``gRPC UNAVAILABLE``. This module
recognises the first case from the error text and the second by a short TLS
handshake probe after an unexplained failure, and logs once which setting fixes it.
"""

from __future__ import annotations

import contextlib
import socket
import ssl

from telemetryflow._recording.diagnostics import warn_throttled

__all__ = ["plaintext_server_signs", "report_mismatch", "speaks_tls"]

_PLAINTEXT_SERVER_SIGNS = (
    "WRONG_VERSION_NUMBER",
    "wrong version number",
    "PACKET_LENGTH_TOO_LONG",
    "RECORD_LAYER_FAILURE",
    "HTTP_REQUEST",
)
"""What a TLS client's handshake error says when the server answered in plaintext."""

_PROBE_TIMEOUT = 1.0

TLS_TO_PLAINTEXT = (
    "cannot export to %s: this client uses TLS but the collector answers in plaintext "
    "(a local collector usually does). Turn TLS off with with_insecure() or "
    "TELEMETRYFLOW_INSECURE=true, or give an http:// endpoint"
)
PLAINTEXT_TO_TLS = (
    "cannot export to %s: the collector expects TLS but this client sends plaintext. "
    "Drop with_insecure() or set TELEMETRYFLOW_INSECURE=false (or use an https:// "
    "endpoint); for a private CA add with_tls(ca_file=...) or TELEMETRYFLOW_CA_FILE"
)


def plaintext_server_signs(error_text: str) -> bool:
    """True when a TLS handshake error shows the server spoke plaintext."""
    return any(sign in error_text for sign in _PLAINTEXT_SERVER_SIGNS)


def speaks_tls(host: str, port: int, timeout: float = _PROBE_TIMEOUT) -> bool:
    """True if ``host:port`` completes a TLS handshake (nothing is verified or sent).

    Used only after a plaintext attempt failed without an answer, to tell "the
    collector wants TLS" from any other broken connection.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host.strip("[]"), port), timeout=timeout) as raw,
            context.wrap_socket(raw, do_handshake_on_connect=False) as tls,
        ):
            tls.do_handshake()
            with contextlib.suppress(OSError):
                tls.unwrap()
        return True
    except (OSError, ValueError):
        return False


def report_mismatch(template: str, address: str) -> None:
    """One throttled warning per address and direction, naming the fix."""
    warn_throttled(f"tls-mismatch:{address}:{template[:40]}", template, address)
