"""Public home of the builder (``from telemetryflow.builder import ...``)."""

from telemetryflow._configuration.builder import TelemetryFlowBuilder
from telemetryflow._configuration.errors import BuilderError

__all__ = ["BuilderError", "TelemetryFlowBuilder"]
