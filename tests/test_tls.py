"""TLS by default, verification always, custom CA and mutual TLS, on gRPC and HTTP.

Certificates are generated per test: a trusted CA, an unrelated (untrusted) one, and
a server certificate for the wrong host name. Every failing case also proves the
receiver recorded nothing, so "no error" can never hide "sent in the clear".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _support import KEY_ID, KEY_SECRET, builder_for
from telemetryflow import ConfigError, TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow._recording.diagnostics import reset_throttle
from telemetryflow.testing import OTLPReceiver, TLSFiles, make_test_certificates

PROTOCOLS = ["grpc", "http"]


def _endpoint(receiver: OTLPReceiver, protocol: str, host: str = "127.0.0.1") -> str:
    if protocol == "grpc":
        return f"{host}:{receiver.grpc_port}"
    return f"https://{host}:{receiver.http_port}"


def _client(
    receiver: OTLPReceiver,
    protocol: str,
    *,
    host: str = "127.0.0.1",
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> TelemetryFlowClient:
    """TLS on (the default), no retries: a failed handshake is final and quick."""
    return (
        builder_for(receiver, protocol)
        .with_insecure(False)
        .with_endpoint(_endpoint(receiver, protocol, host))
        .with_tls(
            ca_file=str(ca) if ca else None,
            client_cert_file=str(cert) if cert else None,
            client_key_file=str(key) if key else None,
        )
        .with_retry(False)
        .build()
    )


def _delivers(client: TelemetryFlowClient, receiver: OTLPReceiver) -> bool:
    """Send one span; True if it arrived, False if the export failed (and nothing did)."""
    with client:
        with client.span("tls-probe"):
            pass
        client.flush(3)
        failed = client.health()["last_error"] is not None
    if failed:
        assert receiver.requests == []
        return False
    return receiver.wait_for_spans(1, timeout=2)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_trusted_ca(tls_files: TLSFiles, protocol: str) -> None:
    with OTLPReceiver(tls=tls_files) as receiver:
        assert _delivers(_client(receiver, protocol, ca=tls_files.ca_cert), receiver)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_untrusted_ca_is_refused(tls_files: TLSFiles, protocol: str) -> None:
    with OTLPReceiver(tls=tls_files) as receiver:
        client = _client(receiver, protocol, ca=tls_files.untrusted_ca_cert)
        assert not _delivers(client, receiver)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_system_roots_do_not_trust_a_private_ca(tls_files: TLSFiles, protocol: str) -> None:
    with OTLPReceiver(tls=tls_files) as receiver:
        assert not _delivers(_client(receiver, protocol), receiver)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_right_host_name_is_accepted(tls_files: TLSFiles, protocol: str) -> None:
    """The control for the next test: the same dial by name works when the name fits."""
    with OTLPReceiver(tls=tls_files) as receiver:
        client = _client(receiver, protocol, host="localhost", ca=tls_files.ca_cert)
        assert _delivers(client, receiver)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_host_name_is_refused(tmp_path: Path, protocol: str) -> None:
    wrong = make_test_certificates(tmp_path / "wrong", hostname="wrong.example")
    with OTLPReceiver(tls=wrong) as receiver:
        client = _client(receiver, protocol, host="localhost", ca=wrong.ca_cert)
        assert not _delivers(client, receiver)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mutual_tls_with_a_client_certificate(tls_files: TLSFiles, protocol: str) -> None:
    with OTLPReceiver(tls=tls_files, require_client_cert=True) as receiver:
        client = _client(
            receiver,
            protocol,
            ca=tls_files.ca_cert,
            cert=tls_files.client_cert,
            key=tls_files.client_key,
        )
        assert _delivers(client, receiver)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mutual_tls_without_a_client_certificate_is_refused(
    tls_files: TLSFiles, protocol: str
) -> None:
    with OTLPReceiver(tls=tls_files, require_client_cert=True) as receiver:
        assert not _delivers(_client(receiver, protocol, ca=tls_files.ca_cert), receiver)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mutual_tls_with_an_untrusted_client_certificate_is_refused(
    tls_files: TLSFiles, protocol: str
) -> None:
    with OTLPReceiver(tls=tls_files, require_client_cert=True) as receiver:
        client = _client(
            receiver,
            protocol,
            ca=tls_files.ca_cert,
            cert=tls_files.untrusted_cert,
            key=tls_files.untrusted_key,
        )
        assert not _delivers(client, receiver)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_https_url_means_tls_even_when_insecure_is_asked(
    tls_files: TLSFiles, protocol: str
) -> None:
    with OTLPReceiver(tls=tls_files) as receiver:
        url = (
            f"https://127.0.0.1:{receiver.grpc_port if protocol == 'grpc' else receiver.http_port}"
        )
        client = (
            builder_for(receiver, protocol)
            .with_insecure(True)
            .with_endpoint(url)
            .with_tls(ca_file=str(tls_files.ca_cert))
            .with_retry(False)
            .build()
        )
        assert client.config.uses_tls
        assert _delivers(client, receiver)


def test_https_url_with_insecure_does_not_skip_verification(tls_files: TLSFiles) -> None:
    with OTLPReceiver(tls=tls_files) as receiver:
        client = (
            builder_for(receiver, "http")
            .with_insecure(True)
            .with_tls(ca_file=str(tls_files.untrusted_ca_cert))
            .with_retry(False)
            .build()
        )
        assert not _delivers(client, receiver)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_explicit_tls_to_a_plaintext_collector_gets_nothing(
    receiver: OTLPReceiver, protocol: str
) -> None:
    endpoint = receiver.grpc_endpoint if protocol == "grpc" else f"127.0.0.1:{receiver.http_port}"
    client = (
        builder_for(receiver, protocol)
        .with_endpoint(endpoint)
        .with_insecure(False)
        .with_retry(False)
        .build()
    )
    assert client.config.uses_tls
    assert not _delivers(client, receiver)
    assert receiver.requests == []


def test_insecure_reaches_a_loopback_plaintext_collector(receiver: OTLPReceiver) -> None:
    client = builder_for(receiver, "grpc").build()
    assert not client.config.uses_tls
    assert _delivers(client, receiver)


# -- configuration ---------------------------------------------------------------------
def _remote(endpoint: str) -> TelemetryFlowBuilder:
    return (
        TelemetryFlowBuilder()
        .with_api_key(KEY_ID, KEY_SECRET)
        .with_service("tls")
        .with_endpoint(endpoint)
        .with_global_providers(False)
    )


@pytest.mark.parametrize(
    "endpoint", ["collector.example:4317", "10.0.0.5:4317", "http://collector.example:4318"]
)
def test_plaintext_credentials_to_a_remote_host_are_a_configuration_error(endpoint: str) -> None:
    with pytest.raises(ConfigError) as info:
        _remote(endpoint).with_insecure().build_config()
    assert info.value.field == "insecure"
    assert "plaintext" in str(info.value) and KEY_SECRET not in str(info.value)
    config = _remote(endpoint).with_insecure().with_plaintext_credentials_allowed().build_config()
    assert not config.uses_tls


@pytest.mark.parametrize(
    "endpoint", ["localhost:4317", "127.0.0.1:4317", "[::1]:4317", "http://127.0.0.2:4318"]
)
def test_plaintext_to_loopback_is_allowed(endpoint: str) -> None:
    assert not _remote(endpoint).with_insecure().build_config().uses_tls


def test_remote_host_defaults_to_tls() -> None:
    assert _remote("collector.example:4317").build_config().uses_tls
    assert _remote("10.0.0.5:4317").build_config().uses_tls
    assert _remote("https://collector.example").with_insecure().build_config().uses_tls


@pytest.mark.parametrize("endpoint", ["127.0.0.1:4317", "[::1]:4317", "localhost:4318"])
def test_loopback_host_port_defaults_to_plaintext(endpoint: str) -> None:
    assert not _remote(endpoint).build_config().uses_tls


@pytest.mark.parametrize("endpoint", ["127.0.0.1:4317", "localhost:4317"])
def test_tls_on_loopback_when_asked(endpoint: str, tls_files: TLSFiles) -> None:
    assert _remote(endpoint).with_insecure(False).build_config().uses_tls
    assert _remote(endpoint).with_tls().build_config().uses_tls
    assert _remote(endpoint).with_tls(ca_file=str(tls_files.ca_cert)).build_config().uses_tls
    assert _remote(f"https://{endpoint}").build_config().uses_tls


def test_insecure_environment_variable_still_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEMETRYFLOW_INSECURE", "false")
    builder = _remote("127.0.0.1:4317").with_auto_configuration()
    assert builder.build_config().uses_tls
    monkeypatch.setenv("TELEMETRYFLOW_INSECURE", "true")
    assert not _remote("127.0.0.1:4317").with_auto_configuration().build_config().uses_tls


# -- the local collector without TLS flags; mismatches explained --------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_local_collector_reached_with_host_port_and_no_tls_flags(
    tmp_path: Path, protocol: str
) -> None:
    from telemetryflow.collector import Collector, CollectorConfig

    config = CollectorConfig(db_path=str(tmp_path / "c.db"), grpc_port=0, http_port=0, auth=False)
    with Collector(config) as collector:
        port = collector.grpc_port if protocol == "grpc" else collector.http_port
        builder = (
            TelemetryFlowBuilder()
            .with_api_key(KEY_ID, KEY_SECRET)
            .with_service("local-no-flags")
            .with_endpoint(f"127.0.0.1:{port}")
            .with_global_providers(False)
        )
        builder = builder.with_http() if protocol == "http" else builder.with_grpc()
        client = builder.build()
        assert not client.config.uses_tls
        with client:
            with client.span("reached-the-local-collector"):
                pass
            client.flush(10)
            assert client.health()["last_error"] is None
        with collector.store.reader() as db:
            names = [row[0] for row in db.execute("SELECT name FROM spans")]
    assert names == ["reached-the-local-collector"]


def _fix_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "telemetryflow" and "TELEMETRYFLOW_INSECURE" in r.getMessage()
    ]


def _send_a_few(client: TelemetryFlowClient) -> None:
    with client:
        for _ in range(3):
            with client.span("mismatch"):
                pass
            client.flush(2)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_client_to_a_plaintext_collector_says_how_to_fix_it_once(
    receiver: OTLPReceiver, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    reset_throttle()
    port = receiver.grpc_port if protocol == "grpc" else receiver.http_port
    client = (
        builder_for(receiver, protocol)
        .with_insecure(False)
        .with_endpoint(f"127.0.0.1:{port}")
        .with_retry(True, max_retries=2)
        .build()
    )
    _send_a_few(client)
    messages = _fix_messages(caplog)
    assert len(messages) == 1, messages
    assert "plaintext" in messages[0] and "with_insecure()" in messages[0]
    assert KEY_SECRET not in messages[0]
    assert receiver.requests == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_plaintext_client_to_a_tls_collector_says_how_to_fix_it_once(
    tls_files: TLSFiles, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    reset_throttle()
    with OTLPReceiver(tls=tls_files) as receiver:
        port = receiver.grpc_port if protocol == "grpc" else receiver.http_port
        client = (
            builder_for(receiver, protocol)
            .with_insecure(True)
            .with_endpoint(f"127.0.0.1:{port}")
            .with_retry(True, max_retries=2)
            .build()
        )
        _send_a_few(client)
        assert receiver.requests == []
    messages = _fix_messages(caplog)
    assert len(messages) == 1, messages
    assert "expects TLS" in messages[0] and "with_insecure()" in messages[0]


def test_client_certificate_needs_its_key(tls_files: TLSFiles) -> None:
    with pytest.raises(ConfigError) as info:
        _remote("collector.example:4317").with_tls(
            client_cert_file=str(tls_files.client_cert)
        ).build_config()
    assert info.value.field == "client_cert_file"
