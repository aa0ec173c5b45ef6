"""``recorded = exported + dropped + pending``, exactly, for spans, logs and metrics.

Against a real receiver: whatever mix of usable and unusable recording calls is
made, whatever a server claims in a partial success, mid-flight and after failures.
``pending`` is checked against what the buffers themselves hold (``queue_depth``)
and must be zero once everything is flushed or shut down.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _support import builder_for
from telemetryflow import SeverityLevel, TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow._recording.diagnostics import reset_throttle
from telemetryflow.testing import OTLPReceiver

PROTOCOLS = ["grpc", "http"]
SIGNALS = ("traces", "logs", "metrics")


class Hostile:
    """Input whose every conversion fails (str, repr, hash, eq, bool)."""

    def __str__(self) -> str:
        raise RuntimeError("str")

    __repr__ = __str__

    def __hash__(self) -> int:
        raise RuntimeError("hash")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq")

    def __bool__(self) -> bool:
        raise RuntimeError("bool")


H = Hostile()


def quiet(receiver: OTLPReceiver, protocol: str) -> TelemetryFlowBuilder:
    """Nothing leaves before a flush or shutdown asks for it."""
    return builder_for(receiver, protocol).with_batch_settings(timeout=timedelta(seconds=60))


def signals(client: TelemetryFlowClient) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = client.health()["signals"]
    return found


def assert_identity(client: TelemetryFlowClient, *, settled: bool = True) -> None:
    for signal, stats in signals(client).items():
        total = stats["exported"] + stats["dropped"] + stats["pending"]
        assert stats["recorded"] == total, (signal, stats)
        assert stats["pending"] >= 0 and stats["exported"] >= 0, (signal, stats)
        if settled:
            assert stats["pending"] == 0, (signal, stats)


# -- partial success: a server's claim is bounded by what was sent ----------------------


def record(client: TelemetryFlowClient, signal: str, count: int) -> None:
    for i in range(count):
        if signal == "traces":
            with client.span("work"):
                pass
        elif signal == "logs":
            client.log_info("line")
        else:
            client.increment_counter("jobs", attributes={"n": i})


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_rejection_claim_larger_than_the_batch_is_clamped(
    receiver: OTLPReceiver, protocol: str, signal: str
) -> None:
    receiver.partial_success(10**6, "everything is wrong", times=1)
    client = quiet(receiver, protocol).build()
    with client:
        record(client, signal, 500)
        client.flush(timeout=10)
        assert len(receiver.requests) == 1  # one request of 500 items
        stats = signals(client)[signal]
        assert stats["exported"] == 0
        assert stats["dropped_by_reason"] == {"partial_rejection": 500}
        assert_identity(client)
        sent = {"traces": "spans_sent", "logs": "logs_sent", "metrics": "metrics_sent"}[signal]
        assert client.get_status()[sent] == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_negative_rejection_claim_rejects_nothing(receiver: OTLPReceiver, protocol: str) -> None:
    receiver.partial_success(-7, "negative", times=1)
    with quiet(receiver, protocol).build() as client:
        record(client, "logs", 50)
        client.flush(timeout=10)
        stats = signals(client)["logs"]
        assert stats["exported"] == 50 and stats["dropped_by_reason"] == {}
        assert_identity(client)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_servers_message_is_logged_once_and_bounded(
    receiver: OTLPReceiver, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    reset_throttle()
    caplog.set_level(logging.WARNING, logger="telemetryflow")
    message = "bad record; " + "detail " * 2000  # about 14 KB
    receiver.partial_success(1, message)
    with quiet(receiver, protocol).build() as client:
        for _ in range(3):
            record(client, "logs", 10)
            client.flush(timeout=10)
        assert signals(client)["logs"]["dropped_by_reason"] == {"partial_rejection": 3}
    lines = [r.getMessage() for r in caplog.records if "collector rejected" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "bad record" in lines[0] and len(lines[0]) < 400


# -- every recording call counts, usable or not ----------------------------------------

Call = tuple[str, bool, Callable[[TelemetryFlowClient], Any]]


def _span_block(client: TelemetryFlowClient, name: Any) -> None:
    with client.span(name):
        pass


def _start_end(client: TelemetryFlowClient) -> None:
    client.end_span(client.start_span("manual", attributes={"odd": object()}))


CALLS: list[Call] = [
    ("logs", True, lambda c: c.log_info("ok", {"i": 1})),
    ("logs", True, lambda c: c.log(12345, SeverityLevel.ERROR)),
    ("logs", True, lambda c: c.log("odd severity", "LOUD")),  # type: ignore[arg-type]
    ("logs", True, lambda c: c.log_warn("odd attributes", {"k": object()})),
    ("logs", False, lambda c: c.log(H)),
    ("logs", False, lambda c: c.log("x", H)),
    ("logs", False, lambda c: c.log("x", attributes=H)),
    ("traces", True, lambda c: _span_block(c, "block")),
    ("traces", True, lambda c: _span_block(c, 42)),
    ("traces", True, _start_end),
    ("traces", False, lambda c: _span_block(c, H)),
    ("traces", False, lambda c: c.start_span(H)),
    ("traces", False, lambda c: c.start_span("x", H)),
    ("traces", False, lambda c: c.end_span(H)),
    ("metrics", True, lambda c: c.increment_counter("c", 2, {"k": "v"})),
    ("metrics", True, lambda c: c.record_gauge("g", 2.5)),
    ("metrics", True, lambda c: c.record_histogram("h", 3, "ms")),
    ("metrics", False, lambda c: c.increment_counter("c", -1)),
    ("metrics", False, lambda c: c.increment_counter("c", math.nan)),
    ("metrics", False, lambda c: c.record_gauge("", 1)),
    ("metrics", False, lambda c: c.record_histogram("h", "3")),  # type: ignore[arg-type]
    ("metrics", False, lambda c: c.increment_counter(H, 1)),
    ("metrics", False, lambda c: c.increment_counter("1st", 1)),
]


@pytest.fixture(scope="module", params=PROTOCOLS)
def wired(request: pytest.FixtureRequest) -> Iterator[tuple[OTLPReceiver, TelemetryFlowClient]]:
    """One client on a real receiver for every generated example (counts accumulate)."""
    with OTLPReceiver() as rx:
        client = quiet(rx, request.param).build()
        client.initialize()
        yield rx, client
        client.shutdown(timeout=10)
        assert_identity(client)


def _arrived(receiver: OTLPReceiver) -> dict[str, int]:
    return {"traces": len(receiver.spans()), "logs": len(receiver.logs())}


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(picks=st.lists(st.sampled_from(range(len(CALLS))), max_size=40))
def test_any_mix_of_calls_keeps_the_identity_exact(
    wired: tuple[OTLPReceiver, TelemetryFlowClient], picks: list[int]
) -> None:
    receiver, client = wired
    before, arrived_before = signals(client), _arrived(receiver)
    for index in picks:
        CALLS[index][2](client)
    client.flush(timeout=10)
    after, arrived_after = signals(client), _arrived(receiver)
    assert_identity(client)
    for signal in SIGNALS:
        chosen = [CALLS[i] for i in picks if CALLS[i][0] == signal]
        invalid = sum(1 for _, valid, _ in chosen if not valid)
        gained = {key: after[signal][key] - before[signal][key] for key in ("recorded", "exported")}
        dropped = after[signal]["dropped_by_reason"].get("invalid", 0) - before[signal][
            "dropped_by_reason"
        ].get("invalid", 0)
        assert dropped == invalid, signal
        assert after[signal]["dropped"] - before[signal]["dropped"] == invalid, signal
        if signal != "metrics":  # metric points are counted per export, not per call
            assert gained["recorded"] == len(chosen), signal
            assert gained["exported"] == len(chosen) - invalid, signal
            assert arrived_after[signal] - arrived_before[signal] == gained["exported"]


# -- mid-flight and after failures -------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pending_is_what_the_buffers_hold_mid_flight(receiver: OTLPReceiver, protocol: str) -> None:
    receiver.blackhole(True)
    client = builder_for(receiver, protocol).with_timeout(timedelta(seconds=30)).build()
    client.initialize()
    for i in range(40):
        client.log_info("held", {"i": i})
    for _ in range(25):
        with client.span("held"):
            pass
    for i in range(3):
        client.increment_counter("held", attributes={"n": i})
    client.log(H)
    client.start_span(H)
    client.increment_counter("held", -1)
    # One attempt per signal is now held unanswered: nothing moves until released.
    assert receiver.wait_for(lambda: receiver.attempts == 3, timeout=10)
    stats, depth = signals(client), client.health()["queue_depth"]
    assert_identity(client, settled=False)
    for signal in SIGNALS:
        assert stats[signal]["pending"] == depth[signal] > 0, (signal, stats, depth)
        assert stats[signal]["exported"] == 0
        assert stats[signal]["dropped_by_reason"] == {"invalid": 1}
    assert stats["logs"]["pending"] == 40 and stats["traces"]["pending"] == 25
    receiver.blackhole(False)
    client.shutdown(timeout=15)
    assert_identity(client)
    assert sorted(a["i"] for a in (e.attributes for e in receiver.logs())) == list(range(40))
    assert len(receiver.spans()) == 25


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_identity_holds_after_refusals_partial_successes_and_drops(
    receiver: OTLPReceiver, protocol: str
) -> None:
    client = quiet(receiver, protocol).build()
    client.initialize()
    receiver.fail_next(1, http_status=400, grpc_code=grpc.StatusCode.INVALID_ARGUMENT)
    record(client, "logs", 10)
    client.log(H)
    client.flush(timeout=10)
    receiver.partial_success(3, "three were malformed", times=1)
    record(client, "logs", 10)
    client.flush(timeout=10)
    receiver.fail_next(1000)  # the rest meets a collector that stays unavailable
    record(client, "logs", 5)
    client.shutdown(timeout=10)
    stats = signals(client)["logs"]
    assert stats["recorded"] == 26
    assert stats["exported"] == 7
    assert stats["dropped_by_reason"] == {
        "non_retryable": 10,
        "invalid": 1,
        "partial_rejection": 3,
        "retries_exhausted": 5,
    }
    assert_identity(client)


def test_recording_after_shutdown_is_not_counted(receiver: OTLPReceiver) -> None:
    client = quiet(receiver, "grpc").build()
    client.initialize()
    record(client, "logs", 3)
    client.shutdown(timeout=10)
    client.log_info("late")
    client.increment_counter("late", -1)
    assert_identity(client)
    assert signals(client)["logs"]["recorded"] == 3


def test_concurrent_valid_and_invalid_calls_keep_the_identity(receiver: OTLPReceiver) -> None:
    client = builder_for(receiver).with_queue_size(50_000).build()
    client.initialize()

    def work() -> None:
        for i in range(300):
            CALLS[i % len(CALLS)][2](client)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    client.shutdown(timeout=15)
    assert_identity(client)
    made = [CALLS[i % len(CALLS)] for i in range(300)]
    invalid = Counter(signal for signal, valid, _ in made if not valid)
    for signal in SIGNALS:
        found = signals(client)[signal]["dropped_by_reason"].get("invalid", 0)
        assert found == 8 * invalid[signal], signal
