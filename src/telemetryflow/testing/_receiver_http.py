"""HTTP/1.1 plumbing and the OTLP/JSON codec of the test receiver.

Kept apart from the OTLP logic so the socket life cycle (keep-alive, TLS
handshakes, closing live connections on outage) can be read on its own.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from google.protobuf import json_format

__all__ = ["HttpAnswer", "HttpApp", "HttpListener", "from_otlp_json", "to_otlp_json"]

# A test receiver has no business buffering more than this for one request.
MAX_BODY = 32 * 1024 * 1024
_IO_TIMEOUT = 30.0
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


class HttpAnswer(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


# (method, path, lower-cased headers, body) -> answer
HttpApp = Callable[[str, str, dict[str, str], bytes], HttpAnswer]


class _BodyError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # come_back() must re-bind the port it just released
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], ssl_context: ssl.SSLContext | None, app: HttpApp
    ) -> None:
        self.ssl_context = ssl_context
        self.app = app
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN, which can stall on a bad resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._live_lock:
            if alive:
                self._live.add(conn)
            else:
                self._live.discard(conn)

    def drop_connections(self) -> None:
        """Cut keep-alive connections, which would otherwise outlive the listener."""
        with self._live_lock:
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

    def do_POST(self) -> None:
        self._serve(read_body=True)

    def do_GET(self) -> None:
        self._serve(read_body=False)

    def do_PUT(self) -> None:
        self._serve(read_body=True)

    def do_DELETE(self) -> None:
        self._serve(read_body=False)

    def _serve(self, *, read_body: bool) -> None:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        try:
            body = self._read_body(headers) if read_body else b""
            answer = self.server.app(self.command, self.path, headers, body)
        except _BodyError as exc:
            self.close_connection = True  # the unread rest of the body would poison the stream
            answer = HttpAnswer(exc.status, [("Content-Type", "text/plain")], str(exc).encode())
        except Exception:
            answer = HttpAnswer(500, [("Content-Type", "text/plain")], b"receiver error")
        with contextlib.suppress(OSError):
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(answer.body)
            self.wfile.flush()

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BodyError(400, "bad Content-Length") from None
        if length < 0:
            raise _BodyError(400, "bad Content-Length")
        if length > MAX_BODY:
            raise _BodyError(413, "body too large")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BodyError(400, "truncated body")
        return body

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "bad chunk size") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise _BodyError(413, "body too large")
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)  # CRLF after the chunk


class HttpListener:
    """One bound HTTP(S) listener served on a daemon thread."""

    def __init__(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None, app: HttpApp
    ) -> None:
        self._server = _Server((host, port), ssl_context, app)
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


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex, unlike the proto3 JSON mapping."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    raw = bytes.fromhex(value)
                except ValueError:
                    raise ValueError(f"{key} is not hex: {value!r}") from None
                out[key] = base64.b64encode(raw).decode("ascii")
            else:
                out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def _base64_ids_to_hex(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                base64.b64decode(value).hex()
                if key in _ID_KEYS and isinstance(value, str)
                else _base64_ids_to_hex(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_base64_ids_to_hex(item) for item in node]
    return node


def from_otlp_json(data: bytes, message: Any) -> Any:
    """Fill ``message`` from an OTLP/JSON body; raises ValueError on a bad one."""
    try:
        tree = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if not isinstance(tree, dict):
        raise ValueError("OTLP/JSON body must be an object")
    try:
        # Unknown fields must be ignored so newer clients keep working.
        json_format.ParseDict(_hex_ids_to_base64(tree), message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error) as exc:
        raise ValueError(str(exc)) from None
    return message


def to_otlp_json(message: Any) -> bytes:
    tree = json_format.MessageToDict(message)
    return json.dumps(_base64_ids_to_hex(tree)).encode()
