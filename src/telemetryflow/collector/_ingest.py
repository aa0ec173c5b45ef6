"""OTLP export requests to database rows.

Each ``*_rows`` function returns ``(rows, rejected, message)``: items that cannot be
stored (a span without a valid id, a metric without data) are counted so the
receiver can answer with OTLP partial success instead of failing the whole request.
"""

from __future__ import annotations

import itertools
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

from telemetryflow.collector._exponential import ExpBuckets

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
_INT64 = 2**63 - 1  # OTLP times and counts are uint64; SQLite integers are int64
_MAX_EXP_BUCKETS = 4096


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
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                if (
                    len(span.trace_id) != 16
                    or len(span.span_id) != 8
                    or not any(span.trace_id)
                    or max(start, end) > _INT64
                ):
                    rejected += 1
                    continue
                events = [
                    {"name": e.name, "time_unix_nano": e.time_unix_nano,
                     "attributes": attributes(e.attributes)}
                    for e in span.events
                ]  # fmt: skip
                rows.append((
                    project, service, span.trace_id.hex(), span.span_id.hex(),
                    span.parent_span_id.hex(), span.name, span.kind, start, end,
                    max(0, end - start), span.status.code, span.status.message,
                    compact_json(attributes(span.attributes)), compact_json(events),
                    resource_json, scope, received_ns,
                ))  # fmt: skip
    message = f"{rejected} span(s) without valid ids or with times past 2262" if rejected else ""
    return rows, rejected, message


def log_rows(request: ExportLogsServiceRequest, project: str, received_ns: int) -> Parsed:
    rows: list[Row] = []
    rejected = 0
    for rl in request.resource_logs:
        resource = attributes(rl.resource.attributes)
        service, resource_json = _service(resource), compact_json(resource)
        for sl in rl.scope_logs:
            scope = sl.scope.name
            for rec in sl.log_records:
                if max(rec.time_unix_nano, rec.observed_time_unix_nano) > _INT64:
                    rejected += 1
                    continue
                when = rec.time_unix_nano or rec.observed_time_unix_nano or received_ns
                body = any_value(rec.body)
                text = body if isinstance(body, str) else compact_json(body)
                rows.append((
                    project, service, when, rec.observed_time_unix_nano or received_ns,
                    rec.severity_number, rec.severity_text, text, rec.trace_id.hex(),
                    rec.span_id.hex(), compact_json(attributes(rec.attributes)),
                    resource_json, scope, received_ns,
                ))  # fmt: skip
    return rows, rejected, f"{rejected} log record(s) with times past 2262" if rejected else ""


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


def point_rows(request: ExportMetricsServiceRequest, project: str, received_ns: int) -> Parsed:
    """Metric data points as rows; the resource's attributes are kept beside the tags."""
    rows: list[Row] = []
    rejected = 0
    for rm in request.resource_metrics:
        service = _service(attributes(rm.resource.attributes))
        resource = _tags(kv for kv in rm.resource.attributes if kv.key != "service.name")
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                made, bad = _metric_rows(metric, project, service, (received_ns, resource))
                rows.extend(made)
                rejected += bad
    message = f"{rejected} data point(s) without a finite value or valid buckets"
    message = message if rejected else ""
    return rows, rejected, message


def _metric_rows(
    metric: Any, project: str, service: str, received: tuple[int, str]
) -> tuple[list[Row], int]:
    kind = metric.WhichOneof("data")
    if kind is None:
        return [], 0
    data = getattr(metric, kind)
    rows: list[Row] = []
    rejected = 0
    for p in data.data_points:
        row = _point_row(kind, data, p, (project, service, metric.name), metric.unit, received)
        if row is None:
            rejected += 1
        else:
            rows.append(row)
    return rows, rejected


def _point_row(
    kind: str, data: Any, p: Any, head: tuple[str, str, str], unit: str, received: tuple[int, str]
) -> Row | None:
    """One data point as a row, or ``None`` if it cannot be stored faithfully."""
    received_ns, resource = received
    when = p.time_unix_nano or received_ns
    count = getattr(p, "count", 0)
    if max(when, p.start_time_unix_nano, count) > _INT64:
        return None
    tags = _tags(p.attributes)
    tail = (unit, tags, when, p.start_time_unix_nano)
    if kind in ("gauge", "sum"):
        value = _number(p)
        if value is None:
            return None
        monotonic = int(kind == "sum" and data.is_monotonic)
        temporality = data.aggregation_temporality if kind == "sum" else 0
        return (*head, kind, monotonic, temporality, *tail, value,
                None, None, None, None, None, None, received_ns, resource,
                None, None, None)  # fmt: skip
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


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
