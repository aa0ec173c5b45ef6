"""The HTTP side keeps serving while one request's work is slow."""

from __future__ import annotations

import select
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from collector_helpers import KEY_A, headers_for

from telemetryflow.collector import Collector


def _connect(collector: Collector) -> socket.socket:
    return socket.create_connection(("127.0.0.1", collector.http_port), timeout=60)


def _request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _unread_by_server(client: socket.socket) -> int | None:
    """Bytes the server has received on ``client``'s connection but not yet read."""
    ours = client.getsockname()[1]
    server = client.getpeername()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server and int(remote.split(":")[1], 16) == ours:
            return int(fields[4].split(":")[1], 16)
    return None


def _until_read(client: socket.socket) -> None:
    """Wait (at most 60 s) until the server has read all that ``client`` sent."""
    for _ in range(1200):
        if _unread_by_server(client) == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the server did not read the request body")


def _health_answer(sock: socket.socket) -> bytes:
    """One whole ``/health`` answer (it may come in more than one segment)."""
    answer = b""
    for _ in range(100):
        answer += sock.recv(65536)
        if answer.endswith(b'{"status":"ok"}'):
            break
    return answer


def _probe_while_outstanding(collector: Collector, big: socket.socket) -> int:
    """Ask ``/health`` again and again until ``big`` has its answer; count the answers.

    Bounded: at most 20,000 probes, each waited for at most 60 s.
    """
    answered = 0
    with _connect(collector) as health:
        for _ in range(20_000):
            health.sendall(_request("GET", "/health", {}))
            readable, _, _ = select.select([big, health], [], [], 60)
            if health in readable:
                assert _health_answer(health).startswith(b"HTTP/1.1 200")
                answered += 1
            if big in readable or not readable:
                return answered
    return answered


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/net/tcp")
def test_health_answers_while_a_large_json_body_is_parsed(
    make_collector: Callable[..., Collector],
) -> None:
    """Parsing ~14 MiB of JSON takes most of a second; not on the event loop."""
    collector = make_collector()
    body = b"[" + b",".join([b'{"name":"x","value":1}'] * 650_000) + b"]"  # ~14 MiB
    headers = {**headers_for(KEY_A), "Content-Type": "application/json"}
    with _connect(collector) as big:
        request = _request("POST", "/v1/metrics/query", headers, body)
        big.sendall(request[:-1])
        _until_read(big)  # so the last byte starts the parse, before /health is asked
        big.sendall(request[-1:])
        answered = _probe_while_outstanding(collector, big)
        big.settimeout(120)
        assert big.recv(65536).startswith(b"HTTP/1.1 400")  # a list, not an object
    # parsed on the event loop, no probe is answered before the parse is over
    assert answered >= 1
