"""Forwarding of what the REST APIs accept: 001 points, errors and product events.

A real collector forwards to a real loopback OTLP receiver (what arrived is counted
and read item by item) and to a second real collector (which must then list the
errors, events and points as the first one does).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from collector_helpers import KEY_A, headers_for

from telemetryflow.collector import Collector
from telemetryflow.collector.forward import LinkLimits, resolve_forward
from telemetryflow.testing import OTLPReceiver
from telemetryflow.testing._records import attrs

FAST = LinkLimits(timeout=2.0)
STACK = """Traceback (most recent call last):
  File "/srv/shop/billing/webhooks.py", line 88, in deliver
    response = post(url, payload)
TimeoutError: timed out
"""


@pytest.fixture
def upstream() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as rx:
        yield rx


def _post(collector: Collector, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        collector.http_endpoint + path, json=body, headers=headers_for(KEY_A), timeout=10
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _get(collector: Collector, path: str, **params: str) -> Any:
    response = httpx.get(
        collector.http_endpoint + path, params=params, headers=headers_for(KEY_A), timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def _settled(collector: Collector) -> bool:
    return all(entry["pending"] == 0 for entry in _get(collector, "/v1/status")["forwarding"])


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _values(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Series with their step values, without step times (each query has its own now)."""
    return [{**s, "points": [p["value"] for p in s["points"]]} for s in series]


def _write_everything(collector: Collector) -> dict[str, str]:
    """Each REST write once, and the idempotent ones a second time; the error's id."""
    report = {
        "name": "rest.orders", "value": 3, "type": "counter", "unit": "1",
        "tags": {"service.name": "shop", "region": "eu"}, "idempotency_key": "r-1",
    }  # fmt: skip
    assert _post(collector, "/v1/metrics/report", report)["duplicate"] is False
    assert _post(collector, "/v1/metrics/report", report)["duplicate"] is True
    batch = {
        "idempotency_key": "b-1",
        "points": [
            {"name": "rest.queue", "value": 7.5, "type": "gauge", "tags": {"queue": "mail"}},
            {"name": "rest.latency", "value": 120, "type": "timing", "unit": "ms",
             "tags": {"service.name": "api", "route": "/buy"}},
            {"name": "rest.latency", "value": 80, "type": "timing", "unit": "ms",
             "tags": {"service.name": "api", "route": "/buy"}},
            {"name": "", "value": 1},  # refused: never stored, never forwarded
        ],
    }  # fmt: skip
    first = _post(collector, "/v1/metrics/batch", batch)
    assert (first["accepted"], first["rejected"], first["duplicate"]) == (3, 1, False)
    assert _post(collector, "/v1/metrics/batch", batch)["duplicate"] is True
    _post(collector, "/v1/metrics/report", {"name": "rest.plain", "value": 1})
    _post(collector, "/v1/observability/metrics", {"name": "rest.api", "value": 2.5})
    error = _post(collector, "/v1/observability/errors", {
        "message": "webhook 7781 timed out", "code": "E_TIMEOUT", "stack": STACK,
        "tags": {"service.name": "billing", "tenant": "acme"},
    })  # fmt: skip
    _post(collector, "/v1/observability/events", {
        "event": "signup", "distinct_id": "u-42",
        "properties": {"plan": "pro", "seats": 3, "trial": True, "meta": {"ref": ["ad", 1]}},
    })  # fmt: skip
    return {"error_id": error["error_id"]}


def test_each_rest_write_arrives_upstream_once_with_its_values(
    make_collector: Callable[..., Collector], upstream: OTLPReceiver
) -> None:
    config = resolve_forward([upstream.http_endpoint], environ={}, limits=FAST)
    collector = make_collector(forward=config)
    ids = _write_everything(collector)
    assert _wait(lambda: _settled(collector))
    assert upstream.wait_for(lambda: len(upstream.logs()) >= 2, timeout=10)

    points = [
        (record.resource.get("service.name", ""), record.name, kind, point)
        for record in upstream.metrics()
        for kind in ("gauge", "sum")
        if record.metric.HasField(kind)
        for point in getattr(record.metric, kind).data_points
    ]
    assert Counter((s, n, k) for s, n, k, _ in points) == Counter({
        ("shop", "rest.orders", "sum"): 1, ("", "rest.queue", "gauge"): 1,
        ("api", "rest.latency", "gauge"): 2, ("", "rest.plain", "gauge"): 1,
        ("", "rest.api", "gauge"): 1,
    })  # fmt: skip
    orders = next(r.metric for r in upstream.metrics() if r.name == "rest.orders")
    assert (orders.unit, orders.sum.is_monotonic, orders.sum.aggregation_temporality) == (
        "1", True, 1  # DELTA: each report adds its value
    )  # fmt: skip
    [order] = orders.sum.data_points
    assert (order.as_double, attrs(order.attributes)) == (3.0, {"region": "eu"})
    latency = sorted(p.as_double for s, n, _, p in points if n == "rest.latency")
    assert latency == [80.0, 120.0]
    assert {attrs(p.attributes)["route"] for s, n, _, p in points if n == "rest.latency"} == {
        "/buy"
    }

    error, event = sorted(upstream.logs(), key=lambda e: e.log.event_name)
    assert error.log.event_name == "exception"
    assert (error.log.severity_text, error.body, error.resource) == (
        "ERROR", "webhook 7781 timed out", {"service.name": "billing"}
    )  # fmt: skip
    error_attrs = error.attributes
    assert error_attrs["error.id"] == ids["error_id"]
    assert error_attrs["error.code"] == error_attrs["error.type"] == "E_TIMEOUT"
    assert error_attrs["exception.stacktrace"] == STACK
    assert error_attrs["tenant"] == "acme"
    assert error.scope == "telemetryflow"
    assert (event.log.event_name, event.body, event.log.severity_text) == (
        "signup", "signup", "INFO"
    )  # fmt: skip
    assert event.attributes == {
        "plan": "pro", "seats": 3, "trial": True, "meta": {"ref": ["ad", 1]},
        "enduser.id": "u-42",
    }  # fmt: skip
    [entry] = _get(collector, "/v1/status")["forwarding"]
    assert (entry["delivered"], entry["dropped"]) == (6 + 2, 0)  # 6 points, 2 records


def test_an_upstream_collector_lists_rest_writes_as_the_local_one(
    make_collector: Callable[..., Collector],
) -> None:
    upstream = make_collector()
    header = "Authorization=" + headers_for(KEY_A)["Authorization"]
    config = resolve_forward([upstream.http_endpoint], [header], environ={}, limits=FAST)
    local = make_collector(forward=config)
    ids = _write_everything(local)
    assert _wait(lambda: _settled(local))

    def listed(collector: Collector) -> dict[str, Any]:
        errors = _get(collector, "/v1/observability/errors")
        one = _get(collector, f"/v1/observability/errors/{ids['error_id']}")
        answers = {
            "errors": errors,
            "error": one,
            "events": _get(collector, "/v1/observability/events"),
        }
        for name in ("rest.orders", "rest.queue", "rest.latency", "rest.plain", "rest.api"):
            for agg in ("sum", "count", "p50", "avg"):
                answer = _get(collector, "/v1/metrics/query", name=name, agg=agg, window="1h")
                answers[f"{name} {agg}"] = _values(answer["series"])
        answers["latency by service"] = _values(_get(
            collector, "/v1/metrics/query", name="rest.latency", agg="sum", window="1h",
            service="api",
        )["series"])  # fmt: skip
        return answers

    def same_error(answer: dict[str, Any]) -> dict[str, Any]:
        """The occurrence as filed: the way in (``rest`` here, ``otlp`` upstream) aside."""
        return {**answer, "source": None}

    assert _wait(lambda: _get(upstream, "/v1/observability/events")["events"] != [])
    here, there = listed(local), listed(upstream)
    assert here["errors"]["total_occurrences"] == 1
    assert here["events"]["events"][0]["count"] == 1
    assert here["rest.orders sum"][0]["value"] == 3
    assert here["rest.latency count"][0]["value"] == 2
    for group in (*here["errors"]["groups"], *there["errors"]["groups"]):
        group["sample"] = same_error(group["sample"])
    here["error"], there["error"] = same_error(here["error"]), same_error(there["error"])
    for name, answer in here.items():
        assert there[name] == answer, name
