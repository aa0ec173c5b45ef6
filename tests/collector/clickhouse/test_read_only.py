"""A ClickHouse user that may only read: the store starts, reads the exporter's tables,
answers our missing tables' listings empty, and refuses writes naming the reason.

chDB's ``readonly = 1`` (set in one session, the store's own) stands for such a user: it
refuses every DDL, INSERT and changed setting with ``READONLY``, as a server does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_helpers import (
    KEY_A,
    headers_for,
    log_request,
    make_log,
    make_span,
    trace_request,
)
from exporter_tables import create, insert_log, insert_span

from telemetryflow.collector import Collector
from telemetryflow.collector.query._metrics import QueryLimits
from telemetryflow.collector.store.clickhouse._backend import ClickHouseBackend
from telemetryflow.collector.store.clickhouse._seam import ChdbConnection
from telemetryflow.collector.store.clickhouse._tables import Tables
from telemetryflow.collector.store.clickhouse._writer import ChBatch, StoreReadOnlyError

T1 = "11111111111111111111111111111111"
PB = {"Content-Type": "application/x-protobuf"}
EXPORTER_TABLES = ["otel_logs", "otel_traces", "otel_traces_trace_id_ts",
                   "otel_traces_trace_id_ts_mv"]  # fmt: skip


def _fill(ch: ChdbConnection, database: str) -> None:
    """The exporter's tables (no metric tables, none of ours), one span and one record."""
    create(ch, database, "current")
    now = time.time_ns()
    insert_span(ch, database, trace_id=T1, span_id="a000000000000001", name="GET /",
                service="shop", start=now - 10**9, duration=10**6)  # fmt: skip
    insert_log(ch, database, service="shop", body="exporter's record", time=now - 10**9)


def _tables_of(ch: ChdbConnection, database: str) -> list[str]:
    rows = ch.query(
        "SELECT name FROM system.tables WHERE database = {db:String} ORDER BY name",
        {"db": database},
    )
    return [row[0] for row in rows]


@pytest.fixture
def read_only(ch: ChdbConnection, chdb_path: Path, database: str) -> Iterator[ClickHouseBackend]:
    _fill(ch, database)
    own = ChdbConnection(str(chdb_path), max_execution_time=30.0)
    own.command("SET readonly = 1")  # this session may read only, as a read-only user
    backend = ClickHouseBackend(own, Tables(database=database))
    yield backend
    backend.close()


def test_a_read_only_user_starts_and_creates_nothing(
    read_only: ClickHouseBackend, ch: ChdbConnection, database: str
) -> None:
    assert read_only.read_only
    assert _tables_of(ch, database) == EXPORTER_TABLES


def test_a_read_only_store_reads_the_exporter_tables(read_only: ClickHouseBackend) -> None:
    traces = read_only.query("traces", "default", {}, None)["traces"]
    assert [t["trace_id"] for t in traces] == [T1]
    logs = read_only.query("logs", "default", {}, None)["logs"]
    assert [entry["body"] for entry in logs] == ["exporter's record"]
    received, _ = read_only.status_counts("default", 0)
    assert (received["spans"], received["logs"]) == (1, 1)
    # no metric table (this exporter writes none): the metric queries answer empty
    assert read_only.query("metric_names", "default", {}, None) == {"metrics": [], "count": 0}
    assert read_only.query("metrics", "default", {"name": "m"}, QueryLimits())["series"] == []


def test_a_read_only_store_lists_its_missing_tables_as_empty(
    read_only: ClickHouseBackend,
) -> None:
    assert read_only.error_groups("default", {}) == {
        "groups": [], "total_occurrences": 0, "total_groups": 0,
    }  # fmt: skip
    assert read_only.event_counts("default", {}) == {"events": []}
    assert read_only.find_error("default", "0" * 32) is None


def test_a_read_only_store_refuses_writes_naming_why(read_only: ClickHouseBackend) -> None:
    request = trace_request("shop", [make_span("ab" * 16, "cd" * 8, "GET /")])
    batch, _, _ = read_only.rows("traces", request, "default", time.time_ns())
    assert batch is not None
    with pytest.raises(StoreReadOnlyError, match="read-only"):
        read_only.submit(batch)
    with pytest.raises(StoreReadOnlyError, match="read-only"):
        read_only.submit(ChBatch(rows={"gauge": [{"MetricName": "m"}]}, stored=1))


def test_a_collector_whose_user_may_not_write_answers_503_naming_why(
    make_collector: Callable[..., Collector], ch: ChdbConnection, chdb_path: Path, database: str
) -> None:
    """Writes the engine refuses as read-only (the user lost its rights after start, or
    never had INSERT) are answered 503 saying so, on every write path; reads go on."""
    _fill(ch, database)
    collector = make_collector(store=f"chdb://{chdb_path}?database={database}")
    backend: Any = collector.backend
    backend.ch.command("SET readonly = 1")
    now = time.time_ns()
    writes: list[tuple[str, dict[str, Any]]] = [
        ("/v1/traces", {"content": trace_request(
            "shop", [make_span("ab" * 16, "cd" * 8, "GET /")]).SerializeToString(),
            "headers": PB}),
        ("/v1/logs", {"content": log_request(
            "shop", [make_log("hello", time_ns=now)]).SerializeToString(), "headers": PB}),
        ("/v1/observability/errors", {"json": {"message": "card processor down"}}),
        ("/v1/observability/events", {"json": {"event": "signup"}}),
        ("/v1/metrics/report", {"json": {"name": "r", "value": 2}}),
    ]  # fmt: skip
    with httpx.Client(
        base_url=collector.http_endpoint, headers=headers_for(KEY_A), timeout=30
    ) as http:
        for path, body in writes:
            answer = http.post(path, **body)
            assert answer.status_code == 503, (path, answer.text)
            assert "read-only" in answer.text, (path, answer.text)
        anonymous = httpx.get(f"{collector.http_endpoint}/health", timeout=30)
        assert anonymous.status_code == 200
    assert _tables_of(ch, database).count("otel_traces") == 1
    [[spans]] = ch.query(f"SELECT count() FROM `{database}`.otel_traces")
    assert spans == 1  # only the exporter's
