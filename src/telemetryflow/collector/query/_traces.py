"""Trace queries: one trace by id as a span tree, or recent traces matching filters.

A trace matches a list query when any of its spans matches every filter; the answer
then describes the whole trace (all its spans), newest first.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telemetryflow.collector.query._logs import like_pattern
from telemetryflow.collector.query._params import Params, iso
from telemetryflow.collector.query._refs import REF_COLUMNS, REF_JOINS, RefReader

__all__ = ["TRACE_PARAMS", "TraceAsk", "build_tree", "query_traces"]

TRACE_PARAMS = (
    "trace_id", "trace", "name", "name_contains", "service", "min_duration", "error", "time_window",
    "window", "since", "until", "detail", "limit", "project_name",
)  # fmt: skip
_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUS = ("UNSET", "OK", "ERROR")
_SPAN_COLUMNS = (
    "t.trace_id, t.span_id, t.parent_span_id, t.name, t.service, t.kind, t.start_ns, "
    "t.end_ns, t.duration_ns, t.status_code, t.status_message, t.attributes, t.events, "
    f"t.trace_state, t.links, {REF_COLUMNS}"
)
_BRIEF_COLUMNS = "trace_id, span_id, parent_span_id, name, service, start_ns, end_ns, status_code"
_SCAN_BATCH = 512


def _span(row: tuple[Any, ...], refs: RefReader) -> dict[str, Any]:
    resource, scope = refs.read(row[15:])
    return {
        "trace_id": row[0],
        "span_id": row[1],
        "parent_span_id": row[2],
        "name": row[3],
        "service": row[4],
        "kind": _KINDS[row[5]] if 0 <= row[5] < len(_KINDS) else str(row[5]),
        "start": iso(row[6]),
        "start_unix_nano": row[6],
        "end_unix_nano": row[7],
        "duration_ms": row[8] / 1e6,
        "status": _STATUS[row[9]] if 0 <= row[9] < len(_STATUS) else str(row[9]),
        "status_message": row[10],
        "attributes": json.loads(row[11]),
        "events": json.loads(row[12]),
        "trace_state": row[13],
        "links": json.loads(row[14]),
        "resource": resource,
        "scope": scope,
        "children": [],
    }


def build_tree(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nest spans under their parents; spans whose parent is missing become roots.

    Clients choose the parent ids, so they can make spans each other's parent: a span
    is nested only under a parent whose own chain of parents ends, so the answer is
    always a forest (no span is its own ancestor, and there is at least one root).
    """
    by_id = {s["span_id"]: s for s in spans}
    ends = _chains_that_end(by_id)
    roots: list[dict[str, Any]] = []
    for span in sorted(spans, key=lambda s: (s["start_unix_nano"], s["span_id"])):
        parent = by_id.get(span["parent_span_id"])
        if parent is not None and parent is not span and ends[parent["span_id"]]:
            parent["children"].append(span)
        else:
            roots.append(span)
    return roots


def _chains_that_end(by_id: Mapping[str, dict[str, Any]]) -> dict[str, bool]:
    """For each span id, whether following its parents reaches a span with none."""
    parent_of = {span_id: span["parent_span_id"] for span_id, span in by_id.items()}
    ends: dict[str, bool] = {}
    for start in parent_of:
        _chain_ends(parent_of, start, ends)
    return ends


def _chain_ends(parent_of: Mapping[str, str], start: str, ends: dict[str, bool]) -> bool:
    """Whether following parents from ``start`` reaches a span with none (kept in ``ends``).

    A span naming itself as parent ends its chain; a chain that comes back to a span
    already on it loops. Each id is walked once (results are shared along the path).
    """
    path: list[str] = []
    on_path: set[str] = set()
    current = start
    while current in parent_of and current not in ends and current not in on_path:
        on_path.add(current)
        path.append(current)
        parent = parent_of[current]
        current = "" if parent == current else parent
    result = ends.get(current, current not in on_path)
    for span_id in path:
        ends[span_id] = result
    return ends.get(start, result)


def _summary(trace_id: str, spans: list[dict[str, Any]], detail: bool) -> dict[str, Any]:
    roots = build_tree(spans)
    start = min(s["start_unix_nano"] for s in spans)
    end = max(s["end_unix_nano"] for s in spans)
    root = roots[0]
    summary: dict[str, Any] = {
        "trace_id": trace_id,
        "root_name": root["name"],
        "service": root["service"],
        "start": iso(start),
        "start_unix_nano": start,
        "duration_ms": max(0, end - start) / 1e6,
        "span_count": len(spans),
        "error": any(s["status"] == "ERROR" for s in spans),
        "services": sorted({s["service"] for s in spans if s["service"]}),
    }
    if detail:
        summary["spans"] = roots
    return summary


def _brief_summary(trace_id: str, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """:func:`_summary` without detail, from ``_BRIEF_COLUMNS`` rows.

    The root is the span :func:`build_tree` would list first (earliest start, then
    span id, among spans not nested under a parent), found without building the tree:
    in the usual trace the first span tried has no parent and ends the search.
    """
    by_id = {row[1]: row for row in rows}
    parent_of = {span_id: row[2] for span_id, row in by_id.items()}
    ends: dict[str, bool] = {}
    root = rows[0]
    for row in sorted(rows, key=lambda r: (r[5], r[1])):
        parent = by_id.get(row[2])
        if parent is None or parent is row or not _chain_ends(parent_of, parent[1], ends):
            root = row
            break
    start = min(row[5] for row in rows)
    end = max(row[6] for row in rows)
    return {
        "trace_id": trace_id,
        "root_name": root[3],
        "service": root[4],
        "start": iso(start),
        "start_unix_nano": start,
        "duration_ms": max(0, end - start) / 1e6,
        "span_count": len(rows),
        "error": any(row[7] == 2 for row in rows),
        "services": sorted({row[4] for row in rows if row[4]}),
    }


def _load_brief(
    conn: sqlite3.Connection, project: str, trace_ids: list[str]
) -> dict[str, list[Any]]:
    """Spans for summaries only (``detail=false``, the trace list).

    A list row describes the whole trace, so every span is still read, but only the
    columns the summary uses: decoding attributes, events, links and resources
    of a 5,000-span trace cost far more than the list row it ends up as.
    """
    grouped: dict[str, list[Any]] = {tid: [] for tid in trace_ids}
    if not trace_ids:
        return grouped
    marks = ", ".join("?" * len(trace_ids))
    rows = conn.execute(
        f"SELECT {_BRIEF_COLUMNS} FROM spans "  # noqa: S608
        f"WHERE trace_id IN ({marks}) AND +project = ?",  # by trace id, see _schema
        (*trace_ids, project),
    )
    for row in rows:
        grouped[row[0]].append(row)
    return grouped


def _load(conn: sqlite3.Connection, project: str, trace_ids: list[str]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {tid: [] for tid in trace_ids}
    if not trace_ids:
        return grouped
    marks = ", ".join("?" * len(trace_ids))
    rows = conn.execute(
        f"SELECT {_SPAN_COLUMNS} FROM spans t {REF_JOINS} "  # noqa: S608
        f"WHERE t.trace_id IN ({marks}) AND +t.project = ?",  # by trace id, see _schema
        (*trace_ids, project),
    )
    refs = RefReader()
    for row in rows:
        grouped[row[0]].append(_span(row, refs))
    return grouped


@dataclass(frozen=True)
class TraceAsk:
    """A trace query's checked parameters, the same for every store."""

    params: Params
    detail: bool
    limit: int
    since: int
    until: int
    ids: list[str] | None
    """The traces asked for by id (none for another project's name); ``None``: search."""

    @classmethod
    def parse(cls, raw: Mapping[str, Any], project: str) -> TraceAsk:
        params = Params(raw, TRACE_PARAMS)
        detail = params.flag("detail", True)
        limit = params.integer("limit", 100, high=1000)
        project_name = params.text("project_name")
        trace_id = params.text("trace_id")
        since, until = params.time_range(("time_window", "window"), "24h")
        ids: list[str] | None = None
        if project_name is not None and project_name != project:
            ids = []
        elif trace_id is not None:
            ids = [trace_id.strip().lower()]
        return cls(params, detail, limit, since, until, ids)


def query_traces(conn: sqlite3.Connection, project: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Answer ``/v1/traces/query`` for ``project``."""
    ask = TraceAsk.parse(raw, project)
    detail, since, until = ask.detail, ask.since, ask.until
    ids = ask.ids
    if ids is None:
        ids = _matching_trace_ids(conn, project, ask.params, since, until, ask.limit)
    if detail:
        grouped = _load(conn, project, ids)
        traces = [_summary(tid, grouped[tid], True) for tid in ids if grouped[tid]]
    else:
        brief = _load_brief(conn, project, ids)
        traces = [_brief_summary(tid, brief[tid]) for tid in ids if brief[tid]]
    return {"traces": traces, "count": len(traces), "since": iso(since), "until": iso(until)}


def _matching_trace_ids(
    conn: sqlite3.Connection, project: str, params: Params, since: int, until: int, limit: int
) -> list[str]:
    # ``+project``: narrowed by the time index, not the (project, received_ns) one
    sql = ["SELECT trace_id FROM spans WHERE start_ns >= ? AND start_ns <= ? AND +project = ?"]
    args: list[Any] = [since, until, project]
    name = params.text("name", "trace")
    if name is not None:
        sql.append("AND name = ?")
        args.append(name)
    name_contains = params.text("name_contains")
    if name_contains:
        sql.append("AND name LIKE ? ESCAPE '\\'")
        args.append(like_pattern(name_contains))
    service = params.text("service")
    if service is not None:
        sql.append("AND service = ?")
        args.append(service)
    min_duration = params.duration_ns("min_duration")
    if min_duration is not None:
        sql.append("AND duration_ns >= ?")
        args.append(min_duration)
    if params.flag("error", False):
        sql.append("AND status_code = 2")
    sql.append("ORDER BY start_ns DESC")
    seen: dict[str, None] = {}
    cursor = conn.execute(" ".join(sql), args)
    while len(seen) < limit:
        batch = cursor.fetchmany(_SCAN_BATCH)
        if not batch:
            break
        for (tid,) in batch:
            seen.setdefault(tid, None)
            if len(seen) >= limit:
                break
    cursor.close()
    return list(seen)
