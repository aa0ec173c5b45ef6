"""Rows the OpenTelemetry Collector exporter wrote answer every trace and log query.

The tables are created with the exporter's DDL (two generations), filled by plain SQL as
the exporter fills them, and read through the ClickHouse store; those rows carry no
project of ours, so they belong to the default project.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exporter_tables import create, insert_log, insert_span

from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.store.clickhouse._backend import ClickHouseBackend
from telemetryflow.collector.store.clickhouse._seam import ChdbConnection
from telemetryflow.collector.store.clickhouse._tables import Tables

T1 = "11111111111111111111111111111111"
T2 = "22222222222222222222222222222222"
T3 = "33333333333333333333333333333333"
T4 = "44444444444444444444444444444444"
HOUR = 3600 * 10**9
MS = 10**6
WORDS = {
    "current": {"server": "Server", "internal": "Internal", "error": "Error", "ok": "Ok"},
    "older": {"server": "SPAN_KIND_SERVER", "internal": "SPAN_KIND_INTERNAL",
              "error": "STATUS_CODE_ERROR", "ok": "STATUS_CODE_OK"},
}  # fmt: skip


@pytest.fixture(params=["current", "older"])
def store(
    request: pytest.FixtureRequest, ch: ChdbConnection, chdb_path: Path, database: str
) -> Iterator[ClickHouseBackend]:
    generation = request.param
    create(ch, database, generation)
    w = WORDS[generation]
    now = time.time_ns()
    start = now - 10**9

    def span(trace: str, sid: str, name: str, service: str, **more: Any) -> None:
        insert_span(ch, database, trace_id=trace, span_id=sid, name=name, service=service,
                    **{"kind": w["server"], "status": w["ok"], **more})  # fmt: skip

    span(T1, "a000000000000001", "GET /checkout", "frontend", start=start, duration=300 * MS,
         attrs={"http.status_code": "200", "tags": '["a","b"]'},
         resource={"host.name": "web-1"}, scope="flask", scope_version="3.0")  # fmt: skip
    span(T1, "a000000000000002", "render", "frontend", parent="a000000000000001",
         start=start + MS, duration=20 * MS, kind=w["internal"])  # fmt: skip
    span(T1, "a000000000000003", "charge", "payments", parent="a000000000000001",
         start=start + 2 * MS, duration=250 * MS, status=w["error"], message="declined",
         events=[(start + 3 * MS, "exception", {"exception.type": "CardError"})],
         links=[(T3, "c000000000000001", "k=v", {"why": "retry"})])  # fmt: skip
    span(T1, "a000000000000004", "db.query", "payments", parent="a000000000000003",
         start=start + 3 * MS, duration=200 * MS, kind=w["internal"])  # fmt: skip
    span(T2, "b000000000000001", "GET /home", "frontend", start=now - 5 * 10**8, duration=5 * MS)
    span(T3, "c000000000000001", "GET /old", "frontend", start=now - 3 * HOUR, duration=10 * MS)
    span(T4, "d000000000000001", "GET /beta", "frontend", start=now - 10**8, duration=1 * MS,
         resource={"telemetryflow.project": "beta"})  # fmt: skip
    logs = [
        ("api", "user signed in", 9, now - 3000, ""),
        ("api", "payment failed: card declined", 17, now - 2000, T1),
        ("api", "debug noise", 5, now - 1000, ""),
        ("api", "ancient warning", 13, now - 30 * HOUR, ""),
        ("worker", "job crashed 100%_done", 21, now - 500, ""),
    ]
    for service, body, severity, when, trace in logs:
        insert_log(ch, database, service=service, body=body, severity=severity, time=when,
                   trace_id=trace, attrs={"user.id": "42"})  # fmt: skip
    insert_log(ch, database, service="api", body="beta's own", time=now - 100,
               resource={"telemetryflow.project": "beta"})  # fmt: skip
    own = ChdbConnection(str(chdb_path))  # the backend closes its connection
    backend = ClickHouseBackend(own, Tables(database=database, default_project="alpha"))
    yield backend
    backend.close()


def traces(store: ClickHouseBackend, project: str = "alpha", **params: Any) -> list[str]:
    return [t["trace_id"] for t in store.query("traces", project, params, None)["traces"]]


def bodies(store: ClickHouseBackend, project: str = "alpha", **params: Any) -> list[str]:
    return [entry["body"] for entry in store.query("logs", project, params, None)["logs"]]


def test_trace_by_id_is_a_tree_across_services(store: ClickHouseBackend) -> None:
    trace = store.query("traces", "alpha", {"trace_id": T1.upper()}, None)["traces"][0]
    assert (trace["span_count"], trace["error"], trace["root_name"]) == (4, True, "GET /checkout")
    assert trace["services"] == ["frontend", "payments"]
    assert trace["duration_ms"] == pytest.approx(300.0)
    root = trace["spans"][0]
    assert root["kind"] == "SERVER"
    assert root["attributes"] == {"http.status_code": "200", "tags": '["a","b"]'}
    assert root["resource"] == {"service.name": "frontend", "host.name": "web-1"}
    assert root["scope"] == {"name": "flask", "version": "3.0", "attributes": {}}
    assert [c["name"] for c in root["children"]] == ["render", "charge"]
    charge = root["children"][1]
    assert (charge["service"], charge["status"], charge["status_message"]) == (
        "payments", "ERROR", "declined",
    )  # fmt: skip
    assert charge["events"] == [{
        "name": "exception", "time_unix_nano": charge["start_unix_nano"] + MS,
        "attributes": {"exception.type": "CardError"},
    }]  # fmt: skip
    assert charge["links"] == [{
        "trace_id": T3, "span_id": "c000000000000001", "trace_state": "k=v",
        "attributes": {"why": "retry"},
    }]  # fmt: skip
    assert charge["end_unix_nano"] - charge["start_unix_nano"] == 250 * MS
    assert [c["name"] for c in charge["children"]] == ["db.query"]
    assert root["children"][0]["kind"] == "INTERNAL"


def test_trace_list_filters(store: ClickHouseBackend) -> None:
    assert traces(store) == [T2, T1, T3]  # newest first, default window 24h
    assert traces(store, time_window="1h") == [T2, T1]
    assert traces(store, service="payments") == [T1]
    assert traces(store, name="GET /home") == [T2]
    assert traces(store, trace="GET /home") == [T2]
    assert traces(store, min_duration="100ms") == [T1]
    assert traces(store, error="true") == [T1]
    assert traces(store, limit=1) == [T2]
    assert traces(store, trace_id="f" * 32) == []
    assert traces(store, project_name="someone-else") == []


def test_trace_list_summary_is_computed_in_the_database_and_matches_detail(
    store: ClickHouseBackend,
) -> None:
    full = store.query("traces", "alpha", {}, None)["traces"]
    brief = store.query("traces", "alpha", {"detail": "false"}, None)["traces"]
    assert [{k: v for k, v in t.items() if k != "spans"} for t in full] == brief


def test_rows_with_a_project_attribute_belong_to_that_project_only(
    store: ClickHouseBackend,
) -> None:
    assert traces(store, project="beta") == [T4]
    assert traces(store, project="beta", trace_id=T1) == []
    assert T4 not in traces(store)
    beta = store.query("traces", "beta", {"trace_id": T4}, None)["traces"][0]
    assert beta["spans"][0]["resource"] == {"service.name": "frontend"}  # ours, not shown
    assert bodies(store, project="beta") == ["beta's own"]
    assert "beta's own" not in bodies(store)


def test_logs_newest_first_and_filters(store: ClickHouseBackend) -> None:
    assert bodies(store) == [
        "job crashed 100%_done", "debug noise", "payment failed: card declined", "user signed in",
    ]  # fmt: skip
    assert bodies(store, severity="error") == ["job crashed 100%_done",
                                              "payment failed: card declined"]  # fmt: skip
    assert bodies(store, severity="warning", service="api") == ["payment failed: card declined"]
    assert bodies(store, trace_id=T1.upper()) == ["payment failed: card declined"]
    assert bodies(store, contains="DECLINED") == ["payment failed: card declined"]
    assert bodies(store, contains="100%_") == ["job crashed 100%_done"]
    assert bodies(store, contains="%") == ["job crashed 100%_done"]
    assert bodies(store, limit=2) == ["job crashed 100%_done", "debug noise"]
    assert "ancient warning" in bodies(store, time_window="31h")
    assert "ancient warning" not in bodies(store, time_window="29h")
    assert bodies(store, since="31h", until="29h") == ["ancient warning"]
    assert bodies(store, project_name="someone-else") == []


def test_log_record_shape(store: ClickHouseBackend) -> None:
    record = store.query("logs", "alpha", {"trace_id": T1}, None)["logs"][0]
    assert record["severity"] == "ERROR" and record["severity_number"] == 17
    assert record["attributes"] == {"user.id": "42"}
    assert record["resource"] == {"service.name": "api"}
    assert record["body_kind"] == "string"
    assert set(record) == {
        "time", "time_unix_nano", "service", "severity", "severity_number", "body",
        "body_kind", "trace_id", "span_id", "attributes", "resource", "scope",
    }  # fmt: skip


def test_bad_parameters_are_refused_before_any_sql(store: ClickHouseBackend) -> None:
    with pytest.raises(BadRequestError) as caught:
        store.query("logs", "alpha", {"severity": "loud"}, None)
    assert caught.value.status == 400
    with pytest.raises(BadRequestError):
        store.query("traces", "alpha", {"bogus": "1"}, None)


def test_status_counts_by_the_data_time(store: ClickHouseBackend) -> None:
    received, last = store.status_counts("alpha", time.time_ns() - 2 * HOUR)
    assert received == {"spans": 5, "metric_points": 0, "logs": 4}
    assert last > 0
    assert store.status_counts("beta", 0)[0] == {"spans": 1, "metric_points": 0, "logs": 1}
