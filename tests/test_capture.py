"""Error capture and product events, asserted on the exported logs, spans and metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from telemetryflow import TelemetryFlowBuilder
from telemetryflow._extras.capture import ERRORS_METRIC
from telemetryflow.testing import LogEntry, TelemetryCapture, attrs, capture

ERROR_SEVERITY = 17  # SeverityNumber.ERROR


@pytest.fixture
def cap() -> Iterator[TelemetryCapture]:
    with capture() as captured:
        yield captured


def errors(cap: TelemetryCapture) -> list[LogEntry]:
    return [entry for entry in cap.logs() if entry.log.event_name == "exception"]


def fingerprints(cap: TelemetryCapture) -> list[str]:
    return [entry.attributes["error.fingerprint"] for entry in errors(cap)]


class PaymentError(Exception):
    pass


def charge(amount: int) -> NoReturn:
    raise PaymentError(f"declined: {amount}")


def refund(amount: int) -> NoReturn:
    raise PaymentError(f"declined: {amount}")


# -- capture_exception -------------------------------------------------------------------
def test_capture_exception_records_a_log_with_the_exception_attributes(
    cap: TelemetryCapture,
) -> None:
    try:
        charge(20)
    except PaymentError:
        error_id = cap.client.capture_exception(tags={"service": "billing", "attempt": 2})
    assert re.fullmatch(r"[0-9a-f]{32}", error_id)

    (entry,) = errors(cap)
    assert entry.body == "declined: 20"
    assert entry.log.severity_number == ERROR_SEVERITY and entry.log.severity_text == "ERROR"
    a = entry.attributes
    assert a["exception.type"] == f"{__name__}.PaymentError"
    assert a["exception.message"] == "declined: 20"
    assert "in charge" in a["exception.stacktrace"]
    assert a["exception.stacktrace"].rstrip().endswith("PaymentError: declined: 20")
    assert a["error.type"] == f"{__name__}.PaymentError"
    assert a["error.id"] == error_id
    assert re.fullmatch(r"[0-9a-f]{16}", a["error.fingerprint"])
    assert a["service"] == "billing" and a["attempt"] == 2


def test_capture_inside_a_span_adds_an_exception_event_and_links_the_log(
    cap: TelemetryCapture,
) -> None:
    with cap.client.span("checkout"):
        error_id = cap.client.capture_exception(ValueError("never raised"))
    (span,) = cap.spans()
    (event,) = [e for e in span.span.events if e.name == "exception"]
    event_attrs = attrs(event.attributes)
    assert event_attrs["exception.type"] == "ValueError"
    assert event_attrs["exception.message"] == "never raised"
    assert event_attrs["error.id"] == error_id
    (entry,) = errors(cap)
    assert entry.log.trace_id == span.span.trace_id
    assert entry.log.span_id == span.span.span_id
    assert span.span.status.code == 0  # a handled error does not fail the span


def test_errors_metric_counts_by_type(cap: TelemetryCapture) -> None:
    for _ in range(2):
        cap.client.capture_exception(ValueError("a"))
    cap.client.capture_exception(KeyError("b"))
    cap.client.capture_error("webhook failed", code="WEBHOOK_TIMEOUT")
    metric = cap.find_metric(ERRORS_METRIC)
    assert metric is not None and metric.sum.is_monotonic
    counts = {attrs(p.attributes)["error.type"]: p.as_int for p in metric.sum.data_points}
    assert counts == {"ValueError": 2, "KeyError": 1, "WEBHOOK_TIMEOUT": 1}


# -- fingerprints ------------------------------------------------------------------------
def test_fingerprint_groups_raises_from_one_line_and_splits_different_lines(
    cap: TelemetryCapture,
) -> None:
    for amount in (1, 2):  # same line, different messages and call sites
        try:
            charge(amount)
        except PaymentError as exc:
            cap.client.capture_exception(exc)
    try:
        charge(3)
    except PaymentError as exc:
        cap.client.capture_exception(exc)
    try:
        refund(1)  # same type and message, a different raise line
    except PaymentError as exc:
        cap.client.capture_exception(exc)
    first, second, third, other = fingerprints(cap)
    assert first == second == third
    assert other != first


def test_fingerprint_uses_the_innermost_application_frame_not_library_frames(
    cap: TelemetryCapture,
) -> None:
    """A library error is grouped by the application line that called the library."""

    def parse(text: str) -> Any:
        return json.loads(text)  # the application frame for both calls below

    for text in ("{", "[1,"):
        try:
            parse(text)
        except ValueError as exc:
            cap.client.capture_exception(exc)
    try:
        json.loads("{")  # same library error, another application line
    except ValueError as exc:
        cap.client.capture_exception(exc)
    first, second, other = fingerprints(cap)
    assert first == second
    assert other != first


def test_fingerprint_differs_by_type_on_the_same_line(cap: TelemetryCapture) -> None:
    def fail(error: Exception) -> NoReturn:
        raise error

    for error in (ValueError("x"), KeyError("x")):
        try:
            fail(error)
        except Exception as exc:
            cap.client.capture_exception(exc)
    value_error, key_error = fingerprints(cap)
    assert value_error != key_error


# -- capture_error -------------------------------------------------------------------------
STACK = """Traceback (most recent call last):
  File "/srv/app/billing/webhooks.py", line 42, in handle
    deliver(event)
  File "/srv/app/billing/client.py", line 17, in deliver
    raise TimeoutError()
TimeoutError
"""


def test_capture_error_with_code_stack_and_tags(cap: TelemetryCapture) -> None:
    error_id = cap.client.capture_error(
        "payment webhook failed", code="WEBHOOK_TIMEOUT", stack=STACK, tags={"service": "billing"}
    )
    cap.client.capture_error("payment webhook failed again", code="WEBHOOK_TIMEOUT", stack=STACK)
    first, second = errors(cap)
    assert first.body == "payment webhook failed"
    a = first.attributes
    assert a["error.id"] == error_id
    assert a["error.type"] == "WEBHOOK_TIMEOUT" and a["error.code"] == "WEBHOOK_TIMEOUT"
    assert a["exception.message"] == "payment webhook failed"
    assert a["exception.stacktrace"] == STACK
    assert a["service"] == "billing"
    assert first.attributes["error.fingerprint"] == second.attributes["error.fingerprint"]


def test_capture_error_without_a_stack_groups_by_the_calling_line(cap: TelemetryCapture) -> None:
    def report(message: str) -> None:
        cap.client.capture_error(message)  # one line for both calls below

    report("first")
    report("second")
    cap.client.capture_error("elsewhere")
    first, second, other = errors(cap)
    assert first.attributes["error.type"] == "_OTHER"
    assert "error.code" not in first.attributes
    assert first.attributes["error.fingerprint"] == second.attributes["error.fingerprint"]
    assert other.attributes["error.fingerprint"] != first.attributes["error.fingerprint"]


# -- robustness ------------------------------------------------------------------------------
def test_nothing_to_capture_returns_an_empty_id(cap: TelemetryCapture) -> None:
    assert cap.client.capture_exception() == ""
    assert errors(cap) == []


def test_hostile_input_never_raises(cap: TelemetryCapture) -> None:
    class UnprintableError(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    class BadTags(dict[str, str]):
        def items(self) -> Any:
            raise RuntimeError("no")

    assert cap.client.capture_exception(UnprintableError())
    assert cap.client.capture_exception(ValueError("x"), tags=BadTags(a="b"))
    assert cap.client.capture_error(123, code=None, tags={"nested": {"a": [1, {2}]}})  # type: ignore[arg-type]
    entries = errors(cap)
    assert entries[0].attributes["exception.message"] == "<unprintable UnprintableError>"
    assert entries[2].attributes["nested"] == '{"a":[1,[2]]}'


def test_uninitialized_client_returns_empty_results() -> None:
    client = (
        TelemetryFlowBuilder()
        .with_api_key("tfk_x", "tfs_y")
        .with_endpoint("127.0.0.1:4317")
        .with_insecure()
        .with_service("svc")
        .build()
    )
    assert client.capture_exception(ValueError("x")) == ""
    assert client.capture_error("x") == ""
    assert client.track_event("x") is False


# -- product events ---------------------------------------------------------------------------
def test_track_event_is_an_opentelemetry_event_with_its_properties(cap: TelemetryCapture) -> None:
    assert cap.client.track_event(
        "checkout_completed",
        properties={"plan": "pro", "amount_usd": 20, "items": ["a", "b"], "meta": {"coupon": None}},
        distinct_id="u_123",
    )
    assert cap.client.track_event("page_viewed")
    first, second = cap.logs()
    assert first.log.event_name == "checkout_completed"
    assert first.attributes == {
        "plan": "pro",
        "amount_usd": 20,
        "items": ["a", "b"],
        "meta": '{"coupon":null}',
        "enduser.id": "u_123",
    }
    assert second.log.event_name == "page_viewed" and second.attributes == {}


def test_reported_messages_group_with_numbers_and_hex_ids_masked() -> None:
    from telemetryflow._extras.capture import fingerprint_reported

    def key(message: str) -> str:
        return fingerprint_reported("TimeoutError", None, message)

    assert key("order 1234 timed out") == key("order 5678 timed out")
    assert key("job 3f2a9c1e-77b0-4c1d-9e2f-0a1b2c3d4e5f failed") == key(
        "job 9b8a7c6d-1e2f-4a3b-8c9d-0e1f2a3b4c5d failed"
    )
    assert key("cache deadbeef missed") != key("cache cafebabe missed")  # words, not ids


def test_a_pathological_message_is_fingerprinted_promptly() -> None:
    """``a-a-a-…`` made the old masking pattern quadratic: 200k characters took minutes
    of CPU, reachable by anyone who can post an error. The bound is a hang guard, far
    above the milliseconds it takes."""
    import threading

    from telemetryflow._extras.capture import fingerprint_reported

    done: list[str] = []
    worker = threading.Thread(
        target=lambda: done.append(fingerprint_reported("E", None, "a-" * 100_000)),
        daemon=True,
    )
    worker.start()
    worker.join(30)
    assert done, "fingerprinting a 200,000-character message did not finish in 30 s"
