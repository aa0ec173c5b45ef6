"""The connection guards hold with either HTTP parser: httptools (C, the default when
installed) and h11 (pure Python, the fallback). Raw sockets against real collectors."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

import pytest
from collector_helpers import KEY_A, headers_for, log_request, make_log

from telemetryflow.collector import Collector, _http_protocol

PARSERS = ["h11", "httptools"]


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    if name == "httptools" and _http_protocol.HttpToolsProtocol is None:
        pytest.skip("httptools is not installed")
    monkeypatch.setenv("TELEMETRYFLOW_HTTP_PARSER", name)
    return name


def read_until_closed(sock: socket.socket, limit: float = 30.0) -> bytes:
    """Everything the server sends until it closes (bounded by ``limit`` seconds)."""
    sock.settimeout(limit)
    reply = bytearray()
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            reply += chunk
    return bytes(reply)


def logs_request(auth: dict[str, str], extra: bytes = b"") -> bytes:
    body = log_request("svc", [make_log("hello")]).SerializeToString()
    head = "".join(f"{k}: {v}\r\n" for k, v in auth.items())
    return (
        b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        + head.encode()
        + extra
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def stored_logs(collector: Collector) -> int:
    with collector.store.reader() as conn:
        return int(conn.execute("SELECT count(*) FROM logs").fetchone()[0])


def test_the_chosen_parser_serves(parser: str, make_collector: Callable[..., Collector]) -> None:
    collector = make_collector()
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=10) as sock:
        sock.sendall(logs_request(headers_for(KEY_A), b"Connection: close\r\n"))
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert stored_logs(collector) == 1
    protocol = collector._http._server.config.http  # type: ignore[union-attr]
    assert (parser == "httptools") == (protocol.__name__ == "CollectorHttpToolsProtocol")


def test_oversized_request_head_gets_400(
    parser: str, make_collector: Callable[..., Collector]
) -> None:
    """Past 64 KiB without the end of the head: 400, whatever else is to come."""
    collector = make_collector()
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (80 * 1024) + b"\r\n"
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=10) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(request)
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]


def test_head_just_under_the_cap_is_served(
    parser: str, make_collector: Callable[..., Collector]
) -> None:
    collector = make_collector()
    request = (
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "
        + b"a" * (60 * 1024)
        + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=10) as sock:
        sock.sendall(request)
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]


def test_a_large_body_in_one_write_is_not_taken_for_a_large_head(
    parser: str, make_collector: Callable[..., Collector]
) -> None:
    collector = make_collector()
    body = b'{"name": "' + b"x" * (200 * 1024) + b'"}'
    request = (
        b"POST /v1/metrics/report HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers_for(KEY_A).items()).encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=10) as sock:
        sock.sendall(request)
        reply = read_until_closed(sock)
    assert reply.split(b"\r\n", 1)[0] in (b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 200 OK")
    assert b"Invalid HTTP request" not in reply


def test_a_refused_request_is_drained_and_the_next_one_served(
    parser: str, make_collector: Callable[..., Collector]
) -> None:
    collector = make_collector()
    refused = logs_request({"Authorization": "Bearer tfk_nobody:tfs_wrong"})
    accepted = logs_request(headers_for(KEY_A), b"Connection: close\r\n")
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=10) as sock:
        sock.sendall(refused + accepted)
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
    assert b"HTTP/1.1 200" in reply
    assert stored_logs(collector) == 1


def test_a_half_closed_client_gets_its_answer(
    parser: str, make_collector: Callable[..., Collector]
) -> None:
    collector = make_collector()
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=10) as sock:
        sock.sendall(logs_request(headers_for(KEY_A)))
        sock.shutdown(socket.SHUT_WR)
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert stored_logs(collector) == 1


def test_a_half_closed_body_is_never_stored(
    parser: str, make_collector: Callable[..., Collector]
) -> None:
    collector = make_collector()
    request = logs_request(headers_for(KEY_A))
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=10) as sock:
        sock.sendall(request[:-5])  # five bytes short of Content-Length
        sock.shutdown(socket.SHUT_WR)
        reply = read_until_closed(sock)
    assert not reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert stored_logs(collector) == 0


def test_malformed_framing_gets_400(parser: str, make_collector: Callable[..., Collector]) -> None:
    collector = make_collector()
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 400"), reply[:200]


def test_garbage_after_a_complete_request_does_not_cost_that_request(
    parser: str, make_collector: Callable[..., Collector]
) -> None:
    """The request is answered and stored; only then is the garbage refused."""
    collector = make_collector()
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=10) as sock:
        sock.sendall(logs_request(headers_for(KEY_A)) + b"\x00\x01 not http\r\n\r\n")
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    assert b"HTTP/1.1 400" in reply
    assert stored_logs(collector) == 1
