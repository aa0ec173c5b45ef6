"""Public home of the client and its runtime errors (``from telemetryflow.client import ...``)."""

from telemetryflow._configuration.errors import NotInitializedError, TelemetryFlowError
from telemetryflow._extras.facade import TelemetryFlowClient

__all__ = ["NotInitializedError", "TelemetryFlowClient", "TelemetryFlowError"]
