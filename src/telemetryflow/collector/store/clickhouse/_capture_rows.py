"""The SDK's captures as rows of one shape, from our tables and the exporter's, in SQL.

An error occurrence or product event reaches ClickHouse two ways: our receivers write
it into our tables (``_ddl.py``) *and* as a log record or span event into the
exporter's tables; the OpenTelemetry Collector's exporter writes only the latter. The
listings read both: our table ``UNION ALL`` a projection of the exporter's rows that
carry the SDK's capture shape, the same rule ``_errors_events`` applies on receipt,
written in SQL:

* an error is a log record, or a span event named ``exception``, whose attributes hold
  a non-empty ``error.id`` and ``error.fingerprint`` (both sent by the SDK, never
  computed by the receiver); a log record's event name must be ``exception`` when the
  logs table has the exporter's ``EventName`` column (tables without it keep no event
  name: the two attributes decide alone). Type, code, message (else the log body),
  stack, tags and the length limits are those of ``error_row_from_attributes``.
* a product event is a log record whose ``EventName`` is set and is neither
  ``exception`` nor ``feature_flag.evaluation``; ``enduser.id`` is its distinct id.
  Without that column no product event can be told from a log record: none is read.

Occurrences are deduplicated by ``error_id``: our table's copy first (the one received
first, as SQLite keeps it), else the log record's, else the span event's. Product
events need none: our receivers leave ``EventName`` empty, so no event they wrote is
projected twice. The exporter's part carries the time window as a condition on its
``Timestamp`` column (and on ``TimestampTime``, the logs table's primary key where it
has one: ``_log_time.py``), so only the window's parts are read; a span event's own
time is checked after it, on spans started up to :data:`SPAN_EVENT_LEAD` before the
window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from telemetryflow.collector.store.clickhouse._ddl import ERRORS_TABLE, EVENTS_TABLE
from telemetryflow.collector.store.clickhouse._log_time import second_args, second_bounds
from telemetryflow.collector.store.clickhouse._tables import Tables, project_clause

__all__ = ["SPAN_EVENT_LEAD", "Ask", "error_rows", "event_rows"]

SPAN_EVENT_LEAD = 3600 * 10**9
"""How long before the window a span may have started for its events to be read."""
_ERROR_KEYS = (
    "error.id", "error.fingerprint", "error.type", "error.code",
    "exception.type", "exception.message", "exception.stacktrace", "exception.escaped",
)  # fmt: skip
_PRODUCT = "EventName NOT IN ('', 'exception', 'feature_flag.evaluation')"
_DISTINCT_ID = "LogAttributes['enduser.id']"
_HAS_FINGERPRINT = "mapContains(LogAttributes, 'error.fingerprint')"
_HAS_EXCEPTION = "has(`Events.Name`, 'exception')"
_IS_EXCEPTION = "event_name = 'exception'"
_EMPTY = "''"
_MAX_ID = 128
_OCCURRENCE = (
    "error_id, fingerprint, service, type, code, message, stack, tags, trace_id, span_id, "
    "source, time_ns, received_ns"
)


@dataclass
class Ask:
    """The filters of one listing: equality on row columns, an optional time window."""

    project: str
    default_project: str
    window: tuple[int, int] | None = None
    equal: dict[str, str] = field(default_factory=dict)

    def args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"project": self.project, "default_project": self.default_project}
        if self.window is not None:
            since, until = self.window
            args.update(since=since, until=until, lead_since=since - SPAN_EVENT_LEAD,
                        **second_args(since, until))  # fmt: skip
        return args | {f"eq_{column}": value for column, value in self.equal.items()}

    def equal_clauses(self) -> list[str]:
        return [f"{column} = {{eq_{column}:String}}" for column in self.equal]

    def time_clause(self) -> list[str]:
        """On the rows' ``time_ns`` (ours, and any copy chosen)."""
        return [] if self.window is None else ["time_ns BETWEEN {since:Int64} AND {until:Int64}"]


def _and(clauses: list[str]) -> str:
    return " AND ".join(clauses) if clauses else "1"


def _window(ask: Ask, since: str, columns: frozenset[str] = frozenset()) -> list[str]:
    """The window on the exporter's ``Timestamp`` column, and on ``TimestampTime`` when
    the logs table's ``columns`` hold it (its primary key has that column, not
    ``Timestamp``)."""
    if ask.window is None:
        return []
    lower = f"fromUnixTimestamp64Nano({{{since}:Int64}})"
    upper = "fromUnixTimestamp64Nano({until:Int64})"
    return [f"Timestamp BETWEEN {lower} AND {upper}", *second_bounds(columns)]


def _text(value: str, limit: int) -> str:
    return f"leftUTF8({value}, {limit:d})"


def _error_columns(attrs: str, message_fallback: str) -> str:
    """An occurrence's columns from capture attributes, as ``error_row_from_attributes``."""

    def a(key: str) -> str:
        return f"{attrs}['{key}']"

    keys = ", ".join(f"'{key}'" for key in _ERROR_KEYS)
    kind = (
        f"multiIf({a('error.type')} != '', {a('error.type')}, "
        f"{a('exception.type')} != '', {a('exception.type')}, '_OTHER')"
    )
    message = f"if({a('exception.message')} != '', {a('exception.message')}, {message_fallback})"
    return ", ".join([
        f"{_text(a('error.id'), _MAX_ID)} AS error_id",
        f"{_text(a('error.fingerprint'), _MAX_ID)} AS fingerprint", "ServiceName AS service",
        f"{_text(kind, 1024)} AS type", f"{_text(a('error.code'), 1024)} AS code",
        f"{_text(message, 65536)} AS message",
        f"{_text(a('exception.stacktrace'), 65536)} AS stack",
        f"toJSONString(mapFilter((k, v) -> k NOT IN ({keys}), {attrs})) AS tags",
    ])  # fmt: skip


def _is_capture(attrs: str, ask: Ask) -> list[str]:
    """The capture shape, and an id or fingerprint asked for on the attribute itself
    (equal to the cut column when shorter than the cut: the maps' bloom filters serve)."""
    clauses = [f"{attrs}['error.id'] != ''", f"{attrs}['error.fingerprint'] != ''"]
    for column, key in (("error_id", "error.id"), ("fingerprint", "error.fingerprint")):
        value = ask.equal.get(column)
        if value is not None and len(value) < _MAX_ID:
            clauses.append(f"{attrs}['{key}'] = {{eq_{column}:String}}")
    return clauses


def error_rows(tables: Tables, ask: Ask, columns: frozenset[str]) -> str:
    """A SELECT of every occurrence of ``ask`` once (:data:`_OCCURRENCE` columns)."""
    equal = ask.equal_clauses()
    ours = (
        f"SELECT {_OCCURRENCE}, 0 AS rank FROM {tables.qualified(ERRORS_TABLE)} FINAL "  # noqa: S608
        f"WHERE {_and(['project = {project:String}', *equal])}"
    )
    window = _window(ask, "since", columns)
    service = ["ServiceName = {eq_service:String}"] if "service" in ask.equal else []
    log_where = [*_is_capture("LogAttributes", ask), project_clause(), *equal]
    if "EventName" in columns:
        log_where.insert(0, "EventName = 'exception'")
    logs = (
        f"SELECT {_error_columns('LogAttributes', _text('Body', 65536))}, "  # noqa: S608
        "TraceId AS trace_id, SpanId AS span_id, 'otlp' AS source, "
        "toInt64(toUnixTimestamp64Nano(Timestamp)) AS time_ns, toInt64(0) AS received_ns, "
        f"1 AS rank FROM {tables.qualified(tables.logs)} "
        f"PREWHERE {_and([*window, *service, _HAS_FINGERPRINT])} "
        f"WHERE {_and(log_where)}"
    )
    lead = _window(ask, "lead_since")
    span_time = (
        "toInt64(if(toUnixTimestamp64Nano(event_time) = 0, "
        "toUnixTimestamp64Nano(Timestamp) + Duration, toUnixTimestamp64Nano(event_time)))"
    )
    span_where = [_IS_EXCEPTION, *_is_capture("event_attrs", ask), project_clause(), *equal]
    spans = (
        f"SELECT {_error_columns('event_attrs', _EMPTY)}, TraceId AS trace_id, "  # noqa: S608
        f"SpanId AS span_id, 'otlp' AS source, {span_time} AS time_ns, "
        f"toInt64(0) AS received_ns, 2 AS rank FROM {tables.qualified(tables.traces)} "
        "ARRAY JOIN `Events.Timestamp` AS event_time, `Events.Name` AS event_name, "
        "`Events.Attributes` AS event_attrs "
        f"PREWHERE {_and([*lead, *service, _HAS_EXCEPTION])} "
        f"WHERE {_and(span_where)}"
    )  # fmt: skip
    return (
        f"SELECT {_OCCURRENCE} FROM ({ours} UNION ALL {logs} UNION ALL {spans}) "  # noqa: S608
        "ORDER BY error_id, rank, time_ns LIMIT 1 BY error_id"
    )


def event_rows(tables: Tables, ask: Ask, columns: frozenset[str]) -> str:
    """A SELECT of ``event, distinct_id, time_ns`` of every product event of ``ask``."""
    where = ["project = {project:String}", *ask.time_clause(), *ask.equal_clauses()]
    ours = (
        "SELECT event, distinct_id, time_ns "  # noqa: S608
        f"FROM {tables.qualified(EVENTS_TABLE)} WHERE {_and(where)}"
    )
    if "EventName" not in columns:
        return ours
    window = _window(ask, "since", columns)
    service = ["ServiceName = {eq_service:String}"] if "service" in ask.equal else []
    equal = [c for c in ask.equal_clauses() if not c.startswith("service ")]
    logs = (
        f"SELECT {_text('EventName', 1024)} AS event, "  # noqa: S608
        f"{_text(_DISTINCT_ID, 1024)} AS distinct_id, "
        "toInt64(toUnixTimestamp64Nano(Timestamp)) AS time_ns "
        f"FROM {tables.qualified(tables.logs)} PREWHERE "
        f"{_and([*window, *service, _PRODUCT])} "
        f"WHERE {_and([project_clause(), *equal])}"
    )
    return f"{ours} UNION ALL {logs}"
