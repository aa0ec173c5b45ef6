"""OTLP message builders and keys shared by the collector tests."""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from telemetryflow.collector import ApiKey

KEY_A = ApiKey("tfk_alpha0001", "tfs_alpha-secret-0001", "alpha")
KEY_B = ApiKey("tfk_beta0002", "tfs_beta-secret-0002", "beta")
SRC = str(Path(__file__).resolve().parents[2] / "src")


def headers_for(key: ApiKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.key_id}:{key.key_secret}"}


def metadata_for(key: ApiKey) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key.key_id}:{key.key_secret}"),)


def now_ns() -> int:
    return time.time_ns()


def kv(attrs: dict[str, Any]) -> list[KeyValue]:
    out = []
    for key, value in attrs.items():
        if isinstance(value, bool):
            any_value = AnyValue(bool_value=value)
        elif isinstance(value, int):
            any_value = AnyValue(int_value=value)
        elif isinstance(value, float):
            any_value = AnyValue(double_value=value)
        else:
            any_value = AnyValue(string_value=str(value))
        out.append(KeyValue(key=key, value=any_value))
    return out


def resource(service: str) -> Resource:
    return Resource(attributes=kv({"service.name": service}))


def make_span(
    trace_id: str,
    span_id: str,
    name: str,
    *,
    parent: str = "",
    start_ns: int | None = None,
    duration_ms: float = 10.0,
    error: bool = False,
    attrs: dict[str, Any] | None = None,
) -> Span:
    start = now_ns() - 1_000_000_000 if start_ns is None else start_ns
    return Span(
        trace_id=bytes.fromhex(trace_id),
        span_id=bytes.fromhex(span_id),
        parent_span_id=bytes.fromhex(parent) if parent else b"",
        name=name,
        kind=Span.SPAN_KIND_SERVER if not parent else Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=start,
        end_time_unix_nano=start + int(duration_ms * 1e6),
        status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_OK),
        attributes=kv(attrs or {}),
    )


def trace_request(service: str, spans: list[Span]) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=resource(service), scope_spans=[ScopeSpans(spans=spans)])
        ]
    )


def log_request(service: str, records: list[LogRecord]) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(resource=resource(service), scope_logs=[ScopeLogs(log_records=records)])
        ]
    )


def make_log(
    body: str, severity: int = 9, *, time_ns: int | None = None, trace_id: str = ""
) -> LogRecord:
    return LogRecord(
        time_unix_nano=now_ns() if time_ns is None else time_ns,
        severity_number=severity,  # type: ignore[arg-type]
        body=AnyValue(string_value=body),
        trace_id=bytes.fromhex(trace_id) if trace_id else b"",
    )


def metrics_request(service: str, metrics: list[Metric]) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=resource(service), scope_metrics=[ScopeMetrics(metrics=metrics)]
            )
        ]
    )


def gauge(name: str, values: list[float], attrs: dict[str, Any] | None = None) -> Metric:
    t = now_ns()
    points = [
        NumberDataPoint(time_unix_nano=t - i, as_double=v, attributes=kv(attrs or {}))
        for i, v in enumerate(values)
    ]
    return Metric(name=name, gauge=Gauge(data_points=points))


def counter(
    name: str,
    values: list[float],
    *,
    cumulative: bool,
    attrs: dict[str, Any] | None = None,
    start_ns: int = 1,
    times: list[int] | None = None,
) -> Metric:
    base = now_ns() - 10_000_000
    temporality = (
        AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
        if cumulative
        else AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    )
    points = [
        NumberDataPoint(
            time_unix_nano=(times[i] if times else base + i * 1000),
            as_double=v,
            start_time_unix_nano=start_ns,
            attributes=kv(attrs or {}),
        )
        for i, v in enumerate(values)
    ]
    return Metric(
        name=name,
        sum=Sum(data_points=points, is_monotonic=True, aggregation_temporality=temporality),
    )


def histogram(
    name: str,
    bounds: list[float],
    counts: list[int],
    *,
    total_sum: float = 0.0,
    cumulative: bool = False,
    attrs: dict[str, Any] | None = None,
    time_ns: int | None = None,
) -> Metric:
    point = HistogramDataPoint(
        time_unix_nano=now_ns() if time_ns is None else time_ns,
        start_time_unix_nano=1,
        count=sum(counts),
        sum=total_sum,
        explicit_bounds=bounds,
        bucket_counts=counts,
        attributes=kv(attrs or {}),
    )
    temporality = (
        AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
        if cumulative
        else AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    )
    return Metric(
        name=name, histogram=Histogram(data_points=[point], aggregation_temporality=temporality)
    )


def gz(data: bytes) -> bytes:
    return gzip.compress(data)
