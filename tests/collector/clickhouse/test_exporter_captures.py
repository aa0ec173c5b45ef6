"""Errors and events the SDK captured, stored by the OpenTelemetry Collector's exporter, are listed.

The SDK's exports are recorded once by the testing receiver. One collector over SQLite
receives them; the same requests are written into the exporter's tables as the exporter
writes them (attributes as strings, span events as ``Nested`` columns, the log record's
event name only where the table has a column for it), and a collector over those tables
is asked the same questions through the real HTTP API. The answers must be the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from collector_helpers import KEY_A, KEY_B, headers_for
from exporter_tables import create, insert_otlp
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from telemetryflow import TelemetryFlowBuilder
from telemetryflow._configuration.enums import SpanKind
from telemetryflow.collector import Collector
from telemetryflow.collector.store.clickhouse._seam import ChdbConnection
from telemetryflow.testing import OTLPReceiver

PB = {"Content-Type": "application/x-protobuf"}
LISTINGS: list[tuple[str, dict[str, str]]] = [
    ("/v1/observability/errors", {}),
    ("/v1/observability/errors", {"window": "1h"}),
    ("/v1/observability/errors", {"service": "shop"}),
    ("/v1/observability/errors", {"service": "elsewhere"}),
    ("/v1/observability/errors", {"type": "E_TIMEOUT"}),
    ("/v1/observability/errors", {"limit": "1"}),
    ("/v1/observability/events", {}),
    ("/v1/observability/events", {"window": "1h"}),
    ("/v1/observability/events", {"event": "signup"}),
    ("/v1/observability/events", {"since": "3h", "until": "2h"}),
    ("/ui/api/errors", {}),
    ("/ui/api/events", {}),
]


def _capture(client: Any) -> None:
    """Twice the same error (one group), an exception in a span, three product events."""
    for tenant in ("acme", "globex"):
        client.capture_error("timed out", code="E_TIMEOUT", tags={"tenant": tenant, "try": 2})
    with client.span("POST /buy", SpanKind.SERVER):
        try:
            raise ValueError("card 4242 declined")
        except ValueError:
            client.capture_exception(tags={"ok": False})
    client.track_event("signup", {"plan": "pro"}, distinct_id="u1")
    client.track_event("signup", {"plan": "free"}, distinct_id="u2")
    client.track_event("checkout", {"total": 12.5})


@pytest.fixture(scope="module")
def sdk_exports() -> list[tuple[str, bytes]]:
    """What the SDK exports for the captures, logs before traces.

    The SDK sends a capture in a span twice (a log record and a span event, one
    ``error.id``); SQLite keeps the copy received first, the log record here.
    """
    with OTLPReceiver() as receiver:
        client = (
            TelemetryFlowBuilder().with_api_key(KEY_A.key_id, KEY_A.key_secret)
            .with_service("shop", "1.0.0").with_insecure().with_global_providers(False)
            .with_endpoint(receiver.http_endpoint.split("://")[1]).with_http()
            .with_signals(metrics=False).build()
        )  # fmt: skip
        client.initialize()
        _capture(client)
        client.shutdown(timeout=10)
        exports = [(r.signal, r.message.SerializeToString()) for r in receiver.requests]
    assert {signal for signal, _ in exports} == {"traces", "logs"}
    return sorted(exports, key=lambda item: item[0] != "logs")


def _feed(collector: Collector, exports: list[tuple[str, bytes]]) -> None:
    with httpx.Client(base_url=collector.http_endpoint, headers=headers_for(KEY_A)) as http:
        for signal, body in exports:
            assert http.post(f"/v1/{signal}", content=body, headers=PB).status_code == 200


def _error_ids(exports: list[tuple[str, bytes]]) -> list[str]:
    """The ``error.id`` of every capture the SDK logged."""
    ids = []
    for signal, body in exports:
        if signal == "logs":
            for rl in ExportLogsServiceRequest.FromString(body).resource_logs:
                for sl in rl.scope_logs:
                    for rec in sl.log_records:
                        ids += [kv.value.string_value for kv in rec.attributes
                                if kv.key == "error.id"]  # fmt: skip
    return sorted(ids)


def _ask(collector: Collector, error_ids: list[str]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    with httpx.Client(
        base_url=collector.http_endpoint, headers=headers_for(KEY_A), timeout=30
    ) as http:
        for path, params in LISTINGS:
            answer = http.get(path, params=params)
            assert answer.status_code == 200, (path, answer.text)
            answers[f"{path} {params}"] = answer.json()
        for error_id in [*error_ids, "no-such-error"]:
            for path in (f"/v1/observability/errors/{error_id}", f"/ui/api/errors/{error_id}"):
                answer = http.get(path)
                answers[path] = (answer.status_code, answer.json())
        for fingerprint in sorted(
            g["fingerprint"] for g in answers["/v1/observability/errors {}"]["groups"]
        ):
            params = {"fingerprint": fingerprint}
            answers[f"fingerprint {fingerprint}"] = http.get(
                "/v1/observability/errors", params=params
            ).json()
    return answers


def _all_error_ids(answers: dict[str, Any]) -> list[str]:
    return [p for p in answers if p.startswith("/v1/observability/errors/")]


@pytest.mark.parametrize("generation", ["newest", "current", "older"])
def test_captures_in_the_exporters_tables_answer_like_sqlite(
    generation: str,
    make_collector: Callable[..., Collector],
    ch: ChdbConnection,
    chdb_path: Path,
    database: str,
    sdk_exports: list[tuple[str, bytes]],
) -> None:
    ids = _error_ids(sdk_exports)
    sqlite = make_collector()
    _feed(sqlite, sdk_exports)
    create(ch, database, generation)
    for signal, body in sdk_exports:
        insert_otlp(ch, database, signal, body, generation)
    chdb = make_collector(store=f"chdb://{chdb_path}?database={database}&default_project=alpha")
    expected, got = _ask(sqlite, ids), _ask(chdb, ids)
    errors = expected["/v1/observability/errors {}"]
    assert (errors["total_groups"], errors["total_occurrences"]) == (2, 3)  # the data arrived
    assert len(_all_error_ids(expected)) == 4  # three occurrences and one unknown id
    events = expected["/v1/observability/events {}"]["events"]
    assert [(e["event"], e["count"], e["distinct_ids"]) for e in events] == [
        ("signup", 2, 2), ("checkout", 1, 0),
    ]  # fmt: skip
    if generation != "newest":  # no column keeps a log record's event name: no events
        for name in [name for name in expected if "/events" in name]:
            assert got.pop(name)["events"] == [], name
            del expected[name]
    for name, answer in expected.items():
        assert got[name] == answer, name


def test_rows_written_both_ways_count_once(
    make_collector: Callable[..., Collector],
    ch: ChdbConnection,
    chdb_path: Path,
    database: str,
    sdk_exports: list[tuple[str, bytes]],
) -> None:
    """Our receivers write a capture into our tables and the exporter's: listed once,
    also in a logs table that has the event-name column."""
    ids = _error_ids(sdk_exports)
    sqlite = make_collector()
    _feed(sqlite, sdk_exports)
    create(ch, database, "newest")
    chdb = make_collector(store=f"chdb://{chdb_path}?database={database}")
    _feed(chdb, sdk_exports)
    expected, got = _ask(sqlite, ids), _ask(chdb, ids)
    for name, answer in expected.items():
        assert got[name] == answer, name


def test_exporter_rows_of_another_project_stay_apart(
    make_collector: Callable[..., Collector],
    ch: ChdbConnection,
    chdb_path: Path,
    database: str,
    sdk_exports: list[tuple[str, bytes]],
) -> None:
    create(ch, database, "newest")
    for signal, body in sdk_exports:
        insert_otlp(ch, database, signal, body, "newest")
    chdb = make_collector(store=f"chdb://{chdb_path}?database={database}&default_project=alpha")
    with httpx.Client(base_url=chdb.http_endpoint, headers=headers_for(KEY_B)) as http:
        errors = http.get("/v1/observability/errors").json()
        assert (errors["groups"], errors["total_occurrences"]) == ([], 0)
        assert http.get("/v1/observability/events").json() == {"events": []}
    with httpx.Client(base_url=chdb.http_endpoint, headers=headers_for(KEY_A)) as http:
        assert http.get("/v1/observability/errors").json()["total_occurrences"] == 3
