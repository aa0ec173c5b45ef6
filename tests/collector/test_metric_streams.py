"""Metric streams as real clients send them: rescaled exponential histograms, resources,
the metric catalogue, and the size limit of a query."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from collector_helpers import KEY_A, KEY_B, counter, headers_for, kv
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Metric,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ResourcePb
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from telemetryflow.collector import Collector
from telemetryflow.collector._pipeline import Pipeline
from telemetryflow.collector.query._exponential import ExpBuckets
from telemetryflow.collector.query._metrics import ENV_MAX_POINTS, ENV_MAX_SERIES
from telemetryflow.collector.server._auth import Authenticator, Principal, RateLimiter

PB = {"Content-Type": "application/x-protobuf"}
HOUR = 3600 * 10**9
START = time.time_ns() - 10 * HOUR


def query(http: httpx.Client, **params: object) -> dict:
    response = http.get("/v1/metrics/query", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def value(http: httpx.Client, **params: object) -> float:
    (series,) = query(http, **params)["series"]
    return series["value"]


@pytest.fixture
def sdk_meter(collector: Collector) -> Iterator[tuple[MeterProvider, Histogram]]:
    """The OpenTelemetry SDK exporting a 4-bucket exponential histogram over OTLP/HTTP."""
    exporter = OTLPMetricExporter(
        endpoint=f"{collector.http_endpoint}/v1/metrics", headers=headers_for(KEY_A), timeout=10
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource({"service.name": "sdk-svc", "service.version": "1.2.3"}),
        views=[View(instrument_type=Histogram,
                    aggregation=ExponentialBucketHistogramAggregation(max_size=4))],
    )  # fmt: skip
    histogram = provider.get_meter("test").create_histogram("job.seconds", unit="s")
    yield provider, histogram
    provider.shutdown(timeout_millis=10_000)


def test_sdk_exponential_histogram_rescaled_between_exports_is_counted_once(
    http: httpx.Client, sdk_meter: tuple[MeterProvider, Histogram]
) -> None:
    provider, histogram = sdk_meter
    for v in (0.2, 0.4):  # fits 4 buckets at scale 1
        histogram.record(v)
    assert provider.force_flush(10_000)
    for v in (3.5, 6.0):  # the range grows: the SDK lowers the scale to -1 (base 4)
        histogram.record(v)
    assert provider.force_flush(10_000)  # cumulative: count 4, sum 10.1, scale -1
    assert value(http, name="job.seconds", agg="count") == 4
    assert value(http, name="job.seconds", agg="sum") == pytest.approx(10.1)
    # at scale -1 the buckets are (1/16, 1/4], (1/4, 1], (1, 4], (4, 16], one value each;
    # interpolated like histogram_quantile, then clamped into [min, max] = [0.2, 6.0]
    expected = {"p25": 0.25, "p50": 1.0, "p75": 4.0, "p90": 6.0, "min": 0.2, "max": 6.0}
    got = {agg: value(http, name="job.seconds", agg=agg) for agg in expected}
    assert got == pytest.approx(expected)
    series = query(http, name="job.seconds", agg="count")["series"][0]
    assert series["tags"] == {"service.name": "sdk-svc"}
    assert series["resource"] == {"service.version": "1.2.3"}


def exp_point(scale: int, offset: int, counts: list[int], when: int, total: float) -> Metric:
    point = ExponentialHistogramDataPoint(
        time_unix_nano=when, start_time_unix_nano=START, count=sum(counts),
        sum=total, scale=scale, zero_count=0,
        positive=ExponentialHistogramDataPoint.Buckets(offset=offset, bucket_counts=counts),
    )  # fmt: skip
    cumulative = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    return Metric(
        name="exp",
        exponential_histogram=ExponentialHistogram(
            data_points=[point], aggregation_temporality=cumulative
        ),
    )


def send(http: httpx.Client, metric: Metric, resource: dict[str, object]) -> None:
    request = ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=ResourcePb(attributes=kv(resource)),
                scope_metrics=[ScopeMetrics(metrics=[metric])],
            )
        ]
    )
    response = http.post("/v1/metrics", content=request.SerializeToString(), headers=PB)
    assert response.status_code == 200, response.text


def test_rescale_between_a_point_before_the_window_and_one_inside(http: httpx.Client) -> None:
    now = time.time_ns()
    resource = {"service.name": "svc", "service.instance.id": "i-1"}
    # two hours ago, scale 2: values in (2, 2.38] and (2.83, 3.36]; total 2
    send(http, exp_point(2, 4, [1, 0, 1], now - 2 * HOUR, 5.5), resource)
    # now, scale 0 (base 2): the old two fall in (2, 4]; two more in (4, 8] and (8, 16]
    send(http, exp_point(0, 1, [2, 1, 1], now - 10**9, 5.5 + 5.0 + 9.0), resource)
    assert value(http, name="exp", agg="count", window="1h") == 2
    assert value(http, name="exp", agg="sum", window="1h") == pytest.approx(14.0)
    # increase in the window: (4, 8] and (8, 16] one each -> p50 is the top of (4, 8]
    assert value(http, name="exp", agg="p50", window="1h") == pytest.approx(8.0)
    assert value(http, name="exp", agg="count", window="3h") == 4


def test_exponential_buckets_change_scale_exactly() -> None:
    fine = ExpBuckets(scale=3, zero=1, offset=-5, counts=(1, 2, 0, 0, 0, 0, 0, 0, 4))
    coarse = fine.downscale(1)  # indexes -5, -4, 3 at scale 3 -> -2, -1, 0 at scale 1
    assert (coarse.scale, coarse.offset, coarse.counts, coarse.zero) == (1, -2, (1, 2, 4), 1)
    later = ExpBuckets(scale=1, zero=1, offset=-2, counts=(1, 3, 6))
    assert later.minus(fine) == ExpBuckets(1, 0, -1, (1, 2))
    assert ExpBuckets(1, 0, 0, (1,)).minus(fine) is None  # fewer than before: a reset
    assert fine.plus(later).counts == (2, 5, 10)


def test_resource_attributes_kept_returned_and_filterable(http: httpx.Client) -> None:
    for version, instance, amount in (("1.0", "a", 2), ("2.0", "b", 5), ("2.0", "c", 7)):
        metric = counter("deploys", [amount], cumulative=False)
        resource = {"service.name": "web", "service.version": version,
                    "service.instance.id": instance, "host.name": "box"}  # fmt: skip
        send(http, metric, resource)
    (merged,) = query(http, name="deploys", agg="sum")["series"]
    assert merged["value"] == 14
    assert merged["resource"] == {"host.name": "box"}  # what every point shares
    only_v2 = query(http, name="deploys", agg="sum", **{"tag.service.version": "2.0"})
    assert [(s["value"], s["resource"]["service.version"]) for s in only_v2["series"]] == [
        (12.0, "2.0")
    ]
    by_instance = query(http, name="deploys", agg="sum", group_by="service.instance.id")
    assert [(s["tags"], s["value"]) for s in by_instance["series"]] == [
        ({"service.instance.id": "a"}, 2.0),
        ({"service.instance.id": "b"}, 5.0),
        ({"service.instance.id": "c"}, 7.0),
    ]


def test_metric_catalogue_lists_the_callers_metrics(
    collector: Collector, make_collector: Callable[..., Collector]
) -> None:
    t0 = int(time.time()) - 600
    points = [
        {"name": "http.requests", "value": 1, "type": "counter", "timestamp": t0,
         "tags": {"service.name": "api", "route": "/a"}},
        {"name": "http.requests", "value": 1, "type": "counter", "timestamp": t0 + 60,
         "tags": {"service.name": "api", "route": "/b"}},
        {"name": "http.requests", "value": 1, "type": "counter", "timestamp": t0 + 120,
         "tags": {"service.name": "api", "route": "/b"}},
        {"name": "queue.depth", "value": 4, "unit": "{jobs}", "timestamp": t0 + 30,
         "tags": {"service.name": "worker"}},
    ]  # fmt: skip
    for key, body in ((KEY_A, {"points": points}),
                      (KEY_B, {"points": [{"name": "secret.metric", "value": 1}]})):  # fmt: skip
        answer = httpx.post(
            f"{collector.http_endpoint}/v1/metrics/batch", json=body, headers=headers_for(key)
        )
        assert answer.json()["ok"] is True
    pipeline = Pipeline(collector.store, Authenticator((KEY_A, KEY_B)), RateLimiter(0))
    alpha = Principal(KEY_A.project, KEY_A.key_id)
    names = pipeline.query("metric_names", alpha, {})
    assert names["metrics"] == [
        {"name": "http.requests", "type": "counter", "unit": "", "series": 2, "points": 3,
         "last_seen": names["metrics"][0]["last_seen"],
         "last_seen_unix_nano": (t0 + 120) * 10**9},
        {"name": "queue.depth", "type": "gauge", "unit": "{jobs}", "series": 1, "points": 1,
         "last_seen": names["metrics"][1]["last_seen"],
         "last_seen_unix_nano": (t0 + 30) * 10**9},
    ]  # fmt: skip
    assert names["metrics"][0]["last_seen"].endswith("Z")
    worker = pipeline.query("metric_names", alpha, {"service": "worker"})["metrics"]
    assert [m["name"] for m in worker] == ["queue.depth"]
    prefixed = pipeline.query("metric_names", alpha, {"prefix": "http."})["metrics"]
    assert [m["name"] for m in prefixed] == ["http.requests"]
    beta = pipeline.query("metric_names", Principal(KEY_B.project, KEY_B.key_id), {})
    assert [m["name"] for m in beta["metrics"]] == ["secret.metric"]


def test_query_past_the_point_limit_is_refused_naming_what_narrows_it(
    make_collector: Callable[..., Collector], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_MAX_POINTS, "50")
    monkeypatch.setenv(ENV_MAX_SERIES, "3")
    collector = make_collector()
    t0 = int(time.time()) - 3000
    points = [{"name": "busy", "value": i, "timestamp": t0 + i, "tags": {"k": str(i % 5)}}
              for i in range(60)]  # fmt: skip
    with httpx.Client(base_url=collector.http_endpoint, headers=headers_for(KEY_A)) as http:
        assert http.post("/v1/metrics/batch", json={"points": points}).json()["accepted"] == 60
        too_many = http.get("/v1/metrics/query", params={"name": "busy", "agg": "p99"})
        assert too_many.status_code == 422
        message = too_many.json()["error"]["message"]
        assert "50 points" in message and "since/until" in message and "tags" in message
        narrow = {"name": "busy", "agg": "sum", "since": t0 + 30}  # 30 points, 5 series
        wide = http.get("/v1/metrics/query", params=narrow)
        assert wide.status_code == 422 and "group_by" in wide.json()["error"]["message"]
        fits = query(http, **narrow, **{"tag.k": "1"})
        assert [s["value"] for s in fits["series"]] == [31 + 36 + 41 + 46 + 51 + 56]


def test_database_of_version_1_0_gains_the_metric_columns(
    make_collector: Callable[..., Collector], tmp_path: Path
) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # metric_points as 1.0 created it, with one point
        conn.execute(
            "CREATE TABLE metric_points (id INTEGER PRIMARY KEY, project TEXT NOT NULL, "
            "service TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, "
            "monotonic INTEGER NOT NULL, temporality INTEGER NOT NULL, unit TEXT NOT NULL, "
            "tags TEXT NOT NULL, time_ns INTEGER NOT NULL, start_ns INTEGER NOT NULL, "
            "value REAL, count INTEGER, sum REAL, min REAL, max REAL, bounds TEXT, "
            "counts TEXT, received_ns INTEGER NOT NULL)"
        )
        now = time.time_ns()
        conn.execute(
            "INSERT INTO metric_points (project, service, name, kind, monotonic, temporality, "
            "unit, tags, time_ns, start_ns, value, received_ns) "
            "VALUES ('alpha', 'web', 'old', 'gauge', 0, 0, '', '{}', ?, 0, 4.0, ?)",
            (now - 10**9, now),
        )
    collector = make_collector(db_path=str(db))
    with httpx.Client(base_url=collector.http_endpoint, headers=headers_for(KEY_A)) as http:
        send(http, counter("old", [6], cumulative=False), {"service.name": "web", "v": "2"})
        (series,) = query(http, name="old", agg="sum")["series"]
    assert (series["value"], series["resource"]) == (10.0, {})  # the old point has none
