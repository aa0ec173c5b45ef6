"""One upstream address: parsed, validated, masked for display, and its transport.

``grpc://`` and ``http://`` are plaintext OTLP/gRPC and OTLP/HTTP, ``grpcs://`` and
``https://`` the same over TLS (verified against the system roots, or the bundle
``SSL_CERT_FILE`` names). Credentials in the URL (``https://user:pass@host``) become
a basic ``Authorization`` header and never appear in what is shown: every status,
log line and repr uses :attr:`Upstream.display`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import unquote, urlsplit

from telemetryflow._configuration.config import TelemetryConfig
from telemetryflow._configuration.credentials import Credentials, has_control_chars
from telemetryflow._configuration.enums import Protocol
from telemetryflow._configuration.errors import ConfigError
from telemetryflow._exporting.transport import GrpcTransport, HttpTransport, Transport

__all__ = ["Upstream", "parse_header", "parse_upstream"]

_SCHEMES = {
    "grpc": ("grpc", False),
    "grpcs": ("grpc", True),
    "http": ("http", False),
    "https": ("http", True),
}
_PLACEHOLDER = Credentials("tfk_forward", "tfs_forward")
"""The SDK's config needs a key; the forwarder sends only its own headers."""


@dataclass(frozen=True)
class Upstream:
    """Where one copy of everything accepted goes."""

    url: str = field(repr=False)
    """As given, credentials included: never shown."""
    protocol: str
    """``grpc`` or ``http``."""
    tls: bool
    host: str
    port: int | None
    path: str
    auth_header: str | None = field(default=None, repr=False)
    """``Basic …`` from credentials in the URL."""

    @property
    def display(self) -> str:
        """The URL as safe to show: credentials replaced by ``***``."""
        scheme = ("grpcs" if self.tls else "grpc") if self.protocol == "grpc" else (
            "https" if self.tls else "http"
        )  # fmt: skip
        userinfo = "***@" if self.auth_header else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        return f"{scheme}://{userinfo}{host}{port}{self.path}"

    @property
    def key(self) -> str:
        """A stable name for this upstream's spool directory (a hash: no secret on disk)."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]

    def sdk_config(self, headers: Mapping[str, str], timeout: float) -> TelemetryConfig:
        """The SDK settings its transports are built from, headers validated there."""
        if self.protocol == "http":
            scheme = "https" if self.tls else "http"
            host = f"[{self.host}]" if ":" in self.host else self.host
            port = f":{self.port}" if self.port else ""
            endpoint = f"{scheme}://{host}{port}{self.path}"
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
            endpoint = f"{host}:{self.port or 4317}"
        return TelemetryConfig(
            credentials=_PLACEHOLDER,
            endpoint=endpoint,
            service_name="telemetryflow-collector",
            protocol=Protocol.HTTP if self.protocol == "http" else Protocol.GRPC,
            insecure=not self.tls,
            headers=self.headers(headers),
            allow_plaintext_credentials=True,  # the URL's scheme is the user's choice
            timeout=timedelta(seconds=timeout),
        )

    def headers(self, common: Mapping[str, str]) -> dict[str, str]:
        """The headers every request to this upstream carries."""
        headers = dict(common)
        if self.auth_header and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = self.auth_header
        return headers

    def transport(self, headers: Mapping[str, str], timeout: float) -> Transport:
        """A new SDK transport to this upstream sending exactly ``headers``."""
        config = self.sdk_config(headers, timeout)
        sent = self.headers(headers)
        if self.protocol == "http":
            return HttpTransport(config, headers=sent)
        return GrpcTransport(config, headers=sent)


def parse_upstream(text: str) -> Upstream:
    """Parse ``grpc://``, ``grpcs://``, ``http://`` or ``https://`` ``host[:port][/path]``.

    Raises:
        ConfigError: the URL cannot be used; the message never repeats credentials.
    """
    raw = text.strip()
    if not raw or has_control_chars(raw) or " " in raw:
        raise ConfigError("forward URL is empty or contains whitespace", field="forward")
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ConfigError(
            "forward URL must start with grpc://, grpcs://, http:// or https://", field="forward"
        )
    protocol, tls = _SCHEMES[scheme]
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("forward URL port must be 1 to 65535", field="forward") from None
    if not parts.hostname:
        raise ConfigError("forward URL has no host", field="forward")
    path = parts.path.rstrip("/")
    if protocol == "grpc" and path:
        raise ConfigError("a grpc:// forward URL cannot have a path", field="forward")
    if parts.query or parts.fragment:
        raise ConfigError("forward URL cannot have a query or fragment", field="forward")
    auth = None
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Upstream(raw, protocol, tls, parts.hostname, port, path, auth)


def parse_header(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` → ``(KEY, VALUE)``.

    Raises:
        ConfigError: not in that form; the message names the key, never the value.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("a forward header must be given as KEY=VALUE", field="forward_header")
    if has_control_chars(value):
        raise ConfigError(
            f"forward header {key!r} has control characters in its value", field="forward_header"
        )
    return key, value.strip()
