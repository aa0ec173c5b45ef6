"""Shutdown keeps the retry promise, within its deadline, against a real receiver.

``shutdown(timeout)`` follows the configured retry policy (retries, backoff, the
server's ``Retry-After``/``RetryInfo``) for what is still pending, and drops only
what the policy (``retries_exhausted``) or the deadline (``shutdown_deadline``)
cannot deliver. Every failure mode still returns within the timeout; the bounds
below are loose on purpose (a bound, not a speed figure).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from _support import builder_for
from telemetryflow import TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow.testing import OTLPReceiver

PROTOCOLS = ["grpc", "http"]
SIGNALS = ["traces", "logs", "metrics"]
MARGIN = 5.0
"""Slack allowed past a shutdown timeout: thread scheduling on a loaded machine."""


def quiet(receiver: OTLPReceiver, protocol: str, retries: int = 3) -> TelemetryFlowBuilder:
    """Nothing is exported before shutdown: every request below is made by it."""
    return (
        builder_for(receiver, protocol)
        .with_batch_settings(timeout=timedelta(seconds=60))
        .with_retry(True, max_retries=retries, backoff=timedelta(milliseconds=20))
    )


def record(client: TelemetryFlowClient, signal: str, count: int) -> None:
    for i in range(count):
        if signal == "traces":
            with client.span(f"work-{i}"):
                pass
        elif signal == "logs":
            client.log_info(f"line {i}")
        else:
            client.increment_counter("jobs", attributes={"n": i})


def arrived(receiver: OTLPReceiver, signal: str) -> int:
    if signal == "traces":
        return len(receiver.spans())
    if signal == "logs":
        return len(receiver.logs())
    found = receiver.find_metric("jobs")
    return 0 if found is None else len(found.sum.data_points)


def accounting(client: TelemetryFlowClient, signal: str) -> dict[str, Any]:
    stats: dict[str, Any] = client.health()["signals"][signal]
    assert stats["recorded"] == stats["exported"] + stats["dropped"] + stats["pending"], stats
    return stats


def timed_shutdown(client: TelemetryFlowClient, timeout: float) -> float:
    started = time.monotonic()
    client.shutdown(timeout=timeout)
    return time.monotonic() - started


@pytest.mark.parametrize("signal", SIGNALS)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unavailable_twice_then_ok_delivers_everything_at_shutdown(
    receiver: OTLPReceiver, protocol: str, signal: str
) -> None:
    receiver.fail_next(2)
    with quiet(receiver, protocol).build() as client:
        record(client, signal, 20)
    assert arrived(receiver, signal) == 20
    assert receiver.attempts == 3
    stats = accounting(client, signal)
    assert stats["exported"] == 20 and stats["dropped_by_reason"] == {}
    assert stats["pending"] == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_retry_delay_within_the_deadline_is_honoured_at_shutdown(
    receiver: OTLPReceiver, protocol: str
) -> None:
    receiver.fail_next(2, retry_after="0.3", retry_delay=0.3)
    client = quiet(receiver, protocol).build()
    client.initialize()
    record(client, "logs", 5)
    client.shutdown(timeout=10)
    assert arrived(receiver, "logs") == 5
    times = receiver.attempt_times
    assert len(times) == 3
    assert times[1] - times[0] >= 0.29 and times[2] - times[1] >= 0.29
    assert accounting(client, "logs")["dropped_by_reason"] == {}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_permanently_failing_endpoint_exhausts_the_policy_and_counts_it(
    receiver: OTLPReceiver, protocol: str
) -> None:
    receiver.fail_next(1000)
    client = quiet(receiver, protocol, retries=2).build()
    client.initialize()
    for signal in SIGNALS:
        record(client, signal, 10)
    elapsed = timed_shutdown(client, 10.0)
    assert elapsed < 10.0 + MARGIN
    assert receiver.attempts == 3 * 3  # three signals, 1 + 2 retries each
    assert receiver.requests == []
    for signal in SIGNALS:
        stats = accounting(client, signal)
        assert stats["dropped_by_reason"] == {"retries_exhausted": 10}, signal
        assert stats["exported"] == 0 and stats["pending"] == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_deadline_cuts_a_long_policy_and_counts_it(
    receiver: OTLPReceiver, protocol: str
) -> None:
    receiver.fail_next(1000)
    client = (
        quiet(receiver, protocol)
        .with_retry(True, max_retries=50, backoff=timedelta(milliseconds=300))
        .build()
    )
    client.initialize()
    record(client, "logs", 10)
    elapsed = timed_shutdown(client, 1.5)
    assert elapsed < 1.5 + MARGIN
    assert receiver.attempts >= 2  # the policy was followed, not abandoned
    stats = accounting(client, "logs")
    assert stats["dropped_by_reason"] == {"shutdown_deadline": 10}
    assert stats["pending"] == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_delay_past_the_deadline_drops_without_sleeping(
    receiver: OTLPReceiver, protocol: str
) -> None:
    receiver.fail_next(1000, retry_after="60", retry_delay=60.0)
    client = quiet(receiver, protocol).build()
    client.initialize()
    record(client, "logs", 10)
    elapsed = timed_shutdown(client, 20.0)
    # Sleeping toward the server's 60 s would have lasted until the 20 s deadline.
    assert elapsed < 10.0
    assert receiver.attempts == 1
    assert accounting(client, "logs")["dropped_by_reason"] == {"shutdown_deadline": 10}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shutdown_wakes_a_batch_sleeping_in_backoff_and_delivers_it(
    receiver: OTLPReceiver, protocol: str
) -> None:
    """A batch failed before shutdown and sleeps a long backoff; shutdown retries now."""
    receiver.fail_next(1)
    client = (
        builder_for(receiver, protocol)
        .with_retry(True, max_retries=3, backoff=timedelta(seconds=30))
        .with_retry_max_backoff(timedelta(seconds=60))
        .build()
    )
    client.initialize()
    record(client, "logs", 5)
    logs = lambda: client.health()["signals"]["logs"]  # noqa: E731
    assert receiver.wait_for(lambda: logs()["requests_failed"] == 1, timeout=10)
    time.sleep(0.2)  # let the export thread go from counting the failure to its backoff
    elapsed = timed_shutdown(client, 10.0)
    assert elapsed < 10.0 + MARGIN
    assert arrived(receiver, "logs") == 5
    stats = accounting(client, "logs")
    assert stats["exported"] == 5 and stats["dropped_by_reason"] == {}


@pytest.mark.parametrize("fault", ["down", "blackhole", "slow"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_shutdown_with_a_huge_backlog_is_bounded_and_every_item_counted(
    receiver: OTLPReceiver, protocol: str, fault: str
) -> None:
    client = (
        quiet(receiver, protocol, retries=5)
        .with_retry(True, max_retries=5, backoff=timedelta(milliseconds=200))
        .with_queue_size(20_000)
        .with_batch_settings(max_size=500)
        .with_timeout(timedelta(seconds=5))
        .build()
    )
    client.initialize()
    if fault == "down":
        receiver.go_down()
    elif fault == "blackhole":
        receiver.blackhole(True)
    else:
        receiver.set_delay(0.4)
    record(client, "traces", 20_000)
    record(client, "logs", 2_000)
    elapsed = timed_shutdown(client, 2.0)
    assert elapsed < 2.0 + MARGIN
    for signal, count in (("traces", 20_000), ("logs", 2_000)):
        stats = accounting(client, signal)
        assert stats["recorded"] == count and stats["pending"] == 0
        assert set(stats["dropped_by_reason"]) <= {"shutdown_deadline"}, stats
    # 40 requests of spans cannot all be answered within 2 s by any of these receivers.
    assert accounting(client, "traces")["dropped_by_reason"]["shutdown_deadline"] > 0
    receiver.reset_faults()
