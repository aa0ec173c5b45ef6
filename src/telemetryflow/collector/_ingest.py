"""OTLP export requests to database rows.

Each ``*_rows`` function returns ``(rows, rejected, message)``: items that cannot be
stored (a span without a valid id, a metric without data) are counted so the
receiver can answer with OTLP partial success instead of failing the whole request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = [
    "Parsed",
    "any_value",
    "attributes",
    "compact_json",
    "log_rows",
    "point_rows",
    "span_rows",
]

Row = tuple[Any, ...]
Parsed = tuple[list[Row], int, str]

DELTA = 1
CUMULATIVE = 2


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as plain JSON-able Python."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    result = getattr(value, kind)
    if isinstance(result, float) and not math.isfinite(result):
        return str(result)
    return result


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


def _service(resource_attrs: dict[str, Any]) -> str:
    name = resource_attrs.get("service.name")
    return name if isinstance(name, str) else ""


def span_rows(request: ExportTraceServiceRequest, project: str, received_ns: int) -> Parsed:
    rows: list[Row] = []
    rejected = 0
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        service, resource_json = _service(resource), compact_json(resource)
        for ss in rs.scope_spans:
            scope = ss.scope.name
            for span in ss.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8 or not any(span.trace_id):
                    rejected += 1
                    continue
                events = [
                    {"name": e.name, "time_unix_nano": e.time_unix_nano,
                     "attributes": attributes(e.attributes)}
                    for e in span.events
                ]  # fmt: skip
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                rows.append((
                    project, service, span.trace_id.hex(), span.span_id.hex(),
                    span.parent_span_id.hex(), span.name, span.kind, start, end,
                    max(0, end - start), span.status.code, span.status.message,
                    compact_json(attributes(span.attributes)), compact_json(events),
                    resource_json, scope, received_ns,
                ))  # fmt: skip
    message = f"{rejected} span(s) without a valid trace_id/span_id" if rejected else ""
    return rows, rejected, message


def log_rows(request: ExportLogsServiceRequest, project: str, received_ns: int) -> Parsed:
    rows: list[Row] = []
    for rl in request.resource_logs:
        resource = attributes(rl.resource.attributes)
        service, resource_json = _service(resource), compact_json(resource)
        for sl in rl.scope_logs:
            scope = sl.scope.name
            for rec in sl.log_records:
                when = rec.time_unix_nano or rec.observed_time_unix_nano or received_ns
                body = any_value(rec.body)
                text = body if isinstance(body, str) else compact_json(body)
                rows.append((
                    project, service, when, rec.observed_time_unix_nano or received_ns,
                    rec.severity_number, rec.severity_text, text, rec.trace_id.hex(),
                    rec.span_id.hex(), compact_json(attributes(rec.attributes)),
                    resource_json, scope, received_ns,
                ))  # fmt: skip
    return rows, 0, ""


def _tags(pairs: Iterable[KeyValue]) -> str:
    """Metric tags as canonical JSON with string values (tag filters compare text)."""
    out: dict[str, str] = {}
    for key, value in attributes(pairs).items():
        out[key] = value if isinstance(value, str) else compact_json(value)
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


def _exponential_buckets(point: Any) -> tuple[list[float], list[int]]:
    """Map an exponential histogram onto explicit upper bounds (negatives fold into <=0)."""
    base = 2.0 ** (2.0**-point.scale)
    offset = point.positive.offset
    low = sum(point.negative.bucket_counts) + point.zero_count
    bounds = [0.0, base**offset]
    counts = [low, 0]
    for i, count in enumerate(point.positive.bucket_counts):
        bounds.append(base ** (offset + i + 1))
        counts.append(count)
    counts.append(0)
    return bounds, counts


def point_rows(request: ExportMetricsServiceRequest, project: str, received_ns: int) -> Parsed:
    rows: list[Row] = []
    rejected = 0
    for rm in request.resource_metrics:
        service = _service(attributes(rm.resource.attributes))
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                made, bad = _metric_rows(metric, project, service, received_ns)
                rows.extend(made)
                rejected += bad
    message = f"{rejected} data point(s) without a finite value or valid buckets"
    message = message if rejected else ""
    return rows, rejected, message


def _metric_rows(
    metric: Any, project: str, service: str, received_ns: int
) -> tuple[list[Row], int]:
    kind = metric.WhichOneof("data")
    if kind is None:
        return [], 0
    data = getattr(metric, kind)
    rows: list[Row] = []
    rejected = 0
    head = (project, service, metric.name)
    for p in data.data_points:
        when = p.time_unix_nano or received_ns
        tags = _tags(p.attributes)
        if kind in ("gauge", "sum"):
            value = _number(p)
            if value is None:
                rejected += 1
                continue
            monotonic = int(kind == "sum" and data.is_monotonic)
            temporality = data.aggregation_temporality if kind == "sum" else 0
            rows.append((*head, kind, monotonic, temporality, metric.unit, tags, when,
                         p.start_time_unix_nano, value, None, None, None, None, None, None,
                         received_ns))  # fmt: skip
        elif kind in ("histogram", "exponential_histogram"):
            if kind == "histogram":
                bounds, counts = list(p.explicit_bounds), list(p.bucket_counts)
                if len(counts) != len(bounds) + 1:
                    rejected += 1
                    continue
            else:
                bounds, counts = _exponential_buckets(p)
            rows.append((*head, "histogram", 0, data.aggregation_temporality, metric.unit,
                         tags, when, p.start_time_unix_nano, None, p.count, _opt(p, "sum"),
                         _opt(p, "min"), _opt(p, "max"), compact_json(bounds),
                         compact_json(counts), received_ns))  # fmt: skip
        else:  # summary: keep count and sum
            rows.append((*head, "summary", 0, CUMULATIVE, metric.unit, tags, when,
                         p.start_time_unix_nano, None, p.count, p.sum, None, None, None,
                         None, received_ns))  # fmt: skip
    return rows, rejected
