"""The HTTP side: OTLP/HTTP receiver, the 001 metric API, queries, status, OpenAPI.

Order of checks on every request: route and method (404/405), authentication from
headers (401), rate limit (429), content type (415), declared length (411/413). Only
then is the body read, inflated under the size cap (413/400) and parsed (400). When
a request is refused before its body is read, the connection is closed so the
unread body cannot be mistaken for the next request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from google.protobuf import json_format  # type: ignore[import-untyped]
from google.rpc import status_pb2

from telemetryflow.collector._auth import Principal
from telemetryflow.collector._decode import BadRequestError, decode_json, inflate, parse_otlp
from telemetryflow.collector._openapi import openapi_document
from telemetryflow.collector._pipeline import SIGNALS, Pipeline
from telemetryflow.collector._store import OverloadedError, StoreClosedError

__all__ = ["CollectorHTTPServer"]

_log = logging.getLogger("telemetryflow.collector")

_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
# HTTP status -> google.rpc.Code for OTLP error bodies
_RPC_CODES = {400: 3, 401: 16, 404: 5, 405: 12, 411: 3, 413: 3, 415: 3, 429: 8, 503: 14}
# path -> (allowed methods, kind, argument)
_ROUTES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "/v1/traces": (("POST",), "otlp", "traces"),
    "/v1/metrics": (("POST",), "otlp", "metrics"),
    "/v1/logs": (("POST",), "otlp", "logs"),
    "/v1/metrics/report": (("POST",), "report", ""),
    "/v1/metrics/batch": (("POST",), "batch", ""),
    "/v1/metrics/query": (("GET", "POST"), "query", "metrics"),
    "/v1/logs/query": (("GET", "POST"), "query", "logs"),
    "/v1/traces/query": (("GET", "POST"), "query", "traces"),
    "/observability/metrics": (("GET", "POST"), "query", "metrics"),
    "/observability/logs": (("GET", "POST"), "query", "logs"),
    "/observability/traces": (("GET", "POST"), "query", "traces"),
    "/v1/status": (("GET",), "status", ""),
    "/health": (("GET",), "health", ""),
    "/openapi.json": (("GET",), "openapi", ""),
}
_LINGER_BYTES = 256 * 1024


class _RefusedError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class CollectorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one :class:`Pipeline`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], pipeline: Pipeline, max_body: int) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.pipeline = pipeline
        self.max_body = max_body
        super().__init__(address, _Handler)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class _Handler(BaseHTTPRequestHandler):
    server: CollectorHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 30
    server_version = "TelemetryFlowCollector"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes: without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every keep-alive response.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        self._body_done = False
        url = urlsplit(self.path)
        route = _ROUTES.get(url.path.rstrip("/") or "/")
        kind = route[1] if route else ""
        try:
            if route is None:
                raise _RefusedError(404, f"no such endpoint: {url.path}")
            if method not in route[0]:
                raise _RefusedError(405, f"{method} is not allowed here",
                               {"Allow": ", ".join(route[0])})  # fmt: skip
            self._handle(method, kind, route[2], url.query)
        except _RefusedError as exc:
            self._fail(kind, exc.status, exc.message, exc.headers)
        except BadRequestError as exc:
            self._fail(kind, exc.status, exc.message)
        except OverloadedError as exc:
            self._fail(kind, 503, "the collector is overloaded; retry later",
                       _retry_after(exc.retry_after))  # fmt: skip
        except (StoreClosedError, TimeoutError) as exc:
            self._fail(kind, 503, str(exc), _retry_after(1))
        except Exception:
            _log.exception("unexpected error handling %s %s", method, url.path)
            self._fail(kind, 500, "internal error")

    def _handle(self, method: str, kind: str, arg: str, query: str) -> None:
        if kind == "openapi":
            self._send_json(200, openapi_document())
            return
        if kind == "health":
            self._send_json(200, {"status": "ok"})
            return
        principal = self._authenticate()
        pipeline = self.server.pipeline
        if kind == "status":
            self._send_json(200, pipeline.status(principal))
        elif kind == "query":
            params = self._query_params(method, query)
            self._send_json(200, pipeline.query(arg, principal, params))
        elif kind == "otlp":
            self._otlp(arg, principal)
        else:
            body = decode_json(self._read_body((_JSON,)))
            answer = pipeline.report(principal, body) if kind == "report" else (
                pipeline.batch(principal, body))  # fmt: skip
            self._send_json(200, answer)

    # -- admission -------------------------------------------------------------------
    def _authenticate(self) -> Principal:
        pipeline = self.server.pipeline
        principal = pipeline.auth.authenticate(self.headers.get)
        if principal is None:
            raise _RefusedError(401, "missing or invalid API key",
                           {"WWW-Authenticate": 'Bearer realm="telemetryflow"'})  # fmt: skip
        wait = pipeline.limiter.acquire(principal.key_id)
        if wait > 0:
            raise _RefusedError(429, "rate limit exceeded; retry later", _retry_after(wait))
        return principal

    def _content_type(self, allowed: tuple[str, ...]) -> str:
        value = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if value not in allowed:
            raise _RefusedError(415, f"Content-Type must be {' or '.join(allowed)}")
        return value

    def _read_body(self, allowed: tuple[str, ...]) -> bytes:
        self._content_type(allowed)
        limit = self.server.max_body
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                raw = self._read_chunked(limit)
                self._body_done = True
            else:
                raise _RefusedError(411, "Content-Length is required")
        else:
            try:
                length = int(length_header)
            except ValueError:
                raise _RefusedError(400, "invalid Content-Length") from None
            if length < 0:
                raise _RefusedError(400, "invalid Content-Length")
            if length > limit:
                raise _RefusedError(413, f"body exceeds {limit} bytes")
            raw = self.rfile.read(length)
            self._body_done = True
            if len(raw) != length:
                raise _RefusedError(400, "body shorter than Content-Length")
        return inflate(raw, self.headers.get("Content-Encoding") or "", limit)

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _RefusedError(400, "malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(body)
            if size < 0 or len(body) + size > limit:
                raise _RefusedError(413, f"body exceeds {limit} bytes")
            body += self.rfile.read(size)
            self.rfile.readline(1024)

    def _query_params(self, method: str, query: str) -> dict[str, Any]:
        if method == "GET":
            return dict(parse_qsl(query, keep_blank_values=False))
        body = decode_json(self._read_body((_JSON,))) if self._has_body() else {}
        if not isinstance(body, dict):
            raise BadRequestError(400, "query body must be a JSON object")
        return body

    def _has_body(self) -> bool:
        return self.headers.get("Content-Length", "0") != "0" or bool(
            self.headers.get("Transfer-Encoding")
        )

    # -- OTLP ------------------------------------------------------------------------
    def _otlp(self, signal_name: str, principal: Principal) -> None:
        signal = SIGNALS[signal_name]
        body = self._read_body((_PROTOBUF, _JSON))
        is_json = self._content_type((_PROTOBUF, _JSON)) == _JSON
        request = parse_otlp(body, is_json, signal.request())
        response = self.server.pipeline.export(signal, principal, request)
        if is_json:
            payload = json_format.MessageToJson(response, indent=None).encode()
            self._send(200, payload, _JSON)
        else:
            self._send(200, response.SerializeToString(), _PROTOBUF)

    # -- responses -------------------------------------------------------------------
    def _fail(
        self, kind: str, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self.close_connection = True
        extra = {**(headers or {}), "Connection": "close"}
        if kind == "otlp":
            detail = status_pb2.Status(code=_RPC_CODES.get(status, 13), message=message)
            wants_json = (self.headers.get("Content-Type") or "").startswith(_JSON)
            if wants_json:
                payload = json_format.MessageToJson(detail, indent=None).encode()
                self._send(status, payload, _JSON, extra)
            else:
                self._send(status, detail.SerializeToString(), _PROTOBUF, extra)
        else:
            self._send_json(status, {"error": {"code": status, "message": message}}, extra)
        self._linger()

    def _linger(self) -> None:
        """After refusing a request whose body was never read, swallow a small one.

        Closing a socket with unread data makes the kernel send a reset that can
        destroy the answer before the client reads it. The body is discarded, never
        parsed, and only after the answer has been sent; large ones are not waited for.
        """
        if self._body_done:
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return
        if 0 < length <= _LINGER_BYTES:
            with contextlib.suppress(OSError):
                self.connection.settimeout(1.0)
                self.rfile.read(length)

    def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
        self._send(status, payload, _JSON, headers)

    def _send(self, status: int, payload: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
        except OSError:
            self.close_connection = True
