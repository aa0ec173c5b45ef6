"""Metric queries over the exporter's ClickHouse tables, answered as the SQLite store answers.

Parameters are read and checked by the same code as the SQLite store's
(:class:`~telemetryflow.collector.query._metric_ask.MetricAsk`),
the answer is rendered by the same code, and every aggregation runs in ClickHouse
(:mod:`~telemetryflow.collector.store.clickhouse._metrics_sql`): what comes back is one
row per series and step, which only needs to be put into the answer's shape (and, for
explicit histograms, the percentile found in its merged buckets, as SQLite finds it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.ingest._exemplars import MAX_PER_SERIES
from telemetryflow.collector.ingest._otlp import compact_json
from telemetryflow.collector.query._aggregate import Accumulator, Aggregation, histogram_quantile
from telemetryflow.collector.query._metric_ask import (
    ENV_MAX_POINTS,
    MAX_BUCKETS,
    NARROW,
    Found,
    Key,
    MetricAsk,
    QueryLimits,
    bucket,
    series_id,
    too_many,
)
from telemetryflow.collector.query._metric_names import (
    DEFAULT_WINDOW_S,
    NAMES_PARAMS,
    metric_type,
)
from telemetryflow.collector.query._params import Params, iso
from telemetryflow.collector.store.clickhouse._metrics_sql import WHOLE, ChParts
from telemetryflow.collector.store.clickhouse._rollup_sql import MINUTE_NS, verified_sql
from telemetryflow.collector.store.clickhouse._seam import ClickHouseConnection
from telemetryflow.collector.store.clickhouse._tables import (
    PROJECT_ATTRIBUTE,
    Tables,
    project_clause,
)

__all__ = ["query_metric_names", "query_metrics"]

_HIDDEN = ("service.name", PROJECT_ATTRIBUTE)
_GAUGE, _PLAIN_SUM, _CUM_SUM, _HIST, _EXP, _SUMMARY = range(6)


def query_metrics(
    ch: ClickHouseConnection,
    tables: Tables,
    project: str,
    params: Mapping[str, Any],
    limits: QueryLimits,
    rollup: bool = False,
) -> dict[str, Any]:
    """Answer ``GET/POST /v1/metrics/query`` for ``project`` from ClickHouse.

    ``rollup``: the per-minute rollup table exists; explicit histograms read their
    verified whole minutes from it (:mod:`._rollup_sql`), the same answer for less.
    """
    ask = MetricAsk.read(project, params)
    if not ask.mine:
        return ask.answer()
    flt, agg = ask.flt, ask.agg
    parts = ChParts(flt, tables, agg.q)
    covered = _survey(ch, parts, limits)
    found: Found = ({}, {})
    whole = agg.name == "quantile" and flt.step is not None
    if any(covered[:3]):
        _raw_values(ch, parts, agg, found, covered)
    hist_q: dict[tuple[Key, int], float | None] = {}
    for kind, sql in ((_SUMMARY, parts.summaries), (_EXP, parts.exponential)):
        if covered[kind]:
            _histograms(ch, parts, sql(whole), found, hist_q)
    if covered[_HIST]:
        rolled = rollup and _verified(ch, parts)
        _histograms(ch, parts, parts.explicit(whole, rolled), found, hist_q, agg.q)
    for (key, index), value in hist_q.items():  # buckets, when a series has them, decide
        found[0][key][index].quantile = value
    exemplars: dict[str, list[dict[str, Any]]] = {}
    if ask.exemplars and found[0]:
        exemplars = _exemplars(ch, parts)
    return ask.answer(found, exemplars, limits)


def _survey(ch: ClickHouseConnection, parts: ChParts, limits: QueryLimits) -> list[int]:
    """Points covered per source; refuses a query covering too many points.

    The coarse count (no project or tag filter, so no map is read) comes first: when
    even it stays within the limit, the query does too, and a source it finds empty
    has nothing to aggregate. Only past the limit are the window's own points counted.
    """
    cap = limits.max_points
    rows = ch.query(parts.survey(cap, coarse=True), parts.params)
    if not rows:  # no metric table to count in (a read-only store beside none)
        return [0] * (_SUMMARY + 1)
    covered = [int(n) for n in rows[0]]
    if sum(covered) > cap:
        covered = [int(n) for n in ch.query(parts.survey(cap), parts.params)[0]]
    if sum(covered) > limits.max_points:
        raise BadRequestError(
            422,
            f"the query covers more than {limits.max_points} points (the collector's "
            f"limit, {ENV_MAX_POINTS}); {NARROW}",
        )
    return covered


def _verified(ch: ClickHouseConnection, parts: ChParts) -> bool:
    """Set ``verified`` to the whole minutes of the window (each inside one step) that
    the rollup holds all the points of; ``True`` when there is any."""
    flt = parts.flt
    first = -(-flt.since // MINUTE_NS)
    end = (flt.until + 1) // MINUTE_NS  # minute m is whole when its last ns <= until
    step = flt.step
    if end <= first or (step is not None and step < MINUTE_NS):
        return False
    args = {"name": flt.name, "rlo": first, "rhi": end}
    minutes = [int(row[0]) for row in ch.query(verified_sql(parts.tables), args)]
    if step is not None:  # a minute split between two steps is read raw
        minutes = [
            m for m in minutes
            if (m * MINUTE_NS - flt.since) // step == ((m + 1) * MINUTE_NS - 1 - flt.since) // step
        ]  # fmt: skip
    parts.verified = minutes
    return bool(minutes)


def _key(parts: ChParts, row: list[Any]) -> Key:
    """A series key as the SQLite store's: ``(service, tags JSON)`` or the group values."""
    if parts.flt.group_by is None:
        return (row[0], compact_json(row[1]))
    return tuple(row[: parts.width])


def _add_resources(found: Found, key: Key, resources: list[dict[str, str]]) -> None:
    """Resources as the SQLite store keeps them: without ``service.name`` (a column
    there) and without the project attribute (ours, not the application's)."""
    found[1].setdefault(key, set()).update(
        compact_json({k: v for k, v in r.items() if k not in _HIDDEN}) for r in resources
    )


def _raw_values(
    ch: ClickHouseConnection, parts: ChParts, agg: Aggregation, found: Found, covered: list[int]
) -> None:
    values = parts.raw_values(bool(covered[_GAUGE]), bool(covered[_PLAIN_SUM]),
                              bool(covered[_CUM_SUM]))  # fmt: skip
    quantile = agg.name == "quantile"
    whole = quantile and parts.flt.step is not None
    rows = ch.query(parts.raw_stats(values, quantile, whole, MAX_BUCKETS), parts.params)
    if len(rows) > MAX_BUCKETS:
        raise too_many(len({_key(parts, row) for row in rows}))
    width = parts.width
    for row in rows:
        key, index = _key(parts, row), int(row[width])
        acc = bucket(found[0], key, index)
        rs, count, total, low, high, last_t, last_v, exact = row[width + 1 : width + 9]
        if index != WHOLE:
            _add_resources(found, key, rs)
            acc.add_stats(count, total, low, high)
            acc.add_last(int(last_t), last_v)
        acc.quantile = exact


def _histograms(
    ch: ClickHouseConnection,
    parts: ChParts,
    sql: str,
    found: Found,
    hist_q: dict[tuple[Key, int], float | None],
    q: float | None = None,
) -> None:
    """Histogram-like rows, one per series and bucket, added into their accumulators;
    with ``q``, explicit ones whose percentile is found here in their buckets."""
    width = parts.width
    for row in ch.query(sql, parts.params):
        key, index = _key(parts, row), int(row[width])
        rs, count, summed, low, high, estimate = row[width + 1 : width + 7]
        if q is not None:
            estimate = _clamp(histogram_quantile(q, estimate, row[width + 7]), low, high)
        acc: Accumulator = bucket(found[0], key, index)
        if index != WHOLE:
            _add_resources(found, key, rs)
            acc._add_hist_stats(count, summed, low, high)
        hist_q[(key, index)] = estimate


def _clamp(value: float | None, low: float | None, high: float | None) -> float | None:
    """A histogram percentile kept inside the points' min/max (the true one lies there)."""
    if value is None:
        return None
    if low is not None and value < low:
        return float(low)
    if high is not None and value > high:
        return float(high)
    return value


def _exemplars(ch: ClickHouseConnection, parts: ChParts) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    width = parts.width
    for row in ch.query(parts.exemplars(MAX_PER_SERIES), parts.params):
        time_ns, value, trace_id, span_id = row[width:]
        name = series_id(parts.flt, _key(parts, row))
        found.setdefault(name, []).append({
            "time": iso(int(time_ns)), "time_unix_nano": int(time_ns), "value": value,
            "trace_id": trace_id, "span_id": span_id,
        })  # fmt: skip
    return found


# -- the catalogue ---------------------------------------------------------------------
_KIND_SQL = {
    "gauge": "'gauge' AS kind, toUInt8(0) AS monotonic",
    "sum": "'sum' AS kind, toUInt8(IsMonotonic) AS monotonic",
    "histogram": "'histogram' AS kind, toUInt8(0) AS monotonic",
    "exponential_histogram": "'histogram' AS kind, toUInt8(0) AS monotonic",
    "summary": "'summary' AS kind, toUInt8(0) AS monotonic",
}


def query_metric_names(
    ch: ClickHouseConnection,
    tables: Tables,
    project: str,
    params: Mapping[str, Any],
    retention_s: float,
) -> dict[str, Any]:
    """Answer ``GET /v1/metrics/names`` from ClickHouse, as the SQLite store answers it."""
    checked = Params(params, NAMES_PARAMS)
    default = retention_s if retention_s > 0 else DEFAULT_WINDOW_S
    since, until = checked.time_range(("window",), f"{int(default)}s")
    limit = checked.integer("limit", 1000)
    if checked.text("project_name") not in (None, project):
        return {"metrics": [], "count": 0}
    where = [project_clause(), "TimeUnix >= fromUnixTimestamp64Nano({since:Int64})",
             "TimeUnix <= fromUnixTimestamp64Nano({until:Int64})"]  # fmt: skip
    args: dict[str, Any] = {"project": project, "default_project": tables.default_project,
                            "since": since, "until": until, "limit": limit}  # fmt: skip
    service = checked.text("service")
    if service is not None:
        where.append("ServiceName = {service:String}")
        args["service"] = service
    prefix = checked.text("prefix")
    if prefix:
        where.append("startsWith(MetricName, {prefix:String})")
        args["prefix"] = prefix
    t = "toUnixTimestamp64Nano(toDateTime64(TimeUnix, 9))"
    union = " UNION ALL ".join(
        f"SELECT MetricName, {kind}, MetricUnit, ServiceName, Attributes, "  # noqa: S608
        f"{t} AS t FROM {tables.qualified(getattr(tables, table))} WHERE {' AND '.join(where)}"
        for table, kind in _KIND_SQL.items()
    )
    sql = (
        "SELECT MetricName, argMax(kind, t), argMax(monotonic, t), argMax(MetricUnit, t), "  # noqa: S608
        f"uniqExact(ServiceName, Attributes), count(), max(t) FROM ({union}) "
        "GROUP BY MetricName ORDER BY MetricName LIMIT {limit:UInt32}"
    )
    metrics = [
        {
            "name": name,
            "type": metric_type(kind, monotonic),
            "unit": unit,
            "series": int(series),
            "points": int(points),
            "last_seen": iso(int(last)),
            "last_seen_unix_nano": int(last),
        }
        for name, kind, monotonic, unit, series, points, last in ch.query(sql, args)
    ]
    return {"metrics": metrics, "count": len(metrics)}
