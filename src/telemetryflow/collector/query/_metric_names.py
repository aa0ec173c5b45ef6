"""The metric catalogue: which metrics a project has, of what type, how many series."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from telemetryflow.collector.query._params import Params, iso

__all__ = ["DEFAULT_WINDOW_S", "NAMES_PARAMS", "metric_type", "query_metric_names"]

NAMES_PARAMS = ("service", "prefix", "limit", "project_name", "since", "until", "window")
DEFAULT_WINDOW_S = 7 * 86400


def metric_type(kind: str, monotonic: int) -> str:
    if kind == "sum":
        return "counter" if monotonic else "updowncounter"
    return kind


def query_metric_names(
    conn: sqlite3.Connection, project: str, raw: Mapping[str, Any], retention_s: float = 0.0
) -> dict[str, Any]:
    """Answer ``GET /v1/metrics/names``: every metric name of ``project``, by name.

    A series is a tag set (``service.name`` included), as in a metric query; ``type``
    and ``unit`` are those of the newest point. Only points in a time window count
    (``since``/``until``, or ``window`` ending now; by default the retention, or seven
    days without one), so the answer reads that window of one project's points, not
    every point ever stored.
    """
    params = Params(raw, NAMES_PARAMS)
    default = retention_s if retention_s > 0 else DEFAULT_WINDOW_S
    since, until = params.time_range(("window",), f"{int(default)}s")
    limit = params.integer("limit", 1000)
    if params.text("project_name") not in (None, project):
        return {"metrics": [], "count": 0}
    sql = ["SELECT name, kind, monotonic, unit, count(DISTINCT service || x'1f' || tags), "
           "count(*), max(time_ns) FROM metric_points "
           "WHERE project = ? AND time_ns >= ? AND time_ns <= ?"]  # fmt: skip
    args: list[Any] = [project, since, until]
    service = params.text("service")
    if service is not None:
        sql.append("AND service = ?")
        args.append(service)
    prefix = params.text("prefix")
    if prefix:
        sql.append("AND substr(name, 1, ?) = ?")
        args.extend((len(prefix), prefix))
    sql.append("GROUP BY name ORDER BY name LIMIT ?")
    args.append(limit)
    metrics = [
        {
            "name": name,
            "type": metric_type(kind, monotonic),
            "unit": unit,
            "series": series,
            "points": points,
            "last_seen": iso(last),
            "last_seen_unix_nano": last,
        }
        for name, kind, monotonic, unit, series, points, last in conn.execute(" ".join(sql), args)
    ]
    return {"metrics": metrics, "count": len(metrics)}
