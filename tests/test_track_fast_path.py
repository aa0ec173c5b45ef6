"""``track``'s shortcuts export what the general paths export.

Two clients send to one real receiver and run the same tracked calls: ``fast`` with
its shortcuts (the duration series bound once per tracked name, attributes set
straight into a light span's dict, light spans encoded from their fields); ``slow``
with each shortcut turned off at its seam (no bound series, a span attribute length
limit so every ``set_attribute`` goes through ``BoundedAttributes``). A fake clock
makes the durations equal, so histogram points and exemplar values compare exactly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import SpanKind

from _support import builder_for
from telemetryflow import TelemetryFlowClient
from telemetryflow._exporting.encode import OtlpEncoder
from telemetryflow._extras import track as _track
from telemetryflow._extras.track import DURATION_METRIC
from telemetryflow._recording.instruments import MetricRecorder
from telemetryflow._recording.light_spans import LightSpan
from telemetryflow._scrubbing.scrubber import Scrubber
from telemetryflow.testing import OTLPReceiver

original_record = _track.record_bound


class _Clock:
    """``time.perf_counter`` for ``_track``: 2.5 ms per tracked call, in either client."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def perf_counter(self) -> float:
        return next(self._ticks) * 0.00125


def _run(client: TelemetryFlowClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_track, "time", _Clock())

    @client.track("checkout")
    def checkout(fail: bool = False) -> None:
        if fail:
            raise ValueError("declined")

    for _ in range(3):
        checkout()
    with pytest.raises(ValueError):
        checkout(fail=True)
    with client.track("block"):
        pass
    with client.span("attributes", attributes={"a": 1, "b": "x", "c": True}):
        pass
    tracer = client.tracer
    assert tracer is not None
    with tracer.start_as_current_span("set", attributes={"a": 1, "b": "x"}) as current:
        current.set_attribute("a", 2)  # replaced: goes last
        current.set_attribute("d", 0.5)
        current.set_attribute("e", [1, 2])  # not plain: BoundedAttributes either way
        current.set_attribute("f", "y")


def _spans(receiver: OTLPReceiver, service: str) -> list[Any]:
    found = [s for s in receiver.spans() if s.resource.get("service.name") == service]
    return sorted(found, key=lambda s: s.span.start_time_unix_nano)


def _durations(receiver: OTLPReceiver, service: str) -> dict[bytes, Any]:
    """The newest point of each series: periodic exports may arrive out of order, and
    points are cumulative, so the newest is the one with the latest time."""
    newest: dict[bytes, Any] = {}
    for m in receiver.metrics():
        if m.resource.get("service.name") != service or m.name != DURATION_METRIC:
            continue
        for point in m.metric.histogram.data_points:
            key = b"".join(kv.SerializeToString() for kv in point.attributes)
            if key not in newest or point.time_unix_nano > newest[key].time_unix_nano:
                newest[key] = point
    return newest


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as running:
        yield running


def test_tracked_calls_export_the_same_either_way(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = builder_for(receiver).with_service("fast").build()
    fast.initialize()
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100000")
    slow = builder_for(receiver).with_service("slow").build()
    slow.initialize()
    monkeypatch.delenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT")
    slow_recorder = slow._metrics
    original = MetricRecorder.bound

    def bound(self: MetricRecorder, *args: Any) -> Any:
        return None if self is slow_recorder else original(self, *args)

    monkeypatch.setattr(MetricRecorder, "bound", bound)
    taken: list[Any] = []
    monkeypatch.setattr(_track, "record_bound", lambda *a: taken.append(a) or original_record(*a))
    try:
        _run(fast, monkeypatch)
        _run(slow, monkeypatch)
        for client in (fast, slow):
            client.flush(timeout=10)
        assert receiver.wait_for(lambda: len(_spans(receiver, "slow")) == 7, timeout=10)
        a, b = _spans(receiver, "fast"), _spans(receiver, "slow")
        assert len(a) == len(b) == 7
        for x, y in zip(a, b, strict=True):
            assert x.name == y.name
            assert list(x.span.attributes) == list(y.span.attributes)  # values and order
            assert x.span.status == y.span.status
            assert [e.name for e in x.span.events] == [e.name for e in y.span.events]
            assert x.span.dropped_attributes_count == y.span.dropped_attributes_count
        assert [kv.key for kv in a[-1].span.attributes] == ["b", "a", "d", "e", "f"]
        fast_points = _durations(receiver, "fast")
        slow_points = _durations(receiver, "slow")
        assert fast_points.keys() == slow_points.keys() and len(fast_points) == 3
        assert sorted(p.count for p in fast_points.values()) == [1, 1, 3]
        for key, x in fast_points.items():
            y = slow_points[key]
            assert (x.sum, list(x.bucket_counts), list(x.attributes)) == (
                y.sum,
                list(y.bucket_counts),
                list(y.attributes),
            )
            assert [e.as_double for e in x.exemplars] == [e.as_double for e in y.exemplars]
            ids = {s.span.span_id for s in a}
            assert all(e.span_id in ids for e in x.exemplars)
        assert taken  # the shortcut was taken for the fast client
    finally:
        fast.shutdown(timeout=5)
        slow.shutdown(timeout=5)


@pytest.mark.parametrize("scrubbing", [False, True])
def test_light_spans_encode_as_the_official_encoder_reads_them(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, scrubbing: bool
) -> None:
    """Light spans are encoded from their fields; the official encoder reads the
    ``ReadableSpan`` properties: same message, same bytes."""
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "4")
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "2")
    client = builder_for(receiver).build()
    client.initialize()
    spans: list[Any] = []
    pipeline = client._pipeline
    assert pipeline is not None and pipeline.span_queue is not None
    monkeypatch.setattr(pipeline.span_queue, "put", spans.append)
    try:
        _run(client, monkeypatch)
        with client.span("many", attributes={f"k{i}": i for i in range(6)}) as span_id:
            for i in range(3):
                client.add_span_event(span_id, f"e{i}", {"password": "pw", "n": i})
        tracer = client.tracer
        assert tracer is not None
        with (
            tracer.start_as_current_span("parent"),
            tracer.start_as_current_span("child", kind=SpanKind.CLIENT) as child,
        ):
            child.add_link(child.get_span_context(), {"link": 1})
            child.record_exception(RuntimeError("boom"))
    finally:
        client.shutdown(timeout=5)
    assert spans and all(type(s) is LightSpan for s in spans)
    assert any(s.dropped_attributes for s in spans) and any(s.dropped_events for s in spans)
    scrubber = Scrubber(secrets=("pw",)) if scrubbing else None
    official = encode_spans(spans)
    if scrubber is not None:
        scrubber("traces", official)
    ours = ExportTraceServiceRequest.FromString(OtlpEncoder(scrubber).spans(spans, {}))
    assert ours == official
    assert ours.SerializeToString() == official.SerializeToString()


def test_processors_added_later_see_every_hook_in_order(receiver: OTLPReceiver) -> None:
    """Light spans skip only the base class's empty hooks: a processor that
    overrides them, added after the client started, sees each one."""
    from opentelemetry.sdk.trace import SpanProcessor

    seen: list[tuple[str, str]] = []

    class Watching(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            seen.append(("start", span.name))

        def _on_ending(self, span: Any) -> None:
            seen.append(("ending", span.name))

        def on_end(self, span: Any) -> None:
            seen.append(("end", span.name))

    client = builder_for(receiver).build()
    client.initialize()
    try:
        with client.span("before"):
            pass
        pipeline = client._pipeline
        assert pipeline is not None
        provider = pipeline.tracer_provider
        assert provider is not None
        provider.add_span_processor(Watching())
        with client.span("after"):
            pass
        client.track("tracked")(lambda: None)()
        client.flush(timeout=10)
        assert receiver.wait_for(lambda: len(receiver.spans()) == 3, timeout=10)
    finally:
        client.shutdown(timeout=5)
    assert seen == [(hook, name) for name in ("after", "tracked")
                    for hook in ("start", "ending", "end")]  # fmt: skip
