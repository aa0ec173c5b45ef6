"""Explicit histograms read from the per-minute rollup answer exactly as the raw points do,
and as the SQLite store does.

The data is random (fixed seeds): cumulative streams every 7 to 25 s with gaps, resets
(whole and hidden in one bucket), changes of bucket layout (some inside a minute, which
is then not rolled), a delta stream, two projects. After rolling, points arrive late:
one inside a rolled minute, and one alone in a gap whose stream's next point lies in a
later rolled minute (it turns that next point into a reset). Every query is asked three
ways: SQLite, ClickHouse from raw rows, ClickHouse from the rollup where verified.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import pytest
from ch_metrics_support import (
    BASE,
    DELTA,
    S,
    engine,
    fresh_tables,
    hist_point,
    histogram,
    request,
    write_clickhouse,
    write_sqlite,
)
from test_metrics_parity import _same

from telemetryflow.collector.query._metric_ask import MetricAsk
from telemetryflow.collector.query._metrics import QueryLimits
from telemetryflow.collector.query._metrics import query_metrics as sqlite_query
from telemetryflow.collector.store.clickhouse._metrics_read import _verified, query_metrics
from telemetryflow.collector.store.clickhouse._metrics_sql import ChParts
from telemetryflow.collector.store.clickhouse._roller import Roller
from telemetryflow.collector.store.clickhouse._rollup_sql import (
    MAX_RUNS,
    MINUTE_NS,
    ROLLUP_TABLE,
    minute_runs,
    rollup_ddl,
    uncovered,
)
from telemetryflow.collector.store.clickhouse._tables import Tables
from telemetryflow.collector.store.sqlite._store import Store

PROJECT = "acme"
NAME = "lat"
LAYOUTS = ([10.0, 50.0, 100.0], [25.0, 250.0])
START = BASE - 3600 * S
FIRST_M = BASE // MINUTE_NS - 5
LAST_M = BASE // MINUTE_NS + 30
Point = tuple[int, list[float], list[int], float, float | None, float | None]


def _stream(rng: random.Random, n: int, delta: bool = False) -> list[Point]:
    """Stream ``n``'s points from minute ``FIRST_M`` to ``LAST_M``, each at its own
    microsecond (which of two layouts seen at one instant comes first is not defined)."""
    t = FIRST_M * MINUTE_NS + rng.randrange(60) * S + n * 1000
    layout = 0
    counts = [0] * 4
    out: list[Point] = []
    while t < LAST_M * MINUTE_NS:
        roll = rng.random()
        if roll < 0.012:  # another layout: counting starts over
            layout = 1 - layout
            counts = [0] * (len(LAYOUTS[layout]) + 1)
        elif roll < 0.05:  # a reset
            counts = [0] * len(counts)
        elif roll < 0.08 and counts[1] > 0:  # a hidden reset: one bucket falls, the count grows
            counts[1] -= 1
            counts[0] += 5
        grow = [rng.randrange(6) for _ in counts]
        counts = grow if delta else [a + b for a, b in zip(counts, grow, strict=True)]
        total = sum(counts) * rng.choice([1.5, 2.25, 7.0])
        present = rng.random() < 0.8
        low = rng.choice([0.5, 1.0, 2.0]) if present else None
        high = rng.choice([90.0, 120.0, 300.0]) if present else None
        out.append((t, LAYOUTS[layout], list(counts), total, low, high))
        t += rng.randrange(7, 26) * S + (rng.randrange(90, 200) * S if rng.random() < 0.06 else 0)
    return out


def _req(resource: dict[str, Any], route: str, points: list[Point], delta: bool = False) -> Any:
    hists = [
        hist_point(t, b, c, total, {"route": route}, start=START, low=lo, high=hi)
        for t, b, c, total, lo, hi in points
    ]
    return request(resource, histogram(NAME, *hists, temporality=DELTA if delta else 2))


def _late(points: list[Point]) -> tuple[list[Point], list[Point]]:
    """Points held back: one in the middle of a minute holding others; and one placed in
    the longest gap, counting more than the point after it (which becomes a reset)."""
    by_minute: dict[int, list[int]] = {}
    for i, (t, *_) in enumerate(points):
        by_minute.setdefault(t // MINUTE_NS, []).append(i)
    inner = next(ix[1] for m, ix in sorted(by_minute.items()) if len(ix) >= 3 and m > FIRST_M + 8)
    gap = max(range(1, len(points)), key=lambda i: points[i][0] - points[i - 1][0])
    t0, t1 = points[gap - 1][0], points[gap][0]
    assert t1 - t0 > 2 * MINUTE_NS, "the data must hold a gap of more than two minutes"
    nxt = points[gap]
    filler = ((t0 + t1) // 2, nxt[1], [c + 1000 for c in nxt[2]], nxt[3] + 5000.0, None, None)
    kept = [p for i, p in enumerate(points) if i != inner]
    return kept, [points[inner], filler]


def _data(seed: int) -> tuple[list[Any], list[Any], set[int]]:
    """Requests written before rolling, those arriving late, and the minutes in which a
    stream changes layout."""
    rng = random.Random(seed)
    early, late = [], []
    changes: set[int] = set()
    streams = [("acme", "h1", "/a", False), ("acme", "h2", "/a", False),
               ("acme", "h1", "/b", False), ("acme", "h1", "/d", True),
               ("other", "h3", "/a", False)]  # fmt: skip
    for n, (project, host, route, delta) in enumerate(streams):
        points = _stream(rng, n, delta)
        for a, b in itertools.pairwise(points):
            if a[1] != b[1] and a[0] // MINUTE_NS == b[0] // MINUTE_NS:
                changes.add(a[0] // MINUTE_NS)
        resource = {"service.name": "api", "host.name": host}
        if n == 0:
            points, held = _late(points)
            late.append((project, _req(resource, route, held)))
        early.append((project, _req(resource, route, points, delta)))
    return early, late, changes


def _write(store: Store, tables: Tables, batch: list[Any]) -> None:
    for project, req in batch:
        write_sqlite(store, project, req)
        write_clickhouse(tables, project, req)


@pytest.fixture(scope="module")
def stores(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Store, Tables, dict[str, set[int]]]]:
    store = Store(str(tmp_path_factory.mktemp("rollup") / "db.sqlite"))
    early, late, changes = _data(11)
    with fresh_tables() as tables:
        engine().command(rollup_ddl(tables))
        _write(store, tables, early)
        Roller(engine(), tables).roll(FIRST_M, LAST_M + 1)
        unrolled = _unverified(tables)
        _write(store, tables, late)
        minutes = {"changes": changes, "unrolled": unrolled,
                   "late": _unverified(tables) - unrolled}  # fmt: skip
        yield store, tables, minutes
    store.close()


Answer = dict[str, Any]


def _three_answers(
    store: Store, tables: Tables, params: dict[str, Any], project: str = PROJECT
) -> tuple[Answer, Answer, Answer]:
    """The same query from SQLite, from raw ClickHouse rows and through the rollup."""
    limits = QueryLimits()
    with store.reader() as conn:
        expected = sqlite_query(conn, project, params, limits)
    raw = query_metrics(engine(), tables, project, params, limits)
    rolled = query_metrics(engine(), tables, project, params, limits, rollup=True)
    return expected, raw, rolled


def _minutes(tables: Tables, params: dict[str, Any], project: str = PROJECT) -> list[int]:
    parts = ChParts(MetricAsk.read(project, params).flt, tables)
    return list(parts.verified) if _verified(engine(), parts) else []


UNALIGNED = {"since": str(BASE // S - 73), "until": str(BASE // S + 24 * 60 + 31)}
ALIGNED = {"since": str(FIRST_M * 60), "until": str(LAST_M * 60)}


@pytest.mark.parametrize("agg", ["p50", "p99", "count", "sum", "max"])
@pytest.mark.parametrize("step", [None, "1m", "90s", "7m"])
@pytest.mark.parametrize("group_by", [None, "host.name", "route"])
@pytest.mark.parametrize("window", [UNALIGNED, ALIGNED], ids=["unaligned", "aligned"])
def test_rolled_minutes_answer_as_raw_points_and_sqlite(
    stores: tuple[Store, Tables, dict[str, set[int]]],
    agg: str, step: str | None, group_by: str | None, window: dict[str, str],
) -> None:  # fmt: skip
    store, tables, _ = stores
    params = {"name": NAME, "agg": agg, **window}
    if step:
        params["step"] = step
    if group_by:
        params["group_by"] = group_by
    expected, raw, rolled = _three_answers(store, tables, params)
    assert expected["series"], "the data must give this query something to answer"
    _same(expected, raw)
    _same(expected, rolled)


@pytest.mark.parametrize("agg", ["p90", "count", "sum"])
def test_tags_and_projects_filter_rolled_minutes_alike(
    stores: tuple[Store, Tables, dict[str, set[int]]], agg: str
) -> None:
    store, tables, _ = stores
    asks = [
        ({"name": NAME, "agg": agg, "tags": "route:/a", **UNALIGNED}, PROJECT),
        ({"name": NAME, "agg": agg, "tags": {"host.name": "h2"}, "step": "3m", **ALIGNED},
         PROJECT),
        ({"name": NAME, "agg": agg, "group_by": "route", **UNALIGNED}, "other"),
    ]  # fmt: skip
    for params, project in asks:
        expected, raw, rolled = _three_answers(store, tables, params, project)
        assert expected["series"], params
        _same(expected, raw)
        _same(expected, rolled)


def test_only_whole_settled_minutes_are_read_from_the_rollup(
    stores: tuple[Store, Tables, dict[str, set[int]]],
) -> None:
    """Verified: minutes inside the window, inside one step, not those where a layout
    changed inside the minute (not rolled), not those a late point arrived in."""
    _, tables, minutes_of = stores
    minutes = _minutes(tables, {"name": NAME, **UNALIGNED})
    assert len(minutes) > 15
    since, until = BASE // S - 73, BASE // S + 24 * 60 + 31
    assert all(m * 60 >= since and m * 60 + 59 <= until for m in minutes)
    assert minutes_of["changes"] and not minutes_of["changes"] & set(minutes)
    assert minutes_of["unrolled"] >= minutes_of["changes"]
    assert len(minutes_of["late"]) == 2 and not minutes_of["late"] & set(minutes)
    stepped = _minutes(tables, {"name": NAME, "step": "90s", **ALIGNED})
    assert stepped and all((m - FIRST_M) % 3 != 1 for m in stepped)  # 1:00-2:00 spans two
    assert _minutes(tables, {"name": NAME, "step": "30s", **ALIGNED}) == []


def _unverified(tables: Tables) -> set[int]:
    """Minutes of the raw table holding another number of points than the rollup."""
    rows = engine().query(
        "SELECT r.m FROM (SELECT intDiv(toUnixTimestamp(TimeUnix), 60) AS m, count() AS n "
        f"FROM {tables.qualified(tables.histogram)} GROUP BY m) AS r LEFT JOIN "
        "(SELECT intDiv(toUnixTimestamp(Minute), 60) AS m, sum(Points) AS n "
        f"FROM {tables.qualified(ROLLUP_TABLE)} FINAL GROUP BY m) AS u ON r.m = u.m "
        "WHERE r.n != u.n"
    )
    return {int(r[0]) for r in rows}


def test_verified_minutes_become_few_runs_and_the_rest_is_read_raw() -> None:
    """Minutes become ``[first, end)`` runs (at most ``MAX_RUNS``, the longest kept), and
    the raw side reads exactly what no run covers, ``until`` included."""
    assert minute_runs([7, 1, 2, 3, 5, 8]) == [(1, 4), (5, 6), (7, 9)]
    assert minute_runs([]) == []
    scattered = list(range(0, 2 * MAX_RUNS + 20, 2)) + list(range(1000, 1010))
    kept = minute_runs(scattered)
    assert len(kept) == MAX_RUNS and (1000, 1010) in kept and kept == sorted(kept)
    m = MINUTE_NS
    assert uncovered((0, 10 * m - 1), [(2 * m, 4 * m), (4 * m, 5 * m), (7 * m, 8 * m)]) == [
        (0, 2 * m), (5 * m, 7 * m), (8 * m, 10 * m),
    ]  # fmt: skip
    assert uncovered((5, 10 * m), [(0, 20 * m)]) == []
    assert uncovered((5, 99), []) == [(5, 100)]
