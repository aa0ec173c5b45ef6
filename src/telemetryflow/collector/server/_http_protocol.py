"""uvicorn's HTTP/1.1 protocol with the guards a receiver facing any client needs.

uvicorn bounds header size (h11) and closes idle keep-alive connections, but a
connection that sends its headers one byte at a time is never timed out, and every
accepted connection is kept however many there are. This subclass adds:

- a *total* deadline for the headers of each request, from the moment the
  connection opened or the previous answer went out, and another for its body,
  from the moment its headers arrived: dripping bytes does not extend either
  (408, then close);
- a cap on open connections: at the cap, a new connection closes the connection
  that has been waiting longest without a request in flight (an idle or slow
  client), so holding connections never locks out a client with a real request;
  only when every connection has a request in flight is the newcomer answered 503;
- a bound on the bytes of an unread body it discards after answering early (401,
  413...), so refusing never turns into reading an attacker's stream forever;
- a half-closed client (``shutdown(SHUT_WR)`` after its request) still gets its answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ConnectionLimits", "GuardedH11Protocol", "protocol_class"]


def _raw_answer(status: int, reason: str, message: str, extra: str = "") -> bytes:
    """A complete response written before any request could be parsed, then closed."""
    body = json.dumps({"error": {"code": status, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{extra}"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


_BUSY = _raw_answer(503, "Service Unavailable", "too many connections busy; retry later",
                    "Retry-After: 1\r\n")  # fmt: skip
_TIMEOUT = _raw_answer(408, "Request Timeout", "the request headers did not arrive in time")
_BODY_TIMEOUT = _raw_answer(408, "Request Timeout", "the request body did not arrive in time")


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-server limits shared by every connection's protocol."""

    max_connections: int
    header_timeout: float
    body_timeout: float
    drain_bytes: int


class _QuietLogger:
    """uvicorn's per-connection log calls, on the collector's logger.

    A malformed request is the client's problem: uvicorn's warning becomes a debug
    line (an attacker could otherwise fill the log). Errors stay errors.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    @property
    def level(self) -> int:
        return self._logger.getEffectiveLevel()

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._logger.debug(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


_logger = _QuietLogger(logging.getLogger("telemetryflow.collector.http"))


class GuardedH11Protocol(H11Protocol):
    """One HTTP/1.1 connection (see the module docstring for what it adds)."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = _logger  # type: ignore[assignment]
        self.access_log = False
        self._deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        self._waiting_since = 0.0
        self._idle_bytes = 0
        self._eof = False

    # -- connection lifecycle --------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since = self.loop.time()
        self._arm()
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            transport.write(_BUSY)
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._body_done()
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        if not self._in_flight():
            return None
        self._eof = True
        # Let the request's task run first: an early answer (401, 413...) still goes out.
        self.loop.call_soon(self._after_eof)
        return True  # keep the socket open to send the answer

    def _after_eof(self) -> None:
        if self._in_flight() and self.conn.their_state is h11.SEND_BODY:
            self.cycle.disconnected = True  # the body can never complete
            self.cycle.message_event.set()
            self.transport.close()
        elif not self._in_flight():
            self.transport.close()

    def _in_flight(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _evictable(self) -> bool:
        return not self._in_flight() and not self.transport.is_closing()

    def _make_room(self) -> bool:
        """Close the connection waiting longest without a request; False if none is.

        Connections that have not sent a byte since their last request go first: a
        client that is sending its request is worth more than one that only holds a
        socket, and a flood of new connections would otherwise churn through the
        real clients that just connected.
        """
        victims = [
            c
            for c in self.connections
            if c is not self and isinstance(c, GuardedH11Protocol) and c._evictable()
        ]
        if not victims:
            return False
        oldest = min(victims, key=lambda c: (c._idle_bytes > 0, c._waiting_since))
        oldest.transport.close()
        oldest.connections.discard(oldest)
        return True

    # -- the header deadline ---------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        self._idle_bytes = 0
        self._deadline = self.loop.call_later(self.limits.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._in_flight():
            return
        if self._idle_bytes and self.conn.our_state is h11.IDLE:
            self.transport.write(_TIMEOUT)  # part of a request arrived, too slowly
        self.transport.close()

    # -- data ------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if not self._in_flight():
            self._idle_bytes += len(data)
            if self._idle_bytes > self.limits.drain_bytes:
                self.transport.close()  # an unread body or headers past any sane size
                return
        super().data_received(data)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before and self._in_flight():
            self._disarm()  # a request started: its body has its own deadline
            if self.conn.their_state is h11.SEND_BODY:
                self._body_deadline = self.loop.call_later(
                    self.limits.body_timeout, self._body_expired
                )
        if self._body_deadline is not None and self.conn.their_state is not h11.SEND_BODY:
            self._body_done()

    # -- the body deadline -----------------------------------------------------------
    def _body_done(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _body_expired(self) -> None:
        self._body_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        cycle = self.cycle
        if self._in_flight() and not cycle.response_started:
            self.transport.write(_BODY_TIMEOUT)
        if self._in_flight():
            cycle.disconnected = True  # the request's task sees a disconnect and ends
            cycle.message_event.set()
        self.transport.close()

    def on_response_complete(self) -> None:
        if self._eof:
            self.transport.close()
            return
        if not self.transport.is_closing():
            self._waiting_since = self.loop.time()
            self._arm()
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        if self._in_flight():
            # Framing broke while the app reads the body: end the request as a disconnect.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
            self.transport.close()
        elif self.conn.our_state is h11.IDLE:
            super().send_400_response(msg)
        else:
            self.transport.close()


def protocol_class(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A protocol class bound to one server's limits (uvicorn instantiates it per connection)."""
    return type("CollectorH11Protocol", (GuardedH11Protocol,), {"limits": limits})
