"""The builder: every method, environment handling, precedence and errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from telemetryflow import TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow.builder import BuilderError
from telemetryflow.domain.config import Protocol
from telemetryflow.domain.credentials import CredentialsError

KEY = ("tfk_builder", "tfs_builder_secret_xyz")
ENV = {
    "TELEMETRYFLOW_API_KEY_ID": "tfk_env",
    "TELEMETRYFLOW_API_KEY_SECRET": "tfs_env_secret_abc",
    "TELEMETRYFLOW_SERVICE_NAME": "env-service",
}


def base() -> TelemetryFlowBuilder:
    return TelemetryFlowBuilder().with_api_key(*KEY).with_service("svc")


def test_minimal_build_uses_documented_defaults() -> None:
    client = base().build()
    assert isinstance(client, TelemetryFlowClient)
    assert not client.is_initialized()
    cfg = client.config
    assert cfg.endpoint == "api.telemetryflow.id:4317"
    assert cfg.protocol is Protocol.GRPC
    assert (cfg.service_version, cfg.service_namespace, cfg.environment) == (
        "1.0.0",
        "telemetryflow",
        "production",
    )


def test_every_fluent_method_lands_in_the_config() -> None:
    cfg = (
        base()
        .with_endpoint("127.0.0.1:9999")
        .with_http()
        .with_insecure()
        .with_service("shop", "3.2.1")
        .with_service_namespace("retail")
        .with_environment("staging")
        .with_collector_id("col-7")
        .with_custom_attribute("team", "payments")
        .with_custom_attributes({"region": "eu"})
        .with_signals(metrics=True, logs=False, traces=True)
        .with_exemplars(False)
        .with_timeout(timedelta(seconds=3))
        .with_compression(False)
        .with_retry(True, max_retries=5, backoff=timedelta(milliseconds=250))
        .with_batch_settings(timeout=timedelta(seconds=2), max_size=100)
        .with_rate_limit(120)
        .with_queue_size(500)
        .with_cardinality_limit(50)
        .build()
        .config
    )
    assert cfg.endpoint == "127.0.0.1:9999" and cfg.protocol is Protocol.HTTP
    assert cfg.insecure and not cfg.uses_tls
    assert (cfg.service_name, cfg.service_version) == ("shop", "3.2.1")
    assert cfg.service_namespace == "retail" and cfg.environment == "staging"
    assert cfg.collector_id == "col-7"
    assert dict(cfg.custom_attributes) == {"team": "payments", "region": "eu"}
    assert cfg.signals_enabled == ["metrics", "traces"]
    assert not cfg.enable_exemplars and not cfg.compression
    assert cfg.timeout == timedelta(seconds=3)
    assert cfg.max_retries == 5 and cfg.retry_backoff == timedelta(milliseconds=250)
    assert cfg.batch_timeout == timedelta(seconds=2) and cfg.batch_max_size == 100
    assert cfg.rate_limit == 120 and cfg.max_queue_size == 500 and cfg.cardinality_limit == 50


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("with_metrics_only", ["metrics"]),
        ("with_logs_only", ["logs"]),
        ("with_traces_only", ["traces"]),
    ],
)
def test_single_signal_shortcuts(method: str, expected: list[str]) -> None:
    assert getattr(base(), method)().build().config.signals_enabled == expected


def test_protocol_shortcuts_and_must_build() -> None:
    assert base().with_http().with_grpc().must_build().config.protocol is Protocol.GRPC
    assert base().with_protocol(Protocol.HTTP).build().config.protocol is Protocol.HTTP
    with pytest.raises(BuilderError):
        base().with_protocol("carrier-pigeon")  # type: ignore[arg-type]


def test_missing_everything_names_fields_and_fixes() -> None:
    with pytest.raises(BuilderError) as info:
        TelemetryFlowBuilder().with_environ({}).build()
    message = str(info.value)
    assert "credentials" in message and "TELEMETRYFLOW_API_KEY_ID" in message
    assert "service_name" in message and "with_service" in message
    assert len(info.value.problems) == 2


def test_bad_explicit_arguments_fail_at_the_call() -> None:
    with pytest.raises(CredentialsError):
        TelemetryFlowBuilder().with_api_key("nope", "tfs_x")
    with pytest.raises(BuilderError):
        base().with_timeout(5)  # type: ignore[arg-type]
    with pytest.raises(BuilderError):
        base().with_rate_limit(0)
    with pytest.raises(BuilderError):
        base().with_retry(max_retries=-1)
    with pytest.raises(BuilderError):
        base().with_batch_settings(max_size=0)
    with pytest.raises(BuilderError):
        base().with_endpoint("")


def test_env_is_read_only_when_asked() -> None:
    with pytest.raises(BuilderError):
        TelemetryFlowBuilder().with_environ(ENV).build()
    cfg = TelemetryFlowBuilder().with_environ(ENV).with_auto_configuration().build().config
    assert cfg.credentials.key_id == "tfk_env"
    assert cfg.service_name == "env-service"


def test_each_from_env_method_reads_its_documented_variables() -> None:
    env = {
        **ENV,
        "TELEMETRYFLOW_ENDPOINT": "127.0.0.1:4444",
        "TELEMETRYFLOW_SERVICE_VERSION": "2.0.0",
        "TELEMETRYFLOW_SERVICE_NAMESPACE": "ns",
        "TELEMETRYFLOW_ENVIRONMENT": "dev",
        "TELEMETRYFLOW_COLLECTOR_ID": "c-1",
    }
    cfg = (
        TelemetryFlowBuilder()
        .with_environ(env)
        .with_api_key_from_env()
        .with_endpoint_from_env()
        .with_service_from_env()
        .with_service_namespace_from_env()
        .with_environment_from_env()
        .with_collector_id_from_env()
        .build()
        .config
    )
    assert cfg.endpoint == "127.0.0.1:4444"
    assert (cfg.service_name, cfg.service_version) == ("env-service", "2.0.0")
    assert (cfg.service_namespace, cfg.environment, cfg.collector_id) == ("ns", "dev", "c-1")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TELEMETRYFLOW_ENVIRONMENT": "a", "ENV": "b", "ENVIRONMENT": "c"}, "a"),
        ({"ENV": "b", "ENVIRONMENT": "c"}, "b"),
        ({"ENVIRONMENT": "c"}, "c"),
        ({}, "production"),
    ],
)
def test_environment_fallback_order(env: dict[str, str], expected: str) -> None:
    cfg = base().with_environ(env).with_environment_from_env().build().config
    assert cfg.environment == expected


def test_explicit_beats_env_regardless_of_call_order() -> None:
    env = {**ENV, "TELEMETRYFLOW_ENDPOINT": "127.0.0.1:1111"}
    early = base().with_endpoint("127.0.0.1:2222").with_environ(env).with_auto_configuration()
    late = (
        TelemetryFlowBuilder()
        .with_environ(env)
        .with_auto_configuration()
        .with_api_key(*KEY)
        .with_endpoint("127.0.0.1:2222")
    )
    for builder in (early, late):
        cfg = builder.build().config
        assert cfg.endpoint == "127.0.0.1:2222"
        assert cfg.sources["endpoint"] == "argument"
    assert late.build().config.credentials.key_id == KEY[0]


def test_telemetryflow_vars_beat_otel_vars_which_beat_defaults() -> None:
    env = {
        **ENV,
        "OTEL_SERVICE_NAME": "otel-name",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    cfg = TelemetryFlowBuilder().with_environ(env).with_auto_configuration().build().config
    assert cfg.service_name == "env-service"  # TELEMETRYFLOW_ wins
    assert cfg.endpoint == "http://127.0.0.1:4318"  # only OTEL_ set
    assert cfg.protocol is Protocol.HTTP
    assert cfg.sources["endpoint"] == "env:OTEL_EXPORTER_OTLP_ENDPOINT"
    assert cfg.sources["service_name"] == "env:TELEMETRYFLOW_SERVICE_NAME"
    assert cfg.sources["service_namespace"] == "default"


def test_standard_otel_variables() -> None:
    env = {
        **ENV,
        "OTEL_RESOURCE_ATTRIBUTES": "team=core,region=eu%2Dwest",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme,x-note=a%20b",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
        "OTEL_SDK_DISABLED": "true",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "TELEMETRYFLOW_ENDPOINT": "127.0.0.1:4317",
    }
    cfg = (
        TelemetryFlowBuilder()
        .with_environ(env)
        .with_auto_configuration()
        .with_custom_attribute("team", "explicit")
        .build()
        .config
    )
    assert dict(cfg.custom_attributes) == {"team": "explicit", "region": "eu-west"}
    assert dict(cfg.headers) == {"x-tenant": "acme", "x-note": "a b"}
    assert cfg.timeout == timedelta(milliseconds=2500)
    assert cfg.compression is False and cfg.sdk_disabled is True and cfg.insecure is True


def test_bad_optional_env_value_warns_and_uses_default(caplog: pytest.LogCaptureFixture) -> None:
    env = {**ENV, "OTEL_EXPORTER_OTLP_TIMEOUT": "soon", "OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}
    cfg = TelemetryFlowBuilder().with_environ(env).with_auto_configuration().build().config
    assert cfg.timeout == timedelta(seconds=10) and cfg.compression is True
    assert "OTEL_EXPORTER_OTLP_TIMEOUT" in caplog.text


def test_bad_required_env_value_names_the_variable_not_the_secret() -> None:
    env = {**ENV, "TELEMETRYFLOW_API_KEY_SECRET": "leaky-secret-without-prefix"}
    with pytest.raises(BuilderError) as info:
        TelemetryFlowBuilder().with_environ(env).with_auto_configuration().build()
    assert "key_secret" in str(info.value)
    assert "TELEMETRYFLOW_API_KEY_SECRET" in str(info.value)
    assert "leaky-secret" not in str(info.value)


def test_percent_encoded_control_characters_in_env_headers_are_rejected() -> None:
    env = {**ENV, "OTEL_EXPORTER_OTLP_HEADERS": "x-a=1%0D%0AEvil%3A%201"}
    with pytest.raises(BuilderError) as info:
        TelemetryFlowBuilder().with_environ(env).with_auto_configuration().build()
    assert "headers" in str(info.value) and "Evil" not in str(info.value)


def test_invalid_env_endpoint_is_an_error_naming_the_variable() -> None:
    env = {**ENV, "TELEMETRYFLOW_ENDPOINT": "not a host"}
    with pytest.raises(BuilderError) as info:
        TelemetryFlowBuilder().with_environ(env).with_auto_configuration().build()
    assert "TELEMETRYFLOW_ENDPOINT" in str(info.value)


def test_describe_shows_sources_and_masks_the_secret() -> None:
    env = {**ENV, "OTEL_EXPORTER_OTLP_HEADERS": "x-token=hdr-secret"}
    text = (
        TelemetryFlowBuilder()
        .with_environ(env)
        .with_auto_configuration()
        .with_endpoint("127.0.0.1:4317")
        .describe()
    )
    assert "env:TELEMETRYFLOW_SERVICE_NAME" in text
    assert "argument" in text and "default" in text
    assert "tfs_env_secret_abc" not in text and "hdr-secret" not in text
    assert "tfk_…" in text
