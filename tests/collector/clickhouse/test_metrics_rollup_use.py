"""The rollup is read when it verifiably holds a minute, never otherwise; the roller rolls
closed minutes once, survives its errors, runs only in a store that may write.

That a query reads the rollup is shown by a marked segment: one rolled minute of one
stream is replaced (a newer version, same number of points) by one whose inner count
is larger by 1000. A query through the rollup answers 1000 more; the raw path does not;
once a point arrives late in that minute, the rollup no longer holds it all and the
query answers from the raw rows again.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ch_metrics_support import (
    BASE,
    S,
    engine,
    fresh_tables,
    hist_point,
    histogram,
    request,
    write_clickhouse,
)

from telemetryflow.collector.query._metrics import QueryLimits
from telemetryflow.collector.store.clickhouse import _roller as roller_module
from telemetryflow.collector.store.clickhouse._backend import ClickHouseBackend
from telemetryflow.collector.store.clickhouse._ddl import tables_ddl
from telemetryflow.collector.store.clickhouse._metrics_read import query_metrics
from telemetryflow.collector.store.clickhouse._roller import PACE, Roller
from telemetryflow.collector.store.clickhouse._rollup_sql import MINUTE_NS, ROLLUP_TABLE, rollup_ddl
from telemetryflow.collector.store.clickhouse._seam import ChdbConnection
from telemetryflow.collector.store.clickhouse._tables import Tables

PROJECT = "acme"
M0 = BASE // MINUTE_NS + 1
"""The first whole minute after BASE."""
WINDOW = {"since": str(M0 * 60), "until": str((M0 + 10) * 60)}


def _points(host: str, first: int, end: int, offset_s: int = 0) -> Any:
    """A point every 10 s from ``first`` (minute) to ``end`` (exclusive), one request
    more each time."""
    points = []
    for i in range((end - first) * 6):
        t = first * MINUTE_NS + (i * 10 + offset_s) * S
        points.append(hist_point(t, [10.0, 100.0], [i, 2 * i, 1], 4.0 * i, {"r": "/"}, start=1))
    return request({"service.name": "api", "host.name": host}, histogram("lat", *points))


def _count(tables: Tables, rollup: bool, **extra: Any) -> float:
    params = {"name": "lat", "agg": "count", **WINDOW, **extra}
    answer = query_metrics(engine(), tables, PROJECT, params, QueryLimits(), rollup=rollup)
    return float(sum(s["value"] for s in answer["series"]))


@pytest.fixture
def tables() -> Iterator[Tables]:
    with fresh_tables() as made:
        engine().command(rollup_ddl(made))
        write_clickhouse(
            made, PROJECT, _points("h1", M0 - 2, M0 + 12), _points("h2", M0, M0 + 12, 3)
        )
        yield made


def _mark(tables: Tables, minute: int) -> None:
    """Replace host h1's segment of ``minute`` by one counting 1000 more inside."""
    rollup = tables.qualified(ROLLUP_TABLE)
    engine().command(
        f"INSERT INTO {rollup} SELECT * REPLACE (InnerCount + 1000 AS InnerCount, "
        "now64(3) + 1 AS Rolled) FROM " + rollup + " FINAL WHERE "
        "intDiv(toUnixTimestamp(Minute), 60) = {m:Int64} "
        "AND ResourceAttributes['host.name'] = 'h1'",
        {"m": minute},
    )


def test_a_query_reads_the_rollup_where_it_holds_the_minute(tables: Tables) -> None:
    raw = _count(tables, rollup=False)
    assert _count(tables, rollup=True) == raw  # nothing rolled yet: the raw rows
    Roller(engine(), tables).roll(M0 - 5, M0 + 20)
    assert _count(tables, rollup=True) == raw
    _mark(tables, M0 + 4)
    assert _count(tables, rollup=False) == raw
    assert _count(tables, rollup=True) == raw + 1000  # the marked segment was read
    assert _count(tables, rollup=True, step="2m") == raw + 1000
    # a step that splits minute M0 + 4 between two steps reads it raw
    assert _count(tables, rollup=True, step="90s") == raw
    # a point arriving late in the marked minute: the minute is read raw again
    late = hist_point((M0 + 4) * MINUTE_NS + 5 * S, [10.0, 100.0], [0, 0, 0], 0.0, {"r": "/"},
                      start=1)  # fmt: skip
    write_clickhouse(tables, PROJECT, request({"service.name": "api", "host.name": "h1"},
                                              histogram("lat", late)))  # fmt: skip
    answer = _count(tables, rollup=True)
    assert answer == _count(tables, rollup=False)
    assert answer != raw + 1000


def test_a_minute_rolled_twice_counts_once(tables: Tables) -> None:
    """Two collectors rolling the same minutes: the rollup's copies collapse into the
    newest (``FINAL``), and the minutes are still read from it."""
    raw = _count(tables, rollup=False)
    Roller(engine(), tables).roll(M0 - 5, M0 + 20)
    Roller(engine(), tables).roll(M0 + 2, M0 + 8)
    [[rows, distinct]] = engine().query(
        f"SELECT count(), uniqExact(Minute, Sid) FROM {tables.qualified(ROLLUP_TABLE)}"
    )
    assert rows > distinct  # both copies are there, not merged yet
    assert _count(tables, rollup=True) == raw
    assert _count(tables, rollup=True, step="3m", group_by="host.name") == _count(
        tables, rollup=False, step="3m", group_by="host.name"
    )
    _mark(tables, M0 + 4)  # a third copy, the newest: the one read
    assert _count(tables, rollup=True) == raw + 1000


def test_an_empty_rollup_answers_from_raw_rows(tables: Tables) -> None:
    for extra in ({}, {"step": "1m"}, {"group_by": "host.name"}):
        assert _count(tables, rollup=True, **extra) == _count(tables, rollup=False, **extra)


def test_the_roller_rolls_closed_minutes_once_from_a_bounded_look_back(tables: Tables) -> None:
    now_s = (M0 + 12) * 60 + 30
    roller = Roller(engine(), tables, retention_s=6 * 60)
    # from 6 minutes back (the retention) to 2 minutes back (the settle delay)
    assert roller.run_pass(now_s) == 4
    assert roller.watermark == M0 + 10
    rows = engine().query(
        "SELECT intDiv(toUnixTimestamp(min(Minute)), 60), intDiv(toUnixTimestamp(max(Minute)), "
        f"60), count() FROM {tables.qualified(ROLLUP_TABLE)}"
    )
    assert rows == [[M0 + 6, M0 + 9, 8]]  # two streams, four minutes
    assert roller.run_pass(now_s) == 0  # nothing new
    assert roller.run_pass(now_s + 60) == 1
    again = Roller(engine(), tables)  # another start: from the newest minute rolled
    assert again.run_pass(now_s + 60) == 0


def test_rolling_is_paced_and_starts_after_the_store_opens(
    tables: Tables, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between two statements the roller leaves the engine free for PACE times as long as
    the statement took (chDB runs one statement at a time); a started roller knows its
    watermark at once, waits before its first roll, and that wait ends when it is
    closed."""
    monkeypatch.setattr(roller_module, "CHUNK_MINUTES", 2)
    roller = Roller(engine(), tables, retention_s=10 * 60)
    spans: list[tuple[float, float]] = []
    roll = roller.roll

    def timed(first: int, end: int) -> None:
        began = time.monotonic()
        roll(first, end)
        spans.append((began, time.monotonic()))

    roller.roll = timed  # type: ignore[method-assign]
    assert roller.run_pass((M0 + 12) * 60 + 30) == 8  # four statements of two minutes
    assert len(spans) == 4
    for (began, ended), (following, _) in itertools.pairwise(spans):
        assert following - ended >= PACE * (ended - began)

    waiting = Roller(engine(), tables, first_delay_s=3600)
    waiting.start()
    deadline = time.monotonic() + 30
    while waiting.watermark is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert waiting.watermark is not None  # where it will start is known at once
    closing = time.monotonic()
    waiting.close(timeout=30)
    assert waiting._thread is not None and not waiting._thread.is_alive()
    assert time.monotonic() - closing < 30  # the hour's wait ended by close, not by time


def test_a_failing_roll_is_logged_and_tried_again(
    tables: Tables, caplog: pytest.LogCaptureFixture
) -> None:
    engine().command(f"DROP TABLE {tables.qualified(ROLLUP_TABLE)}")
    roller = Roller(engine(), tables, retention_s=3600)
    now_s = (M0 + 12) * 60
    with caplog.at_level(logging.WARNING, logger="telemetryflow.collector"):
        assert roller.run_pass(now_s) == 0
    assert "rolling histograms up failed" in caplog.text
    engine().command(rollup_ddl(tables))
    assert roller.run_pass(now_s) > 0


def test_a_store_that_may_write_rolls_and_a_read_only_one_does_not(tables: Tables) -> None:
    for statement in tables_ddl(tables, database_exists=True):
        engine().command(statement)
    backend = ClickHouseBackend(ChdbConnection(engine().path), tables)
    try:
        assert backend.rollup and not backend.read_only
        assert backend.roller is not None
        deadline = time.monotonic() + 30
        while backend.roller.watermark is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.roller.watermark is not None  # its first pass ran
        # (the data is older than its look-back: rolled here by hand, then marked)
        backend.roller.roll(M0 - 5, M0 + 20)
        _mark(tables, M0 + 4)
        params = {"name": "lat", "agg": "count", **WINDOW}
        answer = backend.query("metrics", PROJECT, params, QueryLimits())
        assert sum(s["value"] for s in answer["series"]) == _count(tables, rollup=False) + 1000
    finally:
        backend.close()
    assert backend.roller._thread is not None and not backend.roller._thread.is_alive()

    readonly = ChdbConnection(engine().path)
    readonly.command("SET readonly = 1")
    engine().command(f"DROP TABLE {tables.qualified(ROLLUP_TABLE)}")
    engine().command(f"DROP TABLE {tables.qualified('telemetryflow_events')}")
    backend = ClickHouseBackend(readonly, tables)
    try:
        assert backend.read_only and backend.roller is None and not backend.rollup
        params = {"name": "lat", "agg": "count", **WINDOW}
        answer = backend.query("metrics", PROJECT, params, QueryLimits())
        assert sum(s["value"] for s in answer["series"]) == _count(tables, rollup=False)
    finally:
        backend.close()
