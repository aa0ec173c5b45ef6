"""A real OTLP receiver on loopback, with fault injection, for tests.

Tests assert against what actually crossed a socket: real gRPC and HTTP/1.1
servers decode every export, record it, and can be told to fail, stall, drop
requests or vanish, so exporter retry, timeout and outage paths run for real. The
listeners are in ``_receiver_grpc.py`` and ``_receiver_http.py``, what is recorded
in ``_records.py``.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

import grpc

from telemetryflow.testing._receiver_grpc import GrpcListener, sniff_grpc_encoding
from telemetryflow.testing._receiver_http import (
    BROKEN,
    DROPPED,
    SPECS,
    Fault,
    HttpListener,
    Reply,
    Signal,
    Spec,
    Transport,
    UnsupportedError,
    inflate,
    parse_proto,
    retry_info,
    rpc_status,
)
from telemetryflow.testing._records import (
    LogEntry,
    MetricRecord,
    ReceivedRequest,
    SpanRecord,
    attrs,
)
from telemetryflow.testing._tls import TLSFiles, grpc_server_credentials, server_ssl_context

__all__ = ["Fault", "OTLPReceiver"]

_MAX_HOLD = 60.0  # longest a blackholed or delayed request may pin a server thread
_REBIND_FOR = 3.0
_OUTER = {"traces": "resource_spans", "metrics": "resource_metrics", "logs": "resource_logs"}


def _loopback(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host must be a loopback IP address, got {host!r}") from None
    if not ip.is_loopback:
        raise ValueError(f"the test receiver only listens on loopback, got {host!r}")
    return f"[{host}]" if ip.version == 6 else host


class OTLPReceiver:
    """An in-process OTLP/gRPC + OTLP/HTTP receiver that records and misbehaves on demand.

    ``requests`` holds accepted exports only, so data a client retried is not
    counted twice; ``attempts`` counts every export call that arrived.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        tls: TLSFiles | None = None,
        require_client_cert: bool = False,
    ) -> None:
        if require_client_cert and tls is None:
            raise ValueError("require_client_cert needs tls")
        self._host = host
        self._addr_host = _loopback(host)
        self._tls = tls
        self._require_client_cert = require_client_cert
        self._cond = threading.Condition()  # guards the state below; wakes held requests
        self._requests: list[ReceivedRequest] = []
        self._attempt_times: list[float] = []
        self._faults: deque[Fault] = deque()
        self._delay = 0.0
        self._blackholed = False
        self._partial: tuple[int, str] | None = None
        self._partial_left: int | None = None
        self._generation = 0  # bumped on every outage, to release held requests
        self._lifecycle = threading.Lock()
        self._state: Literal["new", "up", "down", "stopped"] = "new"
        self._listeners: tuple[GrpcListener, HttpListener] | None = None
        self._grpc_port = self._http_port = 0

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> OTLPReceiver:
        with self._lifecycle:
            if self._state == "up":
                return self
            if self._state != "new":
                raise RuntimeError(f"cannot start a receiver that is {self._state}")
            self._listen(0, 0)
            self._state = "up"
        return self

    def stop(self) -> None:
        """Stop both servers; bounded (about a second at worst) and idempotent."""
        with self._lifecycle:
            self._close_listeners()
            self._state = "stopped"

    def go_down(self) -> None:
        """Stop listening but keep the port numbers, so clients see connection refused."""
        with self._lifecycle:
            if self._state != "up":
                raise RuntimeError(f"cannot go down while {self._state}")
            self._close_listeners()
            self._state = "down"

    def come_back(self) -> None:
        """Listen again on the ports used before ``go_down()``."""
        with self._lifecycle:
            if self._state != "down":
                raise RuntimeError(f"cannot come back while {self._state}")
            deadline = time.monotonic() + _REBIND_FOR
            while True:  # closed sockets can take a moment to let go of a port
                try:
                    self._listen(self._grpc_port, self._http_port)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            self._state = "up"

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _listen(self, grpc_port: int, http_port: int) -> None:
        tls, mtls = self._tls, self._require_client_cert
        creds = None if tls is None else grpc_server_credentials(tls, mtls)
        grpc_listener = GrpcListener(f"{self._addr_host}:{grpc_port}", creds, self._grpc_handlers())
        try:
            ssl_context = None if tls is None else server_ssl_context(tls, mtls)
            http_listener = HttpListener(self._host, http_port, ssl_context, self._handle)
        except BaseException:
            grpc_listener.close()
            raise
        self._listeners = (grpc_listener, http_listener)
        self._grpc_port, self._http_port = grpc_listener.port, http_listener.port

    def _close_listeners(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        if self._listeners is not None:
            for listener in self._listeners:
                listener.close()
            self._listeners = None

    # -- addresses ---------------------------------------------------------------

    def _port(self, port: int) -> int:
        if not port:
            raise RuntimeError("the receiver has not been started")
        return port

    @property
    def grpc_port(self) -> int:
        return self._port(self._grpc_port)

    @property
    def http_port(self) -> int:
        return self._port(self._http_port)

    @property
    def grpc_endpoint(self) -> str:
        return f"{self._addr_host}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._addr_host}:{self.http_port}"

    # -- fault injection ---------------------------------------------------------

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` requests, whatever their transport."""
        if times < 0:
            raise ValueError("times must be >= 0")
        if fault.grpc_code == grpc.StatusCode.OK or not 400 <= fault.http_status <= 599:
            raise ValueError("a fault needs a failing gRPC code and an HTTP 4xx/5xx status")
        with self._cond:
            self._faults.extend([fault] * times)

    def fail_next(
        self,
        n: int,
        *,
        grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        http_status: int = 503,
        retry_after: str | None = None,
        retry_delay: float | None = None,
        body: bytes | None = None,
    ) -> None:
        self.inject(Fault(grpc_code, http_status, retry_after, retry_delay, body), n)

    def set_delay(self, seconds: float) -> None:
        """Answer every request after ``seconds``; an outage or stop cuts the wait short."""
        if not 0 <= seconds <= _MAX_HOLD:
            raise ValueError(f"delay must be between 0 and {_MAX_HOLD} seconds")
        with self._cond:
            self._delay = seconds

    def blackhole(self, on: bool = True) -> None:
        """Hold requests unanswered while on; held ones are then dropped, never recorded."""
        with self._cond:
            self._blackholed = on
            self._cond.notify_all()

    def partial_success(self, rejected: int, message: str, *, times: int | None = None) -> None:
        """Report ``rejected`` items in the next ``times`` responses (all of them if None)."""
        with self._cond:
            self._partial = (rejected, message)
            self._partial_left = times

    def reset_faults(self) -> None:
        with self._cond:
            self._faults.clear()
            self._delay = 0.0
            self._blackholed = False
            self._partial = self._partial_left = None
            self._cond.notify_all()

    # -- request handling --------------------------------------------------------

    def _handle(
        self,
        spec: Spec,
        transport: Transport,
        headers: dict[str, str],
        wire_size: int,
        compressed: bool,
        decode: Callable[[], Any],
    ) -> Reply:
        with self._cond:
            self._attempt_times.append(time.monotonic())
            self._cond.notify_all()
            generation = self._generation
            if self._blackholed:
                self._cond.wait_for(
                    lambda: not self._blackholed or self._generation != generation, _MAX_HOLD
                )
                return DROPPED
            fault = self._faults.popleft() if self._faults else None
            if self._delay > 0:
                self._cond.wait_for(lambda: self._generation != generation, self._delay)
            if self._generation != generation:
                return DROPPED
        if fault is not None:
            return Reply(fault=fault)
        try:
            message = decode()
        except UnsupportedError as exc:
            return Reply(invalid=str(exc), unsupported=True)
        except Exception as exc:
            return Reply(invalid=f"cannot decode {spec.signal} request: {exc}")
        path = spec.grpc_path if transport == "grpc" else spec.http_path
        record = ReceivedRequest(
            spec.signal, transport, headers, wire_size, compressed, message, time.time(), path
        )
        response = spec.response()
        with self._cond:
            self._requests.append(record)
            if self._partial is not None:
                rejected, text = self._partial
                partial = spec.partial(**{spec.rejected_field: rejected, "error_message": text})
                response.partial_success.CopyFrom(partial)
                if self._partial_left is not None:
                    self._partial_left -= 1
                    if self._partial_left <= 0:
                        self._partial = self._partial_left = None
            self._cond.notify_all()
        return Reply(response=response)

    def _grpc_handlers(self) -> list[grpc.GenericRpcHandler]:
        # The official services, registered by hand rather than through
        # add_*Servicer_to_server: its deserializer would hide compression.
        return [
            grpc.method_handlers_generic_handler(
                spec.service,
                {
                    "Export": grpc.unary_unary_rpc_method_handler(
                        self._grpc_export(spec),
                        request_deserializer=bytes,
                        response_serializer=spec.response.SerializeToString,
                    )
                },
            )
            for spec in SPECS.values()
        ]

    def _grpc_export(self, spec: Spec) -> Callable[[bytes, grpc.ServicerContext], Any]:
        def export(raw: bytes, context: grpc.ServicerContext) -> Any:
            try:
                reply = self._grpc_reply(spec, raw, context)
            except Exception:
                reply = BROKEN
            if reply.response is not None:
                return reply.response
            fault = reply.fault
            if fault is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, reply.invalid or "bad request")
                return None  # not reached: abort() raises
            status = rpc_status(fault.grpc_code, fault.message, fault.retry_delay)
            trailers = [("grpc-status-details-bin", status.SerializeToString())]
            if fault.retry_delay is not None:
                # What the Python OTLP exporter reads: a bare RetryInfo under this key.
                info = retry_info(fault.retry_delay).SerializeToString()
                trailers.append(("google.rpc.retryinfo-bin", info))
            context.set_trailing_metadata(trailers)
            context.abort(fault.grpc_code, fault.message)
            return None  # not reached: abort() raises

        return export

    def _grpc_reply(self, spec: Spec, raw: bytes, context: grpc.ServicerContext) -> Reply:
        headers: dict[str, str] = {}
        for key, value in context.invocation_metadata():
            text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
            key = key.lower()
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        encoding = sniff_grpc_encoding(raw)
        if encoding is not None:
            headers.setdefault("grpc-encoding", encoding)
        return self._handle(
            spec,
            "grpc",
            headers,
            len(raw),
            encoding is not None,
            lambda: parse_proto(spec.request, inflate(raw, encoding or "identity")),
        )

    # -- recorded data -----------------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def attempts(self) -> int:
        """Export calls that arrived, including failed, held and undecodable ones."""
        with self._cond:
            return len(self._attempt_times)

    @property
    def attempt_times(self) -> list[float]:
        """``time.monotonic()`` of each arrival, for backoff assertions."""
        with self._cond:
            return list(self._attempt_times)

    def clear(self) -> None:
        """Forget recorded requests and attempts; faults stay as configured."""
        with self._cond:
            self._requests.clear()
            self._attempt_times.clear()

    def _rows(self, signal: Signal, inner: str, leaf: str) -> list[tuple[dict[str, Any], str, Any]]:
        rows = []
        for req in self.requests:
            if req.signal != signal:
                continue
            for block in getattr(req.message, _OUTER[signal]):
                resource = attrs(block.resource.attributes)
                for scoped in getattr(block, inner):
                    rows += [(resource, scoped.scope.name, item) for item in getattr(scoped, leaf)]
        return rows

    def spans(self) -> list[SpanRecord]:
        return [SpanRecord(*row) for row in self._rows("traces", "scope_spans", "spans")]

    def metrics(self) -> list[MetricRecord]:
        return [MetricRecord(*row) for row in self._rows("metrics", "scope_metrics", "metrics")]

    def logs(self) -> list[LogEntry]:
        return [LogEntry(*row) for row in self._rows("logs", "scope_logs", "log_records")]

    def span_names(self) -> list[str]:
        return [record.name for record in self.spans()]

    def resource_attributes(self, signal: Signal = "traces") -> dict[str, Any]:
        """Resource attributes of every ``signal`` export merged, later ones winning."""
        merged: dict[str, Any] = {}
        for req in self.requests:
            if req.signal == signal:
                for block in getattr(req.message, _OUTER[signal]):
                    merged.update(attrs(block.resource.attributes))
        return merged

    def find_metric(self, name: str) -> Any:
        """The most recently received ``Metric`` proto called ``name``, or None.

        Typed ``Any`` rather than ``Any | None`` so tests can chain into the proto.
        """
        found = [record.metric for record in self.metrics() if record.name == name]
        return found[-1] if found else None

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll ``predicate`` until it holds or ``timeout`` seconds have passed."""
        if not 0 <= timeout < math.inf:
            raise ValueError("timeout must be finite and >= 0")
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._cond:
                self._cond.wait(min(remaining, 0.05))
        return True

    def wait_for_spans(self, n: int, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda: len(self.spans()) >= n, timeout)

    def wait_for_logs(self, n: int, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda: len(self.logs()) >= n, timeout)

    def wait_for_metric(self, name: str, timeout: float = 5.0) -> Any:
        """Wait for a metric called ``name``; returns its latest ``Metric`` proto or None."""
        self.wait_for(lambda: self.find_metric(name) is not None, timeout)
        return self.find_metric(name)
