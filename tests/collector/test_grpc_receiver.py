"""OTLP/gRPC ingestion, authentication and load shedding."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import httpx
import pytest
from collector_helpers import (
    KEY_A,
    KEY_B,
    gauge,
    headers_for,
    log_request,
    make_log,
    make_span,
    metadata_for,
    metrics_request,
    trace_request,
)
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from telemetryflow.collector import Collector

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def channel(collector: Collector) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(collector.grpc_endpoint or "") as ch:
        yield ch


def query(collector: Collector, signal: str, **params: object) -> dict:
    response = httpx.get(
        f"{collector.http_endpoint}/v1/{signal}/query",
        params=params,
        headers=headers_for(KEY_A),
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def test_every_signal_over_grpc(collector: Collector, channel: grpc.Channel) -> None:
    md = metadata_for(KEY_A)
    trace_service_pb2_grpc.TraceServiceStub(channel).Export(
        trace_request("grpc-svc", [make_span(TRACE, "00f067aa0ba902b7", "rpc")]),
        metadata=md,
        timeout=10,
    )
    metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(
        metrics_request("grpc-svc", [gauge("temp", [20.0, 22.0])]), metadata=md, timeout=10
    )
    logs_service_pb2_grpc.LogsServiceStub(channel).Export(
        log_request("grpc-svc", [make_log("over grpc", 13)]), metadata=md, timeout=10
    )
    assert query(collector, "traces", trace_id=TRACE)["traces"][0]["root_name"] == "rpc"
    assert query(collector, "metrics", name="temp", agg="avg")["series"][0]["value"] == 21.0
    logs = query(collector, "logs", service="grpc-svc")["logs"]
    assert [(e["body"], e["severity"]) for e in logs] == [("over grpc", "WARN")]


def test_unauthenticated_call_stores_nothing(collector: Collector, channel: grpc.Channel) -> None:
    stub = logs_service_pb2_grpc.LogsServiceStub(channel)
    request = log_request("intruder", [make_log("should not land")])
    bad = (("authorization", f"Bearer {KEY_A.key_id}:tfs_wrong"),)
    for metadata in ((), bad):
        with pytest.raises(grpc.RpcError) as info:
            stub.Export(request, metadata=metadata, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert query(collector, "logs")["logs"] == []


def test_key_headers_accepted_and_scoped(collector: Collector, channel: grpc.Channel) -> None:
    md = (
        ("x-telemetryflow-key-id", KEY_B.key_id),
        ("x-telemetryflow-key-secret", KEY_B.key_secret),
    )
    logs_service_pb2_grpc.LogsServiceStub(channel).Export(
        log_request("beta-svc", [make_log("beta only")]), metadata=md, timeout=10
    )
    assert query(collector, "logs")["logs"] == []  # KEY_A sees nothing of beta
    beta = httpx.get(f"{collector.http_endpoint}/v1/logs/query", headers=headers_for(KEY_B))
    assert [e["body"] for e in beta.json()["logs"]] == ["beta only"]


def _retry_info(error: grpc.RpcError) -> error_details_pb2.RetryInfo:
    trailers = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    return info


def test_rate_limit_gives_unavailable_with_retry_info(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector(rate_limit=1.0)  # burst of 2, then one per second
    stub_request = log_request("busy", [make_log("x")])
    codes = []
    last_error: grpc.RpcError | None = None
    with grpc.insecure_channel(collector.grpc_endpoint or "") as ch:
        stub = logs_service_pb2_grpc.LogsServiceStub(ch)
        for _ in range(4):
            try:
                stub.Export(stub_request, metadata=metadata_for(KEY_A), timeout=10)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as exc:
                codes.append(exc.code())  # type: ignore[attr-defined]
                last_error = exc
    assert codes[:2] == [grpc.StatusCode.OK, grpc.StatusCode.OK]
    assert grpc.StatusCode.UNAVAILABLE in codes[2:]
    assert last_error is not None
    assert _retry_info(last_error).retry_delay.seconds >= 1
    with collector.store.reader() as conn:  # queries share the key's rate limit: read directly
        stored = conn.execute("SELECT count(*) FROM logs").fetchone()[0]
    assert stored == codes.count(grpc.StatusCode.OK)  # nothing accepted then dropped


def test_oversized_grpc_message_refused(make_collector: Callable[..., Collector]) -> None:
    collector = make_collector(max_body_bytes=2048)
    request = log_request("big", [make_log("x" * 5000)])
    with (
        grpc.insecure_channel(collector.grpc_endpoint or "") as ch,
        pytest.raises(grpc.RpcError) as info,
    ):
        logs_service_pb2_grpc.LogsServiceStub(ch).Export(
            request, metadata=metadata_for(KEY_A), timeout=10
        )
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_grpc_checks_credentials_before_parsing(collector: Collector) -> None:
    with grpc.insecure_channel(collector.grpc_endpoint or "") as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        garbage = b"\xff\xff\xff\xff garbage"
        with pytest.raises(grpc.RpcError) as anonymous:
            export(garbage, timeout=10)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as malformed:
            export(garbage, metadata=metadata_for(KEY_A), timeout=10)
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_size_cap_applies_after_decompression(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector(max_body_bytes=2048)
    body = log_request("bomb", [make_log("x" * 500_000)]).SerializeToString()  # gzips to ~1 KB
    with grpc.insecure_channel(
        collector.grpc_endpoint or "", compression=grpc.Compression.Gzip
    ) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
        with pytest.raises(grpc.RpcError) as info:
            export(body, metadata=metadata_for(KEY_A), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with collector.store.reader() as conn:
        assert conn.execute("SELECT count(*) FROM logs").fetchone() == (0,)


def test_many_calls_on_one_channel(collector: Collector, channel: grpc.Channel) -> None:
    """Each finished call gives its stream back: more calls than a connection's stream
    limit (16) go through one channel, one after another."""
    stub = trace_service_pb2_grpc.TraceServiceStub(channel)
    for n in range(40):
        span = make_span(TRACE, f"{n + 1:016x}", f"call-{n}")
        stub.Export(trace_request("svc", [span]), metadata=metadata_for(KEY_A), timeout=20)
    spans = query(collector, "traces", trace_id=TRACE)["traces"][0]["spans"]
    assert len(spans) == 40
