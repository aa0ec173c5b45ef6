"""The HTTP receiver's connection guards, over raw loopback sockets to a real collector:
header size, half-closed clients, pipelining, draining an unread body, the
connection cap, and the quiet close of an idle kept-alive connection."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator

import httpx
from collector_helpers import KEY_A, log_request, make_log

from telemetryflow.collector import Collector

AUTH = f"Authorization: Bearer {KEY_A.key_id}:{KEY_A.key_secret}\r\n"
HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def logs_post(body: bytes, auth: str = AUTH) -> bytes:
    return (
        f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        f"{auth}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def stored_logs(collector: Collector) -> int:
    with collector.store.reader() as conn:
        return int(conn.execute("SELECT count(*) FROM logs").fetchone()[0])


@contextlib.contextmanager
def connect(collector: Collector) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=10) as sock:
        yield sock


class Responses:
    """The responses on one connection, read in order (two may arrive in one read)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {bytes(self.pending)!r}")
        self.pending += chunk

    def next(self) -> tuple[int, dict[str, str], bytes]:
        """The next response (status, lower-cased headers, body); it has a Content-Length."""
        for _ in range(1000):
            if b"\r\n\r\n" in self.pending:
                break
            self._more()
        head, _, _ = bytes(self.pending).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:])}
        end = len(head) + 4 + int(headers["content-length"])
        for _ in range(1000):
            if len(self.pending) >= end:
                break
            self._more()
        body = bytes(self.pending[len(head) + 4 : end])
        del self.pending[:end]
        return int(lines[0].split()[1]), headers, body


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The one response expected next on ``sock``, when nothing follows it unasked."""
    return Responses(sock).next()


def read_until_closed(sock: socket.socket) -> bytes:
    reply = bytearray()
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            reply += chunk
    return bytes(reply)


def test_headers_past_the_cap_get_431_and_the_server_keeps_serving(
    collector: Collector,
) -> None:
    big = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    with connect(collector) as sock:
        with contextlib.suppress(OSError):  # the server may close before all is sent
            sock.sendall(big)
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 431 ")
    assert b"request headers exceed 65536 bytes" in reply
    assert httpx.get(f"{collector.http_endpoint}/health").status_code == 200


def test_headers_under_the_cap_are_served(collector: Collector) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 60_000 + b"\r\n\r\n"
    with connect(collector) as sock:
        sock.sendall(request)
        status, _, body = read_response(sock)
    assert (status, body) == (200, b'{"status":"ok"}')


def test_a_half_closed_client_gets_its_answer(collector: Collector) -> None:
    with connect(collector) as sock:
        sock.sendall(logs_post(log_request("svc", [make_log("half")]).SerializeToString()))
        sock.shutdown(socket.SHUT_WR)
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert stored_logs(collector) == 1


def test_a_half_closed_client_with_a_short_body_is_dropped(collector: Collector) -> None:
    body = log_request("svc", [make_log("short")]).SerializeToString()
    with connect(collector) as sock:
        sock.sendall(logs_post(body)[:-3])
        sock.shutdown(socket.SHUT_WR)
        reply = read_until_closed(sock)
    assert b" 200 " not in reply
    assert stored_logs(collector) == 0


def test_pipelined_requests_are_answered_in_order(collector: Collector) -> None:
    body = log_request("svc", [make_log("piped")]).SerializeToString()
    with connect(collector) as sock:
        sock.sendall(HEALTH + logs_post(body) + b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        responses = Responses(sock)
        statuses = [responses.next()[0] for _ in range(3)]
    assert statuses == [200, 200, 404]
    assert stored_logs(collector) == 1


def test_an_early_answer_drains_the_body_and_keeps_the_connection(
    collector: Collector,
) -> None:
    body = log_request("svc", [make_log("x" * 50_000)]).SerializeToString()
    request = logs_post(body, auth="Authorization: Bearer tfk_nobody:wrong\r\n")
    head, body_part = request[: len(request) - len(body)], request[len(request) - len(body) :]
    with connect(collector) as sock:
        sock.sendall(head)
        assert read_response(sock)[0] == 401  # answered from the headers alone
        sock.sendall(body_part + HEALTH)
        status, _, answer = read_response(sock)
    assert (status, answer) == (200, b'{"status":"ok"}')
    assert stored_logs(collector) == 0


def test_an_unread_body_past_the_drain_bound_closes_the_connection(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector(max_body_bytes=4096)  # drains at most 4 KiB + 64 KiB
    with connect(collector) as sock:
        with contextlib.suppress(OSError):  # the server closes while this is sent
            sock.sendall(logs_post(b"\0" * 200_000, auth="") + HEALTH)
        reply = read_until_closed(sock)
    assert b"HTTP/1.1 200 " not in reply  # the request after the body was never read
    assert httpx.get(f"{collector.http_endpoint}/health").status_code == 200


def test_an_idle_kept_alive_connection_is_closed_without_an_answer(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector(header_timeout=1.0)
    with connect(collector) as sock:
        sock.sendall(HEALTH)
        assert read_response(sock)[0] == 200
        assert read_until_closed(sock) == b""  # closed quietly: no request had begun


def test_at_the_cap_the_longest_idle_connection_makes_room(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector(max_connections=4)
    with contextlib.ExitStack() as stack:
        idle = [stack.enter_context(connect(collector)) for _ in range(4)]
        for sock in idle:  # each served once, so each is known to the server
            sock.sendall(HEALTH)
            assert read_response(sock)[0] == 200
        with connect(collector) as newcomer:
            newcomer.sendall(HEALTH)
            assert read_response(newcomer)[0] == 200
        assert read_until_closed(idle[0]) == b""  # the oldest idle one was closed
        for sock in idle[1:]:
            sock.sendall(HEALTH)
            assert read_response(sock)[0] == 200


def test_at_the_cap_with_every_connection_busy_a_newcomer_gets_503(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector(max_connections=3)
    body = log_request("svc", [make_log("busy")]).SerializeToString()
    request = logs_post(body)
    split = len(request) - len(body)
    head = request[: split - 2] + b"Expect: 100-continue\r\n\r\n"
    with contextlib.ExitStack() as stack:
        busy = [stack.enter_context(connect(collector)) for _ in range(3)]
        for sock in busy:  # a request in flight on each: the app waits for its body
            sock.sendall(head)
            assert sock.recv(len(CONTINUE), socket.MSG_WAITALL) == CONTINUE
        with connect(collector) as newcomer:
            newcomer.sendall(HEALTH)
            status, headers, _ = read_response(newcomer)
        assert (status, headers.get("retry-after")) == (503, "1")
        for sock in busy:
            sock.sendall(request[split:])
            assert read_response(sock)[0] == 200
    assert stored_logs(collector) == 3


def test_a_broken_request_behind_one_in_flight_is_refused_after_its_answer(
    collector: Collector,
) -> None:
    with connect(collector) as sock:
        sock.sendall(HEALTH + b"\x00 not http\r\n\r\n")
        responses = Responses(sock)
        first, second = responses.next(), responses.next()
        assert read_until_closed(sock) == b""
    assert (first[0], first[2]) == (200, b'{"status":"ok"}')
    assert second[0] == 400
    assert json.loads(second[2]) == {
        "error": {"code": 400, "message": "the request is not valid HTTP/1.1"}
    }
