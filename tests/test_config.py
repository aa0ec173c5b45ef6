"""TelemetryConfig: a frozen value object whose validation lists every problem."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from telemetryflow.domain.config import ConfigError, Protocol, TelemetryConfig
from telemetryflow.domain.credentials import Credentials

CREDS = Credentials("tfk_cfg", "tfs_cfg_secret_value")


def make(**overrides: object) -> TelemetryConfig:
    values: dict[str, object] = {
        "credentials": CREDS,
        "endpoint": "collector.example.com:4317",
        "service_name": "svc",
    }
    values.update(overrides)
    return TelemetryConfig(**values)  # type: ignore[arg-type]


def test_documented_constructor_and_defaults() -> None:
    cfg = TelemetryConfig(
        credentials=CREDS, endpoint="collector.example.com:4317", service_name="svc"
    )
    assert cfg.protocol is Protocol.GRPC
    assert cfg.service_version == "1.0.0"
    assert cfg.service_namespace == "telemetryflow"
    assert cfg.environment == "production"
    assert cfg.uses_tls
    assert cfg.signals_enabled == ["metrics", "logs", "traces"]


def test_frozen_and_with_changes_returns_a_validated_copy() -> None:
    cfg = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.service_name = "other"  # type: ignore[misc]
    changed = cfg.with_changes(service_name="other")
    assert changed.service_name == "other" and cfg.service_name == "svc"
    with pytest.raises(ConfigError):
        cfg.with_changes(max_retries=-1)


def test_custom_attributes_cannot_be_mutated_through_the_config() -> None:
    source = {"team": "a"}
    cfg = make(custom_attributes=source)
    source["team"] = "b"
    assert cfg.custom_attributes["team"] == "a"
    with pytest.raises(TypeError):
        cfg.custom_attributes["x"] = "y"  # type: ignore[index]


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        make(
            service_name="",
            endpoint="no-port",
            max_retries=-3,
            timeout=timedelta(0),
            batch_max_size=0,
        )
    fields = {p.split(":", 1)[0] for p in info.value.problems}
    assert {"service_name", "endpoint", "max_retries", "timeout", "batch_max_size"} <= fields
    assert info.value.field == "service_name"


@pytest.mark.parametrize(
    "endpoint",
    ["", "ftp://x:1", "http://user:pw@host:4318", "host:notaport", "host:4317/path", "a b:1"],
)
def test_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(ConfigError) as info:
        make(endpoint=endpoint)
    assert info.value.field == "endpoint"
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(
    ("endpoint", "insecure", "tls"),
    [
        ("host:4317", False, True),
        ("127.0.0.1:4317", True, False),
        ("https://host", False, True),
        ("https://host:4318", True, True),
        ("http://localhost:4318", False, False),
    ],
)
def test_tls_follows_insecure_and_scheme(endpoint: str, insecure: bool, tls: bool) -> None:
    assert make(endpoint=endpoint, insecure=insecure).uses_tls is tls


def test_plaintext_credentials_to_a_remote_host_need_an_explicit_opt_in() -> None:
    with pytest.raises(ConfigError) as info:
        make(endpoint="collector.example.com:4317", insecure=True)
    assert info.value.field == "insecure"
    assert make(
        endpoint="collector.example.com:4317", insecure=True, allow_plaintext_credentials=True
    ).insecure
    assert make(endpoint="[::1]:4317", insecure=True).insecure


def test_header_injection_is_rejected_without_echoing_the_value() -> None:
    with pytest.raises(ConfigError) as info:
        make(headers={"x-tenant": "a\r\nEvil: yes"})
    assert "Evil" not in str(info.value)
    with pytest.raises(ConfigError):
        make(collector_id="col\n1")
    with pytest.raises(ConfigError):
        make(headers={"bad header": "v"})


def test_repr_hides_secret_and_header_values() -> None:
    cfg = make(headers={"x-api-token": "hdr-secret-value"})
    text = repr(cfg) + cfg.describe()
    assert "tfs_cfg_secret_value" not in text
    assert "hdr-secret-value" not in text


def test_rate_limit_and_queue_relationships() -> None:
    with pytest.raises(ConfigError):
        make(rate_limit=0)
    with pytest.raises(ConfigError):
        make(batch_max_size=100, max_queue_size=10)
    assert make(rate_limit=60).rate_limit == 60
