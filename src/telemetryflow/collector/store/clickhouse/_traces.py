"""Trace queries over the exporter's ``otel_traces`` table, answered as the SQLite store answers.

The database does the work: it picks the matching traces (filters, window, newest
first, limit), and for a list without detail it sums each trace up (span count, start,
end, error, services, root) with ``GROUP BY``; only a trace's spans asked for in detail
come back as rows, to be nested into a tree by :func:`build_tree`, the same function
the SQLite store uses.

A lookup by trace id is bounded in time by the exporter's ``<traces>_trace_id_ts``
table when it exists (the order key is the trace id: one granule), so the spans are
read from one or two days' parts with the bloom-filter index instead of all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telemetryflow.collector.query._logs import like_pattern
from telemetryflow.collector.query._params import Params, iso
from telemetryflow.collector.query._traces import TraceAsk, build_tree
from telemetryflow.collector.store.clickhouse._seam import ClickHouseConnection
from telemetryflow.collector.store.clickhouse._tables import (
    PROJECT_ATTRIBUTE,
    Tables,
    project_clause,
)

__all__ = ["TraceSource", "kind_name", "query_traces", "status_name"]

_ERROR = "StatusCode IN ('Error', 'STATUS_CODE_ERROR')"
_START = "toUnixTimestamp64Nano(Timestamp)"
_RESOURCE = f"mapFilter((k, v) -> k != '{PROJECT_ATTRIBUTE}', ResourceAttributes)"
_SPAN_COLUMNS = (
    f"TraceId, SpanId, ParentSpanId, SpanName, ServiceName, SpanKind, {_START}, Duration, "
    "StatusCode, StatusMessage, SpanAttributes, "
    "arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp), Events.Name, "
    "Events.Attributes, TraceState, Links.TraceId, Links.SpanId, Links.TraceState, "
    f"Links.Attributes, {_RESOURCE}, ScopeName, ScopeVersion"
)
# a trace's root as build_tree picks it: the earliest (start, span id) of the spans
# whose parent is not in the trace (or is the span itself); else the earliest span
_BRIEF = """
SELECT TraceId, n, first, last, error, services,
    arrayFilter((s, p) -> p = '' OR p = s.2 OR NOT has(ids, p), spans, parents) AS roots,
    if(empty(roots), arraySort(spans)[1], arraySort(roots)[1]) AS root
FROM (
    SELECT TraceId, count() AS n, min(start) AS first,
        max(start + toInt64(least(Duration, 9223372036854775807 - start))) AS last,
        max(StatusCode IN ('Error', 'STATUS_CODE_ERROR')) AS error,
        arraySort(groupUniqArrayIf(ServiceName, ServiceName != '')) AS services,
        groupArray((start, SpanId, SpanName, ServiceName)) AS spans,
        groupArray(ParentSpanId) AS parents, groupArray(SpanId) AS ids
    FROM (SELECT TraceId, SpanId, ParentSpanId, SpanName, ServiceName, Duration, StatusCode,
        toUnixTimestamp64Nano(Timestamp) AS start FROM {table} {where})
    GROUP BY TraceId
)"""


def kind_name(word: str) -> str:
    """``Server`` (or an older exporter's ``SPAN_KIND_SERVER``) → ``SERVER``."""
    return word.upper().removeprefix("SPAN_KIND_") or "UNSPECIFIED"


def status_name(word: str) -> str:
    """``Error`` (or an older exporter's ``STATUS_CODE_ERROR``) → ``ERROR``."""
    return word.upper().removeprefix("STATUS_CODE_") or "UNSET"


@dataclass(frozen=True)
class TraceSource:
    """Where spans are read: the connection, the tables, whether the id table exists."""

    ch: ClickHouseConnection
    tables: Tables
    trace_index: bool = False

    @property
    def table(self) -> str:
        return self.tables.qualified(self.tables.traces)

    def scope(self, project: str) -> dict[str, Any]:
        return {"project": project, "default_project": self.tables.default_project}


def _span(row: list[Any]) -> dict[str, Any]:
    (trace_id, span_id, parent, name, service, kind, start, duration, status, message,
     attrs, ev_times, ev_names, ev_attrs, trace_state, l_traces, l_spans, l_states, l_attrs,
     resource, scope_name, scope_version) = row  # fmt: skip
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "service": service,
        "kind": kind_name(kind),
        "start": iso(start),
        "start_unix_nano": start,
        "end_unix_nano": start + duration,
        "duration_ms": duration / 1e6,
        "status": status_name(status),
        "status_message": message,
        "attributes": attrs,
        "events": [
            {"name": n, "time_unix_nano": t, "attributes": a}
            for t, n, a in zip(ev_times, ev_names, ev_attrs, strict=True)
        ],
        "trace_state": trace_state,
        "links": [
            {"trace_id": t, "span_id": s, "trace_state": st, "attributes": a}
            for t, s, st, a in zip(l_traces, l_spans, l_states, l_attrs, strict=True)
        ],
        "resource": resource,
        "scope": {"name": scope_name, "version": scope_version, "attributes": {}},
        "children": [],
    }


def _bounds(src: TraceSource, ids: list[str]) -> tuple[str, dict[str, Any]]:
    """A time condition covering every span of ``ids`` (from the exporter's id table),
    else none: without that table, or for ids it does not know.

    A query of its own, ordered by trace id, so one granule: its result narrows the
    spans query to the parts and granules of those seconds (measured faster than the
    same bounds as scalar subqueries of the spans query).
    """
    if not src.trace_index:
        return "", {}
    table = src.tables.qualified(f"{src.tables.traces}_trace_id_ts")
    rows = src.ch.query(
        f"SELECT toUnixTimestamp(min(Start)), toUnixTimestamp(max(End)), count() "  # noqa: S608
        f"FROM {table} WHERE TraceId IN {{ids:Array(String)}}",
        {"ids": ids},
    )
    if not rows or not rows[0][2]:
        return "", {}
    first, last = int(rows[0][0]), int(rows[0][1]) + 1  # End is whole seconds
    condition = (
        " AND Timestamp >= fromUnixTimestamp64Nano({lo:Int64})"
        " AND Timestamp < fromUnixTimestamp64Nano({hi:Int64})"
    )
    return condition, {"lo": first * 1_000_000_000, "hi": last * 1_000_000_000}


def _where(src: TraceSource, project: str, ids: list[str]) -> tuple[str, dict[str, Any]]:
    """``PREWHERE`` on the id and time, ``WHERE`` on the project (see :mod:`._logs`)."""
    bound, args = _bounds(src, ids)
    where = f"PREWHERE TraceId IN {{ids:Array(String)}}{bound} WHERE {project_clause()}"
    return where, {**src.scope(project), "ids": ids, **args}


def _load(src: TraceSource, project: str, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {tid: [] for tid in ids}
    if not ids:
        return grouped
    where, args = _where(src, project, ids)
    sql = f"SELECT {_SPAN_COLUMNS} FROM {src.table} {where}"  # noqa: S608
    for row in src.ch.query(sql, args):
        grouped[row[0]].append(_span(row))
    return grouped


def _summary(trace_id: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    roots = build_tree(spans)
    start = min(s["start_unix_nano"] for s in spans)
    end = max(s["end_unix_nano"] for s in spans)
    return {
        "trace_id": trace_id,
        "root_name": roots[0]["name"],
        "service": roots[0]["service"],
        "start": iso(start),
        "start_unix_nano": start,
        "duration_ms": max(0, end - start) / 1e6,
        "span_count": len(spans),
        "error": any(s["status"] == "ERROR" for s in spans),
        "services": sorted({s["service"] for s in spans if s["service"]}),
        "spans": roots,
    }


def _briefs(src: TraceSource, project: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each trace summed up by the database: one row per trace, no span comes back."""
    if not ids:
        return {}
    where, args = _where(src, project, ids)
    out: dict[str, dict[str, Any]] = {}
    for trace_id, n, first, last, error, services, _, root in src.ch.query(
        _BRIEF.format(table=src.table, where=where), args
    ):
        out[trace_id] = {
            "trace_id": trace_id,
            "root_name": root[2],
            "service": root[3],
            "start": iso(first),
            "start_unix_nano": first,
            "duration_ms": max(0, last - first) / 1e6,
            "span_count": n,
            "error": bool(error),
            "services": services,
        }
    return out


def query_traces(src: TraceSource, project: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Answer ``/v1/traces/query`` for ``project``, as the SQLite store does."""
    ask = TraceAsk.parse(raw, project)
    since, until = ask.since, ask.until
    ids = ask.ids
    if ids is None:
        ids = _matching_trace_ids(src, project, ask.params, (since, until), ask.limit)
    if ask.detail:
        grouped = _load(src, project, ids)
        traces = [_summary(tid, grouped[tid]) for tid in ids if grouped[tid]]
    else:
        briefs = _briefs(src, project, ids)
        traces = [briefs[tid] for tid in ids if tid in briefs]
    return {"traces": traces, "count": len(traces), "since": iso(since), "until": iso(until)}


def _matching_trace_ids(
    src: TraceSource, project: str, params: Params, window: tuple[int, int], limit: int
) -> list[str]:
    """Traces with a span matching every filter, by their newest such span, newest first."""
    where = [
        "Timestamp >= fromUnixTimestamp64Nano({since:Int64})",
        "Timestamp <= fromUnixTimestamp64Nano({until:Int64})",
    ]
    args: dict[str, Any] = {**src.scope(project), "since": window[0], "until": window[1]}
    name = params.text("name", "trace")
    if name is not None:
        where.append("SpanName = {name:String}")
        args["name"] = name
    name_contains = params.text("name_contains")
    if name_contains:
        where.append("SpanName ILIKE {name_contains:String}")
        args["name_contains"] = like_pattern(name_contains)
    service = params.text("service")
    if service is not None:
        where.append("ServiceName = {service:String}")
        args["service"] = service
    min_duration = params.duration_ns("min_duration")
    if min_duration is not None:
        where.append("Duration >= {min_duration:UInt64}")
        args["min_duration"] = min_duration
    if params.flag("error", False):
        where.append(_ERROR)
    sql = (
        f"SELECT TraceId FROM {src.table} PREWHERE {' AND '.join(where)} "  # noqa: S608
        f"WHERE {project_clause()} GROUP BY TraceId "
        f"ORDER BY max(Timestamp) DESC, TraceId LIMIT {limit:d}"
    )
    return [row[0] for row in src.ch.query(sql, args)]
