"""Metric exemplars: stored from the SDK's export, returned per series, per project."""

from __future__ import annotations

import httpx
import pytest
from collector_helpers import KEY_A, KEY_B, headers_for

from telemetryflow import TelemetryFlowBuilder
from telemetryflow._enums import SpanKind
from telemetryflow.collector import Collector


def _send(collector: Collector) -> None:
    """Record a histogram value inside a span through the SDK, over OTLP/HTTP."""
    client = (
        TelemetryFlowBuilder()
        .with_api_key(KEY_A.key_id, KEY_A.key_secret)
        .with_service("checkout", "1.0.0")
        .with_insecure()
        .with_endpoint(collector.http_endpoint.split("://")[1])
        .with_http()
        .build()
    )
    client.initialize()
    with client.span("POST /pay", SpanKind.SERVER):
        client.record_histogram("pay.duration", 0.25, unit="s", attributes={"route": "/pay"})
    client.record_histogram("pay.duration", 0.5, unit="s", attributes={"route": "/pay"})
    client.shutdown(timeout=10)


def _query(collector: Collector, key: object, **params: str) -> dict[str, object]:
    with httpx.Client(base_url=collector.http_endpoint, headers=headers_for(key), timeout=10) as c:
        answer = c.get("/v1/metrics/query", params={"name": "pay.duration", **params})
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_exemplar_links_the_point_to_its_span(collector: Collector) -> None:
    _send(collector)
    answer = _query(collector, KEY_A, agg="max", exemplars="true")
    with httpx.Client(
        base_url=collector.http_endpoint, headers=headers_for(KEY_A), timeout=10
    ) as c:
        traces = c.get("/v1/traces/query", params={"service": "checkout"}).json()["traces"]
    [series] = answer["series"]  # type: ignore[misc]
    [span] = traces[0]["spans"]
    assert series["tags"] == {"route": "/pay", "service.name": "checkout"}
    # only the value recorded inside a span has an exemplar, and it names that span
    assert [(e["value"], e["trace_id"], e["span_id"]) for e in series["exemplars"]] == [
        (0.25, traces[0]["trace_id"], span["span_id"])
    ]
    assert series["exemplars"][0]["time_unix_nano"] > 0


def test_exemplars_only_when_asked_and_only_for_their_project(collector: Collector) -> None:
    _send(collector)
    plain = _query(collector, KEY_A, agg="max")
    assert "exemplars" not in plain["series"][0]  # type: ignore[index]
    assert _query(collector, KEY_B, agg="max", exemplars="true")["series"] == []
    # the other project's own series of the same name carries none of them
    with httpx.Client(
        base_url=collector.http_endpoint, headers=headers_for(KEY_B), timeout=10
    ) as c:
        c.post(
            "/v1/metrics/report",
            json={"name": "pay.duration", "value": 1.0, "tags": {"route": "/pay"}},
        ).raise_for_status()
    [other] = _query(collector, KEY_B, agg="max", exemplars="true")["series"]  # type: ignore[misc]
    assert other["exemplars"] == []


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_exemplars_parameter_must_be_a_flag(collector: Collector, value: str) -> None:
    with httpx.Client(
        base_url=collector.http_endpoint, headers=headers_for(KEY_A), timeout=10
    ) as c:
        answer = c.get("/v1/metrics/query", params={"name": "x", "exemplars": value})
    assert answer.status_code == 400
    assert "exemplars" in answer.json()["error"]["message"]
