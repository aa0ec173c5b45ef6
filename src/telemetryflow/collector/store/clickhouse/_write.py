"""OTLP spans and log records as rows of the exporter's tables, in the exporter's shapes.

What the OpenTelemetry Collector's ``clickhouse`` exporter writes, we write: span kinds
and status codes as its words (``Server``, ``Error``), every attribute value as a string
(arrays and maps as JSON text, bytes as base64), events and links as the columns of
their ``Nested`` structure, times as ``DateTime64(9)``, ``ServiceName`` from the
resource's ``service.name``. One thing is added: the resource attribute
:data:`PROJECT_ATTRIBUTE`, set from the caller's key (a value the client sent is
replaced), which is how a row belongs to a project.

Items are refused as the SQLite store refuses them (spans without valid ids, times past
2262), so both stores answer an export with the same partial success.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from telemetryflow.collector.store.clickhouse._tables import PROJECT_ATTRIBUTE

__all__ = ["Rows", "attribute_text", "log_rows", "span_rows", "timestamp"]

Row = dict[str, Any]
_INT64 = 2**63 - 1
_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_STATUS = ("Unset", "Ok", "Error")
_NS = 1_000_000_000


@dataclass
class Rows:
    """Rows of one request and how many items were refused (with the reason)."""

    rows: list[Row] = field(default_factory=list)
    rejected: int = 0
    message: str = ""


def timestamp(ns: int) -> str:
    """Unix nanoseconds as ``DateTime64(9)`` input text (ten-digit seconds: never a date)."""
    seconds, fraction = divmod(ns, _NS)
    return f"{seconds:010d}.{fraction:09d}"


def _plain(value: AnyValue) -> Any:
    """An ``AnyValue`` as JSON-able Python, bytes as base64 (inside arrays and maps)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    result = getattr(value, kind)
    if isinstance(result, float) and not math.isfinite(result):
        return str(result)
    return result


def attribute_text(value: AnyValue) -> str:
    """One attribute value as the exporter stores it: always a string."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind is None:
        return ""
    return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)


def _attrs(pairs: Iterable[KeyValue]) -> dict[str, str]:
    return {kv.key: attribute_text(kv.value) for kv in pairs}


def _resource(block: Any, project: str) -> dict[str, str]:
    attrs = _attrs(block.resource.attributes)
    attrs[PROJECT_ATTRIBUTE] = project  # the caller's key decides, never the client
    return attrs


def span_rows(request: ExportTraceServiceRequest, project: str, received_ns: int) -> Rows:
    """The ``otel_traces`` rows of an export request."""
    out = Rows()
    for rs in request.resource_spans:
        resource = _resource(rs, project)
        service = resource.get("service.name", "")
        for ss in rs.scope_spans:
            scope_name, scope_version = ss.scope.name, ss.scope.version
            for span in ss.spans:
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                if (
                    len(span.trace_id) != 16
                    or len(span.span_id) != 8
                    or not any(span.trace_id)
                    or max(start, end) > _INT64
                ):
                    out.rejected += 1
                    continue
                out.rows.append(_span(span, resource, service, scope_name, scope_version))
    if out.rejected:
        out.message = f"{out.rejected} span(s) without valid ids or with times past 2262"
    return out


def _span(span: Any, resource: dict[str, str], service: str, scope: str, version: str) -> Row:
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    kind, code = span.kind, span.status.code
    events, links = span.events, span.links
    return {
        "Timestamp": timestamp(start),
        "TraceId": span.trace_id.hex(),
        "SpanId": span.span_id.hex(),
        "ParentSpanId": span.parent_span_id.hex(),
        "TraceState": span.trace_state,
        "SpanName": span.name,
        "SpanKind": _KINDS[kind] if 0 <= kind < len(_KINDS) else str(kind),
        "ServiceName": service,
        "ResourceAttributes": resource,
        "ScopeName": scope,
        "ScopeVersion": version,
        "SpanAttributes": _attrs(span.attributes),
        "Duration": max(0, end - start),
        "StatusCode": _STATUS[code] if 0 <= code < len(_STATUS) else str(code),
        "StatusMessage": span.status.message,
        "Events.Timestamp": [timestamp(min(e.time_unix_nano, _INT64)) for e in events],
        "Events.Name": [e.name for e in events],
        "Events.Attributes": [_attrs(e.attributes) for e in events],
        "Links.TraceId": [link.trace_id.hex() for link in links],
        "Links.SpanId": [link.span_id.hex() for link in links],
        "Links.TraceState": [link.trace_state for link in links],
        "Links.Attributes": [_attrs(link.attributes) for link in links],
    }


def _body(body: AnyValue) -> str:
    """The body as the exporter stores it: strings as they are, the rest as text."""
    if body.WhichOneof("value") == "string_value":
        return body.string_value
    return attribute_text(body)


def log_rows(request: ExportLogsServiceRequest, project: str, received_ns: int) -> Rows:
    """The ``otel_logs`` rows of an export request."""
    out = Rows()
    for rl in request.resource_logs:
        resource = _resource(rl, project)
        service = resource.get("service.name", "")
        for sl in rl.scope_logs:
            scope = sl.scope
            scope_attrs = _attrs(scope.attributes)
            for rec in sl.log_records:
                if max(rec.time_unix_nano, rec.observed_time_unix_nano) > _INT64:
                    out.rejected += 1
                    continue
                when = rec.time_unix_nano or rec.observed_time_unix_nano or received_ns
                out.rows.append({
                    "Timestamp": timestamp(when),
                    "TraceId": rec.trace_id.hex(),
                    "SpanId": rec.span_id.hex(),
                    "TraceFlags": rec.flags & 0xFF,
                    "SeverityText": rec.severity_text,
                    "SeverityNumber": min(max(rec.severity_number, 0), 255),
                    "ServiceName": service,
                    "Body": _body(rec.body),
                    "ResourceSchemaUrl": rl.schema_url,
                    "ResourceAttributes": resource,
                    "ScopeSchemaUrl": sl.schema_url,
                    "ScopeName": scope.name,
                    "ScopeVersion": scope.version,
                    "ScopeAttributes": scope_attrs,
                    "LogAttributes": _attrs(rec.attributes),
                })  # fmt: skip
    if out.rejected:
        out.message = f"{out.rejected} log record(s) with times past 2262"
    return out
