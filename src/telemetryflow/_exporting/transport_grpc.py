"""OTLP/gRPC: one channel per process, made safe for ``fork()`` and bounded everywhere.

Two things gRPC does not do for us:

* **Fork.** gRPC core rebuilds its internal threads in a forked child only if no
  thread is inside a gRPC call at the moment of ``fork()``; otherwise it skips its
  fork handlers and the child's first call can wait forever, whatever its deadline.
  So before any fork of this process, every transport lets its calls in flight
  finish (cutting them short after a moment: the batch is kept and sent again) and
  holds new ones until the fork is done. A child never sends on, cancels or closes
  a channel it inherited (that can block forever too); it builds its own.
* **Deadlines that hold.** Each attempt also waits on our side for no longer than
  its timeout plus a little, and closing a channel runs on a daemon thread joined
  with a bound, so ``shutdown()`` returns on time even if gRPC itself does not.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

from telemetryflow._configuration.config import TelemetryConfig
from telemetryflow._exporting.tls_hint import (
    PLAINTEXT_TO_TLS,
    TLS_TO_PLAINTEXT,
    plaintext_server_signs,
    report_mismatch,
    speaks_tls,
)
from telemetryflow._exporting.transport_base import (
    MAX_RESPONSE_BYTES,
    SendResult,
    export_headers,
    read_file,
    redact_server_text,
    rejected_count,
    response_type,
)

__all__ = ["GrpcTransport"]

_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
_RETRYABLE = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "DATA_LOSS", "CANCELLED"}
)
_RECONNECT_OPTIONS = [
    # gRPC's default reconnect backoff grows to two minutes: a collector back after a
    # restart would wait seconds for the channel to notice. Try again within a second.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
]
_FORK_DRAIN = 0.5
"""How long a fork waits for calls in flight to finish before cutting them short."""
_CANCEL_DRAIN = 0.5
"""How long a fork then waits for the cut calls to return."""
_GRACE = 1.0
"""How much longer than its timeout we wait for an attempt gRPC should have ended."""
_CLOSE_WAIT = 1.0
"""How long ``close()`` waits for gRPC to close a channel."""
_MIN_WAIT = 0.05
"""Waiting for a connection is not worth it with less time than this left."""
_NO_CONNECTION = "failed to connect to all addresses"
"""gRPC's own words when a call failed before any connection existed (nothing sent)."""
_TLS_FAILURE_SIGNS = ("andshake", "SSL", "TSI_", "ertificate")
"""A failed TLS handshake: waiting for the channel would not change the answer."""

_live: weakref.WeakSet[GrpcTransport] = weakref.WeakSet()
_inherited: list[GrpcTransport] = []
"""Transports a forked child inherited: kept alive so their channels are never torn down."""


class GrpcTransport:
    """OTLP/gRPC over one channel, sending pre-encoded request bytes."""

    def __init__(self, config: TelemetryConfig, headers: Mapping[str, str] | None = None) -> None:
        """``headers`` replace the config's credentials and headers (a collector
        forwarding to an upstream sends its own)."""
        import grpc

        self._grpc = grpc
        self._config = config
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._in_flight: set[Any] = set()
        self._held = False  # a fork is under way: no new calls
        self._mismatch = False  # the collector's TLS setting is the opposite of ours
        self._probed = False
        endpoint = config.parsed_endpoint
        self._host, self._port = endpoint.host, endpoint.port or 4317
        self._target = endpoint.host_port if endpoint.port else f"{endpoint.host_port}:4317"
        self._tls = config.uses_tls
        options = [
            ("grpc.enable_retries", 0),
            ("grpc.max_send_message_length", config.max_request_bytes + 4096),
            ("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),
            *_RECONNECT_OPTIONS,
        ]
        if self._tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read_file(config.ca_file),
                private_key=read_file(config.client_key_file),
                certificate_chain=read_file(config.client_cert_file),
            )
            self._channel = grpc.secure_channel(self._target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(self._target, options=options)
        sent = export_headers(config) if headers is None else headers
        self._metadata = tuple((k.lower(), v) for k, v in sent.items())
        self._compression = grpc.Compression.Gzip if config.compression else None
        self._calls = {
            signal: self._channel.unary_unary(
                method,
                request_serializer=None,
                response_deserializer=response_type(signal).FromString,
            )
            for signal, method in _METHODS.items()
        }
        _live.add(self)

    # -- one attempt ---------------------------------------------------------------
    def send(self, signal: str, body: bytes, timeout: float) -> SendResult:
        """One delivery attempt within ``timeout``.

        The call fails fast first, so a refused connection or a TLS mismatch is seen
        with gRPC's own explanation. When no connection could be made (nothing was
        sent), the same attempt then waits for the channel to connect, for what is
        left of its timeout: a collector back from a restart gets the batch as soon
        as the channel reconnects, instead of after our next backoff.
        """
        if os.getpid() != self._pid:
            return SendResult(ok=False, retryable=True, message="gRPC channel of another process")
        deadline = time.monotonic() + max(timeout, 0.001)
        result, unreachable = self._call(signal, body, deadline, wait_for_ready=False)
        if unreachable and deadline - time.monotonic() > _MIN_WAIT:
            waited, _ = self._call(signal, body, deadline, wait_for_ready=True)
            if waited.ok or waited.message != "gRPC DEADLINE_EXCEEDED":
                result = waited
        return result

    def _call(
        self, signal: str, body: bytes, deadline: float, *, wait_for_ready: bool
    ) -> tuple[SendResult, bool]:
        timeout = max(deadline - time.monotonic(), 0.001)
        future = self._start(signal, body, timeout, wait_for_ready)
        if future is None:
            return SendResult(ok=False, retryable=True, message="gRPC paused for fork"), False
        try:
            return self._result(signal, future, timeout)
        finally:
            with self._cond:
                self._in_flight.discard(future)
                self._cond.notify_all()

    def _start(self, signal: str, body: bytes, timeout: float, wait_for_ready: bool) -> Any:
        """Begin the call, unless a fork holds calls back for longer than ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: not self._held, timeout):
                return None
            future = self._calls[signal].future(
                body,
                timeout=timeout,
                metadata=self._metadata,
                compression=self._compression,
                wait_for_ready=wait_for_ready,
            )
            self._in_flight.add(future)
            return future

    def _result(self, signal: str, future: Any, timeout: float) -> tuple[SendResult, bool]:
        """The call's outcome, and whether it failed for want of any connection."""
        grpc = self._grpc
        try:
            response = future.result(timeout=timeout + _GRACE)
        except grpc.FutureTimeoutError:
            _cancel_in_background([future])
            return SendResult(ok=False, retryable=True, message="gRPC DEADLINE_EXCEEDED"), False
        except grpc.FutureCancelledError:
            return SendResult(ok=False, retryable=True, message="gRPC CANCELLED"), False
        except grpc.RpcError as error:
            return self._classify(error)
        rejected, message = rejected_count(signal, response)
        message = redact_server_text(message, self._config)
        return SendResult(ok=True, rejected=rejected, message=message), False

    def _classify(self, error: Any) -> tuple[SendResult, bool]:
        code = error.code()
        name = code.name if code is not None else "UNKNOWN"
        unreachable = False
        if name == "UNAVAILABLE":
            details = _details(error)
            mismatch = self._explain_unavailable(details)
            unreachable = (
                not mismatch
                and details.startswith(_NO_CONNECTION)
                and not any(sign in details for sign in _TLS_FAILURE_SIGNS)
            )
        delay = _retry_info_delay(error)
        retryable = name in _RETRYABLE or (name == "RESOURCE_EXHAUSTED" and delay is not None)
        message = f"gRPC {name}"
        return SendResult(ok=False, retryable=retryable, retry_after=delay, message=message), (
            unreachable
        )

    def _explain_unavailable(self, details: str) -> bool:
        """Is the collector's TLS setting the opposite of ours? Said once per transport."""
        if self._mismatch:
            return True
        if self._tls and plaintext_server_signs(details):
            self._mismatch = True
            report_mismatch(TLS_TO_PLAINTEXT, self._target)
        elif not self._tls and "Socket closed" in details and not self._probed:
            self._probed = True  # probe once, whatever it finds
            if speaks_tls(self._host, self._port):
                self._mismatch = True
                report_mismatch(PLAINTEXT_TO_TLS, self._target)
        return self._mismatch

    # -- ending --------------------------------------------------------------------
    def abort(self) -> None:
        if os.getpid() != self._pid:
            return  # the parent's calls are the parent's business
        with self._cond:
            calls = list(self._in_flight)
        _cancel_in_background(calls)

    def close(self) -> None:
        """Cut calls short and close the channel, within about a second whatever gRPC does.

        In a forked child the inherited channel is left alone: closing it there can
        block forever and would not free the parent's connection anyway.
        """
        if os.getpid() != self._pid:
            return
        _live.discard(self)
        self.abort()
        _run_bounded(self._channel.close, _CLOSE_WAIT)

    # -- fork ----------------------------------------------------------------------
    def _hold_for_fork(self, deadline: float) -> None:
        """Before ``fork()``: no call of ours in flight, none starting until it is done."""
        if os.getpid() != self._pid:
            return
        with self._cond:
            self._held = True
            self._cond.wait_for(lambda: not self._in_flight, max(0.0, deadline - time.monotonic()))
            left = list(self._in_flight)
        if left:  # a slow collector: cut the calls short; their batches are kept
            for call in left:
                call.cancel()
            with self._cond:
                self._cond.wait_for(lambda: not self._in_flight, _CANCEL_DRAIN)

    def _release_after_fork(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def _orphan_in_child(self) -> None:
        """In the child: this channel belongs to the parent; never touch or free it."""
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = set()
        self._held = False
        _inherited.append(self)


def _before_fork() -> None:
    deadline = time.monotonic() + _FORK_DRAIN
    for transport in list(_live):
        with contextlib.suppress(Exception):  # a fork must go ahead whatever happens here
            transport._hold_for_fork(deadline)


def _after_fork_in_parent() -> None:
    for transport in list(_live):
        transport._release_after_fork()


def _after_fork_in_child() -> None:
    for transport in list(_live):
        transport._orphan_in_child()
    _live.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


def _run_bounded(action: Any, wait: float) -> None:
    """Run ``action`` on a daemon thread and wait at most ``wait`` seconds for it."""
    thread = threading.Thread(target=_quietly, args=(action,), name="telemetryflow-close")
    thread.daemon = True
    thread.start()
    thread.join(wait)


def _cancel_in_background(calls: list[Any]) -> None:
    if calls:
        _run_bounded(lambda: [call.cancel() for call in calls], _CLOSE_WAIT)


def _quietly(action: Any) -> None:
    try:
        action()
    except Exception:
        return


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


def _details(error: Any) -> str:
    try:
        return str(error.details() or "")
    except Exception:
        return ""
