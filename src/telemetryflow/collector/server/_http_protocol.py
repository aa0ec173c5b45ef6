"""uvicorn's HTTP/1.1 protocol (the ``httptools`` parser) with the guards a receiver
facing any client needs.

uvicorn closes idle keep-alive connections, but a connection that sends its headers
one byte at a time is never timed out, nothing bounds the size of a request's
headers, and every accepted connection is kept however many there are. This subclass
adds:

- a *total* deadline for the headers of each request, from the moment the
  connection opened or the previous answer went out, and another for its body,
  from the moment its headers arrived: dripping bytes does not extend either
  (408, then close);
- a bound on the bytes of one request's headers (431, then close);
- a cap on open connections: at the cap, a new connection closes the connection
  that has been waiting longest without a request in flight (an idle or slow
  client), so holding connections never locks out a client with a real request;
  only when every connection has a request in flight is the newcomer answered 503;
- a bound on the bytes of an unread body it discards after answering early (401,
  413...), so refusing never turns into reading an attacker's stream forever;
- a half-closed client (``shutdown(SHUT_WR)`` after its request) still gets its answer.

The C parser costs about a tenth of a millisecond less per request than uvicorn's
pure-Python one (h11), most of what a small export costs the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConnectionLimits", "GuardedHTTPProtocol", "protocol_class"]


def _raw_answer(status: int, reason: str, message: str, extra: str = "") -> bytes:
    """A complete response written outside any request's cycle, then closed."""
    body = json.dumps({"error": {"code": status, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{extra}"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


_BUSY = _raw_answer(503, "Service Unavailable", "too many connections busy; retry later",
                    "Retry-After: 1\r\n")  # fmt: skip
_TIMEOUT = _raw_answer(408, "Request Timeout", "the request headers did not arrive in time")
_BODY_TIMEOUT = _raw_answer(408, "Request Timeout", "the request body did not arrive in time")
_NOT_HTTP = _raw_answer(400, "Bad Request", "the request is not valid HTTP/1.1")
_MAX_HEADER_BYTES = 64 * 1024


class _HeadersTooLargeError(Exception):
    """Raised from a parser callback to stop parsing a request whose headers are too large."""


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-server limits shared by every connection's protocol."""

    max_connections: int
    header_timeout: float
    body_timeout: float
    drain_bytes: int
    max_header_bytes: int = _MAX_HEADER_BYTES


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


class _OneWrite:
    """The transport as a request's cycle sees it: an answer's head and body in one send.

    uvicorn writes a response's head and its body separately, two system calls and
    two TCP segments for every small answer. The head is held until the body comes
    in the same turn of the loop, or sent alone at the end of that turn (a streamed
    answer, ``100 Continue``).
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = data
            self._loop.call_soon(self._flush)
        else:
            self._held = None
            self._transport.write(held + data)

    def _flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


class GuardedHTTPProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection (see the module docstring for what it adds).

    The parser's callbacks say where the connection is in the current message:
    ``_in_head`` from its first byte to the end of its headers, ``_in_body`` from
    there to its end, whether or not a request's task still reads it (after an
    early answer the rest of the body is parsed and dropped: draining).
    """

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = _logger  # type: ignore[assignment]
        self.access_log = False
        self._deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        self._waiting_since = 0.0
        self._idle_bytes = 0
        self._head_bytes = 0
        self._in_head = False
        self._in_body = False
        self._eof = False
        self._bad_head: bytes | None = None
        self._refusal: bytes | None = None
        """The answer to a broken request that follows the one in flight, sent after it."""

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
        if self._in_flight() and self._in_body:
            self._end_cycle()  # the body can never complete
        elif not self._in_flight():
            self.transport.close()

    def _in_flight(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _end_cycle(self) -> None:
        """The request's task sees a disconnect and ends; the connection closes."""
        self.cycle.disconnected = True
        self.cycle.message_event.set()
        self.transport.close()

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
            if c is not self and isinstance(c, GuardedHTTPProtocol) and c._evictable()
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
        if self._idle_bytes and not self._in_body:
            self.transport.write(_TIMEOUT)  # part of a request arrived, too slowly
        self.transport.close()

    # -- data and the parser's callbacks ---------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # the parser stopped at a broken request; only the answers remain
        if not self._in_flight():
            self._idle_bytes += len(data)
            if self._idle_bytes > self.limits.drain_bytes:
                self.transport.close()  # an unread body or headers past any sane size
                return
        if not self._in_body:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._head_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
            self._refuse(self._too_large())  # headers still incomplete
        elif not self._in_flight():
            if self._deadline is None:  # bytes of a request, or of a body being drained
                deadline = self._waiting_since + self.limits.header_timeout
                self._deadline = self.loop.call_at(deadline, self._expired)
        elif self._in_body and self._body_deadline is None:
            self._body_deadline = self.loop.call_later(self.limits.body_timeout, self._body_expired)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        limit = self.limits.max_header_bytes
        if self._head_bytes > limit and self._head_size() > limit:
            self._bad_head = self._too_large()
            raise _HeadersTooLargeError  # the parser stops; uvicorn calls send_400_response
        self._in_head, self._in_body, self._head_bytes = False, True, 0
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:
            self._disarm()  # a request started: its body has its own deadline
            self.cycle.transport = _OneWrite(self.transport, self.loop)  # type: ignore[assignment]

    def _head_size(self) -> int:
        """The bytes of the request line's target and the headers just parsed."""
        return len(self.url) + sum(len(name) + len(value) for name, value in self.headers)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._body_done()
        super().on_message_complete()

    def _too_large(self) -> bytes:
        message = f"request headers exceed {self.limits.max_header_bytes} bytes"
        return _raw_answer(431, "Request Header Fields Too Large", message)

    def _refuse(self, answer: bytes) -> None:
        """Answer a request that cannot be parsed, then close.

        A request whose body is being read ends as a disconnect (its framing broke).
        Behind a complete request still in flight (pipelined, or a body sent without
        a length), the refusal waits for that request's answer.
        """
        if self._in_flight():
            if self._in_body:
                self._end_cycle()
            else:
                self._refusal = answer
        elif self._in_body:
            self.transport.close()  # an unread body being drained broke its framing
        else:
            self.transport.write(answer)
            self.transport.close()

    # -- the body deadline -----------------------------------------------------------
    def _body_done(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _body_expired(self) -> None:
        self._body_deadline = None
        if self.transport.is_closing() or not self._in_body:
            return
        if self._in_flight():
            if not self.cycle.response_started:
                self.transport.write(_BODY_TIMEOUT)
            self._end_cycle()
        self.transport.close()

    def on_response_complete(self) -> None:
        if self._eof:
            self.transport.close()
            return
        if self._refusal is not None and not self.pipeline:
            self.transport.write(self._refusal)
            self.transport.close()
            return
        # The header deadline is armed by the next bytes (most requests arrive whole,
        # and need none); until then uvicorn's keep-alive timeout closes an idle
        # connection, never later than the header deadline would.
        self._waiting_since = self.loop.time()
        self._idle_bytes = 0
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(self._bad_head or _NOT_HTTP)


def protocol_class(limits: ConnectionLimits) -> type[GuardedHTTPProtocol]:
    """A protocol class bound to one server's limits (uvicorn instantiates it per connection)."""
    return type("CollectorHTTPProtocol", (GuardedHTTPProtocol,), {"limits": limits})
