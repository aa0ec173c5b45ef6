"""What the lean ingest path must still find and store.

The capture pass (errors, product events) and the exemplar pass run only when the
row pass saw something for them. These tests hold the shortcut to what the full
passes store, in the cases the row pass itself refuses or skips.
"""

from __future__ import annotations

import time

import httpx
from collector_helpers import KEY_A, headers_for, kv, make_log, make_span, resource
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Exemplar,
    Histogram,
    HistogramDataPoint,
    Metric,
    ResourceMetrics,
    ScopeMetrics,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from telemetryflow.collector import Collector

PB = {"Content-Type": "application/x-protobuf", **headers_for(KEY_A)}
PAST_2262 = 2**63 + 1


def _post(collector: Collector, path: str, body: bytes) -> httpx.Response:
    response = httpx.post(f"{collector.http_endpoint}{path}", content=body, headers=PB)
    assert response.status_code == 200, response.text
    return response


def _count(collector: Collector, sql: str) -> int:
    with collector.store.reader() as conn:
        return int(conn.execute(sql).fetchone()[0])


def _capture(error_id: str) -> Span.Event:
    attrs = kv({"error.id": error_id, "error.fingerprint": "fp-1", "exception.type": "E"})
    return Span.Event(name="exception", time_unix_nano=time.time_ns(), attributes=attrs)


def test_captures_in_refused_spans_and_records_are_kept(collector: Collector) -> None:
    """A span or record refused as a row still carries its capture, as before."""
    refused = make_span("00" * 16, "cd" * 8, "zero trace id")  # refused: all-zero trace id
    refused.events.append(_capture("from-span"))
    plain = make_span("ab" * 16, "cd" * 8, "plain")  # no events: the capture pass is not due
    block = ResourceSpans(
        resource=resource("svc"), scope_spans=[ScopeSpans(spans=[plain, refused])]
    )
    request = ExportTraceServiceRequest(resource_spans=[block])
    answer = _post(collector, "/v1/traces", request.SerializeToString())
    assert answer.content  # partial success: one span refused
    record = make_log("boom", time_ns=PAST_2262)  # refused as a log row
    record.event_name = "exception"
    record.attributes.extend(kv({"error.id": "from-log", "error.fingerprint": "fp-1"}))
    event = make_log("signed up")
    event.event_name = "signup"
    records = ScopeLogs(log_records=[record, event])
    logs = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource("svc"), scope_logs=[records])]
    )
    _post(collector, "/v1/logs", logs.SerializeToString())
    with collector.store.reader() as conn:
        errors = sorted(r[0] for r in conn.execute("SELECT error_id FROM error_occurrences"))
        events = [r[0] for r in conn.execute("SELECT event FROM product_events")]
    assert errors == ["from-log", "from-span"]
    assert events == ["signup"]
    assert _count(collector, "SELECT count(*) FROM spans") == 1


def test_exemplars_of_histograms_beside_summaries_are_kept(collector: Collector) -> None:
    """Summary points have no exemplars; a histogram's in the same request still count."""
    now = time.time_ns()
    exemplar = Exemplar(
        time_unix_nano=now, as_double=2.5, trace_id=b"\x01" * 16, span_id=b"\x02" * 8
    )
    point = HistogramDataPoint(
        time_unix_nano=now, count=1, explicit_bounds=[1.0], bucket_counts=[0, 1],
        exemplars=[exemplar],
    )  # fmt: skip
    histogram = Metric(
        name="latency", histogram=Histogram(aggregation_temporality=1, data_points=[point])
    )
    summary = Metric(
        name="s", summary=Summary(data_points=[SummaryDataPoint(time_unix_nano=now, count=1)])
    )
    metrics = ScopeMetrics(metrics=[summary, histogram])
    request = ExportMetricsServiceRequest(
        resource_metrics=[ResourceMetrics(resource=resource("svc"), scope_metrics=[metrics])]
    )
    _post(collector, "/v1/metrics", request.SerializeToString())
    assert _count(collector, "SELECT count(*) FROM metric_points") == 2
    assert _count(collector, "SELECT count(*) FROM metric_exemplars WHERE value = 2.5") == 1
