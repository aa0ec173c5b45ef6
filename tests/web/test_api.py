"""The web view's HTTP side without a browser: headers, parameters, paging, live-tail limits."""

from __future__ import annotations

import itertools
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from web_helpers import WebServer, sdk_client, start_web_collector, traces_of, wait_for

from telemetryflow.collector.web import CSP, MAX_STREAMS
from telemetryflow.collector.web._api import PAGE_SIZE
from telemetryflow.collector.web._pages import safe_next
from telemetryflow.collector.web._shape import flat_spans


@pytest.fixture(scope="module")
def many(open_web: Any) -> list[str]:
    """120 one-span traces of one service, newest first by the list's order."""
    client = sdk_client(open_web.collector, "web-many")
    for index in range(2 * PAGE_SIZE + 20):
        with client.span(f"job {index}"):
            time.sleep(0.001)  # distinct start times, so newest-first has one answer
    client.shutdown(timeout=10)
    wait_for(
        lambda: (
            len(_all_traces(open_web.collector.http_endpoint, "web-many")) == 2 * PAGE_SIZE + 20
        ),
        "all traces stored",
    )
    return [f"job {i}" for i in reversed(range(2 * PAGE_SIZE + 20))]


def _all_traces(base: str, service: str) -> list[dict[str, Any]]:
    params = {"service": service, "limit": 1000, "detail": "false"}
    return list(httpx.get(f"{base}/v1/traces/query", params=params).json()["traces"])


@pytest.mark.parametrize(
    "path",
    ["/ui/traces", "/ui/logs", "/ui/traces/" + "ab" * 16, "/ui/signin", "/ui/static/app.css",
     "/ui/static/common.js", "/ui/api/traces", "/ui/api/logs", "/ui/api/session",
     "/ui/api/traces/" + "ab" * 16, "/ui/api/traces?nope=1", "/ui/nowhere", "/ui", "/ui/",
     "/ui/errors", "/ui/events", "/ui/api/errors", "/ui/api/events", "/ui/api/overview"],
)  # fmt: skip
def test_every_ui_response_carries_the_policy(open_web: Any, path: str) -> None:
    answer = httpx.get(open_web.base + path)
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    assert "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP


def test_root_sends_browsers_to_the_view_and_scripts_to_the_api(open_web: Any) -> None:
    answer = httpx.get(open_web.base + "/", headers={"Accept": "text/html,*/*;q=0.8"})
    assert (answer.status_code, answer.headers["location"]) == (307, "/ui")
    overview = httpx.get(open_web.base + "/ui")
    assert overview.status_code == 200 and 'data-view="overview"' in overview.text
    assert httpx.get(open_web.base + "/").json()["api"] == "/openapi.json"


def test_pages_hold_no_inline_script_or_style(open_web: Any) -> None:
    pages = ("/ui/traces", "/ui/logs", "/ui/traces/" + "cd" * 16, "/ui/signin", "/ui",
             "/ui/errors", "/ui/events")  # fmt: skip
    for path in pages:
        html = httpx.get(open_web.base + path).text
        assert "<script>" not in html and "<style" not in html and " style=" not in html
        assert 'src="/ui/static/' in html


def test_unknown_static_names_are_not_served(open_web: Any) -> None:
    for name in ("../_api.py", "%2e%2e%2f_api.py", "traces.html", "nothing.js"):
        assert httpx.get(f"{open_web.base}/ui/static/{name}").status_code == 404


def test_bad_parameters_answer_400_naming_them(open_web: Any) -> None:
    answer = httpx.get(open_web.base + "/ui/api/traces", params={"colour": "red"})
    assert answer.status_code == 400 and "colour" in answer.json()["error"]["message"]
    answer = httpx.get(open_web.base + "/ui/api/traces", params={"min_duration": "soon"})
    assert answer.status_code == 400 and "min_duration" in answer.json()["error"]["message"]
    answer = httpx.get(open_web.base + "/ui/api/logs", params={"severity": "loud"})
    assert answer.status_code == 400 and "severity" in answer.json()["error"]["message"]
    assert httpx.get(open_web.base + "/ui/api/traces/not-an-id").status_code == 400
    assert httpx.get(open_web.base + "/ui/api/traces/" + "0" * 32).status_code == 404
    missing = httpx.get(open_web.base + "/ui/api/nothing")
    assert missing.status_code == 404 and "/ui/api/nothing" in missing.json()["error"]["message"]
    assert httpx.get(open_web.base + "/ui/nothing").headers["content-type"].startswith("text/html")


def test_pages_of_the_trace_list_are_disjoint_and_complete(open_web: Any, many: list[str]) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"service": "web-many"}
    for page in range(5):
        answer = httpx.get(open_web.base + "/ui/api/traces", params={**params, "page": page})
        body = answer.json()
        seen += [t["root_name"] for t in body["traces"]]
        params["until"] = body["until"]  # later pages keep the first page's end time
        if not body["more"]:
            break
    assert seen == many  # newest first, each trace once, none missing


def test_the_list_search_finds_text_inside_span_names(open_web: Any, many: list[str]) -> None:
    params = {"service": "web-many", "q": "JOB 11"}
    body = httpx.get(open_web.base + "/ui/api/traces", params=params).json()
    assert [t["root_name"] for t in body["traces"]] == [n for n in many if "job 11" in n]


def test_later_traces_do_not_shift_a_pinned_page(open_web: Any, many: list[str]) -> None:
    first = httpx.get(open_web.base + "/ui/api/traces", params={"service": "web-many"}).json()
    client = sdk_client(open_web.collector, "web-many-late")
    with client.span("late"):
        pass
    client.shutdown(timeout=10)
    params = {"service": "web-many", "page": 1, "until": first["until"]}
    second = httpx.get(open_web.base + "/ui/api/traces", params=params).json()
    assert [t["root_name"] for t in second["traces"]] == many[PAGE_SIZE : 2 * PAGE_SIZE]


def test_flat_spans_handles_a_chain_deeper_than_the_recursion_limit() -> None:
    depth = 5000
    spans = [{"span_id": f"{i:016x}", "parent_span_id": f"{i - 1:016x}" if i else "",
              "name": f"s{i}", "service": "x", "kind": "INTERNAL", "start": "",
              "start_unix_nano": i, "duration_ms": 1.0, "status": "UNSET",
              "status_message": "", "attributes": {}, "events": [], "links": [],
              "trace_state": "", "resource": {}, "scope": {}, "children": []}
             for i in range(depth)]  # fmt: skip
    for parent, child in itertools.pairwise(spans):
        parent["children"].append(child)
    rows = flat_spans([spans[0]], 0)
    assert [r["depth"] for r in rows] == list(range(depth))
    assert [r["descendants"] for r in rows] == list(range(depth - 1, -1, -1))
    assert rows[-1]["parent_index"] == depth - 2


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/ui/logs?q=x", "/ui/logs?q=x"), ("https://evil.example/ui", "/ui/traces"),
     ("//evil.example/ui", "/ui/traces"), ("/v1/status", "/ui/traces"),
     ("/ui\\@evil", "/ui/traces"), ("", "/ui/traces"), ("/uix", "/ui/traces")],
)  # fmt: skip
def test_sign_in_only_returns_to_pages_of_the_view(target: str, expected: str) -> None:
    assert safe_next(target) == expected


class _Tail:
    """A live-tail connection over a plain socket, read on demand, closed at will."""

    def __init__(self, base: str, params: dict[str, str], last_id: str | None = None) -> None:
        host, port = base.split("://")[1].rsplit(":", 1)
        self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        target = "/ui/api/logs/tail?" + urlencode(params)
        resume = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Accept: text/event-stream\r\n{resume}\r\n"
        )
        self.sock.sendall(request.encode())
        self.data = b""
        self.read_until(lambda data: b"\r\n\r\n" in data, "the response head")
        self.status = int(self.data.split(b" ", 2)[1])

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def read_until(self, done: Callable[[bytes], bool], what: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while not done(self.data):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                if done(self.data + b"<closed>"):
                    return
                raise AssertionError(f"connection closed before {what}")
            self.data += chunk

    def close(self) -> None:
        self.sock.close()


def test_live_tail_sends_new_matching_records_only(open_web: Any) -> None:
    tail = _Tail(open_web.base, {"service": "web-sse", "q": "wanted"})
    try:
        assert tail.status == 200
        tail.read_until(lambda data: b"event: ready" in data, "ready")
        client = sdk_client(open_web.collector, "web-sse")
        client.log_info("not this one")
        client.log_info("the wanted record")
        client.shutdown(timeout=10)
        tail.read_until(lambda data: b"the wanted record" in data, "the record")
        client = sdk_client(open_web.collector, "web-sse")
        client.log_info("wanted again")
        client.shutdown(timeout=10)
        tail.read_until(lambda data: b"wanted again" in data, "the second record")
    finally:
        tail.close()
    assert "not this one" not in tail.text
    assert tail.text.count("the wanted record") == 1  # sent once, though still in the window


def test_live_tails_are_capped_and_give_their_slots_back(open_web: Any) -> None:
    def open_tail() -> _Tail | None:
        tail = _Tail(open_web.base, {"service": "web-cap"})
        if tail.status == 200:
            return tail
        tail.close()  # the slots of earlier tests' streams may not be back yet
        return None

    tails = [wait_for(open_tail, f"live tail {n + 1}") for n in range(MAX_STREAMS)]
    try:
        refused = _Tail(open_web.base, {"service": "web-cap"})
        assert refused.status == 503
        assert "retry-after: 5" in refused.text.lower()
        refused.close()
    finally:
        for tail in tails:
            tail.close()
    # a closed stream's slot comes back once the server notices the disconnect
    wait_for(open_tail, "a slot given back").close()


def test_a_trace_sends_each_resource_and_scope_once(open_web: Any, many: list[str]) -> None:
    client = sdk_client(open_web.collector, "web-shared")
    with client.span("parent"):
        for index in range(20):
            with client.span(f"child {index}"):
                pass
    client.shutdown(timeout=10)
    (trace,) = wait_for(lambda: traces_of(open_web.base, "web-shared", key=None), "the trace")
    body = httpx.get(f"{open_web.base}/ui/api/traces/{trace['trace_id']}").json()
    assert len(body["spans"]) == 21
    assert len(body["resources"]) == 1 and len(body["scopes"]) == 1
    assert {s["resource"] for s in body["spans"]} == {0}
    assert body["resources"][0]["service.name"] == "web-shared"


def test_the_query_rate_limit_covers_the_view(tmp_path: Path) -> None:
    # one request a second, bursts of two
    server = WebServer(start_web_collector(tmp_path, auth=False, keys=(), rate_limit=1.0))
    try:
        codes = [httpx.get(server.base + "/ui/api/logs").status_code for _ in range(4)]
        assert codes[:2] == [200, 200] and 429 in codes[2:]
        refused = httpx.get(server.base + "/ui/api/traces")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert httpx.get(server.base + "/ui/traces").status_code == 200  # pages are files
    finally:
        server.stop()


def test_a_reconnecting_tail_resumes_after_the_last_record_it_was_sent(open_web: Any) -> None:
    def send(body: str) -> None:
        client = sdk_client(open_web.collector, "web-resume")
        client.log_info(body)
        client.shutdown(timeout=10)

    tail = _Tail(open_web.base, {"service": "web-resume"})
    tail.read_until(lambda data: b"event: ready" in data, "ready")
    send("before the break")
    tail.read_until(lambda data: b"before the break" in data, "the first record")
    tail.close()
    last_id = re.findall(r"^id: (\d+)$", tail.text, re.M)[-1]
    send("during the break")
    again = _Tail(open_web.base, {"service": "web-resume"}, last_id=last_id)
    try:
        again.read_until(lambda data: b"during the break" in data, "the missed record")
    finally:
        again.close()
    assert "before the break" not in again.text


def test_stopping_the_collector_ends_open_tails_cleanly(tmp_path: Path) -> None:
    server = WebServer(start_web_collector(tmp_path, auth=False, keys=()))
    tail = _Tail(server.base, {})
    try:
        tail.read_until(lambda data: b"event: ready" in data, "ready")
        server.stop()
        # the stream is finished (its last chunk sent), not cut off when the grace ran out
        tail.read_until(lambda data: data.endswith(b"<closed>"), "the end of the stream")
        assert tail.data.endswith(b"\r\n0\r\n\r\n")
    finally:
        tail.close()
