"""``TelemetryConfig``: the immutable aggregate of every option the builder can set.

Validation happens once, here, and lists every problem in one ``ConfigError`` so a
misconfigured service fails at startup with the whole picture instead of one field at
a time.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from telemetryflow._configuration.credentials import Credentials, has_control_chars
from telemetryflow._configuration.enums import Protocol, SignalType
from telemetryflow._configuration.errors import ConfigError
from telemetryflow._extras.flags import FlagSet

__all__ = ["ConfigError", "Endpoint", "Protocol", "SignalType", "TelemetryConfig"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class Endpoint:
    """A parsed collector address; ``scheme`` is ``None`` for a bare ``host:port``."""

    scheme: str | None
    host: str
    port: int | None
    path: str

    @property
    def is_loopback(self) -> bool:
        """True for localhost and loopback IPs, where plaintext is harmless."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    @property
    def host_port(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port else host


def parse_endpoint(endpoint: str) -> Endpoint:
    """Parse ``host:port`` or ``http(s)://host[:port][/path]``.

    Raises:
        ValueError: the endpoint cannot be understood.
    """
    text = endpoint.strip()
    if not text or has_control_chars(text) or " " in text:
        raise ValueError("endpoint is empty or contains whitespace/control characters")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https"):
            raise ValueError("endpoint URL scheme must be http or https")
        if parts.username or parts.password:
            raise ValueError("endpoint URL must not embed user info; use with_api_key()")
        if not parts.hostname:
            raise ValueError("endpoint URL has no host")
        return Endpoint(parts.scheme, parts.hostname, parts.port, parts.path.rstrip("/"))
    parts = urlsplit("//" + text)
    if not parts.hostname:
        raise ValueError("endpoint must look like host:port")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("endpoint port must be a number from 1 to 65535") from exc
    if parts.path not in ("", "/"):
        raise ValueError("a bare host:port endpoint cannot have a path; use a full URL")
    return Endpoint(None, parts.hostname, port, "")


def _freeze(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping)) if mapping else _EMPTY


@dataclass(frozen=True)
class TelemetryConfig:
    """Every SDK option, validated. Build it with ``TelemetryFlowBuilder``.

    Use :meth:`with_changes` to derive a modified copy; instances never change.
    """

    credentials: Credentials
    """The API key sent with every export."""
    endpoint: str
    """``host:port`` (gRPC and HTTP) or a full ``http(s)://`` URL."""
    service_name: str
    """``service.name`` resource attribute."""
    protocol: Protocol = Protocol.GRPC
    """OTLP over gRPC (default) or over HTTP with protobuf bodies."""
    service_version: str = "1.0.0"
    """``service.version`` resource attribute."""
    service_namespace: str = "telemetryflow"
    """``service.namespace`` resource attribute."""
    environment: str = "production"
    """``deployment.environment.name`` resource attribute."""
    collector_id: str | None = None
    """Sent as ``X-TelemetryFlow-Collector-ID``; also the ``telemetryflow.collector.id``
    resource attribute."""
    custom_attributes: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    """Extra resource attributes on every signal."""
    headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    """Extra export headers (``OTEL_EXPORTER_OTLP_HEADERS``)."""
    insecure: bool | None = None
    """Plaintext (``True``) or TLS (``False``). Unset (``None``): plaintext for a loopback
    ``host:port`` (a local collector), TLS for any other host and whenever a CA or client
    certificate is given. An ``https://`` endpoint always uses TLS, ``http://`` never."""
    ca_file: str | None = None
    """PEM bundle to verify the collector's certificate instead of the system roots."""
    client_cert_file: str | None = None
    """PEM client certificate for mutual TLS (needs ``client_key_file``)."""
    client_key_file: str | None = None
    """PEM private key of ``client_cert_file``."""
    allow_plaintext_credentials: bool = False
    """Allow sending the API key without TLS to a host that is not loopback."""
    enable_metrics: bool = True
    enable_logs: bool = True
    enable_traces: bool = True
    enable_exemplars: bool = True
    """Attach the current span's ids to histogram points recorded inside it."""
    timeout: timedelta = timedelta(seconds=10)
    """Upper bound of one export attempt (connect + send + answer)."""
    compression: bool = True
    """gzip request bodies."""
    retry_enabled: bool = True
    max_retries: int = 3
    """Retries after the first attempt, for retryable failures only."""
    retry_backoff: timedelta = timedelta(seconds=1)
    """First backoff delay; doubles per retry, with jitter, capped at ``retry_max_backoff``."""
    retry_max_backoff: timedelta = timedelta(seconds=30)
    batch_timeout: timedelta = timedelta(seconds=5)
    """How long spans and logs may wait before export; also the metric export interval."""
    batch_max_size: int = 512
    """Most items in one export request."""
    max_queue_size: int = 2048
    """Spans (and, separately, logs) buffered awaiting export; excess is dropped, counted."""
    max_queue_bytes: int = 64 * 1024 * 1024
    """Estimated bytes buffered per signal before new items are dropped and counted."""
    max_request_bytes: int = 4 * 1024 * 1024
    """Largest export request; bigger batches are split, a bigger single item dropped."""
    persistent_buffer_dir: str | None = None
    """Keep unsent span and log batches in this directory, surviving restarts (opt-in)."""
    persistent_buffer_bytes: int = 256 * 1024 * 1024
    """Disk budget of the persistent buffer; beyond it new batches are dropped, counted."""
    rate_limit: int | None = None
    """Most export requests per minute across all signals; ``None`` is unlimited."""
    cardinality_limit: int = 2000
    """Attribute sets per metric instrument before folding into ``otel.metric.overflow``."""
    max_open_spans: int = 10_000
    """Spans started with ``start_span`` and not yet ended that are tracked by id."""
    scrub_enabled: bool = True
    """Replace secret-looking attribute values (passwords, tokens, keys, cards) before export."""
    scrub_safe_keys: tuple[str, ...] = ()
    """Attribute keys never scrubbed, however they look."""
    scrub_callback: Callable[[str, Any], Any] | None = field(default=None, compare=False)
    """Called as ``callback(key, value)`` after the built-in rules; returns the value to send."""
    install_global_providers: bool = True
    """Make this client's providers the OpenTelemetry globals, if none are set yet."""
    sdk_disabled: bool = False
    """``OTEL_SDK_DISABLED``: every call becomes a no-op and nothing is exported."""
    feature_flags: FlagSet = field(default_factory=FlagSet)
    """Flags for ``client.is_enabled``/``get_variant``, evaluated locally."""
    sources: Mapping[str, str] = field(default_factory=lambda: _EMPTY, compare=False)
    """Where each value came from (``argument``, ``env:NAME``, ``default``), for ``describe()``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "custom_attributes", _freeze(self.custom_attributes))
        object.__setattr__(self, "headers", _freeze(self.headers))
        object.__setattr__(self, "sources", _freeze(self.sources))
        object.__setattr__(self, "scrub_safe_keys", tuple(self.scrub_safe_keys))
        if isinstance(self.protocol, str) and not isinstance(self.protocol, Protocol):
            with contextlib.suppress(ValueError):
                object.__setattr__(self, "protocol", Protocol(self.protocol.lower()))
        problems = _validate(self)
        if problems:
            first_field = problems[0].split(":", 1)[0]
            raise ConfigError(
                "invalid TelemetryConfig: " + "; ".join(problems),
                field=first_field,
                problems=problems,
            )

    @property
    def parsed_endpoint(self) -> Endpoint:
        return parse_endpoint(self.endpoint)

    @property
    def uses_tls(self) -> bool:
        """The URL scheme decides; else an explicit choice; else TLS except on loopback.

        Local collectors listen in plaintext, as OTLP receivers do on loopback, so a
        ``127.0.0.1:4317`` endpoint works without flags; any other host gets TLS.
        """
        ep = self.parsed_endpoint
        if ep.scheme is not None:
            return ep.scheme == "https"
        if self.insecure is not None:
            return not self.insecure
        if self.ca_file or self.client_cert_file:
            return True
        return not ep.is_loopback

    @property
    def signals_enabled(self) -> list[str]:
        enabled = [
            (SignalType.METRICS, self.enable_metrics),
            (SignalType.LOGS, self.enable_logs),
            (SignalType.TRACES, self.enable_traces),
        ]
        return [s.value for s, on in enabled if on]

    def with_changes(self, **changes: Any) -> TelemetryConfig:
        """A validated copy with some fields replaced."""
        return replace(self, **changes)

    def describe(self) -> str:
        """One line per option: value (secrets masked, headers redacted) and its source."""
        rows = []
        for f in fields(self):
            if f.name == "sources":
                continue
            value: object = getattr(self, f.name)
            if f.name == "headers":
                value = dict.fromkeys(self.headers, "***")
            elif f.name == "custom_attributes":
                value = dict(self.custom_attributes)
            elif isinstance(value, timedelta):
                value = f"{value.total_seconds():g}s"
            elif isinstance(value, Protocol):
                value = value.value
            source = self.sources.get(f.name, "default")
            rows.append((f.name, str(value), source))
        width = max(len(r[0]) for r in rows)
        vwidth = min(48, max(len(r[1]) for r in rows))
        return "\n".join(f"{n:<{width}}  {v:<{vwidth}}  {s}" for n, v, s in rows)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in ("headers", "sources")
        )
        return f"TelemetryConfig({shown}, headers=<{len(self.headers)} redacted>)"


def _validate(cfg: TelemetryConfig) -> list[str]:
    problems: list[str] = []
    add = problems.append
    if not isinstance(cfg.credentials, Credentials):
        add("credentials: must be a Credentials (Credentials.create(key_id, key_secret))")
    if not isinstance(cfg.protocol, Protocol):
        add("protocol: must be Protocol.GRPC or Protocol.HTTP")
    for name in ("service_name", "service_version", "service_namespace", "environment"):
        value = getattr(cfg, name)
        if not isinstance(value, str) or not value.strip():
            add(f"{name}: must be a non-empty string")
        elif has_control_chars(value):
            add(f"{name}: must not contain control characters")
    endpoint: Endpoint | None = None
    if not isinstance(cfg.endpoint, str):
        add("endpoint: must be a string like 'collector.example.com:4317'")
    else:
        try:
            endpoint = parse_endpoint(cfg.endpoint)
        except ValueError as exc:
            add(f"endpoint: {exc}")
    if endpoint is not None and endpoint.scheme is None and endpoint.port is None:
        add("endpoint: a bare host needs a port, e.g. 'host:4317' (or use a full URL)")
    if cfg.collector_id is not None and (
        not isinstance(cfg.collector_id, str)
        or has_control_chars(cfg.collector_id)
        or not cfg.collector_id.strip()
    ):
        add("collector_id: must be a non-empty string without control characters")
    for key, value in cfg.custom_attributes.items():
        if not isinstance(key, str) or not key.strip():
            add("custom_attributes: keys must be non-empty strings")
        elif not isinstance(value, str):
            add(f"custom_attributes: value of '{key}' must be a string")
    for key, value in cfg.headers.items():
        if not _is_header_token(key):
            add("headers: header names must be visible ASCII without separators")
        elif not isinstance(value, str) or has_control_chars(value):
            add(f"headers: value of '{key}' must not contain control characters")
    if not isinstance(cfg.feature_flags, FlagSet):
        add("feature_flags: must be a FlagSet (use with_feature_flags())")
    _validate_numbers(cfg, add)
    _validate_tls(cfg, endpoint, add)
    return problems


def _is_header_token(name: object) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and all(33 <= ord(c) < 127 and c not in '()<>@,;:\\"/[]?={}' for c in name)
    )


def _validate_numbers(cfg: TelemetryConfig, add: Any) -> None:
    for name in ("timeout", "retry_backoff", "retry_max_backoff", "batch_timeout"):
        value = getattr(cfg, name)
        if not isinstance(value, timedelta) or value.total_seconds() <= 0:
            add(f"{name}: must be a positive timedelta")
    positives = (
        "batch_max_size",
        "max_queue_size",
        "cardinality_limit",
        "max_open_spans",
        "max_queue_bytes",
        "max_request_bytes",
    )
    for name in positives:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            add(f"{name}: must be a positive integer")
    if (
        not isinstance(cfg.max_retries, int)
        or isinstance(cfg.max_retries, bool)
        or not (0 <= cfg.max_retries <= 100)
    ):
        add("max_retries: must be an integer from 0 to 100")
    if cfg.rate_limit is not None and (
        not isinstance(cfg.rate_limit, int)
        or isinstance(cfg.rate_limit, bool)
        or cfg.rate_limit < 1
    ):
        add("rate_limit: must be a positive number of export requests per minute, or None")
    if (
        isinstance(cfg.batch_max_size, int)
        and isinstance(cfg.max_queue_size, int)
        and cfg.batch_max_size > cfg.max_queue_size
    ):
        add("batch_max_size: cannot exceed max_queue_size")


def _validate_tls(cfg: TelemetryConfig, endpoint: Endpoint | None, add: Any) -> None:
    if (cfg.client_cert_file is None) != (cfg.client_key_file is None):
        add("client_cert_file: mutual TLS needs both client_cert_file and client_key_file")
    if endpoint is None:
        return
    plaintext = endpoint.scheme == "http" or (endpoint.scheme is None and cfg.insecure is True)
    if plaintext and not endpoint.is_loopback and not cfg.allow_plaintext_credentials:
        add(
            "insecure: refusing to send the API key in plaintext to a non-loopback host; "
            "use TLS (drop with_insecure()/use https://) or allow it explicitly with "
            "with_plaintext_credentials_allowed()"
        )
