"""Send one encoded OTLP request over gRPC or HTTP and classify the answer.

Transports know nothing about retries or accounting: they make exactly one attempt,
bounded by the timeout they are given, and say whether it succeeded, may be retried
(and after how long the server asked), or must not be retried. They never put a
response body or a credential into a message.

The shared parts live in ``_transport_base``, each protocol in its own module
(``_transport_grpc``, ``_transport_http``); this module is what the rest imports.
"""

from __future__ import annotations

from telemetryflow._config import TelemetryConfig
from telemetryflow._transport_base import (
    MAX_RESPONSE_BYTES,
    SIGNAL_PATHS,
    SendResult,
    Transport,
    check_tls_files,
    export_headers,
    redact_server_text,
)
from telemetryflow._transport_grpc import GrpcTransport
from telemetryflow._transport_http import HttpTransport

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
    "redact_server_text",
]


def make_transport(config: TelemetryConfig) -> Transport:
    from telemetryflow._enums import Protocol as Proto

    if config.protocol is Proto.HTTP:
        return HttpTransport(config)
    return GrpcTransport(config)
