"""Public home of the configuration aggregate (``from telemetryflow.domain.config import ...``)."""

from telemetryflow._config import TelemetryConfig
from telemetryflow._enums import Protocol, SignalType
from telemetryflow._errors import ConfigError

__all__ = ["ConfigError", "Protocol", "SignalType", "TelemetryConfig"]
