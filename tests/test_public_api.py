"""Every import path and name the API reference documents exists."""

from __future__ import annotations

import importlib
import inspect

import pytest

DOCUMENTED = {
    "telemetryflow": ["TelemetryFlowClient", "TelemetryFlowBuilder"],
    "telemetryflow.client": ["TelemetryFlowClient", "TelemetryFlowError", "NotInitializedError"],
    "telemetryflow.builder": ["TelemetryFlowBuilder", "BuilderError"],
    "telemetryflow.domain.config": ["TelemetryConfig", "Protocol", "SignalType", "ConfigError"],
    "telemetryflow.domain.credentials": ["Credentials", "CredentialsError"],
    "telemetryflow.application.commands": ["SeverityLevel", "SpanKind"],
}


@pytest.mark.parametrize("module", sorted(DOCUMENTED))
def test_documented_names_import(module: str) -> None:
    mod = importlib.import_module(module)
    for name in DOCUMENTED[module]:
        assert hasattr(mod, name), f"{module}.{name}"
        assert name in mod.__all__


def test_middleware_names_import_lazily() -> None:
    mod = importlib.import_module("telemetryflow.middleware")
    assert "FlaskTelemetryMiddleware" in mod.__all__
    assert "FastAPITelemetryMiddleware" in mod.__all__


def test_all_is_sorted_in_public_modules() -> None:
    for module in DOCUMENTED:
        names = importlib.import_module(module).__all__
        assert list(names) == sorted(names), module


def test_error_tree() -> None:
    from telemetryflow.builder import BuilderError
    from telemetryflow.client import NotInitializedError, TelemetryFlowError
    from telemetryflow.domain.config import ConfigError
    from telemetryflow.domain.credentials import CredentialsError

    for error in (NotInitializedError, ConfigError, CredentialsError, BuilderError):
        assert issubclass(error, TelemetryFlowError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(CredentialsError, ValueError)
    assert issubclass(BuilderError, ConfigError)


def test_enum_values_match_the_reference() -> None:
    from telemetryflow.application.commands import SeverityLevel, SpanKind
    from telemetryflow.domain.config import Protocol, SignalType

    assert [p.value for p in Protocol] == ["grpc", "http"]
    assert [s.value for s in SignalType] == ["metrics", "logs", "traces"]
    assert [s.value for s in SeverityLevel] == ["trace", "debug", "info", "warn", "error", "fatal"]
    assert [k.value for k in SpanKind] == ["internal", "server", "client", "producer", "consumer"]
    assert issubclass(Protocol, str)


def test_documented_signatures_and_defaults() -> None:
    from telemetryflow import TelemetryFlowBuilder, TelemetryFlowClient

    def defaults(func: object) -> dict[str, object]:
        return {
            n: p.default
            for n, p in inspect.signature(func).parameters.items()  # type: ignore[arg-type]
            if p.default is not inspect.Parameter.empty
        }

    assert defaults(TelemetryFlowClient.shutdown) == {"timeout": 30.0}
    assert defaults(TelemetryFlowClient.increment_counter) == {"value": 1, "attributes": None}
    assert defaults(TelemetryFlowClient.record_histogram) == {"unit": "", "attributes": None}
    assert defaults(TelemetryFlowClient.record_metric) == {"unit": "", "attributes": None}
    assert list(defaults(TelemetryFlowClient.log)) == ["severity", "attributes"]
    assert list(defaults(TelemetryFlowClient.start_span)) == ["kind", "attributes"]
    assert defaults(TelemetryFlowClient.end_span) == {"error": None}
    assert defaults(TelemetryFlowBuilder.with_signals) == {
        "metrics": True,
        "logs": True,
        "traces": True,
    }
    assert defaults(TelemetryFlowBuilder.with_retry) == {
        "enabled": True,
        "max_retries": 3,
        "backoff": None,
    }
    assert defaults(TelemetryFlowBuilder.with_batch_settings) == {"timeout": None, "max_size": None}
    assert defaults(TelemetryFlowBuilder.with_insecure) == {"insecure": True}
    assert defaults(TelemetryFlowBuilder.with_service) == {"version": None}
    for name in [
        "with_api_key",
        "with_api_key_from_env",
        "with_endpoint",
        "with_endpoint_from_env",
        "with_service",
        "with_service_from_env",
        "with_service_namespace",
        "with_service_namespace_from_env",
        "with_environment",
        "with_environment_from_env",
        "with_protocol",
        "with_grpc",
        "with_http",
        "with_insecure",
        "with_signals",
        "with_metrics_only",
        "with_logs_only",
        "with_traces_only",
        "with_exemplars",
        "with_timeout",
        "with_collector_id",
        "with_collector_id_from_env",
        "with_custom_attribute",
        "with_custom_attributes",
        "with_compression",
        "with_retry",
        "with_batch_settings",
        "with_rate_limit",
        "with_auto_configuration",
        "build",
        "must_build",
    ]:
        assert callable(getattr(TelemetryFlowBuilder, name)), name
