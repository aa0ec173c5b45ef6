"""Metrics written into metric tables whose time columns are not ``DateTime64(9)``.

Exporter versions differ: the sum table of late versions (and copies of it for the
other point types) has ``DateTime`` for ``StartTimeUnix``, ``TimeUnix`` and
``Exemplars.TimeUnix``. A collector pointed at such tables must store what its receivers
accept there, times cut to what the column holds, and answer queries from them. The
collector here is real (loopback ports), fed over OTLP/HTTP and the 001 batch API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from ch_metrics_support import (
    DELTA,
    S,
    counter,
    exemplar,
    exp_histogram,
    exp_point,
    gauge,
    hist_point,
    histogram,
    number,
    request,
    summary,
)
from collector_helpers import KEY_A, headers_for

from telemetryflow.collector import Collector
from telemetryflow.collector.store.clickhouse._metrics_ddl import METRIC_KINDS, metric_tables_ddl
from telemetryflow.collector.store.clickhouse._metrics_write import (
    ch_time,
    time_encoder,
    whole_seconds,
)
from telemetryflow.collector.store.clickhouse._seam import ChdbConnection
from telemetryflow.collector.store.clickhouse._tables import Tables

PB = {"Content-Type": "application/x-protobuf"}
F = 987_654_321
"""A fraction of a second no time column but ``DateTime64(9)`` keeps whole."""
DIGITS = {"DateTime": 0, "DateTime64(3)": 3, "DateTime64(6)": 6}
TIME_COLUMNS = ("StartTimeUnix", "TimeUnix", "Exemplars.TimeUnix")


@pytest.mark.parametrize(
    ("column_type", "seconds"),
    [("DateTime", True), ("DateTime('UTC')", True), ("Array(DateTime)", True),
     ("DateTime64(9)", False), ("DateTime64(3, 'UTC')", False),
     ("Array(DateTime64(9))", False), ("", False)],
)  # fmt: skip
def test_each_time_column_type_gets_its_encoder(column_type: str, seconds: bool) -> None:
    assert time_encoder(column_type) is (whole_seconds if seconds else ch_time)


def _exporter_tables(ch: ChdbConnection, database: str, time_type: str) -> Tables:
    """The five metric tables with ``time_type`` time columns, as such a version makes them
    (with ``DateTime`` it orders by hour and time, as the exporter's sum template does)."""
    tables = Tables(database=database)
    ch.command(f"CREATE DATABASE `{database}`")
    for ddl in metric_tables_ddl(tables):
        ddl = ddl.replace("DateTime64(9)", time_type)
        if time_type == "DateTime":
            ddl = ddl.replace(
                "Attributes, toUnixTimestamp64Nano(TimeUnix))",
                "toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix)",
            )
        ch.command(ddl)
    names = [getattr(tables, kind) for kind in METRIC_KINDS]
    found = ch.query(
        "SELECT DISTINCT type FROM system.columns WHERE database = {db:String} "
        "AND has({names:Array(String)}, table) AND has({cols:Array(String)}, name)",
        {"db": database, "names": names, "cols": list(TIME_COLUMNS)},
    )
    assert sorted(row[0] for row in found) == sorted([time_type, f"Array({time_type})"])
    return tables


def _cut(ns: int, digits: int) -> int:
    """``ns`` as a column with ``digits`` decimals of a second holds it."""
    return ns - ns % 10 ** (9 - digits)


def _stored(ch: ChdbConnection, tables: Tables) -> dict[str, list[tuple[int, int, list[int]]]]:
    """Per metric: the stored start, time and exemplar times of its points (nanoseconds)."""
    out: dict[str, list[tuple[int, int, list[int]]]] = {}
    for kind in METRIC_KINDS:
        exemplars = (
            "arrayMap(x -> toUnixTimestamp64Nano(toDateTime64(x, 9)), Exemplars.TimeUnix)"
            if kind != "summary"
            else "[]"
        )
        for name, start, when, ex in ch.query(
            "SELECT MetricName, toUnixTimestamp64Nano(toDateTime64(StartTimeUnix, 9)), "
            f"toUnixTimestamp64Nano(toDateTime64(TimeUnix, 9)), {exemplars} "
            f"FROM {tables.qualified(getattr(tables, kind))}"
        ):
            out.setdefault(name, []).append((int(start), int(when), [int(e) for e in ex]))
    return {name: sorted(points) for name, points in out.items()}


@pytest.mark.parametrize("time_type", list(DIGITS))
def test_metrics_are_written_into_tables_with_coarser_time_columns(
    make_collector: Callable[..., Collector],
    ch: ChdbConnection,
    chdb_path: Path,
    database: str,
    time_type: str,
) -> None:
    digits = DIGITS[time_type]
    tables = _exporter_tables(ch, database, time_type)
    collector = make_collector(store=f"chdb://{chdb_path}?database={database}")
    t = (time.time_ns() // S - 300) * S  # a whole second, five minutes ago
    body = request(
        {"service.name": "svc"},
        gauge("temp", number(t + 10 * S + F, 20.0,
                             exemplars=[exemplar(t + 10 * S + 123_456_789, 20.0, 7)]),
              number(t + 20 * S + F, 22.0)),
        counter("hits", number(t + 10 * S + F, 5.0, start=t + F),
                number(t + 20 * S + F, 7.0, start=t + F), temporality=DELTA),
        histogram("rt", hist_point(t + 30 * S + F, [1.0, 2.0], [1, 2, 0], 4.0, start=t + F,
                                   exemplars=[exemplar(t + 30 * S + F, 1.5, 9)]),
                  temporality=DELTA),
        exp_histogram("elat", exp_point(t + 40 * S + F, 0, 0, [2, 2], 10.0, start=t + F),
                      temporality=DELTA),
        summary("sm", (t + 45 * S + F, 4, 8.0, {})),
    ).SerializeToString()  # fmt: skip
    api_at = t + 50 * S  # whole seconds: the API reads times through a float
    points = [
        {"name": "api_g", "value": 3, "type": "gauge", "timestamp": api_at // S},
        {"name": "api_c", "value": 2, "type": "counter", "timestamp": api_at // S},
    ]
    window = {"since": str(t // S), "until": str(t // S + 120)}
    with httpx.Client(
        base_url=collector.http_endpoint, headers=headers_for(KEY_A), timeout=30
    ) as http:
        sent = http.post("/v1/metrics", content=body, headers=PB)
        assert sent.status_code == 200, sent.text
        batch = http.post("/v1/metrics/batch", json={"points": points})
        assert batch.status_code == 200 and batch.json()["accepted"] == 2, batch.text

        def ask(**params: str) -> dict[str, Any]:
            answer = http.get("/v1/metrics/query", params={**window, **params})
            assert answer.status_code == 200, answer.text
            (series,) = answer.json()["series"]
            return dict(series)

        temp = ask(name="temp", agg="avg", exemplars="true")
        assert temp["value"] == 21.0
        assert [e["time_unix_nano"] for e in temp["exemplars"]] == [
            _cut(t + 10 * S + 123_456_789, digits)
        ]
        assert ask(name="temp", agg="last")["value"] == 22.0
        assert ask(name="hits", agg="sum")["value"] == 12.0
        rt = ask(name="rt", agg="count", exemplars="true")
        assert rt["value"] == 3.0
        assert [e["time_unix_nano"] for e in rt["exemplars"]] == [_cut(t + 30 * S + F, digits)]
        assert ask(name="elat", agg="count")["value"] == 4.0
        assert ask(name="sm", agg="count")["value"] == 4.0
        assert ask(name="api_g", agg="last")["value"] == 3.0
        assert ask(name="api_c", agg="sum")["value"] == 2.0
    start, cut = _cut(t + F, digits), (lambda ns: _cut(ns, digits))
    assert _stored(ch, tables) == {
        "temp": [(0, cut(t + 10 * S + F), [cut(t + 10 * S + 123_456_789)]),
                 (0, cut(t + 20 * S + F), [])],
        "hits": [(start, cut(t + 10 * S + F), []), (start, cut(t + 20 * S + F), [])],
        "rt": [(start, cut(t + 30 * S + F), [cut(t + 30 * S + F)])],
        "elat": [(start, cut(t + 40 * S + F), [])],
        "sm": [(0, cut(t + 45 * S + F), [])],
        "api_g": [(0, api_at, [])],
        "api_c": [(0, api_at, [])],
    }  # fmt: skip
