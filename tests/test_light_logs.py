"""The light log path exports exactly what ``Logger.emit`` exports.

Two clients send to one real receiver: ``fast`` takes the light path; ``sdk`` has one
more log processor on its provider, which is one of the conditions that send every
record through OpenTelemetry's ``Logger.emit`` (the path the light one replaces).
The same ``logging.LogRecord`` objects (and the same ``log_info`` calls) go through
both; every received record must serialize to the same bytes, once the observed
timestamp (taken at emit) is set aside.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from _support import builder_for
from telemetryflow import SeverityLevel, TelemetryFlowClient
from telemetryflow._recording.light_logs import LightLogRecord
from telemetryflow.testing import LogEntry, OTLPReceiver

LOGGER = "shop.light"
TRACE_ID = 0x1F2E3D4C5B6A79880102030405060708


class _Ignore(LogRecordProcessor):
    """A second processor: the provider no longer qualifies for the light path."""

    def on_emit(self, log_record: Any) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class Pair:
    """The two clients, their handlers, and the kinds of records each one queued."""

    def __init__(self, receiver: OTLPReceiver, callback: Any = None) -> None:
        self.receiver = receiver
        self.callback = callback
        self.fast = self._client("fast")
        self.sdk = self._client("sdk")
        provider = self.sdk.logger_provider
        assert provider is not None
        provider.add_log_record_processor(_Ignore())
        self.queued: dict[str, list[type]] = {"fast": [], "sdk": []}
        for name, client in (("fast", self.fast), ("sdk", self.sdk)):
            self._spy(name, client)
        self.handlers = [c.instrument_logging(logging.DEBUG, logging.getLogger(f"{LOGGER}.{n}"))
                         for n, c in (("fast", self.fast), ("sdk", self.sdk))]  # fmt: skip

    def _client(self, service: str) -> TelemetryFlowClient:
        builder = builder_for(self.receiver).with_service(service)
        if self.callback is not None:  # the official encoder's path
            builder.with_scrubbing(callback=self.callback)
        client = builder.build()
        client.initialize()
        return client

    def _spy(self, name: str, client: TelemetryFlowClient) -> None:
        pipeline = client._pipeline
        assert pipeline is not None and pipeline.log_queue is not None
        queue = pipeline.log_queue
        put = queue.put

        def spying(item: Any) -> Any:
            self.queued[name].append(type(item))
            return put(item)

        queue.put = spying  # type: ignore[method-assign]

    def handle(self, record: logging.LogRecord) -> None:
        """The same record through both handlers (as ``logging`` would call them)."""
        for handler in self.handlers:
            handler.handle(record)

    def both(self, call: Callable[[TelemetryFlowClient], None]) -> None:
        call(self.fast)
        call(self.sdk)

    def received(self, count: int) -> tuple[list[LogEntry], list[LogEntry]]:
        for client in (self.fast, self.sdk):
            client.flush(timeout=10)
        assert self.receiver.wait_for_logs(2 * count, timeout=10)
        logs = self.receiver.logs()
        fast = [e for e in logs if e.resource.get("service.name") == "fast"]
        sdk = [e for e in logs if e.resource.get("service.name") == "sdk"]
        assert len(fast) == len(sdk) == count
        return fast, sdk

    def close(self) -> None:
        for handler in self.handlers:
            handler.close()
        self.fast.shutdown(timeout=5)
        self.sdk.shutdown(timeout=5)


def _masking(key: str, value: Any) -> Any:
    return "masked" if key == "order.id" else value


@pytest.fixture(params=[None, _masking], ids=["direct encoder", "scrub callback"])
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    with OTLPReceiver() as receiver:
        made = Pair(receiver, request.param)
        try:
            yield made
        finally:
            made.close()


def _record(level: int, msg: str, *args: Any, **fields: Any) -> logging.LogRecord:
    exc_info = fields.pop("exc_info", None)
    stack = fields.pop("stack_info", None)
    record = logging.LogRecord(LOGGER, level, __file__, 42, msg, args, exc_info, "place", stack)
    record.__dict__.update(fields)
    return record


def _same(fast: list[LogEntry], sdk: list[LogEntry]) -> None:
    for a, b in zip(fast, sdk, strict=True):
        assert a.scope.rsplit(".", 1)[0] == b.scope.rsplit(".", 1)[0]
        assert a.log.observed_time_unix_nano and b.log.observed_time_unix_nano
        a.log.observed_time_unix_nano = b.log.observed_time_unix_nano = 0
        assert a.log == b.log
        assert a.log.SerializeToString(deterministic=True) == b.log.SerializeToString(
            deterministic=True
        )


def _failure() -> Any:
    try:
        {}["missing"]
    except KeyError:
        return sys.exc_info()
    raise AssertionError("unreachable")


def test_logging_records_export_the_same_bytes_either_way(pair: Pair) -> None:
    sampled = TraceFlags(TraceFlags.SAMPLED)
    span = NonRecordingSpan(SpanContext(TRACE_ID, 0x0A0B0C0D0E0F1011, False, sampled))
    records = [
        _record(logging.INFO, "order %s shipped", 17),
        _record(logging.WARNING, "late", **{"order.id": 17, "ratio": 0.5, "rush": True}),
        _record(25, "custom level %d", 25),
        _record(logging.ERROR, "lookup failed", exc_info=_failure(), order_id="A-1"),
        _record(logging.DEBUG, "with stack", stack_info="Stack (most recent call last):\n  x"),
        _record(logging.INFO, "not plain", tags=["a", "b"], payload={"sku": "X1"}, gone=None),
        _record(logging.INFO, "bad args %d", "x"),
        _record(logging.INFO, "own thread name", **{"thread.name": "mine", "k": 1}),
        _record(logging.INFO, "own stack", **{"code.stacktrace": "mine"}),
        _record(logging.WARNING, "stack and extra", stack_info="Stack:\n  y", n=3),
    ]
    for record in records:
        pair.handle(record)
    with trace.use_span(span):
        for record in records[:2]:
            pair.handle(record)
    fast, sdk = pair.received(len(records) + 2)
    _same(fast, sdk)
    assert fast[-1].log.trace_id == TRACE_ID.to_bytes(16, "big")
    if pair.callback is not None:  # the official encoder's path was taken, light records and all
        assert any(e.attributes.get("order.id") == "masked" for e in fast)
    assert LightLogRecord in pair.queued["fast"]  # the light path was taken ...
    assert LightLogRecord not in pair.queued["sdk"]  # ... and not where it must not be


def test_log_calls_export_the_same_bytes_either_way(pair: Pair) -> None:
    calls: list[Callable[[TelemetryFlowClient], None]] = [
        lambda c: c.log_info("user signed in", {"user.id": 42, "tenant": "acme"}),
        lambda c: c.log("disk almost full", SeverityLevel.WARN, {"disk": "/var", "used": 0.93}),
        lambda c: c.log_error("no attributes"),
        lambda c: c.log_debug("nested", {"tags": ["a", "b"], "n": 10**30, "": "dropped"}),
    ]
    span = NonRecordingSpan(SpanContext(7, 9, False, TraceFlags(TraceFlags.SAMPLED)))
    for call in calls:
        pair.both(call)
    with trace.use_span(span):
        pair.both(calls[0])
    fast, sdk = pair.received(len(calls) + 1)
    for a, b in zip(fast, sdk, strict=True):  # the facade stamps each call's own time
        a.log.time_unix_nano = b.log.time_unix_nano = 0
    _same(fast, sdk)
    assert fast[-1].log.span_id == (9).to_bytes(8, "big")
    assert pair.queued["fast"].count(LightLogRecord) >= 3
    assert LightLogRecord not in pair.queued["sdk"]
