"""Enumerations used when recording: log severity and span kind."""

from telemetryflow.application.commands import SeverityLevel, SpanKind

__all__ = ["SeverityLevel", "SpanKind"]
