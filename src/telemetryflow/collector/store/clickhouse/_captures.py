"""Captured errors and product events in ClickHouse: the listings the SQLite store answers.

The rows are the ones the shared model builds (``_errors_events``: the SDK's
``exception`` log records and span events carrying ``error.id``/``error.fingerprint``,
product events, and the REST API's), read from two small tables of ours (``_ddl.py``)
together with the same captures in the exporter's tables, projected and deduplicated in
SQL (``_capture_rows.py``): an app sending through the OpenTelemetry Collector is
listed like one sending to us. Groups, counts, first/last seen and distinct users are
aggregated by the database when read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from telemetryflow.collector.ingest._errors_events import error_sample, event_summary
from telemetryflow.collector.query._params import Params, iso
from telemetryflow.collector.store.clickhouse._capture_rows import Ask, error_rows, event_rows
from telemetryflow.collector.store.clickhouse._log_time import log_columns
from telemetryflow.collector.store.clickhouse._seam import ClickHouseConnection
from telemetryflow.collector.store.clickhouse._tables import Tables

__all__ = [
    "ERROR_COLUMNS",
    "EVENT_COLUMNS",
    "error_dicts",
    "event_dicts",
    "find_error",
    "list_error_groups",
    "list_events",
]

ERROR_COLUMNS = (
    "project", "service", "error_id", "fingerprint", "type", "code", "message", "stack",
    "tags", "trace_id", "span_id", "source", "time_ns", "received_ns",
)  # fmt: skip
"""The order of an error occurrence row (as ``_errors_events`` builds it)."""
EVENT_COLUMNS = (
    "project", "service", "event", "distinct_id", "properties", "trace_id", "span_id",
    "source", "time_ns", "received_ns",
)  # fmt: skip
"""The order of a product event row."""
_LIST_PARAMS = ("since", "until", "window", "limit", "service")
_MAX_ID = 128
_SAMPLE = "error_id, service, type, code, message, stack, tags, trace_id, span_id, source, time_ns"


def error_dicts(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(ERROR_COLUMNS, row, strict=True)) for row in rows]


def event_dicts(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(EVENT_COLUMNS, row, strict=True)) for row in rows]


def _ask(p: Params, tables: Tables, project: str, columns: tuple[str, ...]) -> Ask:
    ask = Ask(project, tables.default_project)
    if p.has("since") or p.has("until") or p.has("window"):
        ask.window = p.time_range(("window",), "24h")
    for column in columns:
        value = p.text(column)
        if value is not None:
            ask.equal[column] = value
    return ask


def list_error_groups(
    ch: ClickHouseConnection, tables: Tables, project: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Error groups, most recently seen first: count, first/last seen, the latest sample."""
    p = Params(params, (*_LIST_PARAMS, "fingerprint", "type"))
    ask = _ask(p, tables, project, ("service", "fingerprint", "type"))
    limit = p.integer("limit", 100, high=1000)
    rows = error_rows(tables, ask, log_columns(ch, tables))
    source = f"({rows}) WHERE {' AND '.join(ask.time_clause()) or '1'}"
    args = ask.args()
    groups = ch.query(
        f"SELECT fingerprint, count(), min(time_ns), max(time_ns), "  # noqa: S608
        f"argMax(tuple({_SAMPLE}), (time_ns, received_ns, error_id)) "
        f"FROM {source} GROUP BY fingerprint "
        f"ORDER BY max(time_ns) DESC, fingerprint LIMIT {limit:d}",
        args,
    )
    total = ch.query(f"SELECT count(), uniqExact(fingerprint) FROM {source}", args)  # noqa: S608
    return {
        "groups": [_group(row) for row in groups],
        "total_occurrences": int(total[0][0]) if total else 0,
        "total_groups": int(total[0][1]) if total else 0,
    }


def _group(row: Sequence[Any]) -> dict[str, Any]:
    fingerprint, count, first, last, sample_row = row
    sample = error_sample(sample_row)
    return {
        "fingerprint": fingerprint,
        "type": sample["type"],
        "message": sample["message"],
        "count": count,
        "first_seen": iso(first),
        "last_seen": iso(last),
        "sample": sample,
    }


def find_error(
    ch: ClickHouseConnection, tables: Tables, project: str, error_id: str
) -> dict[str, Any] | None:
    """One occurrence by the ``error_id`` its capture answered, with its group's figures."""
    columns = log_columns(ch, tables)
    ask = Ask(project, tables.default_project, equal={"error_id": error_id[:_MAX_ID]})
    rows = ch.query(
        f"SELECT fingerprint, {_SAMPLE} FROM ({error_rows(tables, ask, columns)}) "  # noqa: S608
        "LIMIT 1",
        ask.args(),
    )
    if not rows:
        return None
    fingerprint = rows[0][0]
    group_ask = Ask(project, tables.default_project, equal={"fingerprint": fingerprint})
    count, first, last = ch.query(
        "SELECT count(), min(time_ns), max(time_ns) "  # noqa: S608
        f"FROM ({error_rows(tables, group_ask, columns)})",
        group_ask.args(),
    )[0]
    group = {"count": count, "first_seen": iso(first), "last_seen": iso(last)}
    return {**error_sample(rows[0][1:]), "fingerprint": fingerprint, "group": group}


def list_events(
    ch: ClickHouseConnection, tables: Tables, project: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Per event name: how many, how many distinct users, first/last seen; most first."""
    p = Params(params, (*_LIST_PARAMS, "event"))
    ask = _ask(p, tables, project, ("service", "event"))
    limit = p.integer("limit", 100, high=1000)
    rows = ch.query(
        "SELECT event, count() AS n, uniqExactIf(distinct_id, distinct_id != ''), "  # noqa: S608
        f"min(time_ns), max(time_ns) FROM ({event_rows(tables, ask, log_columns(ch, tables))}) "
        f"GROUP BY event ORDER BY n DESC, event LIMIT {limit:d}",
        ask.args(),
    )
    return {"events": [event_summary(*row) for row in rows]}
