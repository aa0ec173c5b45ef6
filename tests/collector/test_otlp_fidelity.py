"""What real clients send comes back: links, trace state, resource, scope, log bodies.

The official OpenTelemetry Python SDK and exporters (OTLP/HTTP protobuf and gRPC) send
to a live collector; OTLP/JSON is built from the same messages. Everything is read back
through the query API.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from collector_helpers import KEY_A, headers_for, make_span, now_ns
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, TraceFlags, TraceState

from telemetryflow.collector import Collector

PARENT_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
LINKED_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
RESOURCE = {
    "service.version": "3.1.4",
    "host.name": "build-7",
    "deployment.environment": "test",
}


def _resource(service: str) -> Resource:
    return Resource.create({"service.name": service, **RESOURCE})


def _exporters(collector: Collector, transport: str) -> tuple[Any, Any]:
    if transport == "grpc":
        md = (("authorization", headers_for(KEY_A)["Authorization"]),)
        endpoint = collector.grpc_endpoint
        return (
            GrpcSpans(endpoint=endpoint, insecure=True, headers=md, timeout=10),
            GrpcLogs(endpoint=endpoint, insecure=True, headers=md, timeout=10),
        )
    base = collector.http_endpoint
    return (
        HttpSpans(endpoint=f"{base}/v1/traces", headers=headers_for(KEY_A), timeout=10),
        HttpLogs(endpoint=f"{base}/v1/logs", headers=headers_for(KEY_A), timeout=10),
    )


@pytest.fixture
def query(collector: Collector) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=collector.http_endpoint, headers=headers_for(KEY_A), timeout=10
    ) as client:
        yield client


def _send_sdk_span(collector: Collector, transport: str, service: str) -> None:
    spans, _ = _exporters(collector, transport)
    provider = TracerProvider(resource=_resource(service))
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("shop.checkout", "1.2.3", attributes={"scope.team": "payments"})
    parent = SpanContext(
        PARENT_TRACE, 0x00F067AA0BA902B7, is_remote=True, trace_flags=TraceFlags(1),
        trace_state=TraceState([("congo", "t61rcWkgMzE")]),
    )  # fmt: skip
    linked = SpanContext(
        LINKED_TRACE, 0xB7AD6B7169203331, is_remote=True, trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "linked")]),
    )  # fmt: skip
    context = trace.set_span_in_context(NonRecordingSpan(parent))
    with tracer.start_as_current_span(
        "checkout", context=context, links=[Link(linked, {"link.reason": "retry"})]
    ):
        pass
    provider.shutdown()


def _check_span(span: dict[str, Any], service: str) -> None:
    assert span["trace_state"] == "congo=t61rcWkgMzE"
    assert span["links"] == [
        {
            "trace_id": f"{LINKED_TRACE:032x}",
            "span_id": "b7ad6b7169203331",
            "trace_state": "",  # the Python exporter does not send a link's trace state
            "attributes": {"link.reason": "retry"},
        }
    ]
    resource = span["resource"]
    assert {k: resource[k] for k in RESOURCE} == RESOURCE
    assert resource["service.name"] == service
    assert resource["telemetry.sdk.language"] == "python"  # everything the resource carried
    assert span["scope"] == {
        "name": "shop.checkout",
        "version": "1.2.3",
        "attributes": {"scope.team": "payments"},
    }


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_links_trace_state_resource_and_scope_come_back(
    collector: Collector, query: httpx.Client, transport: str
) -> None:
    service = f"shop-{transport}"
    _send_sdk_span(collector, transport, service)
    by_id = query.get("/v1/traces/query", params={"trace_id": f"{PARENT_TRACE:032x}"}).json()
    listed = query.post("/v1/traces/query", json={"service": service, "detail": True}).json()
    for answer in (by_id, listed):
        [found] = answer["traces"]
        [span] = found["spans"]
        assert span["name"] == "checkout"
        _check_span(span, service)


def otlp_json(message: Any) -> bytes:
    """OTLP/JSON as the specification writes it: ids in hex, other bytes in base64."""
    data = json_format.MessageToDict(message)

    def fix(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    fix(value)
        elif isinstance(node, list):
            for item in node:
                fix(item)

    fix(data)
    return json.dumps(data).encode()


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def _string(text: str) -> AnyValue:
    return AnyValue(string_value=text)


def _scoped_resource(service: str) -> tuple[ProtoResource, InstrumentationScope]:
    resource = ProtoResource(
        attributes=[_kv("service.name", _string(service)), _kv("host.name", _string("h1"))]
    )
    scope = InstrumentationScope(
        name="json.scope", version="7", attributes=[_kv("team", _string("core"))]
    )
    return resource, scope


def test_otlp_json_keeps_links_trace_state_resource_and_scope(query: httpx.Client) -> None:
    trace_id, linked = "ab" * 16, "cd" * 16
    span = make_span(trace_id, "1111111111111111", "json-span")
    span.trace_state = "rojo=00f067aa0ba902b7"
    span.links.append(
        Span.Link(
            trace_id=bytes.fromhex(linked), span_id=bytes.fromhex("2222222222222222"),
            trace_state="k=v", attributes=[_kv("n", AnyValue(int_value=3))],
        )
    )  # fmt: skip
    resource, scope = _scoped_resource("json-svc")
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=[span])])
        ]
    )
    response = query.post(
        "/v1/traces", content=otlp_json(request), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    [got] = query.get("/v1/traces/query", params={"trace_id": trace_id}).json()["traces"]
    stored = got["spans"][0]
    assert stored["trace_state"] == "rojo=00f067aa0ba902b7"
    assert stored["links"] == [
        {"trace_id": linked, "span_id": "2222222222222222", "trace_state": "k=v",
         "attributes": {"n": 3}}
    ]  # fmt: skip
    assert stored["resource"] == {"service.name": "json-svc", "host.name": "h1"}
    assert stored["scope"] == {"name": "json.scope", "version": "7", "attributes": {"team": "core"}}


BODIES: list[tuple[Any, str, Any]] = [
    # (what the SDK is given, the kind stored, what the query returns)
    ({"order": "o-1", "items": [1, 2], "paid": True}, "map",
     {"order": "o-1", "items": [1, 2], "paid": True}),
    (["a", 1, 2.5], "array", ["a", 1, 2.5]),
    (b"\x00\x01binary", "bytes", base64.b64encode(b"\x00\x01binary").decode()),
    ('{"looks": "like json"}', "string", '{"looks": "like json"}'),
    ("plain text", "string", "plain text"),
    (42, "int", 42),
]  # fmt: skip


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_log_bodies_keep_their_shape_with_resource_and_scope(
    collector: Collector, query: httpx.Client, transport: str
) -> None:
    service = f"audit-{transport}"
    _, exporter = _exporters(collector, transport)
    provider = LoggerProvider(resource=_resource(service))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("shop.audit", "0.9", attributes={"scope.team": "audit"})
    base = now_ns()
    for i, (body, _, _) in enumerate(BODIES):  # oldest first: the query answers newest first
        logger.emit(timestamp=base - 1000 + i, severity_number=SeverityNumber.INFO, body=body)
    provider.shutdown()
    logs = query.get("/v1/logs/query", params={"service": service}).json()["logs"]
    assert [(e["body_kind"], e["body"]) for e in reversed(logs)] == [
        (kind, expected) for _, kind, expected in BODIES
    ]
    for entry in logs:
        assert {k: entry["resource"][k] for k in RESOURCE} == RESOURCE
        assert entry["resource"]["service.name"] == service
        assert entry["scope"] == {
            "name": "shop.audit",
            "version": "0.9",
            "attributes": {"scope.team": "audit"},
        }


def test_nested_bodies_over_otlp_json_and_text_search(query: httpx.Client) -> None:
    nested = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                _kv("user", _string("ada")),
                _kv("tags", AnyValue(array_value=ArrayValue(values=[_string("x")]))),
                _kv("raw", AnyValue(bytes_value=b"\xff")),
            ]
        )
    )
    resource, scope = _scoped_resource("json-logs")
    base = now_ns()
    request = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=resource,
                scope_logs=[
                    ScopeLogs(
                        scope=scope,
                        log_records=[
                            LogRecord(time_unix_nano=base, body=nested),
                            LogRecord(time_unix_nano=base - 10, body=_string("just text")),
                            LogRecord(time_unix_nano=base - 20),
                        ],
                    )
                ],
            )
        ]
    )
    response = query.post(
        "/v1/logs", content=otlp_json(request), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    logs = query.get("/v1/logs/query", params={"service": "json-logs"}).json()["logs"]
    assert [(e["body_kind"], e["body"]) for e in logs] == [
        ("map", {"user": "ada", "tags": ["x"], "raw": "/w=="}),
        ("string", "just text"),
        ("empty", None),
    ]
    assert logs[0]["scope"]["name"] == "json.scope"
    found = query.get("/v1/logs/query", params={"contains": "ada"}).json()["logs"]
    assert [e["body"] for e in found] == [{"user": "ada", "tags": ["x"], "raw": "/w=="}]
