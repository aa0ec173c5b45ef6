"""The OpenTelemetry resource every signal of a client carries."""

from __future__ import annotations

import os
import platform
import socket
import uuid

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.version import __version__ as otel_sdk_version

from telemetryflow._configuration.config import TelemetryConfig
from telemetryflow._version import __version__

__all__ = ["build_resource"]


def build_resource(config: TelemetryConfig) -> Resource:
    """Service identity, environment, custom attributes and the SDK's own identity.

    Built explicitly rather than with ``Resource.create()``, which would read
    ``OTEL_*`` variables the user did not ask the builder to read. Custom attributes
    never override the identity fields set through the builder.
    """
    attributes: dict[str, str | int] = dict(config.custom_attributes)
    attributes.update(
        {
            "service.name": config.service_name,
            "service.version": config.service_version,
            "service.namespace": config.service_namespace,
            "service.instance.id": str(uuid.uuid4()),
            "deployment.environment.name": config.environment,
            "deployment.environment": config.environment,
            "telemetry.sdk.name": "opentelemetry",
            "telemetry.sdk.language": "python",
            "telemetry.sdk.version": otel_sdk_version,
            "telemetry.distro.name": "telemetryflow",
            "telemetry.distro.version": __version__,
            "host.name": socket.gethostname(),
            "process.pid": os.getpid(),
            "process.runtime.name": platform.python_implementation().lower(),
            "process.runtime.version": platform.python_version(),
        }
    )
    if config.collector_id:
        attributes["telemetryflow.collector.id"] = config.collector_id
    return Resource(attributes)
