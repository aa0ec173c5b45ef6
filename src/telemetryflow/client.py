"""Public home of the client and its runtime errors (``from telemetryflow.client import ...``)."""

from telemetryflow._client import TelemetryFlowClient
from telemetryflow._errors import NotInitializedError, TelemetryFlowError

__all__ = ["NotInitializedError", "TelemetryFlowClient", "TelemetryFlowError"]
