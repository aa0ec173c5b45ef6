"""Spans by id for ``start_span``/``end_span``, and the ``span()`` context manager.

``start_span`` hands out the span's real id so the caller can end it later, maybe on
another thread. Spans that are never ended would otherwise pile up, so the registry
is bounded: past ``max_open_spans`` the oldest open span is ended, marked abandoned,
and a throttled warning says so. The spans themselves come from
:mod:`telemetryflow._recording.light_spans` when the tracer qualifies.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from telemetryflow._configuration.enums import SpanKind
from telemetryflow._recording.attributes import clean_attributes
from telemetryflow._recording.diagnostics import warn_throttled
from telemetryflow._recording.light_spans import LightFactory

__all__ = ["SpanRegistry", "SpanScope", "otel_kind", "record_error"]

_KINDS = {
    SpanKind.INTERNAL: trace.SpanKind.INTERNAL,
    SpanKind.SERVER: trace.SpanKind.SERVER,
    SpanKind.CLIENT: trace.SpanKind.CLIENT,
    SpanKind.PRODUCER: trace.SpanKind.PRODUCER,
    SpanKind.CONSUMER: trace.SpanKind.CONSUMER,
}
_KIND_OF: dict[Any, trace.SpanKind] = {**_KINDS, **{k: k for k in trace.SpanKind}}


def otel_kind(kind: Any) -> trace.SpanKind:
    """Map our kind (or its string value, or an OTel kind) to OpenTelemetry's."""
    try:
        found = _KIND_OF.get(kind)
    except TypeError:  # unhashable
        found = None
    if found is not None:
        return found
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
        self._open: dict[str, Span] = {}
        self._lock = threading.Lock()
        self._factory = LightFactory.for_tracer(tracer)

    def start(self, name: str, kind: Any, attributes: Any) -> tuple[str, Span]:
        name = name if type(name) is str else str(name)
        factory = self._factory
        if factory is not None:
            span = factory.start(name, otel_kind(kind), clean_attributes(attributes))
        else:
            span = self.tracer.start_span(
                name, kind=otel_kind(kind), attributes=clean_attributes(attributes)
            )
        span_id = format(span.get_span_context().span_id, "016x")
        evicted: Span | None = None
        open_spans = self._open
        with self._lock:
            open_spans[span_id] = span
            if len(open_spans) > self._limit:
                evicted = open_spans.pop(next(iter(open_spans)))
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


class InvalidInputSink(Protocol):
    """Where a recording call reports input it could not use (the client)."""

    def _invalid_input(self, signal: str, error: Exception) -> None: ...


class SpanScope:
    """``with client.span(...) as span_id``: the span is current inside the block.

    A class rather than a generator-based context manager: it is on the hot path and
    a generator costs about four times as much to enter and leave.
    """

    __slots__ = (
        "_attributes",
        "_kind",
        "_name",
        "_owner",
        "_registry",
        "_span",
        "_span_id",
        "_token",
    )

    def __init__(
        self,
        registry: SpanRegistry | None,
        name: str,
        kind: Any,
        attributes: Any,
        owner: InvalidInputSink | None = None,
    ) -> None:
        self._registry = registry
        self._owner = owner
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._span: Span | None = None
        self._span_id = ""
        self._token: object = None

    def __enter__(self) -> str:
        if self._registry is None:
            return "0000000000000000"
        try:
            self._span_id, self._span = self._registry.start(
                self._name, self._kind, self._attributes
            )
        except Exception as exc:  # unusable input: the block still runs, untraced
            if self._owner is not None:
                self._owner._invalid_input("traces", exc)  # counted like start_span()'s
            else:
                warn_throttled(
                    "invalid-input:span", "span() got unusable input (%s)", type(exc).__name__
                )
            return "0000000000000000"
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
