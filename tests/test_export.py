"""Every signal over OTLP gRPC and HTTP reaches a real receiver, with every option wired."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from _support import KEY_ID, KEY_SECRET, builder_for
from telemetryflow import TelemetryFlowBuilder
from telemetryflow.application.commands import SeverityLevel, SpanKind
from telemetryflow.testing import OTLPReceiver

PROTOCOLS = ["grpc", "http"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_all_signals_arrive_with_resource_and_auth(receiver: OTLPReceiver, protocol: str) -> None:
    client = (
        builder_for(receiver, protocol)
        .with_service_namespace("shop")
        .with_environment("staging")
        .with_collector_id("col-42")
        .with_custom_attribute("team", "payments")
        .build()
    )
    with client:
        client.increment_counter("orders.created", 2, {"plan": "pro"})
        client.record_gauge("queue.depth", 7, {"queue": "emails"})
        client.record_histogram("http.server.duration", 0.25, unit="s")
        client.log_warn("disk almost full", {"disk": "/var"})
        with client.span("checkout", SpanKind.SERVER, {"order.id": 17}):
            pass
    assert receiver.wait_for_spans(1) and receiver.wait_for_logs(1)
    for signal in ("traces", "metrics", "logs"):
        resource = receiver.resource_attributes(signal)  # type: ignore[arg-type]
        assert resource["service.name"] == "test-service"
        assert resource["service.version"] == "9.9.9"
        assert resource["service.namespace"] == "shop"
        assert resource["deployment.environment.name"] == "staging"
        assert resource["team"] == "payments"
        assert resource["telemetry.sdk.language"] == "python"
        assert resource["telemetry.sdk.name"] == "opentelemetry"
        assert resource["telemetry.distro.name"] == "telemetryflow"
    for request in receiver.requests:
        assert request.transport == protocol
        assert request.headers["authorization"] == f"Bearer {KEY_ID}:{KEY_SECRET}"
        assert request.headers["x-telemetryflow-key-id"] == KEY_ID
        assert request.headers["x-telemetryflow-key-secret"] == KEY_SECRET
        assert request.headers["x-telemetryflow-collector-id"] == "col-42"
    span = receiver.spans()[0]
    assert span.name == "checkout" and span.span.kind == 2  # SPAN_KIND_SERVER
    assert span.attributes == {"order.id": 17}
    log = receiver.logs()[0]
    assert log.body == "disk almost full" and log.log.severity_text == "WARN"
    assert log.log.severity_number == 13 and log.attributes == {"disk": "/var"}
    counter = receiver.find_metric("orders.created")
    assert counter.sum.data_points[0].as_int == 2 and counter.sum.is_monotonic
    gauge = receiver.find_metric("queue.depth")
    assert gauge.gauge.data_points[0].as_int == 7
    hist = receiver.find_metric("http.server.duration")
    assert hist.unit == "s" and hist.histogram.data_points[0].sum == 0.25


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_compression_on_and_off(receiver: OTLPReceiver, protocol: str) -> None:
    for enabled in (True, False):
        receiver.clear()
        with builder_for(receiver, protocol).with_compression(enabled).build() as client:
            client.log_info("x" * 2000)
        assert receiver.wait_for_logs(1)
        assert {r.compressed for r in receiver.requests} == {enabled}


def test_http_paths_and_full_url_endpoint(receiver: OTLPReceiver) -> None:
    url = receiver.http_endpoint  # http://127.0.0.1:PORT
    with builder_for(receiver, "http").with_endpoint(url).build() as client:
        client.increment_counter("c")
        client.log_info("l")
        client.start_span("never-ended")  # left open: not exported
        with client.span("t"):
            pass
    paths = {r.path for r in receiver.requests}
    assert paths == {"/v1/traces", "/v1/metrics", "/v1/logs"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_counter_sums_and_gauge_keeps_last_value(receiver: OTLPReceiver, protocol: str) -> None:
    with builder_for(receiver, protocol).build() as client:
        for _ in range(5):
            client.increment_counter("hits", attributes={"route": "/a"})
        client.increment_counter("hits", 10, {"route": "/b"})
        client.increment_counter("hits", -4, {"route": "/a"})  # rejected, not raised
        for value in (3, 9, 4):
            client.record_gauge("temp", value, {"room": "1"})
    counter = receiver.find_metric("hits")
    by_route = {p.attributes[0].value.string_value: p.as_int for p in counter.sum.data_points}
    assert by_route == {"/a": 5, "/b": 10}
    assert receiver.find_metric("temp").gauge.data_points[0].as_int == 4


def test_span_ids_parenting_and_logs_inside_spans(receiver: OTLPReceiver) -> None:
    with builder_for(receiver).build() as client:
        with client.span("outer") as outer_id:
            inner_id = client.start_span("inner", SpanKind.CLIENT)
            client.add_span_event(inner_id, "query_executed", {"rows": 100})
            client.end_span(inner_id)
            client.log("inside", SeverityLevel.INFO)
            with client.span("nested") as nested_id:
                pass
        failing = client.start_span("failing")
        client.end_span(failing, error=ValueError("boom"))
    spans = {s.name: s.span for s in receiver.spans()}
    outer = spans["outer"]
    assert outer.span_id.hex() == outer_id
    assert spans["inner"].span_id.hex() == inner_id
    assert spans["nested"].span_id.hex() == nested_id
    for child in ("inner", "nested"):
        assert spans[child].parent_span_id == outer.span_id
        assert spans[child].trace_id == outer.trace_id
    assert spans["inner"].events[0].name == "query_executed"
    log = receiver.logs()[0].log
    assert log.trace_id == outer.trace_id and log.span_id == outer.span_id
    assert spans["failing"].status.code == 2  # STATUS_CODE_ERROR
    assert spans["failing"].events[0].name == "exception"
    assert not spans["failing"].parent_span_id


def test_exception_in_span_block_marks_error_and_propagates(receiver: OTLPReceiver) -> None:
    with builder_for(receiver).build() as client, pytest.raises(KeyError), client.span("work"):
        raise KeyError("missing")
    span = receiver.spans()[0]
    assert span.span.status.code == 2
    assert span.attributes["error.type"] == "KeyError"


@pytest.mark.parametrize("enabled", [True, False])
def test_exemplars_link_histograms_to_the_current_span(
    receiver: OTLPReceiver, enabled: bool
) -> None:
    client = builder_for(receiver).with_exemplars(enabled).build()
    with client, client.span("request") as span_id:
        client.record_histogram("latency", 0.5, "s")
    point = receiver.find_metric("latency").histogram.data_points[0]
    if enabled:
        assert len(point.exemplars) == 1
        assert point.exemplars[0].span_id.hex() == span_id
        assert point.exemplars[0].trace_id == receiver.spans()[0].span.trace_id
    else:
        assert len(point.exemplars) == 0


def test_disabled_signals_export_nothing(receiver: OTLPReceiver) -> None:
    with builder_for(receiver).with_metrics_only().build() as client:
        client.log_info("dropped")
        with client.span("dropped"):
            pass
        sid = client.start_span("x")
        client.end_span(sid)
        client.increment_counter("kept")
    assert {r.signal for r in receiver.requests} == {"metrics"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_batch_max_size_splits_requests(receiver: OTLPReceiver, protocol: str) -> None:
    with builder_for(receiver, protocol).with_batch_settings(max_size=10).build() as client:
        for i in range(35):
            with client.span(f"s{i}"):
                pass
    assert receiver.wait_for_spans(35)
    sizes = [
        sum(len(ss.spans) for rs in r.message.resource_spans for ss in rs.scope_spans)
        for r in receiver.requests
        if r.signal == "traces"
    ]
    assert max(sizes) <= 10 and sum(sizes) == 35


def test_batch_timeout_schedules_export_without_flush(receiver: OTLPReceiver) -> None:
    client = builder_for(receiver).with_batch_settings(timeout=timedelta(milliseconds=200)).build()
    with client:
        client.log_info("soon")
        assert receiver.wait_for_logs(1, timeout=3.0)
        client.increment_counter("periodic")
        assert receiver.wait_for_metric("periodic", timeout=3.0) is not None


def test_status_counts_what_was_exported(receiver: OTLPReceiver) -> None:
    client = builder_for(receiver).build()
    client.initialize()
    for _ in range(3):
        client.log_info("a")
    with client.span("s"):
        pass
    client.flush()
    status = client.get_status()
    assert status["logs_sent"] == 3 and status["spans_sent"] == 1
    assert status["metrics_sent"] == 0
    for key in (
        "initialized",
        "version",
        "service_name",
        "endpoint",
        "protocol",
        "signals_enabled",
        "uptime_seconds",
    ):
        assert key in status
    assert status["initialized"] is True and status["uptime_seconds"] >= 0
    client.shutdown()
    assert client.get_status()["initialized"] is False


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_with_a_test_ca(tmp_path: object, protocol: str) -> None:
    from telemetryflow.testing import make_test_certificates

    tls = make_test_certificates(tmp_path)  # type: ignore[arg-type]
    with OTLPReceiver(tls=tls) as server:
        port = server.grpc_port if protocol == "grpc" else server.http_port
        builder = (
            TelemetryFlowBuilder()
            .with_api_key(KEY_ID, KEY_SECRET)
            .with_service("tls")
            .with_endpoint(f"localhost:{port}")
            .with_protocol(protocol)  # type: ignore[arg-type]
            .with_tls(ca_file=str(tls.ca_cert))
            .with_global_providers(False)
            .with_retry(False)
        )
        with builder.build() as client:
            client.log_info("over tls")
        assert server.wait_for_logs(1)
        # The untrusted CA is refused: nothing arrives, the failure is counted.
        server.clear()
        untrusted = builder.with_tls(ca_file=str(tls.untrusted_ca_cert)).build()
        with untrusted:
            untrusted.log_info("rejected")
            untrusted.flush(timeout=5)
            assert untrusted.get_status()["logs_sent"] == 0
        assert server.logs() == []
        assert untrusted.get_status()["dropped"]["logs"]


def test_shutdown_returns_within_timeout_when_collector_is_unreachable() -> None:
    builder = (
        TelemetryFlowBuilder()
        .with_api_key(KEY_ID, KEY_SECRET)
        .with_service("down")
        .with_endpoint("127.0.0.1:9")
        .with_insecure()
        .with_global_providers(False)
        .with_retry(True, max_retries=50, backoff=timedelta(seconds=1))
    )
    client = builder.build()
    client.initialize()
    for i in range(100):
        client.log_info(f"lost {i}")
        with client.span("lost"):
            pass
    started = time.monotonic()
    client.shutdown(timeout=1.0)
    assert time.monotonic() - started < 2.0
    dropped = client.get_status()["dropped"]
    assert sum(dropped["logs"].values()) == 100
    assert sum(dropped["traces"].values()) == 100
