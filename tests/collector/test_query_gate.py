"""Queries cannot take the threads ingestion needs, nor run without end."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
from collector_helpers import KEY_A, KEY_B, headers_for, log_request, make_log

from telemetryflow.collector import Collector

PB = {"Content-Type": "application/x-protobuf"}


def _export_logs(collector: Collector, count: int, key: object = KEY_A) -> httpx.Response:
    records = [make_log(f"line {n} of the test", trace_id="") for n in range(count)]
    return httpx.post(
        f"{collector.http_endpoint}/v1/logs",
        content=log_request("svc", records).SerializeToString(),
        headers={**headers_for(key), **PB},  # type: ignore[arg-type]
        timeout=30,
    )


def _query(collector: Collector, key: object, **params: str) -> httpx.Response:
    return httpx.get(
        f"{collector.http_endpoint}/v1/logs/query",
        params={"since": "2000-01-01T00:00:00Z", **params},
        headers=headers_for(key),  # type: ignore[arg-type]
        timeout=60,
    )


def test_query_slots_are_bounded_per_key_and_in_total(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector(max_queries=3, max_queries_per_key=2)
    gate = collector._pipeline.query_gate  # type: ignore[union-attr]
    with contextlib.ExitStack() as held:
        for _ in range(2):  # key A's two queries are running
            held.enter_context(gate.admit(KEY_A.key_id))
        busy = _query(collector, KEY_A)
        assert busy.status_code == 503
        assert int(busy.headers["Retry-After"]) >= 1
        assert _query(collector, KEY_B).status_code == 200  # another key still gets a slot
        held.enter_context(gate.admit(KEY_B.key_id))  # all three slots taken
        assert _query(collector, KEY_B).status_code == 503
        # ingestion does not wait for query slots
        assert _export_logs(collector, 3).status_code == 200
    assert _query(collector, KEY_A).status_code == 200


def test_many_queries_at_once_leave_ingestion_its_threads(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector()
    assert _export_logs(collector, 2000).status_code == 200
    answers: list[int] = []
    start = threading.Barrier(33)

    def ask(key: object) -> None:
        start.wait(30)
        answers.append(_query(collector, key, contains="line 1", limit="1000").status_code)

    askers = [threading.Thread(target=ask, args=(k,)) for k in [KEY_A, KEY_B] * 16]
    for thread in askers:
        thread.start()
    start.wait(30)
    exported = _export_logs(collector, 10, KEY_B)
    for thread in askers:
        thread.join(90)
    assert exported.status_code == 200
    assert len(answers) == 32
    assert set(answers) <= {200, 503}  # refused with a retry hint, never failed


def test_a_query_past_its_deadline_is_stopped_with_a_hint(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector(query_timeout=1e-9)
    assert _export_logs(collector, 2000).status_code == 200
    answer = _query(collector, KEY_A, contains="nothing like this", limit="1000")
    assert answer.status_code == 422
    assert "narrow" in answer.json()["error"]["message"]
    fast = make_collector()  # the same query within the default deadline is answered
    assert _export_logs(fast, 20).status_code == 200
    assert _query(fast, KEY_A, contains="line 1").status_code == 200


def test_a_database_that_cannot_be_read_answers_503(
    make_collector: Callable[..., Collector], tmp_path: Path
) -> None:
    """No reader is open yet; moving the database's folder away makes opening one fail."""
    folder = tmp_path / "data"
    folder.mkdir()
    collector = make_collector(db_path=str(folder / "c.db"))
    moved = tmp_path / "moved"
    folder.rename(moved)
    try:
        for path in ("/v1/logs/query", "/v1/status", "/v1/observability/errors"):
            answer = httpx.get(
                f"{collector.http_endpoint}{path}", headers=headers_for(KEY_A), timeout=60
            )
            assert answer.status_code == 503, path
            assert int(answer.headers["Retry-After"]) >= 1
    finally:
        moved.rename(folder)
    assert _query(collector, KEY_A).status_code == 200
