"""The OTLP/gRPC receiver.

Each Export method is registered as a client-streaming handler (the wire format of a
unary call is the same), so the handler runs *before* the message is received: the
caller is authenticated from metadata and rate limited first, and only an admitted
call pulls its message off the wire, where ``grpc.max_receive_message_length`` caps
it after decompression. Over the rate limit, when the write queue is full or the
store is closing, the call ends with ``UNAVAILABLE`` and a ``google.rpc.RetryInfo``
in ``grpc-status-details-bin``, which OTLP exporters honour as the retry delay.

Connections are bounded like the HTTP side's: a handshake deadline, a cap on open
connections and on streams per connection, idle and maximum connection ages, and
keepalive pings limited, so idle sockets cannot hold the receiver's resources.

A worker thread waits for an admitted call's message, so that wait is bounded too:
a call whose message has not arrived within the body timeout is cancelled (one
thread keeps every call's deadline, see ``_deadlines.py``), one key
may hold at most half of the worker threads (its further calls get ``UNAVAILABLE``),
and calls past ``maximum_concurrent_rpcs`` are refused by gRPC itself.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration  # type: ignore[import-untyped]
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc._cython import cygrpc  # type: ignore[attr-defined]

from telemetryflow.collector._pipeline import SIGNALS, Pipeline, Signal
from telemetryflow.collector.ingest._decode import BadRequestError, parse_otlp
from telemetryflow.collector.server._auth import DuplicateCredentialsError, Principal
from telemetryflow.collector.server._deadlines import Deadlines
from telemetryflow.collector.store._writes import OverloadedError, StoreClosedError

__all__ = ["GrpcLimits", "start_grpc_server"]

_log = logging.getLogger("telemetryflow.collector")
_DETAILS_KEY = "grpc-status-details-bin"


class _Status(grpc.Status):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str, trailing: tuple[Any, ...]) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing


def _retry_status(message: str, seconds: float) -> _Status:
    delay = Duration(seconds=max(1, math.ceil(seconds)))
    info = error_details_pb2.RetryInfo(retry_delay=delay)
    detail = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message)
    detail.details.add().Pack(info)
    return _Status(grpc.StatusCode.UNAVAILABLE, message,
                   ((_DETAILS_KEY, detail.SerializeToString()),))  # fmt: skip


@dataclass(frozen=True)
class GrpcLimits:
    """What the gRPC server allows: message size, threads, connections, handshake time."""

    max_body: int
    workers: int
    max_connections: int
    handshake_timeout: float
    body_timeout: float = 60.0
    """Seconds an admitted call has to deliver its message before it is cancelled."""

    @property
    def calls_per_key(self) -> int:
        """Calls one key may have in flight: half the workers, so others always get one."""
        return max(1, self.workers // 2)

    @property
    def max_calls(self) -> int:
        """Calls running or queued for a worker; gRPC refuses more (RESOURCE_EXHAUSTED)."""
        return self.workers * 4


def _metadata_values(context: Any) -> Callable[[str], Sequence[str]]:
    metadata = tuple(context.invocation_metadata() or ())

    def values(name: str) -> list[str]:
        return [v for k, v in metadata if k.lower() == name and isinstance(v, str)]

    return values


_SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}


class _CallsInFlight:
    """Calls each key has in flight, so a key holding calls open cannot take every worker."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def enter(self, key: str) -> bool:
        with self._lock:
            count = self._counts.get(key, 0)
            if count >= self._cap:
                return False
            self._counts[key] = count + 1
            return True

    def leave(self, key: str) -> None:
        with self._lock:
            count = self._counts.pop(key, 1) - 1
            if count > 0:
                self._counts[key] = count


def _expire(context: Any, seconds: float) -> None:
    """The message did not arrive in time: end the call so its worker thread is freed.

    The public ``context.cancel()`` can only say ``CANCELLED``; the call object under
    it can say ``DEADLINE_EXCEEDED`` with a reason, which tells the client what happened.
    """
    details = f"the request message did not arrive within {seconds:g} s"
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        call.cancel(cygrpc.StatusCode.deadline_exceeded, details)  # type: ignore[union-attr]
    except Exception:  # another grpc version's internals: cancel plainly
        context.cancel()


class _Export:
    """The Export method of one OTLP service, as a client-streaming handler.

    It receives the raw request bytes (no deserializer is registered), so a
    malformed message is answered with ``INVALID_ARGUMENT`` rather than gRPC's
    ``INTERNAL``, and it pulls the message only once the caller is admitted.
    """

    def __init__(self, pipeline: Pipeline, signal: Signal, calls: _CallsInFlight,
                 body_timeout: float, deadlines: Deadlines) -> None:  # fmt: skip
        self._pipeline = pipeline
        self._signal = signal
        self._calls = calls
        self._body_timeout = body_timeout
        self._deadlines = deadlines

    def __call__(self, messages: Iterator[bytes], context: Any) -> Any:
        principal = self._admit(context)
        key = principal.key_id
        if key is None:  # authentication off: no caller to tell apart, the deadline bounds it
            return self._export(principal, messages, context)
        if not self._calls.enter(key):
            context.abort_with_status(_retry_status("too many calls in flight for this key", 1.0))
        try:
            return self._export(principal, messages, context)
        finally:
            self._calls.leave(key)

    def _receive(self, messages: Iterator[bytes], context: Any) -> bytes | None:
        """The request message, waited for at most the body timeout."""
        timeout = self._body_timeout
        deadline = self._deadlines.call_later(timeout, _expire, context, timeout)
        try:
            return next(messages, None)
        finally:
            deadline.cancel()

    def _export(self, principal: Principal, messages: Iterator[bytes], context: Any) -> Any:
        try:
            body = self._receive(messages, context)
        except grpc.RpcError:  # too large, expired or cancelled: gRPC has answered it
            context.abort(grpc.StatusCode.CANCELLED, "the call ended")
        if body is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no request message")
        assert body is not None
        try:
            request = parse_otlp(body, False, self._signal.request())
        except BadRequestError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        del body
        try:
            return self._pipeline.export(self._signal, principal, request)
        except OverloadedError as exc:
            context.abort_with_status(_retry_status("the collector is overloaded", exc.retry_after))
        except (StoreClosedError, TimeoutError) as exc:
            context.abort_with_status(_retry_status(str(exc), 1.0))
        raise AssertionError("unreachable")

    def _admit(self, context: Any) -> Principal:
        pipeline = self._pipeline
        try:
            principal = pipeline.auth.authenticate(_metadata_values(context))
        except DuplicateCredentialsError as exc:  # malformed, as HTTP's 400 says
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        if principal is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid API key")
        assert principal is not None
        wait = pipeline.limiter.acquire(principal.key_id)
        if wait > 0:
            context.abort_with_status(_retry_status("rate limit exceeded", wait))
        return principal


def _handlers(pipeline: Pipeline, calls_per_key: int = 4, body_timeout: float = 60.0) -> list[Any]:
    handlers = []
    calls = _CallsInFlight(calls_per_key)  # shared by the three services
    deadlines = Deadlines("tf-collector-grpc-deadlines")  # one thread for every call's wait
    for name, service in _SERVICES.items():
        method = grpc.stream_unary_rpc_method_handler(
            _Export(pipeline, SIGNALS[name], calls, body_timeout, deadlines),
            request_deserializer=None,
            response_serializer=lambda message: message.SerializeToString(),
        )
        handlers.append(grpc.method_handlers_generic_handler(service, {"Export": method}))
    return handlers


def _options(limits: GrpcLimits) -> tuple[tuple[str, int], ...]:
    return (
        ("grpc.max_receive_message_length", limits.max_body),
        ("grpc.so_reuseport", 0),
        ("grpc.max_allowed_incoming_connections", limits.max_connections),
        ("grpc.server_handshake_timeout_ms", int(limits.handshake_timeout * 1000)),
        ("grpc.max_concurrent_streams", 16),
        ("grpc.max_connection_idle_ms", 5 * 60_000),
        ("grpc.max_connection_age_ms", 30 * 60_000),
        ("grpc.max_connection_age_grace_ms", 30_000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 60_000),
        ("grpc.http2.max_ping_strikes", 2),
    )


def start_grpc_server(
    pipeline: Pipeline, host: str, port: int, limits: GrpcLimits
) -> tuple[grpc.Server, int]:
    """Start the OTLP/gRPC server; returns it and the port actually bound."""
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=limits.workers, thread_name_prefix="tf-collector-grpc"
        ),
        handlers=_handlers(pipeline, limits.calls_per_key, limits.body_timeout),
        options=_options(limits),
        maximum_concurrent_rpcs=limits.max_calls,
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot bind the gRPC receiver to {address}: {exc}") from None
    if bound == 0:
        raise OSError(f"cannot bind the gRPC receiver to {address}")
    server.start()
    return server, bound
