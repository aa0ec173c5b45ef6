"""The recording fast paths export exactly what the SDK's own calls export.

Metrics: after its first value, an attribute set is recorded straight into the SDK
aggregation that first call created. Spans: ``span()`` and ``start_span`` make
:class:`~telemetryflow._recording.light_spans.LightSpan` objects instead of SDK spans.
Each test runs the same calls through the fast path and through the SDK's path
(forced by disabling the fast one) and compares what is exported, timestamps and
random ids aside. No timing here: speed is the benchmarks' business.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from telemetryflow import SpanKind, TelemetryFlowBuilder
from telemetryflow._recording import instruments as _instruments
from telemetryflow._recording import light_spans as _light_spans
from telemetryflow._recording.light_spans import LightSpan, LightTracer, light_tracer
from telemetryflow.testing import TelemetryCapture, attrs, capture


def _capture(fast: bool, monkeypatch: pytest.MonkeyPatch, limit: int = 2000) -> TelemetryCapture:
    builder = TelemetryFlowBuilder().with_service("hot").with_cardinality_limit(limit)
    if fast:
        return capture(builder)
    with monkeypatch.context() as patch:
        patch.setattr(
            _light_spans.LightFactory, "for_tracer", classmethod(lambda cls, tracer: None)
        )
        cap = capture(builder)
    recorder = cap.client._metrics
    assert recorder is not None
    recorder._remember = lambda *args: None  # type: ignore[method-assign]
    return cap


@pytest.fixture
def both(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TelemetryCapture, TelemetryCapture]]:
    fast, slow = _capture(True, monkeypatch), _capture(False, monkeypatch)
    try:
        yield fast, slow
    finally:
        fast.close()
        slow.close()


# -- metrics ---------------------------------------------------------------------------
def _points(cap: TelemetryCapture) -> dict[str, list[tuple[Any, ...]]]:
    """Every exported point, without timestamps, in a comparable form."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for record in cap.metrics():
        metric = record.metric
        kind = metric.WhichOneof("data")
        rows = []
        for point in getattr(metric, kind).data_points:
            typed = tuple(
                sorted(
                    (kv.key, kv.value.WhichOneof("value"), str(attrs([kv])[kv.key]))
                    for kv in point.attributes
                )
            )
            if kind == "histogram":
                value: Any = (
                    point.count,
                    point.sum,
                    tuple(point.bucket_counts),
                    point.min,
                    point.max,
                )
            else:
                value = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
            exemplars = tuple(
                (e.span_id.hex(), e.trace_id.hex(), e.as_double or e.as_int)
                for e in getattr(point, "exemplars", ())
            )
            rows.append((typed, value, len(exemplars)))
        out[f"{kind}:{metric.name}:{metric.unit}"] = sorted(rows)
    return out


def _metric_calls(cap: TelemetryCapture) -> None:
    client = cap.client
    for i in range(50):
        client.increment_counter("requests", 1, {"route": "/a", "code": 200})
        client.increment_counter("requests", 2, {"code": 200, "route": "/a"})  # other order
        client.increment_counter("requests", 1, {"route": "/b", "code": 500})
        client.record_histogram("latency", i * 1.5, "ms", {"route": "/a"})
        client.record_metric("size", i, "By", None)
        client.record_gauge("depth", i, {"queue": "q"})
    for flag in (1, True, 1.0):  # equal in Python, three series in OpenTelemetry
        client.increment_counter("typed", 1, {"v": flag})
        client.increment_counter("typed", 1, {"v": flag})
    odd: dict[Any, Any] = {"list": [1, 2], 3: "non-str key", "": "empty key"}
    client.increment_counter("odd", 1, odd)
    client.increment_counter("odd", 1, dict(odd))
    client.increment_counter("odd", 1, {"long": "x" * 5000})
    client.increment_counter("odd", 1, {"long": "x" * 5000})
    client.increment_counter("odd", 1, {"enum": SpanKind.SERVER})
    client.increment_counter("odd", 1, {"enum": SpanKind.SERVER})
    client.increment_counter("requests", -1, {"route": "/a", "code": 200})  # dropped
    client.record_gauge("depth", float("nan"), {"queue": "q"})  # dropped
    client.record_histogram("latency", True, "ms", {"route": "/a"})  # dropped


def test_metric_points_match_the_sdk_path(
    both: tuple[TelemetryCapture, TelemetryCapture],
) -> None:
    fast, slow = both
    _metric_calls(fast)
    _metric_calls(slow)
    assert _points(fast) == _points(slow)
    recorder = fast.client._metrics
    assert recorder is not None
    assert any(inst.series for inst in recorder._instruments.values())  # the fast path ran
    typed = _points(fast)["sum:typed:"]
    assert [row[1] for row in typed] == [2, 2, 2]
    assert fast.client.health()["signals"]["metrics"]["dropped"] == 3


def test_exemplars_inside_a_span_match_the_sdk_path(
    both: tuple[TelemetryCapture, TelemetryCapture],
) -> None:
    for cap in both:
        with cap.client.span("work"):
            for i in range(20):
                cap.client.record_histogram("latency", float(i), "ms", {"route": "/a"})
                cap.client.increment_counter("hits", 1, {"route": "/a"})
    fast, slow = (_points(cap) for cap in both)
    assert fast == slow
    assert fast["histogram:latency:ms"][0][2] > 0  # exemplars were taken


def test_exemplars_link_to_the_recording_span(monkeypatch: pytest.MonkeyPatch) -> None:
    with _capture(True, monkeypatch) as cap:
        for _ in range(3):
            cap.client.record_histogram("latency", 1.0, "ms", {"route": "/a"})
        with cap.client.span("work") as span_id:
            cap.client.record_histogram("latency", 2.0, "ms", {"route": "/a"})
        metric = cap.find_metric("latency")
        assert metric is not None
        exemplar = metric.histogram.data_points[0].exemplars[0]
        assert exemplar.span_id.hex() == span_id
        assert exemplar.as_double == 2.0


def test_cardinality_limit_still_folds_into_overflow(monkeypatch: pytest.MonkeyPatch) -> None:
    with _capture(True, monkeypatch, limit=3) as cap:
        for _ in range(4):
            for user in range(6):
                cap.client.increment_counter("by_user", 1, {"user": user})
        rows = _points(cap)["sum:by_user:"]
    values = {row[0]: row[1] for row in rows}
    assert len(values) == 4
    assert values[(("otel.metric.overflow", "bool_value", "True"),)] == 12
    assert sum(values.values()) == 24


def test_the_callers_dict_can_change_afterwards(monkeypatch: pytest.MonkeyPatch) -> None:
    with _capture(True, monkeypatch) as cap:
        attributes: dict[str, Any] = {"route": "/a"}
        cap.client.increment_counter("c", 1, attributes)
        cap.client.increment_counter("c", 1, attributes)
        attributes["route"] = "/b"
        cap.client.increment_counter("c", 5, attributes)
        rows = _points(cap)["sum:c:"]
    assert [row[1] for row in rows] == [2, 5]


def test_an_unexpected_sdk_layout_keeps_the_sdk_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(instrument: Any, attributes: Any) -> None:
        raise _instruments._Unbindable("test")

    monkeypatch.setattr(_instruments, "_bind", broken)
    with _capture(True, monkeypatch) as cap:
        for _ in range(3):
            cap.client.increment_counter("c", 1, {"a": "b"})
        recorder = cap.client._metrics
        assert recorder is not None
        assert not recorder._instruments[("counter", "c", "")].bindable
        assert [row[1] for row in _points(cap)["sum:c:"]] == [3]


# -- spans -----------------------------------------------------------------------------
def _event_attributes(event: Any) -> list[tuple[str, Any]]:
    """Event attributes; a stack trace reduced to its last line (the frames differ)."""
    found = attrs(event.attributes)
    if "exception.stacktrace" in found:
        found["exception.stacktrace"] = found["exception.stacktrace"].strip().splitlines()[-1]
    return list(found.items())


def _span_rows(cap: TelemetryCapture) -> list[tuple[Any, ...]]:
    """Exported spans without ids and times: what the SDK path must agree on."""
    by_id = {record.span.span_id: record.name for record in cap.spans()}
    rows = []
    for record in cap.spans():
        span = record.span
        rows.append(
            (
                record.scope,
                record.resource["service.name"],
                span.name,
                span.kind,
                span.trace_state,
                by_id.get(span.parent_span_id, span.parent_span_id.hex()),
                span.flags,
                list(attrs(span.attributes).items()),
                span.dropped_attributes_count,
                [(e.name, _event_attributes(e), e.dropped_attributes_count) for e in span.events],
                span.dropped_events_count,
                [
                    (
                        lk.trace_id.hex(),
                        lk.span_id.hex(),
                        list(attrs(lk.attributes).items()),
                        lk.flags,
                    )
                    for lk in span.links
                ],
                span.dropped_links_count,
                (span.status.code, span.status.message),
                span.end_time_unix_nano >= span.start_time_unix_nano > 0,
            )
        )
    return sorted(rows, key=repr)


def _span_calls(cap: TelemetryCapture) -> None:
    client = cap.client
    with client.span("outer", SpanKind.SERVER, {"route": "/a", "n": 1, "list": [1, 2]}) as outer:
        client.add_span_event(outer, "evt", {"k": "v", "obj": object.__name__})
        span = trace.get_current_span()
        span.set_attribute("late", 3)
        span.set_attributes({"more": True, "tuple": ("a", "b"), "bad": {"no": "dicts"}})
        span.add_event("api-event", {"x": 1.5})
        span.add_event("stamped", timestamp=12345)
        span.add_link(SpanContext(0xABC, 0xDEF, is_remote=True), {"link": "yes"})
        span.add_link(SpanContext(0, 0, is_remote=False))  # invalid: ignored
        span.update_name("outer-renamed")
        with client.tracer.start_as_current_span("sdk-child"):  # type: ignore[union-attr]
            client.log_info("inside")
        inner = client.start_span("inner", "client", {"password": "pw"})  # type: ignore[arg-type]
        client.add_span_event(inner, "inner-evt")
        client.end_span(inner, ValueError("bad input"))
    with pytest.raises(RuntimeError), client.span("failing"):
        raise RuntimeError("boom")
    started = client.start_span("ok-then-error")
    live = client._spans.get(started) if client._spans else None
    assert live is not None
    live.set_status(Status(StatusCode.OK))
    live.set_status(Status(StatusCode.ERROR, "ignored after OK"))
    live.set_status(StatusCode.UNSET)
    client.end_span(started)
    remote = SpanContext(
        0x1234, 0x5678, True, TraceFlags(TraceFlags.SAMPLED), TraceState([("vendor", "v1")])
    )
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(remote)))
    try:
        with client.span("remote-child"):
            pass
    finally:
        otel_context.detach(token)
    unsampled = SpanContext(0x99, 0x98, True, TraceFlags(TraceFlags.DEFAULT))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(unsampled)))
    try:
        with client.span("not-sampled") as not_sampled:
            assert not trace.get_current_span().is_recording()
            assert not_sampled != "0" * 16
    finally:
        otel_context.detach(token)


def test_spans_match_the_sdk_path(both: tuple[TelemetryCapture, TelemetryCapture]) -> None:
    fast, slow = both
    _span_calls(fast)
    _span_calls(slow)
    assert _span_rows(fast) == _span_rows(slow)
    names = {record.name for record in fast.spans()}
    assert "not-sampled" not in names and "remote-child" in names
    logs = fast.logs()
    assert logs[0].log.span_id != b""


def test_the_facade_uses_light_spans_and_the_sdk_tracer_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _capture(True, monkeypatch) as cap:
        client = cap.client
        with client.span("light"):
            current = trace.get_current_span()
            assert isinstance(current, LightSpan)
            assert current.is_recording()
            sdk_tracer = client._spans.tracer  # type: ignore[union-attr]
            with sdk_tracer.start_as_current_span("sdk") as child:
                assert not isinstance(child, LightSpan)
                assert child.parent.span_id == current.get_span_context().span_id  # type: ignore[union-attr]
            # The tracer handed to integrations is the light one, same parenting.
            with client.tracer.start_as_current_span("integration") as light:  # type: ignore[union-attr]
                assert isinstance(light, LightSpan)
                assert light.parent.span_id == current.get_span_context().span_id  # type: ignore[union-attr]
        assert not current.is_recording()
        assert repr(current).startswith('LightSpan(name="light"')


def test_ended_light_spans_warn_like_sdk_spans(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with _capture(True, monkeypatch) as cap:
        span_id = cap.client.start_span("s")
        span = cap.client._spans.get(span_id) if cap.client._spans else None
        assert isinstance(span, LightSpan)
        cap.client.end_span(span_id)
        with caplog.at_level(logging.WARNING, logger="opentelemetry.sdk.trace"):
            span.end()
            span.set_attribute("k", "v")
            span.add_event("late")
            span.set_status(StatusCode.ERROR)
            span.update_name("late")
        messages = [r.getMessage() for r in caplog.records if r.name == "opentelemetry.sdk.trace"]
        assert messages == [
            "Calling end() on an ended span.",
            "Setting attribute on ended span.",
            "Tried calling _add_event on an ended span.",
            "Tried calling set_status on an ended span.",
            "Tried calling update_name on an ended span.",
        ]
        assert [record.name for record in cap.spans()] == ["s"]


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2"),
        ("OTEL_SPAN_EVENT_COUNT_LIMIT", "1"),
        ("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "1"),
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "3"),
    ],
)
def test_span_limits_apply_as_in_the_sdk(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str
) -> None:
    monkeypatch.setenv(env, value)
    fast, slow = _capture(True, monkeypatch), _capture(False, monkeypatch)
    try:
        for cap in (fast, slow):
            with cap.client.span("limited", attributes={"a": "long value", "b": 2, "c": 3}) as sid:
                cap.client.add_span_event(sid, "e1", {"x": "long value", "y": 1})
                cap.client.add_span_event(sid, "e2")
                trace.get_current_span().set_attribute("d", "long value")
        assert _span_rows(fast) == _span_rows(slow)
    finally:
        fast.close()
        slow.close()


def test_another_sampler_takes_the_sdk_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    with _capture(True, monkeypatch) as cap:
        assert cap.client._spans is not None and cap.client._spans._factory is None
        with cap.client.span("dropped"):
            assert not trace.get_current_span().is_recording()
        assert cap.spans() == []


def test_eviction_of_open_light_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    builder = TelemetryFlowBuilder().with_service("hot")
    builder._explicit["max_open_spans"] = 2
    with capture(builder) as cap:
        ids = [cap.client.start_span(f"s{i}") for i in range(3)]
        for span_id in ids[1:]:
            cap.client.end_span(span_id)
        rows = {record.name: record.attributes for record in cap.spans()}
    assert rows["s0"] == {"telemetryflow.span.abandoned": True}
    assert set(rows) == {"s0", "s1", "s2"}


def test_a_link_passed_to_the_api_keeps_its_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    with _capture(True, monkeypatch) as cap:
        with cap.client.span("with-link"):
            trace.get_current_span().add_link(SpanContext(1, 2, False), {"k": [1, 2]})
        (record,) = cap.spans()
    assert attrs(record.span.links[0].attributes) == {"k": [1, 2]}


# -- the light tracer for integrations ---------------------------------------------------
def _tracer_calls(cap: TelemetryCapture, tracer: Any) -> None:
    remote = SpanContext(0x1234, 0x5678, True, TraceFlags(TraceFlags.SAMPLED))
    parent = trace.set_span_in_context(NonRecordingSpan(remote))
    links = [Link(SpanContext(7, 8, False), {"why": "batch"}), Link(SpanContext(0, 0, False))]
    span = tracer.start_span(
        "server", context=parent, kind=trace.SpanKind.SERVER, attributes={"a": 1}, links=links
    )
    span.end()
    tracer.start_span("stamped", start_time=1_000, attributes={"l": [1, 2]}).end(end_time=2_000)
    with pytest.raises(KeyError), tracer.start_as_current_span("failing", attributes={"b": "x"}):
        raise KeyError("k")
    with (
        pytest.raises(KeyError),
        tracer.start_as_current_span(
            "quiet", record_exception=False, set_status_on_exception=False
        ),
    ):
        raise KeyError("k")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
        cap.client.increment_counter("inside", 1)
    kept = tracer.start_span("manual", record_exception=False)
    with pytest.raises(ValueError), kept:
        raise ValueError("no event, but status")


def test_the_light_tracer_matches_the_sdk_tracer(
    both: tuple[TelemetryCapture, TelemetryCapture],
) -> None:
    fast, slow = both
    light = light_tracer(fast.client.tracer)  # type: ignore[arg-type]
    assert isinstance(light, LightTracer)
    _tracer_calls(fast, light)
    _tracer_calls(slow, slow.client.tracer)
    assert _span_rows(fast) == _span_rows(slow)
    stamped = next(r.span for r in fast.spans() if r.name == "stamped")
    assert (stamped.start_time_unix_nano, stamped.end_time_unix_nano) == (1_000, 2_000)
    assert light.resource is fast.client.tracer.resource  # type: ignore[union-attr]


def test_light_tracer_only_wraps_a_qualifying_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    with _capture(True, monkeypatch) as cap:
        tracer = cap.client.tracer
        assert tracer is not None and light_tracer(tracer) is tracer
    noop = trace.NoOpTracer()
    assert light_tracer(noop) is noop


def test_concurrent_recording_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    with _capture(True, monkeypatch) as cap:
        client = cap.client

        def work() -> None:
            for i in range(2000):
                client.increment_counter("shared", 1, {"route": "/a"})
                client.record_histogram("latency", float(i % 7), "ms", {"route": "/a"})

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        points = _points(cap)
    assert [row[1] for row in points["sum:shared:"]] == [8000]
    assert points["histogram:latency:ms"][0][1][0] == 8000


def test_a_span_ended_from_two_threads_is_exported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with _capture(True, monkeypatch) as cap:
        spans = [cap.client._spans.start(f"s{i}", "internal", None)[1] for i in range(200)]  # type: ignore[union-attr]
        barrier = threading.Barrier(2)

        def end_all() -> None:
            barrier.wait()
            for span in spans:
                span.end()

        threads = [threading.Thread(target=end_all) for _ in range(2)]
        logging.disable(logging.WARNING)  # "Calling end() on an ended span." 200 times
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            logging.disable(logging.NOTSET)
        assert len(cap.spans()) == 200
