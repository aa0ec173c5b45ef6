"""OTLP export requests to database rows.

Each ``*_rows`` function returns an :class:`Ingested`: its rows, the number of items it
refused and a message, the resources and scopes the span and log rows refer to, and
whether a later pass (error captures, exemplars) has anything to find. Items that
cannot be stored (a span without a valid id, a metric without data) are counted so the
receiver can answer with OTLP partial success instead of failing the whole request.

Every request passes through here item by item, so the loops are kept lean: one
shared JSON encoder, no per-item helper calls where a per-block one does.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from telemetryflow.collector.query._exponential import ExpBuckets

__all__ = [
    "CAPTURE_EVENT",
    "Ingested",
    "any_value",
    "attributes",
    "compact_json",
    "content_key",
    "log_accepted",
    "log_body",
    "log_rows",
    "point_accepted",
    "point_rows",
    "span_accepted",
    "span_rows",
    "tags_json",
]

Row = tuple[Any, ...]

DELTA = 1
CUMULATIVE = 2
_INT64 = 2**63 - 1  # OTLP times and counts are uint64; SQLite integers are int64
CAPTURE_EVENT = "exception"
"""The event name of an SDK error capture (a span event or a log record)."""
_MAX_EXP_BUCKETS = 4096


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, default=str)


def compact_json(value: Any) -> str:
    """Canonical JSON text: ``json.dumps`` with sorted keys and no spaces.

    One shared encoder: ``json.dumps`` with options builds a new one per call, which
    cost as much as the encoding itself for the small dicts of a span or a point.
    """
    return _ENCODER.encode(value)


def any_value(value: AnyValue, *, b64: bool = False) -> Any:
    """An OTLP ``AnyValue`` as plain JSON-able Python (bytes as hex, or base64 if ``b64``)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":  # most attributes: the quick way out
        return value.string_value
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v, b64=b64) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values, b64=b64)
    if kind == "bytes_value":
        raw = value.bytes_value
        return base64.b64encode(raw).decode("ascii") if b64 else raw.hex()
    result = getattr(value, kind)
    if isinstance(result, float) and not math.isfinite(result):
        return str(result)
    return result


def attributes(pairs: Iterable[KeyValue], *, b64: bool = False) -> dict[str, Any]:
    return {kv.key: any_value(kv.value, b64=b64) for kv in pairs}


def _service(resource_attrs: dict[str, Any]) -> str:
    name = resource_attrs.get("service.name")
    return name if isinstance(name, str) else ""


@dataclass
class Ingested:
    """Rows of one request, the resources and scopes they refer to, and what was refused.

    Resources and scopes are stored once, keyed by :func:`content_key`, instead of on
    every row: an SDK resource carries ten to twenty attributes (service, host,
    process, SDK), often more than the span itself, and one request repeats the same
    resource and scope for every item. A row holds two integers instead.
    """

    rows: list[Row]
    rejected: int = 0
    message: str = ""
    resources: dict[int, Row] = field(default_factory=dict)
    scopes: dict[int, Row] = field(default_factory=dict)
    captures: bool = False
    """Whether an item may be an SDK error capture or product event: an ``exception``
    span event, a log record with an event name. Without one, the capture pass
    (``_errors_events.otlp_captures``) would find nothing, so it is skipped."""
    exemplars: bool = False
    """Whether a metric data point carries exemplars (the exemplar pass is skipped
    without one)."""


def content_key(text: str) -> int:
    """A signed 64-bit key for canonical JSON text (fits an SQLite INTEGER PRIMARY KEY).

    Derived from the content, so the writer stores each resource with one
    ``INSERT OR IGNORE`` and no lookup; two different resources colliding is a
    one-in-10^10 event even among a million of them.
    """
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _resource_ref(block: Any, project: str) -> tuple[Row, str]:
    """The resource row of ``block`` (ResourceSpans/Logs), keyed per project, and its service.

    The key covers the project, so each project owns its resource rows: retention can
    charge them to it and delete them with its data, never another project's.
    """
    resource = block.resource
    attrs = attributes(resource.attributes)
    row = (compact_json(attrs), block.schema_url, resource.dropped_attributes_count, project)
    return (content_key(compact_json(row)), *row), _service(attrs)


def _scope_ref(block: Any, project: str) -> Row:
    """The instrumentation scope row of ``block`` (a ScopeSpans/ScopeLogs), keyed per project."""
    scope = block.scope
    text = compact_json(attributes(scope.attributes))
    row = (scope.name, scope.version, text, block.schema_url, scope.dropped_attributes_count,
           project)  # fmt: skip
    return (content_key(compact_json(row)), *row)


def _refer(out: Ingested, resource: Row, scope: Row) -> None:
    """Register the resource and scope stored rows refer to.

    Called only when a block kept rows, so a resource block without items (or whose
    items were all refused) stores nothing.
    """
    out.resources.setdefault(resource[0], resource)
    out.scopes.setdefault(scope[0], scope)


def _links(span: Any) -> str:
    if not span.links:
        return "[]"
    return compact_json([
        {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
         "trace_state": link.trace_state, "attributes": attributes(link.attributes)}
        for link in span.links
    ])  # fmt: skip


def _events(span: Any) -> str:
    """A span's events as canonical JSON (``[]`` for most spans, which have none)."""
    if not span.events:
        return "[]"
    return compact_json([
        {"name": e.name, "time_unix_nano": e.time_unix_nano,
         "attributes": attributes(e.attributes)}
        for e in span.events
    ])  # fmt: skip


def _names_capture(span: Any) -> bool:
    """Whether ``span`` has an event of the name SDK error captures use."""
    return any(e.name == CAPTURE_EVENT for e in span.events)


def span_accepted(span: Any) -> bool:
    """A span :func:`span_rows` stores: valid ids, times a signed 64-bit integer holds.

    The same test as the one written out in :func:`span_rows` (kept inline there, on
    the hot path); forwarding uses it to drop what that refused.
    """
    return bool(
        len(span.trace_id) == 16
        and len(span.span_id) == 8
        and any(span.trace_id)
        and max(span.start_time_unix_nano, span.end_time_unix_nano) <= _INT64
    )


def log_accepted(record: Any) -> bool:
    """A log record :func:`log_rows` stores (its test, for forwarding's use)."""
    return bool(max(record.time_unix_nano, record.observed_time_unix_nano) <= _INT64)


def span_rows(request: ExportTraceServiceRequest, project: str, received_ns: int) -> Ingested:
    out = Ingested([])
    rows = out.rows
    for rs in request.resource_spans:
        resource, service = _resource_ref(rs, project)
        for ss in rs.scope_spans:
            scope = _scope_ref(ss, project)
            kept = len(rows)
            for span in ss.spans:
                trace_id, span_id = span.trace_id, span.span_id
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                if span.events and not out.captures:
                    out.captures = _names_capture(span)
                if (
                    len(trace_id) != 16
                    or len(span_id) != 8
                    or not any(trace_id)
                    or max(start, end) > _INT64
                ):
                    out.rejected += 1
                    continue
                status = span.status
                rows.append((
                    project, service, trace_id.hex(), span_id.hex(),
                    span.parent_span_id.hex(), span.name, span.kind, start, end,
                    max(0, end - start), status.code, status.message,
                    compact_json(attributes(span.attributes)), _events(span),
                    "", "", received_ns, span.trace_state, _links(span), resource[0], scope[0],
                ))  # fmt: skip
            if len(rows) > kept:
                _refer(out, resource, scope)
    if out.rejected:
        out.message = f"{out.rejected} span(s) without valid ids or with times past 2262"
    return out


_BODY_KINDS = {
    "string_value": "string", "bool_value": "bool", "int_value": "int",
    "double_value": "double", "array_value": "array", "kvlist_value": "map",
    "bytes_value": "bytes",
}  # fmt: skip


def log_body(body: AnyValue) -> tuple[str, str]:
    """``(kind, text)`` of a log body: strings as they are, bytes as base64, the rest JSON.

    The kind (``string``, ``map``, ``array``, ``bytes``, ``int``, ``double``, ``bool``
    or ``empty``) is stored so a query can tell the string ``'{"a":1}'`` from a map.
    """
    kind = _BODY_KINDS.get(body.WhichOneof("value") or "", "empty")
    if kind == "string":
        return kind, body.string_value
    if kind == "empty":
        return kind, ""
    value = any_value(body, b64=True)
    return kind, value if kind == "bytes" else compact_json(value)


def log_rows(request: ExportLogsServiceRequest, project: str, received_ns: int) -> Ingested:
    out = Ingested([])
    rows = out.rows
    for rl in request.resource_logs:
        resource, service = _resource_ref(rl, project)
        for sl in rl.scope_logs:
            scope = _scope_ref(sl, project)
            kept = len(rows)
            for rec in sl.log_records:
                if rec.event_name:
                    out.captures = True
                observed = rec.observed_time_unix_nano
                if max(rec.time_unix_nano, observed) > _INT64:
                    out.rejected += 1
                    continue
                when = rec.time_unix_nano or observed or received_ns
                kind, text = log_body(rec.body)
                rows.append((
                    project, service, when, observed or received_ns,
                    rec.severity_number, rec.severity_text, text, rec.trace_id.hex(),
                    rec.span_id.hex(), compact_json(attributes(rec.attributes)),
                    "", "", received_ns, kind, resource[0], scope[0],
                ))  # fmt: skip
            if len(rows) > kept:
                _refer(out, resource, scope)
    if out.rejected:
        out.message = f"{out.rejected} log record(s) with times past 2262"
    return out


def tags_json(pairs: Iterable[KeyValue]) -> str:
    """Metric tags as canonical JSON with string values (tag filters compare text)."""
    out: dict[str, str] = {}
    for kv in pairs:
        value = any_value(kv.value)
        out[kv.key] = value if isinstance(value, str) else compact_json(value)
    return compact_json(out)


def _number(point: Any) -> float | None:
    kind = point.WhichOneof("value")
    if kind is None:
        return None
    value = float(getattr(point, kind))
    return value if math.isfinite(value) else None


def _opt(point: Any, name: str) -> float | None:
    if not point.HasField(name):
        return None
    value = float(getattr(point, name))
    return value if math.isfinite(value) else None


def _exponential_point(point: Any) -> tuple[ExpBuckets, str] | None:
    """An exponential histogram kept at its own scale (negatives fold into the zero count).

    ``None`` when it has too many buckets or its scale and offset give bounds a double
    cannot hold.
    """
    counts = tuple(point.positive.bucket_counts)
    if len(counts) > _MAX_EXP_BUCKETS or not -10 <= point.scale <= 20:
        return None
    zero = point.zero_count + sum(point.negative.bucket_counts)
    buckets = ExpBuckets(point.scale, zero, point.positive.offset, counts)
    explicit = buckets.explicit()
    if explicit is None or not _valid_buckets(*explicit) or max(zero, *counts, 0) > _INT64:
        return None
    return buckets, compact_json(list(counts))


def _valid_buckets(bounds: list[float], counts: list[int]) -> bool:
    return (
        len(counts) == len(bounds) + 1
        and all(math.isfinite(b) for b in bounds)
        and all(a < b for a, b in itertools.pairwise(bounds))
    )


def point_rows(request: ExportMetricsServiceRequest, project: str, received_ns: int) -> Ingested:
    """Metric data points as rows; the resource's attributes are kept beside the tags."""
    out = Ingested([])
    for rm in request.resource_metrics:
        service = _service(attributes(rm.resource.attributes))
        resource = tags_json(kv for kv in rm.resource.attributes if kv.key != "service.name")
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                _metric_rows(out, metric, (project, service, metric.name), (received_ns, resource))
    if out.rejected:
        out.message = f"{out.rejected} data point(s) without a finite value or valid buckets"
    return out


def _metric_rows(out: Ingested, metric: Any, head: tuple[str, str, str],
                 received: tuple[int, str]) -> None:  # fmt: skip
    """Add the rows of ``metric``'s data points to ``out``."""
    kind = metric.WhichOneof("data")
    if kind is None:
        return
    data = getattr(metric, kind)
    points = data.data_points
    if kind in ("gauge", "sum"):
        _number_rows(out, points, (*head, kind), data, metric.unit, received)
        return
    for p in points:
        row = _point_row(kind, data, p, head, metric.unit, received)
        if row is None:
            out.rejected += 1
        else:
            out.rows.append(row)
        if kind != "summary" and not out.exemplars and p.exemplars:
            out.exemplars = True


def _number_rows(out: Ingested, points: Iterable[Any], head: tuple[str, str, str, str],
                 data: Any, unit: str, received: tuple[int, str]) -> None:  # fmt: skip
    """Gauge and sum points: the bulk of most requests, so one tight loop for them."""
    received_ns, resource = received
    monotonic = int(head[3] == "sum" and data.is_monotonic)
    temporality = data.aggregation_temporality if head[3] == "sum" else 0
    rows = out.rows
    for p in points:
        if not out.exemplars and p.exemplars:
            out.exemplars = True
        when, start = p.time_unix_nano or received_ns, p.start_time_unix_nano
        value = _number(p)
        if max(when, start) > _INT64 or value is None:
            out.rejected += 1
            continue
        rows.append((*head, monotonic, temporality, unit, tags_json(p.attributes), when, start,
                     value, None, None, None, None, None, None, received_ns, resource,
                     None, None, None))  # fmt: skip


def _point_row(
    kind: str, data: Any, p: Any, head: tuple[str, str, str], unit: str, received: tuple[int, str]
) -> Row | None:
    """One data point as a row, or ``None`` if it cannot be stored faithfully."""
    received_ns, resource = received
    when = p.time_unix_nano or received_ns
    count = getattr(p, "count", 0)
    if max(when, p.start_time_unix_nano, count) > _INT64:
        return None
    tags = tags_json(p.attributes)
    tail = (unit, tags, when, p.start_time_unix_nano)
    if kind == "summary":  # keep count and sum
        return (*head, "summary", 0, CUMULATIVE, *tail, None, count, _finite(p.sum),
                None, None, None, None, received_ns, resource, None, None, None)  # fmt: skip
    stats = (count, _opt(p, "sum"), _opt(p, "min"), _opt(p, "max"))
    if kind == "exponential_histogram":
        exponential = _exponential_point(p)
        if exponential is None:
            return None
        buckets, counts_json = exponential
        return (*head, "histogram", 0, data.aggregation_temporality, *tail, None, *stats,
                None, counts_json, received_ns, resource, buckets.scale, buckets.zero,
                buckets.offset)  # fmt: skip
    bounds, counts = list(p.explicit_bounds), list(p.bucket_counts)
    if not _valid_buckets(bounds, counts):
        return None
    return (*head, "histogram", 0, data.aggregation_temporality, *tail, None, *stats,
            compact_json(bounds), compact_json(counts), received_ns, resource,
            None, None, None)  # fmt: skip


def point_accepted(kind: str, data: Any, point: Any) -> bool:
    """A data point of a ``kind`` metric that :func:`point_rows` stores (not refuses)."""
    return _point_row(kind, data, point, ("", "", ""), "", (0, "")) is not None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
