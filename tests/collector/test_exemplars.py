"""Metric exemplars: stored from the SDK's export, returned per series, per project."""

from __future__ import annotations

import time
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
    kv,
    metrics_request,
    now_ns,
)
from flask import Flask
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Exemplar,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Metric,
)

from apps.support import wsgi_server
from telemetryflow import TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow._configuration.enums import SpanKind
from telemetryflow.collector import Collector
from telemetryflow.middleware import FlaskTelemetryMiddleware


def _client(collector: Collector, service: str) -> TelemetryFlowClient:
    client = (
        TelemetryFlowBuilder()
        .with_api_key(KEY_A.key_id, KEY_A.key_secret)
        .with_service(service, "1.0.0")
        .with_insecure()
        .with_endpoint(collector.http_endpoint.split("://")[1])
        .with_http()
        .with_global_providers(False)
        .build()
    )
    client.initialize()
    return client


def _send(collector: Collector) -> None:
    """Record a histogram value inside a span through the SDK, over OTLP/HTTP."""
    client = _client(collector, "checkout")
    with client.span("POST /pay", SpanKind.SERVER):
        client.record_histogram("pay.duration", 0.25, unit="s", attributes={"route": "/pay"})
    client.record_histogram("pay.duration", 0.5, unit="s", attributes={"route": "/pay"})
    client.shutdown(timeout=10)


def _query(collector: Collector, key: Any, **params: str) -> dict[str, Any]:
    with httpx.Client(base_url=collector.http_endpoint, headers=headers_for(key), timeout=10) as c:
        answer = c.get("/v1/metrics/query", params={"name": "pay.duration", **params})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_exemplar_links_the_point_to_its_span(collector: Collector) -> None:
    _send(collector)
    answer = _query(collector, KEY_A, agg="max", exemplars="true")
    with httpx.Client(
        base_url=collector.http_endpoint, headers=headers_for(KEY_A), timeout=10
    ) as c:
        traces = c.get("/v1/traces/query", params={"service": "checkout"}).json()["traces"]
    [series] = answer["series"]
    [span] = traces[0]["spans"]
    assert series["tags"] == {"route": "/pay", "service.name": "checkout"}
    # only the value recorded inside a span has an exemplar, and it names that span
    assert [(e["value"], e["trace_id"], e["span_id"]) for e in series["exemplars"]] == [
        (0.25, traces[0]["trace_id"], span["span_id"])
    ]
    assert series["exemplars"][0]["time_unix_nano"] > 0
    # merged series and tag filters select exemplars as they select points
    [grouped] = _query(collector, KEY_A, agg="max", exemplars="true", group_by="route")["series"]
    assert (grouped["tags"], grouped["exemplars"]) == ({"route": "/pay"}, series["exemplars"])
    assert _query(collector, KEY_A, exemplars="true", tags="route:/other")["series"] == []


def test_exemplars_only_when_asked_and_only_for_their_project(collector: Collector) -> None:
    _send(collector)
    plain = _query(collector, KEY_A, agg="max")
    assert "exemplars" not in plain["series"][0]
    assert _query(collector, KEY_B, agg="max", exemplars="true")["series"] == []
    # the other project's own series of the same name carries none of them
    with httpx.Client(
        base_url=collector.http_endpoint, headers=headers_for(KEY_B), timeout=10
    ) as c:
        c.post(
            "/v1/metrics/report",
            json={"name": "pay.duration", "value": 1.0, "tags": {"route": "/pay"}},
        ).raise_for_status()
    [other] = _query(collector, KEY_B, agg="max", exemplars="true")["series"]
    assert other["exemplars"] == []


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_exemplars_parameter_must_be_a_flag(collector: Collector, value: str) -> None:
    with httpx.Client(
        base_url=collector.http_endpoint, headers=headers_for(KEY_A), timeout=10
    ) as c:
        answer = c.get("/v1/metrics/query", params={"name": "x", "exemplars": value})
    assert answer.status_code == 400
    assert "exemplars" in answer.json()["error"]["message"]


def _until(check: Any, what: str, client: TelemetryFlowClient) -> Any:
    """Flush ``client`` and poll ``check()`` until it is truthy (at most 100 rounds, 15 s)."""
    deadline = time.monotonic() + 15
    for _ in range(100):
        client.flush(timeout=5)
        found = check()
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found, f"timed out waiting for {what}"
    return found


def test_middleware_request_duration_opens_the_request_span(collector: Collector) -> None:
    client = _client(collector, "flask-shop")
    app = Flask(__name__)
    app.get("/orders/<int:n>")(lambda n: {"n": n})
    FlaskTelemetryMiddleware(client, app)
    http = httpx.Client(base_url=collector.http_endpoint, headers=headers_for(KEY_A), timeout=10)
    with http, wsgi_server(app) as url:
        assert httpx.get(url + "/orders/7", timeout=10).status_code == 200

        def server_span() -> list[dict[str, Any]]:
            answer = http.get("/v1/traces/query", params={"service": "flask-shop"}).json()
            return [s for t in answer["traces"] for s in t["spans"]]

        def exemplars() -> list[dict[str, Any]]:
            answer = http.get("/v1/metrics/query", params={
                "name": "http.server.request.duration", "service": "flask-shop",
                "exemplars": "true", "agg": "max"}).json()  # fmt: skip
            return [e for s in answer["series"] for e in s["exemplars"]]

        # the middleware ends the span last: once it is stored, the duration is recorded
        [span] = _until(server_span, "the request's span", client)
        found = _until(exemplars, "the duration's exemplar", client)
    client.shutdown(timeout=10)
    assert [(e["trace_id"], e["span_id"]) for e in found] == [(span["trace_id"], span["span_id"])]
    assert found[0]["value"] > 0


def _exemplar(n: int, *, traced: bool = True) -> Exemplar:
    return Exemplar(
        time_unix_nano=now_ns() - 1_000_000 * (20 - n),
        as_double=float(n),
        trace_id=bytes([n + 1] * 16) if traced else b"",
        span_id=bytes([n + 1] * 8) if traced else b"",
        filtered_attributes=kv({"user": "u-1"}),
    )


def _post(collector: Collector, key: object, request: ExportMetricsServiceRequest) -> None:
    answer = httpx.post(
        collector.http_endpoint + "/v1/metrics",
        content=request.SerializeToString(),
        headers={**headers_for(key), "Content-Type": "application/x-protobuf"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def test_every_point_kind_keeps_its_newest_traced_exemplars(collector: Collector) -> None:
    hist = histogram("h.ex", [1.0], [3, 9])
    hist.histogram.data_points[0].exemplars.extend(
        [_exemplar(n) for n in range(12)] + [_exemplar(19, traced=False)]
    )
    total = counter("c.ex", [5.0], cumulative=False)
    total.sum.data_points[0].exemplars.append(_exemplar(13))
    level = gauge("g.ex", [2.0])
    level.gauge.data_points[0].exemplars.append(_exemplar(14))
    exp = Metric(name="e.ex", exponential_histogram=ExponentialHistogram(
        aggregation_temporality=AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA,
        data_points=[ExponentialHistogramDataPoint(
            time_unix_nano=now_ns(), count=2, sum=3.0, scale=0, zero_count=0,
            positive=ExponentialHistogramDataPoint.Buckets(offset=0, bucket_counts=[1, 1]),
            exemplars=[_exemplar(15)],
        )],
    ))  # fmt: skip
    _post(collector, KEY_A, metrics_request("kinds", [hist, total, level, exp]))
    _post(collector, KEY_A, metrics_request("kinds", [total]))  # sent again: stored once
    found = {
        name: [e["value"] for e in _query(collector, KEY_A, name=name, exemplars="1")[
            "series"][0]["exemplars"]]
        for name in ("h.ex", "c.ex", "g.ex", "e.ex")
    }  # fmt: skip
    # 12 traced exemplars on one point: the newest 8; the untraced one links nowhere
    assert found == {"h.ex": [4.0, 5, 6, 7, 8, 9, 10, 11], "c.ex": [13.0], "g.ex": [14.0],
                     "e.ex": [15.0]}  # fmt: skip
    trace_id = _query(collector, KEY_A, name="c.ex", exemplars="1")["series"][0]["exemplars"][0]
    assert (trace_id["trace_id"], trace_id["span_id"]) == ("0e" * 16, "0e" * 8)


def test_retention_trims_exemplars_with_their_points(collector: Collector) -> None:
    hist = histogram("h.old", [1.0], [1, 1])
    hist.histogram.data_points[0].exemplars.append(_exemplar(1))
    _post(collector, KEY_A, metrics_request("old", [hist]))

    def stored() -> int:
        with collector.store.reader() as conn:
            return int(conn.execute("SELECT count(*) FROM metric_exemplars").fetchone()[0])

    assert stored() == 1
    assert "metric_exemplars" in {t for t, _ in _usage(collector)}
    collector.store.apply_retention(now_ns=now_ns() + 30 * 86400 * 10**9)
    assert stored() == 0


def _usage(collector: Collector) -> list[tuple[str, str]]:
    collector.store.usage_by_project()  # brings the accounting up to date
    with collector.store.reader() as conn:
        return [tuple(r) for r in conn.execute("SELECT tbl, project FROM storage_usage")]
