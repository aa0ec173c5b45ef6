"""Light spans: the SDK's span, made with less work per span.

The facade's spans are :class:`LightSpan` objects when the client's tracer is the
one its pipeline built (the default sampler, no tracer metrics): the same span the
SDK's tracer would make (ids, parent, sampling, limits, processors, exceptions,
status rules and warnings), without cleaning attributes the facade has already
cleaned, per-span locks, or a snapshot copy at the end. Anything else takes the
SDK's ``Tracer.start_span``. :func:`light_tracer` offers the same spans to
integrations that start spans through a tracer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from time import time_ns
from types import MappingProxyType, TracebackType
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
)
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, Span, SpanContext, Status, StatusCode, TraceFlags, Tracer
from opentelemetry.util import types

from telemetryflow._recording.fast_context import SPAN_KEY, get_current

__all__ = ["LightFactory", "LightSpan", "LightTracer", "light_tracer"]

_sdk_logger = logging.getLogger("opentelemetry.sdk.trace")  # the SDK span's own warnings
_PRIMITIVES = (str, bool, int, float)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_RANDOM = getattr(TraceFlags, "RANDOM_TRACE_ID", 0)
_UNSET = UNSET_STATUS = Status(StatusCode.UNSET)
"""The status of every light span until ``set_status``: the encoder knows its bytes."""
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_INVALID_CONTEXT = trace.INVALID_SPAN_CONTEXT
_ENDING = threading.Lock()
_BASE_ON_START = SpanProcessor.on_start
_BASE_ON_ENDING = SpanProcessor._on_ending


def _plain(attributes: Mapping[str, Any], limit: int | None) -> bool:
    """True when OpenTelemetry's cleaning would keep ``attributes`` as they are."""
    if limit is not None and len(attributes) > limit:
        return False
    for value in attributes.values():  # noqa: SIM110 - no generator on the hot path
        if type(value) not in _PRIMITIVES:
            return False
    return True


class _Options(NamedTuple):
    """What ``Tracer.start_span`` takes beyond the facade's name, kind and attributes."""

    links: Sequence[Link] | None
    start_time: int | None
    record_exception: bool
    set_status_on_exception: bool


def _new_links(links: Sequence[Link], limits: SpanLimits) -> Any:
    """The SDK span's links: valid ones only, their attributes bounded, at most max_links."""
    valid = []
    for link in links:
        context = link.context if link else None
        if context and (context.is_valid or (link.attributes or context.trace_state)):
            link._attributes = BoundedAttributes(
                limits.max_link_attributes,
                link.attributes,
                max_value_len=limits.max_attribute_length,
                immutable=True,
            )
            valid.append(link)
    return BoundedList.from_seq(limits.max_links, valid)


class LightSpan(Span, ReadableSpan):
    """A recording span with the SDK span's behaviour and data layout.

    Like the SDK's span it is both the API span and a ``ReadableSpan``; processors
    receive the span itself when it ends (nothing can change it after that).
    """

    def __init__(
        self,
        factory: LightFactory,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: trace.SpanKind,
        attributes: Mapping[str, Any],
        options: _Options | None = None,
    ) -> None:
        # ReadableSpan's fields, set directly (the factory checks their names once)
        self._name = name
        self._context = context
        self._kind = kind
        self._instrumentation_info = factory.instrumentation_info
        self._instrumentation_scope = factory.scope
        self._parent = parent
        self._start_time: int | None = (
            options.start_time if options is not None and options.start_time else time_ns()
        )
        self._end_time: int | None = None
        self._options = options
        limits = factory.limits
        if attributes and not (
            limits.max_span_attribute_length is None
            and _plain(attributes, limits.max_span_attributes)
        ):
            attributes = BoundedAttributes(
                limits.max_span_attributes,
                attributes,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
        self._attributes: Any = attributes
        self._events: Any = ()  # a list from the first event on
        self._links: Any = _new_links(options.links, limits) if options and options.links else ()
        self._resource = factory.resource
        self._status = _UNSET
        self._factory = factory

    # -- the API span ----------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        return self._context  # type: ignore[return-value]  # always set for a LightSpan

    def is_recording(self) -> bool:
        return self._end_time is None

    def _bounded_attributes(self) -> BoundedAttributes:
        current = self._attributes
        if not isinstance(current, BoundedAttributes):
            limits = self._factory.limits
            current = BoundedAttributes(
                limits.max_span_attributes,
                current or None,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
            self._attributes = current
        return current

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._end_time is not None:
            _sdk_logger.warning("Setting attribute on ended span.")
            return
        current = self._attributes
        if type(current) is dict and type(attributes) is dict and self._fits(current, attributes):
            for key, value in attributes.items():
                current.pop(key, None)  # as BoundedAttributes does: a new value goes last
                current[key] = value
            return
        self._bounded_attributes()._set_items(attributes)

    def _fits(self, current: dict[str, Any], new: dict[str, Any]) -> bool:
        """Whether ``BoundedAttributes`` would take ``new`` as it is, dropping nothing."""
        limits = self._factory.limits
        if limits.max_span_attribute_length is not None:
            return False
        added = 0
        for key, value in new.items():
            if type(key) is not str or not key or type(value) not in _PRIMITIVES:
                return False
            if key not in current:
                added += 1
        limit = limits.max_span_attributes
        return limit is None or len(current) + added <= limit

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end_time is not None:
            _sdk_logger.warning("Setting attribute on ended span.")
            return
        current = self._attributes
        if type(current) is dict and type(value) in _PRIMITIVES and type(key) is str and key:
            limits = self._factory.limits
            if limits.max_span_attribute_length is None:  # BoundedAttributes keeps it as is
                if key in current:
                    del current[key]  # as BoundedAttributes does: a new value goes last
                    current[key] = value
                    return
                limit = limits.max_span_attributes
                if limit is None or len(current) < limit:
                    current[key] = value
                    return
        self._bounded_attributes()[key] = value

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        if self._end_time is not None:
            _sdk_logger.warning("Tried calling %s on an ended span.", "_add_event")
            return
        limits = self._factory.limits
        if not attributes:
            attributes = None
        elif limits.max_attribute_length is not None or not _plain(
            attributes, limits.max_event_attributes
        ):
            attributes = BoundedAttributes(
                limits.max_event_attributes,
                attributes,
                max_value_len=limits.max_attribute_length,
                immutable=True,
            )
        else:
            attributes = dict(attributes)
        event = Event(name=name, attributes=attributes or _EMPTY, timestamp=timestamp)
        events = self._events
        if type(events) is tuple:
            events = self._events = []
        limit = limits.max_events
        if type(events) is list and limit is not None and len(events) >= limit:
            events = self._events = BoundedList.from_seq(limit, events)
        events.append(event)

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if not (context and (context.is_valid or (attributes or context.trace_state))):
            return
        if self._end_time is not None:
            _sdk_logger.warning("Tried calling %s on an ended span.", "_add_link")
            return
        limits = self._factory.limits
        bounded = BoundedAttributes(
            limits.max_link_attributes,
            attributes,
            max_value_len=limits.max_attribute_length,
            immutable=True,
        )
        if not isinstance(self._links, BoundedList):
            self._links = BoundedList.from_seq(limits.max_links, self._links)
        self._links.append(Link(context=context, attributes=bounded))

    def update_name(self, name: str) -> None:
        if self._end_time is not None:
            _sdk_logger.warning("Tried calling %s on an ended span.", "update_name")
            return
        self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None:
            _sdk_logger.warning("Tried calling %s on an ended span.", "set_status")
            return
        if self._status.status_code is StatusCode.OK:
            return  # OK is final
        if isinstance(status, Status):
            if status.status_code is StatusCode.UNSET:
                return
            if description is not None:
                _sdk_logger.warning(
                    "Description %s ignored. Use either `Status` or `(StatusCode, Description)`",
                    description,
                )
            self._status = status
        elif isinstance(status, StatusCode):
            if status is StatusCode.UNSET:
                return
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        stacktrace = "".join(traceback.format_exception(exception))
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        exception_type = f"{module}.{qualname}" if module and module != "builtins" else qualname
        event_attributes: dict[str, Any] = {
            "exception.type": exception_type,
            "exception.message": str(exception),
            "exception.stacktrace": stacktrace,
            "exception.escaped": str(escaped),
        }
        if attributes:
            event_attributes.update(attributes)
        self.add_event(name="exception", attributes=event_attributes, timestamp=timestamp)

    def end(self, end_time: int | None = None) -> None:
        with _ENDING:  # ends exactly once, even when two threads race to end it
            ended = self._end_time
            if ended is None:
                self._end_time = end_time if end_time is not None else time_ns()
        if ended is not None:
            _sdk_logger.warning("Calling end() on an ended span.")
            return
        attributes = self._attributes
        if type(attributes) is not dict and isinstance(attributes, BoundedAttributes):
            attributes._immutable = True
        hooks = self._factory.hooks()
        if hooks is None:
            processor = self._factory.processor
            processor._on_ending(self)  # type: ignore[arg-type]
            processor.on_end(self)
            return
        for ending in hooks[1]:
            ending(self)
        for end in hooks[2]:
            end(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        options = self._options
        if exc_val is not None and self.is_recording():
            if options is None or options.record_exception:
                self.record_exception(exception=exc_val, escaped=True)
            if options is None or options.set_status_on_exception:
                self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name="{self._name}", context={self._context})'


class LightFactory:
    """Starts :class:`LightSpan` objects the way ``tracer.start_span`` would."""

    def __init__(self, tracer: SdkTracer) -> None:
        self.tracer = tracer
        self.processor = tracer.span_processor
        self.ids = tracer.id_generator
        self.resource = tracer.resource
        self.scope = tracer._instrumentation_scope
        self.instrumentation_info = tracer.instrumentation_info
        self.limits: SpanLimits = tracer._span_limits
        self._random_ids = bool(_RANDOM) and self.ids.is_trace_id_random()
        self._hooks: tuple[Any, tuple[list[Any], list[Any], list[Any]]] | None = None

    def hooks(self) -> tuple[list[Any], list[Any], list[Any]] | None:
        """``on_start``, ``_on_ending`` and ``on_end`` of the provider's processors, in
        order, leaving out the base class's empty ones: what the SDK's synchronous
        multi-processor calls, minus calls that do nothing. None: another
        multi-processor, called as it is."""
        processor = self.processor
        if type(processor) is not SynchronousMultiSpanProcessor:
            return None
        processors = processor._span_processors
        cached = self._hooks
        if cached is None or cached[0] is not processors:
            hooks = (
                [p.on_start for p in processors if type(p).on_start is not _BASE_ON_START],
                [p._on_ending for p in processors if type(p)._on_ending is not _BASE_ON_ENDING],
                [p.on_end for p in processors],
            )
            cached = self._hooks = (processors, hooks)
        return cached[1]

    @classmethod
    def for_tracer(cls, tracer: Tracer) -> LightFactory | None:
        """A factory when ``tracer`` is an SDK tracer set up as our pipeline does."""
        try:
            if type(tracer) is not SdkTracer or not _RANDOM:
                return None
            sampler = tracer.sampler
            default = ParentBased(ALWAYS_ON)
            if (
                type(sampler) is not ParentBased
                or sampler.get_description() != default.get_description()  # type: ignore[no-untyped-call]
                or type(tracer._tracer_metrics).__name__ != "NoOpTracerMetrics"
                or not isinstance(tracer._span_limits, SpanLimits)
                or not hasattr(tracer.span_processor, "_on_ending")
            ):
                return None
            factory = cls(tracer)
            probe = LightSpan(
                factory, "probe", SpanContext(1, 1, False), None, trace.SpanKind.INTERNAL, {}
            )
            reference = ReadableSpan("probe", resource=factory.resource)
            if not set(vars(reference)) <= set(vars(probe)):
                return None  # the SDK's span layout changed: use the SDK tracer
            return factory
        except Exception:
            return None

    def start(
        self,
        name: str,
        kind: trace.SpanKind,
        attributes: Mapping[str, Any],
        context: Context | None = None,
        options: _Options | None = None,
        parent: SpanContext | None = None,  # the span context in ``context``, if known
    ) -> Span:
        tracer = self.tracer
        if parent is None:  # trace.get_current_span(context).get_span_context(), fewer calls
            found = (get_current() if context is None else context).get(SPAN_KEY)
            parent = _INVALID_CONTEXT
            if found is not None and (type(found) is LightSpan or isinstance(found, Span)):
                parent = found.get_span_context()
        if not tracer._is_enabled():
            return trace.NonRecordingSpan(context=parent)  # type: ignore[arg-type]
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = self.ids.generate_trace_id()
            sampled = True
            random_ids = self._random_ids
            trace_state = None
        else:
            trace_id = parent.trace_id
            sampled = parent.trace_flags.sampled
            random_ids = bool(parent.trace_flags & _RANDOM)
            trace_state = parent.trace_state
        flags = _SAMPLED if sampled else _NOT_SAMPLED
        if random_ids:
            flags = TraceFlags(flags | _RANDOM)
        span_context = SpanContext(trace_id, self.ids.generate_span_id(), False, flags, trace_state)
        if not sampled:
            return trace.NonRecordingSpan(context=span_context)
        span = LightSpan(self, name, span_context, parent, kind, attributes, options)
        hooks = self.hooks()
        if hooks is None:
            self.processor.on_start(span, parent_context=context)  # type: ignore[arg-type]
        else:
            for begin in hooks[0]:
                begin(span, parent_context=context)
        return span


class LightTracer(Tracer):
    """The SDK tracer it wraps, starting :class:`LightSpan` objects.

    For integrations that start spans through the client's tracer (``track``, the
    HTTP middleware): the same spans for about half the cost. Attribute access it
    does not define falls through to the SDK tracer. Get one with
    :func:`light_tracer`.
    """

    def __init__(self, tracer: SdkTracer, factory: LightFactory) -> None:
        self._tracer = tracer
        self._factory = factory

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        options = None
        if links or start_time is not None or not record_exception or not set_status_on_exception:
            options = _Options(links, start_time, record_exception, set_status_on_exception)
        return self._factory.start(
            name, kind, dict(attributes) if attributes else {}, context, options
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        span = self.start_span(
            name, context, kind, attributes, links, start_time, record_exception,
            set_status_on_exception,
        )  # fmt: skip
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracer, name)


def light_tracer(tracer: Tracer) -> Tracer:
    """A :class:`LightTracer` over ``tracer`` when it qualifies (an SDK tracer set up
    as the pipeline does), else ``tracer`` itself; made once per tracer, so cheap to call."""
    found: Tracer | None = getattr(tracer, "_telemetryflow_light", None)
    if found is not None:
        return found
    factory = LightFactory.for_tracer(tracer)
    if factory is None or not isinstance(tracer, SdkTracer):
        found = tracer
    else:
        found = LightTracer(tracer, factory)
    with contextlib.suppress(AttributeError, TypeError):  # a cycle the collector frees
        tracer._telemetryflow_light = found  # type: ignore[attr-defined]
    return found
