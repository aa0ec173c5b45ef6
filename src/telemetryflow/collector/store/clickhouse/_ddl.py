"""The tables: the exporter's traces and logs tables, and three small ones of our own.

Traces and logs are created exactly as the OpenTelemetry Collector's ``clickhouse``
exporter creates them (column names, types, order key, indexes), only when they do not
exist yet: on a database the exporter already fills, nothing of its is touched. The
trace-id lookup table and its materialized view are the exporter's too.

Our own tables hold what the exporter has no place for:

* ``telemetryflow_errors``: error occurrences the SDK captured (grouped by fingerprint);
* ``telemetryflow_events``: product events;
* ``telemetryflow_idempotency``: the answers of 001 reports/batches by idempotency key;
* ``telemetryflow_histogram_minutes``: explicit histograms rolled up per stream and
  minute, so a long metric query reads less (``_rollup_sql.py``).

Each carries the project as a column. They are ``ReplacingMergeTree`` where a repeat
must count once (an error captured twice arrives as a log record and a span event with
one ``error_id``): the copy received first is kept, as SQLite's ``INSERT OR IGNORE``
keeps it (the version column ``first`` is larger for earlier arrivals); reads use
``FINAL`` on them, small as they are.
"""

from __future__ import annotations

from telemetryflow.collector.store.clickhouse._rollup_sql import ROLLUP_TABLE, rollup_ddl
from telemetryflow.collector.store.clickhouse._tables import Tables

__all__ = ["ERRORS_TABLE", "EVENTS_TABLE", "IDEMPOTENCY_TABLE", "ROLLUP_TABLE", "tables_ddl"]

ERRORS_TABLE = "telemetryflow_errors"
EVENTS_TABLE = "telemetryflow_events"
IDEMPOTENCY_TABLE = "telemetryflow_idempotency"

_MAP = "Map(LowCardinality(String), String)"


def _traces(t: Tables) -> list[str]:
    table = t.qualified(t.traces)
    ids = t.qualified(f"{t.traces}_trace_id_ts")
    view = t.qualified(f"{t.traces}_trace_id_ts_mv")
    return [
        f"""CREATE TABLE IF NOT EXISTS {table} (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {_MAP} CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes {_MAP} CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (Timestamp DateTime64(9), Name LowCardinality(String), Attributes {_MAP})
        CODEC(ZSTD(1)),
    Links Nested (TraceId String, SpanId String, TraceState String, Attributes {_MAP})
        CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = MergeTree()
PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1""",
        f"""CREATE TABLE IF NOT EXISTS {ids} (
    TraceId String CODEC(ZSTD(1)),
    Start DateTime CODEC(Delta, ZSTD(1)),
    End DateTime CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = MergeTree()
PARTITION BY toDate(Start)
ORDER BY (TraceId, Start)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {view} TO {ids}
AS SELECT TraceId, min(Timestamp) AS Start, max(Timestamp) AS End
FROM {table} WHERE TraceId != '' GROUP BY TraceId""",  # noqa: S608
    ]


def _logs(t: Tables) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {t.qualified(t.logs)} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {_MAP} CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes {_MAP} CODEC(ZSTD(1)),
    LogAttributes {_MAP} CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = MergeTree()
PARTITION BY toDate(TimestampTime)
PRIMARY KEY (ServiceName, TimestampTime)
ORDER BY (ServiceName, TimestampTime, Timestamp)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""


def _ours(t: Tables) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {t.qualified(ERRORS_TABLE)} (
    project String, service String, error_id String, fingerprint String, type String,
    code String, message String, stack String, tags String, trace_id String,
    span_id String, source LowCardinality(String), time_ns Int64, received_ns Int64,
    first UInt64 DEFAULT 9223372036854775807 - received_ns
) ENGINE = ReplacingMergeTree(first) ORDER BY (project, error_id)""",
        f"""CREATE TABLE IF NOT EXISTS {t.qualified(EVENTS_TABLE)} (
    project String, service String, event String, distinct_id String, properties String,
    trace_id String, span_id String, source LowCardinality(String), time_ns Int64,
    received_ns Int64
) ENGINE = MergeTree ORDER BY (project, event, time_ns)""",
        f"""CREATE TABLE IF NOT EXISTS {t.qualified(IDEMPOTENCY_TABLE)} (
    project String, key String, result String, received_ns Int64
) ENGINE = ReplacingMergeTree ORDER BY (project, key)""",
        rollup_ddl(t),
    ]


def tables_ddl(
    tables: Tables, existing: frozenset[str] = frozenset(), database_exists: bool = False
) -> list[str]:
    """Statements creating the database and the tables this store reads or writes that
    are not in ``existing`` (metric tables come from the metric side's DDL).

    Nothing is issued for what exists: a user that may only read starts on a database
    that holds everything already. The trace-id table and its view are created only with
    the traces table: added to a traces table the exporter already filled, the id table
    would know only the spans written after it, and a lookup bounded by it would miss
    the others.
    """
    statements = [] if database_exists else [f"CREATE DATABASE IF NOT EXISTS `{tables.database}`"]
    if tables.traces not in existing:
        statements += _traces(tables)
    if tables.logs not in existing:
        statements.append(_logs(tables))
    names = (ERRORS_TABLE, EVENTS_TABLE, IDEMPOTENCY_TABLE, ROLLUP_TABLE)
    ours = zip(names, _ours(tables), strict=True)
    return statements + [statement for name, statement in ours if name not in existing]
