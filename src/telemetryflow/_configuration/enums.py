"""The small enumerations of the public API."""

from __future__ import annotations

from enum import Enum

__all__ = ["Protocol", "SeverityLevel", "SignalType", "SpanKind"]


class Protocol(str, Enum):
    """OTLP transport."""

    GRPC = "grpc"
    HTTP = "http"


class SignalType(str, Enum):
    """The three telemetry signals."""

    METRICS = "metrics"
    LOGS = "logs"
    TRACES = "traces"


class SeverityLevel(str, Enum):
    """Log severity, mapped onto OpenTelemetry severity numbers when emitted."""

    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"
    FATAL = "fatal"


class SpanKind(str, Enum):
    """Span kind, mapped onto :class:`opentelemetry.trace.SpanKind`."""

    INTERNAL = "internal"
    SERVER = "server"
    CLIENT = "client"
    PRODUCER = "producer"
    CONSUMER = "consumer"
