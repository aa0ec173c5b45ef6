"""Public home of the builder (``from telemetryflow.builder import ...``)."""

from telemetryflow._builder import TelemetryFlowBuilder
from telemetryflow._errors import BuilderError

__all__ = ["BuilderError", "TelemetryFlowBuilder"]
