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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from telemetryflow.collector.store.clickhouse._tables import PROJECT_ATTRIBUTE

__all__ = [
    "LOG_COLUMNS",
    "SPAN_COLUMNS",
    "Rows",
    "attribute_text",
    "log_rows",
    "span_rows",
    "timestamp",
]
_INT64 = 2**63 - 1
_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_STATUS = ("Unset", "Ok", "Error")
_NS = 1_000_000_000


SPAN_COLUMNS = (
    "Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind",
    "ServiceName", "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes",
    "Duration", "StatusCode", "StatusMessage", "Events.Timestamp", "Events.Name",
    "Events.Attributes", "Links.TraceId", "Links.SpanId", "Links.TraceState", "Links.Attributes",
)  # fmt: skip
"""The columns of a span line, in order."""
LOG_COLUMNS = (
    "Timestamp", "TraceId", "SpanId", "TraceFlags", "SeverityText", "SeverityNumber",
    "ServiceName", "Body", "ResourceSchemaUrl", "ResourceAttributes", "ScopeSchemaUrl",
    "ScopeName", "ScopeVersion", "ScopeAttributes", "LogAttributes",
)  # fmt: skip
"""The columns of a log line, in order."""
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_quote: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]
"""A string as JSON text (the C encoder, without ``_dumps``'s dispatch)."""
_NO_EVENTS = "[],[],[]"
_NO_LINKS = "[],[],[],[]"


@dataclass
class Rows:
    """One request's rows as ``JSONCompactEachRow`` lines, and the items refused (why).

    Lines, not dicts: the resource and scope of a block are encoded once for all its
    items, and one ``json`` call per row is the cost that bounds ingest.
    """

    lines: list[str] = field(default_factory=list)
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


def _block(resource: dict[str, str], scope: Any) -> str:
    """The encoded columns a resource and scope give every one of their spans."""
    return ",".join([_dumps(resource.get("service.name", "")), _dumps(resource),
                     _dumps(scope.name), _dumps(scope.version)])  # fmt: skip


def span_rows(request: ExportTraceServiceRequest, project: str, received_ns: int) -> Rows:
    """The ``otel_traces`` lines (:data:`SPAN_COLUMNS`) of an export request."""
    out = Rows()
    lines = out.lines
    for rs in request.resource_spans:
        resource = _resource(rs, project)
        for ss in rs.scope_spans:
            block = _block(resource, ss.scope)
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
                lines.append(_span(span, block))
    if out.rejected:
        out.message = f"{out.rejected} span(s) without valid ids or with times past 2262"
    return out


def _span(span: Any, block: str) -> str:
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    kind, status = span.kind, span.status
    code = status.code
    seconds, fraction = divmod(start, _NS)
    return (
        f'["{seconds:010d}.{fraction:09d}","{span.trace_id.hex()}","{span.span_id.hex()}",'
        f'"{span.parent_span_id.hex()}",{_quote(span.trace_state)},{_quote(span.name)},'
        f'"{_KINDS[kind] if 0 <= kind < len(_KINDS) else kind}",{block},'
        f"{_dumps(_attrs(span.attributes))},{max(0, end - start)},"
        f'"{_STATUS[code] if 0 <= code < len(_STATUS) else code}",{_quote(status.message)},'
        f"{_events(span.events) if span.events else _NO_EVENTS},"
        f"{_links(span.links) if span.links else _NO_LINKS}]"
    )


def _events(events: Any) -> str:
    return ",".join([
        _dumps([timestamp(min(e.time_unix_nano, _INT64)) for e in events]),
        _dumps([e.name for e in events]),
        _dumps([_attrs(e.attributes) for e in events]),
    ])  # fmt: skip


def _links(links: Any) -> str:
    return ",".join([
        _dumps([link.trace_id.hex() for link in links]),
        _dumps([link.span_id.hex() for link in links]),
        _dumps([link.trace_state for link in links]),
        _dumps([_attrs(link.attributes) for link in links]),
    ])  # fmt: skip


def _body(body: AnyValue) -> str:
    """The body as the exporter stores it: strings as they are, the rest as text."""
    if body.WhichOneof("value") == "string_value":
        return body.string_value
    return attribute_text(body)


def log_rows(request: ExportLogsServiceRequest, project: str, received_ns: int) -> Rows:
    """The ``otel_logs`` lines (:data:`LOG_COLUMNS`) of an export request."""
    out = Rows()
    for rl in request.resource_logs:
        resource = _resource(rl, project)
        for sl in rl.scope_logs:
            scope = sl.scope
            # ServiceName, Body, then the resource and scope columns that follow it
            service = _dumps(resource.get("service.name", ""))
            tail = ",".join([_dumps(rl.schema_url), _dumps(resource), _dumps(sl.schema_url),
                             _dumps(scope.name), _dumps(scope.version),
                             _dumps(_attrs(scope.attributes))])  # fmt: skip
            for rec in sl.log_records:
                if max(rec.time_unix_nano, rec.observed_time_unix_nano) > _INT64:
                    out.rejected += 1
                    continue
                when = rec.time_unix_nano or rec.observed_time_unix_nano or received_ns
                out.lines.append(
                    f'["{timestamp(when)}","{rec.trace_id.hex()}","{rec.span_id.hex()}",'
                    f"{rec.flags & 0xFF},{_quote(rec.severity_text)},"
                    f"{min(max(rec.severity_number, 0), 255)},{service},"
                    f"{_quote(_body(rec.body))},{tail},{_dumps(_attrs(rec.attributes))}]"
                )
    if out.rejected:
        out.message = f"{out.rejected} log record(s) with times past 2262"
    return out
