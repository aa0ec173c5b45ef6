"""The middleware's header extraction (``middleware/_propagation.py``) gives what the
global propagator gives, header for header, and leaves other propagators to themselves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import DefaultGetter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from telemetryflow.middleware import _propagation
from telemetryflow.middleware._flask import _GETTER

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACEPARENTS = [
    None,
    "",
    VALID,
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",  # not sampled
    " \t" + VALID + " ",  # spaces around it
    VALID + "\n",  # `$` matches before a final newline
    VALID + "-extra",  # version 00 with more fields: invalid
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # a later version
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
    "garbage",
]
EXTRAS: list[dict[str, str]] = [
    {},
    {"HTTP_TRACESTATE": "vendor=value,other=1"},
    {"HTTP_TRACESTATE": ""},
    {"HTTP_BAGGAGE": "user=alice,tier=gold"},
    {"HTTP_BAGGAGE": ""},
]


def _environ(traceparent: str | None, extra: dict[str, str]) -> dict[str, Any]:
    environ: dict[str, Any] = {"HTTP_HOST": "127.0.0.1", **extra}
    if traceparent is not None:
        environ["HTTP_TRACEPARENT"] = traceparent
    return environ


def _seen(context: Context) -> tuple[Any, ...]:
    """What a context says about the caller: keys, span context, baggage."""
    span_context = trace.get_current_span(context).get_span_context()
    return (
        sorted(context),
        span_context,
        dict(span_context.trace_state),
        dict(baggage.get_all(context)),
        context.get("outer"),
    )


@pytest.fixture
def default_propagator() -> Iterator[None]:
    before = propagate.get_global_textmap()
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    try:
        yield
    finally:
        propagate.set_global_textmap(before)


@pytest.mark.usefixtures("default_propagator")
@pytest.mark.parametrize("traceparent", TRACEPARENTS)
@pytest.mark.parametrize("extra", EXTRAS, ids=lambda e: ",".join(e) or "none")
def test_the_default_propagator_gives_the_same_context(
    traceparent: str | None, extra: dict[str, str]
) -> None:
    environ = _environ(traceparent, extra)
    outer = Context({"outer": 1})
    ours = _propagation.extract(environ, outer, _GETTER)
    official = propagate.extract(environ, context=outer, getter=_GETTER)
    assert _seen(ours) == _seen(official)
    if traceparent is None and not extra:
        assert ours is outer  # nothing to extract: the context itself


def test_another_propagator_is_called_as_it_is() -> None:
    calls: list[Any] = []

    class Recording(TraceContextTextMapPropagator):
        def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
            calls.append(carrier)
            return super().extract(carrier, context, getter=getter or DefaultGetter())

    before = propagate.get_global_textmap()
    for propagator in (Recording(), CompositePropagator([Recording(), W3CBaggagePropagator()])):
        propagate.set_global_textmap(propagator)
        try:
            environ = _environ(VALID, {})
            context = _propagation.extract(environ, Context(), _GETTER)
        finally:
            propagate.set_global_textmap(before)
        assert calls[-1] is environ
        assert trace.get_current_span(context).get_span_context().trace_id == int(VALID[3:35], 16)
    assert len(calls) == 2


@pytest.mark.usefixtures("default_propagator")
def test_the_usual_requests_take_the_shortcut(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    original = CompositePropagator.extract
    monkeypatch.setattr(
        CompositePropagator, "extract", lambda *a, **k: calls.append(a) or original(*a, **k)
    )
    for traceparent in (None, VALID, "garbage"):
        _propagation.extract(_environ(traceparent, {}), Context(), _GETTER)
    assert calls == []
    _propagation.extract(_environ(VALID, {"HTTP_BAGGAGE": "a=1"}), Context(), _GETTER)
    assert len(calls) == 1


@pytest.mark.usefixtures("default_propagator")
@pytest.mark.parametrize("watched", [False, True], ids=["no on_start", "an on_start"])
def test_a_request_continues_the_callers_trace_either_way(watched: bool) -> None:
    """Without a processor's ``on_start`` the caller's span context goes straight to
    the span factory; with one, the processor gets the parent context the SDK would
    give it. Either way the request's span and its context are the same."""
    import io
    import sys

    from flask import Flask
    from opentelemetry.sdk.trace import SpanProcessor

    from _support import builder_for
    from telemetryflow.middleware import FlaskTelemetryMiddleware
    from telemetryflow.testing import OTLPReceiver

    parents: list[Any] = []

    class Watching(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            parents.append(trace.get_current_span(parent_context).get_span_context())

    seen: dict[str, Any] = {}
    with OTLPReceiver() as receiver:
        client = builder_for(receiver).build()
        client.initialize()
        try:
            if watched:
                provider = client._pipeline.tracer_provider  # type: ignore[union-attr]
                provider.add_span_processor(Watching())  # type: ignore[union-attr]
            app = Flask("continues")

            @app.get("/users/<int:user_id>")
            def user(user_id: int) -> dict[str, Any]:
                span = trace.get_current_span()
                seen["context"] = span.get_span_context()
                return {"id": user_id}

            FlaskTelemetryMiddleware(client, app)
            environ = _environ(VALID, {"REQUEST_METHOD": "GET", "PATH_INFO": "/users/7"})
            environ.update({"wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr})
            environ.update({"wsgi.url_scheme": "http", "SERVER_NAME": "127.0.0.1"})
            environ.update({"SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1"})
            body = app(environ, lambda status, headers, exc_info=None: None)
            assert b"".join(body) == b'{"id":7}\n'
            body.close()  # type: ignore[attr-defined]
            client.flush(timeout=10)
            assert receiver.wait_for(lambda: len(receiver.spans()) == 1, timeout=10)
            span = receiver.spans()[0].span
        finally:
            client.shutdown(timeout=5)
    remote_trace, remote_span = int(VALID[3:35], 16), int(VALID[36:52], 16)
    assert span.trace_id == remote_trace.to_bytes(16, "big")
    assert span.parent_span_id == remote_span.to_bytes(8, "big")
    assert seen["context"].trace_id == remote_trace
    assert seen["context"].span_id == int.from_bytes(span.span_id, "big")
    if watched:  # the processor saw the caller's span in the parent context
        assert [(p.trace_id, p.span_id, p.is_remote) for p in parents] == [
            (remote_trace, remote_span, True)
        ]
