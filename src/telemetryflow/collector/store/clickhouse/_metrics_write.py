"""OTLP metric points (and the 001 API's JSON points) as rows of the exporter's tables.

Rows have the shapes the OpenTelemetry Collector's ``clickhouse`` exporter writes:
``ServiceName`` from the resource's ``service.name``, every attribute value as text
(arrays and maps as JSON), exemplars in the ``Exemplars`` Nested columns, histogram
``Min``/``Max``/``Sum`` as 0 when a point has none. One thing is ours: the resource
carries :data:`~telemetryflow.collector.store.clickhouse._tables.PROJECT_ATTRIBUTE`, set
from the caller's key and replacing any value a client sent.

Points the SQLite store refuses (no finite value, invalid buckets, times past 2262) are
left out here too, so both stores answer the same queries with the same numbers.

Times are written as each table's time columns hold them: exporter versions differ
(``DateTime`` in some, ``DateTime64(9)`` in others), so the store learns the column types
once when it opens (:func:`metric_time_columns`) and picks one encoder per column then,
not per value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from telemetryflow.collector.ingest._exemplars import point_exemplars
from telemetryflow.collector.ingest._otlp import (
    _exponential_point,
    _number,
    _opt,
    _valid_buckets,
    attributes,
    compact_json,
)
from telemetryflow.collector.store.clickhouse._metrics_ddl import METRIC_KINDS
from telemetryflow.collector.store.clickhouse._seam import ClickHouseConnection
from telemetryflow.collector.store.clickhouse._tables import PROJECT_ATTRIBUTE, Tables
from telemetryflow.collector.store.sqlite._schema import POINT_COLUMNS

__all__ = [
    "NANOSECONDS",
    "TimeColumns",
    "api_metric_rows",
    "ch_time",
    "metric_rows",
    "metric_time_columns",
    "text_map",
    "time_encoder",
    "whole_seconds",
]

Row = dict[str, Any]
TimeEncoder = Callable[[int], str | float | int]
"""Unix nanoseconds as a time column's ``JSONEachRow`` value."""
_INT64 = 2**63 - 1
_DELTA = 1
_NS = 1_000_000_000
_TIME_COLUMNS = ("StartTimeUnix", "TimeUnix", "Exemplars.TimeUnix")
_SECONDS_TYPE = re.compile(r"\bDateTime\b")
"""``DateTime`` (whole seconds), alone or inside ``Array(...)``; never ``DateTime64``."""


def ch_time(ns: int) -> str | float:
    """A ``DateTime64(9)`` value for ``JSONEachRow`` that keeps every nanosecond.

    ClickHouse reads ``"seconds.nanoseconds"`` text exactly, but reads short digit
    strings as dates; times before 2001 (a point without a start time is at 0) are sent
    as a number of seconds instead.
    """
    if ns >= 10**18:
        seconds, nanos = divmod(ns, 10**9)
        return f"{seconds}.{nanos:09d}"
    return ns / 1e9 if ns else 0


def whole_seconds(ns: int) -> int:
    """A ``DateTime`` value: whole seconds (ClickHouse refuses a fraction there)."""
    return ns // _NS


def time_encoder(column_type: str) -> TimeEncoder:
    """How to write a time column of ``column_type`` (as ``system.columns`` names it).

    Whole seconds for ``DateTime``; :func:`ch_time` for ``DateTime64`` of any precision
    (ClickHouse drops the digits past the column's own, as a coarser clock would) and for
    a type we do not know.
    """
    return whole_seconds if _SECONDS_TYPE.search(column_type) else ch_time


class TimeColumns(NamedTuple):
    """The encoders of one metric table's time columns."""

    start: TimeEncoder = ch_time
    time: TimeEncoder = ch_time
    exemplar: TimeEncoder = ch_time


NANOSECONDS = TimeColumns()
"""The exporter's current tables: ``DateTime64(9)`` everywhere."""


def metric_time_columns(ch: ClickHouseConnection, tables: Tables) -> dict[str, TimeColumns]:
    """Per metric table (keyed by the :class:`Tables` field), how its times are written.

    One ``system.columns`` query, by column name, when the store opens.
    """
    rows = ch.query(
        "SELECT table, name, type FROM system.columns WHERE database = {db:String} "
        "AND has({tables:Array(String)}, table) AND has({columns:Array(String)}, name)",
        {"db": tables.database, "tables": [getattr(tables, kind) for kind in METRIC_KINDS],
         "columns": list(_TIME_COLUMNS)},
    )  # fmt: skip
    types: dict[tuple[str, str], str] = {(table, name): type_ for table, name, type_ in rows}
    return {
        kind: TimeColumns(*(
            time_encoder(types.get((getattr(tables, kind), column), ""))
            for column in _TIME_COLUMNS
        ))
        for kind in METRIC_KINDS
    }  # fmt: skip


def text_map(values: Mapping[str, Any]) -> dict[str, str]:
    """Attribute values as the exporter stores them: text, arrays and maps as JSON."""
    return {k: v if isinstance(v, str) else compact_json(v) for k, v in values.items()}


def _empty_rows() -> dict[str, list[Row]]:
    return {kind: [] for kind in METRIC_KINDS}


def metric_rows(
    request: ExportMetricsServiceRequest,
    project: str,
    received_ns: int,
    times: Mapping[str, TimeColumns] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Rows per metric table (keyed by the :class:`Tables` field name) for ``request``;
    ``times`` from :func:`metric_time_columns` (``DateTime64(9)`` when not given)."""
    times = times or {}
    out = _empty_rows()
    for rm in request.resource_metrics:
        resource = text_map(attributes(rm.resource.attributes))
        resource[PROJECT_ATTRIBUTE] = project
        head = {
            "ResourceAttributes": resource,
            "ResourceSchemaUrl": rm.schema_url,
            "ServiceName": resource.get("service.name", ""),
        }
        for sm in rm.scope_metrics:
            scope = {
                **head,
                "ScopeName": sm.scope.name,
                "ScopeVersion": sm.scope.version,
                "ScopeAttributes": text_map(attributes(sm.scope.attributes)),
                "ScopeDroppedAttrCount": sm.scope.dropped_attributes_count,
                "ScopeSchemaUrl": sm.schema_url,
            }
            for metric in sm.metrics:
                _metric(out, metric, scope, received_ns, times)
    return out


def _metric(out: dict[str, list[Row]], metric: Any, scope: Row, received_ns: int,
            times: Mapping[str, TimeColumns]) -> None:  # fmt: skip
    kind = metric.WhichOneof("data")
    if kind is None:
        return
    start_at, at, exemplar_at = times.get(kind, NANOSECONDS)
    data = getattr(metric, kind)
    named = {
        **scope,
        "MetricName": metric.name,
        "MetricDescription": metric.description,
        "MetricUnit": metric.unit,
    }
    for point in data.data_points:
        when = point.time_unix_nano or received_ns
        if max(when, point.start_time_unix_nano, getattr(point, "count", 0)) > _INT64:
            continue
        base = {
            **named,
            "Attributes": text_map(attributes(point.attributes)),
            "StartTimeUnix": start_at(point.start_time_unix_nano),
            "TimeUnix": at(when),
            "Flags": point.flags,
        }
        row = _BUILDERS[kind](data, point, base)
        if row is not None:
            if kind != "summary":
                row.update(_exemplars(point, received_ns, exemplar_at))
            out[kind].append(row)


def _number_row(data: Any, point: Any, base: Row) -> Row | None:
    value = _number(point)
    if value is None:
        return None
    return {**base, "Value": value}


def _sum_row(data: Any, point: Any, base: Row) -> Row | None:
    row = _number_row(data, point, base)
    if row is not None:
        row["AggregationTemporality"] = data.aggregation_temporality
        row["IsMonotonic"] = bool(data.is_monotonic)
    return row


def _stats(data: Any, point: Any, base: Row) -> Row:
    return {
        **base,
        "Count": point.count,
        "Sum": _opt(point, "sum") or 0.0,
        "Min": _opt(point, "min") or 0.0,
        "Max": _opt(point, "max") or 0.0,
        "AggregationTemporality": data.aggregation_temporality,
    }


def _histogram_row(data: Any, point: Any, base: Row) -> Row | None:
    bounds, counts = list(point.explicit_bounds), list(point.bucket_counts)
    if not _valid_buckets(bounds, counts):
        return None
    return {**_stats(data, point, base), "ExplicitBounds": bounds, "BucketCounts": counts}


def _exponential_row(data: Any, point: Any, base: Row) -> Row | None:
    if _exponential_point(point) is None:  # the bounds a double cannot hold, or too many
        return None
    return {
        **_stats(data, point, base),
        "Scale": point.scale,
        "ZeroCount": point.zero_count,
        "PositiveOffset": point.positive.offset,
        "PositiveBucketCounts": list(point.positive.bucket_counts),
        "NegativeOffset": point.negative.offset,
        "NegativeBucketCounts": list(point.negative.bucket_counts),
    }


def _summary_row(data: Any, point: Any, base: Row) -> Row | None:
    quantiles = [q for q in point.quantile_values if math.isfinite(q.value)]
    total = point.sum if math.isfinite(point.sum) else 0.0
    return {
        **base,
        "Count": point.count,
        "Sum": total,
        "ValueAtQuantiles.Quantile": [q.quantile for q in quantiles],
        "ValueAtQuantiles.Value": [q.value for q in quantiles],
    }


_BUILDERS = {
    "gauge": _number_row,
    "sum": _sum_row,
    "histogram": _histogram_row,
    "exponential_histogram": _exponential_row,
    "summary": _summary_row,
}


def _exemplars(point: Any, received_ns: int, at: TimeEncoder) -> Row:
    """The ``Exemplars.*`` columns: exemplars with a trace id, the newest few per point."""
    kept = point_exemplars(point.exemplars, (), received_ns) if point.exemplars else []
    # each kept row: (time_ns, value, trace_id, span_id, attributes JSON, received_ns)
    return {
        "Exemplars.FilteredAttributes": [text_map(_json_object(r[4])) for r in kept],
        "Exemplars.TimeUnix": [at(r[0]) for r in kept],
        "Exemplars.Value": [r[1] for r in kept],
        "Exemplars.TraceId": [r[2] for r in kept],
        "Exemplars.SpanId": [r[3] for r in kept],
    }


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def api_metric_rows(
    rows: Iterable[tuple[Any, ...]], times: Mapping[str, TimeColumns] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The points of ``POST /v1/metrics/report`` and ``/batch`` as exporter rows.

    ``rows`` are what :func:`~telemetryflow.collector.ingest._metrics_api.report_row` and
    ``batch_rows`` make for the SQLite store: a ``counter`` becomes a monotonic delta
    sum, ``gauge``/``timing``/``distribution`` a gauge (raw values, aggregated exactly).
    ``times`` as for :func:`metric_rows`.
    """
    out = _empty_rows()
    sums, gauges = ((times or {}).get(kind, NANOSECONDS) for kind in ("sum", "gauge"))
    for values in rows:
        point = dict(zip(POINT_COLUMNS, values, strict=False))
        is_sum = point["kind"] == "sum"
        start_at, at, _ = sums if is_sum else gauges
        resource = {PROJECT_ATTRIBUTE: point["project"]}
        if point["service"]:
            resource["service.name"] = point["service"]
        row: Row = {
            "ResourceAttributes": resource,
            "ServiceName": point["service"],
            "MetricName": point["name"],
            "MetricUnit": point["unit"],
            "Attributes": _json_object(point["tags"]),
            "StartTimeUnix": start_at(point["start_ns"]),
            "TimeUnix": at(point["time_ns"]),
            "Value": point["value"],
        }
        if is_sum:
            row["AggregationTemporality"] = point["temporality"] or _DELTA
            row["IsMonotonic"] = bool(point["monotonic"])
            out["sum"].append(row)
        else:
            out["gauge"].append(row)
    return out
