"""The database schema, the column order every row tuple follows, and migrations.

Version history (``meta.schema_version``):

1. spans, logs and metric points with the resource inlined as JSON on every row and
   the scope as its name only.
2. spans gain ``trace_state`` and ``links``; logs gain ``body_kind``; spans and logs
   refer to the deduplicated ``resources`` and ``scopes`` tables by ``resource_id`` and
   ``scope_id`` (their inline ``resource``/``scope`` columns stay, empty on new rows,
   so version-1 rows keep what they had); indexes by ``received_ns`` and a
   ``storage_usage`` table serve retention by receive time, fairly per project. (An
   index led by ``project`` would be chosen by the planner for every query's
   ``project = ?`` term, over the time and trace indexes that actually narrow it.)
3. ``error_occurrences`` and ``product_events``: captured errors and product events,
   from the observability API and from OTLP records carrying the SDK's capture
   attributes (see ``_errors_events.py``). Their indexes do lead with ``project``:
   every query on them names one project and one group or event name.
4. ``resources`` and ``scopes`` gain ``project``: each project owns its entries (their
   key hashes the project with the content), so retention charges their bytes to it
   and deletes them with its data. Entries from earlier versions keep ``''``.
   Indexes led by ``project`` serve the queries of one project without reading the
   others' rows: ``(project, name, time_ns)`` for metric points (replacing
   ``(name, time_ns)``) and ``(project, received_ns)`` for retention and the status
   count (replacing ``(received_ns)``). Trace and log queries write ``+t.project`` so
   the planner keeps narrowing them by time or trace id instead.

Migrations only add (and drop indexes a newer one replaces): :data:`ADDED_COLUMNS`
are added with ``ALTER TABLE`` when a file lacks them, and :data:`SCHEMA` creates
missing tables and indexes, so a file written by any earlier version opens with every
row it had.
"""

from __future__ import annotations

import sqlite3

__all__ = [
    "ADDED_COLUMNS",
    "CAPTURE_SCHEMA",
    "ERROR_COLUMNS",
    "EVENT_COLUMNS",
    "EXEMPLAR_COLUMNS",
    "EXEMPLAR_SCHEMA",
    "LOG_COLUMNS",
    "POINT_COLUMNS",
    "RESOURCE_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SCOPE_COLUMNS",
    "SPAN_COLUMNS",
    "migrate",
    "stored_version",
]

SCHEMA_VERSION = 4

SPAN_COLUMNS = (
    "project", "service", "trace_id", "span_id", "parent_span_id", "name", "kind",
    "start_ns", "end_ns", "duration_ns", "status_code", "status_message",
    "attributes", "events", "resource", "scope", "received_ns",
    "trace_state", "links", "resource_id", "scope_id",
)  # fmt: skip

LOG_COLUMNS = (
    "project", "service", "time_ns", "observed_ns", "severity_number", "severity_text",
    "body", "trace_id", "span_id", "attributes", "resource", "scope", "received_ns",
    "body_kind", "resource_id", "scope_id",
)  # fmt: skip

RESOURCE_COLUMNS = ("id", "attributes", "schema_url", "dropped_attributes_count", "project")
SCOPE_COLUMNS = (
    "id", "name", "version", "attributes", "schema_url", "dropped_attributes_count", "project",
)  # fmt: skip

ADDED_COLUMNS = (
    ("spans", "trace_state", "TEXT NOT NULL DEFAULT ''"),
    ("spans", "links", "TEXT NOT NULL DEFAULT '[]'"),
    ("spans", "resource_id", "INTEGER"),
    ("spans", "scope_id", "INTEGER"),
    ("logs", "body_kind", "TEXT NOT NULL DEFAULT ''"),
    ("logs", "resource_id", "INTEGER"),
    ("logs", "scope_id", "INTEGER"),
    # an exponential histogram kept as such (``counts`` holds its positive buckets,
    # ``bounds`` is NULL), so points taken at different scales can be compared
    ("metric_points", "resource", "TEXT NOT NULL DEFAULT '{}'"),
    ("metric_points", "scale", "INTEGER"),
    ("metric_points", "zero_count", "INTEGER"),
    ("metric_points", "exp_offset", "INTEGER"),
    # version 4: the project owning a resource or scope entry
    ("resources", "project", "TEXT NOT NULL DEFAULT ''"),
    ("scopes", "project", "TEXT NOT NULL DEFAULT ''"),
)
"""Columns later versions added: ``(table, column, declaration)``, added where missing."""

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
    scope TEXT NOT NULL, received_ns INTEGER NOT NULL,
    trace_state TEXT NOT NULL DEFAULT '', links TEXT NOT NULL DEFAULT '[]',
    resource_id INTEGER, scope_id INTEGER
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
    received_ns INTEGER NOT NULL, body_kind TEXT NOT NULL DEFAULT '',
    resource_id INTEGER, scope_id INTEGER
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
DROP INDEX IF EXISTS points_by_name;
CREATE INDEX IF NOT EXISTS points_by_project_name ON metric_points (project, name, time_ns);
CREATE INDEX IF NOT EXISTS points_by_time ON metric_points (time_ns);
CREATE TABLE IF NOT EXISTS resources (
    id INTEGER PRIMARY KEY, attributes TEXT NOT NULL, schema_url TEXT NOT NULL,
    dropped_attributes_count INTEGER NOT NULL, project TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS scopes (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL,
    attributes TEXT NOT NULL, schema_url TEXT NOT NULL,
    dropped_attributes_count INTEGER NOT NULL, project TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS resources_by_project ON resources (project);
CREATE INDEX IF NOT EXISTS scopes_by_project ON scopes (project);
DROP INDEX IF EXISTS spans_by_received;
DROP INDEX IF EXISTS logs_by_received;
DROP INDEX IF EXISTS points_by_received;
CREATE INDEX IF NOT EXISTS spans_by_project_received ON spans (project, received_ns);
CREATE INDEX IF NOT EXISTS logs_by_project_received ON logs (project, received_ns);
CREATE INDEX IF NOT EXISTS points_by_project_received ON metric_points (project, received_ns);
CREATE TABLE IF NOT EXISTS storage_usage (
    tbl TEXT NOT NULL, project TEXT NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (tbl, project)
);
CREATE TABLE IF NOT EXISTS idempotency (
    project TEXT NOT NULL, key TEXT NOT NULL, created_ns INTEGER NOT NULL,
    result TEXT NOT NULL, PRIMARY KEY (project, key)
);
"""

# -- captured errors and product events (version 3) -------------------------------------
ERROR_COLUMNS = (
    "project", "service", "error_id", "fingerprint", "type", "code", "message", "stack",
    "tags", "trace_id", "span_id", "source", "time_ns", "received_ns",
)  # fmt: skip

EVENT_COLUMNS = (
    "project", "service", "event", "distinct_id", "properties", "trace_id", "span_id",
    "source", "time_ns", "received_ns",
)  # fmt: skip

CAPTURE_SCHEMA = """
CREATE TABLE IF NOT EXISTS error_occurrences (
    id INTEGER PRIMARY KEY,
    project TEXT NOT NULL, service TEXT NOT NULL,
    error_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
    type TEXT NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL, stack TEXT NOT NULL,
    tags TEXT NOT NULL, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
    source TEXT NOT NULL, time_ns INTEGER NOT NULL, received_ns INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS errors_by_id ON error_occurrences (project, error_id);
CREATE INDEX IF NOT EXISTS errors_by_group
    ON error_occurrences (project, fingerprint, time_ns);
CREATE INDEX IF NOT EXISTS errors_by_received ON error_occurrences (received_ns);
CREATE TABLE IF NOT EXISTS product_events (
    id INTEGER PRIMARY KEY,
    project TEXT NOT NULL, service TEXT NOT NULL,
    event TEXT NOT NULL, distinct_id TEXT NOT NULL, properties TEXT NOT NULL,
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
    source TEXT NOT NULL, time_ns INTEGER NOT NULL, received_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_name ON product_events (project, event, time_ns);
CREATE INDEX IF NOT EXISTS events_by_received ON product_events (received_ns);
"""
"""Tables of the error/event model: one row per error occurrence (``error_id`` unique
per project, so the SDK's log record and span event of one capture count once) and
one per product event. Groups and per-event counts are aggregated when read."""

# -- metric exemplars ---------------------------------------------------------------------
EXEMPLAR_COLUMNS = (
    "project", "service", "name", "tags", "resource", "time_ns", "value", "trace_id",
    "span_id", "attributes", "received_ns",
)  # fmt: skip

EXEMPLAR_SCHEMA = """
CREATE TABLE IF NOT EXISTS metric_exemplars (
    id INTEGER PRIMARY KEY,
    project TEXT NOT NULL, service TEXT NOT NULL, name TEXT NOT NULL,
    tags TEXT NOT NULL, resource TEXT NOT NULL DEFAULT '{}',
    time_ns INTEGER NOT NULL, value REAL NOT NULL,
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
    attributes TEXT NOT NULL, received_ns INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS exemplars_by_name
    ON metric_exemplars (project, name, time_ns, trace_id, span_id);
CREATE INDEX IF NOT EXISTS exemplars_by_received ON metric_exemplars (received_ns);
"""
"""Exemplars of metric points: a measured value with the trace and span it was taken
in. A row names its series the way ``metric_points`` does (service, name, tags,
resource), so a metric query's filters and series keys apply to it unchanged. An
exemplar sent again (an SDK repeating it in each cumulative export) is stored once."""


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def stored_version(conn: sqlite3.Connection) -> int:
    """The schema version a file was written with (0 for a new, empty file)."""
    if not _columns(conn, "meta"):
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection) -> int:
    """Create or upgrade the schema in one transaction; return the version the file had.

    ``conn`` must be in autocommit mode (``isolation_level=None``). A file from a newer
    version keeps its version number: its extra tables and columns are left alone.
    """
    before = stored_version(conn)
    alters = [
        f"ALTER TABLE {table} ADD COLUMN {column} {declaration};"
        for table, column, declaration in ADDED_COLUMNS
        if (present := _columns(conn, table)) and column not in present
    ]
    version = max(before, SCHEMA_VERSION)
    stamp = f"INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '{version}');"  # noqa: S608
    tables = (SCHEMA, CAPTURE_SCHEMA, EXEMPLAR_SCHEMA)
    script = ["BEGIN IMMEDIATE;", *alters, *tables, stamp, "COMMIT;"]
    conn.executescript("\n".join(script))
    return before
