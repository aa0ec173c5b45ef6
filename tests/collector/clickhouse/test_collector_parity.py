"""A collector over chDB answers like one over SQLite, fed the same data by the SDK and OTLP.

Both collectors are real (``Collector`` on loopback ports); the same requests go to each
(what the SDK exported is recorded once by the testing receiver, then sent to both, so
both hold the same ids and times), then the same queries are asked over HTTP (the query
API and the web view's JSON) and the answers compared. The differences the exporter's
tables impose are applied to the SQLite answer first, and only those (``docs/scale.md``):
attribute values as strings, log bodies as text, no scope attributes on spans, no
``since``/``until`` (they are "now").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_helpers import (
    KEY_A,
    KEY_B,
    counter,
    gauge,
    headers_for,
    histogram,
    log_request,
    make_log,
    make_span,
    metrics_request,
    trace_request,
)

from telemetryflow import TelemetryFlowBuilder
from telemetryflow._configuration.enums import SpanKind
from telemetryflow.collector import ApiKey, Collector
from telemetryflow.collector.web._insights import DURATION_METRIC
from telemetryflow.testing import OTLPReceiver

PB = {"Content-Type": "application/x-protobuf"}
T1 = "11111111111111111111111111111111"
T2 = "22222222222222222222222222222222"
T3 = "33333333333333333333333333333333"
HOUR = 3600 * 10**9

TRACE_QUERIES: list[dict[str, Any]] = [
    {}, {"detail": "false"}, {"trace_id": T1}, {"service": "payments"}, {"error": "true"},
    {"min_duration": "100ms"}, {"name": "GET /home"}, {"limit": "1"}, {"time_window": "1h"},
    {"service": "shop"}, {"name_contains": "get /"}, {"name_contains": "HARG"},
    {"name_contains": "%"},
]  # fmt: skip
LOG_QUERIES: list[dict[str, Any]] = [
    {}, {"severity": "error"}, {"contains": "DECLINED"}, {"contains": "100%_"},
    {"trace_id": T1}, {"service": "api"}, {"limit": "2"}, {"since": "31h", "until": "29h"},
    {"service": "shop"},
]  # fmt: skip


def _text(value: Any) -> str:
    """An attribute value as the exporter stores it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _as_exporter_stores(node: Any, key: str = "") -> Any:
    if isinstance(node, list):
        return [_as_exporter_stores(item, key) for item in node]
    if not isinstance(node, dict):
        return node
    if key in ("attributes", "resource"):
        return {k: _text(v) for k, v in node.items()}
    out = {k: _as_exporter_stores(v, k) for k, v in node.items() if k not in ("since", "until")}
    if "span_id" in out and "scope" in out and "children" in out:
        out["scope"] = {**out["scope"], "attributes": {}}
    if "body_kind" in out:
        out["body"] = out["body"] if isinstance(out["body"], str) else _text(out["body"])
        out["body_kind"] = "string"
    return out


@pytest.fixture(scope="module")
def sdk_exports() -> list[tuple[str, bytes]]:
    """What the SDK exports for a request with a nested span, logs, captures and an event."""
    with OTLPReceiver() as receiver:
        client = (
            TelemetryFlowBuilder().with_api_key(KEY_A.key_id, KEY_A.key_secret)
            .with_service("shop", "1.0.0").with_insecure().with_global_providers(False)
            .with_endpoint(receiver.http_endpoint.split("://")[1]).with_http()
            .with_signals(metrics=False).build()
        )  # fmt: skip
        client.initialize()
        with client.span("POST /buy", SpanKind.SERVER), client.span("charge card"):
            client.log_error("card declined by the SDK", {"order": "o-1"})
            try:
                raise ValueError("card 4242 declined")
            except ValueError:
                client.capture_exception()
        client.capture_error("timed out", code="E_TIMEOUT", tags={"tenant": "acme"})
        client.track_event("signup", {"plan": "pro"}, distinct_id="u1")
        client.shutdown(timeout=10)
        exports = [(r.signal, r.message.SerializeToString()) for r in receiver.requests]
    assert {signal for signal, _ in exports} == {"traces", "logs"}
    return exports


@pytest.fixture
def pair(
    make_collector: Callable[..., Collector], chdb_path: Path, database: str
) -> dict[str, Collector]:
    sqlite = make_collector()
    chdb = make_collector(store=f"chdb://{chdb_path}?database={database}")
    return {"sqlite": sqlite, "chdb": chdb}


def _client(collector: Collector, key: ApiKey) -> httpx.Client:
    return httpx.Client(base_url=collector.http_endpoint, headers=headers_for(key), timeout=30)


def _feed(collector: Collector, now: int, sdk_exports: list[tuple[str, bytes]]) -> None:
    spans = {
        "frontend": [
            make_span(T1, "a000000000000001", "GET /checkout", start_ns=now - 10**9,
                      duration_ms=300, attrs={"http.status_code": 200, "cached": False}),
            make_span(T1, "a000000000000002", "render", parent="a000000000000001",
                      start_ns=now - 10**9 + 10**6, duration_ms=20),
            make_span(T2, "b000000000000001", "GET /home", start_ns=now - 5 * 10**8,
                      duration_ms=5),
            make_span(T3, "c000000000000001", "GET /old", start_ns=now - 3 * HOUR),
        ],
        "payments": [
            make_span(T1, "a000000000000003", "charge", parent="a000000000000001",
                      start_ns=now - 10**9 + 2 * 10**6, duration_ms=250, error=True,
                      attrs={"amount": 12.5}),
        ],
    }  # fmt: skip
    logs = {
        "api": [
            make_log("user signed in", 9, time_ns=now - 3000),
            make_log("payment failed: card declined", 17, time_ns=now - 2000, trace_id=T1),
            make_log("ancient warning", 13, time_ns=now - 30 * HOUR),
        ],
        "worker": [make_log("job crashed 100%_done", 21, time_ns=now - 500)],
    }
    with _client(collector, KEY_A) as http:
        for service, items in spans.items():
            body = trace_request(service, items).SerializeToString()
            assert http.post("/v1/traces", content=body, headers=PB).status_code == 200
        for service, records in logs.items():
            body = log_request(service, records).SerializeToString()
            assert http.post("/v1/logs", content=body, headers=PB).status_code == 200
    with _client(collector, KEY_B) as http:  # another project's data, never in KEY_A's answers
        body = trace_request("payments", [make_span(T2, "e000000000000001", "beta")])
        assert http.post("/v1/traces", content=body.SerializeToString(), headers=PB).is_success
    with _client(collector, KEY_A) as http:
        for signal, body in sdk_exports:
            assert http.post(f"/v1/{signal}", content=body, headers=PB).status_code == 200


def _ask(collector: Collector, key: ApiKey = KEY_A) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    with _client(collector, key) as http:
        for n, params in enumerate(TRACE_QUERIES):
            answer = http.get("/v1/traces/query", params=params)
            assert answer.status_code == 200, answer.text
            answers[f"traces {n} {params}"] = answer.json()
        for n, params in enumerate(LOG_QUERIES):
            answer = http.get("/v1/logs/query", params=params)
            assert answer.status_code == 200, answer.text
            answers[f"logs {n} {params}"] = answer.json()
        for path in ("/ui/api/traces", "/ui/api/logs", "/ui/api/errors", "/ui/api/events"):
            answer = http.get(path)  # the web view reads through the same backend
            assert answer.status_code == 200, (path, answer.text)
            answers[path] = answer.json()
        if key is KEY_A:
            ids = [g["sample"]["error_id"] for g in answers["/ui/api/errors"]["groups"]]
            assert ids, "the SDK's captures arrived"
            for path in (f"/ui/api/traces/{T1}", *(f"/ui/api/errors/{i}" for i in ids)):
                answer = http.get(path)
                assert answer.status_code == 200, (path, answer.text)
                answers[path] = answer.json()
            answers["/ui/api/errors/unknown"] = http.get("/ui/api/errors/unknown").status_code
        status = http.get("/v1/status").json()
        answers["status"] = {k: status[k] for k in ("project", "received", "ok")}
        for path in ("/v1/observability/errors", "/v1/observability/events"):
            answer = http.get(path)
            assert answer.status_code == 200, answer.text
            answers[path] = answer.json()
    return answers


def test_the_same_data_gets_the_same_answers_from_both_stores(
    pair: dict[str, Collector], sdk_exports: list[tuple[str, bytes]]
) -> None:
    now = time.time_ns()
    for collector in pair.values():
        _feed(collector, now, sdk_exports)
    sqlite = _as_exporter_stores(_ask(pair["sqlite"]))
    chdb = _as_exporter_stores(_ask(pair["chdb"]))
    assert sqlite["traces 0 {}"]["count"] == 4  # the data arrived: T2, T1, T3 and the SDK's
    assert sqlite["status"]["received"]["spans"] == 7
    assert sqlite["/v1/observability/errors"]["total_groups"] == 2
    # status counts by receive time over SQLite, by the data's own time over ClickHouse
    # (the exporter's tables have none): the 3 h old span and 30 h old record drop out
    old = {"spans": 1, "metric_points": 0, "logs": 1}
    received = sqlite.pop("status")["received"]
    assert chdb.pop("status")["received"] == {k: v - old[k] for k, v in received.items()}
    for name, answer in sqlite.items():
        assert chdb[name] == answer, name


def test_projects_stay_apart_over_clickhouse(
    pair: dict[str, Collector], sdk_exports: list[tuple[str, bytes]]
) -> None:
    _feed(pair["chdb"], time.time_ns(), sdk_exports)
    beta = _ask(pair["chdb"], KEY_B)
    assert [t["root_name"] for t in beta["traces 0 {}"]["traces"]] == ["beta"]
    assert beta["logs 0 {}"]["logs"] == []
    assert beta["status"]["received"] == {"spans": 1, "metric_points": 0, "logs": 0}
    assert beta["/v1/observability/errors"]["groups"] == []
    with _client(pair["chdb"], KEY_B) as http:
        assert http.get("/v1/traces/query", params={"trace_id": T1}).json()["traces"] == []
        assert http.get(f"/ui/api/traces/{T1}").status_code == 404


METRIC_QUERIES: list[dict[str, Any]] = [
    {"name": "latency", "agg": "p50"}, {"name": "latency", "agg": "p99", "tags": "route:/a"},
    {"name": "latency", "agg": "count"}, {"name": "rt", "agg": "p50"},
    {"name": "rt", "agg": "sum"}, {"name": "hits", "agg": "sum"},
    {"name": "temp", "agg": "last"}, {"name": "latency", "agg": "avg", "step": "1m"},
]  # fmt: skip


WEB_METRIC_VIEWS = ["/ui/api/metrics", "/ui/api/metrics/rt", "/ui/api/metrics/duration",
                    "/ui/api/overview"]  # fmt: skip


def _metric_data() -> tuple[list[dict[str, Any]], bytes]:
    """001 points (with their time: else each collector stamps its own) and OTLP metrics."""
    when = time.time() - 30
    points: list[dict[str, Any]] = [
        {"name": "latency", "value": v, "tags": {"route": "/a"}, "timestamp": when + i}
        for i, v in enumerate((1, 2, 3, 4, 10))
    ]
    points.append({"name": "latency", "value": 100, "tags": {"route": "/b"}, "type": "timing",
                   "timestamp": when})  # fmt: skip
    metrics = [
        histogram("rt", [1.0, 2.0, 4.0, 8.0], [1, 1, 2, 0, 0], total_sum=9.0),
        histogram("rt", [1.0, 2.0, 4.0, 8.0], [1, 2, 2, 1, 0], total_sum=21.0),
        counter("hits", [5, 8], cumulative=True, start_ns=1),
        gauge("temp", [21.5, 20.0]),
        *(histogram(DURATION_METRIC, [0.1, 0.5, 1.0], counts, total_sum=total,
                    attrs={"http.route": "/buy", "http.response.status_code": status})
          for counts, total, status in (([3, 2, 1, 0], 2.0, 200), ([0, 0, 1, 1], 2.5, 503)))
    ]  # fmt: skip
    return points, metrics_request("api", metrics).SerializeToString()


def _feed_metrics(collector: Collector, points: list[dict[str, Any]], body: bytes) -> None:
    with _client(collector, KEY_A) as http:
        answer = http.post("/v1/metrics/batch", json={"points": points, "idempotency_key": "k1"})
        assert answer.status_code == 200 and answer.json()["accepted"] == 6, answer.text
        again = http.post("/v1/metrics/batch", json={"points": points, "idempotency_key": "k1"})
        assert again.json()["duplicate"] is True
        assert http.post("/v1/metrics", content=body, headers=PB).status_code == 200


def test_metric_queries_answer_alike_over_both_stores(pair: dict[str, Collector]) -> None:
    pytest.importorskip("telemetryflow.collector.store.clickhouse._metrics_read")
    answers: dict[str, list[Any]] = {}
    points, body = _metric_data()
    now = int(time.time())
    window = {"since": str(now - 3600), "until": str(now + 60)}  # the same for both
    for name, collector in pair.items():
        _feed_metrics(collector, points, body)
        with _client(collector, KEY_A) as http:
            got = [http.get("/v1/metrics/query", params={**params, **window})
                   for params in METRIC_QUERIES]  # fmt: skip
            got.append(http.get("/v1/metrics/names"))
            got += [http.get(path, params=params) for path, params in (
                ("/ui/api/metrics", {}), ("/ui/api/metrics/rt", window),
                (f"/ui/api/metrics/{DURATION_METRIC}", {**window, "agg": "p99"}),
                ("/ui/api/overview", {}),
            )]  # fmt: skip
        assert all(r.status_code == 200 for r in got), [r.text for r in got]
        answers[name] = [_as_exporter_stores(r.json()) for r in got]
    assert answers["sqlite"][0]["series"]  # the data arrived
    assert answers["sqlite"][-3]["series"] and answers["sqlite"][-2]["series"]
    overview = answers["sqlite"][-1]
    assert [(r["route"], r["requests"], r["errors"]) for r in overview["routes"]] == [
        ("/buy", 8.0, 2.0),
    ]  # fmt: skip
    for params, sqlite, chdb in zip(
        [*METRIC_QUERIES, "names", *WEB_METRIC_VIEWS],
        answers["sqlite"],
        answers["chdb"],
        strict=True,
    ):
        assert chdb == sqlite, params
