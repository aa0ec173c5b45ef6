"""Queries of one project read that project's rows, through the index meant for them.

The SQL each query runs on a real store is captured and its plan asked of SQLite:
metric and retention queries must go by an index led by ``project``, and trace and
log queries must keep narrowing by time or trace id.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
from collector_helpers import (
    KEY_A,
    gauge,
    headers_for,
    log_request,
    make_log,
    make_span,
    metrics_request,
    trace_request,
)

from telemetryflow.collector import Collector
from telemetryflow.collector.query._logs import query_logs
from telemetryflow.collector.query._metric_names import query_metric_names
from telemetryflow.collector.query._metrics import query_metrics
from telemetryflow.collector.query._traces import query_traces

PB = {"Content-Type": "application/x-protobuf"}
DAY_NS = 86400 * 10**9


def _post(collector: Collector, path: str, body: bytes) -> None:
    response = httpx.post(
        f"{collector.http_endpoint}{path}",
        content=body,
        headers={**PB, **headers_for(KEY_A)},
        timeout=30,
    )
    assert response.status_code == 200, response.text


@contextmanager
def _captured(conn: sqlite3.Connection, table: str) -> Iterator[list[str]]:
    """The statements run on ``conn`` that read ``table`` (with their values inlined)."""
    seen: list[str] = []
    conn.set_trace_callback(lambda sql: seen.append(sql) if f"FROM {table}" in sql else None)
    try:
        yield seen
    finally:
        conn.set_trace_callback(None)


def _plans(conn: sqlite3.Connection, statements: list[str], table: str) -> list[str]:
    """The plan lines of ``statements`` that access ``table`` (``SCAN``/``SEARCH``)."""
    assert statements, "the query ran no statement on the table"
    lines: list[str] = []
    for sql in statements:
        for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"):
            words = str(row[3]).split()
            if len(words) > 1 and words[1] in (table, "t") and words[0] in ("SCAN", "SEARCH"):
                lines.append(str(row[3]))
    return lines


def test_metric_queries_and_the_catalogue_go_by_the_project_index(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector()
    _post(
        collector,
        "/v1/metrics",
        metrics_request("svc", [gauge("cpu", [1.0, 2.0])]).SerializeToString(),
    )
    with collector.store.reader() as conn:
        with _captured(conn, "metric_points") as names_sql:
            query_metric_names(conn, "alpha", {})
        with _captured(conn, "metric_points") as query_sql:
            query_metrics(conn, "alpha", {"name": "cpu", "agg": "avg"})
        for plan in _plans(conn, names_sql + query_sql, "metric_points"):
            assert "(project=?" in plan, plan  # one project's rows only


def test_the_catalogue_reads_a_time_window(make_collector: Callable[..., Collector]) -> None:
    """By default the catalogue covers the retention window, not every point ever stored."""
    collector = make_collector(retention_seconds=3600.0, retention_interval=3600.0)
    old = gauge("old.metric", [1.0])
    old.gauge.data_points[0].time_unix_nano = time.time_ns() - 30 * DAY_NS
    _post(
        collector,
        "/v1/metrics",
        metrics_request("svc", [old, gauge("new.metric", [1.0])]).SerializeToString(),
    )
    with httpx.Client(base_url=collector.http_endpoint, headers=headers_for(KEY_A)) as http:
        names = http.get("/v1/metrics/names").json()["metrics"]
        assert [m["name"] for m in names] == ["new.metric"]
        since = time.time_ns() - 40 * DAY_NS
        wide = http.get("/v1/metrics/names", params={"since": str(since)}).json()["metrics"]
        assert [m["name"] for m in wide] == ["new.metric", "old.metric"]


def test_trace_and_log_queries_keep_their_time_and_trace_indexes(
    make_collector: Callable[..., Collector],
) -> None:
    """An index led by ``project`` must not replace the indexes that narrow these."""
    collector = make_collector()
    trace_id = "ef" * 16
    _post(
        collector,
        "/v1/traces",
        trace_request("svc", [make_span(trace_id, "01" * 8, "op")]).SerializeToString(),
    )
    _post(collector, "/v1/logs", log_request("svc", [make_log("hello")]).SerializeToString())
    with collector.store.reader() as conn:
        with _captured(conn, "spans") as listed:
            assert query_traces(conn, "alpha", {})["count"] == 1
        with _captured(conn, "spans") as loaded:
            assert query_traces(conn, "alpha", {"trace_id": trace_id})["count"] == 1
        with _captured(conn, "logs") as logs:
            assert query_logs(conn, "alpha", {})["count"] == 1
        assert all("spans_by_time" in p for p in _plans(conn, listed[:1], "spans"))
        assert all("spans_by_trace" in p for p in _plans(conn, loaded, "spans"))
        assert all("logs_by_time" in p for p in _plans(conn, logs, "logs"))


def test_size_trimming_walks_only_the_trimmed_projects_rows(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector(max_db_bytes=1, retention_seconds=0.0, retention_interval=3600.0)
    spans = [make_span("12" * 16, f"{i + 1:016x}", f"s{i}") for i in range(50)]
    _post(collector, "/v1/traces", trace_request("svc", spans).SerializeToString())
    store = collector.store
    with store._write_lock, _captured(store._writer, "spans") as seen:
        store.apply_retention()
    trims = [sql for sql in seen if "ORDER BY received_ns" in sql]
    with store.reader() as conn:
        for plan in _plans(conn, trims, "spans"):
            if "SEARCH spans USING INTEGER PRIMARY KEY" not in plan:  # the outer delete by id
                assert "(project=?" in plan, plan
