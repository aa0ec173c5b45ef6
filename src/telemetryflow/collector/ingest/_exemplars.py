"""Metric exemplars: rows from OTLP data points, and the newest of them per query series.

An exemplar is one measurement a data point summarises, kept with the trace and span
it was recorded in, so a chart can link a value to the request behind it. Only
exemplars carrying a valid trace id are kept (the rest link nowhere), and at most
:data:`MAX_PER_POINT` of each point (the newest): an SDK reservoir may hold one per
histogram bucket, and a point's exemplars only need to show where its trace lies.

A row names its series as ``metric_points`` does, so the metric query's filters and
series keys (:class:`~telemetryflow.collector.query._metrics_sql.SqlParts`) select them.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from telemetryflow.collector.ingest._otlp import attributes, compact_json, tags_json
from telemetryflow.collector.query._metrics_sql import MetricFilter, SqlParts
from telemetryflow.collector.query._params import iso

__all__ = [
    "MAX_PER_POINT",
    "MAX_PER_SERIES",
    "exemplar_rows",
    "point_exemplars",
    "series_exemplars",
]

Row = tuple[Any, ...]
MAX_PER_POINT = 8
"""Most exemplars kept from one data point (the newest)."""
MAX_PER_SERIES = 50
"""Most exemplars a query returns per series (the newest in the window)."""
_MAX_ATTRIBUTES_CHARS = 2048
_INT64 = 2**63 - 1
_WITH_EXEMPLARS = ("gauge", "sum", "histogram", "exponential_histogram")


def exemplar_rows(
    request: ExportMetricsServiceRequest, project: str, received_ns: int
) -> list[Row]:
    """The exemplars of every data point in ``request``, as ``metric_exemplars`` rows."""
    out: list[Row] = []
    for rm in request.resource_metrics:
        resource_attrs = attributes(rm.resource.attributes)
        name = resource_attrs.get("service.name")
        service = name if isinstance(name, str) else ""
        resource = tags_json(kv for kv in rm.resource.attributes if kv.key != "service.name")
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind not in _WITH_EXEMPLARS:
                    continue
                for point in getattr(metric, kind).data_points:
                    if not point.exemplars:
                        continue
                    head = (project, service, metric.name, tags_json(point.attributes), resource)
                    out.extend(point_exemplars(point.exemplars, head, received_ns))
    return out


def point_exemplars(exemplars: Iterable[Any], head: Row, received_ns: int) -> list[Row]:
    rows: list[Row] = []
    for ex in exemplars:
        value = _value(ex)
        if (
            value is None
            or len(ex.trace_id) != 16
            or not any(ex.trace_id)
            or ex.time_unix_nano > _INT64
        ):
            continue
        extra = compact_json(attributes(ex.filtered_attributes))
        if len(extra) > _MAX_ATTRIBUTES_CHARS:
            extra = "{}"
        span_id = ex.span_id.hex() if len(ex.span_id) == 8 else ""
        when = ex.time_unix_nano or received_ns
        rows.append((*head, when, value, ex.trace_id.hex(), span_id, extra, received_ns))
    rows.sort(key=lambda row: row[5])
    return rows[-MAX_PER_POINT:]


def _value(exemplar: Any) -> float | None:
    kind = exemplar.WhichOneof("value")
    if kind is None:
        return None
    value = float(getattr(exemplar, kind))
    return value if math.isfinite(value) else None


def series_exemplars(
    conn: sqlite3.Connection, flt: MetricFilter, series_name: Callable[[tuple[Any, ...]], str]
) -> dict[str, list[dict[str, Any]]]:
    """The newest :data:`MAX_PER_SERIES` exemplars in the window of each query series.

    ``series_name`` turns a series key (as :class:`SqlParts` groups rows) into the
    identity the rendered series is sorted by, so exemplars join their series.
    """
    parts = SqlParts(flt)
    where, args = parts.window()
    keys = parts.key_names
    sql = (
        f"SELECT {keys}, time_ns, value, trace_id, span_id FROM ("  # noqa: S608
        f"SELECT *, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY time_ns DESC, id DESC) "
        f"AS n FROM (SELECT {parts.keys}, time_ns, value, trace_id, span_id, id "
        f"FROM metric_exemplars WHERE {where})) WHERE n <= ? ORDER BY time_ns, id"
    )
    found: dict[str, list[dict[str, Any]]] = {}
    width = parts.width
    for row in conn.execute(sql, [*args, MAX_PER_SERIES]):
        time_ns, value, trace_id, span_id = row[width:]
        found.setdefault(series_name(tuple(row[:width])), []).append({
            "time": iso(time_ns), "time_unix_nano": time_ns, "value": value,
            "trace_id": trace_id, "span_id": span_id,
        })  # fmt: skip
    return found
