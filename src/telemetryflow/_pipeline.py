"""The OpenTelemetry providers of one client, wired to TelemetryFlow's export path.

::

    Tracer  ─ span ends ─▶ SpanQueueProcessor ─▶ BatchQueue ─▶ encode ─▶ Sender ─▶ Transport
    Logger  ─ emit ──────▶ LogQueueProcessor  ─▶ BatchQueue ─▶ encode ─▶ Sender ─▶ Transport
    Meter   ─ (periodic) ─▶ PeriodicExportingMetricReader ─▶ OtlpMetricExporter ─▶ Sender

The OpenTelemetry SDK does recording, aggregation and context; everything from the
end of a span to the wire is ours, because that is where the SDK's own batch
processor and exporters lose data silently and block shutdown (see ARCHITECTURE.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics._internal.exemplar import (
    AlwaysOffExemplarFilter,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from telemetryflow._batch import BatchQueue
from telemetryflow._config import TelemetryConfig
from telemetryflow._diagnostics import sdk_section
from telemetryflow._ratelimit import RateLimiter
from telemetryflow._retry import RetryPolicy
from telemetryflow._sender import Sender
from telemetryflow._stats import DropReason, Stats
from telemetryflow._transport import Transport, make_transport

__all__ = ["Pipeline"]


class SpanQueueProcessor(SpanProcessor):
    """Hands every ended, sampled span to the traces queue."""

    def __init__(self, queue: BatchQueue[ReadableSpan], stats: Stats) -> None:
        self._queue = queue
        self._stats = stats

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self._stats.recorded("traces")
            self._queue.put(span)

    def shutdown(self) -> None:
        return None  # the pipeline shuts the queue down with its own deadline

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._queue.force_flush(timeout_millis / 1000)


class LogQueueProcessor(LogRecordProcessor):
    """Hands every emitted log record to the logs queue."""

    def __init__(self, queue: BatchQueue[ReadWriteLogRecord], stats: Stats) -> None:
        self._queue = queue
        self._stats = stats

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self._stats.recorded("logs")
        self._queue.put(log_record)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._queue.force_flush(timeout_millis / 1000)


def count_data_points(data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )


class OtlpMetricExporter(MetricExporter):
    """Cumulative OTLP metric export through the shared sender."""

    def __init__(self, sender: Sender, stats: Stats) -> None:
        temporality = dict.fromkeys(
            (
                Counter,
                UpDownCounter,
                Histogram,
                ObservableCounter,
                ObservableUpDownCounter,
                ObservableGauge,
            ),
            AggregationTemporality.CUMULATIVE,
        )
        super().__init__(preferred_temporality=temporality)  # type: ignore[arg-type]
        self._sender = sender
        self._stats = stats
        self.deadline: float | None = None

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        points = count_data_points(metrics_data)
        if points == 0:
            return MetricExportResult.SUCCESS
        self._stats.recorded("metrics", points)
        deadline = self.deadline
        limiter = self._sender.limiter
        if limiter is not None and limiter.try_acquire() > 0:
            # Cumulative points: the next collection carries these totals again.
            self._stats.dropped("metrics", DropReason.RATE_LIMITED, points)
            return MetricExportResult.FAILURE
        with sdk_section():
            body = encode_metrics(metrics_data).SerializeToString()
        ok = self._sender.send("metrics", body, points, deadline)
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


class Pipeline:
    """Providers, queues and the sender of one client, built on ``initialize()``."""

    def __init__(
        self,
        config: TelemetryConfig,
        resource: Resource,
        transport_factory: Callable[[], Transport] | None = None,
    ) -> None:
        self.config = config
        self.stats = Stats()
        limiter = RateLimiter(config.rate_limit) if config.rate_limit else None
        policy = RetryPolicy(
            enabled=config.retry_enabled,
            max_retries=config.max_retries,
            initial_backoff=config.retry_backoff.total_seconds(),
            max_backoff=config.retry_max_backoff.total_seconds(),
        )
        factory = transport_factory or (lambda: make_transport(config))
        self.sender = Sender(factory, policy, config.timeout.total_seconds(), self.stats, limiter)
        delay = config.batch_timeout.total_seconds()
        self.tracer_provider: TracerProvider | None = None
        self.logger_provider: LoggerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        self.span_queue: BatchQueue[ReadableSpan] | None = None
        self.log_queue: BatchQueue[ReadWriteLogRecord] | None = None
        self._metric_exporter: OtlpMetricExporter | None = None
        self._metric_reader: PeriodicExportingMetricReader | None = None
        queue_args: dict[str, Any] = {
            "max_queue_size": config.max_queue_size,
            "max_batch_size": config.batch_max_size,
            "schedule_delay": delay,
            "before_export": self.sender.wait_for_rate,
        }
        if config.enable_traces:
            self.span_queue = BatchQueue("traces", self._export_spans, self.stats, **queue_args)
            self.tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
            self.tracer_provider.add_span_processor(SpanQueueProcessor(self.span_queue, self.stats))
        if config.enable_logs:
            self.log_queue = BatchQueue("logs", self._export_logs, self.stats, **queue_args)
            self.logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
            self.logger_provider.add_log_record_processor(
                LogQueueProcessor(self.log_queue, self.stats)
            )
        if config.enable_metrics:
            self._metric_exporter = OtlpMetricExporter(self.sender, self.stats)
            self._metric_reader = PeriodicExportingMetricReader(
                self._metric_exporter,
                export_interval_millis=delay * 1000,
                export_timeout_millis=config.timeout.total_seconds() * 1000,
            )
            exemplar_filter = (
                TraceBasedExemplarFilter() if config.enable_exemplars else AlwaysOffExemplarFilter()
            )
            self.meter_provider = MeterProvider(
                metric_readers=[self._metric_reader],
                resource=resource,
                exemplar_filter=exemplar_filter,
                shutdown_on_exit=False,
            )

    def _export_spans(self, batch: Sequence[ReadableSpan], deadline: float | None) -> None:
        body = encode_spans(batch).SerializeToString()
        self.sender.send("traces", body, len(batch), deadline)

    def _export_logs(self, batch: Sequence[ReadWriteLogRecord], deadline: float | None) -> None:
        body = encode_logs(batch).SerializeToString()  # type: ignore[arg-type]  # duck-typed
        self.sender.send("logs", body, len(batch), deadline)

    def queue_depths(self) -> dict[str, int]:
        return {
            "traces": self.span_queue.depth if self.span_queue else 0,
            "logs": self.log_queue.depth if self.log_queue else 0,
        }

    def flush(self, timeout: float) -> bool:
        """Export everything pending, within ``timeout`` seconds in total."""
        deadline = time.monotonic() + timeout
        ok = True
        for queue in (self.span_queue, self.log_queue):
            if queue is not None:
                ok = queue.force_flush(max(0.0, deadline - time.monotonic())) and ok
        if self._metric_reader is not None and self._metric_exporter is not None:
            self._metric_exporter.deadline = deadline
            try:
                remaining_ms = max(0.0, deadline - time.monotonic()) * 1000
                ok = self._metric_reader.force_flush(timeout_millis=remaining_ms) and ok
            finally:
                self._metric_exporter.deadline = None
        return ok

    def shutdown(self, timeout: float) -> None:
        """Send what is pending within ``timeout``, then stop every thread and channel."""
        deadline = time.monotonic() + timeout
        self.sender.begin_shutdown()
        if self.meter_provider is not None and self._metric_exporter is not None:
            # The reader's shutdown makes the final collection and export itself.
            self._metric_exporter.deadline = deadline
            remaining_ms = max(0.001, deadline - time.monotonic()) * 1000
            self.meter_provider.shutdown(timeout_millis=remaining_ms)
        for queue in (self.span_queue, self.log_queue):
            if queue is not None:
                queue.shutdown(max(0.0, deadline - time.monotonic()))
        self.sender.stop()
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.logger_provider is not None:
            self.logger_provider.shutdown()
        self.sender.close()
