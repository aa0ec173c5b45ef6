"""Send one encoded OTLP request over gRPC or HTTP and classify the answer.

Transports know nothing about retries or accounting: they make exactly one attempt,
bounded by the timeout they are given, and say whether it succeeded, may be retried
(and after how long the server asked), or must not be retried. They never put a
response body or a credential into a message.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from telemetryflow._config import TelemetryConfig
from telemetryflow._retry import RETRYABLE_HTTP_STATUSES, parse_retry_after

__all__ = ["GrpcTransport", "HttpTransport", "SendResult", "Transport", "make_transport"]

SIGNAL_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}
_GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
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
        _read_file(path)


def _read_file(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as handle:
        return handle.read()


def redact_server_text(text: str, config: TelemetryConfig) -> str:
    """A server's free text, safe to log: our secret removed, printable, bounded."""
    from telemetryflow._scrub_rules import scrub_text

    secret = config.credentials.key_secret
    cleaned = scrub_text(text.replace(secret, "***") if secret else text)
    cleaned = "".join(ch if ch.isprintable() else " " for ch in cleaned)
    return cleaned[:200]


def _rejected_count(signal: str, response: Any) -> tuple[int, str]:
    if not response.HasField("partial_success"):
        return 0, ""
    partial = response.partial_success
    field = {
        "traces": "rejected_spans",
        "metrics": "rejected_data_points",
        "logs": "rejected_log_records",
    }[signal]
    return int(getattr(partial, field)), str(partial.error_message)[:200]


def _response_type(signal: str) -> Any:
    if signal == "traces":
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as m

        return m.ExportTraceServiceResponse
    if signal == "metrics":
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mm

        return mm.ExportMetricsServiceResponse
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as lm

    return lm.ExportLogsServiceResponse


class GrpcTransport:
    """OTLP/gRPC over one channel, sending pre-encoded request bytes."""

    _RETRYABLE = frozenset(
        {"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "DATA_LOSS", "CANCELLED"}
    )

    def __init__(self, config: TelemetryConfig) -> None:
        import grpc

        self._grpc = grpc
        self._config = config
        self._lock = threading.Lock()
        self._in_flight: set[Any] = set()
        endpoint = config.parsed_endpoint
        target = endpoint.host_port if endpoint.port else f"{endpoint.host_port}:4317"
        options = [
            ("grpc.enable_retries", 0),
            ("grpc.max_send_message_length", config.max_request_bytes + 4096),
            ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
        ]
        if config.uses_tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read_file(config.ca_file),
                private_key=_read_file(config.client_key_file),
                certificate_chain=_read_file(config.client_cert_file),
            )
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._metadata = tuple((k.lower(), v) for k, v in export_headers(config).items())
        self._compression = grpc.Compression.Gzip if config.compression else None
        self._calls = {
            signal: self._channel.unary_unary(
                method,
                request_serializer=None,
                response_deserializer=_response_type(signal).FromString,
            )
            for signal, method in _GRPC_METHODS.items()
        }

    def send(self, signal: str, body: bytes, timeout: float) -> SendResult:
        grpc = self._grpc
        future = self._calls[signal].future(
            body,
            timeout=max(timeout, 0.001),
            metadata=self._metadata,
            compression=self._compression,
            wait_for_ready=False,
        )
        with self._lock:
            self._in_flight.add(future)
        try:
            response = future.result()
        except grpc.FutureCancelledError:
            return SendResult(ok=False, retryable=True, message="gRPC CANCELLED")
        except grpc.RpcError as error:
            return self._classify(error)
        finally:
            with self._lock:
                self._in_flight.discard(future)
        rejected, message = _rejected_count(signal, response)
        message = redact_server_text(message, self._config)
        return SendResult(ok=True, rejected=rejected, message=message)

    def _classify(self, error: Any) -> SendResult:
        code = error.code()
        name = code.name if code is not None else "UNKNOWN"
        delay = _retry_info_delay(error)
        retryable = name in self._RETRYABLE or (name == "RESOURCE_EXHAUSTED" and delay is not None)
        return SendResult(ok=False, retryable=retryable, retry_after=delay, message=f"gRPC {name}")

    def abort(self) -> None:
        with self._lock:
            calls = list(self._in_flight)
        for call in calls:
            call.cancel()

    def close(self) -> None:
        self.abort()
        self._channel.close()


def _retry_info_delay(error: Any) -> float | None:
    try:
        trailing = error.trailing_metadata() or ()
    except Exception:
        return None
    for key, value in trailing:
        if not isinstance(value, bytes):
            continue
        try:
            from google.rpc import error_details_pb2, status_pb2

            if key == "google.rpc.retryinfo-bin":  # the bare form some servers send
                bare = error_details_pb2.RetryInfo.FromString(value)
                return float(bare.retry_delay.seconds + bare.retry_delay.nanos / 1e9)
            if key != "grpc-status-details-bin":
                continue
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
        except Exception:
            return None
    return None


class HttpTransport:
    """OTLP/HTTP with protobuf bodies, one keep-alive connection per signal."""

    def __init__(self, config: TelemetryConfig) -> None:
        self._config = config
        endpoint = config.parsed_endpoint
        scheme = endpoint.scheme or ("https" if config.uses_tls else "http")
        self._tls = scheme == "https"
        self._host = endpoint.host
        self._port = endpoint.port or (443 if self._tls else 80)
        self._base_path = endpoint.path
        self._ssl_context = self._make_ssl_context(config) if self._tls else None
        self._headers = {
            **export_headers(config),
            "Content-Type": "application/x-protobuf",
            "User-Agent": "telemetryflow-python",
        }
        self._gzip = config.compression
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._connections: dict[str, http.client.HTTPConnection] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _make_ssl_context(config: TelemetryConfig) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=config.ca_file)
        if config.client_cert_file and config.client_key_file:
            context.load_cert_chain(config.client_cert_file, config.client_key_file)
        return context

    def url(self, signal: str) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self._host}:{self._port}{self._base_path}{SIGNAL_PATHS[signal]}"

    def _connection(self, signal: str, timeout: float) -> http.client.HTTPConnection:
        with self._lock:
            conn = self._connections.get(signal)
            if conn is None:
                if self._ssl_context is not None:
                    conn = http.client.HTTPSConnection(
                        self._host, self._port, timeout=timeout, context=self._ssl_context
                    )
                else:
                    conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
                self._connections[signal] = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop_connection(self, signal: str) -> None:
        with self._lock:
            conn = self._connections.pop(signal, None)
        if conn is not None:
            conn.close()

    def send(self, signal: str, body: bytes, timeout: float) -> SendResult:
        payload = gzip.compress(body, compresslevel=5) if self._gzip else body
        path = urlsplit(self.url(signal)).path
        conn = self._connection(signal, max(timeout, 0.001))
        try:
            conn.request("POST", path, body=payload, headers=self._headers)
            response = conn.getresponse()
            data = response.read(MAX_RESPONSE_BYTES)
            status = response.status
            retry_after = parse_retry_after(response.getheader("Retry-After"))
            if response.length or response.will_close:
                self._drop_connection(signal)  # unread remainder or server closing
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection(signal)
            return SendResult(ok=False, retryable=True, message=f"HTTP {type(exc).__name__}")
        if 200 <= status < 300:
            rejected, message = 0, ""
            with contextlib.suppress(Exception):  # an unparsable 2xx body is still success
                rejected, message = _rejected_count(signal, _response_type(signal).FromString(data))
                message = redact_server_text(message, self._config)
            return SendResult(ok=True, rejected=rejected, message=message)
        return SendResult(
            ok=False,
            retryable=status in RETRYABLE_HTTP_STATUSES,
            retry_after=retry_after,
            message=f"HTTP {status}",
        )

    def abort(self) -> None:
        with self._lock:
            connections = list(self._connections.values())
        for conn in connections:
            sock = conn.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.abort()
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for conn in connections:
            conn.close()


def make_transport(config: TelemetryConfig) -> Transport:
    from telemetryflow._enums import Protocol as Proto

    if config.protocol is Proto.HTTP:
        return HttpTransport(config)
    return GrpcTransport(config)
