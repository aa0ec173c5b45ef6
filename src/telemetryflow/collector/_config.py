"""Collector settings: declared once, validated once, never mutated.

Every setting has a command-line flag and an environment variable; the command line
wins, then the environment, then the default. :func:`resolve_keys` is the one place
that turns flags, ``TELEMETRYFLOW_COLLECTOR_KEYS``, a keys file and the SDK's own
``TELEMETRYFLOW_API_KEY_ID``/``_SECRET`` into the keys the collector accepts.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from telemetryflow._configuration.credentials import Credentials, mask_key_id
from telemetryflow._configuration.errors import ConfigError, CredentialsError
from telemetryflow._extras.flags import EMPTY_FLAGS, FlagSet
from telemetryflow.collector.forward import ForwardConfig

__all__ = [
    "DEFAULT_PROJECT",
    "ENV_FLAGS",
    "ENV_KEYS",
    "ENV_KEYS_FILE",
    "ENV_STORE",
    "ApiKey",
    "CollectorConfig",
    "is_loopback",
    "parse_key_spec",
    "resolve_keys",
]

DEFAULT_PROJECT = "default"
ENV_KEYS = "TELEMETRYFLOW_COLLECTOR_KEYS"
"""Comma- or whitespace-separated ``KEY_ID:KEY_SECRET[@PROJECT]`` entries."""
ENV_KEYS_FILE = "TELEMETRYFLOW_COLLECTOR_KEYS_FILE"
"""Path of a file with one ``KEY_ID:KEY_SECRET[@PROJECT]`` per line (``#`` comments)."""

ENV_STORE = "TELEMETRYFLOW_COLLECTOR_STORE"
"""The store URL, as ``--store`` (``sqlite:///…``, ``chdb:///…``, ``clickhouse://…``)."""

ENV_FLAGS = "TELEMETRYFLOW_COLLECTOR_FLAGS"
"""Path of a JSON or YAML file of feature flags (the SDK's format), as ``--flags``."""

_MIB = 1024 * 1024


@dataclass(frozen=True)
class ApiKey:
    """One accepted API key and the project whose data it writes and reads."""

    key_id: str
    key_secret: str = field(repr=False)
    project: str = DEFAULT_PROJECT

    def __post_init__(self) -> None:
        Credentials(self.key_id, self.key_secret)  # same validation as the SDK
        if not self.project or any(ord(c) < 0x20 for c in self.project):
            raise ConfigError("project name must be non-empty printable text", field="project")

    def __repr__(self) -> str:
        return f"ApiKey(key_id={mask_key_id(self.key_id)!r}, project={self.project!r})"


def parse_key_spec(spec: str) -> ApiKey:
    """Parse ``tfk_ID:tfs_SECRET`` or ``tfk_ID:tfs_SECRET@project``.

    Raises:
        ConfigError: the entry is not in that form or the key is malformed. The
            message never contains the secret.
    """
    text = spec.strip()
    project = DEFAULT_PROJECT
    if "@" in text:
        text, _, project = text.rpartition("@")
    key_id, sep, secret = text.partition(":")
    if not sep:
        raise ConfigError("an API key must be given as KEY_ID:KEY_SECRET[@PROJECT]", field="keys")
    try:
        return ApiKey(key_id, secret, project)
    except CredentialsError as exc:
        raise ConfigError(f"invalid API key {mask_key_id(key_id)}: {exc}", field="keys") from exc


def _split_specs(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]


def _read_keys_file(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(
            f"cannot read keys file {path!r}: {exc.strerror}", field="keys_file"
        ) from exc
    specs: list[str] = []
    for line in lines:
        content = line.split("#", 1)[0].strip()
        if content:
            specs.append(content)
    return specs


def resolve_keys(
    specs: Iterable[str] = (),
    keys_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[ApiKey, ...]:
    """Collect the accepted keys: explicit specs and file, else environment.

    Falls back to the SDK's ``TELEMETRYFLOW_API_KEY_ID``/``TELEMETRYFLOW_API_KEY_SECRET``
    when nothing else names a key, so one exported key serves both sides.
    """
    env = os.environ if environ is None else environ
    raw = list(specs)
    file_path = keys_file or env.get(ENV_KEYS_FILE)
    if file_path:
        raw.extend(_read_keys_file(file_path))
    if not raw:
        raw.extend(_split_specs(env.get(ENV_KEYS, "")))
    if not raw and env.get("TELEMETRYFLOW_API_KEY_ID") and env.get("TELEMETRYFLOW_API_KEY_SECRET"):
        raw.append(f"{env['TELEMETRYFLOW_API_KEY_ID']}:{env['TELEMETRYFLOW_API_KEY_SECRET']}")
    keys = [parse_key_spec(spec) for spec in raw]
    seen: dict[str, ApiKey] = {}
    for key in keys:
        if key.key_id in seen and seen[key.key_id] != key:
            raise ConfigError(f"key {mask_key_id(key.key_id)} is listed twice", field="keys")
        seen[key.key_id] = key
    return tuple(seen.values())


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and any loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class CollectorConfig:
    """Everything the collector needs to run. Ports ``0`` pick a free port.

    Raises:
        ConfigError: a value is out of range, a non-loopback address is asked for
            without ``allow_remote``, or authentication is on with no key.
    """

    db_path: str = "telemetryflow.db"
    """SQLite database file (created if missing), when :attr:`store` is not set."""
    store: str = field(default="", repr=False)
    """Store URL: ``sqlite:///path.db``, ``chdb:///dir`` or
    ``clickhouse://user:password@host:8123/db`` (``docs/scale.md``); empty: SQLite at
    :attr:`db_path`. Kept out of ``repr`` (it may hold a password)."""
    grpc_host: str = "127.0.0.1"
    grpc_port: int | None = 4317
    """OTLP/gRPC port; ``None`` disables the gRPC receiver."""
    http_host: str = "127.0.0.1"
    http_port: int = 4318
    """OTLP/HTTP and query API port."""
    keys: tuple[ApiKey, ...] = ()
    auth: bool = True
    """``False`` accepts anything into the ``default`` project (local use only)."""
    allow_remote: bool = False
    """Needed to bind to anything but a loopback address."""
    max_body_bytes: int = 16 * _MIB
    """Cap on a request body, applied both before and after decompression."""
    rate_limit: float = 1000.0
    """Requests per second accepted per key (burst: twice that); ``0`` disables."""
    max_pending_writes: int = 256
    """Write requests waiting for the database before the collector sheds load."""
    retention_seconds: float = 7 * 86400.0
    """Data older than this is deleted; ``0`` keeps everything."""
    max_db_bytes: int = 1024 * _MIB
    """Oldest data is deleted when the live data passes this size; ``0`` disables."""
    retention_interval: float = 60.0
    """Seconds between retention passes."""
    sync_full: bool = False
    """fsync every commit (survives power loss, not only a killed process)."""
    grpc_workers: int = 8
    """Threads handling gRPC calls (each holds at most one message of ``max_body_bytes``)."""
    http_workers: int = 16
    """Threads inflating, parsing and storing HTTP requests and answering queries."""
    max_inflight_bytes: int = 64 * _MIB
    """Request bodies (as received plus inflated) held at once over HTTP; a request
    that does not fit is answered 503 with ``Retry-After`` before its body is read."""
    max_connections: int = 1000
    """Open connections per receiver, lowered at start to fit the open-file limit."""
    header_timeout: float = 10.0
    """Seconds a connection has to send a request's headers, in total."""
    body_timeout: float = 60.0
    """Seconds a request has to send its whole body, from when its headers arrived
    (over gRPC: an admitted call, its message)."""
    max_queries: int = 4
    """Queries running at once (query API and web view); more get 503 with Retry-After."""
    max_queries_per_key: int = 2
    """Queries one API key may have running at once."""
    query_timeout: float = 30.0
    """Seconds of SQL one query may run before it is stopped with 422 (narrow it)."""
    feature_flags: FlagSet = EMPTY_FLAGS
    """Flags ``GET /v1/observability/flags/{key}`` evaluates (``--flags FILE``; build
    with :meth:`FlagSet.from_file` or :meth:`FlagSet.from_mapping`). Unknown flags are off."""
    forward: ForwardConfig = field(default_factory=ForwardConfig)
    """Upstreams that get a copy of everything accepted (``--forward``); none by default.
    Their headers are never shown."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        for name in ("grpc_port", "http_port"):
            port = getattr(self, name)
            if port is not None and not 0 <= port <= 65535:
                problems.append(f"{name} must be between 0 and 65535")
        for name in ("max_body_bytes", "max_pending_writes", "grpc_workers", "http_workers",
                     "max_inflight_bytes", "max_connections", "max_queries",
                     "max_queries_per_key"):  # fmt: skip
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        for name in ("header_timeout", "body_timeout", "query_timeout"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive")
        if self.max_inflight_bytes < self.max_body_bytes:
            problems.append("max_inflight_bytes must be at least max_body_bytes")
        for name in ("rate_limit", "retention_seconds", "max_db_bytes"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative")
        if self.retention_interval <= 0:
            problems.append("retention_interval must be positive")
        if not self.allow_remote:
            for host in (self.grpc_host, self.http_host):
                if not is_loopback(host):
                    problems.append(
                        f"binding to {host!r} exposes the collector; pass --allow-remote"
                    )
        if self.store:
            from telemetryflow.collector.store._url import StoreURLError, parse_store_url

            try:
                parse_store_url(self.store)
            except StoreURLError as exc:
                problems.append(str(exc))
        if self.auth and not self.keys:
            problems.append(
                "no API key given: use --key, TELEMETRYFLOW_COLLECTOR_KEYS, a keys file, "
                "or --no-auth for local use"
            )
        if problems:
            raise ConfigError(problems[0], problems=problems)
