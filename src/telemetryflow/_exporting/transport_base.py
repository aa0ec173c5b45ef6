"""What every transport shares: the result of an attempt, the headers, response parsing.

Transports know nothing about retries or accounting: they make exactly one attempt,
bounded by the timeout they are given, and say whether it succeeded, may be retried
(and after how long the server asked), or must not be retried. They never put a
response body or a credential into a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from telemetryflow._configuration.config import TelemetryConfig

__all__ = [
    "MAX_RESPONSE_BYTES",
    "SIGNAL_PATHS",
    "SendResult",
    "Transport",
    "check_tls_files",
    "export_headers",
    "read_file",
    "redact_server_text",
    "rejected_count",
    "response_type",
]

SIGNAL_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}
MAX_RESPONSE_BYTES = 64 * 1024
"""Read at most this much of any response body: a hostile server cannot exhaust memory."""


@dataclass(frozen=True)
class SendResult:
    """The outcome of one attempt."""

    ok: bool
    retryable: bool = False
    retry_after: float | None = None
    rejected: int = 0
    message: str = ""


class Transport(Protocol):
    def send(self, signal: str, body: bytes, timeout: float) -> SendResult: ...
    def abort(self) -> None:
        """Cut every attempt in flight short (shutdown's deadline has come)."""

    def close(self) -> None: ...


def export_headers(config: TelemetryConfig) -> dict[str, str]:
    """Credentials, collector id and custom headers for every request."""
    headers = dict(config.headers)
    headers.update(config.credentials.auth_headers())
    if config.collector_id:
        headers["X-TelemetryFlow-Collector-ID"] = config.collector_id
    return headers


def check_tls_files(config: TelemetryConfig) -> None:
    """Read the TLS files now, so a wrong path fails ``initialize()`` and not an export.

    The channel itself is created lazily on the export thread: a gRPC channel made
    before a pre-fork server forks would be unusable in the workers.
    """
    for path in (config.ca_file, config.client_cert_file, config.client_key_file):
        read_file(path)


def read_file(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as handle:
        return handle.read()


def redact_server_text(text: str, config: TelemetryConfig) -> str:
    """A server's free text, safe to log: our secret removed, printable, bounded."""
    from telemetryflow._scrubbing.rules import scrub_text

    secret = config.credentials.key_secret
    cleaned = scrub_text(text.replace(secret, "***") if secret else text)
    cleaned = "".join(ch if ch.isprintable() else " " for ch in cleaned)
    return cleaned[:200]


def rejected_count(signal: str, response: Any) -> tuple[int, str]:
    if not response.HasField("partial_success"):
        return 0, ""
    partial = response.partial_success
    field = {
        "traces": "rejected_spans",
        "metrics": "rejected_data_points",
        "logs": "rejected_log_records",
    }[signal]
    return int(getattr(partial, field)), str(partial.error_message)[:200]


def response_type(signal: str) -> Any:
    if signal == "traces":
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as m

        return m.ExportTraceServiceResponse
    if signal == "metrics":
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mm

        return mm.ExportMetricsServiceResponse
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as lm

    return lm.ExportLogsServiceResponse
