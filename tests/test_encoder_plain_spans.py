"""The encoder's shortcut for plain light spans writes the official encoder's bytes.

Most spans the facade, ``track`` and the middleware make are "plain": attributes in a
plain dict, no events or links, no trace state, status unset. Their name and kind
bytes are cached per name and their fixed fields written in fewer steps; a batch whose
spans share one resource and scope skips the general grouping. Real light spans from
a real client (ended into a list instead of the queue) are encoded both ways and
compared byte for byte, and the shortcut is checked to have been taken.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import SpanKind, StatusCode

from _support import builder_for
from telemetryflow import TelemetryFlowClient
from telemetryflow._exporting.encode import OtlpEncoder
from telemetryflow._recording.light_spans import LightSpan
from telemetryflow._scrubbing.scrubber import Scrubber
from telemetryflow.testing import OTLPReceiver

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as running:
        yield running


def _collecting(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, service: str
) -> tuple[TelemetryFlowClient, list[Any]]:
    client = builder_for(receiver).with_service(service).build()
    client.initialize()
    ended: list[Any] = []
    pipeline = client._pipeline
    assert pipeline is not None and pipeline.span_queue is not None
    monkeypatch.setattr(pipeline.span_queue, "put", ended.append)
    return client, ended


def _record(client: TelemetryFlowClient) -> None:
    """Plain spans of every shape the shortcut takes, and a few it must not take."""
    tracer = client.tracer
    assert tracer is not None

    @client.track("tracked")
    def tracked() -> None:
        return None

    for _ in range(2):
        tracked()
    remote = propagate.extract({"traceparent": TRACEPARENT})
    tracer.start_span("server", context=remote, kind=SpanKind.SERVER).end()
    with tracer.start_as_current_span("parent", attributes={"password": "pw", "n": 1}):
        tracer.start_span("child", kind=SpanKind.CLIENT).end()
        tracer.start_span("child", kind=SpanKind.PRODUCER, attributes={"f": 0.5}).end()
        tracer.start_span("child").end()  # same name, third kind: the cache keys on both
    tracer.start_span("", attributes={"empty.name": True}).end()
    with client.span("with event") as span_id:  # an event: the general path
        client.add_span_event(span_id, "e", {"k": "v"})
    errored = tracer.start_span("errored")
    errored.set_status(StatusCode.ERROR, "broken")  # a status: the general path
    errored.end()


@pytest.mark.parametrize("scrubbing", [False, True])
def test_plain_light_spans_encode_as_the_official_encoder(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch, scrubbing: bool
) -> None:
    client, spans = _collecting(receiver, monkeypatch, "plain")
    try:
        _record(client)
    finally:
        client.shutdown(timeout=5)
    assert len(spans) >= 10 and all(type(s) is LightSpan for s in spans)
    scrubber = Scrubber(secrets=("pw",)) if scrubbing else None
    encoder = OtlpEncoder(scrubber)
    taken: list[str] = []
    plain = encoder._plain_span

    def spy(span: Any, *args: Any) -> bytes:
        taken.append(span.name)
        return plain(span, *args)

    monkeypatch.setattr(encoder, "_plain_span", spy)
    official = encode_spans(spans)
    if scrubber is not None:
        scrubber("traces", official)
    for _ in range(2):  # the second time from the caches
        ours = ExportTraceServiceRequest.FromString(encoder.spans(spans, {}))
        assert ours == official
        assert ours.SerializeToString() == official.SerializeToString()
    assert {"tracked", "server", "parent", "child", ""} <= set(taken)
    assert "with event" not in taken and "errored" not in taken
    server = next(s for s in ours.resource_spans[0].scope_spans[0].spans if s.name == "server")
    assert server.parent_span_id == bytes.fromhex(TRACEPARENT[36:52])  # a remote parent


def test_a_batch_of_two_resources_is_grouped_as_officially(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Spans of two clients (two resources), interleaved: the one-group shortcut is
    left for the general grouping, with the same bytes."""
    first, first_spans = _collecting(receiver, monkeypatch, "first")
    second, second_spans = _collecting(receiver, monkeypatch, "second")
    try:
        _record(first)
        _record(second)
    finally:
        first.shutdown(timeout=5)
        second.shutdown(timeout=5)
    mixed = [s for pair in zip(first_spans, second_spans, strict=False) for s in pair]
    ours = ExportTraceServiceRequest.FromString(OtlpEncoder(None).spans(mixed, {}))
    official = encode_spans(mixed)
    assert len(ours.resource_spans) == 2
    assert ours.SerializeToString() == official.SerializeToString()
