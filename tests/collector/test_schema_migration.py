"""A database written by schema version 1 opens, keeps its rows, and takes new ones."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from collector_helpers import KEY_A, headers_for, log_request, make_log, make_span, trace_request

from telemetryflow.collector import Collector
from telemetryflow.collector.store.sqlite._schema import SCHEMA_VERSION

PB = {"Content-Type": "application/x-protobuf"}
OLD_TRACE = "0123456789abcdef0123456789abcdef"
NEW_TRACE = "fedcba9876543210fedcba9876543210"

# The layout version 1 wrote, kept verbatim so the upgrade is tested against it.
V1_SCHEMA = """
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
    bounds TEXT, counts TEXT, received_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS points_by_name ON metric_points (name, time_ns);
CREATE INDEX IF NOT EXISTS points_by_time ON metric_points (time_ns);
CREATE TABLE IF NOT EXISTS idempotency (
    project TEXT NOT NULL, key TEXT NOT NULL, created_ns INTEGER NOT NULL,
    result TEXT NOT NULL, PRIMARY KEY (project, key)
);
"""


def _old_file(path: Path) -> None:
    now = time.time_ns() - 10**9
    resource = json.dumps({"service.name": "legacy", "host.name": "old-host"})
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
        conn.execute(
            "INSERT INTO spans (project, service, trace_id, span_id, parent_span_id, name, "
            "kind, start_ns, end_ns, duration_ns, status_code, status_message, attributes, "
            "events, resource, scope, received_ns) "
            "VALUES ('alpha', 'legacy', ?, 'aaaaaaaaaaaaaaaa', '', 'old-span', 2, ?, ?, 1000, "
            "0, '', ?, '[]', ?, 'old.scope', ?)",
            (OLD_TRACE, now, now + 1000, '{"k":1}', resource, now),
        )
        conn.execute(
            "INSERT INTO logs (project, service, time_ns, observed_ns, severity_number, "
            "severity_text, body, trace_id, span_id, attributes, resource, scope, received_ns) "
            "VALUES ('alpha', 'legacy', ?, ?, 9, 'INFO', 'old line', '', '', '{}', ?, "
            "'old.scope', ?)",
            (now, now, resource, now),
        )
    with sqlite3.connect(path) as conn:
        assert "resource_id" not in {r[1] for r in conn.execute("PRAGMA table_info(spans)")}


def test_version_1_file_opens_and_keeps_its_rows(
    make_collector: Callable[..., Collector], tmp_path: Path
) -> None:
    db = tmp_path / "v1.db"
    _old_file(db)
    collector = make_collector(db_path=str(db))
    headers = {**PB, **headers_for(KEY_A)}
    with httpx.Client(base_url=collector.http_endpoint, headers=headers, timeout=10) as http:
        new_span = make_span(NEW_TRACE, "bbbbbbbbbbbbbbbb", "new-span")
        new_span.trace_state = "a=b"
        assert http.post(
            "/v1/traces", content=trace_request("fresh", [new_span]).SerializeToString()
        ).is_success
        assert http.post(
            "/v1/logs", content=log_request("fresh", [make_log("new line")]).SerializeToString()
        ).is_success
        old = http.get("/v1/traces/query", params={"trace_id": OLD_TRACE}).json()["traces"]
        new = http.get("/v1/traces/query", params={"trace_id": NEW_TRACE}).json()["traces"]
        logs = http.get("/v1/logs/query").json()["logs"]
    old_span = old[0]["spans"][0]
    assert (old_span["name"], old_span["attributes"], old_span["trace_state"]) == (
        "old-span",
        {"k": 1},
        "",
    )
    assert old_span["links"] == []
    assert old_span["resource"] == {"service.name": "legacy", "host.name": "old-host"}
    assert old_span["scope"] == {"name": "old.scope", "version": "", "attributes": {}}
    assert new[0]["spans"][0]["trace_state"] == "a=b"
    assert new[0]["spans"][0]["resource"] == {"service.name": "fresh"}
    by_body = {entry["body"]: entry for entry in logs}
    assert set(by_body) == {"old line", "new line"}
    assert by_body["old line"]["resource"]["host.name"] == "old-host"
    assert by_body["old line"]["body_kind"] == "string"
    collector.stop()
    with sqlite3.connect(db) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert version == (str(SCHEMA_VERSION),)
        assert conn.execute("SELECT count(*) FROM spans").fetchone() == (2,)


def test_upgrade_is_idempotent(make_collector: Callable[..., Collector], tmp_path: Path) -> None:
    db = tmp_path / "again.db"
    _old_file(db)
    for _ in range(2):
        make_collector(db_path=str(db)).stop()
    with sqlite3.connect(db) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(spans)")]
        assert columns.count("links") == 1
        assert conn.execute("SELECT count(*) FROM logs").fetchone() == (1,)


def test_version_3_file_gains_project_owned_resources_and_project_indexes(
    make_collector: Callable[..., Collector], tmp_path: Path
) -> None:
    db = tmp_path / "v3.db"
    make_collector(db_path=str(db)).stop()
    with sqlite3.connect(db) as conn:  # make it what version 3 wrote
        conn.executescript(
            "DROP TABLE resources; DROP INDEX points_by_project_name;"
            "DROP INDEX spans_by_project_received;"
            "CREATE TABLE resources (id INTEGER PRIMARY KEY, attributes TEXT NOT NULL,"
            " schema_url TEXT NOT NULL, dropped_attributes_count INTEGER NOT NULL);"
            "CREATE INDEX points_by_name ON metric_points (name, time_ns);"
            "CREATE INDEX spans_by_received ON spans (received_ns);"
            """INSERT INTO resources VALUES (7, '{"service.name":"v3"}', '', 0);"""
            "UPDATE meta SET value = '3' WHERE key = 'schema_version';"
        )
        conn.execute(
            "INSERT INTO spans (project, service, trace_id, span_id, parent_span_id, name,"
            " kind, start_ns, end_ns, duration_ns, status_code, status_message, attributes,"
            " events, resource, scope, received_ns, resource_id) VALUES ('alpha', 'v3', ?,"
            " 'aaaaaaaaaaaaaaaa', '', 'v3-span', 1, ?, ?, 1, 0, '', '{}', '[]', '', '', ?, 7)",
            (OLD_TRACE, time.time_ns(), time.time_ns(), time.time_ns()),
        )
    collector = make_collector(db_path=str(db))
    with httpx.Client(base_url=collector.http_endpoint, headers=headers_for(KEY_A)) as http:
        old = http.get("/v1/traces/query", params={"trace_id": OLD_TRACE}).json()["traces"]
    assert old[0]["spans"][0]["resource"] == {"service.name": "v3"}
    collector.stop()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT id, project FROM resources").fetchall() == [(7, "")]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"points_by_project_name", "spans_by_project_received"} <= indexes
    assert not {"points_by_name", "spans_by_received"} & indexes
