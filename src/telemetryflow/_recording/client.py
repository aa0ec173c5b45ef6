"""The client core: lifecycle, metrics, logs, spans and status in one object.

The public :class:`~telemetryflow.TelemetryFlowClient` is this core plus the
conveniences (:mod:`telemetryflow._extras.facade`); the core knows nothing of them
and tells them about its lifecycle through two hooks, :meth:`ClientCore._started`
and :meth:`ClientCore._stopping`.

Every recording call goes straight to the OpenTelemetry SDK objects built by
:class:`~telemetryflow._exporting.pipeline.Pipeline`; there is no command bus in
between. Recording calls never raise on bad input (they warn and drop); using a
client that was never initialized raises :class:`NotInitializedError`, and calls
after ``shutdown()`` are dropped quietly, so late background work cannot crash a
host that is going down.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import _logs as otel_logs
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry._logs import SeverityNumber

from telemetryflow._configuration.config import TelemetryConfig
from telemetryflow._configuration.enums import SeverityLevel, SpanKind
from telemetryflow._configuration.errors import NotInitializedError, TelemetryFlowError
from telemetryflow._exporting.stats import DropReason
from telemetryflow._recording.attributes import clean_attributes
from telemetryflow._recording.diagnostics import logger, warn_throttled
from telemetryflow._recording.instruments import MetricRecorder
from telemetryflow._recording.light_spans import light_tracer
from telemetryflow._recording.process import install_globals, register_atexit, register_fork_handler
from telemetryflow._recording.spans import SpanRegistry, SpanScope
from telemetryflow._version import __version__

if TYPE_CHECKING:  # the export path loads on initialize(), not on import
    from opentelemetry.sdk._logs import LoggerProvider

    from telemetryflow._exporting.pipeline import Pipeline
    from telemetryflow._exporting.transport import Transport
    from telemetryflow._recording.light_logs import LightLogs

__all__ = ["ClientCore", "NotInitializedError", "TelemetryFlowError"]

_SEVERITY = {
    SeverityLevel.TRACE: (SeverityNumber.TRACE, "TRACE"),
    SeverityLevel.DEBUG: (SeverityNumber.DEBUG, "DEBUG"),
    SeverityLevel.INFO: (SeverityNumber.INFO, "INFO"),
    SeverityLevel.WARN: (SeverityNumber.WARN, "WARN"),
    SeverityLevel.ERROR: (SeverityNumber.ERROR, "ERROR"),
    SeverityLevel.FATAL: (SeverityNumber.FATAL, "FATAL"),
}
_INSTRUMENTATION_NAME = "telemetryflow"
_C = TypeVar("_C", bound="ClientCore")


def _severity(severity: Any) -> tuple[SeverityNumber, str]:
    try:
        return _SEVERITY[SeverityLevel(severity)]
    except (ValueError, KeyError):
        warn_throttled("bad-severity", "unknown log severity %r; using INFO", str(severity)[:20])
        return _SEVERITY[SeverityLevel.INFO]


class ClientCore:
    """Metrics, logs and spans over one export pipeline; the public client's base."""

    def __init__(self, config: TelemetryConfig) -> None:
        if not isinstance(config, TelemetryConfig):
            raise TelemetryFlowError(
                "TelemetryFlowClient needs a TelemetryConfig; use TelemetryFlowBuilder().build()"
            )
        self._config = config
        self._lock = threading.Lock()
        self._state = "new"  # new -> running -> stopped
        self._started_at: float | None = None
        self._pipeline: Pipeline | None = None
        self._metrics: MetricRecorder | None = None
        self._spans: SpanRegistry | None = None
        self._logger: otel_logs.Logger | None = None
        self._light_logs: LightLogs | None = None
        self.owns_globals = False
        self._pid = os.getpid()
        # Where export requests go; ``telemetryflow.testing`` swaps in memory for the wire.
        self._transport_factory: Callable[[], Transport] | None = None

    # -- lifecycle -------------------------------------------------------------------
    @property
    def config(self) -> TelemetryConfig:
        """The immutable configuration this client was built with."""
        return self._config

    def initialize(self) -> None:
        """Build the providers and start exporting. Idempotent.

        Raises:
            TelemetryFlowError: the pipeline could not be built (e.g. unreadable
                certificate files), or the client was already shut down.
        """
        with self._lock:
            if self._state == "running":
                return
            if self._state == "stopped":
                raise TelemetryFlowError("this client was shut down; build a new one")
            if not self._config.sdk_disabled:
                try:
                    self._start()
                except Exception as exc:
                    raise TelemetryFlowError(
                        f"initialization failed: {type(exc).__name__}: {exc}"
                    ) from None
            self._state = "running"
            self._started_at = time.time()
        register_atexit(self)
        register_fork_handler(self)
        self._started()

    def _started(self) -> None:
        """Hook: the client has just started running (the conveniences track it)."""

    def _stopping(self) -> None:
        """Hook: the client has just stopped running, before its pipeline shuts down."""

    def _start(self) -> None:
        from telemetryflow._configuration.resource import build_resource
        from telemetryflow._exporting.pipeline import LogQueueProcessor, Pipeline
        from telemetryflow._exporting.transport import check_tls_files, preload_export_modules
        from telemetryflow._recording.light_logs import light_logs

        config = self._config
        pipeline = Pipeline(config, build_resource(config), self._transport_factory)
        if pipeline.meter_provider is not None:
            meter = pipeline.meter_provider.get_meter(_INSTRUMENTATION_NAME, __version__)
            self._metrics = MetricRecorder(meter, pipeline.stats, config.cardinality_limit)
        if pipeline.tracer_provider is not None:
            tracer = pipeline.tracer_provider.get_tracer(_INSTRUMENTATION_NAME, __version__)
            self._spans = SpanRegistry(tracer, config.max_open_spans)
        if pipeline.logger_provider is not None:
            self._logger = pipeline.logger_provider.get_logger(_INSTRUMENTATION_NAME, __version__)
            self._light_logs = light_logs(self._logger, LogQueueProcessor)
        check_tls_files(config)
        preload_export_modules(config)  # before a pre-fork server forks, not on export threads
        self._pipeline = pipeline
        if config.install_global_providers:
            self.owns_globals = install_globals(pipeline)

    def _after_fork(self) -> None:
        """In a forked child (pre-fork servers, multiprocessing): own state, own identity.

        Called by an at-fork hook and, for servers that skip those hooks (uWSGI),
        by the pid check on the metric path.
        """
        if self._pid == os.getpid():
            return
        self._lock = threading.Lock()  # the parent's may have been held by another thread
        self._pid = os.getpid()
        pipeline = self._pipeline
        if pipeline is None or self._state != "running":
            return
        pipeline.after_fork()
        if pipeline.meter_provider is not None:
            meter = pipeline.meter_provider.get_meter(_INSTRUMENTATION_NAME, __version__)
            self._metrics = MetricRecorder(meter, pipeline.stats, self._config.cardinality_limit)
        if pipeline.tracer_provider is not None:
            tracer = pipeline.tracer_provider.get_tracer(_INSTRUMENTATION_NAME, __version__)
            self._spans = SpanRegistry(tracer, self._config.max_open_spans)
        self._started_at = time.time()

    def _recorder(self) -> MetricRecorder | None:
        if self._pid != os.getpid():
            self._after_fork()
        return self._metrics

    def is_initialized(self) -> bool:
        """True between ``initialize()`` and ``shutdown()``."""
        return self._state == "running"

    def flush(self, timeout: float = 30.0) -> None:
        """Export everything recorded so far; returns within ``timeout`` seconds.

        Raises:
            NotInitializedError: the client is not initialized.
        """
        if self._state != "running":
            raise NotInitializedError(
                "flush() needs an initialized client; call initialize() first"
            )
        if self._pipeline is not None and not self._pipeline.flush(timeout):
            warn_throttled("flush-timeout", "flush did not finish within %.1fs", timeout)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Flush pending data and stop, within ``timeout`` seconds even if the collector
        is unreachable. Idempotent."""
        with self._lock:
            if self._state != "running":
                self._state = "stopped"
                return
            self._state = "stopped"
            pipeline, self._pipeline = self._pipeline, None
            self._metrics = self._spans = self._logger = self._light_logs = None
        self._stopping()
        if pipeline is not None:
            try:
                pipeline.shutdown(max(0.0, float(timeout)))
            except Exception as exc:
                logger.warning("telemetryflow shutdown: %s: %s", type(exc).__name__, exc)
            self._last_stats = pipeline.stats

    def __enter__(self: _C) -> _C:
        self.initialize()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def _invalid_input(self, signal: str, error: Exception) -> None:
        """A recording call got input it cannot use: count it, warn (type only), go on.

        The call counts as one recorded item dropped ``invalid``, so that
        ``recorded = exported + dropped + pending`` stays exact.
        """
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.stats.refused(signal, DropReason.INVALID)
        warn_throttled(
            f"invalid-input:{signal}",
            "dropped a %s call with unusable input (%s)",
            signal,
            type(error).__name__,
        )

    def _not_running(self, what: str) -> None:
        """Explain why a call is dropped: raise if never initialized, else stay quiet."""
        if self._state == "new":
            raise NotInitializedError(
                f"{what}() needs an initialized client; call initialize() or use 'with client:'"
            )

    # -- metrics ---------------------------------------------------------------------
    def increment_counter(
        self, name: str, value: int = 1, attributes: dict[str, Any] | None = None
    ) -> None:
        """Add ``value`` (>= 0) to the counter ``name``."""
        recorder = self._recorder()
        if recorder is None:
            return self._not_running("increment_counter")
        try:
            recorder.record("counter", name, value, "", attributes)
        except Exception as exc:
            self._invalid_input("metrics", exc)
        return None

    def record_gauge(
        self, name: str, value: float, attributes: dict[str, Any] | None = None
    ) -> None:
        """Set the current value of gauge ``name``; the last value per attribute set wins."""
        recorder = self._recorder()
        if recorder is None:
            return self._not_running("record_gauge")
        try:
            recorder.record("gauge", name, value, "", attributes)
        except Exception as exc:
            self._invalid_input("metrics", exc)
        return None

    def record_histogram(
        self, name: str, value: float, unit: str = "", attributes: dict[str, Any] | None = None
    ) -> None:
        """Record ``value`` into histogram ``name`` (an exemplar links it to the current span)."""
        recorder = self._recorder()
        if recorder is None:
            return self._not_running("record_histogram")
        try:
            recorder.record("histogram", name, value, unit, attributes)
        except Exception as exc:
            self._invalid_input("metrics", exc)
        return None

    def record_metric(
        self, name: str, value: float, unit: str = "", attributes: dict[str, Any] | None = None
    ) -> None:
        """Record a value whose distribution matters; exported as a histogram."""
        recorder = self._recorder()
        if recorder is None:
            return self._not_running("record_metric")
        try:
            recorder.record("histogram", name, value, unit, attributes)
        except Exception as exc:
            self._invalid_input("metrics", exc)
        return None

    # -- logs ------------------------------------------------------------------------
    def log(
        self,
        message: str,
        severity: SeverityLevel = SeverityLevel.INFO,
        attributes: dict[str, Any] | None = None,
    ) -> None:
        """Emit a log record; inside a span it carries that span's trace and span ids."""
        otel_logger = self._logger
        if otel_logger is None:
            return self._not_running("log")
        try:
            try:  # members and their string values hash alike: one lookup, no Enum call
                pair = _SEVERITY[severity]
            except (KeyError, TypeError):
                pair = _severity(severity)
            self._emit(otel_logger, message, pair, attributes)
        except Exception as exc:
            self._invalid_input("logs", exc)
        return None

    def _emit(
        self,
        otel_logger: otel_logs.Logger,
        message: Any,
        severity: tuple[SeverityNumber, str],
        attributes: Any,
    ) -> None:
        body = message if isinstance(message, str) else str(message)
        timestamp = time.time_ns()
        cleaned = clean_attributes(attributes)
        light = self._light_logs
        if light is not None and light.emit(timestamp, time.time_ns(), severity, body, cleaned):
            return
        otel_logger.emit(
            timestamp=timestamp,
            severity_number=severity[0],
            severity_text=severity[1],
            body=body,
            attributes=cleaned,
        )

    def log_debug(self, message: str, attributes: dict[str, Any] | None = None) -> None:
        self.log(message, SeverityLevel.DEBUG, attributes)

    def log_info(self, message: str, attributes: dict[str, Any] | None = None) -> None:
        self.log(message, SeverityLevel.INFO, attributes)

    def log_warn(self, message: str, attributes: dict[str, Any] | None = None) -> None:
        self.log(message, SeverityLevel.WARN, attributes)

    def log_error(self, message: str, attributes: dict[str, Any] | None = None) -> None:
        self.log(message, SeverityLevel.ERROR, attributes)

    # -- traces ----------------------------------------------------------------------
    def start_span(
        self,
        name: str,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: dict[str, Any] | None = None,
    ) -> str:
        """Start a span (child of the current one) and return its 16-hex-digit id.

        The span is not made current; end it with :meth:`end_span`. Use :meth:`span`
        for a span that is current inside a block.
        """
        registry = self._spans
        if registry is None:
            self._not_running("start_span")
            return "0000000000000000"
        try:
            return registry.start(name, kind, attributes)[0]
        except Exception as exc:
            self._invalid_input("traces", exc)
            return "0000000000000000"

    def end_span(self, span_id: str, error: Exception | None = None) -> None:
        """End the span; with ``error``, mark it failed and record the exception."""
        registry = self._spans
        if registry is None:
            return self._not_running("end_span")
        try:
            registry.end(span_id, error)
        except Exception as exc:
            self._invalid_input("traces", exc)
        return None

    def add_span_event(
        self, span_id: str, name: str, attributes: dict[str, Any] | None = None
    ) -> None:
        """Add an event to an open span (from ``start_span`` or ``span()``)."""
        registry = self._spans
        if registry is None:
            return self._not_running("add_span_event")
        try:
            span = registry.get(span_id)
            if span is not None:
                event_name = name if type(name) is str else str(name)
                span.add_event(event_name, clean_attributes(attributes))
        except Exception as exc:
            self._invalid_input("traces", exc)
        return None

    def span(
        self,
        name: str,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: dict[str, Any] | None = None,
    ) -> SpanScope:
        """Context manager: a span that is current inside the block; yields its id.

        An exception leaving the block marks the span failed and propagates unchanged.
        """
        if self._spans is None:
            self._not_running("span")
        return SpanScope(self._spans, name, kind, attributes, self)

    # -- the live OpenTelemetry objects, for integrations ----------------------------
    @property
    def tracer(self) -> otel_trace.Tracer | None:
        """This client's OpenTelemetry tracer (None before initialize or if traces are off).

        A drop-in tracer whose spans skip work the SDK's repeat for ours (see
        ``light_spans.LightTracer``); integrations get the same output for less.
        """
        if self._pid != os.getpid():
            self._after_fork()
        registry = self._spans
        return light_tracer(registry.tracer) if registry is not None else None

    @property
    def meter(self) -> otel_metrics.Meter | None:
        """This client's OpenTelemetry meter (None before initialize or if metrics are off)."""
        if self._pid != os.getpid():
            self._after_fork()  # servers that skip at-fork hooks: never the parent's meter
        pipeline = self._pipeline
        if pipeline is None or pipeline.meter_provider is None:
            return None
        return pipeline.meter_provider.get_meter(_INSTRUMENTATION_NAME, __version__)

    @property
    def logger_provider(self) -> LoggerProvider | None:
        """This client's OpenTelemetry logger provider (None before initialize or if logs
        are off); integrations use it to give each logger name its own scope."""
        pipeline = self._pipeline
        return pipeline.logger_provider if pipeline is not None else None

    @property
    def otel_logger(self) -> otel_logs.Logger | None:
        """This client's OpenTelemetry logger (None before initialize or if logs are off)."""
        return self._logger

    # -- status ----------------------------------------------------------------------
    def _stats_snapshot(self) -> dict[str, dict[str, Any]]:
        pipeline = self._pipeline
        stats = pipeline.stats if pipeline is not None else getattr(self, "_last_stats", None)
        if stats is None:
            empty = {
                "recorded": 0,
                "exported": 0,
                "dropped": 0,
                "dropped_by_reason": {},
                "pending": 0,
                "requests_ok": 0,
                "requests_failed": 0,
            }
            return {s: dict(empty) for s in ("traces", "metrics", "logs")}
        return stats.snapshot()

    def get_status(self) -> dict[str, Any]:
        """What the client is and what it actually delivered (not what it recorded)."""
        config = self._config
        snap = self._stats_snapshot()
        return {
            "initialized": self.is_initialized(),
            "version": __version__,
            "service_name": config.service_name,
            "endpoint": config.endpoint,
            "protocol": config.protocol.value,
            "signals_enabled": config.signals_enabled,
            "uptime_seconds": (
                time.time() - self._started_at
                if self._started_at is not None and self.is_initialized()
                else None
            ),
            "metrics_sent": snap["metrics"]["exported"],
            "logs_sent": snap["logs"]["exported"],
            "spans_sent": snap["traces"]["exported"],
            "key_id": config.credentials.masked_key_id,
            "dropped": {s: v["dropped_by_reason"] for s, v in snap.items()},
            "export_requests_failed": sum(v["requests_failed"] for v in snap.values()),
        }

    def health(self) -> dict[str, Any]:
        """Queue depths, per-signal accounting, and the last export error and when."""
        pipeline = self._pipeline
        stats = pipeline.stats if pipeline is not None else getattr(self, "_last_stats", None)
        last_error = stats.last_error if stats is not None else None
        last_error_at = stats.last_error_at if stats is not None else None
        last_ok = stats.last_success_at if stats is not None else None
        healthy = last_error_at is None or (last_ok is not None and last_ok > last_error_at)
        return {
            "status": (
                "not_initialized" if not self.is_initialized() else "ok" if healthy else "degraded"
            ),
            "queue_depth": pipeline.queue_depths() if pipeline is not None else {},
            "signals": self._stats_snapshot(),
            "last_error": last_error,
            "last_error_at": last_error_at,
            "last_success_at": last_ok,
        }

    def __repr__(self) -> str:
        return (
            f"TelemetryFlowClient(service={self._config.service_name!r}, "
            f"endpoint={self._config.endpoint!r}, state={self._state!r})"
        )
