"""OTLP wire formats and the HTTP/1.1 transport of the test receiver.

Nothing here holds receiver state: it says how each signal is named on the
wire, how payloads and failures are encoded, and how the HTTP server treats
its sockets (keep-alive, TLS handshakes, cutting live connections on outage).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import socket
import socketserver
import ssl
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import grpc
from google.protobuf import any_pb2, duration_pb2, json_format  # type: ignore[import-untyped]
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

Signal = Literal["traces", "metrics", "logs"]
Transport = Literal["grpc", "http"]

# A test receiver has no business buffering more than this for one request.
MAX_BODY = 32 * 1024 * 1024
_IO_TIMEOUT = 30.0
_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


@dataclass(frozen=True)
class Fault:
    """How one injected failure is answered on each transport."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    http_status: int = 503
    retry_after: str | None = None  # HTTP Retry-After, sent verbatim
    retry_delay: float | None = None  # gRPC RetryInfo, in seconds
    body: bytes | None = None  # HTTP body; default is an encoded google.rpc.Status
    message: str = "fault injected by OTLPReceiver"


@dataclass(frozen=True)
class Spec:
    signal: Signal
    request: Any  # the Export*ServiceRequest class
    response: Any
    partial: Any  # the Export*PartialSuccess class
    rejected_field: str
    service: str  # full gRPC service name
    http_path: str

    @property
    def grpc_path(self) -> str:
        return f"/{self.service}/Export"


def _spec(signal: Signal, module: Any, stem: str, service: str, rejected: str) -> Spec:
    return Spec(
        signal=signal,
        request=getattr(module, f"Export{stem}ServiceRequest"),
        response=getattr(module, f"Export{stem}ServiceResponse"),
        partial=getattr(module, f"Export{stem}PartialSuccess"),
        rejected_field=rejected,
        service=module.DESCRIPTOR.services_by_name[service].full_name,
        http_path=f"/v1/{signal}",
    )


SPECS: dict[Signal, Spec] = {
    "traces": _spec("traces", trace_service_pb2, "Trace", "TraceService", "rejected_spans"),
    "metrics": _spec(
        "metrics", metrics_service_pb2, "Metrics", "MetricsService", "rejected_data_points"
    ),
    "logs": _spec("logs", logs_service_pb2, "Logs", "LogsService", "rejected_log_records"),
}
_BY_PATH = {spec.http_path: spec for spec in SPECS.values()}


@dataclass(frozen=True)
class Reply:
    """What the receiver decided; each transport renders it its own way."""

    response: Any = None
    fault: Fault | None = None
    invalid: str | None = None
    unsupported: bool = False


DROPPED = Reply(fault=Fault(message="request dropped: blackholed or receiver going down"))
BROKEN = Reply(fault=Fault(grpc.StatusCode.INTERNAL, 500, message="receiver error"))

# (spec, transport, lower-cased headers, wire size, compressed, decode) -> reply
Handle = Callable[[Spec, Transport, dict[str, str], int, bool, Callable[[], Any]], Reply]


class UnsupportedError(ValueError):
    """A content type or encoding the receiver does not speak (HTTP 415)."""


def inflate(data: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return data
    if encoding not in ("gzip", "deflate"):
        raise UnsupportedError(f"unsupported encoding {encoding!r}")
    inflater = zlib.decompressobj(31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(data, MAX_BODY)  # bounded: no decompression bombs
    except zlib.error as exc:
        raise ValueError(f"bad {encoding} payload: {exc}") from None
    if inflater.unconsumed_tail:
        raise ValueError("inflated payload too large")
    if not inflater.eof:
        raise ValueError(f"truncated {encoding} payload")
    return out


def parse_proto(cls: Any, data: bytes) -> Any:
    message = cls()
    message.ParseFromString(data)
    return message


def retry_info(seconds: float) -> Any:
    whole = math.floor(seconds)
    delay = duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def rpc_status(code: grpc.StatusCode, message: str, retry_delay: float | None) -> Any:
    """The google.rpc.Status that OTLP sends with a failure, RetryInfo packed in details."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if retry_delay is not None:
        packed = any_pb2.Any()
        packed.Pack(retry_info(retry_delay))
        status.details.append(packed)
    return status


def _convert_ids(node: Any, convert: Callable[[str], str]) -> Any:
    if isinstance(node, dict):
        return {
            key: convert(value)
            if key in _ID_KEYS and isinstance(value, str)
            else _convert_ids(value, convert)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_convert_ids(item, convert) for item in node]
    return node


def _hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def _b64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def from_otlp_json(data: bytes, message: Any) -> Any:
    """Fill ``message`` from an OTLP/JSON body; raises ValueError on a bad one.

    OTLP/JSON writes trace and span ids as hex, where the proto3 mapping wants
    base64, so ids are converted before json_format sees them.
    """
    try:
        tree = json.loads(data)
        if not isinstance(tree, dict):
            raise ValueError("OTLP/JSON body must be an object")
        # Unknown fields must be ignored so that newer clients keep working.
        json_format.ParseDict(_convert_ids(tree, _hex_to_b64), message, ignore_unknown_fields=True)
    except (UnicodeDecodeError, json.JSONDecodeError, json_format.ParseError) as exc:
        raise ValueError(str(exc)) from None
    return message


def to_otlp_json(message: Any) -> bytes:
    return json.dumps(_convert_ids(json_format.MessageToDict(message), _b64_to_hex)).encode()


class _BodyError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # come_back() must re-bind the port it just released
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], ssl_context: ssl.SSLContext | None, handle: Handle
    ) -> None:
        self.ssl_context = ssl_context
        self.on_export = handle
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        self._dropping = False
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN, which can stall on a bad resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._live_lock:
            if not alive:
                self._live.discard(conn)
            elif not self._dropping:
                self._live.add(conn)
                return
        if alive:  # accepted just before the listener closed: cut it too
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def drop_connections(self) -> None:
        """Cut keep-alive connections, which would otherwise outlive the listener."""
        with self._live_lock:
            self._dropping = True
            live, self._live = list(self._live), set()
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes and vanished clients are what the fault tests provoke.
        return


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = _IO_TIMEOUT

    def setup(self) -> None:
        ctx = self.server.ssl_context
        if ctx is not None:
            self.request.settimeout(_IO_TIMEOUT)
            tls = ctx.wrap_socket(self.request, server_side=True, do_handshake_on_connect=False)
            try:
                tls.do_handshake()
            except (OSError, ValueError):
                tls.close()
                raise
            self.request = tls
        self.server.track(self.request, True)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.request, False)
            if isinstance(self.request, ssl.SSLSocket):
                # Wrapping detached the plain socket, so the server cannot close this one.
                self.request.close()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        spec = _BY_PATH.get(self.path.split("?", 1)[0])
        status = 404 if spec is None else 405
        self._send(status, [("Allow", "POST")] if spec else [], b"")

    def do_POST(self) -> None:
        try:
            spec = _BY_PATH.get(self.path.split("?", 1)[0])
            if spec is None:
                self._send(404, [("Content-Type", "text/plain")], b"not found")
                return
            self._export(spec)
        except _BodyError as exc:
            self.close_connection = True  # an unread body would poison the stream
            self._send(exc.status, [("Content-Type", "text/plain")], str(exc).encode())
        except Exception:
            self._send(500, [("Content-Type", "text/plain")], b"receiver error")

    def _export(self, spec: Spec) -> None:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        body = self._read_body(headers)
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        encoding = headers.get("content-encoding", "").strip().lower() or "identity"
        as_json = media == _JSON

        def decode() -> Any:
            if media not in (_PROTOBUF, _JSON):
                raise UnsupportedError(f"unsupported content type {media!r}")
            data = inflate(body, encoding)
            if as_json:
                return from_otlp_json(data, spec.request())
            return parse_proto(spec.request, data)

        reply = self.server.on_export(
            spec, "http", headers, len(body), encoding != "identity", decode
        )
        self._send(*_render(reply, as_json))

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "content-length" not in headers:
            raise _BodyError(411, "Content-Length required")
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise _BodyError(400, "bad Content-Length") from None
        if not 0 <= length <= MAX_BODY:
            raise _BodyError(413 if length > 0 else 400, "bad Content-Length")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BodyError(400, "truncated body")
        return body

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        with contextlib.suppress(OSError):  # the client may be gone: fine
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()


def _render(reply: Reply, as_json: bool) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [("Content-Type", _JSON if as_json else _PROTOBUF)]

    def encode(message: Any) -> bytes:
        return to_otlp_json(message) if as_json else bytes(message.SerializeToString())

    if reply.response is not None:
        return 200, headers, encode(reply.response)
    if reply.fault is not None:
        fault = reply.fault
        if fault.retry_after is not None:
            headers.append(("Retry-After", fault.retry_after))
        if fault.body is not None:
            return fault.http_status, headers, fault.body
        status = rpc_status(fault.grpc_code, fault.message, fault.retry_delay)
        return fault.http_status, headers, encode(status)
    status = rpc_status(grpc.StatusCode.INVALID_ARGUMENT, reply.invalid or "bad request", None)
    return (415 if reply.unsupported else 400), headers, encode(status)


class HttpListener:
    """One bound HTTP(S) listener served on a daemon thread."""

    def __init__(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None, handle: Handle
    ) -> None:
        self._server = _Server((host, port), ssl_context, handle)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"otlp-receiver-http-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.drop_connections()
        self._thread.join(timeout=1.0)
