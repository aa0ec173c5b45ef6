"""Every environment variable the SDK reads, declared once, and the one resolver.

Precedence, for each configuration field: an explicit builder call, then the
``TELEMETRYFLOW_*`` variable, then the standard ``OTEL_*`` variable, then the default.
The builder reads the environment only for the groups it was asked to
(``with_*_from_env()``; ``with_auto_configuration()`` asks for all of them).

A malformed optional value (a timeout that is not a number, say) logs a warning and
falls back to the default: a typo in a deployment must not take the service down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

from telemetryflow._configuration.enums import Protocol
from telemetryflow._extras.flags import parse_flags_setting

__all__ = ["DEFAULTS", "SETTINGS", "EnvSetting", "Resolved", "resolve"]

_log = logging.getLogger("telemetryflow")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _parse_protocol(text: str) -> Protocol:
    lowered = text.strip().lower()
    if lowered == "grpc":
        return Protocol.GRPC
    if lowered in ("http", "http/protobuf"):
        return Protocol.HTTP
    raise ValueError("expected grpc or http/protobuf")


def _parse_millis(text: str) -> timedelta:
    millis = float(text.strip())
    if not 0 < millis < 86_400_000:  # NaN and infinity fail here too
        raise ValueError("expected a positive number of milliseconds, under a day")
    return timedelta(milliseconds=millis)


def _parse_compression(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("gzip",):
        return True
    if lowered in ("none", ""):
        return False
    raise ValueError("expected gzip or none")


def parse_key_values(text: str) -> dict[str, str]:
    """Parse the W3C-baggage-like ``k1=v1,k2=v2`` list of the OTEL variables."""
    result: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("expected key=value pairs separated by commas")
        result[unquote(key.strip())] = unquote(value.strip())
    return result


def _text(value: str) -> str:
    return value.strip()


@dataclass(frozen=True)
class EnvSetting:
    """One configuration field and the variables that may set it, in precedence order."""

    field: str
    env: tuple[str, ...]
    group: str
    parse: Callable[[str], Any]
    doc: str
    required_value: bool = False
    """A bad value is an error (identity and credentials), not a warning."""


SETTINGS: tuple[EnvSetting, ...] = (
    EnvSetting(
        "key_id",
        ("TELEMETRYFLOW_API_KEY_ID",),
        "api_key",
        _text,
        "API key ID (tfk_*)",
        required_value=True,
    ),
    EnvSetting(
        "key_secret",
        ("TELEMETRYFLOW_API_KEY_SECRET",),
        "api_key",
        _text,
        "API key secret (tfs_*)",
        required_value=True,
    ),
    EnvSetting(
        "endpoint",
        ("TELEMETRYFLOW_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        "endpoint",
        _text,
        "Collector endpoint, host:port or URL",
        required_value=True,
    ),
    EnvSetting(
        "service_name",
        ("TELEMETRYFLOW_SERVICE_NAME", "OTEL_SERVICE_NAME"),
        "service",
        _text,
        "Service name",
        required_value=True,
    ),
    EnvSetting(
        "service_version", ("TELEMETRYFLOW_SERVICE_VERSION",), "service", _text, "Service version"
    ),
    EnvSetting(
        "service_namespace",
        ("TELEMETRYFLOW_SERVICE_NAMESPACE",),
        "namespace",
        _text,
        "Service namespace",
    ),
    EnvSetting(
        "environment",
        ("TELEMETRYFLOW_ENVIRONMENT", "ENV", "ENVIRONMENT"),
        "environment",
        _text,
        "Deployment environment",
    ),
    EnvSetting(
        "collector_id",
        ("TELEMETRYFLOW_COLLECTOR_ID",),
        "collector_id",
        _text,
        "Collector ID",
        required_value=True,
    ),
    EnvSetting(
        "protocol",
        ("TELEMETRYFLOW_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        "otel",
        _parse_protocol,
        "grpc or http (http/protobuf)",
    ),
    EnvSetting(
        "insecure",
        ("TELEMETRYFLOW_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"),
        "otel",
        _parse_bool,
        "true: plaintext; false: TLS; unset: plaintext to a loopback host:port, else TLS",
    ),
    EnvSetting(
        "headers",
        ("OTEL_EXPORTER_OTLP_HEADERS",),
        "otel",
        parse_key_values,
        "Extra export headers, k=v,k2=v2 (percent-encoded)",
        required_value=True,
    ),
    EnvSetting(
        "timeout",
        ("OTEL_EXPORTER_OTLP_TIMEOUT",),
        "otel",
        _parse_millis,
        "Export timeout in milliseconds",
    ),
    EnvSetting(
        "compression",
        ("OTEL_EXPORTER_OTLP_COMPRESSION",),
        "otel",
        _parse_compression,
        "gzip or none",
    ),
    EnvSetting(
        "custom_attributes",
        ("OTEL_RESOURCE_ATTRIBUTES",),
        "otel",
        parse_key_values,
        "Extra resource attributes, k=v,k2=v2",
    ),
    EnvSetting(
        "sdk_disabled",
        ("OTEL_SDK_DISABLED",),
        "otel",
        _parse_bool,
        "true turns every call into a no-op",
    ),
    EnvSetting(
        "persistent_buffer_dir",
        ("TELEMETRYFLOW_BUFFER_DIR",),
        "otel",
        _text,
        "Directory of the persistent buffer (opt-in)",
    ),
    EnvSetting(
        "ca_file",
        ("TELEMETRYFLOW_CA_FILE", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        "otel",
        _text,
        "PEM CA bundle to verify the collector",
    ),
    EnvSetting(
        "client_cert_file",
        ("TELEMETRYFLOW_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
        "otel",
        _text,
        "PEM client certificate (mutual TLS)",
    ),
    EnvSetting(
        "client_key_file",
        ("TELEMETRYFLOW_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        "otel",
        _text,
        "PEM client key (mutual TLS)",
    ),
    EnvSetting(
        "feature_flags",
        ("TELEMETRYFLOW_FLAGS", "TELEMETRYFLOW_FLAGS_FILE"),
        "flags",
        parse_flags_setting,
        "Feature flags: inline JSON, or the path of a JSON/YAML file",
    ),
)

ENV_GROUPS: frozenset[str] = frozenset(s.group for s in SETTINGS)

DEFAULTS: Mapping[str, Any] = {
    "endpoint": "api.telemetryflow.id:4317",
    "service_version": "1.0.0",
    "service_namespace": "telemetryflow",
    "environment": "production",
}


class EnvValueError(ValueError):
    """A required-value variable holds something unusable. Names the variable only."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable


@dataclass(frozen=True)
class Resolved:
    """Resolved values and, per field, where each came from."""

    values: dict[str, Any]
    sources: dict[str, str]


def _from_env(setting: EnvSetting, environ: Mapping[str, str]) -> tuple[Any, str] | None:
    for variable in setting.env:
        raw = environ.get(variable)
        if raw is None or raw.strip() == "":
            continue
        try:
            return setting.parse(raw), f"env:{variable}"
        except (ValueError, OverflowError, TypeError):
            # Never echo the raw value: a misplaced secret must not reach a log line.
            if setting.required_value:
                raise EnvValueError(variable, f"invalid value (expected: {setting.doc})") from None
            _log.warning(
                "ignoring %s: invalid value (expected: %s); using the default",
                variable,
                setting.doc,
            )
            return None
    return None


def resolve(
    explicit: Mapping[str, Any],
    groups: set[str],
    environ: Mapping[str, str],
    fallback: Mapping[str, Any] | None = None,
    fallback_source: str = "file",
) -> Resolved:
    """Resolve every field: explicit, then environment (asked-for groups), then
    ``fallback`` (the user config file), then default.

    ``custom_attributes`` and ``headers`` merge instead: environment entries first,
    explicit entries override them key by key.

    Raises:
        EnvValueError: a required-value variable cannot be parsed.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        name = setting.field
        env_hit = _from_env(setting, environ) if setting.group in groups else None
        if name in ("custom_attributes", "headers"):
            merged = dict(env_hit[0]) if env_hit else {}
            merged.update(explicit.get(name) or {})
            values[name] = merged
            sources[name] = _merge_source(env_hit, explicit.get(name))
        elif name in explicit:
            values[name], sources[name] = explicit[name], "argument"
        elif env_hit is not None:
            values[name], sources[name] = env_hit
        elif fallback and name in fallback:
            values[name], sources[name] = fallback[name], fallback_source
        elif name in DEFAULTS:
            values[name], sources[name] = DEFAULTS[name], "default"
    for name, value in explicit.items():
        if name not in values:
            values[name], sources[name] = value, "argument"
    return Resolved(values, sources)


def _merge_source(env_hit: tuple[Any, str] | None, explicit: Any) -> str:
    parts = ([env_hit[1]] if env_hit else []) + (["argument"] if explicit else [])
    return " + ".join(parts) or "default"
