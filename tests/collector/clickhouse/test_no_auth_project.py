"""With authentication off, the caller's project is the store's default project.

Rows the OpenTelemetry Collector's exporter wrote carry no project: they belong to the
default project (``default_project=`` in the store URL). A collector run with
``--no-auth`` over such a store must show them, and store what it receives there too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from collector_helpers import make_span, trace_request
from exporter_tables import create, insert_span

from telemetryflow.collector import Collector
from telemetryflow.collector.store.clickhouse._seam import ChdbConnection

T1 = "11111111111111111111111111111111"
T2 = "22222222222222222222222222222222"


def test_no_auth_serves_the_store_default_project(
    make_collector: Callable[..., Collector], ch: ChdbConnection, chdb_path: Path, database: str
) -> None:
    create(ch, database, "current")
    insert_span(ch, database, trace_id=T1, span_id="a000000000000001", name="GET /",
                service="shop", start=time.time_ns() - 10**9, duration=10**6)  # fmt: skip
    collector = make_collector(
        store=f"chdb://{chdb_path}?database={database}&default_project=shop", auth=False
    )
    with httpx.Client(base_url=collector.http_endpoint, timeout=30) as http:
        sent = trace_request("shop", [make_span(T2, "b000000000000001", "POST /buy")])
        posted = http.post("/v1/traces", content=sent.SerializeToString(),
                           headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
        assert posted.status_code == 200, posted.text
        answer = http.get("/v1/traces/query", params={"detail": "false"})
        assert answer.status_code == 200, answer.text
        assert sorted(t["trace_id"] for t in answer.json()["traces"]) == [T1, T2]
    [[project]] = ch.query(
        f"SELECT DISTINCT ResourceAttributes['telemetryflow.project'] FROM `{database}`."
        "otel_traces WHERE TraceId = {t:String}",
        {"t": T2},
    )
    assert project == "shop"  # what arrives without a key lands beside the exporter's rows
