"""Log queries: project, service, minimum severity, window, trace id, text; newest first."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.query._params import Params, iso
from telemetryflow.collector.query._refs import REF_COLUMNS, REF_JOINS, RefReader

__all__ = ["SEVERITY_NUMBERS", "like_pattern", "query_logs", "severity_name"]

SEVERITY_NUMBERS = {
    "trace": 1, "debug": 5, "info": 9, "warn": 13, "warning": 13, "error": 17,
    "fatal": 21, "critical": 21,
}  # fmt: skip
"""The lowest OpenTelemetry severity number of each level name."""

_KNOWN = (
    "project_name", "service", "severity", "time_window", "window", "since", "until",
    "trace_id", "contains", "limit",
)  # fmt: skip
_SELECT = (
    "SELECT t.time_ns, t.service, t.severity_number, t.severity_text, t.body, t.trace_id, "  # noqa: S608
    f"t.span_id, t.attributes, t.body_kind, {REF_COLUMNS} FROM logs t {REF_JOINS} "
    "WHERE t.time_ns >= ? AND t.time_ns <= ? AND +t.project = ?"  # time index, see _schema
)
_NAMES = ((21, "FATAL"), (17, "ERROR"), (13, "WARN"), (9, "INFO"), (5, "DEBUG"), (1, "TRACE"))


def severity_name(number: int, text: str = "") -> str:
    """The level name for an OpenTelemetry severity number (the record's text wins)."""
    if text:
        return text
    for low, name in _NAMES:
        if number >= low:
            return name
    return "UNSPECIFIED"


def like_pattern(text: str) -> str:
    """``text`` as a ``LIKE`` pattern matching it anywhere, ``%``, ``_`` and ``\\`` literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def query_logs(conn: sqlite3.Connection, project: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Answer ``/v1/logs/query`` for ``project``: at most ``limit`` records, newest first."""
    params = Params(raw, _KNOWN)
    since, until = params.time_range(("time_window", "window"), "24h")
    limit = params.integer("limit", 500)
    sql = [_SELECT]
    args: list[Any] = [since, until, project]
    project_name = params.text("project_name")
    if project_name is not None and project_name != project:
        return {"logs": [], "count": 0, "since": iso(since), "until": iso(until)}
    severity = params.text("severity")
    if severity is not None:
        number = SEVERITY_NUMBERS.get(severity.strip().lower())
        if number is None:
            raise BadRequestError(400, "severity must be trace, debug, info, warn, error or fatal")
        sql.append("AND t.severity_number >= ?")
        args.append(number)
    for column, name in (("service", "service"), ("trace_id", "trace_id")):
        value = params.text(name)
        if value is not None:
            sql.append(f"AND t.{column} = ?")
            args.append(value.lower() if name == "trace_id" else value)
    contains = params.text("contains")
    if contains:
        sql.append("AND t.body LIKE ? ESCAPE '\\'")
        args.append(like_pattern(contains))
    sql.append("ORDER BY t.time_ns DESC, t.id DESC LIMIT ?")
    args.append(limit)
    refs = RefReader()
    logs = [_record(row, refs) for row in conn.execute(" ".join(sql), args)]
    return {"logs": logs, "count": len(logs), "since": iso(since), "until": iso(until)}


def _body(kind: str, text: str) -> Any:
    """The stored body as the client sent it: structured kinds parsed back from JSON.

    Strings and bytes (base64) stay text; ``kind`` is ``""`` for rows written before
    the kind was stored, whose body was kept as text either way.
    """
    if kind in ("", "string", "bytes"):
        return text
    if kind == "empty":
        return None
    return json.loads(text)


def _record(row: tuple[Any, ...], refs: RefReader) -> dict[str, Any]:
    resource, scope = refs.read(row[9:])
    return {
        "time": iso(row[0]),
        "time_unix_nano": row[0],
        "service": row[1],
        "severity": severity_name(row[2], row[3]),
        "severity_number": row[2],
        "body": _body(row[8], row[4]),
        "body_kind": row[8] or "string",
        "trace_id": row[5],
        "span_id": row[6],
        "attributes": json.loads(row[7]),
        "resource": resource,
        "scope": scope,
    }
