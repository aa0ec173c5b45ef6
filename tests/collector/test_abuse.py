"""Hostile clients against real collectors: held connections, slow senders, zip bombs,
duplicate credentials, a store in trouble. Each test pins a defect once seen."""

from __future__ import annotations

import contextlib
import logging
import socket
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import pytest
from collector_helpers import KEY_A, KEY_B, headers_for, log_request, make_log, metadata_for
from google.rpc import error_details_pb2, status_pb2

from telemetryflow.collector import Collector

PB = {"Content-Type": "application/x-protobuf"}
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def logs_body(text: str = "hello") -> bytes:
    return log_request("svc", [make_log(text)]).SerializeToString()


def stored_logs(collector: Collector) -> int:
    with collector.store.reader() as conn:
        return int(conn.execute("SELECT count(*) FROM logs").fetchone()[0])


def read_until_closed(sock: socket.socket, limit: float = 30.0) -> bytes:
    """Everything the server sends until it closes (bounded by ``limit`` seconds)."""
    sock.settimeout(limit)
    reply = bytearray()
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            reply += chunk
    return bytes(reply)


# -- slow senders --------------------------------------------------------------------
def drip(sock: socket.socket, data: bytes, every: float) -> int:
    """Send ``data`` one byte at a time; return how many bytes went before the server cut."""
    sock.settimeout(every)
    for sent, byte in enumerate(data):
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(1, socket.MSG_PEEK) is not None:
                return sent + 1  # the server answered (and closes)
        except TimeoutError:
            continue  # nothing from the server yet: keep dripping
        except OSError:
            return sent
    return len(data)


def test_slowloris_headers_are_cut_at_a_total_deadline(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector(header_timeout=1.0)
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=5) as sock:
        sent = drip(sock, request, every=0.1)  # 25 s to finish; the deadline is 1 s
        reply = read_until_closed(sock)
    assert sent < len(request)
    assert reply.startswith(b"HTTP/1.1 408")
    assert httpx.get(f"{collector.http_endpoint}/health").status_code == 200


def test_slow_body_is_cut_at_a_total_deadline(make_collector: Callable[..., Collector]) -> None:
    collector = make_collector(body_timeout=1.0)
    body = logs_body("x" * 300)
    head = (
        f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        f"Authorization: Bearer {KEY_A.key_id}:{KEY_A.key_secret}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=5) as sock:
        sock.sendall(head)
        sent = drip(sock, body, every=0.1)
        reply = read_until_closed(sock)
    assert sent < len(body)
    assert reply.startswith(b"HTTP/1.1 408")
    assert stored_logs(collector) == 0


# -- zip bombs -----------------------------------------------------------------------
def _bomb(size: int, wbits: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    chunk = b"\0" * (1 << 20)
    return b"".join(compressor.compress(chunk) for _ in range(size >> 20)) + compressor.flush()


def test_every_zip_bomb_gets_a_clean_413(make_collector: Callable[..., Collector]) -> None:
    """32 clients at once, gzip and deflate, sized and chunked: each reads its 413."""
    limit = 1 << 20
    collector = make_collector(max_body_bytes=limit, max_inflight_bytes=64 * limit)
    bombs = {"gzip": _bomb(64 << 20, 16 + zlib.MAX_WBITS), "deflate": _bomb(64 << 20, 15)}
    assert all(len(bomb) < limit for bomb in bombs.values())

    def send(i: int) -> int:
        encoding = ("gzip", "deflate")[i % 2]
        body = bombs[encoding]
        content: bytes | Iterator[bytes] = body
        if i % 4 >= 2:  # chunked
            content = iter([body[j : j + 8192] for j in range(0, len(body), 8192)])
        headers = {**PB, **headers_for(KEY_A), "Content-Encoding": encoding}
        with httpx.Client(timeout=30) as client:
            url = f"{collector.http_endpoint}/v1/logs"
            return client.post(url, content=content, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(send, range(32)))
    assert statuses == [413] * 32
    assert stored_logs(collector) == 0


# -- duplicate credentials -----------------------------------------------------------
@pytest.mark.parametrize("first_valid", [True, False])
def test_two_authorization_headers_are_refused_over_http(
    collector: Collector, first_valid: bool
) -> None:
    good = f"Bearer {KEY_A.key_id}:{KEY_A.key_secret}"
    bad = f"Bearer {KEY_B.key_id}:tfs_wrong"
    first, second = (good, bad) if first_valid else (bad, good)
    body = logs_body()
    request = (
        f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: {first}\r\nAuthorization: {second}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=5) as sock:
        sock.sendall(request)
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 400")
    assert b"more than one Authorization header" in reply
    assert stored_logs(collector) == 0


@pytest.mark.parametrize("first_valid", [True, False])
def test_two_authorization_metadata_are_refused_over_grpc(
    collector: Collector, first_valid: bool
) -> None:
    good = ("authorization", f"Bearer {KEY_A.key_id}:{KEY_A.key_secret}")
    bad = ("authorization", f"Bearer {KEY_B.key_id}:tfs_wrong")
    metadata = (good, bad) if first_valid else (bad, good)
    with (
        grpc.insecure_channel(collector.grpc_endpoint or "") as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        channel.unary_unary(LOGS)(logs_body(), metadata=metadata, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # HTTP answers 400
    assert "more than one Authorization header" in (info.value.details() or "")
    assert stored_logs(collector) == 0


# -- gRPC: the key before the body ---------------------------------------------------
@pytest.mark.parametrize("compressed", [False, True])
def test_grpc_refuses_an_unknown_caller_before_receiving_its_message(
    make_collector: Callable[..., Collector], compressed: bool
) -> None:
    """Over the size cap (or a bomb): the answer is about the key, not the message."""
    collector = make_collector(max_body_bytes=4096)
    body = logs_body("x" * 200_000)
    compression = grpc.Compression.Gzip if compressed else grpc.Compression.NoCompression
    with grpc.insecure_channel(collector.grpc_endpoint or "", compression=compression) as ch:
        export = ch.unary_unary(LOGS)
        for metadata in ((), (("authorization", f"Bearer {KEY_A.key_id}:tfs_wrong"),)):
            with pytest.raises(grpc.RpcError) as info:
                export(body, metadata=metadata, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as admitted:
            export(body, metadata=metadata_for(KEY_A), timeout=10)
        assert admitted.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        export(logs_body("small"), metadata=metadata_for(KEY_A), timeout=10)
    assert stored_logs(collector) == 1


def test_collector_logs_never_name_a_full_key_id(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    bad = log_request("svc", [make_log("x")])
    bad.resource_logs[0].scope_logs[0].log_records[0].trace_id = b"\x01\x02"  # rejected
    with caplog.at_level(logging.DEBUG, logger="telemetryflow"):
        httpx.post(f"{collector.http_endpoint}/v1/logs", content=bad.SerializeToString(),
                   headers={**PB, **headers_for(KEY_A)})  # fmt: skip
        httpx.post(f"{collector.http_endpoint}/v1/logs", content=b"\xff garbage",
                   headers={**PB, **headers_for(KEY_B)})  # fmt: skip
        with (
            grpc.insecure_channel(collector.grpc_endpoint or "") as channel,
            contextlib.suppress(grpc.RpcError),
        ):
            channel.unary_unary(LOGS)(b"\xff", metadata=metadata_for(KEY_B), timeout=10)
    text = caplog.text
    for key in (KEY_A, KEY_B):
        assert key.key_id not in text and key.key_secret not in text


# -- the store in trouble ------------------------------------------------------------
def _retry_delay(error: grpc.RpcError) -> int:
    trailers = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    return int(info.retry_delay.seconds)


def test_a_closed_store_answers_503_and_unavailable_with_retry_hints(
    collector: Collector,
) -> None:
    collector.store.close()  # the writer has stopped, as during shutdown
    response = httpx.post(f"{collector.http_endpoint}/v1/logs", content=logs_body(),
                          headers={**PB, **headers_for(KEY_A)})  # fmt: skip
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    with (
        grpc.insecure_channel(collector.grpc_endpoint or "") as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        channel.unary_unary(LOGS)(logs_body(), metadata=metadata_for(KEY_A), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _retry_delay(info.value) >= 1


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_a_full_write_queue_answers_503_and_unavailable_with_retry_hints(
    make_collector: Callable[..., Collector], transport: str
) -> None:
    """Another process holds the database's write lock; the queue (1 deep) fills up."""
    collector = make_collector(max_pending_writes=1)
    blocker = sqlite3.connect(collector.store.path, isolation_level=None, timeout=1)
    blocker.execute("BEGIN IMMEDIATE")
    outcomes: list[tuple[str, int]] = []

    def http_send() -> tuple[str, int]:
        r = httpx.post(f"{collector.http_endpoint}/v1/logs", content=logs_body(),
                       headers={**PB, **headers_for(KEY_A)}, timeout=30)  # fmt: skip
        return str(r.status_code), int(r.headers.get("retry-after", 0))

    def grpc_send() -> tuple[str, int]:
        with grpc.insecure_channel(collector.grpc_endpoint or "") as channel:
            try:
                channel.unary_unary(LOGS)(logs_body(), metadata=metadata_for(KEY_A), timeout=30)
            except grpc.RpcError as error:
                code = error.code()  # type: ignore[attr-defined]
                return code.name, _retry_delay(error) if code.name == "UNAVAILABLE" else 0
        return "OK", 0

    send = http_send if transport == "http" else grpc_send
    refused = "503" if transport == "http" else "UNAVAILABLE"
    threads: list[threading.Thread] = []
    try:
        for _ in range(40):  # until one is refused: the writer holds 1+, the queue 1
            thread = threading.Thread(target=lambda: outcomes.append(send()))
            thread.start()
            threads.append(thread)
            thread.join(0.3)
            if any(code == refused for code, _ in outcomes):
                break
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        for thread in threads:
            thread.join(30)
    refusals = [delay for code, delay in outcomes if code == refused]
    assert refusals and all(delay >= 1 for delay in refusals)
    assert {code for code, _ in outcomes} <= {refused, "200", "OK"}
    assert stored_logs(collector) == len(outcomes) - len(refusals)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"max_inflight_bytes": 1024, "max_body_bytes": 4096}, "max_inflight_bytes"),
        ({"header_timeout": 0.0}, "header_timeout"),
        ({"body_timeout": -1.0}, "body_timeout"),
        ({"max_connections": 0}, "max_connections"),
    ],
)
def test_limits_are_validated(overrides: dict[str, object], problem: str) -> None:
    from telemetryflow._configuration.errors import ConfigError
    from telemetryflow.collector import CollectorConfig

    with pytest.raises(ConfigError, match=problem):
        CollectorConfig(auth=False, **overrides)  # type: ignore[arg-type]
