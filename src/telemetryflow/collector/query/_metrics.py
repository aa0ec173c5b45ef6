"""Metric queries in SQLite: check the size, aggregate, add up histograms.

The parameters are read and the answer rendered by
:class:`~telemetryflow.collector.query._metric_ask.MetricAsk`, as for the ClickHouse store.

A series is one metric name for one tag set (``service.name`` included), or for the
``group_by`` tags. Cumulative monotonic sums and cumulative histograms are turned into
per-interval increases against the previous point of the same stream (same service,
resource, tags and start time), looking back before the window for the first one, so
sums and percentiles over a window describe what happened in that window. An
exponential histogram whose scale changed between two points of a stream is compared
at the lower scale (:mod:`~telemetryflow.collector.query._exponential`).

Before any aggregation, one pass counts the points the query covers (stopping past
the limit) and its series: past :attr:`QueryLimits.max_points` or
:attr:`QueryLimits.max_series` the answer is a 422 saying which parameters narrow it.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.ingest._exemplars import series_exemplars
from telemetryflow.collector.query._aggregate import Aggregation
from telemetryflow.collector.query._exponential import ExpBuckets
from telemetryflow.collector.query._metric_ask import (
    ENV_MAX_POINTS,
    ENV_MAX_SERIES,
    MAX_BUCKETS,
    NARROW,
    TAG_PARAMS,
    Buckets,
    Found,
    Key,
    MetricAsk,
    QueryLimits,
    bucket,
    check_size,
    series_id,
    too_many,
)
from telemetryflow.collector.query._metrics_sql import CUMSUM, HIST, SqlParts, rows

__all__ = ["ENV_MAX_POINTS", "ENV_MAX_SERIES", "TAG_PARAMS", "QueryLimits", "query_metrics"]


# -- the query -------------------------------------------------------------------------
def query_metrics(
    conn: sqlite3.Connection,
    project: str,
    raw: Mapping[str, Any],
    limits: QueryLimits | None = None,
) -> dict[str, Any]:
    """Answer ``GET/POST /v1/metrics/query`` for ``project``."""
    ask = MetricAsk.read(project, raw)
    if not ask.mine:
        return ask.answer()
    flt, agg = ask.flt, ask.agg
    parts = SqlParts(flt)
    limits = limits or QueryLimits()
    found: Found = ({}, {})
    with _snapshot(conn):  # every pass sees the same points, whatever arrives meanwhile
        kinds = _survey(conn, parts, limits)
        baselines = _baseline_ids(conn, parts, kinds)
        if kinds & {"raw", "cumsum"}:
            _raw_values(conn, parts, agg, found, (baselines, "cumsum" in kinds), limits)
        if "hist" in kinds:
            _histograms(conn, parts, found, baselines)
        exemplars: dict[str, list[dict[str, Any]]] = {}
        if ask.exemplars and found[0]:
            exemplars = series_exemplars(conn, flt, lambda key: series_id(flt, key))
    return ask.answer(found, exemplars, limits)


@contextlib.contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: in WAL mode its reads all see one state of the database."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")


def _survey(conn: sqlite3.Connection, parts: SqlParts, limits: QueryLimits) -> set[str]:
    """The kinds of point the query covers; refuses one covering too many points.

    Counting stops one past the limit, so a refused query costs at most that much.
    """
    sql, args = parts.survey(limits.max_points)
    covered, low_kind, high_kind, low_mt, high_mt = conn.execute(sql, args).fetchone()
    if covered > limits.max_points:
        raise BadRequestError(
            422,
            f"the query covers more than {limits.max_points} points (the collector's "
            f"limit, {ENV_MAX_POINTS}); {NARROW}",
        )
    if not covered:
        return set()
    if low_kind != high_kind or low_mt != high_mt:  # mixed: let each pass filter its own
        return {"raw", "cumsum", "hist"}
    if low_kind in ("histogram", "summary"):
        return {"hist"}
    return {"cumsum" if low_kind == "sum" and low_mt == 4 + 2 else "raw"}


def _baseline_ids(conn: sqlite3.Connection, parts: SqlParts, kinds: set[str]) -> str:
    """Ids (a JSON array) of each cumulative stream's last point before the window."""
    wanted = [k for k, name in ((CUMSUM, "cumsum"), (HIST, "hist")) if name in kinds]
    if not wanted:
        return "[]"
    flt = parts.flt
    ids: list[int] = []
    sql, args = parts.streams("(" + " OR ".join(wanted) + ")")
    for stream in list(rows(conn, sql, args)):
        found = conn.execute(
            parts.baseline(), (flt.name, flt.project, flt.since, *stream, stream[3])
        ).fetchone()
        if found is not None:
            ids.append(int(found[0]))
    return json.dumps(ids)


def _add_resources(found: Found, key: Key, resources_json: str) -> None:
    found[1].setdefault(key, set()).update(json.loads(resources_json))


def _raw_values(
    conn: sqlite3.Connection,
    parts: SqlParts,
    agg: Aggregation,
    found: Found,
    cumulative: tuple[str, bool],
    limits: QueryLimits,
) -> None:
    """Raw values aggregated by SQLite; for a percentile, their sorted streams."""
    cte, args = parts.values(*cumulative)
    width = parts.width
    series = found[0]
    sizes: list[tuple[Key, int, int]] = []  # (series, step, values) in SQLite's order
    sql = parts.last(cte, MAX_BUCKETS) if agg.name == "last" else parts.stats(cte, MAX_BUCKETS)
    for row in rows(conn, sql, args):
        key, step = tuple(row[:width]), row[width]
        _add_resources(found, key, row[width + 1])
        if agg.name == "last":
            bucket(series, key, step).add_last(row[width + 2], row[width + 3])
            continue
        count, total, low, high = row[width + 2 :]
        bucket(series, key, step).add_stats(count, total, low, high)
        sizes.append((key, step, count))
        if len(sizes) > MAX_BUCKETS:
            raise too_many(len(series))
    if agg.name != "quantile":
        return
    check_size(series, limits)  # before sorting everything
    _quantiles(conn, (parts.picked(cte, True), args), agg.q, sizes, series)
    if parts.flt.step is not None:  # the whole-window value: each series as one partition
        whole: list[tuple[Key, int, int]] = []
        for key, _, count in sizes:
            if whole and whole[-1][0] == key:
                count += whole.pop()[2]
            whole.append((key, -1, count))
        _quantiles(conn, (parts.picked(cte, False), args), agg.q, whole, series)


def _quantiles(
    conn: sqlite3.Connection,
    query: tuple[str, list[Any]],
    q: float,
    partitions: list[tuple[Key, int, int]],
    series: dict[Key, Buckets],
) -> None:
    """Exact percentiles, interpolated between two ranks as exact_quantile does.

    ``partitions`` lists ``(series, step, size)`` in the order SQLite numbers the
    values, so the global positions of the two ranks of each partition are known; only
    the values at those positions come back from the database.
    """
    plan: list[tuple[Key, int, int, float]] = []
    wanted: set[int] = set()
    offset = 0
    for key, step, size in partitions:
        rank = q * (size - 1)
        low = math.floor(rank)
        plan.append((key, step, offset + low, rank - low))
        wanted.update((offset + low, offset + min(low + 1, size - 1)))
        offset += size
    sql, args = query
    values = dict(rows(conn, sql, [*args, json.dumps(sorted(wanted))]))
    for key, step, position, weight in plan:
        value = values[position]
        if weight:
            value = value * (1 - weight) + values[position + 1] * weight
        bucket(series, key, step).quantile = value


@dataclass(frozen=True)
class _HistPoint:
    count: int
    summed: float | None
    low: float | None
    high: float | None
    bounds: list[float] | None
    counts: list[int]
    exp: ExpBuckets | None


def _hist_point(row: tuple[Any, ...]) -> _HistPoint:
    count, summed, low, high, bounds, counts, scale, zero, offset = row
    count = int(count or 0)
    if scale is not None:
        exp = ExpBuckets(int(scale), int(zero or 0), int(offset or 0), tuple(json.loads(counts)))
        return _HistPoint(count, summed, low, high, None, [], exp)
    if bounds is None:  # a summary: count and sum only
        return _HistPoint(count, summed, low, high, [], [count], None)
    return _HistPoint(count, summed, low, high, json.loads(bounds), json.loads(counts), None)


def _increase(point: _HistPoint, prev: _HistPoint | None) -> _HistPoint:
    """What a cumulative point added since the previous one; all of it after a reset."""
    if prev is None or point.count < prev.count:
        return point
    if point.exp is not None and prev.exp is not None:
        exp = point.exp.minus(prev.exp)
        if exp is None:
            return point
        counts: list[int] = []
    elif point.exp is None and prev.exp is None and point.bounds == prev.bounds:
        counts = [a - b for a, b in zip(point.counts, prev.counts, strict=True)]
        if any(c < 0 for c in counts):
            return point
        exp = None
    else:  # another layout: nothing to compare with
        return point
    summed = None if point.summed is None else point.summed - (prev.summed or 0.0)
    return replace(point, count=point.count - prev.count, summed=summed, counts=counts, exp=exp)


def _histograms(conn: sqlite3.Connection, parts: SqlParts, found: Found, baselines: str) -> None:
    """Stream histogram points oldest first, keeping one previous point per stream."""
    width = parts.width
    series, resources = found
    previous: dict[tuple[Any, ...], _HistPoint] = {}
    sql, args = parts.histograms(baselines)
    for row in rows(conn, sql, args):
        key, step, inside = tuple(row[:width]), row[width], row[width + 1]
        stream, temporality = row[width + 2 : width + 6], row[width + 6]
        point = _hist_point(row[width + 7 :])
        if temporality == 2:
            point, previous[stream] = _increase(point, previous.get(stream)), point
        if not inside:
            continue
        resources.setdefault(key, set()).add(stream[1])
        acc = bucket(series, key, step)
        if point.exp is not None:
            acc.add_exponential(point.exp, point.count, point.summed, point.low, point.high)
        else:
            acc.add_histogram(
                point.bounds or [], point.counts, point.count, point.summed, point.low, point.high
            )
