"""Metric queries: filter, turn cumulative points into deltas, bucket by step, aggregate.

A series is one metric name for one tag set (``service.name`` included). Cumulative
monotonic sums and cumulative histograms are turned into per-interval increases
against the previous point of the same stream (same tags and start time), looking
back before the window for the first one, so sums and percentiles over a window
describe what happened in that window.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from telemetryflow.collector._aggregate import Accumulator, Aggregation, parse_agg
from telemetryflow.collector._decode import BadRequestError
from telemetryflow.collector._params import Params, iso

__all__ = ["TAG_PARAMS", "query_metrics"]

TAG_PARAMS = ("agent_name", "agent_class", "model_key", "session_id", "status", "category")
"""Filters named by the 002 document; each filters on the tag of the same name."""
_KNOWN = (
    "name", "metric", "agg", "percentile", "tags", "window", "time_window", "since",
    "until", "step", "service", "project_name", "group_by", *TAG_PARAMS,
)  # fmt: skip
_MAX_BUCKETS = 10_000
_CUMULATIVE = 2
_COLUMNS = (
    "service, kind, monotonic, temporality, tags, time_ns, start_ns, value, count, sum, "
    "min, max, bounds, counts"
)


def _parse_tags(value: Any) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                raise BadRequestError(400, "tags must be a JSON object or k:v,k2:v2") from None
        else:
            pairs = [p for p in text.split(",") if p.strip()]
            out: dict[str, str] = {}
            for pair in pairs:
                key, sep, val = pair.replace("=", ":", 1).partition(":")
                if not sep:
                    raise BadRequestError(400, "tags must be a JSON object or k:v,k2:v2")
                out[key.strip()] = val.strip()
            return out
    if not isinstance(value, dict):
        raise BadRequestError(400, "tags must be an object of strings")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _split_raw(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Separate ``tag.KEY=value`` parameters from the named ones."""
    named: dict[str, Any] = {}
    tags: dict[str, str] = {}
    for key, value in raw.items():
        if key.startswith("tag."):
            tags[key[4:]] = str(value)
        else:
            named[key] = value
    return named, tags


def _group_by(value: Any) -> tuple[str, ...] | None:
    if value in (None, ""):
        return None
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadRequestError(400, "group_by must be tag names separated by commas")
    return tuple(n.strip() for n in names if n.strip())


class _SeriesKeys:
    """Which series a point belongs to: its whole tag set, or the ``group_by`` tags."""

    def __init__(self, group_by: tuple[str, ...] | None) -> None:
        self._group_by = group_by
        self._cache: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}

    def __call__(self, service: str, tags_json: str) -> tuple[str, dict[str, str]]:
        found = self._cache.get((service, tags_json))
        if found is None:
            tags = json.loads(tags_json)
            if service:
                tags["service.name"] = service
            if self._group_by is not None:
                tags = {k: tags[k] for k in self._group_by if k in tags}
            found = self._cache[(service, tags_json)] = (json.dumps(tags, sort_keys=True), tags)
        return found


@dataclass
class _Series:
    tags: dict[str, str]
    buckets: dict[int, Accumulator] = field(default_factory=dict)
    total: Accumulator = field(default_factory=Accumulator)


def query_metrics(conn: sqlite3.Connection, project: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Answer ``GET/POST /v1/metrics/query`` for ``project``."""
    named, extra_tags = _split_raw(raw)
    params = Params(named, _KNOWN)
    name = params.text("name", "metric")
    if not name:
        raise BadRequestError(400, "name (or metric) is required")
    agg = parse_agg(params.text("agg"), params.text("percentile"))
    since, until = params.time_range(("window", "time_window"), "1h")
    step = params.duration_ns("step")
    if step is not None and (step <= 0 or (until - since) / step > _MAX_BUCKETS):
        raise BadRequestError(400, f"step must be positive and give at most {_MAX_BUCKETS} buckets")
    tags = {**_parse_tags(params.raw("tags")), **extra_tags}
    for tag in TAG_PARAMS:
        value = params.text(tag)
        if value is not None:
            tags[tag] = value
    service = params.text("service") or tags.pop("service.name", None)
    project_name = params.text("project_name")
    rows = _fetch(conn, project, name, since, until, service, tags) if project_name in (
        None, project) else []  # fmt: skip
    baselines = _Baselines(conn, project, name, since)
    keys = _SeriesKeys(_group_by(params.raw("group_by")))
    series: dict[str, _Series] = {}
    for row in rows:
        _accumulate(series, keys, row, baselines, since, step)
    return {
        "name": name,
        "agg": agg.label,
        "since": iso(since),
        "until": iso(until),
        "step": params.text("step"),
        "series": [_render(s, agg, since, step) for _, s in sorted(series.items())],
    }


def _fetch(
    conn: sqlite3.Connection,
    project: str,
    name: str,
    since: int,
    until: int,
    service: str | None,
    tags: dict[str, str],
) -> list[sqlite3.Row]:
    sql = [f"SELECT {_COLUMNS} FROM metric_points WHERE name = ? AND time_ns >= ? "  # noqa: S608
           "AND time_ns <= ? AND project = ?"]  # fmt: skip
    args: list[Any] = [name, since, until, project]
    if service is not None:
        sql.append("AND service = ?")
        args.append(service)
    for key, value in tags.items():
        if '"' in key or "\\" in key or not key:
            raise BadRequestError(400, "tag names must not contain quotes or backslashes")
        sql.append("AND json_extract(tags, ?) = ?")
        args.extend((f'$."{key}"', value))
    sql.append("ORDER BY time_ns, id")
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(" ".join(sql), args).fetchall()
    finally:
        conn.row_factory = None


class _Baselines:
    """The last point of a cumulative stream before the window, looked up once each."""

    def __init__(self, conn: sqlite3.Connection, project: str, name: str, since: int) -> None:
        self._conn, self._project, self._name, self._since = conn, project, name, since
        self.last: dict[tuple[str, str, int], sqlite3.Row | None] = {}

    def previous(self, row: sqlite3.Row) -> sqlite3.Row | None:
        key = (row["service"], row["tags"], row["start_ns"])
        if key not in self.last:
            self._conn.row_factory = sqlite3.Row
            try:
                self.last[key] = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM metric_points WHERE name = ? AND time_ns < ? "  # noqa: S608
                    "AND project = ? AND service = ? AND tags = ? AND start_ns = ? "
                    "ORDER BY time_ns DESC LIMIT 1",
                    (self._name, self._since, self._project, *key),
                ).fetchone()
            finally:
                self._conn.row_factory = None
        previous = self.last[key]
        self.last[key] = row
        return previous


def _accumulate(
    series: dict[str, _Series],
    keys: _SeriesKeys,
    row: sqlite3.Row,
    baselines: _Baselines,
    since: int,
    step: int | None,
) -> None:
    key, tags = keys(row["service"], row["tags"])
    current = series.get(key)
    if current is None:
        current = series[key] = _Series(dict(tags))
    index = 0 if step is None else (row["time_ns"] - since) // step
    bucket = current.buckets.setdefault(index, Accumulator())
    cumulative = row["temporality"] == _CUMULATIVE
    if row["kind"] in ("gauge", "sum"):
        value = float(row["value"])
        if cumulative and row["monotonic"]:
            prev = baselines.previous(row)
            if prev is not None and prev["value"] <= value:
                value -= float(prev["value"])
        bucket.add_value(value)
        current.total.add_value(value)
        return
    bounds = json.loads(row["bounds"]) if row["bounds"] else []
    counts = json.loads(row["counts"]) if row["counts"] else [row["count"] or 0]
    total, summed = float(row["count"] or 0), row["sum"]
    if cumulative:
        prev = baselines.previous(row)
        if prev is not None and prev["bounds"] == row["bounds"] and prev["count"] <= total:
            old = json.loads(prev["counts"]) if prev["counts"] else [prev["count"] or 0]
            if all(a >= b for a, b in zip(counts, old, strict=True)):
                counts = [a - b for a, b in zip(counts, old, strict=True)]
                total -= prev["count"] or 0
                summed = None if summed is None else summed - (prev["sum"] or 0.0)
    for acc in (bucket, current.total):
        acc.add_histogram(bounds, counts, total, summed, row["min"], row["max"])


def _render(series: _Series, agg: Aggregation, since: int, step: int | None) -> dict[str, Any]:
    points = []
    for index in sorted(series.buckets):
        start = since + index * step if step else since
        points.append({
            "time": iso(start),
            "time_unix_nano": start,
            "value": _finite(series.buckets[index].result(agg)),
        })  # fmt: skip
    return {"tags": series.tags, "points": points, "value": _finite(series.total.result(agg))}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
