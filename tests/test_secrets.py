"""The key secret never leaks: a matrix of failures, everything captured, zero hits.

Each scenario drives a client (or a configuration) into one kind of trouble while
every log record at DEBUG, the process's stderr (gRPC's C core writes there), every
exception, the reprs of every object, ``get_status()``/``health()`` and everything
the receiver got (except the authentication headers themselves) are collected; the
secret, with or without its prefix, percent-encoded or not, must appear nowhere.
"""

from __future__ import annotations

import json
import logging
import socket
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import grpc
import pytest

from _support import KEY_ID, KEY_SECRET, builder_for
from telemetryflow import (
    ConfigError,
    Credentials,
    CredentialsError,
    TelemetryFlowBuilder,
    TelemetryFlowClient,
    TelemetryFlowError,
)
from telemetryflow._recording.diagnostics import reset_throttle
from telemetryflow.testing import Fault, OTLPReceiver, TLSFiles

AUTH_HEADERS = frozenset({"authorization", "x-telemetryflow-key-secret"})
FORMS = (KEY_SECRET, KEY_SECRET[len("tfs_") :], quote(KEY_SECRET, safe=""))
MASKED_ID = "tfk_…0001"


@dataclass
class Evidence:
    """Everything a scenario produced that a person or a backend could read."""

    texts: list[tuple[str, str]] = field(default_factory=list)

    def add(self, label: str, value: object) -> None:
        self.texts.append((label, value if isinstance(value, str) else repr(value)))

    def error(self, label: str, exc: BaseException) -> None:
        self.add(f"{label}: str", str(exc))
        self.add(f"{label}: repr", repr(exc))
        self.add(f"{label}: traceback", "".join(traceback.format_exception(exc)))
        for name in ("field", "problems"):
            if hasattr(exc, name):
                self.add(f"{label}: {name}", getattr(exc, name))

    def client(self, label: str, client: TelemetryFlowClient) -> None:
        self.add(f"{label}: repr", repr(client))
        self.add(f"{label}: str", str(client))
        self.add(f"{label}: config repr", repr(client.config))
        self.add(f"{label}: config describe", client.config.describe())
        self.add(f"{label}: credentials", str(client.config.credentials))
        self.add(f"{label}: status", json.dumps(client.get_status(), default=str))
        self.add(f"{label}: health", json.dumps(client.health(), default=str))

    def receiver(self, receiver: OTLPReceiver) -> None:
        for request in receiver.requests:
            headers = {k: v for k, v in request.headers.items() if k not in AUTH_HEADERS}
            self.add(f"received {request.signal} headers", headers)
            wire = request.message.SerializeToString()
            self.add(f"received {request.signal}", wire.decode("latin-1"))

    def leaks(self) -> list[str]:
        return [label for label, text in self.texts for form in FORMS if form in text]


@pytest.fixture
def evidence(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> Iterator[Evidence]:
    """Collects; after the test, adds logs and stderr and asserts zero occurrences."""
    reset_throttle()
    caplog.set_level(logging.DEBUG)
    found = Evidence()
    yield found
    for record in caplog.records:
        found.add(f"log {record.name}", record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            found.error(f"log {record.name} exc_info", record.exc_info[1])
    out, err = capfd.readouterr()
    found.add("stdout", out)
    found.add("stderr", err)
    assert found.texts, "nothing was captured"
    assert found.leaks() == []


def exercise(
    client: TelemetryFlowClient, evidence: Evidence, flush: float = 3.0
) -> TelemetryFlowClient:
    """Record every signal, including data that carries the secret by accident."""
    evidence.client("before", client)
    with client:
        client.increment_counter("requests", 1, {"route": "/pay"})
        client.log_info(f"configured with {KEY_ID}:{KEY_SECRET}", {"token": KEY_SECRET})
        try:
            with client.span("checkout", attributes={"api_key": KEY_SECRET}):
                raise PermissionError(f"rejected Authorization: Bearer {KEY_SECRET}")
        except PermissionError:
            pass
        client.flush(flush)
        evidence.client("running", client)
    evidence.client("stopped", client)
    return client


def test_the_evidence_check_finds_every_form_of_the_secret() -> None:
    found = Evidence()
    found.add("plain", f"x {KEY_SECRET} y")
    found.add("bare", KEY_SECRET[len("tfs_") :])
    found.add("encoded", {"h": quote(KEY_SECRET, safe="")})
    found.add("clean", f"{MASKED_ID} [REDACTED]")
    assert sorted(set(found.leaks())) == ["bare", "encoded", "plain"]


# -- the collector refuses or fails ------------------------------------------------------
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_auth_failure_with_a_body_echoing_the_token(
    receiver: OTLPReceiver, evidence: Evidence, protocol: str
) -> None:
    echo = f"invalid credentials Bearer {KEY_ID}:{KEY_SECRET}"
    fault = Fault(grpc.StatusCode.UNAUTHENTICATED, 401, body=echo.encode(), message=echo)
    receiver.inject(fault, times=50)
    exercise(builder_for(receiver, protocol).build(), evidence)
    assert receiver.attempts > 0 and receiver.requests == []
    assert any("401" in text or "UNAUTHENTICATED" in text for _, text in evidence.texts)
    evidence.receiver(receiver)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_forbidden_and_server_errors_echoing_the_token(
    receiver: OTLPReceiver, evidence: Evidence, protocol: str
) -> None:
    echo = f"key {KEY_SECRET} is not allowed"
    body = echo.encode()
    denied = Fault(grpc.StatusCode.PERMISSION_DENIED, 403, body=body, message=echo)
    receiver.inject(denied, times=3)
    busy = Fault(grpc.StatusCode.UNAVAILABLE, 503, retry_after="0", body=body, message=echo)
    receiver.inject(busy, times=3)
    client = exercise(builder_for(receiver, protocol).build(), evidence)
    evidence.receiver(receiver)
    # The refusals were really met: the failures are counted (and their bodies unlogged).
    assert client.get_status()["export_requests_failed"] >= 3


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_accepted_exports_carry_no_secret_outside_auth_headers(
    receiver: OTLPReceiver, evidence: Evidence, protocol: str
) -> None:
    exercise(builder_for(receiver, protocol).with_collector_id("col-1").build(), evidence)
    assert receiver.wait_for_spans(1) and receiver.wait_for_logs(1)
    evidence.receiver(receiver)
    assert all(KEY_SECRET in r.headers["x-telemetryflow-key-secret"] for r in receiver.requests)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_connection_refused(evidence: Evidence, protocol: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"127.0.0.1:{port}" if protocol == "grpc" else f"http://127.0.0.1:{port}"
    builder = (
        TelemetryFlowBuilder()
        .with_api_key(KEY_ID, KEY_SECRET)
        .with_service("leaks")
        .with_endpoint(endpoint)
        .with_insecure()
        .with_protocol(protocol)  # type: ignore[arg-type]
        .with_global_providers(False)
        .with_retry(True, max_retries=1, backoff=timedelta(milliseconds=10))
        .with_timeout(timedelta(seconds=1))
    )
    client = exercise(builder.build(), evidence, flush=1.5)
    assert client.get_status()["spans_sent"] == 0
    assert client.health()["last_error"] is not None


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_tls_failure(tls_files: TLSFiles, evidence: Evidence, protocol: str) -> None:
    with OTLPReceiver(tls=tls_files) as receiver:
        client = (
            builder_for(receiver, protocol)
            .with_insecure(False)
            .with_tls(ca_file=str(tls_files.untrusted_ca_cert))
            .with_retry(True, max_retries=1, backoff=timedelta(milliseconds=10))
            .build()
        )
        exercise(client, evidence, flush=2.0)
        assert receiver.requests == []


# -- configuration -----------------------------------------------------------------------
MALFORMED_ENV: list[dict[str, str]] = [
    {"TELEMETRYFLOW_API_KEY_SECRET": f"{KEY_SECRET}\r\nX-Injected: 1"},
    {"TELEMETRYFLOW_API_KEY_SECRET": f"{KEY_SECRET}\x00"},
    {"TELEMETRYFLOW_API_KEY_SECRET": f"{KEY_SECRET} trailing words"},
    {"TELEMETRYFLOW_API_KEY_SECRET": KEY_SECRET[len("tfs_") :]},  # prefix missing
    {"TELEMETRYFLOW_API_KEY_ID": KEY_SECRET, "TELEMETRYFLOW_API_KEY_SECRET": KEY_ID},  # swapped
    {"TELEMETRYFLOW_API_KEY_ID": f"{KEY_ID}%0d%0a{KEY_SECRET}"},
    {"OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{KEY_SECRET}%0D%0AX-Evil%3A1"},
    {"OTEL_EXPORTER_OTLP_HEADERS": f"x-key={quote(KEY_SECRET)}%00"},
    {"OTEL_EXPORTER_OTLP_HEADERS": f"no-equals-sign-{KEY_SECRET}"},
    {"OTEL_EXPORTER_OTLP_HEADERS": f"bad%0Aname={KEY_SECRET}"},
    {"TELEMETRYFLOW_COLLECTOR_ID": f"col\n{KEY_SECRET}"},
    {"TELEMETRYFLOW_ENDPOINT": f"https://user:{KEY_SECRET}@collector.example:4317"},
    {"TELEMETRYFLOW_ENDPOINT": f"collector.example:{KEY_SECRET}"},
    {"TELEMETRYFLOW_ENDPOINT": f"collector example {KEY_SECRET}"},
    {"OTEL_EXPORTER_OTLP_INSECURE": KEY_SECRET},
    {"OTEL_EXPORTER_OTLP_PROTOCOL": KEY_SECRET},
    {"OTEL_EXPORTER_OTLP_COMPRESSION": KEY_SECRET},
    {"OTEL_SDK_DISABLED": KEY_SECRET},
    {"OTEL_EXPORTER_OTLP_TIMEOUT": KEY_SECRET},
    {"OTEL_EXPORTER_OTLP_TIMEOUT": f"{KEY_SECRET[:-2]}e3"},
]


def _env_builder(extra: dict[str, str]) -> TelemetryFlowBuilder:
    environ = {
        "TELEMETRYFLOW_API_KEY_ID": KEY_ID,
        "TELEMETRYFLOW_API_KEY_SECRET": KEY_SECRET,
        "TELEMETRYFLOW_SERVICE_NAME": "leaks",
        "TELEMETRYFLOW_ENDPOINT": "127.0.0.1:4317",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        **extra,
    }
    return TelemetryFlowBuilder().with_environ(environ).with_auto_configuration()


@pytest.mark.parametrize("environ", MALFORMED_ENV, ids=lambda e: "+".join(e))
def test_malformed_environment_values(environ: dict[str, str], evidence: Evidence) -> None:
    builder = _env_builder(environ)
    evidence.add("builder repr", repr(builder))
    failure: ConfigError | None = None
    try:
        config = builder.build_config()
    except ConfigError as exc:
        failure = exc
    if failure is not None:
        evidence.error("build_config", failure)
        assert failure.field, "the error names the field or variable"
        return
    evidence.add("config repr", repr(config))
    evidence.add("describe", config.describe())


def test_malformed_optional_number_is_not_echoed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _env_builder({"OTEL_EXPORTER_OTLP_TIMEOUT": KEY_SECRET}).build_config()
    messages = [record.getMessage() for record in caplog.records]
    assert any("OTEL_EXPORTER_OTLP_TIMEOUT" in m for m in messages)
    assert not any(KEY_SECRET in m for m in messages)


BAD_CALLS: list[Callable[[TelemetryFlowBuilder], object]] = [
    lambda b: b.with_api_key(KEY_ID, f"{KEY_SECRET}\r\nX-Evil: 1"),
    lambda b: b.with_api_key(KEY_ID, f" {KEY_SECRET}"),
    lambda b: b.with_api_key(KEY_SECRET, KEY_ID),
    lambda b: b.with_api_key(KEY_ID, KEY_SECRET[len("tfs_") :]),
    lambda b: b.with_api_key(KEY_ID, KEY_SECRET).with_headers({"x-k": f"{KEY_SECRET}\n"}).build(),
    lambda b: b.with_api_key(KEY_ID, KEY_SECRET).with_headers({f"{KEY_SECRET}\n": "v"}).build(),
    lambda b: b.with_api_key(KEY_ID, KEY_SECRET).with_collector_id(f"c\r{KEY_SECRET}").build(),
    lambda b: b.with_api_key(KEY_ID, KEY_SECRET).with_endpoint("collector.example:4317")
    .with_insecure().build(),
    lambda b: b.with_api_key(KEY_ID, KEY_SECRET).with_endpoint(
        f"https://u:{KEY_SECRET}@collector.example"
    ).build(),
    lambda b: b.with_api_key(KEY_ID, KEY_SECRET).with_service("").build(),
]  # fmt: skip


@pytest.mark.parametrize("call", BAD_CALLS, ids=[str(i) for i in range(len(BAD_CALLS))])
def test_bad_configuration(
    call: Callable[[TelemetryFlowBuilder], object], evidence: Evidence
) -> None:
    builder = TelemetryFlowBuilder().with_service("leaks").with_global_providers(False)
    with pytest.raises((ConfigError, CredentialsError)) as info:
        call(builder)
    evidence.error("bad configuration", info.value)
    evidence.add("builder repr", repr(builder))


def test_credentials_and_config_never_show_the_secret(evidence: Evidence) -> None:
    credentials = Credentials(KEY_ID, KEY_SECRET)
    assert str(credentials) == f"Credentials(key_id='{MASKED_ID}', key_secret='***')"
    evidence.add("credentials repr", repr(credentials))
    evidence.add("credentials format", f"{credentials} {credentials!r} {credentials!s}")
    evidence.add("credentials masked", credentials.masked_key_id)
    builder = (
        TelemetryFlowBuilder()
        .with_api_key(KEY_ID, KEY_SECRET)
        .with_service("leaks")
        .with_endpoint("127.0.0.1:4317")
        .with_insecure()
        .with_headers({"x-extra": KEY_SECRET})
        .with_global_providers(False)
    )
    evidence.add("builder repr", repr(builder))
    evidence.add("builder describe", builder.describe())
    config = builder.build_config()
    evidence.add("config repr", repr(config))
    evidence.add("config str", str(config))
    evidence.add("config describe", config.describe())
    evidence.add("config sources", dict(config.sources))
    client = TelemetryFlowClient(config)
    evidence.client("new client", client)
    assert client.get_status()["key_id"] == MASKED_ID
    try:
        client.flush()
    except TelemetryFlowError as exc:
        evidence.error("flush before initialize", exc)


def test_initialization_failure(evidence: Evidence, tmp_path: Any) -> None:
    missing = tmp_path / "missing-ca.pem"
    client = (
        TelemetryFlowBuilder()
        .with_api_key(KEY_ID, KEY_SECRET)
        .with_service("leaks")
        .with_endpoint("127.0.0.1:4317")
        .with_tls(ca_file=str(missing))
        .with_global_providers(False)
        .build()
    )
    with pytest.raises(TelemetryFlowError) as info:
        client.initialize()
    evidence.error("initialize", info.value)
    evidence.client("failed client", client)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_partial_success_message_echoing_the_token(
    receiver: OTLPReceiver, evidence: Evidence, protocol: str
) -> None:
    """OpenTelemetry wants the partial-success message logged; it is server text."""
    receiver.partial_success(1, f"rejected: token {KEY_SECRET} for {KEY_ID}")
    exercise(builder_for(receiver, protocol).build(), evidence)
    assert any("partial_rejection" in text for _, text in evidence.texts)
    evidence.receiver(receiver)
