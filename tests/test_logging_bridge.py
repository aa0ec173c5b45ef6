"""The ``logging`` bridge: what a record carries, and that it can never recurse."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from telemetryflow import TelemetryFlowBuilder
from telemetryflow._exporting.transport import SendResult, Transport, make_transport
from telemetryflow._extras.logging_bridge import TelemetryFlowHandler
from telemetryflow._recording.diagnostics import reset_throttle, sdk_section
from telemetryflow.testing import LogEntry, TelemetryCapture, capture

LOGGER = "shop.orders"


@pytest.fixture
def cap() -> Iterator[TelemetryCapture]:
    with capture() as captured:
        yield captured


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(LOGGER)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False  # keep pytest's own capture out of the way
    yield logger
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


def only(entries: list[LogEntry]) -> LogEntry:
    assert len(entries) == 1, [e.body for e in entries]
    return entries[0]


def test_record_carries_message_level_scope_source_and_span_ids(
    cap: TelemetryCapture, app_logger: logging.Logger
) -> None:
    cap.client.instrument_logging(logger=app_logger)
    with cap.client.span("place_order"):
        app_logger.warning("order %s is %d minutes late", "A-17", 12)
    (span,) = cap.spans()
    entry = only(cap.logs())
    assert entry.body == "order A-17 is 12 minutes late"
    assert entry.scope == LOGGER
    assert entry.log.severity_text == "WARN" and entry.log.severity_number == 13
    assert entry.log.trace_id == span.span.trace_id
    assert entry.log.span_id == span.span.span_id
    a = entry.attributes
    assert a["code.file.path"] == __file__
    assert a["code.function.name"] == "test_record_carries_message_level_scope_source_and_span_ids"
    assert isinstance(a["code.line.number"], int)
    assert a["thread.name"] == threading.current_thread().name


def test_outside_a_span_there_are_no_ids(cap: TelemetryCapture, app_logger: logging.Logger) -> None:
    cap.client.instrument_logging(logger=app_logger)
    app_logger.info("plain")
    entry = only(cap.logs())
    assert entry.log.trace_id == b"" and entry.log.span_id == b""


def test_exception_info_and_extra_fields(cap: TelemetryCapture, app_logger: logging.Logger) -> None:
    cap.client.instrument_logging(logger=app_logger)
    try:
        {}["missing"]
    except KeyError:
        app_logger.exception(
            "lookup failed", extra={"order_id": 17, "payload": {"sku": "X1"}, "tags": ["a", "b"]}
        )
    entry = only(cap.logs())
    assert entry.log.severity_text == "ERROR"
    a = entry.attributes
    assert a["exception.type"] == "KeyError"
    assert a["exception.message"] == "'missing'"
    assert "Traceback" in a["exception.stacktrace"] and "KeyError" in a["exception.stacktrace"]
    assert a["order_id"] == 17
    assert a["payload"] == '{"sku":"X1"}'
    assert a["tags"] == ["a", "b"]


def test_levels_and_custom_levels(cap: TelemetryCapture, app_logger: logging.Logger) -> None:
    cap.client.instrument_logging(level=logging.INFO, logger=app_logger)
    app_logger.debug("below the handler level")
    app_logger.log(25, "between info and warning")
    app_logger.critical("down")
    first, second = cap.logs()
    assert (first.log.severity_number, first.log.severity_text) == (10, "INFO")  # INFO2
    assert (second.log.severity_number, second.log.severity_text) == (21, "FATAL")


def test_installing_twice_returns_the_same_handler_and_close_removes_it(
    cap: TelemetryCapture, app_logger: logging.Logger
) -> None:
    first = cap.client.instrument_logging(logger=LOGGER)
    second = cap.client.instrument_logging(logger=app_logger)
    assert first is second and isinstance(first, TelemetryFlowHandler)
    assert app_logger.handlers.count(first) == 1
    first.close()
    assert first not in app_logger.handlers
    app_logger.info("not forwarded")
    assert cap.logs() == []


def test_after_shutdown_logging_is_a_quiet_no_op(app_logger: logging.Logger) -> None:
    with capture() as cap:
        cap.client.instrument_logging(logger=app_logger)
        app_logger.error("before shutdown")
        bodies = [entry.body for entry in cap.logs()]
    app_logger.error("after shutdown")  # must not raise
    assert bodies == ["before shutdown"]
    assert cap.transport.rows("logs")[-1][2].body.string_value == "before shutdown"


# -- no recursion --------------------------------------------------------------------------
def test_a_record_logged_while_emitting_is_dropped_not_recursed(
    cap: TelemetryCapture, app_logger: logging.Logger
) -> None:
    """An attribute whose ``str()`` logs runs inside the emit, on the same thread."""

    class Chatty:
        calls = 0

        def __str__(self) -> str:
            Chatty.calls += 1
            app_logger.error("logged from inside the bridge")
            return "chatty"

    cap.client.instrument_logging(logger=app_logger)
    app_logger.info("outer", extra={"value": Chatty()})
    entry = only(cap.logs())
    assert entry.body == "outer" and entry.attributes["value"] == "chatty"
    assert Chatty.calls == 1


def test_records_from_sdk_code_and_the_sdk_logger_are_dropped(cap: TelemetryCapture) -> None:
    handler = cap.client.instrument_logging(level=logging.INFO)  # the root logger
    try:
        with sdk_section():
            logging.getLogger("some.library").error("logged while the SDK runs")
        logging.getLogger("telemetryflow").warning("the SDK's own diagnostics")
        logging.getLogger("some.library").error("kept")
    finally:
        handler.close()
    assert [e.body for e in cap.logs()] == ["kept"]


class ChattyTransport:
    """A real transport whose failures are logged the way many exporters do it,
    on a logger of its own, from the export thread."""

    def __init__(self, inner: Transport, logger: logging.Logger) -> None:
        self.inner = inner
        self.logger = logger
        self.failures = 0

    def send(self, signal: str, body: bytes, timeout: float) -> SendResult:
        result = self.inner.send(signal, body, timeout)
        if not result.ok:
            self.failures += 1
            self.logger.error("export of %s failed: %s", signal, result.message)
        return result

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_no_recursion_when_the_exporter_logs_while_the_collector_is_down(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Collector down (nothing listens on port 9), retries off: every export fails and
    both the SDK and the transport log about it on the export thread. Those records
    reach the bridge on the root logger and must be dropped, or each failed export
    would enqueue new records forever."""
    builder = (
        TelemetryFlowBuilder()
        .with_api_key("tfk_test", "tfs_test")
        .with_service("bridge-test")
        .with_endpoint("127.0.0.1:9")
        .with_insecure()
        .with_global_providers(False)
        .with_retry(False)
        .with_timeout(timedelta(seconds=1))
        .with_batch_settings(timeout=timedelta(milliseconds=50), max_size=1)
        .with_signals(metrics=False, logs=True, traces=False)
    )
    builder = builder.with_http() if protocol == "http" else builder.with_grpc()
    client = builder.build()
    transports: list[ChattyTransport] = []

    def factory() -> Any:
        chatty = ChattyTransport(make_transport(client.config), logging.getLogger("otlp.export"))
        transports.append(chatty)
        return chatty

    client._transport_factory = factory
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.DEBUG)
    reset_throttle()
    client.initialize()
    handler = client.instrument_logging()
    try:
        with caplog.at_level(logging.DEBUG):
            for n in range(5):
                logging.getLogger("app").warning("application record %d", n)
            client.flush(timeout=5.0)
            client.flush(timeout=5.0)
        logs = client.health()["signals"]["logs"]
    finally:
        handler.close()
        root.setLevel(old_level)
        client.shutdown(timeout=2.0)
    assert transports and transports[0].failures >= 1
    messages = caplog.text
    assert "export of logs failed" in messages  # the exporter did log...
    assert "dropped" in messages  # ...and so did the SDK
    assert logs["recorded"] == 5  # ...yet only the application's records were taken in
    assert logs["exported"] == 0 and logs["dropped"] == 5
    assert handler not in root.handlers
