"""A decorated function keeps its client's tracer, recorder and duration series between
calls (``_extras/track_template.py``), and renews them when the client or the process
is another one: spans and duration points still land where they belong."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from _support import builder_for
from telemetryflow import TelemetryFlowClient, track
from telemetryflow._extras.default import set_default_client
from telemetryflow._extras.track import DURATION_METRIC
from telemetryflow.testing import OTLPReceiver


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as running:
        yield running


def _client(receiver: OTLPReceiver, service: str) -> TelemetryFlowClient:
    client = builder_for(receiver).with_service(service).build()
    client.initialize()
    return client


def _counts(receiver: OTLPReceiver, service: str) -> tuple[int, int]:
    """Spans named ``job`` and the newest ``completed`` count of the duration series."""
    spans = [
        s for s in receiver.spans() if s.name == "job" and s.resource.get("service.name") == service
    ]
    newest = (0, 0)  # (time, count)
    for m in receiver.metrics():
        if m.resource.get("service.name") != service or m.name != DURATION_METRIC:
            continue
        for point in m.metric.histogram.data_points:
            newest = max(newest, (point.time_unix_nano, point.count))
    return len(spans), newest[1]


def test_a_decorated_function_follows_the_default_client(receiver: OTLPReceiver) -> None:
    first, second = _client(receiver, "first"), _client(receiver, "second")

    @track("job")
    def job() -> None:
        return None

    try:
        for client, calls in ((first, 3), (second, 2), (first, 1)):
            set_default_client(client)
            for _ in range(calls):
                job()
        for client in (first, second):
            client.flush(timeout=10)
        assert receiver.wait_for(lambda: _counts(receiver, "first") == (4, 4), timeout=10)
        assert receiver.wait_for(lambda: _counts(receiver, "second") == (2, 2), timeout=10)
    finally:
        set_default_client(None)
        first.shutdown(timeout=5)
        second.shutdown(timeout=5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_records_with_its_own_recorder(receiver: OTLPReceiver) -> None:
    """The parent's calls bind the function to the parent's recorder; a forked child
    has a meter of its own, and its durations must reach it (and so the receiver)."""
    client = _client(receiver, "forking")

    @client.track("job")
    def job() -> None:
        return None

    for _ in range(3):
        job()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            job()
            job()
            client.flush(5)
            client.shutdown(timeout=5)
            code = 0
        finally:
            os._exit(code)
    try:
        deadline = time.monotonic() + 30
        status = None
        while status is None and time.monotonic() < deadline:
            done, raw = os.waitpid(pid, os.WNOHANG)
            status = os.waitstatus_to_exitcode(raw) if done else None
            time.sleep(0.05)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert status == 0

        def child_points() -> list[int]:
            return [
                point.count
                for m in receiver.metrics()
                if m.name == DURATION_METRIC and m.resource.get("process.pid") == pid
                for point in m.metric.histogram.data_points
            ]

        assert receiver.wait_for(lambda: 2 in child_points(), timeout=10), child_points()
    finally:
        client.shutdown(timeout=5)
