"""Spans by id for ``start_span``/``end_span``, and the ``span()`` context manager.

``start_span`` hands out the span's real id so the caller can end it later, maybe on
another thread. Spans that are never ended would otherwise pile up, so the registry
is bounded: past ``max_open_spans`` the oldest open span is ended, marked abandoned,
and a throttled warning says so.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from telemetryflow._attributes import clean_attributes
from telemetryflow._diagnostics import warn_throttled
from telemetryflow._enums import SpanKind

__all__ = ["SpanRegistry", "SpanScope", "record_error"]

_KINDS = {
    SpanKind.INTERNAL: trace.SpanKind.INTERNAL,
    SpanKind.SERVER: trace.SpanKind.SERVER,
    SpanKind.CLIENT: trace.SpanKind.CLIENT,
    SpanKind.PRODUCER: trace.SpanKind.PRODUCER,
    SpanKind.CONSUMER: trace.SpanKind.CONSUMER,
}


def otel_kind(kind: Any) -> trace.SpanKind:
    """Map our kind (or its string value, or an OTel kind) to OpenTelemetry's."""
    if isinstance(kind, trace.SpanKind):
        return kind
    try:
        return _KINDS[SpanKind(kind)]
    except (ValueError, KeyError):
        return trace.SpanKind.INTERNAL


def record_error(span: Span, error: BaseException) -> None:
    """Mark ``span`` failed with the exception event and ``error.type``."""
    span.record_exception(error)
    span.set_attribute("error.type", type(error).__qualname__)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:512]))


class SpanRegistry:
    """Open spans by hex span id, oldest first, at most ``limit`` of them."""

    def __init__(self, tracer: Tracer, limit: int) -> None:
        self.tracer = tracer
        self._limit = limit
        self._open: OrderedDict[str, Span] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, name: str, kind: Any, attributes: Any) -> tuple[str, Span]:
        span = self.tracer.start_span(
            str(name), kind=otel_kind(kind), attributes=clean_attributes(attributes)
        )
        span_id = format(span.get_span_context().span_id, "016x")
        evicted: Span | None = None
        with self._lock:
            self._open[span_id] = span
            if len(self._open) > self._limit:
                _, evicted = self._open.popitem(last=False)
        if evicted is not None:
            evicted.set_attribute("telemetryflow.span.abandoned", True)
            evicted.end()
            warn_throttled(
                "span-evicted",
                "more than %d spans open; ended the oldest "
                "(is end_span() called for every start_span()?)",
                self._limit,
            )
        return span_id, span

    def get(self, span_id: str) -> Span | None:
        found = self._open.get(span_id) if isinstance(span_id, str) else None
        if found is None:
            warn_throttled("span-unknown", "unknown span id %r (already ended?)", str(span_id)[:32])
        return found

    def end(self, span_id: str, error: BaseException | None) -> None:
        with self._lock:
            span = self._open.pop(span_id, None) if isinstance(span_id, str) else None
        if span is None:
            warn_throttled("span-unknown", "unknown span id %r (already ended?)", str(span_id)[:32])
            return
        if isinstance(error, BaseException):
            record_error(span, error)
        span.end()

    def discard(self, span_id: str) -> None:
        with self._lock:
            self._open.pop(span_id, None)

    def __len__(self) -> int:
        return len(self._open)


class SpanScope:
    """``with client.span(...) as span_id``: the span is current inside the block.

    A class rather than a generator-based context manager: it is on the hot path and
    a generator costs about four times as much to enter and leave.
    """

    __slots__ = ("_attributes", "_kind", "_name", "_registry", "_span", "_span_id", "_token")

    def __init__(
        self, registry: SpanRegistry | None, name: str, kind: Any, attributes: Any
    ) -> None:
        self._registry = registry
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._span: Span | None = None
        self._span_id = ""
        self._token: object = None

    def __enter__(self) -> str:
        if self._registry is None:
            return "0000000000000000"
        self._span_id, self._span = self._registry.start(self._name, self._kind, self._attributes)
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span_id

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        if span is None or self._registry is None:
            return
        otel_context.detach(self._token)  # type: ignore[arg-type]
        self._registry.discard(self._span_id)
        if exc is not None:
            record_error(span, exc)
        span.end()
