"""The error/event model: captured errors grouped by fingerprint, product events by name.

Both ways in land in the same two tables (``error_occurrences``, ``product_events``,
see ``_schema.py``):

* the REST API (``api._observability``) validates a JSON body into a row;
* OTLP ingest hands every logs or traces request to :func:`otlp_captures`, which picks
  out what the SDK's ``capture_error``/``capture_exception``/``track_event`` produce:

  - an error is an ``exception`` log record or span event carrying ``error.id`` and
    ``error.fingerprint`` (the SDK sends both for one capture; the ``error_id`` is
    unique per project, so it is stored and counted once);
  - a product event is a log record with an OpenTelemetry event name other than
    ``exception`` and ``feature_flag.evaluation``; ``enduser.id`` is its distinct id.

Groups, counts, first/last seen and distinct users are aggregated when read, so the
age and size limits (``_retention.py``) trim them like every other table.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from telemetryflow.collector.ingest._otlp import CAPTURE_EVENT, attributes, compact_json
from telemetryflow.collector.query._params import Params, iso

__all__ = [
    "ERROR_EVENT",
    "Captured",
    "error_sample",
    "event_summary",
    "find_error",
    "list_error_groups",
    "list_events",
    "otlp_captures",
    "text_tags",
]

Row = tuple[Any, ...]
Captured = tuple[list[Row], list[Row]]
"""``(error rows, event rows)``."""

ERROR_EVENT = CAPTURE_EVENT
_NOT_PRODUCT = frozenset({ERROR_EVENT, "feature_flag.evaluation"})
_ERROR_ID, _FINGERPRINT = "error.id", "error.fingerprint"
_DISTINCT_ID = "enduser.id"
# capture attributes that describe the error itself; the rest are its tags
_ERROR_KEYS = frozenset({
    _ERROR_ID, _FINGERPRINT, "error.type", "error.code",
    "exception.type", "exception.message", "exception.stacktrace", "exception.escaped",
})  # fmt: skip
_MAX_ID = 128
_MAX_TEXT = 65_536
_INT64 = 2**63 - 1
_OTHER = "_OTHER"


def text_tags(values: Mapping[str, Any]) -> dict[str, str]:
    """Tags as text (non-strings as compact JSON), what listings show and filters match."""
    return {k: v if isinstance(v, str) else compact_json(v) for k, v in values.items()}


def _has_key(pairs: Iterable[KeyValue], key: str) -> bool:
    return any(kv.key == key for kv in pairs)


def _text(value: Any, limit: int = _MAX_TEXT) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else compact_json(value)
    return text[:limit]


def error_row_from_attributes(
    attrs: dict[str, Any], head: tuple[str, str], ids: tuple[str, str], when: tuple[int, int],
    fallback_message: str,
) -> Row | None:  # fmt: skip
    """An occurrence row from SDK capture attributes, or ``None`` when they are not one.

    ``head`` is ``(project, service)``, ``ids`` ``(trace_id, span_id)``, ``when``
    ``(time_ns, received_ns)``.
    """
    error_id, fingerprint = attrs.get(_ERROR_ID), attrs.get(_FINGERPRINT)
    if not (isinstance(error_id, str) and error_id and isinstance(fingerprint, str)):
        return None
    if not fingerprint:
        return None
    error_type = _text(attrs.get("error.type") or attrs.get("exception.type") or _OTHER, 1024)
    message = _text(attrs.get("exception.message")) or fallback_message[:_MAX_TEXT]
    tags = text_tags({k: v for k, v in attrs.items() if k not in _ERROR_KEYS})
    return (
        *head, error_id[:_MAX_ID], fingerprint[:_MAX_ID], error_type,
        _text(attrs.get("error.code"), 1024), message, _text(attrs.get("exception.stacktrace")),
        compact_json(tags), *ids, "otlp", min(when[0], _INT64), when[1],
    )  # fmt: skip


def _service(resource_attrs: Iterable[KeyValue]) -> str:
    for kv in resource_attrs:
        if kv.key == "service.name":
            return kv.value.string_value
    return ""


def _log_captures(request: ExportLogsServiceRequest, project: str, received_ns: int) -> Captured:
    errors: list[Row] = []
    events: list[Row] = []
    for rl in request.resource_logs:
        service: str | None = None
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                name = rec.event_name
                if not name:  # the cheap test that skips ordinary log records
                    continue
                if service is None:
                    service = _service(rl.resource.attributes)
                when = rec.time_unix_nano or rec.observed_time_unix_nano or received_ns
                ids = (rec.trace_id.hex(), rec.span_id.hex())
                if name == ERROR_EVENT:
                    if not _has_key(rec.attributes, _FINGERPRINT):
                        continue
                    body = rec.body.string_value
                    row = error_row_from_attributes(
                        attributes(rec.attributes), (project, service), ids,
                        (when, received_ns), body,
                    )  # fmt: skip
                    if row is not None:
                        errors.append(row)
                elif name not in _NOT_PRODUCT:
                    events.append(_event_row(rec, name, (project, service), ids, when, received_ns))
    return errors, events


def _event_row(
    rec: Any, name: str, head: tuple[str, str], ids: tuple[str, str], when: int, received_ns: int
) -> Row:
    props = attributes(rec.attributes)
    distinct = props.pop(_DISTINCT_ID, None)
    distinct_id = "" if distinct is None else _text(distinct, 1024)
    return (*head, name[:1024], distinct_id, compact_json(props), *ids, "otlp",
            min(when, _INT64), received_ns)  # fmt: skip


def _span_captures(request: ExportTraceServiceRequest, project: str, received_ns: int) -> Captured:
    errors: list[Row] = []
    for rs in request.resource_spans:
        service: str | None = None
        for ss in rs.scope_spans:
            for span in ss.spans:
                for event in span.events:
                    if event.name != ERROR_EVENT or not _has_key(event.attributes, _FINGERPRINT):
                        continue
                    if service is None:
                        service = _service(rs.resource.attributes)
                    when = event.time_unix_nano or span.end_time_unix_nano or received_ns
                    row = error_row_from_attributes(
                        attributes(event.attributes), (project, service),
                        (span.trace_id.hex(), span.span_id.hex()), (when, received_ns), "",
                    )  # fmt: skip
                    if row is not None:
                        errors.append(row)
    return errors, []


def otlp_captures(signal: str, request: Any, project: str, received_ns: int) -> Captured:
    """The errors and product events inside an OTLP ``logs`` or ``traces`` request."""
    if signal == "logs":
        return _log_captures(request, project, received_ns)
    if signal == "traces":
        return _span_captures(request, project, received_ns)
    return [], []


# -- reading ---------------------------------------------------------------------------
_LIST_PARAMS = ("since", "until", "window", "limit", "service")


def _filters(p: Params, project: str) -> tuple[list[str], list[Any]]:
    where: list[str] = ["project = ?"]
    args: list[Any] = [project]
    if p.has("since") or p.has("until") or p.has("window"):
        since, until = p.time_range(("window",), "24h")
        where.append("time_ns BETWEEN ? AND ?")
        args += [since, until]
    service = p.text("service")
    if service is not None:
        where.append("service = ?")
        args.append(service)
    return where, args


def error_sample(row: Iterable[Any]) -> dict[str, Any]:
    """One stored occurrence as the API shows it (the same columns in either store)."""
    (error_id, service, error_type, code, message, stack, tags, trace_id, span_id, source,
     time_ns) = row  # fmt: skip
    return {
        "error_id": error_id, "service": service, "type": error_type, "code": code or None,
        "message": message, "stack": stack or None, "tags": json.loads(tags),
        "trace_id": trace_id or None, "span_id": span_id or None, "source": source,
        "time": iso(time_ns),
    }  # fmt: skip


def list_error_groups(
    conn: sqlite3.Connection, project: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Error groups, most recently seen first: count, first/last seen, the latest sample."""
    p = Params(params, (*_LIST_PARAMS, "fingerprint", "type"))
    where, args = _filters(p, project)
    for column in ("fingerprint", "type"):
        value = p.text(column)
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    limit = p.integer("limit", 100, high=1000)
    clause = " AND ".join(where)
    groups = conn.execute(
        f"SELECT fingerprint, count(*), min(time_ns), max(time_ns), max(id) "  # noqa: S608
        f"FROM error_occurrences WHERE {clause} GROUP BY fingerprint "
        "ORDER BY max(time_ns) DESC, fingerprint LIMIT ?",
        (*args, limit),
    ).fetchall()
    total = conn.execute(
        f"SELECT count(*), count(DISTINCT fingerprint) FROM error_occurrences "  # noqa: S608
        f"WHERE {clause}",
        args,
    ).fetchone()
    samples = _samples(conn, [g[4] for g in groups])
    return {
        "groups": [_group(tuple(group), samples[group[4]]) for group in groups],
        "total_occurrences": int(total[0]),
        "total_groups": int(total[1]),
    }


def _group(group: tuple[Any, ...], sample: dict[str, Any]) -> dict[str, Any]:
    fingerprint, count, first, last, _ = group
    return {
        "fingerprint": fingerprint,
        "type": sample["type"],
        "message": sample["message"],
        "count": count,
        "first_seen": iso(first),
        "last_seen": iso(last),
        "sample": sample,
    }


def _samples(conn: sqlite3.Connection, ids: list[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        "SELECT id, error_id, service, type, code, message, stack, tags, trace_id, "  # noqa: S608
        f"span_id, source, time_ns FROM error_occurrences WHERE id IN ({marks})",
        ids,
    ).fetchall()
    return {row[0]: error_sample(row[1:]) for row in rows}


def find_error(conn: sqlite3.Connection, project: str, error_id: str) -> dict[str, Any] | None:
    """One occurrence by the ``error_id`` its capture answered, with its group's figures."""
    row = conn.execute(
        "SELECT id, fingerprint FROM error_occurrences WHERE project = ? AND error_id = ?",
        (project, error_id[:_MAX_ID]),
    ).fetchone()
    if row is None:
        return None
    count, first, last = conn.execute(
        "SELECT count(*), min(time_ns), max(time_ns) FROM error_occurrences "
        "WHERE project = ? AND fingerprint = ?",
        (project, row[1]),
    ).fetchone()
    occurrence = _samples(conn, [row[0]])[row[0]]
    group = {"count": count, "first_seen": iso(first), "last_seen": iso(last)}
    return {**occurrence, "fingerprint": row[1], "group": group}


def list_events(
    conn: sqlite3.Connection, project: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Per event name: how many, how many distinct users, first/last seen; most first."""
    p = Params(params, (*_LIST_PARAMS, "event"))
    where, args = _filters(p, project)
    event = p.text("event")
    if event is not None:
        where.append("event = ?")
        args.append(event)
    limit = p.integer("limit", 100, high=1000)
    rows = conn.execute(
        "SELECT event, count(*), count(DISTINCT nullif(distinct_id, '')), "  # noqa: S608
        f"min(time_ns), max(time_ns) FROM product_events WHERE {' AND '.join(where)} "
        "GROUP BY event ORDER BY count(*) DESC, event LIMIT ?",
        (*args, limit),
    ).fetchall()
    return {"events": [event_summary(*row) for row in rows]}


def event_summary(name: str, count: int, users: int, first: int, last: int) -> dict[str, Any]:
    """One event name's counts as the API shows them (either store)."""
    return {
        "event": name,
        "count": count,
        "distinct_ids": users,
        "first_seen": iso(first),
        "last_seen": iso(last),
    }
