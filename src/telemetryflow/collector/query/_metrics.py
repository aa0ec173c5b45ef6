"""Metric queries: parse, check the size, aggregate in SQLite, add up histograms, render.

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
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.ingest._exemplars import series_exemplars
from telemetryflow.collector.query._aggregate import Accumulator, Aggregation, parse_agg
from telemetryflow.collector.query._exponential import ExpBuckets
from telemetryflow.collector.query._metrics_sql import CUMSUM, HIST, MetricFilter, SqlParts, rows
from telemetryflow.collector.query._params import (
    MAX_FILTERS,
    Params,
    check_tag_key,
    check_text,
    iso,
)

__all__ = ["ENV_MAX_POINTS", "ENV_MAX_SERIES", "TAG_PARAMS", "QueryLimits", "query_metrics"]

TAG_PARAMS = ("agent_name", "agent_class", "model_key", "session_id", "status", "category")
"""Filters named by the 002 document; each filters on the tag of the same name."""
ENV_MAX_POINTS = "TELEMETRYFLOW_COLLECTOR_MAX_QUERY_POINTS"
ENV_MAX_SERIES = "TELEMETRYFLOW_COLLECTOR_MAX_QUERY_SERIES"
_KNOWN = (
    "name", "metric", "agg", "percentile", "tags", "window", "time_window", "since",
    "until", "step", "service", "project_name", "group_by", "exemplars", *TAG_PARAMS,
)  # fmt: skip
_MAX_STEPS = 10_000
_MAX_BUCKETS = 200_000
"""Most (series, step) buckets one answer may hold."""
_NARROW = "narrow since/until (or window), or filter with service or tags"


@dataclass(frozen=True)
class QueryLimits:
    """How much one metric query may read and return."""

    max_points: int = 5_000_000
    """Points one query may cover (after its filters, inside its window)."""
    max_series: int = 2_000
    """Series one answer may hold."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QueryLimits:
        """Limits from the environment, invalid values falling back to the defaults."""
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            _positive(env.get(ENV_MAX_POINTS), default.max_points),
            _positive(env.get(ENV_MAX_SERIES), default.max_series),
        )


def _positive(text: str | None, default: int) -> int:
    try:
        value = int(text or "")
    except ValueError:
        return default
    return value if value > 0 else default


# -- parameters ------------------------------------------------------------------------
def _parse_tags(value: Any) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("{"):
            out: dict[str, str] = {}
            for pair in (p for p in text.split(",") if p.strip()):
                key, sep, val = pair.replace("=", ":", 1).partition(":")
                if not sep:
                    raise BadRequestError(400, "tags must be a JSON object or k:v,k2:v2")
                out[key.strip()] = val.strip()
            return out
        try:
            value = json.loads(text)
        except ValueError:
            raise BadRequestError(400, "tags must be a JSON object or k:v,k2:v2") from None
    if not isinstance(value, dict):
        raise BadRequestError(400, "tags must be an object of strings")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _check_tags(param: str, tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        check_tag_key(param, key)
        check_text(f"tag.{key}" if param == "tag.KEY" else f"{param} ({key})", value)


def _split_raw(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Separate ``tag.KEY=value`` parameters from the named ones."""
    named: dict[str, Any] = {}
    tags: dict[str, str] = {}
    for key, value in raw.items():
        if key.startswith("tag."):
            if isinstance(value, (dict, list)):
                raise BadRequestError(400, f"{key[:64]} must be a string")
            _check_tags("tag.KEY", {key[4:]: str(value)})
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
    keys = tuple(n.strip() for n in names if n.strip())
    if len(keys) > MAX_FILTERS:
        raise BadRequestError(400, f"group_by names at most {MAX_FILTERS} tags")
    for key in keys:
        check_tag_key("group_by", key)
    return keys


def _filter(project: str, params: Params, extra_tags: dict[str, str]) -> MetricFilter:
    name = params.text("name", "metric")
    if not name:
        raise BadRequestError(400, "name (or metric) is required")
    since, until = params.time_range(("window", "time_window"), "1h")
    step = params.duration_ns("step")
    if step is not None and (step <= 0 or (until - since) / step > _MAX_STEPS):
        raise BadRequestError(400, f"step must be positive and give at most {_MAX_STEPS} buckets")
    tags = _parse_tags(params.raw("tags"))
    _check_tags("tags", tags)
    tags.update(extra_tags)
    for tag in TAG_PARAMS:
        value = params.text(tag)
        if value is not None:
            tags[tag] = value
    if len(tags) > MAX_FILTERS:
        raise BadRequestError(400, f"tags: at most {MAX_FILTERS} tag filters per query")
    service = params.text("service") or tags.pop("service.name", None)
    group_by = _group_by(params.raw("group_by"))
    return MetricFilter(project, name, since, until, step, service, tags, group_by)


# -- the query -------------------------------------------------------------------------
Key = tuple[Any, ...]
Buckets = dict[int, Accumulator]


def query_metrics(
    conn: sqlite3.Connection,
    project: str,
    raw: Mapping[str, Any],
    limits: QueryLimits | None = None,
) -> dict[str, Any]:
    """Answer ``GET/POST /v1/metrics/query`` for ``project``."""
    named, extra_tags = _split_raw(raw)
    params = Params(named, _KNOWN)
    agg = parse_agg(params.text("agg"), params.text("percentile"))
    flt = _filter(project, params, extra_tags)
    with_exemplars = params.flag("exemplars", False)
    answer: dict[str, Any] = {
        "name": flt.name,
        "agg": agg.label,
        "since": iso(flt.since),
        "until": iso(flt.until),
        "step": params.text("step"),
        "series": [],
    }
    if params.text("project_name") not in (None, project):
        return answer
    parts = SqlParts(flt)
    limits = limits or QueryLimits()
    series: dict[Key, Buckets] = {}
    resources: dict[Key, set[str]] = {}
    with _snapshot(conn):  # every pass sees the same points, whatever arrives meanwhile
        kinds = _survey(conn, parts, limits)
        baselines = _baseline_ids(conn, parts, kinds)
        if kinds & {"raw", "cumsum"}:
            found = (series, resources)
            _raw_values(conn, parts, agg, found, (baselines, "cumsum" in kinds), limits)
        if "hist" in kinds:
            _histograms(conn, parts, (series, resources), baselines)
        exemplars: dict[str, list[dict[str, Any]]] = {}
        if with_exemplars and series:
            exemplars = series_exemplars(conn, flt, lambda key: _series_id(flt, key))
    _check_size(series, limits)
    rendered = [
        _render(flt, agg, key, buckets, resources.get(key, set()))
        for key, buckets in series.items()
    ]
    if with_exemplars:  # each series gets its own, an empty list when it has none
        for name, body in rendered:
            body["exemplars"] = exemplars.get(name, [])
    answer["series"] = [s for _, s in sorted(rendered, key=lambda item: item[0]) if s["points"]]
    return answer


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
            f"limit, {ENV_MAX_POINTS}); {_NARROW}",
        )
    if not covered:
        return set()
    if low_kind != high_kind or low_mt != high_mt:  # mixed: let each pass filter its own
        return {"raw", "cumsum", "hist"}
    if low_kind in ("histogram", "summary"):
        return {"hist"}
    return {"cumsum" if low_kind == "sum" and low_mt == 4 + 2 else "raw"}


def _too_many(series: int) -> BadRequestError:
    return BadRequestError(
        422,
        f"the answer would hold {series} series or more than {_MAX_BUCKETS} series x steps; "
        "add tags or service, group_by fewer tags, or use a larger step",
    )


def _check_size(series: dict[Key, Buckets], limits: QueryLimits) -> None:
    buckets = sum(len(b) for b in series.values())
    if len(series) > limits.max_series or buckets > _MAX_BUCKETS:
        raise _too_many(len(series))


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


def _bucket(series: dict[Key, Buckets], key: Key, step: int) -> Accumulator:
    buckets = series.setdefault(key, {})
    found = buckets.get(step)
    if found is None:
        found = buckets[step] = Accumulator()
    return found


Found = tuple[dict[Key, Buckets], dict[Key, set[str]]]
"""What a query found: buckets per series, and the resources seen per series."""


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
    sql = parts.last(cte, _MAX_BUCKETS) if agg.name == "last" else parts.stats(cte, _MAX_BUCKETS)
    for row in rows(conn, sql, args):
        key, step = tuple(row[:width]), row[width]
        _add_resources(found, key, row[width + 1])
        if agg.name == "last":
            _bucket(series, key, step).add_last(row[width + 2], row[width + 3])
            continue
        count, total, low, high = row[width + 2 :]
        _bucket(series, key, step).add_stats(count, total, low, high)
        sizes.append((key, step, count))
        if len(sizes) > _MAX_BUCKETS:
            raise _too_many(len(series))
    if agg.name != "quantile":
        return
    _check_size(series, limits)  # before sorting everything
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
        _bucket(series, key, step).quantile = value


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
        acc = _bucket(series, key, step)
        if point.exp is not None:
            acc.add_exponential(point.exp, point.count, point.summed, point.low, point.high)
        else:
            acc.add_histogram(
                point.bounds or [], point.counts, point.count, point.summed, point.low, point.high
            )


# -- the answer ------------------------------------------------------------------------
def _tags(flt: MetricFilter, key: Key) -> dict[str, str]:
    if flt.group_by is None:
        service, tags_json = key
        tags: dict[str, str] = json.loads(tags_json)
        if service:
            tags["service.name"] = service
        return tags
    values = key[: len(flt.group_by)]  # group_by=[] has one NULL key
    return {name: str(value) for name, value in zip(flt.group_by, values, strict=True)
            if value is not None}  # fmt: skip


def _series_id(flt: MetricFilter, key: Key) -> str:
    """What a rendered series is sorted by: its tags as canonical JSON."""
    return json.dumps(_tags(flt, key), sort_keys=True)


def _common(resources: Iterable[str]) -> dict[str, str]:
    """The resource attributes every point of a series shares."""
    common: dict[str, str] | None = None
    for text in resources:
        attrs: dict[str, str] = json.loads(text)
        common = attrs if common is None else {
            k: v for k, v in common.items() if attrs.get(k) == v
        }  # fmt: skip
    return common or {}


def _render(
    flt: MetricFilter, agg: Aggregation, key: Key, buckets: Buckets, resources: set[str]
) -> tuple[str, dict[str, Any]]:
    tags = _tags(flt, key)
    whole = Accumulator()
    points = []
    step_s = (flt.step or (flt.until - flt.since)) / 1e9
    for index in sorted(i for i in buckets if i >= 0):
        whole.merge(buckets[index])
        start = flt.since + index * flt.step if flt.step else flt.since
        points.append({
            "time": iso(start),
            "time_unix_nano": start,
            "value": _finite(buckets[index].result(agg, step_s)),
        })  # fmt: skip
    whole_bucket = buckets.get(-1 if flt.step else 0)
    whole.quantile = None if whole_bucket is None else whole_bucket.quantile
    value = whole.result(agg, (flt.until - flt.since) / 1e9)
    body = {"tags": tags, "resource": _common(resources), "points": points, "value": _finite(value)}
    return _series_id(flt, key), body


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
