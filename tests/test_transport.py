"""Transport attempts against real loopback servers that misbehave: an attempt has a
deadline whatever the server does, and a collector restart costs nothing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest

from _support import builder_for
from telemetryflow._exporting.transport import HttpTransport, SendResult, make_transport
from telemetryflow.testing import OTLPReceiver

DRIP_EVERY = 0.3
DRIP_FOR = 60.0  # the server gives up after this; an attempt must end long before


@contextmanager
def dripping_server() -> Iterator[int]:
    """Accepts, reads the request, then answers one byte every DRIP_EVERY seconds.

    Every byte resets a per-read socket timeout, so only a real deadline ends the
    attempt. Yields the port; stops (bounded) on exit.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(65536)
                started = time.monotonic()
                for byte in answer:
                    if stop.wait(DRIP_EVERY) or time.monotonic() - started > DRIP_FOR:
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def accept() -> None:
        workers = []
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=serve, args=(conn,), daemon=True)
            worker.start()
            workers.append(worker)
        for worker in workers:
            worker.join(2)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join(5)
        listener.close()


def test_an_http_attempt_ends_at_its_timeout_against_a_dripping_server(
    receiver: OTLPReceiver,
) -> None:
    with dripping_server() as port:
        config = builder_for(receiver, "http").with_endpoint(f"http://127.0.0.1:{port}")
        transport = HttpTransport(config.build_config())
        outcome: list[SendResult] = []
        attempt = threading.Thread(
            target=lambda: outcome.append(transport.send("logs", b"", timeout=1.0)), daemon=True
        )
        attempt.start()
        attempt.join(DRIP_FOR / 4)  # a bound for the test, not the figure under test
        alive = attempt.is_alive()
        transport.close()
        assert not alive, "the attempt outlived its timeout by far"
    assert outcome == [SendResult(ok=False, retryable=True, message="HTTP timeout")]


# -- a collector restart ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_attempt_made_while_the_collector_is_down_delivers_once_it_is_back(
    receiver: OTLPReceiver, protocol: str
) -> None:
    """Connection refused is not an answer: the attempt waits for the collector, within
    its timeout, instead of failing at once and leaving the batch to the next backoff."""
    config = builder_for(receiver, protocol).build_config()
    transport = make_transport(config)
    receiver.go_down()
    outcome: list[SendResult] = []
    attempt = threading.Thread(
        target=lambda: outcome.append(transport.send("logs", _one_log(), timeout=20.0)),
        daemon=True,
    )
    attempt.start()
    assert not receiver.wait_for(lambda: bool(outcome), 1.0)  # refused, and still trying
    receiver.come_back()
    attempt.join(30)
    transport.close()
    assert outcome and outcome[0].ok, outcome
    assert receiver.wait_for_logs(1, timeout=5)


def _one_log() -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs

    record = LogRecord(severity_text="INFO")
    record.body.string_value = "waited for the collector"
    request = ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record])])]
    )
    return bytes(request.SerializeToString())


RATE = 200  # spans per second
BEFORE, OUTAGE, AFTER = 1.0, 4.0, 2.0


def _spans_through_a_restart(receiver: OTLPReceiver, protocol: str) -> tuple[int, float | None]:
    """Record at RATE spans/s while the receiver goes down for OUTAGE seconds on the
    same ports; returns how many were recorded and how long after the receiver was
    back the first request arrived."""
    client = (
        builder_for(receiver, protocol)
        .with_retry(True, max_retries=3, backoff=timedelta(seconds=1))
        .with_timeout(timedelta(seconds=10))
        .with_queue_size(int(RATE * (BEFORE + OUTAGE + AFTER)) + 512)
        .build()
    )
    client.initialize()
    total = int(RATE * (BEFORE + OUTAGE + AFTER))
    started, back_at = time.monotonic(), 0.0
    state = "up"
    for i in range(total):
        elapsed = time.monotonic() - started
        if state == "up" and elapsed >= BEFORE:
            receiver.go_down()
            state = "down"
        elif state == "down" and elapsed >= BEFORE + OUTAGE:
            receiver.come_back()
            back_at, state = time.time(), "back"
        with client.span("steady", attributes={"i": i}):
            pass
        pause = started + (i + 1) / RATE - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    receiver.wait_for(lambda: len({s.attributes["i"] for s in receiver.spans()}) >= total, 30)
    client.shutdown(timeout=10)
    assert client.get_status()["dropped"]["traces"] == {}
    after = [r.received_at for r in receiver.requests if back_at and r.received_at >= back_at]
    return total, (min(after) - back_at) if after else None


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_collector_restart_shorter_than_the_buffer_loses_nothing(
    receiver: OTLPReceiver, protocol: str
) -> None:
    total, first_delivery = _spans_through_a_restart(receiver, protocol)
    delivered = {s.attributes["i"] for s in receiver.spans()}
    assert len(delivered) == total
    print(f"{protocol}: first delivery {first_delivery:.2f}s after the collector was back")
