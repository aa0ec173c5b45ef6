"""A windowed error or event listing reads only the window's parts of the exporter's tables.

Captures are written one part per day for five days; the plan ClickHouse makes for the
listing's SQL (``EXPLAIN indexes = 1``) must keep only today's part of each exporter
table, in each generation of its logs table (ordered by ``TimestampTime`` or by
``Timestamp``).
"""

from __future__ import annotations

import time

import pytest
from exporter_tables import create, insert_log, insert_span
from scan_plan import plan_reads

from telemetryflow.collector.store.clickhouse._capture_rows import Ask, error_rows, event_rows
from telemetryflow.collector.store.clickhouse._ddl import tables_ddl
from telemetryflow.collector.store.clickhouse._log_time import log_columns
from telemetryflow.collector.store.clickhouse._seam import ChdbConnection
from telemetryflow.collector.store.clickhouse._tables import Tables

DAY = 86_400 * 10**9
HOUR = 3600 * 10**9


def _parts_read(ch: ChdbConnection, sql: str, args: dict[str, object]) -> dict[str, int]:
    """Per table the plan reads: how many parts are left after every index."""
    return {table: read.parts for table, read in plan_reads(ch, sql, args).items()}


@pytest.mark.parametrize("generation", ["newest", "older"])
def test_the_window_bounds_the_exporter_tables_scan(
    generation: str, ch: ChdbConnection, database: str
) -> None:
    create(ch, database, generation)
    now = time.time_ns()
    capture = {"error.id": "", "error.fingerprint": "f1", "exception.type": "E"}
    more = {"event_name": "exception"} if generation == "newest" else {}
    for day in range(5):
        when = now - day * DAY - 10**9
        ids = {**capture, "error.id": f"e{day}"}
        insert_log(ch, database, service="api", body="b", time=when, attrs=ids, **more)
        insert_span(ch, database, trace_id=f"{day + 1:032x}", span_id=f"{day + 1:016x}",
                    name="GET /", service="api", start=when - 10**6, duration=2 * 10**6,
                    events=[(when, "exception", {**ids, "error.id": f"s{day}"})])  # fmt: skip
        if generation == "newest":
            insert_log(ch, database, service="api", body="signup", time=when,
                       attrs={"enduser.id": "u1"}, event_name="signup")  # fmt: skip
    tables = Tables(database=database)
    for statement in tables_ddl(tables, frozenset({tables.traces, tables.logs})):
        ch.command(statement)  # our own tables, next to the exporter's
    columns = log_columns(ch, tables)
    ask = Ask("default", "default", window=(now - HOUR, now))
    errors = _parts_read(ch, error_rows(tables, ask, columns), ask.args())
    per_day = 2 if generation == "newest" else 1  # log parts a day (with the event's)
    assert (errors["otel_logs"], errors["otel_traces"]) == (per_day, 1)
    whole = _parts_read(ch, error_rows(tables, Ask("default", "default"), columns), {
        "project": "default", "default_project": "default",
    })  # fmt: skip
    assert (whole["otel_logs"], whole["otel_traces"]) == (5 * per_day, 5)  # the figure can fail
    rows = ch.query(f"SELECT error_id FROM ({error_rows(tables, ask, columns)})", ask.args())
    assert sorted(row[0] for row in rows) == ["e0", "s0"]
    wide = Ask("default", "default", window=(-(10**18), 2**63 - 1))  # 1938 to 2262
    rows = ch.query(f"SELECT error_id FROM ({error_rows(tables, wide, columns)})", wide.args())
    assert len(rows) == 10  # a window past the DateTime range does not wrap around
    if generation == "newest":
        events = _parts_read(ch, event_rows(tables, ask, columns), ask.args())
        assert events["otel_logs"] == per_day
