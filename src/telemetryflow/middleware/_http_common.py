"""What the Flask and ASGI middlewares share: one request becomes one span and a few
metric points, named and attributed per the OpenTelemetry HTTP semantic conventions.

The framework modules only know where their framework keeps things (the WSGI
environ, the ASGI scope); everything that decides *what* is recorded lives here, so
both middlewares redact, bound cardinality and fail the same way (the naming and
redaction rules themselves are in :mod:`telemetryflow.middleware._http_attributes`):

- metric attributes are built only from bounded values (normalised method and
  scheme, route template, status code, error type), never from the raw path, query
  or headers;
- secrets (``Authorization``, cookies, API-key headers, sensitive query values,
  URL user-info) never reach an attribute;
- a failure inside telemetry is logged (throttled) and swallowed: the request is
  served as if the middleware were not there.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import NonRecordingSpan, Span, Status, StatusCode, Tracer

from telemetryflow._extras.facade import TelemetryFlowClient
from telemetryflow._recording import fast_context
from telemetryflow._recording.diagnostics import warn_throttled
from telemetryflow._recording.instruments import BoundHistogram
from telemetryflow._recording.light_spans import LightFactory, LightSpan, LightTracer
from telemetryflow.middleware._http_attributes import (
    OTHER,
    MiddlewareOptions,
    clip,
    error_type,
    normalize_method,
    normalize_scheme,
    span_name,
)
from telemetryflow.middleware._propagation import (
    GENERAL,
    extract,
    extract_in_general,
    remote_parent,
)

__all__ = [
    "COUNT_METRIC",
    "DURATION_METRIC",
    "ERROR_METRIC",
    "RequestRecord",
    "ServerTelemetry",
    "warn_failure",
]

DURATION_METRIC = "http.server.request.duration"
COUNT_METRIC = "http.server.request.count"
ERROR_METRIC = "http.server.error.count"
# The semantic conventions' advisory boundaries for HTTP durations, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


# -- recording ----------------------------------------------------------------------
class _Tally:
    """Request counts per attribute set, reported by an observable counter.

    A lock and a dict cost about a tenth of ``Counter.add`` (which hashes and cleans
    the attributes on every call); counters need no exemplars, and the attribute
    sets are already capped by :meth:`_Instruments.metric_attributes`.
    """

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[int, list[Any]] = {}

    def add(self, attributes: dict[str, Any]) -> None:
        key = id(attributes)  # attribute dicts are shared and kept alive by the cache
        with self._lock:
            found = self._counts.get(key)
            if found is None:
                self._counts[key] = [1, attributes]
            else:
                found[0] += 1

    def observe(self, options: CallbackOptions) -> Iterator[Observation]:
        with self._lock:
            counts = [(n, attributes) for n, attributes in self._counts.values()]
        return (Observation(n, attributes) for n, attributes in counts)


class _Instruments:
    """The tracer and HTTP instruments of one client, shared by all its middlewares.

    Shared because the SDK keeps one instrument per name: a second observable
    counter with the same name would be ignored and its requests never reported.
    """

    __slots__ = (
        "_attr_cache",
        "_limit",
        "duration",
        "errors",
        "exemplars",
        "pid",
        "requests",
        "tracer",
    )

    def __init__(self, client: TelemetryFlowClient) -> None:
        # A forked child gets its own meter provider from the client, so instruments
        # (and counts) made in the parent must not be reused there.
        self.pid = os.getpid()
        self.tracer: Tracer | None = client.tracer
        meter = client.meter
        self.duration: BoundHistogram | None = None
        self.requests: _Tally | None = None
        self.errors: _Tally | None = None
        if meter is not None:
            self.duration = BoundHistogram(  # attribute dicts come from metric_attributes
                meter.create_histogram(
                    DURATION_METRIC,
                    unit="s",
                    description="Duration of HTTP server requests.",
                    explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
                )
            )
            self.requests = _Tally()
            meter.create_observable_counter(
                COUNT_METRIC,
                [self.requests.observe],
                unit="{request}",
                description="HTTP server requests.",
            )
            self.errors = _Tally()
            meter.create_observable_counter(
                ERROR_METRIC,
                [self.errors.observe],
                unit="{request}",
                description="HTTP server requests that failed: a 5xx status or an exception.",
            )
        self.exemplars = client.config.enable_exemplars
        self._limit = client.config.cardinality_limit
        self._attr_cache: dict[tuple[Any, ...], dict[str, Any]] = {}

    def metric_attributes(
        self,
        key: tuple[str, str, str | None, int | None, str | None],
    ) -> dict[str, Any]:
        """One shared dict per attribute set, capped like the client's own instruments."""
        found = self._attr_cache.get(key)
        if found is not None:
            return found
        if len(self._attr_cache) >= self._limit:
            warn_throttled(
                "http-metric-overflow",
                "more than %d HTTP metric attribute sets; "
                "folding the rest into otel.metric.overflow",
                self._limit,
            )
            return _OVERFLOW
        method, scheme, route, status, err = key
        attributes: dict[str, Any] = {"http.request.method": method, "url.scheme": scheme}
        if route is not None:
            attributes["http.route"] = route
        if status is not None:
            attributes["http.response.status_code"] = status
        if err is not None:
            attributes["error.type"] = err
        # setdefault is atomic: racing threads end up sharing one dict, so the
        # tallies (keyed by dict identity) never split one attribute set in two.
        return self._attr_cache.setdefault(key, attributes)


_OVERFLOW: dict[str, Any] = {"otel.metric.overflow": True}
_SERVER = trace.SpanKind.SERVER
_by_client: weakref.WeakKeyDictionary[TelemetryFlowClient, _Instruments] = (
    weakref.WeakKeyDictionary()
)
_by_client_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    global _by_client_lock  # another thread may have held it when the process forked
    _by_client_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _instruments_of(client: TelemetryFlowClient) -> _Instruments:
    with _by_client_lock:
        found = _by_client.get(client)
        if found is None or found.pid != os.getpid():
            found = _by_client[client] = _Instruments(client)
        return found


class RequestRecord:
    """One request in flight: its span, its context token and what the response said.

    Every method is safe to call from the request path: telemetry failures are
    logged and swallowed, and ``finish`` records once however often it is called.
    """

    __slots__ = (
        "_instruments",
        "_options",
        "_token",
        "context",
        "done",
        "exception",
        "method",
        "route",
        "scheme",
        "span",
        "started",
        "status",
    )

    def __init__(
        self,
        instruments: _Instruments,
        options: MiddlewareOptions,
        method: str,
        scheme: str,
        span: Span | None,
        ctx: Context | None,
    ) -> None:
        self._instruments = instruments
        self._options = options
        self.method = method
        self.scheme = scheme
        self.span = span
        self.context = ctx
        self.route: str | None = None
        self.status: int | None = None
        self.exception: BaseException | None = None
        self.done = False
        self._token: object = fast_context.attach(ctx) if ctx is not None else None
        self.started = time.perf_counter()

    def detach(self) -> None:
        """Restore the caller's context; call once, where the request started."""
        token, self._token = self._token, None
        if token is not None:
            fast_context.detach(token)

    def response_headers(self, attributes: dict[str, list[str]]) -> None:
        if self.span is not None and attributes:
            try:
                self.span.set_attributes(attributes)
            except Exception as exc:  # telemetry must not break the response
                warn_failure(exc)

    def fail(self, exc: BaseException) -> None:
        """Note an exception that escaped the handler (recorded once, in ``finish``)."""
        if self.exception is None and not self.done:
            self.exception = exc

    def finish(self) -> None:
        """End the span and record the metrics, once."""
        if self.done:
            return
        self.done = True
        duration = time.perf_counter() - self.started
        try:
            self._finish(duration)
        except Exception as exc:  # telemetry must not break the response
            warn_failure(exc)
        # The exception's frames may hold this record: drop the cycle now, not at GC.
        self.exception = None

    def _finish(self, duration: float) -> None:
        exc = self.exception
        status = self.status
        if status is None and exc is not None:
            status = 500  # nothing was sent: the server answers an escaped exception with 500
        err: str | None = None
        if exc is not None:
            err = error_type(exc)
        elif status is not None and status >= 500:
            err = str(status)
        # The span ends last (and even when a metric fails): once it is visible anywhere,
        # the request's metrics are already recorded, so a flush after seeing the span
        # carries them too.
        try:
            self._record_metrics(duration, status, err)
        finally:
            if self.span is not None:
                self._end_span(self.span, status, err, exc)

    def _record_metrics(self, duration: float, status: int | None, err: str | None) -> None:
        inst = self._instruments
        options = self._options
        attributes = inst.metric_attributes((self.method, self.scheme, self.route, status, err))
        if inst.duration is not None and options.record_duration:
            if inst.exemplars:  # a light span is recording, so sampled: no need to ask
                sampled = type(self.span) is LightSpan
                inst.duration.record(duration, attributes, self.context, sampled)
            else:
                inst.duration.record(duration, attributes)
        if inst.requests is not None and options.record_count:
            inst.requests.add(attributes)
        if inst.errors is not None and options.record_errors and err is not None:
            inst.errors.add(attributes)

    def _end_span(
        self, span: Span, status: int | None, err: str | None, exc: BaseException | None
    ) -> None:
        closing: dict[str, Any] = {}
        if self.route is not None:
            closing["http.route"] = self.route
            span.update_name(span_name(self.method, self.route))
        if status is not None:
            closing["http.response.status_code"] = status
        if err is not None:
            closing["error.type"] = err
            if exc is not None:
                span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, err))
        span.set_attributes(closing)
        span.end()


def _sees_parent_context(factory: LightFactory) -> bool:
    """Whether a processor's ``on_start`` receives the parent context of new spans."""
    hooks = factory.hooks()
    return hooks is None or bool(hooks[0])


def warn_failure(exc: BaseException) -> None:
    """Report a telemetry failure on the request path (throttled, no traceback)."""
    warn_throttled(
        f"middleware:{type(exc).__name__}",
        "HTTP middleware telemetry failed (the request is served anyway): %s: %s",
        type(exc).__name__,
        exc,
    )


class ServerTelemetry:
    """A middleware's client and options, and the client's instruments once it runs."""

    __slots__ = ("_client", "_instruments", "excluded", "options")

    def __init__(self, client: TelemetryFlowClient, options: MiddlewareOptions) -> None:
        if not isinstance(client, TelemetryFlowClient):
            raise TypeError(
                f"the middleware needs a TelemetryFlowClient, got {type(client).__name__}"
            )
        self._client = client
        self.options = options
        self.excluded = options.excluded
        self._instruments: _Instruments | None = None

    def instruments(self) -> _Instruments | None:
        """The instruments, or None while the client is not running (pass through)."""
        if not self._client.is_initialized():
            return None
        inst = self._instruments
        if inst is None or inst.pid != os.getpid():
            inst = self._instruments = _instruments_of(self._client)
        if inst.tracer is None and inst.duration is None:
            return None  # the SDK is disabled, or traces and metrics are both off
        return inst

    def start(
        self,
        inst: _Instruments,
        raw_method: str,
        scheme: str,
        attributes: dict[str, Any],
        carrier: Any,
        getter: Getter[Any],
    ) -> RequestRecord:
        """Continue the caller's trace with a SERVER span, current until ``detach``."""
        method = normalize_method(raw_method)
        scheme = normalize_scheme(scheme)
        attributes["http.request.method"] = method
        if method == OTHER:
            attributes["http.request.method_original"] = clip(raw_method)
        attributes["url.scheme"] = scheme
        tracer = inst.tracer
        if tracer is None:
            return RequestRecord(inst, self.options, method, scheme, None, None)
        parent = fast_context.get_current()
        current = parent.get(fast_context.SPAN_KEY)
        # Continue the caller's trace, on top of (not instead of) whatever an outer
        # layer put in the context. When an outer layer already started a span for
        # this request, it has continued the trace itself: nest under it.
        continues = current is None or not (
            isinstance(current, Span) and current.get_span_context().is_valid
        )
        if type(tracer) is LightTracer:  # its start_span, minus copying our own dict
            factory = tracer._factory
            remote = remote_parent(carrier, getter) if continues else None
            if remote is GENERAL:
                remote, parent = None, extract_in_general(carrier, parent, getter)
            elif remote is not None and _sees_parent_context(factory):
                parent = fast_context.with_span(NonRecordingSpan(remote), parent)
                remote = None
            # With ``remote`` given, the context handed over lacks the caller's span,
            # which the request's own span replaces in the context it makes current.
            span = factory.start(span_name(method, None), _SERVER, attributes, parent, None, remote)
        else:
            if continues:
                parent = extract(carrier, parent, getter)
            span = tracer.start_span(
                span_name(method, None),
                context=parent,
                kind=trace.SpanKind.SERVER,
                attributes=attributes,
            )
        return RequestRecord(
            inst, self.options, method, scheme, span, fast_context.with_span(span, parent)
        )
