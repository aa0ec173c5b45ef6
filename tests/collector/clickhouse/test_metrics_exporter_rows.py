"""Rows shaped as the OpenTelemetry Collector's ``clickhouse`` exporter writes them answer
every metric query with the values worked out by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ch_metrics_support import BASE, S, engine, fresh_tables, kv, request, write_sqlite
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.query._metric_names import query_metric_names as sqlite_names
from telemetryflow.collector.query._metrics import QueryLimits
from telemetryflow.collector.query._metrics import query_metrics as sqlite_query
from telemetryflow.collector.store.clickhouse._metrics_read import (
    query_metric_names,
    query_metrics,
)
from telemetryflow.collector.store.clickhouse._metrics_write import ch_time
from telemetryflow.collector.store.clickhouse._tables import Tables
from telemetryflow.collector.store.sqlite._store import Store

RESOURCE = {"service.name": "svc", "host.name": "h1"}
TRACE = "5b8efff798038103d269b633813fc60c"
WINDOW = {"since": str(BASE // S), "until": str(BASE // S + 59)}


def _row(name: str, t: int, attrs: dict[str, str], **columns: Any) -> dict[str, Any]:
    return {"ResourceAttributes": RESOURCE, "ServiceName": "svc", "MetricName": name,
            "Attributes": attrs, "TimeUnix": ch_time(t), **columns}  # fmt: skip


def _fill(tables: Tables, seconds: bool = False) -> None:
    """What the exporter writes: no project attribute (the default project's rows)."""
    ch = engine()
    at = (lambda t: t // S) if seconds else ch_time  # DateTime columns take whole seconds
    gauge = [_row("cpu", BASE + i * 10 * S, {"core": "0"}, Value=float(i + 1)) for i in range(6)]
    gauge += [_row("cpu", BASE + i * 10 * S, {"core": "1"}, Value=100.0 + i) for i in range(6)]
    gauge[5]["Exemplars.TimeUnix"] = [ch_time(BASE + 49 * S), ch_time(BASE + 48 * S)]
    gauge[5]["Exemplars.Value"] = [6.0, 5.5]
    gauge[5]["Exemplars.TraceId"] = [TRACE, ""]  # one without a trace links nowhere
    gauge[5]["Exemplars.SpanId"] = ["051581bf3cb55c13", ""]
    gauge[5]["Exemplars.FilteredAttributes"] = [{}, {}]
    ch.insert(tables.qualified(tables.gauge), gauge)
    # cumulative monotonic sum: a point before the window, then a reset inside it
    sums = [
        {**_row("reqs", 0, {"route": "/a"}, Value=value, AggregationTemporality=2,
                IsMonotonic=True), "TimeUnix": at(BASE + dt * S),
         "StartTimeUnix": at(BASE - 100 * S)}
        for dt, value in ((-10, 100.0), (0, 110.0), (10, 130.0), (20, 5.0), (30, 25.0))
    ]  # fmt: skip
    ch.insert(tables.qualified(tables.sum), sums)
    bounds = [10.0, 100.0, 1000.0]
    hist = [
        _row("lat", BASE + dt * S, {"route": "/a"}, StartTimeUnix=ch_time(BASE - 100 * S),
             Count=sum(counts), Sum=total, BucketCounts=counts, ExplicitBounds=bounds,
             Min=0.5, Max=800.0, AggregationTemporality=2)
        for dt, counts, total in (
            (-10, [1, 1, 0, 0], 60.0), (10, [5, 3, 1, 0], 700.0), (20, [5, 13, 1, 1], 2600.0))
    ]  # fmt: skip
    ch.insert(tables.qualified(tables.histogram), hist)
    exp = [  # delta, base 2: two values in (1, 2] and two in (2, 4] each; Min/Max not recorded
        _row("elat", BASE + dt * S, {"route": "/a"}, Count=4, Sum=10.0, Scale=0,
             PositiveOffset=0, PositiveBucketCounts=[2, 2], AggregationTemporality=1)
        for dt in (5, 15)
    ]  # fmt: skip
    ch.insert(tables.qualified(tables.exponential_histogram), exp)


@pytest.fixture
def tables() -> Iterator[Tables]:
    with fresh_tables() as tables:
        _fill(tables)
        yield tables


def _query(tables: Tables, project: str = "default", **params: str) -> dict[str, Any]:
    return query_metrics(engine(), tables, project, {**WINDOW, **params}, QueryLimits())


def _values(answer: dict[str, Any]) -> dict[str, Any]:
    return {s["tags"].get("core", s["tags"].get("route")): s["value"] for s in answer["series"]}


@pytest.mark.parametrize(
    ("agg", "core0", "core1"),
    [("avg", 3.5, 102.5), ("sum", 21.0, 615.0), ("count", 6.0, 6.0), ("min", 1.0, 100.0),
     ("max", 6.0, 105.0), ("last", 6.0, 105.0), ("p50", 3.5, 102.5), ("p90", 5.5, 104.5),
     ("rate", 21 / 59, 615 / 59)],
)  # fmt: skip
def test_gauge_aggregations(tables: Tables, agg: str, core0: float, core1: float) -> None:
    answer = _query(tables, name="cpu", agg=agg)
    assert _values(answer) == {"0": pytest.approx(core0), "1": pytest.approx(core1)}
    series = answer["series"][0]
    assert series["tags"] == {"core": "0", "service.name": "svc"}
    assert series["resource"] == {"host.name": "h1"}


def test_gauge_steps(tables: Tables) -> None:
    answer = _query(tables, name="cpu", agg="avg", step="30s", tags="core:0")
    (series,) = answer["series"]
    assert [p["value"] for p in series["points"]] == [2.0, 5.0]
    assert [p["time_unix_nano"] for p in series["points"]] == [BASE, BASE + 30 * S]


def test_tag_filters_and_group_by_read_point_then_resource_attributes(tables: Tables) -> None:
    assert _values(_query(tables, name="cpu", agg="max", **{"tag.core": "1"})) == {"1": 105.0}
    grouped = _query(tables, name="cpu", agg="count", group_by="host.name")
    assert [(s["tags"], s["value"]) for s in grouped["series"]] == [({"host.name": "h1"}, 12.0)]
    assert _query(tables, name="cpu", agg="max", **{"tag.host.name": "h2"})["series"] == []


def test_rows_without_a_project_belong_to_the_default_project(tables: Tables) -> None:
    assert _query(tables, name="cpu")["series"]
    assert _query(tables, project="acme", name="cpu")["series"] == []


@pytest.mark.parametrize("seconds", [False, True])
def test_cumulative_sum_becomes_increases_from_the_point_before_the_window(seconds: bool) -> None:
    with fresh_tables("DateTime" if seconds else "DateTime64(9)") as tables:
        _fill(tables, seconds=seconds)
        (column_type,) = engine().query(
            "SELECT type FROM system.columns WHERE database = {db:String} "
            "AND table = {table:String} AND name = 'TimeUnix'",
            {"db": tables.database, "table": tables.sum},
        )[0]
        assert column_type == ("DateTime" if seconds else "DateTime64(9)")
        # 110-100, 130-110, a reset to 5 counts 5, 25-5
        assert _values(_query(tables, name="reqs", agg="sum")) == {"/a": 55.0}
        assert _values(_query(tables, name="reqs", agg="rate")) == {"/a": pytest.approx(55 / 59)}
        assert _values(_query(tables, name="reqs", agg="last")) == {"/a": 25.0}
        stepped = _query(tables, name="reqs", agg="sum", step="20s")["series"][0]
        assert [p["value"] for p in stepped["points"]] == [30.0, 25.0]


@pytest.mark.parametrize(
    ("agg", "expected"),
    [("count", 18.0), ("sum", 2540.0), ("avg", 2540 / 18), ("rate", 18 / 59),
     ("p50", 47.5),  # rank 9 of [4, 12, 1, 1]: 5 of 12 into (10, 100]
     ("p99", 800.0),  # the +Inf bucket answers 1000, clamped to the recorded max
     ("min", 0.5), ("max", 800.0)],
)  # fmt: skip
def test_cumulative_histogram_percentiles_from_bucket_increases(
    tables: Tables, agg: str, expected: float
) -> None:
    assert _values(_query(tables, name="lat", agg=agg)) == {"/a": pytest.approx(expected)}


@pytest.mark.parametrize(("agg", "expected"), [("p25", 1.5), ("p50", 2.0), ("p75", 3.0),
                                               ("count", 8.0), ("avg", 2.5)])  # fmt: skip
def test_exponential_histogram_percentiles(tables: Tables, agg: str, expected: float) -> None:
    assert _values(_query(tables, name="elat", agg=agg)) == {"/a": pytest.approx(expected)}


def test_exemplars_with_a_trace_newest_per_series(tables: Tables) -> None:
    answer = _query(tables, name="cpu", agg="max", exemplars="true", tags="core:0")
    (series,) = answer["series"]
    assert series["exemplars"] == [{
        "time": "2023-11-14T22:14:09.000000Z", "time_unix_nano": BASE + 49 * S, "value": 6.0,
        "trace_id": TRACE, "span_id": "051581bf3cb55c13",
    }]  # fmt: skip


def test_point_limit_refuses_before_aggregating(tables: Tables) -> None:
    with pytest.raises(BadRequestError) as caught:
        query_metrics(engine(), tables, "default", {**WINDOW, "name": "cpu"},
                      QueryLimits(max_points=11))  # fmt: skip
    assert caught.value.status == 422 and "more than 11 points" in caught.value.message
    answer = query_metrics(engine(), tables, "default", {**WINDOW, "name": "cpu"},
                           QueryLimits(max_points=12))  # fmt: skip
    assert len(answer["series"]) == 2


def test_point_limit_counts_the_projects_own_points_only(tables: Tables) -> None:
    """Another project's points of the same metric pass the coarse count over the limit:
    the query is refused only when its own points do."""
    other = {**RESOURCE, "telemetryflow.project": "acme"}
    rows = [{**_row("cpu", BASE + i * S, {"core": "9"}, Value=1.0), "ResourceAttributes": other}
            for i in range(30)]  # fmt: skip
    engine().insert(tables.qualified(tables.gauge), rows)
    answer = query_metrics(engine(), tables, "default", {**WINDOW, "name": "cpu"},
                           QueryLimits(max_points=12))  # fmt: skip
    assert sorted(s["tags"]["core"] for s in answer["series"]) == ["0", "1"]
    with pytest.raises(BadRequestError) as caught:
        query_metrics(engine(), tables, "default", {**WINDOW, "name": "cpu"},
                      QueryLimits(max_points=11))  # fmt: skip
    assert "more than 11 points" in caught.value.message
    acme = query_metrics(engine(), tables, "acme", {**WINDOW, "name": "cpu"},
                         QueryLimits(max_points=30))  # fmt: skip
    assert [s["tags"]["core"] for s in acme["series"]] == ["9"]


def test_series_limit(tables: Tables) -> None:
    with pytest.raises(BadRequestError) as caught:
        query_metrics(engine(), tables, "default", {**WINDOW, "name": "cpu"},
                      QueryLimits(max_series=1))  # fmt: skip
    assert caught.value.status == 422


def test_metric_names(tables: Tables) -> None:
    answer = query_metric_names(engine(), tables, "default", WINDOW, 0.0)
    got = {m["name"]: (m["type"], m["series"], m["points"]) for m in answer["metrics"]}
    assert got == {"cpu": ("gauge", 2, 12), "elat": ("histogram", 1, 2),
                   "lat": ("histogram", 1, 2), "reqs": ("counter", 1, 4)}  # fmt: skip
    assert [m["name"] for m in answer["metrics"]] == ["cpu", "elat", "lat", "reqs"]
    assert query_metric_names(engine(), tables, "acme", WINDOW, 0.0) == {"metrics": [], "count": 0}


# cumulative summary points: (seconds from BASE, count, sum); one before the window, a reset
_SUMMARY = {"/a": [(-10, 10, 50.0), (0, 12, 61.0), (20, 20, 100.0), (30, 4, 9.0),
                   (50, 9, 30.0)],
            "/b": [(5, 3, 3.0), (45, 7, 14.0)]}  # fmt: skip


def _summary_otlp() -> Any:
    data = pb.Summary()
    for route, points in _SUMMARY.items():
        for dt, count, total in points:
            point = data.data_points.add(time_unix_nano=BASE + dt * S, count=count, sum=total,
                                         start_time_unix_nano=BASE - 100 * S)  # fmt: skip
            point.attributes.extend(kv({"route": route}))
            point.quantile_values.add(quantile=0.5, value=total / count)
            point.quantile_values.add(quantile=0.99, value=2 * total / count)
    return request(RESOURCE, pb.Metric(name="pause", summary=data))


@pytest.mark.parametrize("agg", ["avg", "sum", "count", "min", "max", "last", "rate", "p50"])
@pytest.mark.parametrize("step", [None, "20s"])
def test_summary_rows_answer_as_sqlite(tmp_path: Path, agg: str, step: str | None) -> None:
    """Summaries the exporter wrote (``ValueAtQuantiles`` nested) are read as SQLite reads
    the same OTLP points."""
    rows = [
        _row("pause", BASE + dt * S, {"route": route}, StartTimeUnix=ch_time(BASE - 100 * S),
             Count=count, Sum=total, Flags=0,
             **{"ValueAtQuantiles.Quantile": [0.5, 0.99],
                "ValueAtQuantiles.Value": [total / count, 2 * total / count]})
        for route, points in _SUMMARY.items() for dt, count, total in points
    ]  # fmt: skip
    store = Store(str(tmp_path / "db.sqlite"))
    write_sqlite(store, "default", _summary_otlp())
    params = {**WINDOW, "name": "pause", "agg": agg, **({"step": step} if step else {})}
    with fresh_tables() as tables:
        engine().insert(tables.qualified(tables.summary), rows)
        got = query_metrics(engine(), tables, "default", params, QueryLimits())
        names = query_metric_names(engine(), tables, "default", WINDOW, 0.0)
    with store.reader() as conn:
        expected = sqlite_query(conn, "default", params, QueryLimits())
        expected_names = sqlite_names(conn, "default", WINDOW, 0.0)
    store.close()
    assert len(expected["series"]) == 2  # the data gives the query something to answer
    assert _rounded(got) == _rounded(expected)
    assert names == expected_names


def _rounded(node: Any) -> Any:
    """Floats to 12 significant digits (sums may add in another order)."""
    if isinstance(node, float):
        return float(f"{node:.12g}")
    if isinstance(node, dict):
        return {k: _rounded(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_rounded(v) for v in node]
    return node
