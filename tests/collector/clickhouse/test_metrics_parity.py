"""The same OTLP metrics written into the SQLite store and into ClickHouse answer every
metric query the same way."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from ch_metrics_support import (
    BASE,
    DELTA,
    S,
    counter,
    engine,
    exemplar,
    exp_histogram,
    exp_point,
    fresh_tables,
    gauge,
    hist_point,
    histogram,
    number,
    request,
    summary,
    write_clickhouse,
    write_sqlite,
)

from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.ingest._metrics_api import batch_rows, report_row
from telemetryflow.collector.query._metric_names import query_metric_names as sqlite_names
from telemetryflow.collector.query._metrics import QueryLimits
from telemetryflow.collector.query._metrics import query_metrics as sqlite_query
from telemetryflow.collector.store.clickhouse._metrics_read import (
    query_metric_names,
    query_metrics,
)
from telemetryflow.collector.store.clickhouse._metrics_write import api_metric_rows
from telemetryflow.collector.store.clickhouse._tables import Tables
from telemetryflow.collector.store.sqlite._store import Store, WriteBatch

PROJECT = "acme"
BOUNDS = [10.0, 50.0, 100.0, 500.0]


def _requests() -> list[Any]:
    """Every kind of point, several series and services, cumulative and delta, a reset.

    Streams export at different instants: which of two values recorded at the same
    nanosecond is the "last" of a merged series is not defined.
    """
    api = {"service.name": "api", "host.name": "h1", "deployment.environment": "prod"}
    web = {"service.name": "web", "host.name": "h2", "deployment.environment": "prod"}
    out = []
    for i in range(12):  # one export a minute for 12 minutes, plus one before the window
        t = BASE + i * 60 * S
        get = {"route": "/get", "method": "GET"}
        post = {"route": "/post", "method": "POST"}
        total = 5 * i + (3 if i > 6 else 0)
        reqs = 20 * i if i != 8 else 3  # a counter reset at minute 8
        cum = [i, 2 * i, 3 * i + 1, i, i // 2]
        out.append(
            request(
                api,
                gauge(
                    "queue.depth", number(t, 10.0 + i, get), number(t + S, 3.5 * i, post), unit="1"
                ),
                counter(
                    "http.requests",
                    number(t, float(reqs), get, start=BASE - 600 * S),
                    number(t + S, float(10 * i), post, start=BASE - 600 * S),
                ),
                counter("bytes.delta", number(t, float(i % 4), get), temporality=DELTA),
                counter("conns", number(t, float(i % 5 - 2), get), monotonic=False),
                histogram(
                    "http.duration",
                    hist_point(
                        t,
                        BOUNDS,
                        cum,
                        7.5 * i + 1.0,
                        get,
                        start=BASE - 600 * S,
                        low=1.0,
                        high=400.0 + i,
                        exemplars=[exemplar(t - S, 42.0 + i, 1000 + i)],
                    ),
                    hist_point(
                        t + S, BOUNDS, [i, i, 0, 0, 0], 15.0 * i, post, start=BASE - 600 * S
                    ),
                ),
                histogram(  # the bucket layout changes: counts move onto the first layout
                    "mixed.duration",
                    hist_point(t, BOUNDS, [1, i, 2, 1, 0], 60.0 + i, get)
                    if i < 7
                    else hist_point(t, [20.0, 200.0], [i, 3, 1], 90.0 + i, get),
                    temporality=DELTA,
                ),
                histogram(  # percentiles inside the first bucket, no min/max to clamp to
                    "fast.duration",
                    hist_point(t, BOUNDS, [8, 1, i % 2, 0, 0], 30.0 + i, get),
                    temporality=DELTA,
                ),
                histogram(
                    "db.duration",
                    hist_point(t, [1.0, 5.0, 25.0], [i % 3, 1, i % 2, 0], 4.0 + i, get),
                    temporality=DELTA,
                ),
                exp_histogram(
                    "rpc.duration",
                    exp_point(
                        t,
                        3 if i < 6 else 2,
                        8 if i < 6 else 4,
                        [i, 2 * i, i, 1] if i < 6 else [2 * i, 2 * i, i + 2],
                        3.0 * i,
                        get,
                        start=BASE - 600 * S,
                        zero=1,
                        low=0.0,
                        high=12.0 + i,
                    ),
                ),
                summary("gc.pause", (t, 4 * i + total % 3, 2.5 * i, get)),
            )
        )
        out.append(
            request(
                web,
                gauge("queue.depth", number(t + 2 * S, 7.0 * i - 20, get), unit="1"),
                counter(
                    "http.requests", number(t + 2 * S, float(total), get, start=BASE - 600 * S)
                ),
                histogram(
                    "http.duration",
                    hist_point(
                        t + 2 * S,
                        BOUNDS,
                        [0, i, i, 2 * i, 0],
                        120.0 * i,
                        get,
                        start=BASE - 600 * S,
                        low=12.0,
                        high=450.0,
                    ),
                ),
            )
        )
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Tables]]:
    store = Store(str(tmp_path_factory.mktemp("parity") / "db.sqlite"))
    with fresh_tables() as tables:
        reqs = _requests()
        write_sqlite(store, PROJECT, *reqs)
        write_clickhouse(tables, PROJECT, *reqs)
        yield store, tables
    store.close()


def _same(left: Any, right: Any, path: str = "") -> None:
    """Equal answers; floats equal to the last few bits (sums may add in another order)."""
    if isinstance(left, float) and isinstance(right, (int, float)):
        assert math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-9), (path, left, right)
    elif isinstance(left, dict):
        assert isinstance(right, dict) and left.keys() == right.keys(), (path, left, right)
        for key in left:
            _same(left[key], right[key], f"{path}.{key}")
    elif isinstance(left, list):
        assert isinstance(right, list) and len(left) == len(right), (path, left, right)
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            _same(a, b, f"{path}[{i}]")
    else:
        assert left == right, (path, left, right)


def _both(stores: tuple[Store, Tables], params: dict[str, Any],
          limits: QueryLimits | None = None) -> tuple[Any, Any]:  # fmt: skip
    store, tables = stores
    limits = limits or QueryLimits()
    with store.reader() as conn:
        expected = sqlite_query(conn, PROJECT, params, limits)
    got = query_metrics(engine(), tables, PROJECT, params, limits)
    return expected, got


WINDOW = {"since": str((BASE + 2 * 60 * S) // S), "until": str((BASE + 11 * 60 * S) // S)}
NAMES = ["queue.depth", "http.requests", "bytes.delta", "conns", "http.duration",
         "db.duration", "fast.duration", "mixed.duration", "rpc.duration", "gc.pause"]  # fmt: skip
AGGS = ["avg", "sum", "count", "min", "max", "last", "rate", "p50", "p90", "p99"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("agg", AGGS)
@pytest.mark.parametrize("step", [None, "3m"])
def test_every_aggregation_answers_as_sqlite(
    stores: tuple[Store, Tables], name: str, agg: str, step: str | None
) -> None:
    params = {"name": name, "agg": agg, **WINDOW}
    if step:
        params["step"] = step
    expected, got = _both(stores, params)
    assert expected["series"], "the data must give this query something to answer"
    _same(expected, got)


@pytest.mark.parametrize(
    "extra",
    [
        {"group_by": "route"},
        {"group_by": "service.name"},
        {"group_by": ""},
        {"group_by": "deployment.environment,method"},
        {"service": "web"},
        {"tags": "route:/get"},
        {"tag.host.name": "h1"},
        {"tags": '{"method": "POST"}', "group_by": "host.name"},
        {"tag.route": "/nowhere"},
    ],
)
@pytest.mark.parametrize("name", ["http.duration", "http.requests", "queue.depth"])
def test_filters_and_groups_answer_as_sqlite(
    stores: tuple[Store, Tables], name: str, extra: dict[str, str]
) -> None:
    answered = 0
    for agg in ("p90", "sum", "last"):
        expected, got = _both(stores, {"name": name, "agg": agg, "step": "2m", **WINDOW, **extra})
        _same(expected, got)
        answered += len(expected["series"])
    # a comparison of two empty answers would prove nothing: only the filter that
    # matches no series may come back empty
    assert (answered == 0) == (extra == {"tag.route": "/nowhere"}), answered


def test_exemplars_answer_as_sqlite(stores: tuple[Store, Tables]) -> None:
    params = {"name": "http.duration", "agg": "p99", "exemplars": "true", **WINDOW}
    expected, got = _both(stores, params)
    assert any(s["exemplars"] for s in expected["series"])
    _same(expected, got)


@pytest.mark.parametrize("limits", [QueryLimits(max_points=5), QueryLimits(max_series=1)])
def test_limits_refuse_as_sqlite(stores: tuple[Store, Tables], limits: QueryLimits) -> None:
    store, tables = stores
    params = {"name": "http.duration", "agg": "p99", **WINDOW}
    with store.reader() as conn, pytest.raises(BadRequestError) as expected:
        sqlite_query(conn, PROJECT, params, limits)
    with pytest.raises(BadRequestError) as got:
        query_metrics(engine(), tables, PROJECT, params, limits)
    assert (got.value.status, got.value.message) == (expected.value.status, expected.value.message)
    assert got.value.status == 422


@pytest.mark.parametrize(
    "params",
    [{}, {"service": "web"}, {"prefix": "http."}, {"limit": "3"}, {"project_name": "other"},
     {"since": str(BASE // S + 300), "until": str(BASE // S + 400)}],
)  # fmt: skip
def test_metric_names_answer_as_sqlite(stores: tuple[Store, Tables], params: dict[str, str]
                                       ) -> None:  # fmt: skip
    store, tables = stores
    params = {"since": str(BASE // S - 60), "until": str(BASE // S + 3600), **params}
    with store.reader() as conn:
        expected = sqlite_names(conn, PROJECT, params, 0.0)
    got = query_metric_names(engine(), tables, PROJECT, params, 0.0)
    if "project_name" not in params:
        assert expected["metrics"]
    assert got == expected


def test_points_of_the_report_and_batch_api_answer_as_sqlite(tmp_path: Any) -> None:
    """001 points (counter, gauge, timing, distribution) land in the gauge and sum tables."""
    points = [
        {"name": kind_name, "value": float(v), "type": kind, "timestamp": (BASE + v * S) // S,
         "tags": {"service.name": "pay", "agent_name": "a" + str(v % 2)}}
        for v in range(1, 30)
        for kind, kind_name in (("counter", "tokens"), ("gauge", "temp"),
                                ("timing", "step.ms"), ("distribution", "size"))
    ]  # fmt: skip
    rows, errors, _ = batch_rows({"points": points}, PROJECT)
    single, _ = report_row({"name": "tokens", "value": 7, "type": "counter",
                            "timestamp": BASE // S + 5}, PROJECT)  # fmt: skip
    assert not errors
    rows.append(single)
    store = Store(str(tmp_path / "api.sqlite"))
    try:
        store.submit(WriteBatch(points=rows))
        with fresh_tables() as tables:
            for kind, made in api_metric_rows(rows).items():
                engine().insert(tables.qualified(getattr(tables, kind)), made)
            window = {"since": str(BASE // S), "until": str(BASE // S + 40)}
            for name in ("tokens", "temp", "step.ms", "size"):
                for agg in ("sum", "p50", "p99", "last", "rate", "count"):
                    params = {"name": name, "agg": agg, "step": "10s", **window}
                    with store.reader() as conn:
                        expected = sqlite_query(conn, PROJECT, params, QueryLimits())
                    got = query_metrics(engine(), tables, PROJECT, params, QueryLimits())
                    assert expected["series"]
                    _same(expected, got)
            with store.reader() as conn:
                names = sqlite_names(conn, PROJECT, window, 0.0)
            assert query_metric_names(engine(), tables, PROJECT, window, 0.0) == names
    finally:
        store.close()
