"""Public home of the configuration aggregate (``from telemetryflow.domain.config import ...``)."""

from telemetryflow._configuration.config import TelemetryConfig
from telemetryflow._configuration.enums import Protocol, SignalType
from telemetryflow._configuration.errors import ConfigError

__all__ = ["ConfigError", "Protocol", "SignalType", "TelemetryConfig"]
