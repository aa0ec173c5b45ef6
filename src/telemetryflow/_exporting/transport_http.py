"""OTLP/HTTP with protobuf bodies, one keep-alive connection per signal.

The export timeout is a deadline for the whole attempt. Socket timeouts alone only
bound each read or write: a server that drips one byte a second would keep an
attempt alive forever. So a timer shuts the socket down when the attempt's time is
up, whatever stage it is in (connect, TLS handshake, send, or reading the answer).

A refused connection is tried again within the same attempt until its deadline
(nothing was sent, so nothing can arrive twice): a collector back from a restart
gets the batch within a fraction of a second, as gRPC's wait-for-ready gives it.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from telemetryflow._configuration.config import TelemetryConfig
from telemetryflow._exporting.forksafe import fork_safe_lock
from telemetryflow._exporting.retry import RETRYABLE_HTTP_STATUSES, parse_retry_after
from telemetryflow._exporting.tls_hint import (
    PLAINTEXT_TO_TLS,
    TLS_TO_PLAINTEXT,
    plaintext_server_signs,
    report_mismatch,
    speaks_tls,
)
from telemetryflow._exporting.transport_base import (
    MAX_RESPONSE_BYTES,
    SIGNAL_PATHS,
    SendResult,
    export_headers,
    redact_server_text,
    rejected_count,
    response_type,
)

__all__ = ["HttpTransport"]


_CONNECT_RETRY = (0.05, 0.25)
"""First and longest pause between connection tries within one attempt."""


class _Attempt:
    """The deadline of one attempt: at its end the connection's socket is shut down."""

    def __init__(self, conn: http.client.HTTPConnection, timeout: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.expired = False
        self._conn = conn
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.expired = True
        _shut(self._conn)

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.expired = True
            raise TimeoutError("export deadline")
        return left

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class HttpTransport:
    """OTLP/HTTP with protobuf bodies, one keep-alive connection per signal."""

    def __init__(self, config: TelemetryConfig, headers: Mapping[str, str] | None = None) -> None:
        """``headers`` replace the config's credentials and headers (a collector
        forwarding to an upstream sends its own)."""
        self._config = config
        self._pid = os.getpid()
        endpoint = config.parsed_endpoint
        scheme = endpoint.scheme or ("https" if config.uses_tls else "http")
        self._tls = scheme == "https"
        self._host = endpoint.host
        self._port = endpoint.port or (443 if self._tls else 80)
        self._base_path = endpoint.path
        self._ssl_context = self._make_ssl_context(config) if self._tls else None
        self._headers = {
            **(export_headers(config) if headers is None else headers),
            "Content-Type": "application/x-protobuf",
            "User-Agent": "telemetryflow-python",
        }
        self._gzip = config.compression
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._connections: dict[str, http.client.HTTPConnection] = {}
        self._lock = fork_safe_lock()
        self._hinted = False
        self._aborted = threading.Event()

    @staticmethod
    def _make_ssl_context(config: TelemetryConfig) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=config.ca_file)
        if config.client_cert_file and config.client_key_file:
            context.load_cert_chain(config.client_cert_file, config.client_key_file)
        return context

    def url(self, signal: str) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self._host}:{self._port}{self._base_path}{SIGNAL_PATHS[signal]}"

    @property
    def _address(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

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
        return conn

    def _drop_connection(self, signal: str) -> None:
        with self._lock:
            conn = self._connections.pop(signal, None)
        if conn is not None:
            conn.close()

    def send(self, signal: str, body: bytes, timeout: float) -> SendResult:
        if os.getpid() != self._pid:
            self._forget_inherited()
        payload = gzip.compress(body, compresslevel=5) if self._gzip else body
        path = urlsplit(self.url(signal)).path
        conn = self._connection(signal, max(timeout, 0.001))
        attempt = _Attempt(conn, max(timeout, 0.001))
        try:
            status, data, retry_after = self._exchange(conn, attempt, path, payload)
            if conn.sock is None:
                self._drop_connection(signal)
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection(signal)
            if attempt.expired:
                return SendResult(ok=False, retryable=True, message="HTTP timeout")
            self._explain(exc)
            return SendResult(ok=False, retryable=True, message=f"HTTP {type(exc).__name__}")
        finally:
            attempt.cancel()
        if 200 <= status < 300:
            rejected, message = 0, ""
            with contextlib.suppress(Exception):  # an unparsable 2xx body is still success
                rejected, message = rejected_count(signal, response_type(signal).FromString(data))
                message = redact_server_text(message, self._config)
            return SendResult(ok=True, rejected=rejected, message=message)
        return SendResult(
            ok=False,
            retryable=status in RETRYABLE_HTTP_STATUSES,
            retry_after=retry_after,
            message=f"HTTP {status}",
        )

    def _exchange(
        self, conn: http.client.HTTPConnection, attempt: _Attempt, path: str, payload: bytes
    ) -> tuple[int, bytes, float | None]:
        """One request and its answer, every socket operation bounded by what is left."""
        if conn.sock is None:
            self._connect(conn, attempt)
        sock = conn.sock
        if sock is not None:
            sock.settimeout(attempt.remaining())
        conn.request("POST", path, body=payload, headers=self._headers)
        if sock is not None:
            sock.settimeout(attempt.remaining())
        response = conn.getresponse()
        data = response.read(MAX_RESPONSE_BYTES)
        attempt.remaining()  # an answer completed after the deadline is still late
        if response.length or response.will_close:
            conn.close()  # unread remainder or server closing: next attempt reconnects
        return response.status, data, parse_retry_after(response.getheader("Retry-After"))

    def _connect(self, conn: http.client.HTTPConnection, attempt: _Attempt) -> None:
        """Connect, trying again while the collector refuses, until the deadline."""
        pause = _CONNECT_RETRY[0]
        while True:
            conn.timeout = attempt.remaining()
            try:
                conn.connect()
                return
            except ConnectionRefusedError:
                conn.close()
                wait = min(pause, attempt.deadline - time.monotonic())
                if wait <= 0 or self._aborted.wait(wait):
                    raise
                pause = min(pause * 2, _CONNECT_RETRY[1])

    def _explain(self, error: BaseException) -> None:
        """Once per transport: is the collector's TLS setting the opposite of ours?"""
        if self._hinted:
            return
        if self._tls and isinstance(error, ssl.SSLError):
            if plaintext_server_signs(str(error)):
                self._hinted = True
                report_mismatch(TLS_TO_PLAINTEXT, self._address)
        elif not self._tls and isinstance(
            error, (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError)
        ):
            self._hinted = True  # probe once, whatever it finds
            if speaks_tls(self._host, self._port):
                report_mismatch(PLAINTEXT_TO_TLS, self._address)

    def _forget_inherited(self) -> None:
        """In a forked child: close our copies of the parent's sockets, never shut them."""
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
            self._pid = os.getpid()
        for conn in connections:
            conn.close()

    def abort(self) -> None:
        if os.getpid() != self._pid:
            return  # shutting the parent's sockets down would cut the parent's exports
        self._aborted.set()
        with self._lock:
            connections = list(self._connections.values())
        for conn in connections:
            _shut(conn)

    def close(self) -> None:
        if os.getpid() != self._pid:
            self._forget_inherited()
            return
        self.abort()
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for conn in connections:
            conn.close()
