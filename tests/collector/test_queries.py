"""Log and trace queries: filters, ordering, windows, trees, OpenAPI."""

from __future__ import annotations

import time

import httpx
import pytest
from collector_helpers import log_request, make_log, make_span, trace_request

from telemetryflow.collector import Collector

PB = {"Content-Type": "application/x-protobuf"}
T1 = "11111111111111111111111111111111"
T2 = "22222222222222222222222222222222"
T3 = "33333333333333333333333333333333"
HOUR = 3600 * 10**9


@pytest.fixture
def logs(http: httpx.Client) -> httpx.Client:
    now = time.time_ns()
    records = {
        "api": [
            make_log("user signed in", 9, time_ns=now - 3000),
            make_log("payment failed: card declined", 17, time_ns=now - 2000, trace_id=T1),
            make_log("debug noise", 5, time_ns=now - 1000),
            make_log("ancient warning", 13, time_ns=now - 30 * HOUR),
        ],
        "worker": [make_log("job crashed 100%_done", 21, time_ns=now - 500)],
    }
    for service, items in records.items():
        body = log_request(service, items).SerializeToString()
        assert http.post("/v1/logs", content=body, headers=PB).status_code == 200
    return http


def bodies(client: httpx.Client, **params: object) -> list[str]:
    response = client.get("/v1/logs/query", params=params)
    assert response.status_code == 200, response.text
    return [entry["body"] for entry in response.json()["logs"]]


def test_logs_newest_first_within_default_window(logs: httpx.Client) -> None:
    assert bodies(logs) == [
        "job crashed 100%_done",
        "debug noise",
        "payment failed: card declined",
        "user signed in",
    ]


def test_logs_filters(logs: httpx.Client) -> None:
    assert bodies(logs, severity="error") == [
        "job crashed 100%_done",
        "payment failed: card declined",
    ]
    assert bodies(logs, severity="warning", service="api") == ["payment failed: card declined"]
    assert bodies(logs, trace_id=T1.upper()) == ["payment failed: card declined"]
    assert bodies(logs, contains="DECLINED") == ["payment failed: card declined"]
    assert bodies(logs, contains="100%_") == ["job crashed 100%_done"]  # LIKE wildcards escaped
    assert bodies(logs, contains="%") == ["job crashed 100%_done"]
    assert bodies(logs, limit=2) == ["job crashed 100%_done", "debug noise"]
    assert "ancient warning" in bodies(logs, time_window="31h")
    assert "ancient warning" not in bodies(logs, time_window="29h")
    assert bodies(logs, since="31h", until="29h") == ["ancient warning"]
    assert bodies(logs, project_name="someone-else") == []


def test_logs_post_body_like_the_002_document(logs: httpx.Client) -> None:
    answer = logs.post(
        "/v1/logs/query", json={"severity": "error", "time_window": "30m", "limit": 1}
    ).json()
    assert [e["body"] for e in answer["logs"]] == ["job crashed 100%_done"]
    assert answer["logs"][0]["severity"] == "FATAL"
    alias = logs.post("/observability/logs", json={"severity": "fatal"}).json()
    assert alias["count"] == 1


@pytest.fixture
def traces(http: httpx.Client) -> httpx.Client:
    now = time.time_ns()
    spans = {
        "frontend": [
            make_span(
                T1, "a000000000000001", "GET /checkout", start_ns=now - 10**9, duration_ms=300
            ),
            make_span(
                T1,
                "a000000000000002",
                "render",
                parent="a000000000000001",
                start_ns=now - 10**9 + 10**6,
                duration_ms=20,
            ),
            make_span(T2, "b000000000000001", "GET /home", start_ns=now - 5 * 10**8, duration_ms=5),
            make_span(T3, "c000000000000001", "GET /old", start_ns=now - 3 * HOUR),
        ],
        "payments": [
            make_span(
                T1,
                "a000000000000003",
                "charge",
                parent="a000000000000001",
                start_ns=now - 10**9 + 2 * 10**6,
                duration_ms=250,
                error=True,
            ),
            make_span(
                T1,
                "a000000000000004",
                "db.query",
                parent="a000000000000003",
                start_ns=now - 10**9 + 3 * 10**6,
                duration_ms=200,
            ),
        ],
    }
    for service, items in spans.items():
        body = trace_request(service, items).SerializeToString()
        assert http.post("/v1/traces", content=body, headers=PB).status_code == 200
    return http


def trace_ids(client: httpx.Client, **params: object) -> list[str]:
    response = client.get("/v1/traces/query", params=params)
    assert response.status_code == 200, response.text
    return [t["trace_id"] for t in response.json()["traces"]]


def test_trace_by_id_is_a_tree_across_services(traces: httpx.Client) -> None:
    trace = traces.get("/v1/traces/query", params={"trace_id": T1}).json()["traces"][0]
    assert (trace["span_count"], trace["error"], trace["root_name"]) == (4, True, "GET /checkout")
    assert trace["services"] == ["frontend", "payments"]
    root = trace["spans"][0]
    assert [c["name"] for c in root["children"]] == ["render", "charge"]
    charge = root["children"][1]
    assert (charge["service"], charge["status"]) == ("payments", "ERROR")
    assert [c["name"] for c in charge["children"]] == ["db.query"]
    assert trace["duration_ms"] == pytest.approx(300.0)


def test_trace_list_filters(traces: httpx.Client) -> None:
    assert trace_ids(traces) == [T2, T1, T3]  # newest first, default window 24h
    assert trace_ids(traces, time_window="1h") == [T2, T1]
    assert trace_ids(traces, time_window="4h") == [T2, T1, T3]
    assert trace_ids(traces, service="payments") == [T1]
    assert trace_ids(traces, name="GET /home") == [T2]
    assert trace_ids(traces, trace="GET /home") == [T2]
    assert trace_ids(traces, min_duration="100ms") == [T1]
    assert trace_ids(traces, error="true") == [T1]
    assert trace_ids(traces, limit=1) == [T2]
    assert trace_ids(traces, trace_id="ffffffffffffffffffffffffffffffff") == []


def test_trace_list_by_text_in_a_span_name(traces: httpx.Client) -> None:
    assert trace_ids(traces, name_contains="get /") == [T2, T1, T3]  # any case
    assert trace_ids(traces, name_contains="QUERY") == [T1]  # a child span's name
    assert trace_ids(traces, name_contains="/ho") == [T2]
    assert trace_ids(traces, name_contains="%") == []  # literal, not a wildcard
    assert trace_ids(traces, name_contains="db_query") == []  # ``_`` is literal too


def test_trace_detail_flag(traces: httpx.Client) -> None:
    brief = traces.post("/v1/traces/query", json={"detail": False}).json()["traces"]
    assert all("spans" not in t for t in brief)
    full = traces.post("/v1/traces/query", json={"detail": True, "limit": 1}).json()["traces"]
    assert full[0]["spans"][0]["name"] == "GET /home"


def test_openapi_served_without_auth_and_describes_every_endpoint(collector: Collector) -> None:
    response = httpx.get(f"{collector.http_endpoint}/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/v1/traces",
        "/v1/metrics",
        "/v1/logs",
        "/v1/metrics/report",
        "/v1/metrics/batch",
        "/v1/metrics/query",
        "/v1/logs/query",
        "/v1/traces/query",
        "/v1/status",
    ):
        assert path in doc["paths"], path
    params = {p["name"] for p in doc["paths"]["/v1/metrics/query"]["get"]["parameters"]}
    assert {"name", "agg", "tags", "window", "since", "until", "step"} <= params


def test_spans_that_are_each_others_parent_come_back_as_roots(http: httpx.Client) -> None:
    """A client can make spans each other's parent: the trace still answers, as a forest."""
    loop_only, with_root = "c1" * 16, "c2" * 16
    spans = [  # loop_only: two spans, each the other's parent (no root at all)
        make_span(loop_only, "a1" * 8, "a", parent="b1" * 8),
        make_span(loop_only, "b1" * 8, "b", parent="a1" * 8),
        # with_root: a proper root, a three-span loop and a child hanging off the loop
        make_span(with_root, "01" * 8, "root"),
        make_span(with_root, "02" * 8, "ok-child", parent="01" * 8),
        make_span(with_root, "0a" * 8, "x", parent="0c" * 8),
        make_span(with_root, "0b" * 8, "y", parent="0a" * 8),
        make_span(with_root, "0c" * 8, "z", parent="0b" * 8),
        make_span(with_root, "0d" * 8, "below-loop", parent="0a" * 8),
    ]
    body = trace_request("svc", spans).SerializeToString()
    assert http.post("/v1/traces", content=body, headers=PB).status_code == 200
    for trace_id, expected in ((loop_only, 2), (with_root, 6)):
        response = http.get("/v1/traces/query", params={"trace_id": trace_id})
        assert response.status_code == 200, response.text
        (trace,) = response.json()["traces"]
        assert trace["span_count"] == expected

        def count(nodes: list[dict[str, object]]) -> int:
            return sum(1 + count(node["children"]) for node in nodes)  # type: ignore[arg-type]

        assert count(trace["spans"]) == expected  # every span exactly once
    roots = http.get("/v1/traces/query", params={"trace_id": with_root}).json()["traces"][0]
    names = {span["name"]: span for span in roots["spans"]}
    assert [c["name"] for c in names["root"]["children"]] == ["ok-child"]
    assert {"x", "y", "z", "below-loop"} <= set(names)


def test_trace_list_summary_matches_the_full_trace(http: httpx.Client) -> None:
    """``detail=false`` summarises from a few columns; it must agree with the full trace.

    Covers a child that starts before its root (so the earliest span is not the root),
    spans in a parent loop, a span hanging off the loop, and an error on a child.
    """
    now = time.time_ns()
    skewed, looped = "d1" * 16, "d2" * 16
    spans = [
        make_span(skewed, "11" * 8, "root", start_ns=now - 5 * 10**8, duration_ms=50),
        make_span(skewed, "12" * 8, "early-child", parent="11" * 8, start_ns=now - 6 * 10**8),
        make_span(
            skewed,
            "13" * 8,
            "failing",
            parent="11" * 8,
            start_ns=now - 4 * 10**8,
            duration_ms=300,
            error=True,
        ),
        make_span(looped, "2a" * 8, "x", parent="2c" * 8, start_ns=now - 3 * 10**8),
        make_span(looped, "2b" * 8, "y", parent="2a" * 8, start_ns=now - 9 * 10**8),
        make_span(looped, "2c" * 8, "z", parent="2b" * 8, start_ns=now - 8 * 10**8),
        make_span(looped, "2d" * 8, "below-loop", parent="2a" * 8, start_ns=now - 10**9),
        make_span(looped, "2e" * 8, "late-root", start_ns=now - 2 * 10**8),
    ]
    assert http.post("/v1/traces", content=trace_request("svc", spans).SerializeToString(),
                     headers=PB).status_code == 200  # fmt: skip
    more = trace_request("other", [make_span(skewed, "14" * 8, "remote", parent="13" * 8)])
    assert http.post("/v1/traces", content=more.SerializeToString(), headers=PB).status_code == 200
    brief = http.get("/v1/traces/query", params={"detail": "false"}).json()["traces"]
    full = http.get("/v1/traces/query", params={"detail": "true"}).json()["traces"]
    for summary in full:
        del summary["spans"]
    assert brief == full
    by_id = {t["trace_id"]: t for t in brief}
    assert (by_id[skewed]["root_name"], by_id[skewed]["span_count"]) == ("root", 4)
    assert (by_id[skewed]["error"], by_id[skewed]["services"]) == (True, ["other", "svc"])
    assert (by_id[looped]["root_name"], by_id[looped]["error"]) == ("below-loop", False)
