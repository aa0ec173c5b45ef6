"""What our receivers write lands in the exporter's tables in the exporter's shapes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from collector_helpers import kv, log_request, make_log, make_span, trace_request
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from telemetryflow.collector.store.clickhouse._backend import ClickHouseBackend
from telemetryflow.collector.store.clickhouse._seam import ChdbConnection
from telemetryflow.collector.store.clickhouse._tables import Tables

T1 = "11111111111111111111111111111111"


@pytest.fixture
def backend(chdb_path: Path, database: str) -> Iterator[ClickHouseBackend]:
    store = ClickHouseBackend(ChdbConnection(str(chdb_path)), Tables(database=database))
    yield store
    store.close()


def _store(backend: ClickHouseBackend, signal: str, request: object, project: str) -> None:
    batch, rejected, _ = backend.rows(signal, request, project, time.time_ns())
    assert batch is not None and rejected == 0
    backend.submit(batch)


def test_spans_are_stored_as_the_exporter_stores_them(
    backend: ClickHouseBackend, ch: ChdbConnection, database: str
) -> None:
    now = time.time_ns()
    span = make_span(T1, "a000000000000001", "charge", parent="b000000000000001",
                     start_ns=now, duration_ms=2.5, error=True,
                     attrs={"n": 3, "ok": True, "ratio": 0.5, "s": "x"})  # fmt: skip
    span.kind = Span.SPAN_KIND_CLIENT
    span.status.message = "declined"
    span.attributes.append(KeyValue(key="list", value=AnyValue(array_value=ArrayValue(
        values=[AnyValue(string_value="a"), AnyValue(int_value=1)]))))  # fmt: skip
    span.attributes.append(KeyValue(key="map", value=AnyValue(kvlist_value=KeyValueList(
        values=kv({"k": "v"})))))  # fmt: skip
    span.attributes.append(KeyValue(key="raw", value=AnyValue(bytes_value=b"\x00\xff")))
    event = span.events.add(name="exception", time_unix_nano=now + 1000)
    event.attributes.extend(kv({"exception.type": "CardError"}))
    link = span.links.add(trace_id=bytes.fromhex("22" * 16), span_id=bytes.fromhex("33" * 8))
    link.trace_state = "k=v"
    request = trace_request("payments", [span])
    request.resource_spans[0].resource.attributes.extend(kv({"telemetryflow.project": "evil"}))
    request.resource_spans[0].scope_spans[0].scope.name = "billing"
    _store(backend, "traces", request, "alpha")
    rows = ch.query(
        "SELECT toUnixTimestamp64Nano(Timestamp), TraceId, SpanId, ParentSpanId, SpanName, "
        "SpanKind, ServiceName, ResourceAttributes, ScopeName, SpanAttributes, Duration, "
        "StatusCode, StatusMessage, arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp), "
        "Events.Name, Events.Attributes, Links.TraceId, Links.SpanId, Links.TraceState "
        f"FROM `{database}`.otel_traces"
    )
    assert rows == [[
        now, T1, "a000000000000001", "b000000000000001", "charge", "Client", "payments",
        {"service.name": "payments", "telemetryflow.project": "alpha"}, "billing",
        {"n": "3", "ok": "true", "ratio": "0.5", "s": "x", "list": '["a",1]',
         "map": '{"k":"v"}', "raw": "AP8="},
        2_500_000, "Error", "declined", [now + 1000], ["exception"],
        [{"exception.type": "CardError"}], ["22" * 16], ["33" * 8], ["k=v"],
    ]]  # fmt: skip
    ids = ch.query(f"SELECT TraceId FROM `{database}`.otel_traces_trace_id_ts")
    assert ids == [[T1]]  # the exporter's view filled the id table


def test_log_records_are_stored_as_the_exporter_stores_them(
    backend: ClickHouseBackend, ch: ChdbConnection, database: str
) -> None:
    now = time.time_ns()
    record = make_log("card declined", 17, time_ns=now, trace_id=T1)
    record.severity_text = "ERROR"
    record.attributes.extend(kv({"order": "o-1", "n": 2}))
    structured = make_log("", 9, time_ns=now + 1)
    structured.body.CopyFrom(AnyValue(kvlist_value=KeyValueList(values=kv({"a": 1}))))
    _store(backend, "logs", log_request("api", [record, structured]), "alpha")
    rows = ch.query(
        "SELECT toUnixTimestamp64Nano(Timestamp), TraceId, SeverityText, SeverityNumber, "
        f"ServiceName, Body, ResourceAttributes, LogAttributes FROM `{database}`.otel_logs "
        "ORDER BY Timestamp"
    )
    assert rows == [
        [now, T1, "ERROR", 17, "api", "card declined",
         {"service.name": "api", "telemetryflow.project": "alpha"}, {"order": "o-1", "n": "2"}],
        [now + 1, "", "", 9, "api", '{"a":1}',
         {"service.name": "api", "telemetryflow.project": "alpha"}, {}],
    ]  # fmt: skip


def test_invalid_spans_are_refused_like_sqlite_refuses_them(backend: ClickHouseBackend) -> None:
    bad = make_span(T1, "a000000000000001", "x")
    bad.trace_id = b"\x00" * 16
    batch, rejected, message = backend.rows("traces", trace_request("s", [bad]), "a", 1)
    assert (batch, rejected) == (None, 1)
    assert "without valid ids" in message
