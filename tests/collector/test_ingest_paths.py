"""Small OTLP bodies are stored from the event loop, large ones from a worker thread.

Whichever path a body takes, what arrives must be the same: every span stored, the same
answer, the same refusals. The store's awaitable write is checked on its own too.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from collector_helpers import gz, make_span, trace_request
from google.protobuf import json_format

from telemetryflow.collector.store._writes import StorageFullError, StoreClosedError
from telemetryflow.collector.store.sqlite._store import Store, WriteBatch

PB = {"Content-Type": "application/x-protobuf"}
JS = {"Content-Type": "application/json"}
SMALL = 16 * 1024  # the collector's threshold (``_http._SMALL_BODY``)


def _body(trace: int, count: int, payload: str) -> bytes:
    spans = [
        make_span(f"{trace:016x}{i + 1:016x}", f"{i + 1:016x}", f"op-{trace}-{i}",
                  attrs={"payload": payload})
        for i in range(count)
    ]  # fmt: skip
    return trace_request("paths", spans).SerializeToString()


def _stored(http: httpx.Client, trace: int, count: int) -> int:
    found = 0
    for i in range(count):
        answer = http.get("/v1/traces/query", params={"trace_id": f"{trace:016x}{i + 1:016x}"})
        assert answer.status_code == 200, answer.text
        found += sum(len(t["spans"]) for t in answer.json()["traces"])
    return found


@pytest.mark.parametrize(
    ("trace", "count", "payload", "gzip", "small_raw", "small_inflated"),
    [
        (1, 5, "x", False, True, True),  # on the loop
        (2, 40, "y" * 2000, False, False, False),  # large: on a thread
        (3, 5, "z", True, True, True),  # gzip, small either way: on the loop
        (4, 40, "w" * 4000, True, True, False),  # gzip, inflates past the threshold
    ],
)
def test_every_body_size_is_stored_whole(
    http: httpx.Client,
    trace: int,
    count: int,
    payload: str,
    gzip: bool,
    small_raw: bool,
    small_inflated: bool,
) -> None:
    body = _body(trace, count, payload)
    sent = gz(body) if gzip else body
    assert (len(sent) < SMALL, len(body) < SMALL) == (small_raw, small_inflated)
    headers = {**PB, "Content-Encoding": "gzip"} if gzip else PB
    response = http.post("/v1/traces", content=sent, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-protobuf"
    assert _stored(http, trace, count) == count


def test_small_json_body_answers_in_json(http: httpx.Client) -> None:
    request = json_format.MessageToDict(
        trace_request("paths", [make_span("ab" * 16, "cd" * 8, "json-op")])
    )
    span = request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span.update(traceId="ab" * 16, spanId="cd" * 8)  # OTLP/JSON writes ids in hex
    body = json.dumps(request).encode()
    response = http.post("/v1/traces", content=body, headers=JS)
    assert response.status_code == 200, response.text
    assert response.json() == {}
    spans = http.get("/v1/traces/query", params={"trace_id": "ab" * 16}).json()["traces"]
    assert [s["name"] for s in spans[0]["spans"]] == ["json-op"]


def test_corrupt_small_gzip_body_is_a_400(http: httpx.Client) -> None:
    sent = gz(_body(9, 3, "v"))[:-12]  # the tail cut off
    response = http.post("/v1/traces", content=sent, headers={**PB, "Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert _stored(http, 9, 3) == 0


def _span_batch(name: str) -> WriteBatch:
    return WriteBatch(spans=[(
        "alpha", "svc", "ab" * 16, "cd" * 8, "", name, 1, 1, 2, 1, 0, "", "{}", "[]",
        "", "", time.time_ns(), "", "[]", None, None,
    )])  # fmt: skip


def test_submit_async_returns_once_committed(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "c.db"))
    try:
        result = asyncio.run(store.submit_async(_span_batch("awaited"), timeout=10))
        assert result.stored == 1
        with store.reader() as conn:
            assert conn.execute("SELECT name FROM spans").fetchall() == [("awaited",)]
    finally:
        store.close()


def test_submit_async_raises_what_the_writer_met(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "c.db"))
    try:
        with store._write_lock:
            pages = store._writer.execute("PRAGMA page_count").fetchone()[0]
            store._writer.execute(f"PRAGMA max_page_count = {pages}")
        big = WriteBatch(spans=[(
            "alpha", "svc", f"{i:032x}", "cd" * 8, "", "n" * 2000, 1, 1, 2, 1, 0, "", "{}",
            "[]", "", "", time.time_ns(), "", "[]", None, None,
        ) for i in range(200)])  # fmt: skip
        with pytest.raises(StorageFullError):
            asyncio.run(store.submit_async(big, timeout=10))
    finally:
        store.close()
    with pytest.raises(StoreClosedError):
        asyncio.run(store.submit_async(_span_batch("late"), timeout=10))
