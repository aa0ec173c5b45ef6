"""Public home of ``SeverityLevel`` and ``SpanKind``, as the API reference documents."""

from telemetryflow._configuration.enums import SeverityLevel, SpanKind

__all__ = ["SeverityLevel", "SpanKind"]
