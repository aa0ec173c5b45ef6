"""Cumulative histograms that reset and change layout answer as the SQLite store answers.

Two hosts export the same series (same service, same attributes) a second apart, so
their points interleave in the table's order; one stream has a bucket that goes down
while its count goes up (a reset nothing else shows), then a count that goes down, then
a change of bucket layout and back inside one step (its exponential histogram goes
down a scale, and later one of its buckets falls). Each stream's increases must be
worked out against its own previous point, bucket by bucket, as SQLite does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ch_metrics_support import (
    BASE,
    S,
    exp_histogram,
    exp_point,
    fresh_tables,
    hist_point,
    histogram,
    request,
    write_clickhouse,
    write_sqlite,
)
from test_metrics_parity import _both, _same

from telemetryflow.collector.store.clickhouse._tables import Tables
from telemetryflow.collector.store.sqlite._store import Store

PROJECT = "acme"
FIRST = [10.0, 50.0, 100.0]
OTHER = [25.0, 250.0]
START = BASE - 600 * S
ROUTE = {"route": "/get"}


def _resetting(i: int) -> tuple[list[float], list[int]]:
    """Host h1's point ``i``: growth with a hidden reset at 4 (the third bucket drops from
    3 to 2 while the count grows from 22 to 51), counts going down at 5 and 7, another
    layout at 9 and the first one back at 10."""
    if i == 9:
        return OTHER, [30, 40, 9]
    if i >= 7:  # counting again from a reset
        return FIRST, [i - 6, 2 * (i - 6), i - 6, 1]
    if i == 4:
        return FIRST, [9, 20, 2, 20]
    return FIRST, [i + 1, 2 * i, i, 3 * i]


def _requests() -> list[Any]:
    out = []
    for i in range(12):  # one export a minute, the first before the window
        t = BASE + i * 60 * S
        bounds, counts = _resetting(i)
        h1 = hist_point(t, bounds, counts, 7.0 * sum(counts), ROUTE, start=START, low=1.0,
                        high=300.0 + i)  # fmt: skip
        steady = [2 * i, i, i + 1, 0]
        h2 = hist_point(t + S, FIRST, steady, 5.0 * sum(steady), ROUTE, start=START, low=2.0,
                        high=90.0)  # fmt: skip
        # exponential: h1 goes down a scale at 5, one bucket falls at 8; h2 grows steadily
        scale, buckets = (3, [i + 1, 2 * i, i]) if i < 5 else (2, [3 * i, i, 1])
        if i == 8:
            buckets = [3 * i, 2, 1]
        e1 = exp_point(t, scale, 4, buckets, 2.0 * sum(buckets), ROUTE, start=START, zero=i,
                       low=0.0, high=20.0)  # fmt: skip
        e2 = exp_point(t + S, 3, 6, [i, i, 2], 3.0 * i, ROUTE, start=START, zero=1, low=0.0,
                       high=30.0)  # fmt: skip
        for host, point, exp in (("h1", h1, e1), ("h2", h2, e2)):
            resource = {"service.name": "api", "host.name": host}
            out.append(request(resource, histogram("lat", point), exp_histogram("elat", exp)))
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Tables]]:
    store = Store(str(tmp_path_factory.mktemp("resets") / "db.sqlite"))
    with fresh_tables() as tables:
        reqs = _requests()
        write_sqlite(store, PROJECT, *reqs)
        write_clickhouse(tables, PROJECT, *reqs)
        yield store, tables
    store.close()


WINDOW = {"since": str((BASE + 30 * S) // S), "until": str((BASE + 11 * 60 * S + 30 * S) // S)}


@pytest.mark.parametrize("agg", ["p50", "p90", "p99", "sum", "count", "avg", "min", "max"])
@pytest.mark.parametrize("step", [None, "1m", "3m"])
@pytest.mark.parametrize("group_by", [None, "host.name", "route"])
@pytest.mark.parametrize("name", ["lat", "elat"])
def test_resets_and_layouts_answer_as_sqlite(
    stores: tuple[Store, Tables], name: str, agg: str, step: str | None, group_by: str | None
) -> None:
    params = {"name": name, "agg": agg, **WINDOW}
    if step:
        params["step"] = step
    if group_by:
        params["group_by"] = group_by
    expected, got = _both(stores, params)
    assert expected["series"], "the data must give this query something to answer"
    _same(expected, got)


def test_a_hidden_bucket_reset_counts_the_point_whole(stores: tuple[Store, Tables]) -> None:
    """Host h1 from minute 3 to 4: the third bucket fell from 3 to 2, so minute 4 counts
    all 51 of its requests, not the 51 - 22 = 29 a difference of counts would give."""
    params = {"name": "lat", "agg": "count", "group_by": "host.name",
              "since": str((BASE + 3 * 60 * S + 30 * S) // S),
              "until": str((BASE + 4 * 60 * S + 30 * S) // S)}  # fmt: skip
    expected, got = _both(stores, params)
    _same(expected, got)
    counts = {s["tags"]["host.name"]: s["value"] for s in got["series"]}
    assert counts["h1"] == 51
