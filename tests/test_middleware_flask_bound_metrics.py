"""The HTTP middleware's duration histogram and closing span attributes take
shortcuts; they must export what the SDK's own calls export.

Two clients send to one real receiver. ``fast`` records through
:class:`BoundHistogram` (a reused attribute dict goes straight to its aggregation
after its first value) and sets closing attributes on a light span's dict; ``slow``
records through the SDK's ``Histogram.record`` and, with a span attribute length
limit set, sets attributes through ``BoundedAttributes``. Same values, same
contexts (sampled, unsampled, none): same points, exemplars and attributes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from _support import builder_for
from telemetryflow import TelemetryFlowClient
from telemetryflow._recording.instruments import BoundHistogram
from telemetryflow.testing import OTLPReceiver

NAME = "http.server.request.duration"
SAMPLED = SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.SAMPLED))
UNSAMPLED = SpanContext(0xABD, 0xDE0, True, TraceFlags(TraceFlags.DEFAULT))


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as running:
        yield running


def _client(receiver: OTLPReceiver, service: str) -> TelemetryFlowClient:
    client = builder_for(receiver).with_service(service).build()
    client.initialize()
    return client


def _record(client: TelemetryFlowClient, bound: bool) -> None:
    meter = client.meter
    assert meter is not None
    histogram: Any = meter.create_histogram(NAME, unit="s", explicit_bucket_boundaries_advisory=[
        0.005, 0.01, 0.05, 0.1, 0.5, 1.0])  # fmt: skip
    if bound:
        histogram = BoundHistogram(histogram)
    ok = {"http.request.method": "GET", "http.route": "/users/<id>", "status": 200}
    failed = {"http.request.method": "POST", "error.type": "500", "status": 500}
    sampled = trace.set_span_in_context(NonRecordingSpan(SAMPLED))
    unsampled = trace.set_span_in_context(NonRecordingSpan(UNSAMPLED))
    for i, context in enumerate([None, sampled, unsampled, sampled, None, sampled] * 3):
        attributes = ok if i % 4 else failed
        if bound and context is sampled and i % 2:  # the caller's hint: a sampled span
            histogram.record(0.003 * (i + 1), attributes, context, sampled=True)
        else:
            histogram.record(0.003 * (i + 1), attributes, context=context)
    with trace.use_span(NonRecordingSpan(SAMPLED)):
        histogram.record(0.25, ok)  # the current context, as the SDK's call takes it
        histogram.record(0.75, failed, context=unsampled)


def _points(receiver: OTLPReceiver, service: str) -> list[Any]:
    """The newest point of each series (periodic exports may arrive out of order)."""
    newest: dict[bytes, Any] = {}
    for m in receiver.metrics():
        if m.resource.get("service.name") != service or m.name != NAME:
            continue
        for point in m.metric.histogram.data_points:
            key = b"".join(kv.SerializeToString() for kv in point.attributes)
            if key not in newest or point.time_unix_nano > newest[key].time_unix_nano:
                newest[key] = point
    return sorted(newest.values(), key=lambda p: p.count)


def test_bound_histogram_exports_what_histogram_record_exports(receiver: OTLPReceiver) -> None:
    fast, slow = _client(receiver, "fast"), _client(receiver, "slow")
    try:
        _record(fast, bound=True)
        _record(slow, bound=False)
        fast.flush(timeout=10)
        slow.flush(timeout=10)
        a, b = _points(receiver, "fast"), _points(receiver, "slow")
    finally:
        fast.shutdown(timeout=5)
        slow.shutdown(timeout=5)
    assert len(a) == len(b) == 2
    for x, y in zip(a, b, strict=True):
        assert list(x.attributes) == list(y.attributes)
        assert (x.count, x.sum, x.min, x.max) == (y.count, y.sum, y.min, y.max)
        assert list(x.bucket_counts) == list(y.bucket_counts)
        for e in (*x.exemplars, *y.exemplars):
            e.time_unix_nano = 0
        assert list(x.exemplars) == list(y.exemplars)
    assert any(e.span_id for p in a for e in p.exemplars)  # sampled contexts gave exemplars


def test_closing_attributes_land_as_bounded_attributes_put_them(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = _client(receiver, "fast")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100000")
    slow = _client(receiver, "slow")
    try:
        for client in (fast, slow):
            tracer = client.tracer
            assert tracer is not None
            span = tracer.start_span("GET", attributes={"http.route": "x", "url.path": "/u/1"})
            span.set_attributes({"http.route": "/u/<id>", "http.response.status_code": 200})
            span.set_attributes({"error.type": "500", "bad": [1, "a"]})  # not plain either way
            span.end()
            client.flush(timeout=10)
        assert receiver.wait_for(lambda: len(receiver.spans()) == 2, timeout=10)
    finally:
        fast.shutdown(timeout=5)
        slow.shutdown(timeout=5)
    by_service = {s.resource.get("service.name"): s.span for s in receiver.spans()}
    assert list(by_service["fast"].attributes) == list(by_service["slow"].attributes)
    assert [kv.key for kv in by_service["fast"].attributes][:3] == [
        "url.path",
        "http.route",
        "http.response.status_code",
    ]
