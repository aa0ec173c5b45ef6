"""TelemetryFlow: one builder, one client for metrics, logs and traces on OpenTelemetry.

Example:
    >>> from telemetryflow import TelemetryFlowBuilder
    >>> with TelemetryFlowBuilder().with_auto_configuration().build() as client:
    ...     client.increment_counter("app.started")
"""

from telemetryflow._configuration.builder import TelemetryFlowBuilder
from telemetryflow._configuration.config import TelemetryConfig
from telemetryflow._configuration.credentials import Credentials
from telemetryflow._configuration.enums import Protocol, SeverityLevel, SignalType, SpanKind
from telemetryflow._configuration.errors import (
    BuilderError,
    ConfigError,
    CredentialsError,
    NotInitializedError,
    TelemetryFlowError,
)
from telemetryflow._extras.conveniences import event, trace, track
from telemetryflow._extras.facade import TelemetryFlowClient, get_default_client, set_default_client
from telemetryflow._extras.flags import FlagSet
from telemetryflow._version import __version__

__all__ = [
    "BuilderError",
    "ConfigError",
    "Credentials",
    "CredentialsError",
    "FlagSet",
    "NotInitializedError",
    "Protocol",
    "SeverityLevel",
    "SignalType",
    "SpanKind",
    "TelemetryConfig",
    "TelemetryFlowBuilder",
    "TelemetryFlowClient",
    "TelemetryFlowError",
    "__version__",
    "event",
    "get_default_client",
    "set_default_client",
    "trace",
    "track",
]
