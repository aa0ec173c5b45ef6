"""``track``, ``trace`` and ``event``: observe a function or a block with one line.

Each tracked call is one span (current while the code runs) plus one point in the
``telemetryflow.track.duration`` histogram, labelled ``completed`` or ``failed``.
Metadata given to :func:`add_metadata` (``trace(key, value)``) waits in a context
variable (:mod:`telemetryflow._extras.metadata`) and is taken by the next tracked
call in the same thread or async task.

Nothing here raises because of telemetry: every recording step is guarded, and
the user's exceptions pass through as the very same object.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import Span

from telemetryflow._extras.default import get_default_client
from telemetryflow._extras.metadata import (
    add_metadata,
    attribute_value,
    take_metadata,
    to_attributes,
)
from telemetryflow._extras.track_template import Resolved, Template
from telemetryflow._recording import fast_context
from telemetryflow._recording.diagnostics import warn_throttled
from telemetryflow._recording.instruments import Bound, record_bound
from telemetryflow._recording.light_spans import LightSpan, LightTracer
from telemetryflow._recording.spans import record_error

if TYPE_CHECKING:
    from telemetryflow._extras.protocol import ClientLike

__all__ = [
    "DURATION_METRIC",
    "Tracker",
    "add_metadata",
    "attribute_value",
    "post_event",
    "take_metadata",
    "to_attributes",
]

DURATION_METRIC = "telemetryflow.track.duration"
"""Histogram of tracked call durations in milliseconds: the unit the Observable Code
API reports, and the one the SDK's default bucket boundaries (0 to 10,000) are laid
out for (in seconds nearly every call would land in the first bucket)."""

COMPLETED = "completed"
FAILED = "failed"

F = TypeVar("F", bound=Callable[..., Any])

_INTERNAL = otel_trace.SpanKind.INTERNAL


# -- one tracked run -------------------------------------------------------------------
def _resolve(client: ClientLike | None) -> ClientLike | None:
    if client is None:
        return get_default_client()
    if getattr(client, "_state", "") == "running":  # is_initialized(), inlined
        return client
    if getattr(client, "_state", "") == "new":
        warn_throttled(
            "track-not-initialized",
            "track(): the client is not initialized; "
            "tracked code runs but nothing is recorded (call initialize())",
        )
    return None


class _Run:
    """The state of one tracked execution: its span, start time and client."""

    __slots__ = ("client", "context", "name", "resolved", "span", "start", "token")

    def __init__(
        self, client: ClientLike, name: str, attach: bool, template: Template | None = None
    ) -> None:
        self.client = client
        self.name = name
        self.token: object = None
        self.span: Span | None = None
        self.context: otel_context.Context | None = None
        metadata = take_metadata()
        if template is None:
            self.resolved: Resolved | None = None
            tracer, factory = client.tracer, None
            if type(tracer) is LightTracer:
                factory = tracer._factory
        else:
            resolved = self.resolved = template.of(client)
            tracer, factory = resolved.tracer, resolved.factory
        if tracer is not None:
            if factory is not None:  # the light tracer's start_span, no optional arguments
                self.span = factory.start(
                    name, _INTERNAL, dict(metadata) if metadata else {}, None, None
                )
            else:
                self.span = tracer.start_span(name, attributes=metadata)
            if attach:
                self.context = fast_context.with_span(self.span, fast_context.get_current())
                self.token = fast_context.attach(self.context)
        self.start = time.perf_counter()

    def _in_light_span(self) -> otel_context.Context | None:
        """The context this run attached, while it is still the current one and its
        span a light (so recording, so sampled) span; else None."""
        context = self.context
        if (
            context is not None
            and self.token is not None
            and type(self.span) is LightSpan
            and fast_context.get_current() is context
        ):
            return context
        return None

    def enter(self) -> object:
        """Make the span current for one resumption of a generator."""
        if self.span is None:
            return None
        return fast_context.attach(fast_context.with_span(self.span, fast_context.get_current()))

    def finish(self, error: BaseException | None) -> None:
        """Record the duration (inside the span, so the point gets an exemplar) and end."""
        duration = (time.perf_counter() - self.start) * 1e3
        failed = error is not None and not isinstance(error, GeneratorExit)
        status = FAILED if failed else COMPLETED
        try:
            if failed:
                attributes = {"track.name": self.name, "track.status": status}
                attributes["error.type"] = type(error).__qualname__
                self.client.record_histogram(DURATION_METRIC, duration, "ms", attributes)
            else:
                resolved = self.resolved
                if resolved is not None and resolved.bound is not None:
                    record_bound(*resolved.bound, duration, self._in_light_span())
                else:
                    found = _record_completed(
                        self.client, self.name, duration, self._in_light_span()
                    )
                    if resolved is not None and found is not None and found[0] is resolved.recorder:
                        resolved.bound = found[1]
        finally:
            span, token = self.span, self.token
            if span is not None:
                self.token = None
                if token is not None:
                    fast_context.detach(token)
                span.set_attribute("track.status", status)
                if failed:
                    record_error(span, cast(BaseException, error))
                span.end()


_completed: dict[tuple[int, str], tuple[Any, Bound]] = {}
"""Per recorder and tracked name: the series of its ``completed`` durations."""
_COMPLETED_LIMIT = 1024


def _record_completed(
    client: ClientLike,
    name: str,
    duration: float,
    in_span: otel_context.Context | None,
) -> tuple[Any, Bound] | None:
    """One ``completed`` duration: what ``record_histogram`` does with it, straight
    into the series it bound the first time (the value is a finite float: nothing to
    validate). The exported points and exemplars are the same. ``in_span``: the
    current context, known to hold a sampled span (see :func:`record_bound`).

    Returns the recorder and its bound series, once there is one."""
    recorder = client._recorder()
    found = _completed.get((id(recorder), name)) if recorder is not None else None
    if found is not None and found[0] is recorder:
        record_bound(*found[1], duration, in_span)
        return found
    attributes = {"track.name": name, "track.status": COMPLETED}
    client.record_histogram(DURATION_METRIC, duration, "ms", attributes)
    if recorder is None:
        return None
    bound = recorder.bound("histogram", DURATION_METRIC, "ms", attributes)
    if bound is None:
        return None
    if len(_completed) >= _COMPLETED_LIMIT:
        _completed.clear()
    found = _completed[(id(recorder), name)] = (recorder, bound)
    return found


def _begin(
    name: str, client: ClientLike | None, attach: bool = True, template: Template | None = None
) -> _Run | None:
    try:
        resolved = _resolve(client)
        return None if resolved is None else _Run(resolved, name, attach, template)
    except Exception as exc:  # telemetry must not break tracked code
        warn_throttled(
            "track-begin", "track(%r) could not start: %s", name[:64], type(exc).__name__
        )
        return None


def _finish(run: _Run, error: BaseException | None) -> None:
    try:
        run.finish(error)
    except Exception as exc:
        warn_throttled(
            "track-end", "track(%r) could not be recorded: %s", run.name[:64], type(exc).__name__
        )


def _resume(run: _Run) -> object:
    try:
        return run.enter()
    except Exception:
        return None


def _suspend(token: object) -> None:
    if token is not None:
        try:
            fast_context.detach(token)
        except Exception:
            warn_throttled("track-detach", "track(): could not restore the context")


# -- wrappers --------------------------------------------------------------------------
def _wrap_function(
    fn: Callable[..., Any], name: str, client: ClientLike | None
) -> Callable[..., Any]:
    template = Template()

    @functools.wraps(fn)
    def tracked(*args: Any, **kwargs: Any) -> Any:
        run = _begin(name, client, True, template)
        if run is None:
            return fn(*args, **kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            _finish(run, exc)
            raise
        _finish(run, None)
        return result

    return tracked


def _wrap_coroutine(
    fn: Callable[..., Any], name: str, client: ClientLike | None
) -> Callable[..., Any]:
    template = Template()

    @functools.wraps(fn)
    async def tracked(*args: Any, **kwargs: Any) -> Any:
        run = _begin(name, client, True, template)
        if run is None:
            return await fn(*args, **kwargs)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            _finish(run, exc)
            raise
        _finish(run, None)
        return result

    return tracked


def _wrap_generator(
    fn: Callable[..., Any], name: str, client: ClientLike | None
) -> Callable[..., Any]:
    """The span covers the whole iteration but is current only while the generator's
    own code runs, so the consumer's work between items is not attributed to it."""

    template = Template()

    @functools.wraps(fn)
    def tracked(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        run = _begin(name, client, False, template)
        if run is None:
            return (yield from fn(*args, **kwargs))
        error: BaseException | None = None
        inner: Generator[Any, Any, Any] = fn(*args, **kwargs)
        try:
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                token = _resume(run)
                try:
                    if thrown is not None:
                        pending, thrown = thrown, None
                        item = inner.throw(pending)
                    else:
                        item = inner.send(sent)
                except StopIteration as stop:
                    return stop.value
                finally:
                    _suspend(token)
                try:
                    sent = yield item
                except GeneratorExit:
                    token = _resume(run)
                    try:
                        inner.close()
                    finally:
                        _suspend(token)
                    raise
                except BaseException as exc:  # forwarded into the generator
                    thrown = exc
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            _finish(run, error)

    return tracked


def _wrap_async_generator(
    fn: Callable[..., Any], name: str, client: ClientLike | None
) -> Callable[..., Any]:
    template = Template()

    @functools.wraps(fn)
    async def tracked(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        run = _begin(name, client, False, template)
        inner: AsyncGenerator[Any, Any] = fn(*args, **kwargs)
        if run is None:
            async for item in _delegate(inner):
                yield item
            return
        error: BaseException | None = None
        try:
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                token = _resume(run)
                try:
                    if thrown is not None:
                        pending, thrown = thrown, None
                        item = await inner.athrow(pending)
                    else:
                        item = await inner.asend(sent)
                except StopAsyncIteration:
                    return
                finally:
                    _suspend(token)
                try:
                    sent = yield item
                except GeneratorExit:
                    token = _resume(run)
                    try:
                        await inner.aclose()
                    finally:
                        _suspend(token)
                    raise
                except BaseException as exc:  # forwarded into the generator
                    thrown = exc
        except GeneratorExit:
            raise
        except BaseException as exc:
            error = exc
            raise
        finally:
            _finish(run, error)

    return tracked


async def _delegate(inner: AsyncGenerator[Any, Any]) -> AsyncGenerator[Any, Any]:
    """``yield from`` for async generators, for the untracked path (send and throw
    still reach the inner generator)."""
    sent: Any = None
    thrown: BaseException | None = None
    while True:
        try:
            if thrown is not None:
                pending, thrown = thrown, None
                item = await inner.athrow(pending)
            else:
                item = await inner.asend(sent)
        except StopAsyncIteration:
            return
        try:
            sent = yield item
        except GeneratorExit:
            await inner.aclose()
            raise
        except BaseException as exc:
            thrown = exc


def wrap(fn: F, name: str, client: ClientLike | None) -> F:
    """Wrap ``fn`` according to its kind, keeping its name, docstring and signature."""
    if inspect.isasyncgenfunction(fn):
        wrapped = _wrap_async_generator(fn, name, client)
    elif inspect.iscoroutinefunction(fn):
        wrapped = _wrap_coroutine(fn, name, client)
    elif inspect.isgeneratorfunction(fn):
        wrapped = _wrap_generator(fn, name, client)
    else:
        wrapped = _wrap_function(fn, name, client)
    return cast(F, wrapped)


# -- the public object -----------------------------------------------------------------
class Tracker:
    """What ``track(name)`` returns: a decorator and a context manager.

    As a decorator every call gets its own span, so one decorated function may run
    in many threads at once. As a context manager, use a fresh ``track(...)`` per
    ``with`` (the usual ``with client.track("job"):``): the instance holds the one
    running span.

    ``client=None`` means "the default client, looked up at each call", so a module
    decorated at import time reports to whichever client is initialized later.
    """

    __slots__ = ("_client", "_name", "_run")

    def __init__(self, name: str | None, client: ClientLike | None = None) -> None:
        self._name = name
        self._client = client
        self._run: _Run | None = None

    @property
    def name(self) -> str | None:
        return self._name

    def __call__(self, fn: F) -> F:
        if not callable(fn):
            warn_throttled(
                "track-not-callable",
                "track(%r) decorates callables; got %s",
                str(self._name)[:64],
                type(fn).__name__,
            )
            return fn
        name = self._name or getattr(fn, "__qualname__", None) or repr(fn)
        return wrap(fn, str(name), self._client)

    def __enter__(self) -> Tracker:
        name = self._name
        if not isinstance(name, str) or not name:
            warn_throttled("track-no-name", "track() as a context manager needs a name")
            name = "track"
        self._run = _begin(name, self._client)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        run, self._run = self._run, None
        if run is not None:
            _finish(run, exc)

    async def __aenter__(self) -> Tracker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"Tracker(name={self._name!r})"


# -- event() ---------------------------------------------------------------------------
def post_event(client: ClientLike, name: str, status: str, metadata: Mapping[str, Any]) -> None:
    """A standalone event: an OpenTelemetry event (a log record with an event name)."""
    from opentelemetry._logs import SeverityNumber

    otel_logger = client.otel_logger
    if otel_logger is None:
        return
    if not isinstance(name, str) or not name:
        warn_throttled("event-name", "event() needs a non-empty string name; dropped")
        return
    attributes = to_attributes(metadata)
    attributes["event.status"] = str(status)
    failed = status == FAILED
    otel_logger.emit(
        timestamp=time.time_ns(),
        severity_number=SeverityNumber.ERROR if failed else SeverityNumber.INFO,
        severity_text="ERROR" if failed else "INFO",
        body=name,
        attributes=attributes,
        event_name=name,
    )
