"""The database schema and the column order every row tuple follows."""

from __future__ import annotations

import sqlite3

__all__ = [
    "LOG_COLUMNS",
    "POINT_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SPAN_COLUMNS",
    "add_metric_columns",
]

SCHEMA_VERSION = 1

SPAN_COLUMNS = (
    "project", "service", "trace_id", "span_id", "parent_span_id", "name", "kind",
    "start_ns", "end_ns", "duration_ns", "status_code", "status_message",
    "attributes", "events", "resource", "scope", "received_ns",
)  # fmt: skip

LOG_COLUMNS = (
    "project", "service", "time_ns", "observed_ns", "severity_number", "severity_text",
    "body", "trace_id", "span_id", "attributes", "resource", "scope", "received_ns",
)  # fmt: skip

POINT_COLUMNS = (
    "project", "service", "name", "kind", "monotonic", "temporality", "unit", "tags",
    "time_ns", "start_ns", "value", "count", "sum", "min", "max", "bounds", "counts",
    "received_ns", "resource", "scale", "zero_count", "exp_offset",
)  # fmt: skip

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY,
    project TEXT NOT NULL, service TEXT NOT NULL,
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT NOT NULL,
    name TEXT NOT NULL, kind INTEGER NOT NULL,
    start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, duration_ns INTEGER NOT NULL,
    status_code INTEGER NOT NULL, status_message TEXT NOT NULL,
    attributes TEXT NOT NULL, events TEXT NOT NULL, resource TEXT NOT NULL,
    scope TEXT NOT NULL, received_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_by_time ON spans (start_ns);
CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY,
    project TEXT NOT NULL, service TEXT NOT NULL,
    time_ns INTEGER NOT NULL, observed_ns INTEGER NOT NULL,
    severity_number INTEGER NOT NULL, severity_text TEXT NOT NULL, body TEXT NOT NULL,
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
    attributes TEXT NOT NULL, resource TEXT NOT NULL, scope TEXT NOT NULL,
    received_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_by_time ON logs (time_ns);
CREATE INDEX IF NOT EXISTS logs_by_trace ON logs (trace_id);
CREATE TABLE IF NOT EXISTS metric_points (
    id INTEGER PRIMARY KEY,
    project TEXT NOT NULL, service TEXT NOT NULL, name TEXT NOT NULL,
    kind TEXT NOT NULL, monotonic INTEGER NOT NULL, temporality INTEGER NOT NULL,
    unit TEXT NOT NULL, tags TEXT NOT NULL,
    time_ns INTEGER NOT NULL, start_ns INTEGER NOT NULL,
    value REAL, count INTEGER, sum REAL, min REAL, max REAL,
    bounds TEXT, counts TEXT, received_ns INTEGER NOT NULL,
    resource TEXT NOT NULL DEFAULT '{}', scale INTEGER, zero_count INTEGER, exp_offset INTEGER
);
CREATE INDEX IF NOT EXISTS points_by_name ON metric_points (name, time_ns);
CREATE INDEX IF NOT EXISTS points_by_time ON metric_points (time_ns);
CREATE TABLE IF NOT EXISTS idempotency (
    project TEXT NOT NULL, key TEXT NOT NULL, created_ns INTEGER NOT NULL,
    result TEXT NOT NULL, PRIMARY KEY (project, key)
);
"""


# -- metric_points columns added after 1.0 ---------------------------------------------
# ``resource``: the resource attributes as JSON text values. ``scale``/``zero_count``/
# ``exp_offset``: an exponential histogram kept as such (``counts`` holds its positive
# buckets, ``bounds`` is NULL), so points taken at different scales can be compared.
_METRIC_COLUMNS_ADDED = (
    ("resource", "TEXT NOT NULL DEFAULT '{}'"),
    ("scale", "INTEGER"),
    ("zero_count", "INTEGER"),
    ("exp_offset", "INTEGER"),
)


def add_metric_columns(conn: sqlite3.Connection) -> None:
    """Add the columns a database created by 1.0 lacks (each guarded, so it runs once)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(metric_points)")}
    for column, declaration in _METRIC_COLUMNS_ADDED:
        if column not in present:
            conn.execute(f"ALTER TABLE metric_points ADD COLUMN {column} {declaration}")
