"""The OpenTelemetry providers of one client, wired to TelemetryFlow's export path.

::

    Tracer ─ span ends ─▶ SpanQueueProcessor ─▶ BatchQueue ─▶ encode ─▶ Sender ─▶ Transport
    Logger ─ emit ──────▶ LogQueueProcessor  ─▶ BatchQueue ─▶ encode ─▶ Sender ─▶ Transport
    Meter  ─ (periodic) ─▶ DeadlineMetricReader ─▶ encode ─▶ Sender ─▶ Transport

The OpenTelemetry SDK does recording, aggregation and context; everything from the
end of a span to the wire is ours, because that is where the SDK's own batch
processor and exporters lose data silently and block shutdown (see ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import (
    AlwaysOffExemplarFilter,
    TraceBasedExemplarFilter,
)
from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from telemetryflow._configuration.config import TelemetryConfig
from telemetryflow._exporting.batch import BatchQueue
from telemetryflow._exporting.metric_reader import DeadlineMetricReader
from telemetryflow._exporting.ratelimit import RateLimiter
from telemetryflow._exporting.retry import RetryPolicy
from telemetryflow._exporting.sender import Outcome, Sender
from telemetryflow._exporting.spool import Spool, SpoolDrainer
from telemetryflow._exporting.stats import DropReason, Stats
from telemetryflow._exporting.transport import Transport, make_transport
from telemetryflow._recording.diagnostics import sdk_section, warn_throttled
from telemetryflow._recording.light_logs import LightLogRecord
from telemetryflow._recording.light_spans import LightSpan
from telemetryflow._scrubbing.scrubber import make_scrubber

__all__ = ["Pipeline"]

T = TypeVar("T")

_ABORT_GRACE = 0.5
"""How long shutdown waits, after cutting attempts short, for them to be counted."""


class SpanQueueProcessor(SpanProcessor):
    """Hands every ended, sampled span to the traces queue."""

    def __init__(self, queue: BatchQueue[ReadableSpan], stats: Stats) -> None:
        self._queue = queue
        self._stats = stats

    def on_end(self, span: ReadableSpan) -> None:
        # A light span is recording only when sampled: no need to ask its context.
        if type(span) is LightSpan or (
            span.context is not None and span.context.trace_flags.sampled
        ):
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


def span_size(span: ReadableSpan) -> int:
    """A cheap upper-bound estimate of a span's encoded size, for the byte budget."""
    if type(span) is LightSpan:  # the same figure, without the properties' copies
        return 160 + len(span._name) + 96 * (len(span._attributes or ()) + len(span._events))
    return 160 + len(span.name) + 96 * (len(span.attributes or ()) + len(span.events))


def log_size(record: ReadWriteLogRecord | LightLogRecord) -> int:
    if type(record) is LightLogRecord:  # the same figure, without the property call
        body: Any = record.body
        body_len = len(body) if isinstance(body, (str, bytes)) else 64
        return 128 + body_len + 96 * len(record.attributes)
    body = record.log_record.body
    body_len = len(body) if isinstance(body, (str, bytes)) else 64
    return 128 + body_len + 96 * len(record.log_record.attributes or ())


def count_data_points(data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )


class Pipeline:
    """Providers, queues and the sender of one client, built on ``initialize()``."""

    def __init__(
        self,
        config: TelemetryConfig,
        resource: Resource,
        transport_factory: Callable[[], Transport] | None = None,
    ) -> None:
        self.config = config
        self.resource = resource
        self.stats = Stats()
        self._resource_overrides: dict[str, Any] = {}
        self._scrub = make_scrubber(config)
        limiter = RateLimiter(config.rate_limit) if config.rate_limit else None
        policy = RetryPolicy(
            enabled=config.retry_enabled,
            max_retries=config.max_retries,
            initial_backoff=config.retry_backoff.total_seconds(),
            max_backoff=config.retry_max_backoff.total_seconds(),
        )
        factory = transport_factory or (lambda: make_transport(config))
        self.sender = Sender(factory, policy, config.timeout.total_seconds(), self.stats, limiter)
        self.tracer_provider: TracerProvider | None = None
        self.logger_provider: LoggerProvider | None = None
        self.meter_provider: MeterProvider | None = None
        self.span_queue: BatchQueue[ReadableSpan] | None = None
        self.log_queue: BatchQueue[ReadWriteLogRecord] | None = None
        self._metric_reader: DeadlineMetricReader | None = None
        self._metric_points_in_flight = 0
        self._pid = os.getpid()
        queue_args: dict[str, Any] = {
            "max_queue_size": config.max_queue_size,
            "max_batch_size": config.batch_max_size,
            "max_queue_bytes": config.max_queue_bytes,
            "schedule_delay": config.batch_timeout.total_seconds(),
            "before_export": self.sender.wait_for_rate,
            "pause_after_failure": self.sender.pause_after_failure,
        }
        self.spool: Spool | None = None
        self._drainer: SpoolDrainer | None = None
        if config.persistent_buffer_dir and (config.enable_traces or config.enable_logs):
            self.spool = Spool(
                config.persistent_buffer_dir, config.service_name, config.persistent_buffer_bytes
            )
            self._drainer = SpoolDrainer(self.spool, self.sender, self.stats)
        if config.enable_traces:
            self.span_queue = BatchQueue(
                "traces", self._export_spans, self.stats, size_of=span_size, **queue_args
            )
            self.tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
            self.tracer_provider.add_span_processor(SpanQueueProcessor(self.span_queue, self.stats))
        if config.enable_logs:
            self.log_queue = BatchQueue(
                "logs", self._export_logs, self.stats, size_of=log_size, **queue_args
            )
            self.logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
            self.logger_provider.add_log_record_processor(
                LogQueueProcessor(self.log_queue, self.stats)
            )
        if config.enable_metrics:
            self.meter_provider = self._build_meter_provider(resource)

    def _build_meter_provider(self, resource: Resource) -> MeterProvider:
        config = self.config
        self._metric_reader = DeadlineMetricReader(
            self._export_metrics,
            config.batch_timeout.total_seconds(),
            config.timeout.total_seconds(),
        )
        exemplar_filter = (
            TraceBasedExemplarFilter() if config.enable_exemplars else AlwaysOffExemplarFilter()
        )
        return MeterProvider(
            metric_readers=[self._metric_reader],
            resource=resource,
            exemplar_filter=exemplar_filter,
            shutdown_on_exit=False,
        )

    def _export_metrics(self, data: MetricsData, deadline: float | None) -> bool:
        """Send cumulative points once the process that owns them is this one."""
        if os.getpid() != self._pid:
            return True  # a forked child never re-sends its parent's accumulations
        points = count_data_points(data)
        if points == 0:
            return True
        self.stats.recorded("metrics", points)
        limiter = self.sender.limiter
        if limiter is not None and limiter.try_acquire() > 0:
            # The next collection carries these totals again.
            self.stats.dropped("metrics", DropReason.RATE_LIMITED, points)
            return False
        try:
            with sdk_section():
                request = encode_metrics(data)
                self.apply_resource_overrides(request.resource_metrics)
                if self._scrub is not None:
                    self._scrub("metrics", request)
                body = request.SerializeToString()
        except Exception as exc:  # counted as recorded above: count its end too
            self.stats.dropped("metrics", DropReason.INVALID, points)
            warn_throttled(
                "unencodable:metrics",
                "dropped metric points that cannot be encoded: %s",
                type(exc).__name__,
            )
            return False
        self._metric_points_in_flight = points
        try:
            return self.sender.send("metrics", body, points, deadline) is Outcome.EXPORTED
        finally:
            self._metric_points_in_flight = 0

    # -- export --------------------------------------------------------------------
    def apply_resource_overrides(self, resource_blocks: Any) -> None:
        """Give a forked child its own ``service.instance.id`` and ``process.pid``."""
        if not self._resource_overrides:
            return
        for block in resource_blocks:
            attributes = block.resource.attributes
            for item in attributes:
                if item.key in self._resource_overrides:
                    value = self._resource_overrides[item.key]
                    if isinstance(value, int):
                        item.value.int_value = value
                    else:
                        item.value.string_value = value

    def _export_spans(
        self, batch: Sequence[ReadableSpan], deadline: float | None
    ) -> Sequence[ReadableSpan]:
        def encode(items: Sequence[ReadableSpan]) -> bytes:
            from telemetryflow._exporting.encode import encode_spans as encode_direct

            body = encode_direct(items, self._resource_overrides, self._scrub)
            if body is not None:  # None: a scrub callback is set, or an odd value
                return body
            request = encode_spans(items)
            self.apply_resource_overrides(request.resource_spans)
            if self._scrub is not None:
                self._scrub("traces", request)
            return request.SerializeToString()  # type: ignore[no-any-return]

        return self._deliver("traces", batch, encode, deadline)

    def _export_logs(
        self, batch: Sequence[ReadWriteLogRecord], deadline: float | None
    ) -> Sequence[ReadWriteLogRecord]:
        def encode(items: Sequence[ReadWriteLogRecord]) -> bytes:
            from telemetryflow._exporting.encode import encode_logs as encode_direct

            body = encode_direct(items, self._resource_overrides, self._scrub)
            if body is not None:
                return body
            request = encode_logs(items)  # type: ignore[arg-type]  # duck-typed records
            self.apply_resource_overrides(request.resource_logs)
            if self._scrub is not None:
                self._scrub("logs", request)
            return request.SerializeToString()  # type: ignore[no-any-return]

        return self._deliver("logs", batch, encode, deadline)

    def _deliver(
        self,
        signal: str,
        batch: Sequence[T],
        encode: Callable[[Sequence[T]], bytes],
        deadline: float | None,
    ) -> Sequence[T]:
        """Send ``batch``, halving it while a request would exceed the size limit.

        Returns the items to keep for a later try (the collector is unreachable).
        """
        try:
            body = encode(batch)
        except Exception as exc:
            return self._isolate_unencodable(signal, batch, encode, deadline, exc)
        if len(body) <= self.config.max_request_bytes:
            if self.spool is not None:
                if not self.spool.append(signal, body, len(batch)):
                    self.stats.dropped(signal, DropReason.QUEUE_FULL, len(batch))
                    warn_throttled(
                        f"spool-full:{signal}", "persistent buffer is full; dropping new %s", signal
                    )
                return ()
            outcome = self.sender.send(signal, body, len(batch), deadline, keep_on_failure=True)
            return batch if outcome is Outcome.KEEP else ()
        if len(batch) == 1:
            self.stats.dropped(signal, DropReason.TOO_LARGE, 1)
            warn_throttled(
                f"too-large:{signal}",
                "dropped one %s item of %d bytes: over the %d-byte request limit",
                signal,
                len(body),
                self.config.max_request_bytes,
            )
            return ()
        return self._halves(signal, batch, encode, deadline)

    def _halves(
        self,
        signal: str,
        batch: Sequence[T],
        encode: Callable[[Sequence[T]], bytes],
        deadline: float | None,
    ) -> Sequence[T]:
        """Deliver the two halves in order; once one is kept, keep the rest unsent."""
        middle = len(batch) // 2
        kept = self._deliver(signal, batch[:middle], encode, deadline)
        if kept:
            return [*kept, *batch[middle:]]
        return self._deliver(signal, batch[middle:], encode, deadline)

    def _isolate_unencodable(
        self,
        signal: str,
        batch: Sequence[T],
        encode: Callable[[Sequence[T]], bytes],
        deadline: float | None,
        error: Exception,
    ) -> Sequence[T]:
        if len(batch) == 1:
            self.stats.dropped(signal, DropReason.INVALID, 1)
            warn_throttled(
                f"unencodable:{signal}",
                "dropped one %s item that cannot be encoded: %s",
                signal,
                type(error).__name__,
            )
            return ()
        return self._halves(signal, batch, encode, deadline)

    # -- lifecycle -----------------------------------------------------------------
    def after_fork(self) -> None:
        """In a forked child: fresh counters, identity and metric state of our own.

        Queues and the transport notice the new pid by themselves; metric
        accumulations cannot be emptied, so the child gets a new meter provider
        (the parent's exporter refuses to export from another pid).
        """
        self.stats.reset()
        self._pid = os.getpid()
        if self.spool is not None:
            self.spool.abandon_after_fork()  # the parent keeps sending its own file
            self.spool = Spool(
                self.config.persistent_buffer_dir or ".",
                self.config.service_name,
                self.config.persistent_buffer_bytes,
            )
            self._drainer = SpoolDrainer(self.spool, self.sender, self.stats)
        self._resource_overrides = {
            "service.instance.id": str(uuid.uuid4()),
            "process.pid": os.getpid(),
        }
        if self.meter_provider is not None:
            attributes = dict(self.resource.attributes)
            attributes.update(self._resource_overrides)
            self.meter_provider = self._build_meter_provider(Resource(attributes))

    def queue_depths(self) -> dict[str, int]:
        """Items waiting in a buffer or in a request not yet answered, per signal."""
        depths = {
            "traces": self.span_queue.depth if self.span_queue else 0,
            "logs": self.log_queue.depth if self.log_queue else 0,
            "metrics": self._metric_points_in_flight,
        }
        if self.spool is not None:
            depths["persistent_buffer"] = self.spool.pending_items()
        return depths

    def flush(self, timeout: float) -> bool:
        """Export everything pending, within ``timeout`` seconds in total."""
        deadline = time.monotonic() + timeout
        ok = True
        for queue in (self.span_queue, self.log_queue):
            if queue is not None:
                ok = queue.force_flush(max(0.0, deadline - time.monotonic())) and ok
        if self.meter_provider is not None:
            remaining_ms = max(0.001, deadline - time.monotonic()) * 1000
            try:
                ok = self.meter_provider.force_flush(timeout_millis=remaining_ms) and ok
            except Exception:  # the SDK raises when a reader misses the deadline
                ok = False
        return self._wait_for_spool(deadline) and ok

    def _wait_for_spool(self, deadline: float) -> bool:
        """With a persistent buffer, flushed means sent, not just stored."""
        if self.spool is None:
            return True
        while self.spool.pending_items() > 0:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def shutdown(self, timeout: float) -> None:
        """Send what is pending within ``timeout``, then stop every thread and channel.

        At the deadline a timer aborts the attempts still in flight, so every item is
        counted (exported, dropped, or left on disk) by the time this returns.
        """
        deadline = time.monotonic() + timeout
        self.sender.begin_shutdown(deadline)
        cutoff = threading.Timer(max(0.0, timeout), self.sender.stop)
        cutoff.daemon = True
        cutoff.start()
        try:
            self._drain(deadline)
        finally:
            cutoff.cancel()
        self.sender.stop()
        for queue in (self.span_queue, self.log_queue):
            if queue is not None:
                queue.join(_ABORT_GRACE)
        if self._metric_reader is not None:
            self._metric_reader.join(_ABORT_GRACE)
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.logger_provider is not None:
            self.logger_provider.shutdown()
        self.sender.close()

    def _drain(self, deadline: float) -> None:
        """Send spans, logs and the last metric totals side by side until ``deadline``."""
        queues = [queue for queue in (self.span_queue, self.log_queue) if queue is not None]
        for queue in queues:
            queue.begin_shutdown(deadline)
        if self.meter_provider is not None:
            # The reader's shutdown makes the final collection and export itself.
            remaining_ms = max(0.001, deadline - time.monotonic()) * 1000
            try:
                self.meter_provider.shutdown(timeout_millis=remaining_ms)
            except Exception:  # a reader past the deadline: the SDK raises, we go on
                warn_throttled("metrics-shutdown", "the last metric export missed the deadline")
                if self._metric_reader is not None:  # perhaps skipped: stop its thread
                    with contextlib.suppress(Exception):
                        self._metric_reader.shutdown(timeout_millis=1)
        for queue in queues:
            queue.shutdown(max(0.0, deadline - time.monotonic()))
        if self.spool is not None and self._drainer is not None:
            # What is not sent by the deadline stays on disk for the next process.
            self._wait_for_spool(deadline)
            self.sender.stop()
            self._drainer.stop(max(0.0, deadline - time.monotonic()) + _ABORT_GRACE)
            self.spool.close()
