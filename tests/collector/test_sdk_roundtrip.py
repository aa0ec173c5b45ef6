"""SDK → collector → query client, for every signal over gRPC and HTTP."""

from __future__ import annotations

import pytest
from collector_helpers import KEY_A

from telemetryflow import TelemetryFlowBuilder
from telemetryflow._configuration.enums import SpanKind
from telemetryflow.collector import Collector
from telemetryflow.collector.query._aggregate import Accumulator, Aggregation
from telemetryflow.query import QueryClient


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sdk_signals_round_trip(collector: Collector, protocol: str) -> None:
    builder = (
        TelemetryFlowBuilder()
        .with_api_key(KEY_A.key_id, KEY_A.key_secret)
        .with_service(f"shop-{protocol}", "2.0.0")
        .with_insecure()
    )
    if protocol == "grpc":
        builder = builder.with_endpoint(collector.grpc_endpoint or "").with_grpc()
    else:
        builder = builder.with_endpoint(collector.http_endpoint.split("://")[1]).with_http()
    client = builder.build()
    client.initialize()
    client.increment_counter("orders.total", attributes={"route": "/buy"})
    client.increment_counter("orders.total", value=2, attributes={"route": "/buy"})
    for value in (0.1, 0.2, 0.3):
        client.record_histogram("orders.duration", value, unit="s", attributes={"route": "/buy"})
    with client.span("POST /buy", SpanKind.SERVER):
        with client.span("charge card"):
            client.log_error("card declined", {"order": "o-1"})
        client.log_info("order stored")
    client.shutdown(timeout=10)
    service = f"shop-{protocol}"
    with QueryClient(
        collector.http_endpoint, key_id=KEY_A.key_id, key_secret=KEY_A.key_secret
    ) as query:
        errors = query.logs.query(service=service, severity="error")["logs"]
        total = query.metrics.query(name="orders.total", agg="sum", service=service)
        p_max = query.metrics.query(name="orders.duration", agg="max", service=service)
        count = query.metrics.query(name="orders.duration", agg="count", service=service)
        traces = query.traces.query(service=service)["traces"]
    assert [(e["body"], e["attributes"].get("order")) for e in errors] == [("card declined", "o-1")]
    assert errors[0]["trace_id"] == traces[0]["trace_id"]  # the log knows its span
    assert total["series"][0]["value"] == 3
    assert total["series"][0]["tags"] == {"route": "/buy", "service.name": service}
    assert p_max["series"][0]["value"] == pytest.approx(0.3)
    assert count["series"][0]["value"] == 3
    assert len(traces) == 1
    root = traces[0]["spans"][0]
    assert (root["name"], root["kind"]) == ("POST /buy", "SERVER")
    assert [child["name"] for child in root["children"]] == ["charge card"]


def test_histogram_quantile_clamped_to_reported_range() -> None:
    acc = Accumulator()
    acc.add_histogram([0.0, 5.0, 10.0], [0, 1, 0, 0], 1, 0.25, 0.25, 0.25)
    assert acc.result(Aggregation("quantile", 0.5)) == 0.25  # Prometheus alone would say 2.5
    acc = Accumulator()
    acc.add_histogram([0.0, 5.0, 10.0], [0, 1, 0, 0], 1, 0.25, None, None)
    assert acc.result(Aggregation("quantile", 0.5)) == 2.5
