"""The test receiver, proven with real clients over loopback.

Every other SDK test trusts this receiver, so each behaviour is checked from
the client's side of a real socket: raw gRPC stubs, http.client, and the
OpenTelemetry SDK's own OTLP exporters.
"""

from __future__ import annotations

import gzip
import http.client
import itertools
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from telemetryflow.testing import _receiver_http as receiver_http
from telemetryflow.testing._receiver import Fault, OTLPReceiver
from telemetryflow.testing._records import attrs
from telemetryflow.testing._tls import TLSFiles

TRACE_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN_ID = bytes.fromhex("eee19b7ec3c1b174")


# -- helpers ----------------------------------------------------------------------


def _kv(key: str, value: Any) -> Any:
    return common_pb2.KeyValue(key=key, value=_av(value))


def _av(value: Any) -> Any:
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, bytes):
        return common_pb2.AnyValue(bytes_value=value)
    if isinstance(value, list):
        return common_pb2.AnyValue(
            array_value=common_pb2.ArrayValue(values=[_av(v) for v in value])
        )
    if isinstance(value, dict):
        kvs = [_kv(k, v) for k, v in value.items()]
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=kvs))
    if value is None:
        return common_pb2.AnyValue()
    return common_pb2.AnyValue(string_value=value)


def _resource(service: str = "checkout") -> Any:
    return resource_pb2.Resource(attributes=[_kv("service.name", service)])


def trace_request(*names: str, service: str = "checkout", padding: int = 0) -> Any:
    spans = [
        trace_pb2.Span(
            trace_id=TRACE_ID,
            span_id=SPAN_ID,
            name=name,
            attributes=[_kv("pad", "x" * padding)] if padding else [],
        )
        for name in names or ("op",)
    ]
    scoped = trace_pb2.ScopeSpans(scope=common_pb2.InstrumentationScope(name="lib"), spans=spans)
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(resource=_resource(service), scope_spans=[scoped])]
    )


def metrics_request(name: str = "jobs", value: int = 3) -> Any:
    point = metrics_pb2.NumberDataPoint(as_int=value)
    metric = metrics_pb2.Metric(name=name, sum=metrics_pb2.Sum(data_points=[point]))
    scoped = metrics_pb2.ScopeMetrics(
        scope=common_pb2.InstrumentationScope(name="lib"), metrics=[metric]
    )
    return metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[metrics_pb2.ResourceMetrics(resource=_resource(), scope_metrics=[scoped])]
    )


def logs_request(body: str = "hello") -> Any:
    record = logs_pb2.LogRecord(body=_av(body), attributes=[_kv("k", 1)])
    scoped = logs_pb2.ScopeLogs(
        scope=common_pb2.InstrumentationScope(name="lib"), log_records=[record]
    )
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[logs_pb2.ResourceLogs(resource=_resource(), scope_logs=[scoped])]
    )


# Reconnect quickly once the receiver comes back, instead of gRPC's 1 s default.
FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 200),
]


@pytest.fixture
def channel(receiver: OTLPReceiver) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(receiver.grpc_endpoint, options=FAST_RECONNECT) as ch:
        yield ch


def trace_stub(ch: grpc.Channel) -> Any:
    return trace_service_pb2_grpc.TraceServiceStub(ch)


def post(
    receiver: OTLPReceiver,
    path: str,
    body: bytes,
    content_type: str = "application/x-protobuf",
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
    context: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, str], bytes]:
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", receiver.http_port, timeout=timeout)
    else:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", receiver.http_port, timeout=timeout, context=context
        )
    try:
        conn.request(method, path, body, {"Content-Type": content_type, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


# -- lifecycle --------------------------------------------------------------------


def test_listens_on_loopback_ephemeral_ports(receiver: OTLPReceiver) -> None:
    assert receiver.grpc_port > 0
    assert receiver.http_port > 0
    assert receiver.grpc_port != receiver.http_port
    assert receiver.grpc_endpoint == f"127.0.0.1:{receiver.grpc_port}"
    assert receiver.http_endpoint == f"http://127.0.0.1:{receiver.http_port}"


def test_refuses_non_loopback_hosts_and_unstarted_use() -> None:
    with pytest.raises(ValueError, match="loopback"):
        OTLPReceiver(host="0.0.0.0")
    with pytest.raises(ValueError, match="tls"):
        OTLPReceiver(require_client_cert=True)
    with pytest.raises(RuntimeError, match="not been started"):
        _ = OTLPReceiver().grpc_endpoint


def test_stop_is_prompt_idempotent_and_closes_ports() -> None:
    rx = OTLPReceiver().start()
    ports = (rx.grpc_port, rx.http_port)
    began = time.monotonic()
    rx.stop()
    rx.stop()
    assert time.monotonic() - began < 2.0
    assert all(refused(port) for port in ports)
    with pytest.raises(RuntimeError):
        rx.start()


# -- recording over gRPC ------------------------------------------------------------


def test_grpc_export_is_recorded_with_metadata(
    receiver: OTLPReceiver, channel: grpc.Channel
) -> None:
    request = trace_request("GET /cart", "SELECT")
    response = trace_stub(channel).Export(request, metadata=[("x-tenant", "acme")], timeout=5)

    assert not response.HasField("partial_success")
    [got] = receiver.requests
    assert (got.signal, got.transport, got.path) == ("traces", "grpc", TRACE_PATH)
    assert got.headers["x-tenant"] == "acme"
    assert "user-agent" in got.headers
    assert not got.compressed
    assert "grpc-encoding" not in got.headers
    assert got.body_size == request.ByteSize()
    assert got.message == request
    assert receiver.span_names() == ["GET /cart", "SELECT"]
    span = receiver.spans()[0]
    assert (span.resource, span.scope, span.span.trace_id) == (
        {"service.name": "checkout"},
        "lib",
        TRACE_ID,
    )
    assert receiver.resource_attributes("traces") == {"service.name": "checkout"}
    assert receiver.attempts == 1


def test_grpc_gzip_request_is_seen_as_compressed(receiver: OTLPReceiver) -> None:
    request = trace_request("big", padding=4000)
    with grpc.insecure_channel(receiver.grpc_endpoint, compression=grpc.Compression.Gzip) as ch:
        trace_stub(ch).Export(request, timeout=5)
    [got] = receiver.requests
    assert got.compressed
    assert got.headers["grpc-encoding"] == "gzip"
    assert got.body_size < request.ByteSize() / 10
    assert got.message == request


def test_grpc_metrics_and_logs_services(receiver: OTLPReceiver, channel: grpc.Channel) -> None:
    metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(metrics_request(), timeout=5)
    logs_service_pb2_grpc.LogsServiceStub(channel).Export(logs_request("hi"), timeout=5)

    assert [r.signal for r in receiver.requests] == ["metrics", "logs"]
    assert receiver.find_metric("jobs").sum.data_points[0].as_int == 3
    assert receiver.find_metric("absent") is None
    [log] = receiver.logs()
    assert (log.body, log.attributes, log.scope) == ("hi", {"k": 1}, "lib")
    assert receiver.resource_attributes("logs") == {"service.name": "checkout"}


def test_undecodable_grpc_body_is_invalid_argument(
    receiver: OTLPReceiver, channel: grpc.Channel
) -> None:
    raw = channel.unary_unary(TRACE_PATH)  # no serializer: bytes go out as they are
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\xff\xff\xff", timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert receiver.attempts == 1
    assert receiver.requests == []


# -- recording over HTTP ------------------------------------------------------------


def test_http_protobuf_keeps_the_connection_alive(receiver: OTLPReceiver) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", receiver.http_port, timeout=5)
    try:
        for name in ("first", "second"):
            body = trace_request(name).SerializeToString()
            conn.request(
                "POST",
                "/v1/traces",
                body,
                {"Content-Type": "application/x-protobuf", "X-Tenant": "acme"},
            )
            resp = conn.getresponse()
            payload = resp.read()
            assert resp.status == 200
            assert resp.getheader("Content-Type") == "application/x-protobuf"
            trace_service_pb2.ExportTraceServiceResponse.FromString(payload)
            assert not resp.will_close
    finally:
        conn.close()
    assert receiver.span_names() == ["first", "second"]
    got = receiver.requests[0]
    assert (got.transport, got.path, got.headers["x-tenant"]) == ("http", "/v1/traces", "acme")
    assert got.body_size == len(trace_request("first").SerializeToString())


def test_http_json_uses_otlp_hex_ids(receiver: OTLPReceiver) -> None:
    doc = {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "j"}}]
                },
                "scopeLogs": [
                    {
                        "scope": {"name": "json-lib"},
                        "logRecords": [
                            {
                                "traceId": TRACE_ID.hex(),
                                "spanId": SPAN_ID.hex(),
                                "severityNumber": 9,
                                "body": {"stringValue": "from json"},
                                "someFutureField": True,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    status, headers, body = post(receiver, "/v1/logs", json.dumps(doc).encode(), "application/json")

    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {}
    [log] = receiver.logs()
    assert (log.log.trace_id, log.log.span_id) == (TRACE_ID, SPAN_ID)
    assert (log.body, log.scope, log.resource) == ("from json", "json-lib", {"service.name": "j"})


def test_http_gzip_body_is_recorded_as_compressed(receiver: OTLPReceiver) -> None:
    wire = gzip.compress(metrics_request("gz").SerializeToString())
    status, _, _ = post(receiver, "/v1/metrics", wire, headers={"Content-Encoding": "gzip"})
    assert status == 200
    [got] = receiver.requests
    assert got.compressed
    assert got.headers["content-encoding"] == "gzip"
    assert got.body_size == len(wire)
    assert receiver.find_metric("gz") is not None


@pytest.mark.parametrize(
    ("path", "body", "content_type", "extra", "expected"),
    [
        ("/v1/spans", b"", "application/x-protobuf", {}, 404),
        ("/v1/traces", b"\xff\xff\xff", "application/x-protobuf", {}, 400),
        ("/v1/traces", b"{not json", "application/json", {}, 400),
        (
            "/v1/traces",
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            "application/json",
            {},
            400,
        ),
        ("/v1/traces", b"not gzip", "application/x-protobuf", {"Content-Encoding": "gzip"}, 400),
        ("/v1/traces", b"", "text/plain", {}, 415),
        ("/v1/traces", b"", "application/x-protobuf", {"Content-Encoding": "br"}, 415),
    ],
)
def test_http_rejects_bad_requests(
    receiver: OTLPReceiver,
    path: str,
    body: bytes,
    content_type: str,
    extra: dict[str, str],
    expected: int,
) -> None:
    status, _, _ = post(receiver, path, body, content_type, headers=extra)
    assert status == expected
    assert receiver.requests == []
    assert receiver.attempts == (0 if expected == 404 else 1)


def test_http_get_is_not_allowed(receiver: OTLPReceiver) -> None:
    status, headers, _ = post(receiver, "/v1/traces", b"", method="GET")
    assert (status, headers["allow"]) == (405, "POST")


# -- helpers for assertions ---------------------------------------------------------


def test_attrs_turns_every_any_value_kind_into_python() -> None:
    values = {
        "s": "text",
        "b": True,
        "i": 7,
        "d": 1.5,
        "raw": b"\x00\x01",
        "list": ["a", 2, [False]],
        "map": {"inner": {"deep": 1.25}},
        "empty": None,
    }
    assert attrs([_kv(k, v) for k, v in values.items()]) == values


def test_wait_helpers_are_bounded(receiver: OTLPReceiver, channel: grpc.Channel) -> None:
    began = time.monotonic()
    assert not receiver.wait_for_spans(1, timeout=0.2)
    assert not receiver.wait_for_logs(1, timeout=0.1)
    assert receiver.wait_for_metric("never", timeout=0.1) is None
    assert time.monotonic() - began < 1.5
    with pytest.raises(ValueError, match="finite"):
        receiver.wait_for(lambda: False, timeout=float("inf"))

    def later() -> None:
        time.sleep(0.1)
        trace_stub(channel).Export(trace_request("late"), timeout=5)

    sender = threading.Thread(target=later)
    sender.start()
    assert receiver.wait_for_spans(1, timeout=3)
    sender.join(5)
    receiver.clear()
    assert (receiver.requests, receiver.attempts, receiver.attempt_times) == ([], 0, [])


def test_concurrent_clients_are_all_recorded(receiver: OTLPReceiver) -> None:
    def grpc_client() -> None:
        with grpc.insecure_channel(receiver.grpc_endpoint) as ch:
            for _ in range(5):
                trace_stub(ch).Export(trace_request("g"), timeout=5)

    def http_client() -> None:
        for _ in range(5):
            post(receiver, "/v1/traces", trace_request("h").SerializeToString())

    threads = [threading.Thread(target=fn) for fn in (grpc_client, http_client) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert receiver.attempts == 40
    assert sorted(receiver.span_names()) == ["g"] * 20 + ["h"] * 20


# -- the OpenTelemetry SDK's own exporters ------------------------------------------


def _send_with_sdk(span_exporter: Any, metric_exporter: Any, log_exporter: Any) -> None:
    resource = Resource.create({"service.name": "sdk-svc"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    with tracer_provider.get_tracer("sdk-scope").start_as_current_span("sdk-span") as span:
        span.set_attribute("user.id", 42)
    tracer_provider.shutdown()

    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=60_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter_provider.get_meter("sdk-scope").create_counter("sdk.jobs").add(5, {"queue": "q1"})
    meter_provider.shutdown()

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    logger_provider.get_logger("sdk-scope").emit(body="sdk log", attributes={"n": 1})
    logger_provider.shutdown()


def _assert_sdk_data(receiver: OTLPReceiver, transport: str) -> None:
    assert receiver.wait_for_spans(1)
    assert receiver.wait_for_logs(1)
    assert receiver.wait_for_metric("sdk.jobs") is not None
    [span] = receiver.spans()
    assert (span.name, span.scope, span.attributes) == ("sdk-span", "sdk-scope", {"user.id": 42})
    assert span.resource["service.name"] == "sdk-svc"
    point = receiver.find_metric("sdk.jobs").sum.data_points[0]
    assert (point.as_int, attrs(point.attributes)) == (5, {"queue": "q1"})
    [log] = receiver.logs()
    assert (log.body, log.attributes) == ("sdk log", {"n": 1})
    for got in receiver.requests:
        assert got.transport == transport
        assert got.headers["x-tenant"] == "acme"
    assert {r.signal for r in receiver.requests} == {"traces", "metrics", "logs"}


def test_sdk_grpc_exporters_deliver_all_signals(receiver: OTLPReceiver) -> None:
    common: dict[str, Any] = {
        "endpoint": receiver.grpc_endpoint,
        "insecure": True,
        "headers": {"x-tenant": "acme"},
        "compression": grpc.Compression.Gzip,
        "timeout": 5,
    }
    _send_with_sdk(
        GrpcSpanExporter(**common), GrpcMetricExporter(**common), GrpcLogExporter(**common)
    )
    _assert_sdk_data(receiver, "grpc")
    assert all(r.compressed and r.headers["grpc-encoding"] == "gzip" for r in receiver.requests)


def test_sdk_http_exporters_deliver_all_signals(receiver: OTLPReceiver) -> None:
    def common(signal: str) -> dict[str, Any]:
        return {
            "endpoint": f"{receiver.http_endpoint}/v1/{signal}",
            "headers": {"x-tenant": "acme"},
            "compression": HttpCompression.Gzip,
            "timeout": 5,
        }

    _send_with_sdk(
        HttpSpanExporter(**common("traces")),
        HttpMetricExporter(**common("metrics")),
        HttpLogExporter(**common("logs")),
    )
    _assert_sdk_data(receiver, "http")
    assert all(r.headers["content-encoding"] == "gzip" for r in receiver.requests)


# -- fault injection ----------------------------------------------------------------


def test_grpc_fault_carries_retry_info(receiver: OTLPReceiver, channel: grpc.Channel) -> None:
    receiver.fail_next(1, grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=1.25)
    with pytest.raises(grpc.RpcError) as err:
        trace_stub(channel).Export(trace_request(), timeout=5)

    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(err.value.trailing_metadata())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert (info.retry_delay.seconds, info.retry_delay.nanos) == (1, 250_000_000)
    bare = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
    assert bare == info

    trace_stub(channel).Export(trace_request(), timeout=5)  # the fault is used up
    assert (receiver.attempts, len(receiver.requests)) == (2, 1)


def test_http_fault_body_is_sent_verbatim(receiver: OTLPReceiver) -> None:
    receiver.fail_next(2, http_status=401, body=b"bad key tfs_secret")
    body = trace_request().SerializeToString()
    for _ in range(2):
        status, _, payload = post(receiver, "/v1/traces", body)
        assert (status, payload) == (401, b"bad key tfs_secret")
    assert post(receiver, "/v1/traces", body)[0] == 200
    assert receiver.attempts == 3


def test_http_fault_headers_and_default_status_body(receiver: OTLPReceiver) -> None:
    receiver.fail_next(1, http_status=429, retry_after="7")
    receiver.inject(Fault(http_status=503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"))
    body = trace_request().SerializeToString()

    status, headers, payload = post(receiver, "/v1/traces", body)
    assert (status, headers["retry-after"]) == (429, "7")
    assert status_pb2.Status.FromString(payload).code == grpc.StatusCode.UNAVAILABLE.value[0]
    status, headers, _ = post(receiver, "/v1/traces", body)
    assert (status, headers["retry-after"]) == (503, "Wed, 21 Oct 2015 07:28:00 GMT")
    assert post(receiver, "/v1/traces", body)[0] == 200
    assert (receiver.attempts, len(receiver.requests)) == (3, 1)


def test_sdk_grpc_exporter_honours_retry_info(receiver: OTLPReceiver) -> None:
    receiver.fail_next(2, retry_delay=0.1)
    exporter = GrpcSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True, timeout=5)
    _send_spans(exporter)
    assert receiver.attempts == 3
    assert len(receiver.spans()) == 1
    times = receiver.attempt_times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # The exporter's own first backoff is 0.8-1.2 s: shorter gaps mean RetryInfo was used.
    assert all(0.09 <= gap < 0.6 for gap in gaps), gaps


def test_sdk_http_exporter_honours_retry_after(receiver: OTLPReceiver) -> None:
    receiver.fail_next(2, http_status=503, retry_after="0.1")
    exporter = HttpSpanExporter(endpoint=f"{receiver.http_endpoint}/v1/traces", timeout=5)
    _send_spans(exporter)
    assert receiver.attempts == 3
    assert len(receiver.spans()) == 1
    times = receiver.attempt_times
    assert all(0.09 <= b - a < 0.6 for a, b in itertools.pairwise(times))  # not 0.8-1.2 s


def _send_spans(exporter: Any) -> None:
    results: list[SpanExportResult] = []

    class Recording(SimpleSpanProcessor):
        def on_end(self, span: Any) -> None:
            results.append(exporter.export([span]))

    provider = TracerProvider()
    provider.add_span_processor(Recording(exporter))
    with provider.get_tracer("t").start_as_current_span("retried"):
        pass
    provider.shutdown()
    assert results == [SpanExportResult.SUCCESS]


def test_delay_slows_every_answer(receiver: OTLPReceiver, channel: grpc.Channel) -> None:
    receiver.set_delay(0.3)
    began = time.monotonic()
    trace_stub(channel).Export(trace_request(), timeout=5)
    assert post(receiver, "/v1/traces", trace_request().SerializeToString())[0] == 200
    assert time.monotonic() - began >= 0.6

    with pytest.raises(grpc.RpcError) as err:
        trace_stub(channel).Export(trace_request(), timeout=0.1)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(ValueError, match="delay"):
        receiver.set_delay(3600)


def test_blackhole_holds_until_client_deadline(
    receiver: OTLPReceiver, channel: grpc.Channel
) -> None:
    receiver.blackhole(True)
    with pytest.raises(grpc.RpcError) as err:
        trace_stub(channel).Export(trace_request(), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(TimeoutError):
        post(receiver, "/v1/traces", trace_request().SerializeToString(), timeout=0.3)
    assert (receiver.attempts, receiver.requests) == (2, [])

    receiver.blackhole(False)
    trace_stub(channel).Export(trace_request("after"), timeout=5)
    assert receiver.span_names() == ["after"]  # held requests were dropped, not recorded


@pytest.mark.parametrize("hold", ["blackhole", "delay"])
def test_stop_releases_held_requests(hold: str) -> None:
    rx = OTLPReceiver().start()
    if hold == "blackhole":
        rx.blackhole(True)
    else:
        rx.set_delay(30)
    outcomes: list[object] = []

    def http_client() -> None:
        try:
            outcomes.append(post(rx, "/v1/traces", trace_request().SerializeToString())[0])
        except OSError as exc:
            outcomes.append(exc)

    def grpc_client() -> None:
        with grpc.insecure_channel(rx.grpc_endpoint) as ch:
            try:
                trace_stub(ch).Export(trace_request(), timeout=10)
            except grpc.RpcError as exc:
                outcomes.append(exc.code())

    threads = [threading.Thread(target=fn) for fn in (http_client, grpc_client)]
    for thread in threads:
        thread.start()
    assert rx.wait_for(lambda: rx.attempts == 2, timeout=3)
    began = time.monotonic()
    rx.stop()
    for thread in threads:
        thread.join(5)
    assert time.monotonic() - began < 2.0
    assert len(outcomes) == 2
    assert 200 not in outcomes  # released requests are answered as failures, or cut
    assert rx.requests == []


def test_go_down_refuses_then_comes_back_on_same_ports(
    receiver: OTLPReceiver, channel: grpc.Channel
) -> None:
    ports = (receiver.grpc_port, receiver.http_port)
    trace_stub(channel).Export(trace_request("before"), timeout=5)

    receiver.go_down()
    assert all(refused(port) for port in ports)
    with pytest.raises(grpc.RpcError) as err:
        trace_stub(channel).Export(trace_request(), timeout=2)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ConnectionRefusedError):
        post(receiver, "/v1/traces", b"")

    receiver.come_back()
    assert (receiver.grpc_port, receiver.http_port) == ports
    assert post(receiver, "/v1/traces", trace_request("http").SerializeToString())[0] == 200
    trace_stub(channel).Export(trace_request("grpc"), timeout=5, wait_for_ready=True)
    assert receiver.span_names() == ["before", "http", "grpc"]


def test_partial_success_reaches_both_transports(
    receiver: OTLPReceiver, channel: grpc.Channel
) -> None:
    receiver.partial_success(3, "3 spans too old", times=2)
    response = trace_stub(channel).Export(trace_request(), timeout=5)
    assert response.partial_success.rejected_spans == 3
    assert response.partial_success.error_message == "3 spans too old"

    _, _, body = post(receiver, "/v1/metrics", metrics_request().SerializeToString())
    parsed = metrics_service_pb2.ExportMetricsServiceResponse.FromString(body)
    assert parsed.partial_success.rejected_data_points == 3

    response = logs_service_pb2_grpc.LogsServiceStub(channel).Export(logs_request(), timeout=5)
    assert not response.HasField("partial_success")  # used up after two responses


def test_handler_errors_become_internal_and_500(
    receiver: OTLPReceiver, channel: grpc.Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(receiver, "_handle", explode)
    monkeypatch.setattr(receiver_http, "_render", explode)
    with pytest.raises(grpc.RpcError) as err:
        trace_stub(channel).Export(trace_request(), timeout=5)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert post(receiver, "/v1/traces", trace_request().SerializeToString())[0] == 500

    monkeypatch.undo()  # both servers are still serving
    trace_stub(channel).Export(trace_request(), timeout=5)
    assert post(receiver, "/v1/traces", trace_request().SerializeToString())[0] == 200


# -- TLS and mTLS -------------------------------------------------------------------


def _client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def _grpc_tls_export(
    rx: OTLPReceiver, ca: Path, cert: Path | None = None, key: Path | None = None
) -> None:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )
    with grpc.secure_channel(rx.grpc_endpoint, creds) as ch:
        trace_stub(ch).Export(trace_request(), timeout=3)


def test_tls_serves_trusted_clients_and_is_rejected_by_others(tls_files: TLSFiles) -> None:
    with OTLPReceiver(tls=tls_files) as rx:
        assert rx.http_endpoint.startswith("https://127.0.0.1:")
        _grpc_tls_export(rx, tls_files.ca_cert)
        body = trace_request().SerializeToString()
        assert post(rx, "/v1/traces", body, context=_client_context(tls_files.ca_cert))[0] == 200

        with pytest.raises(grpc.RpcError) as err:
            _grpc_tls_export(rx, tls_files.untrusted_ca_cert)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(ssl.SSLCertVerificationError):
            post(rx, "/v1/traces", body, context=_client_context(tls_files.untrusted_ca_cert))
        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP gets nowhere
            post(rx, "/v1/traces", body, timeout=2)
        assert len(rx.requests) == 2


def test_mtls_requires_a_client_cert_from_the_trusted_ca(tls_files: TLSFiles) -> None:
    t = tls_files
    body = trace_request().SerializeToString()
    with OTLPReceiver(tls=t, require_client_cert=True) as rx:
        _grpc_tls_export(rx, t.ca_cert, t.client_cert, t.client_key)
        good = _client_context(t.ca_cert, t.client_cert, t.client_key)
        assert post(rx, "/v1/traces", body, context=good)[0] == 200

        for cert, key in ((None, None), (t.untrusted_cert, t.untrusted_key)):
            with pytest.raises(grpc.RpcError):
                _grpc_tls_export(rx, t.ca_cert, cert, key)
            with pytest.raises(OSError):
                post(rx, "/v1/traces", body, context=_client_context(t.ca_cert, cert, key))
        assert len(rx.requests) == 2


def test_sdk_grpc_exporter_over_tls(tls_files: TLSFiles) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=tls_files.ca_cert.read_bytes())
    with OTLPReceiver(tls=tls_files) as rx:
        _send_spans(GrpcSpanExporter(endpoint=rx.grpc_endpoint, credentials=creds, timeout=5))
        assert rx.span_names() == ["retried"]
