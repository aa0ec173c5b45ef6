"""``_recording/fast_context.py`` is OpenTelemetry's context API with fewer calls:
same contexts, interchangeable tokens, the same failure logged."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

from telemetryflow._recording import fast_context


def _span() -> NonRecordingSpan:
    return NonRecordingSpan(SpanContext(0x1234, 0x5678, is_remote=True))


def test_the_standard_runtime_context_takes_the_shortcut() -> None:
    assert fast_context.native  # the default runtime context: the variable is used directly


def test_contexts_and_tokens_are_the_apis_own() -> None:
    span = _span()
    outer = otel_context.get_current()
    made = fast_context.with_span(span, outer)
    assert made == trace.set_span_in_context(span, outer) and made is not outer
    assert type(made) is type(outer)
    token = fast_context.attach(made)
    try:
        assert otel_context.get_current() is made is fast_context.get_current()
        assert trace.get_current_span() is span
        inner = otel_context.attach(otel_context.set_value("k", 1))
        fast_context.detach(inner)  # a token of the API's attach
        assert fast_context.get_current() is made
    finally:
        otel_context.detach(token)  # a token of ours, detached by the API
    assert otel_context.get_current() is outer


def test_a_token_detached_twice_is_logged_as_opentelemetry_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = fast_context.attach(fast_context.with_span(_span(), fast_context.get_current()))
    fast_context.detach(token)
    with caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
        fast_context.detach(token)  # never raises
    assert [r.getMessage() for r in caplog.records] == ["Failed to detach context"]
