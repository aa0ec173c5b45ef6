"""The SQL of a metric query: filters, series keys, and aggregation inside SQLite.

Raw values (gauges, 001 points, delta and non-monotonic sums, and the increases of
cumulative monotonic sums) never come to Python as a list: SQLite groups them per
series and step and returns count, sum, min, max and the latest value, so a query's
memory is bounded by the number of series × steps, whatever the number of points.
For an exact percentile, the ``GROUP BY`` pass gives the size of each partition
(series and step) in order, so the positions of the two values around the percentile
in ``ROW_NUMBER() OVER (ORDER BY series, step, value)`` are known in advance: SQLite
sorts once and returns just those values. Increases of cumulative sums are
``value - LAG(value)`` over each stream (same service, resource, tags and start
time), the stream's last point before the window joining as the first ``LAG``.
Histogram points are few (one per series per export) and are streamed to Python,
which adds up their buckets.

Every fragment inlined in SQL text is an integer, a float literal or a tag key checked
against :data:`~telemetryflow.collector.query._params.TAG_KEY_PATTERN`; values are bound.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CUMSUM", "HIST", "RAW", "MetricFilter", "SqlParts", "rows"]

RAW = "(kind = 'gauge' OR (kind = 'sum' AND NOT (monotonic = 1 AND temporality = 2)))"
CUMSUM = "(kind = 'sum' AND monotonic = 1 AND temporality = 2)"
HIST = "(kind IN ('histogram', 'summary'))"
_STREAM = "service, resource, tags, start_ns"


@dataclass(frozen=True)
class MetricFilter:
    """What points a query covers."""

    project: str
    name: str
    since: int
    until: int
    step: int | None
    service: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] | None = None


def _json_path(key: str) -> str:
    return f"'$.\"{key}\"'"  # key matched TAG_KEY_PATTERN: no quote can appear


class SqlParts:
    """SQL fragments and the queries built from them for one :class:`MetricFilter`."""

    def __init__(self, flt: MetricFilter) -> None:
        self.flt = flt
        where = ["name = ?", "project = ?", "time_ns <= ?"]
        args: list[Any] = [flt.name, flt.project, flt.until]
        if flt.service is not None:
            where.append("service = ?")
            args.append(flt.service)
        for key, value in flt.tags.items():
            path = _json_path(key)
            where.append(f"coalesce(json_extract(tags, {path}), json_extract(resource, {path}))=?")
            args.append(value)
        self._where = " AND ".join(where)
        self._args = args
        if flt.group_by is None:
            keys = ["service", "tags"]
        else:
            keys = [
                "NULLIF(service, '')"
                if key == "service.name"
                else f"coalesce(json_extract(tags, {_json_path(key)}), "
                f"json_extract(resource, {_json_path(key)}))"
                for key in flt.group_by
            ] or ["NULL"]  # group_by=[]: one series for everything
        self.width = len(keys)
        self.keys = ", ".join(f"{expr} AS k{i}" for i, expr in enumerate(keys))
        self.key_names = ", ".join(f"k{i}" for i in range(len(keys)))
        step = flt.step
        self.step_expr = "0" if step is None else f"(time_ns - {int(flt.since)}) / {int(step)}"

    def window(self) -> tuple[str, list[Any]]:
        """Rows inside the window matching every filter."""
        return f"{self._where} AND time_ns >= ?", [*self._args, self.flt.since]

    def window_or(self, ids_json: str) -> tuple[str, list[Any]]:
        """Rows inside the window, plus the rows whose ids are in a JSON array."""
        where, args = self.window()
        return f"(({where}) OR id IN (SELECT value FROM json_each(?)))", [*args, ids_json]  # noqa: S608

    def survey(self, cap: int) -> tuple[str, list[Any]]:
        """Count the matching rows (at most ``cap + 1``) and the range of their kinds, in
        one pass over the index range without sorting. ``monotonic * 4 + temporality``
        packs the two small numbers into one."""
        where, args = self.window()
        sql = (
            "SELECT count(*), min(kind), max(kind), min(monotonic * 4 + temporality), "  # noqa: S608
            "max(monotonic * 4 + temporality) FROM (SELECT kind, monotonic, temporality "
            f"FROM metric_points WHERE {where} LIMIT ?)"
        )
        return sql, [*args, cap + 1]

    def streams(self, kinds: str) -> tuple[str, list[Any]]:
        """Cumulative streams with points in the window that may have a point before it."""
        where, args = self.window()
        sql = (
            f"SELECT {_STREAM}, kind FROM metric_points WHERE {where} "  # noqa: S608
            f"AND temporality = 2 AND {kinds} AND (start_ns = 0 OR start_ns < ?) "
            f"GROUP BY {_STREAM}, kind"
        )
        return sql, [*args, self.flt.since]

    def baseline(self) -> str:
        """The id of a stream's last point before the window.

        Arguments: name, project, since, the stream's service, resource, tags, start
        time and kind, and its start time again: no point of a stream precedes its
        start, which bounds how far back the index is walked.
        """
        return (
            "SELECT id FROM metric_points WHERE name = ? AND project = ? AND time_ns < ? "
            "AND service = ? AND resource = ? AND tags = ? AND start_ns = ? AND kind = ? "
            "AND time_ns >= ? ORDER BY time_ns DESC LIMIT 1"
        )

    def values(self, baseline_ids: str, with_cumulative: bool) -> tuple[str, list[Any]]:
        """A CTE ``v(k..., step_i, time_ns, value, delta, resource)``: one row per raw value."""
        where, args = self.window()
        parts = [
            f"SELECT {self.keys}, {self.step_expr} AS step_i, time_ns, value, value AS delta, "  # noqa: S608
            f"resource FROM metric_points WHERE {where} AND {RAW}"
        ]
        if with_cumulative:
            outer, outer_args = self.window_or(baseline_ids)
            parts.append(
                f"SELECT {self.key_names}, step_i, time_ns, value, "  # noqa: S608
                "CASE WHEN prev IS NULL OR prev > value THEN value ELSE value - prev END, resource "
                f"FROM (SELECT {self.keys}, {self.step_expr} AS step_i, time_ns, value, resource, "
                f"time_ns >= {int(self.flt.since)} AS inside, LAG(value) OVER "
                f"(PARTITION BY {_STREAM} ORDER BY time_ns, id) AS prev "
                f"FROM metric_points WHERE {outer} AND {CUMSUM}) WHERE inside"
            )
            args = [*args, *outer_args]
        return "WITH v AS (" + " UNION ALL ".join(parts) + ")", args

    def stats(self, cte: str, limit: int) -> str:
        return (
            f"{cte} SELECT {self.key_names}, step_i, json_group_array(DISTINCT resource), "  # noqa: S608
            "count(*), total(delta), min(delta), max(delta) FROM v "
            f"GROUP BY {self.key_names}, step_i ORDER BY {self.key_names}, step_i "
            f"LIMIT {int(limit) + 1}"
        )

    def last(self, cte: str, limit: int) -> str:
        # SQLite takes the bare column ``value`` from the row holding max(time_ns).
        return (
            f"{cte} SELECT {self.key_names}, step_i, json_group_array(DISTINCT resource), "  # noqa: S608
            f"max(time_ns), value FROM v GROUP BY {self.key_names}, step_i LIMIT {int(limit) + 1}"
        )

    def picked(self, cte: str, per_step: bool) -> str:
        """``(position, value)`` of the values at the positions listed in the last argument
        (a JSON array), every value numbered in the order of partition (series, and step
        if ``per_step``, ordered as :meth:`stats` orders them) then value."""
        group = f"{self.key_names}, step_i" if per_step else self.key_names
        return (
            f"{cte} SELECT g, delta FROM (SELECT delta, "  # noqa: S608
            f"ROW_NUMBER() OVER (ORDER BY {group}, delta) - 1 AS g FROM v) "
            "WHERE g IN (SELECT value FROM json_each(?))"
        )

    def histograms(self, baseline_ids: str) -> tuple[str, list[Any]]:
        """Histogram and summary rows of the window (and their baselines), oldest first."""
        where, args = self.window_or(baseline_ids)
        sql = (
            f"SELECT {self.keys}, {self.step_expr} AS step_i, "  # noqa: S608
            f"time_ns >= {int(self.flt.since)} AS inside, {_STREAM}, temporality, count, sum, "
            "min, max, bounds, counts, scale, zero_count, exp_offset "
            f"FROM metric_points WHERE {where} AND {HIST} ORDER BY time_ns, id"
        )
        return sql, args


def rows(conn: sqlite3.Connection, sql: str, args: Any) -> Iterator[tuple[Any, ...]]:
    cursor = conn.execute(sql, args)
    try:
        yield from cursor
    finally:
        cursor.close()
