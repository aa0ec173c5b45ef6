"""What the conveniences need from a client, and nothing more.

The conveniences are written against this protocol instead of the client class, so
they depend on what a client does while the client core
(:mod:`telemetryflow._recording.client`) never depends on them. The public
:class:`~telemetryflow.TelemetryFlowClient` (:mod:`telemetryflow._extras.facade`)
satisfies it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from opentelemetry import _logs as otel_logs
    from opentelemetry import trace as otel_trace
    from opentelemetry.sdk._logs import LoggerProvider

    from telemetryflow._configuration.config import TelemetryConfig
    from telemetryflow._exporting.pipeline import Pipeline
    from telemetryflow._recording.instruments import MetricRecorder
    from telemetryflow._recording.light_logs import LightLogs

__all__ = ["ClientLike"]


class ClientLike(Protocol):
    """A running-or-not client: its configuration, OpenTelemetry objects and metrics."""

    # The hot paths (``track``, the logging bridge) read these of the client core
    # directly instead of through the public properties: one call less per record.
    _state: str
    _pipeline: Pipeline | None
    _light_logs: LightLogs | None

    def _recorder(self) -> MetricRecorder | None: ...

    @property
    def config(self) -> TelemetryConfig: ...

    @property
    def tracer(self) -> otel_trace.Tracer | None: ...

    @property
    def otel_logger(self) -> otel_logs.Logger | None: ...

    @property
    def logger_provider(self) -> LoggerProvider | None: ...

    def is_initialized(self) -> bool: ...

    def increment_counter(
        self, name: str, value: int = 1, attributes: dict[str, Any] | None = None
    ) -> None: ...

    def record_histogram(
        self, name: str, value: float, unit: str = "", attributes: dict[str, Any] | None = None
    ) -> None: ...

    def event(self, name: str, /, status: str = "completed", **kwargs: Any) -> None: ...
