"""Metric ingestion (001 report/batch, OTLP) and aggregation against hand-computed values."""

from __future__ import annotations

import random
import time
from statistics import quantiles

import httpx
import pytest
from collector_helpers import KEY_B, counter, headers_for, histogram, metrics_request
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetryflow.collector import Collector
from telemetryflow.collector.query._aggregate import exact_quantile, histogram_quantile

PB = {"Content-Type": "application/x-protobuf"}
BOUNDS = [1.0, 2.0, 4.0, 8.0]


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.1, 0.5), (0.5, 2.0), (0.9, 4.0), (0.95, 6.0), (0.99, 7.6)],
)
def test_histogram_quantile_interpolates_like_prometheus(q: float, expected: float) -> None:
    # buckets (0,1]:2 (1,2]:3 (2,4]:4 (4,8]:1 (8,+Inf):0
    assert histogram_quantile(q, BOUNDS, [2, 3, 4, 1, 0]) == pytest.approx(expected)


def test_histogram_quantile_edges() -> None:
    assert histogram_quantile(0.5, BOUNDS, [0, 0, 0, 1, 9]) == 8.0  # +Inf bucket: highest bound
    assert histogram_quantile(0.5, [-1.0, 5.0], [3, 0, 0]) == -1.0  # non-positive first bound
    assert histogram_quantile(0.5, BOUNDS, [0, 0, 0, 0, 0]) is None  # no observations
    assert histogram_quantile(0.5, [], [7]) is None  # only +Inf: no bound to answer with


@pytest.mark.parametrize(("q", "expected"), [(0.5, 3.0), (0.9, 7.6), (0.95, 8.8), (0.99, 9.76)])
def test_exact_quantile_of_raw_values(q: float, expected: float) -> None:
    assert exact_quantile([1.0, 2.0, 3.0, 4.0, 10.0], q) == pytest.approx(expected)


def batch(http: httpx.Client, points: list[dict], key: str | None = None) -> dict:
    body: dict = {"points": points}
    if key:
        body["idempotency_key"] = key
    response = http.post("/v1/metrics/batch", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def series_value(http: httpx.Client, **params: object) -> list[tuple[dict, float]]:
    response = http.get("/v1/metrics/query", params=params)
    assert response.status_code == 200, response.text
    return [(s["tags"], s["value"]) for s in response.json()["series"]]


def test_raw_point_aggregations_per_tag_set(http: httpx.Client) -> None:
    values = [1, 2, 3, 4, 10]
    points = [{"name": "latency", "value": v, "tags": {"route": "/a"}} for v in values]
    points.append({"name": "latency", "value": 100, "tags": {"route": "/b"}, "type": "timing"})
    assert batch(http, points)["accepted"] == 6
    expected = {
        "p50": 3.0,
        "p90": 7.6,
        "p95": 8.8,
        "p99": 9.76,
        "sum": 20.0,
        "avg": 4.0,
        "count": 5,
        "min": 1.0,
        "max": 10.0,
    }
    for agg, value in expected.items():
        result = {s["route"]: v for s, v in series_value(http, name="latency", agg=agg)}
        assert result["/a"] == pytest.approx(value), agg
        assert result["/b"] == pytest.approx(1 if agg == "count" else 100.0), agg
    only_b = series_value(http, name="latency", agg="sum", tags="route:/b")
    assert only_b == [({"route": "/b"}, 100.0)]
    via_tag_param = series_value(http, name="latency", agg="sum", **{"tag.route": "/a"})
    assert via_tag_param == [({"route": "/a"}, 20.0)]
    posted = http.post(
        "/v1/metrics/query",
        json={
            "metric": "latency",
            "percentile": "0.5",
            "tags": {"route": "/a"},
            "time_window": "1h",
        },
    )
    assert [s["value"] for s in posted.json()["series"]] == [3.0]


def test_otlp_histograms_merge_and_interpolate(http: httpx.Client) -> None:
    metrics = [
        histogram("rt", BOUNDS, [1, 1, 2, 0, 0], total_sum=9.0),
        histogram("rt", BOUNDS, [1, 2, 2, 1, 0], total_sum=21.0),
    ]
    body = metrics_request("api", metrics).SerializeToString()
    assert http.post("/v1/metrics", content=body, headers=PB).status_code == 200
    got = {
        agg: series_value(http, name="rt", agg=agg)[0][1]
        for agg in ("p50", "p99", "count", "sum", "avg")
    }
    assert got == pytest.approx({"p50": 2.0, "p99": 7.6, "count": 10, "sum": 30.0, "avg": 3.0})
    tags = series_value(http, name="rt", agg="p50")[0][0]
    assert tags == {"service.name": "api"}


def test_cumulative_histogram_uses_increase_since_window_start(http: httpx.Client) -> None:
    now = time.time_ns()
    before = histogram(
        "crt", BOUNDS, [1, 1, 0, 0, 0], cumulative=True, time_ns=now - 2 * 3600 * 10**9
    )
    inside = histogram("crt", BOUNDS, [2, 3, 4, 1, 0], cumulative=True, time_ns=now)
    for metric in (before, inside):
        body = metrics_request("api", [metric]).SerializeToString()
        assert http.post("/v1/metrics", content=body, headers=PB).status_code == 200
    # increase inside the last hour: [1, 2, 4, 1, 0] -> rank 4 falls in (2,4] at 1/4
    assert series_value(http, name="crt", agg="p50", window="1h")[0][1] == pytest.approx(2.5)
    assert series_value(http, name="crt", agg="count", window="1h")[0][1] == 8
    assert series_value(http, name="crt", agg="count", window="3h")[0][1] == 10


def test_cumulative_counter_sums_increases_and_handles_resets(http: httpx.Client) -> None:
    metrics = [
        counter("hits", [5, 8], cumulative=True, start_ns=1),
        counter("hits", [3], cumulative=True, start_ns=2),
    ]
    body = metrics_request("api", metrics).SerializeToString()
    assert http.post("/v1/metrics", content=body, headers=PB).status_code == 200
    assert series_value(http, name="hits", agg="sum")[0][1] == 5 + 3 + 3
    delta = metrics_request("api", [counter("dhits", [5, 8], cumulative=False)])
    assert http.post("/v1/metrics", content=delta.SerializeToString(), headers=PB).is_success
    assert series_value(http, name="dhits", agg="sum")[0][1] == 13


def test_step_buckets(http: httpx.Client) -> None:
    t0 = int(time.time()) - 7200
    points = [
        {"name": "jobs", "value": v, "type": "counter", "timestamp": t0 + offset}
        for offset, v in ((100, 1), (200, 2), (2000, 3), (2100, 5))
    ]
    batch(http, points)
    answer = http.get(
        "/v1/metrics/query",
        params={"name": "jobs", "agg": "sum", "since": t0, "until": t0 + 3600, "step": "30m"},
    ).json()
    assert [p["value"] for p in answer["series"][0]["points"]] == [3.0, 8.0]
    assert [p["time_unix_nano"] for p in answer["series"][0]["points"]] == [
        t0 * 10**9,
        (t0 + 1800) * 10**9,
    ]
    assert answer["series"][0]["value"] == 11.0


def test_report_and_batch_idempotency(http: httpx.Client, collector: Collector) -> None:
    first_report = http.post("/v1/metrics/report", json={"name": "r", "value": 2}).json()
    assert first_report == {"ok": True, "duplicate": False}
    first = batch(http, [{"name": "r", "value": 5}], key="batch-1")
    again = batch(http, [{"name": "r", "value": 5}], key="batch-1")
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert again["accepted"] == 1  # the first answer is repeated
    report = {"name": "r", "value": 7, "idempotency_key": "rep-1"}
    answers = [http.post("/v1/metrics/report", json=report).json() for _ in range(2)]
    assert answers == [{"ok": True, "duplicate": False}, {"ok": True, "duplicate": True}]
    assert series_value(http, name="r", agg="sum")[0][1] == 2 + 5 + 7
    other = httpx.post(
        f"{collector.http_endpoint}/v1/metrics/batch",
        headers=headers_for(KEY_B),
        json={"points": [{"name": "r", "value": 1}], "idempotency_key": "batch-1"},
    )
    assert other.json()["duplicate"] is False  # keys are per project


def test_idempotency_key_reused_for_different_points_is_a_conflict(http: httpx.Client) -> None:
    batch(http, [{"name": "k", "value": 1, "timestamp": 1_700_000_000}], key="import-7")
    changed = http.post(
        "/v1/metrics/batch",
        json={"idempotency_key": "import-7", "points": [{"name": "k", "value": 99}]},
    )
    assert changed.status_code == 409
    assert "import-7" in changed.json()["error"]["message"]
    report = {"name": "k", "value": 1, "idempotency_key": "rep-7"}
    assert http.post("/v1/metrics/report", json=report).status_code == 200
    reused = http.post("/v1/metrics/report", json={**report, "value": 2})
    assert reused.status_code == 409
    assert "rep-7" in reused.json()["error"]["message"]
    count = series_value(http, name="k", agg="count", since=1_699_999_000)
    assert count[0][1] == 2  # neither conflicting request stored anything


def test_batch_rejects_bad_points_individually(http: httpx.Client) -> None:
    result = batch(
        http,
        [
            {"name": "ok", "value": 1},
            {"name": "", "value": 1},
            {"name": "x", "value": "NaN"},
            {"name": "y", "value": 1, "type": "z"},
            {"name": "z", "value": True},
        ],
    )
    assert (result["ok"], result["accepted"], result["rejected"]) == (False, 1, 4)
    assert [(e["index"], e["field"]) for e in result["errors"]] == [
        (1, "name"),
        (2, "value"),
        (3, "type"),
        (4, "value"),
    ]
    assert series_value(http, name="ok", agg="count") == [({}, 1)]  # the valid one is stored


@pytest.mark.parametrize(
    ("path", "payload", "status"),
    [
        ("/v1/metrics/report", {"name": "x"}, 400),
        ("/v1/metrics/report", {"name": "x", "value": 1, "bogus": 1}, 400),
        ("/v1/metrics/report", [1], 400),
        ("/v1/metrics/batch", {"points": "nope"}, 400),
        ("/v1/metrics/batch", {"points": [{"name": "x", "value": 1}] * 10_001}, 413),
        ("/v1/metrics/query", {"agg": "sum"}, 400),
        ("/v1/metrics/query", {"name": "x", "agg": "p200"}, 400),
        ("/v1/metrics/query", {"name": "x", "window": "forever"}, 400),
        ("/v1/metrics/query", {"name": "x", "since": "yesterday-ish"}, 400),
        ("/v1/metrics/query", {"name": "x", "step": "1s", "window": "30d"}, 400),
        ("/v1/metrics/query", {"name": "x", "colour": "blue"}, 400),
        ("/v1/logs/query", {"severity": "loud"}, 400),
        ("/v1/logs/query", {"limit": 0}, 400),
        ("/v1/traces/query", {"detail": "maybe"}, 400),
    ],
)
def test_invalid_requests_get_400(
    http: httpx.Client, path: str, payload: object, status: int
) -> None:
    response = http.post(path, json=payload)
    assert response.status_code == status
    assert response.json()["error"]["code"] == status


def test_group_by_merges_series(http: httpx.Client) -> None:
    points = [
        {"name": "dur", "value": v, "tags": {"route": r, "status": s}}
        for v, r, s in ((1, "/a", "200"), (3, "/a", "500"), (10, "/b", "200"))
    ]
    batch(http, points)
    assert len(series_value(http, name="dur", agg="sum")) == 3
    grouped = series_value(http, name="dur", agg="sum", group_by="route")
    assert grouped == [({"route": "/a"}, 4.0), ({"route": "/b"}, 10.0)]
    everything = http.post("/v1/metrics/query", json={"name": "dur", "agg": "max", "group_by": []})
    assert [(s["tags"], s["value"]) for s in everything.json()["series"]] == [({}, 10.0)]


@settings(max_examples=200, deadline=None)
@given(
    bounds=st.lists(st.floats(0.001, 1e6), min_size=1, max_size=12, unique=True).map(sorted),
    data=st.data(),
)
def test_histogram_quantile_is_monotonic_and_within_bounds(
    bounds: list[float], data: object
) -> None:
    counts = data.draw(  # type: ignore[attr-defined]
        st.lists(st.integers(0, 1000), min_size=len(bounds) + 1, max_size=len(bounds) + 1)
    )
    if sum(counts) == 0:
        assert histogram_quantile(0.5, bounds, counts) is None
        return
    values = [histogram_quantile(q / 20, bounds, counts) for q in range(21)]
    assert all(v is not None for v in values)
    assert values == sorted(values)  # type: ignore[type-var]
    assert all(0.0 <= v <= bounds[-1] for v in values)  # type: ignore[operator]


def test_last_is_the_latest_value_per_series_and_step(http: httpx.Client) -> None:
    t0 = int(time.time()) - 7200
    points = [
        {"name": "queue.depth", "value": v, "timestamp": t0 + offset, "tags": {"q": q}}
        for offset, v, q in ((100, 7, "a"), (900, 3, "a"), (2000, 11, "a"), (1500, 4, "b"))
    ]
    batch(http, points)
    params = {"name": "queue.depth", "agg": "last", "since": t0, "until": t0 + 3600}
    answer = http.get("/v1/metrics/query", params={**params, "step": "30m"}).json()
    by_queue = {s["tags"]["q"]: s for s in answer["series"]}
    assert [p["value"] for p in by_queue["a"]["points"]] == [3.0, 11.0]
    assert (by_queue["a"]["value"], by_queue["b"]["value"]) == (11.0, 4.0)


def test_rate_is_increase_per_second_across_resets(http: httpx.Client) -> None:
    now = time.time_ns()
    times = [now - s * 10**9 for s in (2400, 1800, 1200, 600)]
    # cumulative 10 -> 70 -> 130, then a restart (new start time) reporting 30
    before = counter("req", [10, 70, 130], cumulative=True, start_ns=now - 3000 * 10**9,
                     times=times[:3])  # fmt: skip
    after = counter("req", [30], cumulative=True, start_ns=now - 700 * 10**9, times=times[3:])
    body = metrics_request("api", [before, after]).SerializeToString()
    assert http.post("/v1/metrics", content=body, headers=PB).status_code == 200
    since, until = now // 10**9 - 3600, now // 10**9
    window = {"name": "req", "since": since, "until": until}
    rate = http.get("/v1/metrics/query", params={**window, "agg": "rate"}).json()
    increase = http.get("/v1/metrics/query", params={**window, "agg": "sum"}).json()
    assert increase["series"][0]["value"] == 10 + 60 + 60 + 30
    assert rate["series"][0]["value"] == pytest.approx(160 / 3600)
    delta = metrics_request("api", [counter("dreq", [5, 15], cumulative=False)])
    assert http.post("/v1/metrics", content=delta.SerializeToString(), headers=PB).is_success
    params = {"name": "dreq", "agg": "rate", "window": "1h", "step": "1h"}
    stepped = http.get("/v1/metrics/query", params=params).json()
    assert [p["value"] for p in stepped["series"][0]["points"]] == [pytest.approx(20 / 3600)]


def test_exact_percentiles_per_series_step_and_window(http: httpx.Client) -> None:
    t0 = int(time.time()) - 7200
    rng = random.Random(3)
    values: dict[tuple[str, str, int], list[float]] = {}
    points = []
    for k, zone, step, n in (("a", "x", 0, 7), ("a", "x", 1, 12), ("b", "x", 0, 1),
                             ("b", "y", 1, 30), ("c", "y", 0, 4), ("c", "y", 1, 2)):  # fmt: skip
        for _ in range(n):
            v = round(rng.uniform(0, 100), 3)
            values.setdefault((k, zone, step), []).append(v)
            when = t0 + step * 1800 + rng.randrange(1800)
            points.append({"name": "lat", "value": v, "timestamp": when,
                           "tags": {"k": k, "zone": zone}})  # fmt: skip
    assert batch(http, points)["accepted"] == len(points)

    def p90(data: list[float]) -> float:  # linear between closest ranks, like numpy
        return data[0] if len(data) == 1 else quantiles(data, n=10, method="inclusive")[8]

    window = {"name": "lat", "agg": "p90", "since": t0, "until": t0 + 3599, "step": "30m"}
    answer = http.get("/v1/metrics/query", params=window).json()
    for series in answer["series"]:
        key = (series["tags"]["k"], series["tags"]["zone"])
        steps = [values[(*key, s)] for s in (0, 1) if (*key, s) in values]
        assert [p["value"] for p in series["points"]] == pytest.approx([p90(v) for v in steps])
        assert series["value"] == pytest.approx(p90([v for s in steps for v in s]))
    by_zone = http.get("/v1/metrics/query", params={**window, "group_by": "zone"}).json()
    for series in by_zone["series"]:
        zone = series["tags"]["zone"]
        mine = [v for (_, z, _), vs in values.items() if z == zone for v in vs]
        assert series["value"] == pytest.approx(p90(mine))


def test_one_name_with_every_kind_of_point(http: httpx.Client) -> None:
    metrics = [
        counter("mixed", [5, 8], cumulative=True, start_ns=1),  # increases 5 + 3
        histogram("mixed", BOUNDS, [1, 1, 0, 0, 0], total_sum=2.5),
    ]
    body = metrics_request("api", metrics).SerializeToString()
    assert http.post("/v1/metrics", content=body, headers=PB).status_code == 200
    batch(http, [{"name": "mixed", "value": 4, "type": "counter",
                  "tags": {"service.name": "api"}}])  # fmt: skip
    assert series_value(http, name="mixed", agg="sum") == [({"service.name": "api"}, 8 + 2.5 + 4)]
    assert series_value(http, name="mixed", agg="count") == [({"service.name": "api"}, 5)]
