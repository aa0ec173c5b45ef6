"""A trace by id, with the exporter's trace-id table narrowing the search in time and
without it: the same spans either way, however the trace straddles seconds and days."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exporter_tables import create, insert_span

from telemetryflow.collector.store.clickhouse._backend import ClickHouseBackend
from telemetryflow.collector.store.clickhouse._seam import ChdbConnection
from telemetryflow.collector.store.clickhouse._tables import Tables
from telemetryflow.collector.store.clickhouse._traces import TraceSource, query_traces

S = 10**9
MIDNIGHT = 1_763_942_400 * S  # 2025-11-24T00:00:00Z: a partition (day) boundary
TRACE = "0af7651916cd43dd8448eb211c80319c"
OTHER = "4bf92f3577b34da6a3ce929d0e0e4736"
# the trace: before midnight, just after it, and 999.999999 ms into a later second
# (the id table keeps whole seconds: the lookup's upper bound must reach past it)
SPANS = [
    ("a000000000000001", "", MIDNIGHT - 300_000_000),
    ("a000000000000002", "a000000000000001", MIDNIGHT + 400_000_000),
    ("a000000000000003", "a000000000000001", MIDNIGHT + 3 * S + 999_999_999),
]


def _ids(answer: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(spans: list[dict[str, Any]]) -> None:
        for span in spans:
            found.append(span["span_id"])
            walk(span["children"])

    for trace in answer["traces"]:
        walk(trace["spans"])
    return sorted(found)


def _filled(
    ch: ChdbConnection, chdb_path: Path, database: str, generation: str
) -> ClickHouseBackend:
    create(ch, database, generation)
    for span_id, parent, start in SPANS:
        insert_span(ch, database, trace_id=TRACE, span_id=span_id, parent=parent,
                    name="op", service="api", start=start, duration=1000)  # fmt: skip
    for i in range(3):  # another trace in each of the seconds around midnight
        insert_span(ch, database, trace_id=OTHER, span_id=f"b00000000000000{i}", name="op",
                    service="api", start=MIDNIGHT + (i - 1) * S, duration=1000)  # fmt: skip
    return ClickHouseBackend(ChdbConnection(str(chdb_path)), Tables(database=database))


@pytest.fixture(params=["current", "older"])
def backend(
    request: pytest.FixtureRequest, ch: ChdbConnection, chdb_path: Path, database: str
) -> Iterator[ClickHouseBackend]:
    """The exporter's tables, with (``current``) and without (``older``) the id table."""
    backend = _filled(ch, chdb_path, database, request.param)
    yield backend
    backend.close()


@pytest.fixture
def indexed(ch: ChdbConnection, chdb_path: Path, database: str) -> Iterator[ClickHouseBackend]:
    """The current exporter's tables: with the id table."""
    backend = _filled(ch, chdb_path, database, "current")
    yield backend
    backend.close()


def test_lookup_finds_every_span_with_and_without_the_id_table(
    backend: ClickHouseBackend, request: pytest.FixtureRequest
) -> None:
    with_index = request.node.callspec.params["backend"] == "current"
    assert backend.source.trace_index is with_index  # the id table is used when it exists
    expected = sorted(span_id for span_id, _, _ in SPANS)
    answer = backend.query("traces", "default", {"trace_id": TRACE}, None)
    assert _ids(answer) == expected
    assert answer["traces"][0]["span_count"] == 3
    plain = TraceSource(backend.ch, backend.tables, trace_index=False)  # every day's parts
    assert query_traces(plain, "default", {"trace_id": TRACE})["traces"] == answer["traces"]
    brief = backend.query("traces", "default", {"trace_id": TRACE, "detail": "false"}, None)
    assert brief["traces"][0]["span_count"] == 3


def test_lookup_of_a_trace_the_id_table_does_not_know_reads_every_day(
    ch: ChdbConnection, indexed: ClickHouseBackend, database: str
) -> None:
    """Spans written before the id table existed (or with its view dropped) are found."""
    ch.command(f"TRUNCATE TABLE `{database}`.otel_traces_trace_id_ts")
    answer = indexed.query("traces", "default", {"trace_id": TRACE}, None)
    assert _ids(answer) == sorted(span_id for span_id, _, _ in SPANS)


def test_lookup_bounded_by_the_id_table_reads_only_its_seconds(
    ch: ChdbConnection, indexed: ClickHouseBackend, database: str
) -> None:
    """The id table's seconds bound the spans read: an id-table row pointing elsewhere
    (as a stale one would) finds nothing, which shows the bound is applied."""
    ch.command(f"TRUNCATE TABLE `{database}`.otel_traces_trace_id_ts")
    ch.command(
        f"INSERT INTO `{database}`.otel_traces_trace_id_ts (TraceId, Start, End) "
        f"VALUES ('{TRACE}', {MIDNIGHT // S - 86_400}, {MIDNIGHT // S - 86_300})"
    )
    assert indexed.query("traces", "default", {"trace_id": TRACE}, None)["traces"] == []


def _mark_cache_misses(ch: ChdbConnection) -> int:
    rows = ch.query("SELECT value FROM system.events WHERE event = 'MarkCacheMisses'")
    return int(rows[0][0]) if rows else 0


@pytest.mark.parametrize("warm", [True, False])
def test_opening_the_store_loads_the_marks_a_lookup_reads(
    ch: ChdbConnection, chdb_path: Path, database: str, warm: bool
) -> None:
    """The first lookup after opening finds every mark it needs in the cache: the store
    warmed both trace tables. Without that (``warm`` off) the same lookup misses, which
    shows the count can tell."""
    create(ch, database, "current")
    for span_id, parent, start in SPANS:  # a part of its own, never read before
        insert_span(ch, database, trace_id=TRACE, span_id=span_id, parent=parent,
                    name="op", service="api", start=start, duration=1000)  # fmt: skip
    conn = ChdbConnection(str(chdb_path))
    if not warm:
        conn.warm = lambda tables: None  # type: ignore[method-assign]
    backend = ClickHouseBackend(conn, Tables(database=database))
    try:
        backend.warming.join(30)
        assert not backend.warming.is_alive()
        before = _mark_cache_misses(ch)
        answer = backend.query("traces", "default", {"trace_id": TRACE}, None)
        missed = _mark_cache_misses(ch) - before
    finally:
        backend.close()
    assert answer["traces"][0]["span_count"] == 3
    assert (missed == 0) is warm
