"""The OpenTelemetry Collector exporter's tables and rows, written here as the exporter writes them.

Independent of the store's own DDL: these statements restate the exporter's column
names and types (two generations of them), and the rows are inserted with plain SQL,
the way the exporter's INSERTs leave them: span kinds and status codes as words,
attributes as strings, events and links as ``Nested`` columns.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telemetryflow.collector.store.clickhouse._seam import ChdbConnection

MAP = "Map(LowCardinality(String), String)"

TRACES = f"""CREATE TABLE {{db}}.otel_traces (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)), SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)), TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)), SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {MAP} CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)), ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes {MAP} CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)), StatusMessage String CODEC(ZSTD(1)),
    Events Nested (Timestamp DateTime64(9), Name LowCardinality(String), Attributes {MAP}),
    Links Nested (TraceId String, SpanId String, TraceState String, Attributes {MAP}),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = MergeTree() PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))"""

TRACE_ID_TS = """CREATE TABLE {db}.otel_traces_trace_id_ts (
    TraceId String, Start DateTime, End DateTime
) ENGINE = MergeTree() PARTITION BY toDate(Start) ORDER BY (TraceId, Start)"""

TRACE_ID_TS_MV = """CREATE MATERIALIZED VIEW {db}.otel_traces_trace_id_ts_mv
TO {db}.otel_traces_trace_id_ts AS SELECT TraceId, min(Timestamp) AS Start,
max(Timestamp) AS End FROM {db}.otel_traces WHERE TraceId != '' GROUP BY TraceId"""

LOGS = f"""CREATE TABLE {{db}}.otel_logs (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)), SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8, SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8, ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)), ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {MAP} CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)), ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)), ScopeAttributes {MAP} CODEC(ZSTD(1)),
    LogAttributes {MAP} CODEC(ZSTD(1)),
    INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = MergeTree() PARTITION BY toDate(TimestampTime)
PRIMARY KEY (ServiceName, TimestampTime) ORDER BY (ServiceName, TimestampTime, Timestamp)"""

# the newest generation: the log record's event name in a column of its own
LOGS_NEWEST = LOGS.replace(
    f"LogAttributes {MAP} CODEC(ZSTD(1)),",
    f"LogAttributes {MAP} CODEC(ZSTD(1)),\n    EventName String CODEC(ZSTD(1)),",
)

# an older generation: no TimestampTime, another order key, no trace-id table
LOGS_OLD = f"""CREATE TABLE {{db}}.otel_logs (
    Timestamp DateTime64(9), TraceId String, SpanId String, TraceFlags UInt32,
    SeverityText LowCardinality(String), SeverityNumber Int32,
    ServiceName LowCardinality(String), Body String, ResourceSchemaUrl String,
    ResourceAttributes {MAP}, ScopeSchemaUrl String, ScopeName String, ScopeVersion String,
    ScopeAttributes {MAP}, LogAttributes {MAP}
) ENGINE = MergeTree() PARTITION BY toDate(Timestamp)
ORDER BY (ServiceName, SeverityText, toUnixTimestamp(Timestamp), TraceId)"""


def create(ch: ChdbConnection, db: str, generation: str) -> None:
    ch.command(f"CREATE DATABASE `{db}`")
    ch.command(TRACES.format(db=db))
    if generation in ("current", "newest"):
        ch.command(TRACE_ID_TS.format(db=db))
        ch.command(TRACE_ID_TS_MV.format(db=db))
        ch.command((LOGS_NEWEST if generation == "newest" else LOGS).format(db=db))
    else:
        ch.command(LOGS_OLD.format(db=db))


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _map(values: dict[str, str]) -> str:
    return (
        "map(" + ", ".join(f"{_q(k)}, {_q(v)}" for k, v in values.items()) + ")"
        if values
        else "map()"
    )


def _time(ns: int) -> str:
    return f"fromUnixTimestamp64Nano(toInt64({ns}))"


def insert_span(ch: ChdbConnection, db: str, **f: Any) -> None:
    """One span as the exporter's INSERT leaves it (``f`` holds the values that matter)."""
    events = f.get("events", [])  # (ns, name, attrs)
    links = f.get("links", [])  # (trace_id, span_id, state, attrs)
    resource = {"service.name": f["service"], **f.get("resource", {})}
    values = ", ".join([
        _time(f["start"]), _q(f["trace_id"]), _q(f["span_id"]), _q(f.get("parent", "")),
        _q(f.get("trace_state", "")), _q(f["name"]), _q(f.get("kind", "Server")),
        _q(f["service"]), _map(resource), _q(f.get("scope", "")),
        _q(f.get("scope_version", "")), _map(f.get("attrs", {})), str(f["duration"]),
        _q(f.get("status", "Unset")), _q(f.get("message", "")),
        "[" + ", ".join(_time(e[0]) for e in events) + "]",
        "[" + ", ".join(_q(e[1]) for e in events) + "]",
        "[" + ", ".join(_map(e[2]) for e in events) + "]",
        "[" + ", ".join(_q(link[0]) for link in links) + "]",
        "[" + ", ".join(_q(link[1]) for link in links) + "]",
        "[" + ", ".join(_q(link[2]) for link in links) + "]",
        "[" + ", ".join(_map(link[3]) for link in links) + "]",
    ])  # fmt: skip
    ch.command(
        f"INSERT INTO `{db}`.otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, "
        "TraceState, SpanName, SpanKind, ServiceName, ResourceAttributes, ScopeName, "
        "ScopeVersion, SpanAttributes, Duration, StatusCode, StatusMessage, "
        "`Events.Timestamp`, `Events.Name`, `Events.Attributes`, `Links.TraceId`, "
        f"`Links.SpanId`, `Links.TraceState`, `Links.Attributes`) VALUES ({values})"
    )


def insert_log(ch: ChdbConnection, db: str, **f: Any) -> None:
    """One log record as the exporter's INSERT leaves it (``event_name`` only into a table
    of the newest generation)."""
    resource = {"service.name": f["service"], **f.get("resource", {})}
    values = ", ".join([
        _time(f["time"]), _q(f.get("trace_id", "")), _q(f.get("span_id", "")), "0",
        _q(f.get("severity_text", "")), str(f.get("severity", 9)), _q(f["service"]),
        _q(f["body"]), "''", _map(resource), "''", _q(f.get("scope", "")), "''",
        _map({}), _map(f.get("attrs", {})),
    ])  # fmt: skip
    event = ", EventName" if "event_name" in f else ""
    if event:
        values += ", " + _q(f["event_name"])
    ch.command(
        f"INSERT INTO `{db}`.otel_logs (Timestamp, TraceId, SpanId, TraceFlags, SeverityText, "
        "SeverityNumber, ServiceName, Body, ResourceSchemaUrl, ResourceAttributes, "
        f"ScopeSchemaUrl, ScopeName, ScopeVersion, ScopeAttributes, LogAttributes{event}) "
        f"VALUES ({values})"
    )


_KIND_WORDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
_STATUS_WORDS = ("Unset", "Ok", "Error")


def _text(value: Any) -> str:
    """An OTLP ``AnyValue`` as the exporter stores an attribute: always a string."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return str(value.string_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    raise AssertionError(f"no {kind} attributes in these tests")


def _attrs(pairs: Any) -> dict[str, str]:
    return {kv.key: _text(kv.value) for kv in pairs}


def insert_otlp(ch: ChdbConnection, db: str, signal: str, body: bytes, generation: str) -> None:
    """The rows the exporter writes for one OTLP logs or traces request (the log record's
    event name only where the table has a column for it)."""
    if signal == "logs":
        logs = ExportLogsServiceRequest.FromString(body)
        for rl in logs.resource_logs:
            resource = _attrs(rl.resource.attributes)
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    more = {"event_name": rec.event_name} if generation == "newest" else {}
                    insert_log(ch, db, service=resource.get("service.name", ""),
                               body=rec.body.string_value, severity=rec.severity_number,
                               severity_text=rec.severity_text,
                               time=rec.time_unix_nano or rec.observed_time_unix_nano,
                               trace_id=rec.trace_id.hex(), span_id=rec.span_id.hex(),
                               attrs=_attrs(rec.attributes), resource=resource,
                               scope=sl.scope.name, **more)  # fmt: skip
        return
    traces = ExportTraceServiceRequest.FromString(body)
    for rs in traces.resource_spans:
        resource = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                insert_span(ch, db, service=resource.get("service.name", ""), resource=resource,
                            trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                            parent=span.parent_span_id.hex(), name=span.name,
                            kind=_KIND_WORDS[span.kind], status=_STATUS_WORDS[span.status.code],
                            start=span.start_time_unix_nano,
                            duration=span.end_time_unix_nano - span.start_time_unix_nano,
                            attrs=_attrs(span.attributes), scope=ss.scope.name,
                            events=[(e.time_unix_nano, e.name, _attrs(e.attributes))
                                    for e in span.events])  # fmt: skip
