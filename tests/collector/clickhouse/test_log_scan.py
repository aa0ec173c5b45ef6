"""Windowed log queries read only the window's parts and granules of the exporter's logs table.

The exporter's current ``otel_logs`` is partitioned by day of ``TimestampTime`` and
ordered by ``(ServiceName, TimestampTime, Timestamp)``: a condition on ``Timestamp``
alone prunes neither partitions nor granules. Five days of records (one a second, two
services, merged to one part a day) are written; the plan ClickHouse makes for each
windowed logs query (the log search, which the web view's live tail runs too; the status
counts; the flag evaluation counts) must keep only the window's part, and in it only
the window's granules. The answers must be exactly those of a condition on
``Timestamp`` alone, records on the window's edges (times with sub-second parts)
included, and an older logs table without ``TimestampTime`` must be read as before.

The trace list needs no such bound: the traces table is partitioned by
``toDate(Timestamp)`` and its key holds ``toDateTime(Timestamp)``, which ClickHouse
derives from the condition on ``Timestamp``; a test pins that it reads one part too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from exporter_tables import create, insert_log
from scan_plan import Read, plan_reads

from telemetryflow.collector.query._params import iso
from telemetryflow.collector.store.clickhouse._backend import ClickHouseBackend
from telemetryflow.collector.store.clickhouse._seam import ChdbConnection
from telemetryflow.collector.store.clickhouse._tables import Tables

NS = 10**9
DAY = 86_400 * NS
HOUR = 3600 * NS
BASE = 1_795_132_800 * NS  # 2026-11-20T00:00:00Z: five whole days, one partition each
DAYS = 5
SINCE = BASE + 4 * DAY + 20 * HOUR + NS // 4  # inside the last day, a quarter past a second
UNTIL = SINCE + HOUR + NS // 2  # three quarters past a second
FLAG = "feature_flag.evaluation"
# records on and a microsecond past the window's edges (label → time); the window is
# asked for in RFC 3339, to the microsecond
EDGES = {"since": SINCE, "until": UNTIL, "before": SINCE - 1000, "after": UNTIL + 1000}
WINDOW = {"since": iso(SINCE), "until": iso(UNTIL)}
GRANULES = 4  # a window of under 8,192 records of each of the two services: two granules each
SERVICES = "['api', 'worker'][number % 2 + 1]"


class Recorder:
    """A chDB connection that keeps the queries it runs, to have their plans explained."""

    def __init__(self, ch: ChdbConnection) -> None:
        self.ch = ch
        self.queries: list[tuple[str, dict[str, Any]]] = []

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[list[Any]]:
        self.queries.append((sql, dict(params or {})))
        return self.ch.query(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ch, name)


def _fill(ch: ChdbConnection, db: str) -> None:
    """A record a second (every third one a flag evaluation) and a span every two seconds,
    five days; the edge records; then one part a partition."""
    for day in range(DAYS):
        start = BASE + day * DAY
        ch.command(f"""INSERT INTO `{db}`.otel_logs (Timestamp, ServiceName, SeverityNumber,
            Body, ResourceAttributes, LogAttributes)
        SELECT fromUnixTimestamp64Nano(toInt64({start} + number * {NS})), {SERVICES}, 9,
            if(number % 3 = 0, '{FLAG}', concat('request ', toString(number))),
            map('service.name', {SERVICES}),
            map('feature_flag.key', concat('f', toString(number % 2)),
                'feature_flag.context.id', concat('u', toString(number % 5)))
        FROM numbers(86400)""")
        ch.command(f"""INSERT INTO `{db}`.otel_traces (Timestamp, TraceId, SpanId, SpanName,
            SpanKind, ServiceName, ResourceAttributes, SpanAttributes, Duration, StatusCode)
        SELECT fromUnixTimestamp64Nano(toInt64({start} + number * {2 * NS})),
            leftPad(lower(hex({day * 43200} + number)), 32, '0'),
            leftPad(lower(hex(number + 1)), 16, '0'), ['GET /a', 'GET /b'][number % 2 + 1],
            'Server', {SERVICES}, map('service.name', {SERVICES}), map(), 1000, 'Unset'
        FROM numbers(43200)""")
    for label, when in EDGES.items():
        attrs = {"feature_flag.key": "edge", "feature_flag.context.id": label}
        insert_log(ch, db, service="api", body=FLAG, time=when, attrs=attrs)
    for table in ("otel_logs", "otel_traces"):
        ch.command(f"OPTIMIZE TABLE `{db}`.{table} FINAL")


@pytest.fixture(scope="module", params=["current", "older"])
def store(
    request: pytest.FixtureRequest, ch: ChdbConnection, chdb_path: Path
) -> Iterator[tuple[str, ClickHouseBackend, Recorder]]:
    """The exporter's tables of one generation, filled, behind a backend whose queries
    are recorded."""
    generation = str(request.param)
    db = f"logscan_{generation}"
    ch.command(f"DROP DATABASE IF EXISTS `{db}`")
    create(ch, db, generation)
    _fill(ch, db)
    recorder = Recorder(ChdbConnection(str(chdb_path)))  # the backend closes its connection
    backend = ClickHouseBackend(recorder, Tables(database=db))
    yield generation, backend, recorder
    backend.close()
    ch.command(f"DROP DATABASE IF EXISTS `{db}`")


def _plans(recorder: Recorder, run: Callable[[], Any]) -> tuple[Any, list[dict[str, Read]]]:
    """``run``'s answer and the plan of each query it ran over the exporter's tables."""
    recorder.queries.clear()
    answer = run()
    plans = [plan_reads(recorder.ch, sql, args) for sql, args in recorder.queries
             if "system." not in sql]  # fmt: skip
    return answer, plans


def _in_window(ch: ChdbConnection, db: str, columns: str, more: str = "") -> list[list[Any]]:
    """The reference: rows selected on ``Timestamp`` alone."""
    return ch.query(
        f"SELECT {columns} FROM `{db}`.otel_logs WHERE Timestamp "
        "BETWEEN fromUnixTimestamp64Nano({since:Int64}) AND fromUnixTimestamp64Nano({until:Int64})"
        f"{more}",
        {"since": SINCE, "until": UNTIL},
    )


def _window_only(plans: list[dict[str, Read]], table: str) -> None:
    """Every plan reading ``table`` keeps one part, and of the logs only the window's
    granules (the whole table would be five parts)."""
    reads = [plan[table] for plan in plans if table in plan]
    assert reads
    for read in reads:
        assert read.of_parts == DAYS  # the figure can fail: five parts to choose from
        assert read.parts == 1, read
        if table == "otel_logs":
            assert read.granules <= GRANULES < read.of_granules // DAYS, read


def test_the_log_search_reads_the_window_and_answers_the_same(
    store: tuple[str, ClickHouseBackend, Recorder], ch: ChdbConnection
) -> None:
    _, backend, recorder = store
    params = {**WINDOW, "limit": 10_000}
    answer, plans = _plans(recorder, lambda: backend.query("logs", "default", params, None))
    db = backend.tables.database
    expected = _in_window(ch, db, "toUnixTimestamp64Nano(Timestamp), Body",
                          " ORDER BY Timestamp DESC")  # fmt: skip
    got = [[entry["time_unix_nano"], entry["body"]] for entry in answer["logs"]]
    assert len(got) > 3600  # the hour's records, and the edges inside it
    assert got == expected
    edges = {e["attributes"]["feature_flag.context.id"] for e in answer["logs"]
             if e["attributes"].get("feature_flag.key") == "edge"}  # fmt: skip
    assert edges == {"since", "until"}
    _window_only(plans, "otel_logs")


def test_the_flag_counts_read_the_window_and_answer_the_same(
    store: tuple[str, ClickHouseBackend, Recorder], ch: ChdbConnection
) -> None:
    _, backend, recorder = store
    params = WINDOW
    answer, plans = _plans(recorder, lambda: backend.flag_evaluations("default", params))
    expected = _in_window(
        ch, backend.tables.database,
        "LogAttributes['feature_flag.key'] AS f, LogAttributes['feature_flag.context.id'] AS u, "
        "count()", f" AND Body = '{FLAG}' GROUP BY f, u ORDER BY f, u",
    )  # fmt: skip
    got = [[row["flag"], row["user"], row["evaluations"]] for row in answer["flags"]]
    assert got == expected
    assert [row[1] for row in got if row[0] == "edge"] == ["since", "until"]
    _window_only(plans, "otel_logs")
    # a window past the DateTime range (1970 to 2106) is clamped to it, not wrapped
    wide = {"since": "1970-01-01T00:00:00Z", "until": "2261-12-31T00:00:00Z"}
    flags = backend.flag_evaluations("default", wide)["flags"]
    everything = ch.query(
        f"SELECT count() FROM `{backend.tables.database}`.otel_logs WHERE Body = '{FLAG}'"
    )[0][0]
    assert sum(row["evaluations"] for row in flags) == everything == DAYS * 28_800 + len(EDGES)


def test_the_status_counts_read_the_window_and_count_the_same(
    store: tuple[str, ClickHouseBackend, Recorder], ch: ChdbConnection
) -> None:
    _, backend, recorder = store
    (received, last), plans = _plans(recorder, lambda: backend.status_counts("default", SINCE))
    db = backend.tables.database
    logs = ch.query(
        f"SELECT count(), max(toUnixTimestamp64Nano(Timestamp)) FROM `{db}`.otel_logs "
        "WHERE Timestamp >= fromUnixTimestamp64Nano({since:Int64})",
        {"since": SINCE},
    )[0]
    spans = ch.query(
        f"SELECT count() FROM `{db}`.otel_traces "
        "WHERE Timestamp >= fromUnixTimestamp64Nano({since:Int64})",
        {"since": SINCE},
    )[0][0]
    assert received == {"spans": spans, "metric_points": 0, "logs": logs[0]}
    assert last == logs[1] == BASE + DAYS * DAY - NS  # the last day's last record
    assert logs[0] == 4 * 3600 - 1 + 3  # 20:00:01 to 23:59:59, the edges from since on
    assert len(plans) == 1  # one query, every table's count in it
    _window_only(plans, "otel_logs")  # four hours of each service: two granules too
    _window_only(plans, "otel_traces")


def test_the_trace_list_reads_the_window_only(
    store: tuple[str, ClickHouseBackend, Recorder], ch: ChdbConnection
) -> None:
    generation, backend, recorder = store
    params = {**WINDOW, "limit": 50, "detail": "false"}
    answer, plans = _plans(recorder, lambda: backend.query("traces", "default", params, None))
    expected = ch.query(
        f"SELECT TraceId FROM `{backend.tables.database}`.otel_traces WHERE Timestamp "
        "BETWEEN fromUnixTimestamp64Nano({since:Int64}) AND fromUnixTimestamp64Nano({until:Int64}) "
        "ORDER BY Timestamp DESC, TraceId LIMIT 50",
        {"since": SINCE, "until": UNTIL},
    )
    assert [t["trace_id"] for t in answer["traces"]] == [row[0] for row in expected]
    reads = [plan["otel_traces"] for plan in plans if "otel_traces" in plan]
    assert len(reads) == 2  # the matching traces, then their summaries
    # without the exporter's trace-id table, the summaries are found by the bloom filter
    # on every day's part (docs/scale.md says so); the window's search reads one
    checked = reads if generation == "current" else reads[:1]
    assert [(read.parts, read.of_parts) for read in checked] == [(1, DAYS)] * len(checked)
