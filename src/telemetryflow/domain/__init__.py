"""Value objects: configuration and credentials."""

from telemetryflow.domain.config import ConfigError, Protocol, SignalType, TelemetryConfig
from telemetryflow.domain.credentials import Credentials, CredentialsError

__all__ = [
    "ConfigError",
    "Credentials",
    "CredentialsError",
    "Protocol",
    "SignalType",
    "TelemetryConfig",
]
