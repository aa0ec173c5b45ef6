"""A full database answers "retry later", and writes resume by themselves when space returns.

SQLite's ``max_page_count`` caps the real database file, so the collector meets a real
``SQLITE_FULL`` ("database or disk is full") exactly as on a full disk.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from collector_helpers import KEY_A, headers_for, make_span, metadata_for, trace_request
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from telemetryflow import TelemetryFlowBuilder
from telemetryflow.collector import Collector
from telemetryflow.collector.store._writes import StorageFullError
from telemetryflow.collector.store.sqlite._store import Store, WriteBatch, storage_trouble

PB = {"Content-Type": "application/x-protobuf"}
UNLIMITED_PAGES = 2**30


def _cap_pages(store: Store, pages: int | None = None) -> int:
    """Cap the writer's database at ``pages`` (default: its current size); the cap set."""
    with store._write_lock:
        conn = store._writer
        if pages is None:
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        return int(conn.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0])


def _span_body(batch: int, count: int = 50) -> bytes:
    return _span_request(batch, count).SerializeToString()


def _span_request(batch: int, count: int = 50) -> ExportTraceServiceRequest:
    spans = [
        make_span(f"{batch + 1:016x}{i + 1:016x}", f"{i + 1:016x}", f"s{batch}-{i}",
                  attrs={"payload": "x" * 400})
        for i in range(count)
    ]  # fmt: skip
    return trace_request("full-svc", spans)


def _post_until_refused(client: httpx.Client) -> tuple[httpx.Response, int]:
    """Send 50-span requests until one is refused: that answer, and spans acknowledged."""
    for batch in range(200):
        response = client.post("/v1/traces", content=_span_body(batch), headers=PB)
        if response.status_code != 200:
            return response, 50 * batch
    raise AssertionError("the capped database never filled up")


def _count(store: Store, where: str = "1") -> int:
    with store.reader() as conn:
        return int(conn.execute(f"SELECT count(*) FROM spans WHERE {where}").fetchone()[0])


@pytest.fixture
def http(collector: Collector) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=collector.http_endpoint, headers=headers_for(KEY_A), timeout=30
    ) as client:
        yield client


def test_full_database_answers_503_and_unavailable_then_recovers(
    collector: Collector, http: httpx.Client
) -> None:
    _cap_pages(collector.store)
    refused, acknowledged = _post_until_refused(http)
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    stored_before = _count(collector.store)
    assert stored_before == acknowledged
    with grpc.insecure_channel(collector.grpc_endpoint or "") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        request = _span_request(998)  # 50 spans: more than the last partly filled page holds
        with pytest.raises(grpc.RpcError) as caught:
            stub.Export(request, metadata=metadata_for(KEY_A), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert _count(collector.store) == stored_before  # nothing half-stored

        _cap_pages(collector.store, UNLIMITED_PAGES)  # space returns: no restart needed
        stub.Export(request, metadata=metadata_for(KEY_A), timeout=10)
    assert http.post("/v1/traces", content=_span_body(999), headers=PB).status_code == 200
    assert _count(collector.store) == stored_before + 100


def test_storage_errors_are_told_apart_from_bad_data() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x INTEGER NOT NULL)")
    conn.execute("CREATE TABLE u (y TEXT)")
    with pytest.raises(sqlite3.IntegrityError) as bad:
        conn.execute("INSERT INTO t VALUES (NULL)")
    assert not storage_trouble(bad.value)  # a bug in our rows: not the disk's fault
    page_count = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {page_count}")
    rows = [("z" * 1000,) for _ in range(100)]
    with pytest.raises(sqlite3.OperationalError) as full:
        conn.executemany("INSERT INTO u VALUES (?)", rows)
    assert storage_trouble(full.value)
    error = StorageFullError()
    assert error.retry_after > 0 and "retry" in str(error)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_sdk_keeps_its_spans_through_a_full_disk_and_delivers_them_all(
    make_collector: Callable[..., Collector], protocol: str
) -> None:
    collector = make_collector()
    builder = (
        TelemetryFlowBuilder()
        .with_api_key(KEY_A.key_id, KEY_A.key_secret)
        .with_service(f"full-{protocol}")
        .with_insecure()
        .with_traces_only()
        .with_queue_size(5000)
        .with_batch_settings(timeout=timedelta(milliseconds=100), max_size=200)
        .with_retry(True, max_retries=3, backoff=timedelta(milliseconds=200))
        .with_retry_max_backoff(timedelta(seconds=2))
    )
    if protocol == "grpc":
        builder = builder.with_endpoint(collector.grpc_endpoint or "").with_grpc()
    else:
        builder = builder.with_endpoint(collector.http_endpoint.split("://")[1]).with_http()
    client = builder.build()
    client.initialize()
    try:
        _cap_pages(collector.store)
        for i in range(2000):
            with client.span(f"op-{i}", attributes={"payload": "y" * 200}):
                pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if client.health()["signals"]["traces"]["requests_failed"] > 0:
                break
            time.sleep(0.05)
        assert client.health()["signals"]["traces"]["requests_failed"] > 0, "never refused"
        assert client.get_status()["spans_sent"] < 2000
        _cap_pages(collector.store, UNLIMITED_PAGES)
        client.flush(timeout=60)
    finally:
        client.shutdown(timeout=10)
    status = client.get_status()
    assert status["spans_sent"] == 2000
    assert status["dropped"]["traces"] == {}
    with collector.store.reader() as conn:
        stored = conn.execute(
            "SELECT count(DISTINCT span_id) FROM spans WHERE service = ?", (f"full-{protocol}",)
        ).fetchone()[0]
    assert stored == 2000


def test_size_trim_frees_room_in_a_full_database(
    make_collector: Callable[..., Collector],
) -> None:
    limit = 256 * 1024
    collector = make_collector(max_db_bytes=limit, retention_seconds=0.0, retention_interval=3600.0)
    with httpx.Client(
        base_url=collector.http_endpoint, headers=headers_for(KEY_A), timeout=30
    ) as http:
        _cap_pages(collector.store, 2 * limit // 4096)
        refused, acknowledged = _post_until_refused(http)
        assert refused.status_code == 503
        # the writer also starts a pass soon after a refusal: either one may do the work
        collector.store.apply_retention()
        assert collector.store.live_bytes() <= limit
        assert _count(collector.store) < acknowledged  # the trim works when full
        response = http.post("/v1/traces", content=_span_body(500), headers=PB)
        assert response.status_code == 200, response.text  # room again, under the same cap
    assert _count(collector.store, "name LIKE 's500-%'") == 50


def _one_span_batch(name: str) -> WriteBatch:
    return WriteBatch(spans=[(
        "alpha", "svc", "ab" * 16, "cd" * 8, "", name, 1, 1, 2, 1, 0, "", "{}", "[]",
        "", "", time.time_ns(), "", "[]", None, None,
    )])  # fmt: skip


def test_a_failing_retention_pass_leaves_the_writer_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A retention pass failing with a non-SQLite error is logged; writes keep working."""
    path = str(tmp_path / "c.db")
    Store(path).close()
    with sqlite3.connect(path) as conn:  # a usage mark no retention pass can read
        conn.execute("INSERT INTO meta (key, value) VALUES ('usage_mark:spans', 'not-a-number')")
    caplog.set_level(logging.ERROR, logger="telemetryflow.collector")
    store = Store(path, retention_seconds=60.0, retention_interval=0.05)
    try:
        deadline = time.monotonic() + 20
        while "retention pass failed" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "retention pass failed (ValueError" in caplog.text
        assert "not-a-number" not in caplog.text  # the log quotes no stored data
        assert store.submit(_one_span_batch("after"), timeout=10).stored == 1
        assert store._thread.is_alive()
    finally:
        store.close()


def test_close_leaves_the_connection_of_a_writer_still_committing(tmp_path: Path) -> None:
    """``close`` whose wait ran out must not close the connection under the writer."""
    store = Store(str(tmp_path / "c.db"))
    results: list[object] = []
    with store._write_lock:  # the writer takes its next batch and waits here to commit
        writer = threading.Thread(
            target=lambda: results.append(store.submit(_one_span_batch("late"), timeout=30))
        )
        writer.start()
        for _ in range(400):  # bounded: until the writer has taken the batch
            if store._queue.empty():
                break
            time.sleep(0.01)
        store.close(timeout=0.2)
    writer.join(30)
    store._thread.join(30)
    assert [getattr(r, "stored", r) for r in results] == [1]  # committed, not broken
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT name FROM spans").fetchall() == [("late",)]
    store._writer.close()


def test_a_stop_queued_behind_a_batch_still_stops_the_writer(tmp_path: Path) -> None:
    """``close`` right after a write: the writer gathers the batch and the stop signal
    in one group, commits the batch and stops (it used to drop the signal and run on,
    so ``close`` waited its whole timeout and left the file open)."""
    store = Store(str(tmp_path / "c.db"))
    with store._write_lock:  # the writer takes the first batch and waits here
        first = store.submit_future(_one_span_batch("first"))
        for _ in range(400):  # bounded: until the writer has taken it
            if store._queue.empty():
                break
            time.sleep(0.01)
        second = store.submit_future(_one_span_batch("second"))
        closer = threading.Thread(target=store.close, kwargs={"timeout": 20})
        closer.start()
        for _ in range(400):  # bounded: until the stop signal is queued behind it
            if store._queue.qsize() >= 2:
                break
            time.sleep(0.01)
    store._thread.join(10)
    stopped = not store._thread.is_alive()
    closer.join(30)
    assert stopped, "the writer kept running after close() queued its stop"
    assert first.result(5).stored == 1 and second.result(5).stored == 1
    with sqlite3.connect(store.path) as conn:
        assert sorted(conn.execute("SELECT name FROM spans").fetchall()) == [
            ("first",),
            ("second",),
        ]
