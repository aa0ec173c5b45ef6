"""Send one encoded OTLP request over gRPC or HTTP and classify the answer.

Transports know nothing about retries or accounting: they make exactly one attempt,
bounded by the timeout they are given, and say whether it succeeded, may be retried
(and after how long the server asked), or must not be retried. They never put a
response body or a credential into a message.

The shared parts live in ``transport_base``, each protocol in its own module
(``transport_grpc``, ``transport_http``); this module is what the rest imports.
"""

from __future__ import annotations

import importlib

from telemetryflow._configuration.config import TelemetryConfig
from telemetryflow._exporting.transport_base import (
    MAX_RESPONSE_BYTES,
    SIGNAL_PATHS,
    SendResult,
    Transport,
    check_tls_files,
    export_headers,
    redact_server_text,
    response_type,
)
from telemetryflow._exporting.transport_grpc import GrpcTransport
from telemetryflow._exporting.transport_http import HttpTransport

__all__ = [
    "MAX_RESPONSE_BYTES",
    "SIGNAL_PATHS",
    "GrpcTransport",
    "HttpTransport",
    "SendResult",
    "Transport",
    "check_tls_files",
    "export_headers",
    "make_transport",
    "preload_export_modules",
    "redact_server_text",
]


def make_transport(config: TelemetryConfig) -> Transport:
    from telemetryflow._configuration.enums import Protocol as Proto

    if config.protocol is Proto.HTTP:
        return HttpTransport(config)
    return GrpcTransport(config)


_EXPORT_MODULES = ("telemetryflow._exporting.encode", "telemetryflow._scrubbing.rules")
_GRPC_MODULES = (
    "grpc",
    "grpc._channel",  # imported by grpc.insecure_channel()/secure_channel() on first use
    "grpc._utilities",
    "grpc.experimental",
    "google.rpc.status_pb2",
    "google.rpc.error_details_pb2",
)


def preload_export_modules(config: TelemetryConfig) -> None:
    """Import, on the caller's thread, every module the first export would import.

    An import made lazily on an export thread races pre-fork servers: a child forked
    while it runs inherits a half-initialised module (``grpc`` has no
    ``insecure_channel`` yet) and its held import lock, and never exports. Called by
    ``initialize()``, which runs before the server forks.
    """
    from telemetryflow._configuration.enums import Protocol as Proto

    names = _EXPORT_MODULES + (_GRPC_MODULES if config.protocol is Proto.GRPC else ())
    for name in names:
        importlib.import_module(name)
    for signal in SIGNAL_PATHS:
        response_type(signal)
