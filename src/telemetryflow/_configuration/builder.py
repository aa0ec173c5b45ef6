"""``TelemetryFlowBuilder``: the fluent, environment-aware way to make a client.

Each ``with_*`` call records an explicit choice; ``*_from_env()`` calls only switch on
reading a group of variables. Everything is resolved in ``build()`` by
:func:`telemetryflow._configuration.settings.resolve`, so an explicit call wins regardless of the
order the calls were made in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from telemetryflow._configuration.config import TelemetryConfig
from telemetryflow._configuration.credentials import Credentials
from telemetryflow._configuration.enums import Protocol
from telemetryflow._configuration.errors import BuilderError, ConfigError, CredentialsError
from telemetryflow._configuration.settings import ENV_GROUPS, EnvValueError, resolve
from telemetryflow._configuration.user_config import fallback_settings, user_config_path
from telemetryflow._extras.flags import FlagSet

if TYPE_CHECKING:
    from telemetryflow._extras.facade import TelemetryFlowClient

__all__ = ["BuilderError", "TelemetryFlowBuilder"]

_HOW_TO_SET = {
    "credentials": "call with_api_key(key_id, key_secret), or set TELEMETRYFLOW_API_KEY_ID "
    "and TELEMETRYFLOW_API_KEY_SECRET and call with_api_key_from_env()",
    "service_name": "call with_service(name), or set TELEMETRYFLOW_SERVICE_NAME (or "
    "OTEL_SERVICE_NAME) and call with_service_from_env()",
}


def _require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise BuilderError(f"{field}: {message}", field=field)


def _positive_delta(value: object, field: str) -> timedelta:
    _require(
        isinstance(value, timedelta) and value.total_seconds() > 0,
        field,
        "must be a positive datetime.timedelta",
    )
    assert isinstance(value, timedelta)
    return value


def _positive_int(value: object, field: str) -> int:
    _require(
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        field,
        "must be a positive integer",
    )
    assert isinstance(value, int)
    return value


class TelemetryFlowBuilder:
    """Fluent builder for :class:`~telemetryflow.TelemetryFlowClient`.

    Example:
        >>> client = (TelemetryFlowBuilder()
        ...     .with_api_key("tfk_id", "tfs_secret")
        ...     .with_endpoint("127.0.0.1:4317").with_insecure()
        ...     .with_service("checkout", "2.1.0")
        ...     .build())
    """

    def __init__(self) -> None:
        self._explicit: dict[str, Any] = {}
        self._groups: set[str] = set()
        self._environ: Mapping[str, str] | None = None
        self._user_config = False

    # -- credentials ---------------------------------------------------------------
    def with_api_key(self, key_id: str, key_secret: str) -> TelemetryFlowBuilder:
        """Set the API key. Raises ``CredentialsError`` now if it is malformed."""
        credentials = Credentials.create(key_id, key_secret)
        self._explicit["key_id"] = credentials.key_id
        self._explicit["key_secret"] = credentials.key_secret
        return self

    def with_api_key_from_env(self) -> TelemetryFlowBuilder:
        """Read TELEMETRYFLOW_API_KEY_ID and TELEMETRYFLOW_API_KEY_SECRET at build time."""
        self._groups.add("api_key")
        return self

    # -- where and who -------------------------------------------------------------
    def with_endpoint(self, endpoint: str) -> TelemetryFlowBuilder:
        """Set the collector: ``host:port`` or a full ``http(s)://`` URL."""
        _require(
            isinstance(endpoint, str) and bool(endpoint.strip()),
            "endpoint",
            "must be a non-empty string like 'collector.example.com:4317'",
        )
        self._explicit["endpoint"] = endpoint.strip()
        return self

    def with_endpoint_from_env(self) -> TelemetryFlowBuilder:
        """Read TELEMETRYFLOW_ENDPOINT, then OTEL_EXPORTER_OTLP_ENDPOINT."""
        self._groups.add("endpoint")
        return self

    def with_service(self, name: str, version: str | None = None) -> TelemetryFlowBuilder:
        """Set ``service.name`` and, optionally, ``service.version``."""
        _require(
            isinstance(name, str) and bool(name.strip()),
            "service_name",
            "must be a non-empty string",
        )
        self._explicit["service_name"] = name
        if version is not None:
            self._explicit["service_version"] = version
        return self

    def with_service_from_env(self) -> TelemetryFlowBuilder:
        """Read TELEMETRYFLOW_SERVICE_NAME (or OTEL_SERVICE_NAME) and ..._SERVICE_VERSION."""
        self._groups.add("service")
        return self

    def with_service_namespace(self, namespace: str) -> TelemetryFlowBuilder:
        self._explicit["service_namespace"] = namespace
        return self

    def with_service_namespace_from_env(self) -> TelemetryFlowBuilder:
        """Read TELEMETRYFLOW_SERVICE_NAMESPACE."""
        self._groups.add("namespace")
        return self

    def with_environment(self, environment: str) -> TelemetryFlowBuilder:
        """Set the deployment environment (``deployment.environment.name``)."""
        self._explicit["environment"] = environment
        return self

    def with_environment_from_env(self) -> TelemetryFlowBuilder:
        """Read TELEMETRYFLOW_ENVIRONMENT, then ENV, then ENVIRONMENT."""
        self._groups.add("environment")
        return self

    def with_collector_id(self, collector_id: str) -> TelemetryFlowBuilder:
        self._explicit["collector_id"] = collector_id
        return self

    def with_collector_id_from_env(self) -> TelemetryFlowBuilder:
        """Read TELEMETRYFLOW_COLLECTOR_ID."""
        self._groups.add("collector_id")
        return self

    def with_custom_attribute(self, key: str, value: str) -> TelemetryFlowBuilder:
        """Add one resource attribute sent with every signal."""
        _require(
            isinstance(key, str) and bool(key.strip()),
            "custom_attributes",
            "keys must be non-empty strings",
        )
        self._explicit.setdefault("custom_attributes", {})[key] = value
        return self

    def with_custom_attributes(self, attributes: dict[str, str]) -> TelemetryFlowBuilder:
        _require(isinstance(attributes, Mapping), "custom_attributes", "must be a dict of strings")
        for key, value in attributes.items():
            self.with_custom_attribute(key, value)
        return self

    # -- transport -----------------------------------------------------------------
    def with_protocol(self, protocol: Protocol) -> TelemetryFlowBuilder:
        try:
            self._explicit["protocol"] = Protocol(protocol)
        except ValueError:
            raise BuilderError(
                "protocol: must be Protocol.GRPC or Protocol.HTTP", field="protocol"
            ) from None
        return self

    def with_grpc(self) -> TelemetryFlowBuilder:
        """OTLP over gRPC (the default)."""
        return self.with_protocol(Protocol.GRPC)

    def with_http(self) -> TelemetryFlowBuilder:
        """OTLP over HTTP with protobuf bodies, to ``/v1/{traces,metrics,logs}``."""
        return self.with_protocol(Protocol.HTTP)

    def with_insecure(self, insecure: bool = True) -> TelemetryFlowBuilder:
        """Turn TLS off (plaintext), or on with ``False``.

        Without this call (or ``TELEMETRYFLOW_INSECURE``), a loopback ``host:port``
        such as ``127.0.0.1:4317`` is plaintext, like the local collector, and every
        other host uses TLS. Plaintext to a non-loopback host also needs
        ``with_plaintext_credentials_allowed()``.
        """
        self._explicit["insecure"] = bool(insecure)
        return self

    def with_tls(
        self,
        ca_file: str | None = None,
        client_cert_file: str | None = None,
        client_key_file: str | None = None,
    ) -> TelemetryFlowBuilder:
        """Use TLS; verify the collector with ``ca_file`` and/or present a client certificate.

        TLS is already the default except for a loopback ``host:port`` (see
        ``with_insecure``); calling this asks for TLS there too.
        """
        self._explicit.setdefault("insecure", False)
        self._explicit.update(
            ca_file=ca_file, client_cert_file=client_cert_file, client_key_file=client_key_file
        )
        return self

    def with_plaintext_credentials_allowed(self, allowed: bool = True) -> TelemetryFlowBuilder:
        """Allow the API key over plaintext to a non-loopback host (a private network)."""
        self._explicit["allow_plaintext_credentials"] = bool(allowed)
        return self

    def with_headers(self, headers: dict[str, str]) -> TelemetryFlowBuilder:
        """Extra headers (gRPC metadata) on every export request."""
        _require(isinstance(headers, Mapping), "headers", "must be a dict of strings")
        self._explicit.setdefault("headers", {}).update(headers)
        return self

    def with_timeout(self, timeout: timedelta) -> TelemetryFlowBuilder:
        """Upper bound of each export attempt, connection included."""
        self._explicit["timeout"] = _positive_delta(timeout, "timeout")
        return self

    def with_compression(self, enabled: bool = True) -> TelemetryFlowBuilder:
        """gzip export bodies (on by default)."""
        self._explicit["compression"] = bool(enabled)
        return self

    def with_retry(
        self, enabled: bool = True, max_retries: int = 3, backoff: timedelta | None = None
    ) -> TelemetryFlowBuilder:
        """Retry retryable export failures ``max_retries`` times, backing off from ``backoff``."""
        _require(
            isinstance(max_retries, int)
            and not isinstance(max_retries, bool)
            and 0 <= max_retries <= 100,
            "max_retries",
            "must be an integer from 0 to 100",
        )
        self._explicit["retry_enabled"] = bool(enabled)
        self._explicit["max_retries"] = max_retries
        if backoff is not None:
            self._explicit["retry_backoff"] = _positive_delta(backoff, "retry_backoff")
        return self

    def with_batch_settings(
        self, timeout: timedelta | None = None, max_size: int | None = None
    ) -> TelemetryFlowBuilder:
        """How long telemetry may wait before export, and the most items per request."""
        if timeout is not None:
            self._explicit["batch_timeout"] = _positive_delta(timeout, "batch_timeout")
        if max_size is not None:
            self._explicit["batch_max_size"] = _positive_int(max_size, "batch_max_size")
        return self

    def with_queue_size(self, max_queue_size: int) -> TelemetryFlowBuilder:
        """Spans (and logs) buffered awaiting export; excess is dropped and counted."""
        self._explicit["max_queue_size"] = _positive_int(max_queue_size, "max_queue_size")
        return self

    def with_queue_bytes(self, max_queue_bytes: int) -> TelemetryFlowBuilder:
        """Estimated bytes buffered per signal; bounds memory during an outage."""
        self._explicit["max_queue_bytes"] = _positive_int(max_queue_bytes, "max_queue_bytes")
        return self

    def with_max_request_size(self, max_request_bytes: int) -> TelemetryFlowBuilder:
        """Largest export request; set it to the collector's limit (gRPC: 4 MiB)."""
        self._explicit["max_request_bytes"] = _positive_int(max_request_bytes, "max_request_bytes")
        return self

    def with_retry_max_backoff(self, max_backoff: timedelta) -> TelemetryFlowBuilder:
        """Cap of the exponential backoff, and of the pause between retry rounds."""
        self._explicit["retry_max_backoff"] = _positive_delta(max_backoff, "retry_max_backoff")
        return self

    def with_persistent_buffer(
        self, directory: str, max_bytes: int = 256 * 1024 * 1024
    ) -> TelemetryFlowBuilder:
        """Keep unsent spans and logs on disk so they survive outages and restarts.

        Batches are committed to ``directory`` before export and removed once
        delivered; a process that dies leaves its backlog for the next one to send.
        """
        _require(
            isinstance(directory, str) and bool(directory.strip()),
            "persistent_buffer_dir",
            "must be a directory path",
        )
        self._explicit["persistent_buffer_dir"] = directory
        self._explicit["persistent_buffer_bytes"] = _positive_int(
            max_bytes, "persistent_buffer_bytes"
        )
        return self

    def with_rate_limit(self, rate_limit: int) -> TelemetryFlowBuilder:
        """At most ``rate_limit`` export requests per minute, all signals together."""
        self._explicit["rate_limit"] = _positive_int(rate_limit, "rate_limit")
        return self

    # -- signals -------------------------------------------------------------------
    def with_signals(
        self, metrics: bool = True, logs: bool = True, traces: bool = True
    ) -> TelemetryFlowBuilder:
        self._explicit.update(
            enable_metrics=bool(metrics), enable_logs=bool(logs), enable_traces=bool(traces)
        )
        return self

    def with_metrics_only(self) -> TelemetryFlowBuilder:
        return self.with_signals(metrics=True, logs=False, traces=False)

    def with_logs_only(self) -> TelemetryFlowBuilder:
        return self.with_signals(metrics=False, logs=True, traces=False)

    def with_traces_only(self) -> TelemetryFlowBuilder:
        return self.with_signals(metrics=False, logs=False, traces=True)

    def with_exemplars(self, enabled: bool = True) -> TelemetryFlowBuilder:
        """Link histogram points recorded inside a span to that span."""
        self._explicit["enable_exemplars"] = bool(enabled)
        return self

    def with_cardinality_limit(self, limit: int) -> TelemetryFlowBuilder:
        """Attribute sets per instrument before folding into the overflow series."""
        self._explicit["cardinality_limit"] = _positive_int(limit, "cardinality_limit")
        return self

    def with_scrubbing(
        self,
        enabled: bool = True,
        safe_keys: list[str] | None = None,
        callback: Callable[[str, Any], Any] | None = None,
    ) -> TelemetryFlowBuilder:
        """Scrub secret-looking attribute values before export (on by default).

        Args:
            enabled: False sends attributes exactly as recorded.
            safe_keys: attribute keys never scrubbed.
            callback: ``callback(key, value) -> value`` applied after the built-in rules.
        """
        self._explicit["scrub_enabled"] = bool(enabled)
        if safe_keys is not None:
            _require(
                isinstance(safe_keys, (list, tuple, set, frozenset))
                and all(isinstance(k, str) for k in safe_keys),
                "scrub_safe_keys",
                "must be a list of attribute keys (strings)",
            )
            self._explicit["scrub_safe_keys"] = tuple(safe_keys)
        if callback is not None:
            _require(callable(callback), "scrub_callback", "must be callable(key, value)")
            self._explicit["scrub_callback"] = callback
        return self

    def with_global_providers(self, install: bool = True) -> TelemetryFlowBuilder:
        """Whether the client becomes the process-wide OpenTelemetry provider."""
        self._explicit["install_global_providers"] = bool(install)
        return self

    def with_feature_flags(
        self, flags: Mapping[str, Any] | FlagSet | None = None, file: str | None = None
    ) -> TelemetryFlowBuilder:
        """Feature flags from a mapping and/or a JSON/YAML file (the mapping wins per key).

        Raises:
            BuilderError: a definition is malformed or the file cannot be read.
        """
        try:
            self._explicit["feature_flags"] = FlagSet.load(flags, file)
        except ConfigError as exc:
            raise BuilderError(str(exc), field="feature_flags", problems=exc.problems) from None
        return self

    # -- environment ---------------------------------------------------------------
    def with_auto_configuration(self) -> TelemetryFlowBuilder:
        """Every ``*_from_env()`` at once, plus the standard ``OTEL_*`` variables, then
        the user config file ``telemetryflow setup`` writes, for what they leave unset."""
        self._groups.update(ENV_GROUPS)
        self._user_config = True
        return self

    def with_environ(self, environ: Mapping[str, str]) -> TelemetryFlowBuilder:
        """Read variables from ``environ`` instead of ``os.environ`` (tests, tools)."""
        self._environ = environ
        return self

    # -- build ---------------------------------------------------------------------
    def build_config(self) -> TelemetryConfig:
        """Resolve and validate, without creating a client.

        Raises:
            BuilderError: something is missing or invalid; every problem is listed,
                each with the field (and variable) it is about and how to fix it.
        """
        environ = os.environ if self._environ is None else self._environ
        try:
            fallback = fallback_settings(environ) if self._user_config else None
            source = f"file:{user_config_path(environ)}"
            resolved = resolve(self._explicit, self._groups, environ, fallback, source)
        except EnvValueError as exc:
            raise BuilderError(f"{exc}; fix or unset the variable", field=exc.variable) from None
        values, sources = resolved.values, resolved.sources
        problems: list[str] = []
        credentials = self._credentials(values, sources, problems)
        if not values.get("service_name"):
            problems.append(f"service_name: missing; {_HOW_TO_SET['service_name']}")
        if problems:
            raise BuilderError(
                "cannot build: " + "; ".join(problems),
                field=problems[0].split(":", 1)[0],
                problems=problems,
            )
        assert credentials is not None
        kwargs = {k: v for k, v in values.items() if k not in ("key_id", "key_secret")}
        sources["credentials"] = sources.pop("key_id", "argument")
        sources.pop("key_secret", None)
        try:
            return TelemetryConfig(credentials=credentials, sources=sources, **kwargs)
        except ConfigError as exc:
            annotated = [_annotate(p, sources) for p in exc.problems]
            raise BuilderError(
                "cannot build: " + "; ".join(annotated), field=exc.field, problems=annotated
            ) from None

    def build(self) -> TelemetryFlowClient:
        """Build the client (not yet initialized: call ``initialize()`` or use ``with``).

        Raises:
            BuilderError: configuration is missing or invalid.
        """
        from telemetryflow._extras.facade import TelemetryFlowClient

        return TelemetryFlowClient(self.build_config())

    def must_build(self) -> TelemetryFlowClient:
        """Alias of :meth:`build`, for symmetry with the other TelemetryFlow SDKs."""
        return self.build()

    def describe(self) -> str:
        """The effective configuration, where each value came from, secret masked."""
        return self.build_config().describe()

    @staticmethod
    def _credentials(
        values: dict[str, Any], sources: dict[str, str], problems: list[str]
    ) -> Credentials | None:
        key_id, key_secret = values.get("key_id"), values.get("key_secret")
        if not key_id or not key_secret:
            problems.append(f"credentials: missing; {_HOW_TO_SET['credentials']}")
            return None
        try:
            return Credentials.create(key_id, key_secret)
        except CredentialsError as exc:
            where = sources.get(str(exc.field), "argument")
            problems.append(f"credentials: {exc} (from {where})")
            return None


def _annotate(problem: str, sources: dict[str, str]) -> str:
    field = problem.split(":", 1)[0]
    source = sources.get(field)
    if source and source.startswith("env:"):
        return f"{problem} (from {source[4:]})"
    return problem
