"""The ClickHouse writer: queued requests become one INSERT per table; trouble is a 503."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from collector_helpers import make_span, trace_request

from telemetryflow.collector.store._writes import OverloadedError, StorageFullError, WriteResult
from telemetryflow.collector.store.clickhouse._ddl import tables_ddl
from telemetryflow.collector.store.clickhouse._metrics_ddl import metric_tables_ddl
from telemetryflow.collector.store.clickhouse._seam import ChdbConnection
from telemetryflow.collector.store.clickhouse._tables import Tables
from telemetryflow.collector.store.clickhouse._write import SPAN_COLUMNS, span_rows
from telemetryflow.collector.store.clickhouse._writer import ChBatch, Writer


class HeldInserts(ChdbConnection):
    """chDB whose INSERTs wait until released, and are counted per table."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.release = threading.Event()
        self.entered = threading.Event()
        self.inserts: list[tuple[str, int]] = []

    def insert(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        self.entered.set()
        assert self.release.wait(30)
        rows = list(rows)
        self.inserts.append((table, len(rows)))
        super().insert(table, rows)


@pytest.fixture
def held(chdb_path: Path, database: str) -> Iterator[tuple[HeldInserts, Tables]]:
    conn = HeldInserts(str(chdb_path))
    tables = Tables(database=database)
    for statement in tables_ddl(tables):
        conn.command(statement)
    yield conn, tables
    conn.release.set()
    conn.close()


def _log_batch(n: int, key: tuple[str, str, dict[str, Any]] | None = None) -> ChBatch:
    row = {"Timestamp": "1700000000.000000001", "Body": f"record {n}", "ServiceName": "svc"}
    return ChBatch(rows={"logs": [row]}, stored=1, idempotency=key)


def _writer(conn: HeldInserts, tables: Tables, max_pending: int = 256) -> Writer:
    return Writer(conn, tables, lambda key: tables.qualified(getattr(tables, key, key)),
                  max_pending)  # fmt: skip


def test_queued_requests_are_written_with_one_insert(held: tuple[HeldInserts, Tables]) -> None:
    conn, tables = held
    writer = _writer(conn, tables)
    first = writer.submit_future(_log_batch(0))
    assert conn.entered.wait(30)  # the writer holds the first batch in its INSERT
    queued = [writer.submit_future(_log_batch(n)) for n in range(1, 50)]
    conn.release.set()
    assert [f.result(30).stored for f in [first, *queued]] == [1] * 50
    assert conn.inserts == [(tables.qualified("otel_logs"), 1), (tables.qualified("otel_logs"), 49)]
    count = conn.query(f"SELECT count() FROM {tables.qualified('otel_logs')}")
    assert count == [[50]]
    writer.close()


def test_a_full_queue_refuses_at_once(held: tuple[HeldInserts, Tables]) -> None:
    conn, tables = held
    writer = _writer(conn, tables, max_pending=2)
    taken = writer.submit_future(_log_batch(0))
    assert conn.entered.wait(30)
    waiting = [writer.submit_future(_log_batch(n)) for n in (1, 2)]
    with pytest.raises(OverloadedError):
        writer.submit_future(_log_batch(3))
    conn.release.set()
    assert all(f.result(30).stored == 1 for f in [taken, *waiting])
    writer.close()


def test_engine_trouble_is_storage_full_then_writes_resume(
    held: tuple[HeldInserts, Tables],
) -> None:
    conn, tables = held
    conn.release.set()
    writer = _writer(conn, tables)
    conn.command(f"DROP TABLE {tables.qualified('otel_logs')}")
    with pytest.raises(StorageFullError):
        writer.submit(_log_batch(0))
    for statement in tables_ddl(tables):
        conn.command(statement)
    assert writer.submit(_log_batch(1)).stored == 1
    writer.close()


def test_an_idempotency_key_stores_once_within_and_across_groups(
    held: tuple[HeldInserts, Tables],
) -> None:
    conn, tables = held
    writer = _writer(conn, tables)
    key = ("alpha", "report:k1", {"ok": True, "n": 1})
    first = writer.submit_future(_log_batch(0, key))
    assert conn.entered.wait(30)
    same_group = writer.submit_future(_log_batch(1, ("alpha", "report:k1", {"ok": True, "n": 2})))
    other_project = writer.submit_future(_log_batch(2, ("beta", "report:k1", {"n": 3})))
    conn.release.set()
    assert (first.result(30).stored, first.result(30).previous) == (1, None)
    assert same_group.result(30).previous == {"ok": True, "n": 1}
    assert other_project.result(30).previous is None
    later = writer.submit(_log_batch(3, ("alpha", "report:k1", {"n": 4})))
    assert (later.stored, later.previous) == (0, {"ok": True, "n": 1})
    count = conn.query(f"SELECT count() FROM {tables.qualified('otel_logs')}")
    assert count == [[2]]
    writer.close()


def test_closing_writes_what_is_queued_then_refuses(held: tuple[HeldInserts, Tables]) -> None:
    conn, tables = held
    conn.release.set()
    writer = _writer(conn, tables)
    futures = [writer.submit_future(_log_batch(n)) for n in range(5)]
    writer.close()
    assert all(f.result(30).stored == 1 for f in futures)
    with pytest.raises(Exception, match="shutting down"):
        writer.submit(_log_batch(9))


def _count(conn: ChdbConnection, table: str) -> int:
    [[count]] = conn.query(f"SELECT count() FROM {table}")
    return int(count)


def test_a_refused_table_fails_only_the_requests_with_rows_in_it(
    held: tuple[HeldInserts, Tables],
) -> None:
    """One group: a trace request, and 001 points whose metric table refuses them (dropped).
    The trace request is stored and answered once; only the points fail, and their
    idempotency key is not kept (a repeat in the group fails with them), so a retry stores."""
    conn, tables = held
    for statement in metric_tables_ddl(tables):
        conn.command(statement)
    gauge = tables.qualified(tables.gauge)
    conn.command(f"DROP TABLE {gauge}")
    writer = _writer(conn, tables)
    first = writer.submit_future(_log_batch(0))
    assert conn.entered.wait(30)  # the writer holds the first group: the next three queue
    spans = span_rows(trace_request("shop", [make_span("ab" * 16, "cd" * 8, "GET /")]), "p", 0)
    trace_job = writer.submit_future(
        ChBatch(lines={"traces": (SPAN_COLUMNS, spans.lines)}, stored=1)
    )
    row = {"MetricName": "m", "TimeUnix": "1700000000.000000001", "Value": 1.0}
    key = ("p", "report:k", {"ok": True})
    points = ChBatch(rows={"gauge": [row]}, stored=1, idempotency=key)
    points_job = writer.submit_future(points)
    repeat_job = writer.submit_future(_log_batch(1, key))
    conn.release.set()
    assert first.result(30).stored == 1
    assert trace_job.result(30) == WriteResult(1)
    with pytest.raises(StorageFullError):
        points_job.result(30)
    with pytest.raises(StorageFullError):
        repeat_job.result(30)
    assert _count(conn, tables.qualified(tables.traces)) == 1
    assert _count(conn, tables.qualified("telemetryflow_idempotency")) == 0
    for statement in metric_tables_ddl(tables):
        conn.command(statement)
    assert writer.submit(points) == WriteResult(1)  # the retry is stored, not "seen before"
    assert _count(conn, gauge) == 1
    assert _count(conn, tables.qualified(tables.traces)) == 1
    writer.close()


def test_keys_that_cannot_be_checked_fail_only_the_keyed_requests(
    held: tuple[HeldInserts, Tables],
) -> None:
    """The idempotency table refuses the lookup (dropped): the 001 request with a key fails,
    the trace request grouped with it is stored."""
    conn, tables = held
    writer = _writer(conn, tables)
    first = writer.submit_future(_log_batch(0))
    assert conn.entered.wait(30)
    conn.command(f"DROP TABLE {tables.qualified('telemetryflow_idempotency')}")
    spans = span_rows(trace_request("shop", [make_span("ab" * 16, "cd" * 8, "GET /")]), "p", 0)
    trace_job = writer.submit_future(
        ChBatch(lines={"traces": (SPAN_COLUMNS, spans.lines)}, stored=1)
    )
    keyed = writer.submit_future(_log_batch(1, ("p", "report:k", {"ok": True})))
    conn.release.set()
    assert first.result(30).stored == 1
    assert trace_job.result(30) == WriteResult(1)
    with pytest.raises(StorageFullError):
        keyed.result(30)
    assert _count(conn, tables.qualified(tables.traces)) == 1
    assert _count(conn, tables.qualified(tables.logs)) == 1
    writer.close()
