"""The OTLP fast path answers exactly as the router does.

``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs`` skip Starlette's middleware and
route matching (``_Front`` in the HTTP app). Here one pipeline is served twice over
real HTTP, through the fast path and through the router alone, and every request,
good or refused, must get the same status, headers that matter and body from both.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_helpers import (
    KEY_A,
    KEY_B,
    gauge,
    gz,
    headers_for,
    log_request,
    make_log,
    make_span,
    metrics_request,
    trace_request,
)

from telemetryflow.collector._pipeline import Pipeline
from telemetryflow.collector.server._auth import Authenticator, RateLimiter
from telemetryflow.collector.server._http import HTTPLimits, create_app
from telemetryflow.collector.server._http_protocol import ConnectionLimits
from telemetryflow.collector.server._http_server import HTTPServer
from telemetryflow.collector.store.sqlite._store import Store

MAX_BODY = 64 * 1024
_COMPARED_HEADERS = ("content-type", "retry-after", "www-authenticate", "allow")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client, Store]]:
    """Clients of the full app (fast path) and of its router alone, on one store."""
    store = Store(str(tmp_path / "front.db"))
    pipeline = Pipeline(store, Authenticator((KEY_A, KEY_B)), RateLimiter(0))
    work = ThreadPoolExecutor(4)
    front = create_app(pipeline, HTTPLimits(MAX_BODY, 4 * MAX_BODY), work)
    limits = ConnectionLimits(64, 10.0, 10.0, MAX_BODY + 65536)
    started = [HTTPServer(app, "127.0.0.1", 0, limits, 64) for app in (front, front.app)]
    for server in started:
        server.start()
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{s.port}", timeout=10) for s in started]
    try:
        yield clients[0], clients[1], store
    finally:
        for client in clients:
            client.close()
        for server in started:
            server.stop(1.0)
        work.shutdown(wait=True)
        store.close()


def _answer(response: httpx.Response) -> tuple[Any, ...]:
    headers = tuple(response.headers.get(name) for name in _COMPARED_HEADERS)
    return response.status_code, headers, response.content


def _spans(bad_id: bool = False) -> bytes:
    spans = [make_span("ab" * 16, "cd" * 8, "GET /")]
    if bad_id:
        spans.append(make_span("00" * 16, "cd" * 8, "zero trace id"))
    return trace_request("svc", spans).SerializeToString()


PROTOBUF = {"Content-Type": "application/x-protobuf", **headers_for(KEY_A)}
JSON = {"Content-Type": "application/json", **headers_for(KEY_A)}
TRACES_JSON = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{
    "traceId": "ab" * 16, "spanId": "cd" * 8, "name": "json span",
    "startTimeUnixNano": "1000", "endTimeUnixNano": "2000"}]}]}]}).encode()  # fmt: skip

CASES: dict[str, tuple[str, dict[str, str], bytes, int]] = {
    "spans": ("/v1/traces", PROTOBUF, _spans(), 200),
    "partial success": ("/v1/traces", PROTOBUF, _spans(bad_id=True), 200),
    "json spans": ("/v1/traces", JSON, TRACES_JSON, 200),
    "trailing slash": ("/v1/traces/", PROTOBUF, _spans(), 200),
    "gzip": ("/v1/traces", {**PROTOBUF, "Content-Encoding": "gzip"}, gz(_spans()), 200),
    "deflate": (
        "/v1/traces",
        {**PROTOBUF, "Content-Encoding": "deflate"},
        zlib.compress(_spans()),
        200,
    ),
    "metrics": (
        "/v1/metrics",
        PROTOBUF,
        metrics_request("svc", [gauge("g", [1.0, 2.0])]).SerializeToString(),
        200,
    ),
    "logs": (
        "/v1/logs",
        PROTOBUF,
        log_request("svc", [make_log("hello")]).SerializeToString(),
        200,
    ),
    "wrong key": (
        "/v1/traces",
        {**PROTOBUF, "Authorization": "Bearer tfk_alpha0001:nope"},
        _spans(),
        401,
    ),
    "no key": ("/v1/traces", {"Content-Type": "application/x-protobuf"}, _spans(), 401),
    "wrong key, json": ("/v1/logs", {**JSON, "Authorization": "Bearer x:y"}, b"{}", 401),
    "bad content type": ("/v1/traces", {**PROTOBUF, "Content-Type": "text/plain"}, b"x", 415),
    "bad encoding": ("/v1/traces", {**PROTOBUF, "Content-Encoding": "br"}, _spans(), 415),
    "corrupt gzip": ("/v1/traces", {**PROTOBUF, "Content-Encoding": "gzip"}, b"not gzip", 400),
    "oversize body": ("/v1/traces", PROTOBUF, b"\0" * (MAX_BODY + 1), 413),
    "gzip past the cap": (
        "/v1/traces",
        {**PROTOBUF, "Content-Encoding": "gzip"},
        gz(b"\0" * (2 * MAX_BODY)),
        413,
    ),
    "not protobuf": ("/v1/metrics", PROTOBUF, b"\xff\xff\xff", 400),
    "not json": ("/v1/traces", JSON, b"{", 400),
    "unknown path": ("/v1/tracez", PROTOBUF, _spans(), 404),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fast_path_answers_as_the_router_does(
    servers: tuple[httpx.Client, httpx.Client, Store], case: str
) -> None:
    fast, routed, _ = servers
    path, headers, body, status = CASES[case]
    if case == "trailing slash":  # the router alone does not strip it: compare with /v1/traces
        expected = _answer(routed.post("/v1/traces", headers=headers, content=body))
    else:
        expected = _answer(routed.post(path, headers=headers, content=body))
    answer = _answer(fast.post(path, headers=headers, content=body))
    assert answer == expected
    assert answer[0] == status


def test_chunked_body_and_wrong_method(servers: tuple[httpx.Client, httpx.Client, Store]) -> None:
    fast, routed, _ = servers
    chunks = [_spans()[:10], _spans()[10:]]
    answers = [
        _answer(client.post("/v1/traces", headers=PROTOBUF, content=iter(chunks)))
        for client in (fast, routed)
    ]
    assert answers[0] == answers[1]
    assert answers[0][0] == 200
    got = [_answer(client.get("/v1/metrics", headers=PROTOBUF)) for client in (fast, routed)]
    assert got[0] == got[1]
    assert got[0][0] == 405
    assert got[0][1][3] == "POST"


def test_fast_path_stores_what_the_router_stores(
    servers: tuple[httpx.Client, httpx.Client, Store],
) -> None:
    fast, routed, store = servers
    for client in (fast, routed):
        client.post("/v1/traces", headers=PROTOBUF, content=_spans(bad_id=True))
    with store.reader() as conn:
        rows = conn.execute("SELECT name, trace_id, project FROM spans").fetchall()
    assert rows == [("GET /", "ab" * 16, "alpha")] * 2
