"""Fault injection against a real loopback receiver: retries, outages, accounting, limits.

The figures asserted here are the ones docs/reliability.md promises.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from datetime import timedelta
from email.utils import formatdate

import grpc
import pytest

from _support import KEY_ID, KEY_SECRET, builder_for
from telemetryflow import TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow.testing import OTLPReceiver


def fast(receiver: OTLPReceiver, protocol: str = "grpc", retries: int = 3) -> TelemetryFlowBuilder:
    return builder_for(receiver, protocol).with_retry(
        True, max_retries=retries, backoff=timedelta(milliseconds=50)
    )


def identity_holds(client: TelemetryFlowClient) -> None:
    """``recorded = exported + dropped`` once nothing is pending any more."""
    for signal, stats in client.health()["signals"].items():
        assert stats["pending"] == 0, (signal, stats)
        assert stats["recorded"] == stats["exported"] + stats["dropped"], signal


# -- retry per the OTLP specification -------------------------------------------------

RETRYABLE_GRPC = ["UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "DATA_LOSS"]
FINAL_GRPC = [
    "INVALID_ARGUMENT",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "RESOURCE_EXHAUSTED",
    "UNIMPLEMENTED",
]


@pytest.mark.parametrize("code", RETRYABLE_GRPC)
def test_retryable_grpc_codes_are_retried(receiver: OTLPReceiver, code: str) -> None:
    receiver.fail_next(2, grpc_code=getattr(grpc.StatusCode, code))
    with fast(receiver).build() as client:
        client.log_info("retried")
        client.flush(timeout=5)
        assert receiver.attempts == 3
        assert client.get_status()["logs_sent"] == 1
        identity_holds(client)


@pytest.mark.parametrize("code", FINAL_GRPC)
def test_final_grpc_codes_get_exactly_one_attempt(receiver: OTLPReceiver, code: str) -> None:
    receiver.fail_next(1, grpc_code=getattr(grpc.StatusCode, code))
    with fast(receiver).build() as client:
        for _ in range(4):
            client.log_info("dropped")
        client.flush(timeout=5)
        assert receiver.attempts == 1
        assert client.get_status()["dropped"]["logs"] == {"non_retryable": 4}
        identity_holds(client)


def test_resource_exhausted_with_retry_info_waits_the_server_delay(
    receiver: OTLPReceiver,
) -> None:
    receiver.fail_next(1, grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=0.4)
    with fast(receiver).build() as client:
        client.log_info("later")
        client.flush(timeout=5)
    times = receiver.attempt_times
    assert len(times) == 2
    assert times[1] - times[0] >= 0.35


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_http_statuses_are_retried(receiver: OTLPReceiver, status: int) -> None:
    receiver.fail_next(2, http_status=status)
    with fast(receiver, "http").build() as client:
        client.log_info("retried")
        client.flush(timeout=5)
        assert receiver.attempts == 3
        assert client.get_status()["logs_sent"] == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_final_http_statuses_get_exactly_one_attempt(receiver: OTLPReceiver, status: int) -> None:
    receiver.fail_next(1, http_status=status)
    with fast(receiver, "http").build() as client:
        client.log_info("dropped")
        client.flush(timeout=5)
        assert receiver.attempts == 1
        assert client.get_status()["dropped"]["logs"] == {"non_retryable": 1}


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_is_honoured(receiver: OTLPReceiver, form: str) -> None:
    value = "1" if form == "seconds" else formatdate(time.time() + 2, usegmt=True)
    receiver.fail_next(1, http_status=503, retry_after=value)
    with fast(receiver, "http").build() as client:
        client.log_info("later")
        client.flush(timeout=6)
    gap = receiver.attempt_times[1] - receiver.attempt_times[0]
    assert gap >= 0.9


def test_backoff_grows_exponentially_with_jitter(receiver: OTLPReceiver) -> None:
    receiver.fail_next(3)
    backoff = 0.1
    with builder_for(receiver).with_retry(True, 3, timedelta(seconds=backoff)).build() as c:
        c.log_info("x")
        c.flush(timeout=5)
    times = receiver.attempt_times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 3
    for number, gap in enumerate(gaps, start=1):
        base = backoff * 2 ** (number - 1)
        assert 0.5 * base - 0.02 <= gap <= 1.5 * base + 0.15, (number, gap)


def test_retry_disabled_means_one_attempt(receiver: OTLPReceiver) -> None:
    receiver.fail_next(1)
    with builder_for(receiver).with_retry(False).build() as client:
        client.log_info("once")
        client.flush(timeout=5)
        assert receiver.attempts == 1
        assert client.get_status()["dropped"]["logs"] == {"retries_exhausted": 1}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_partial_success_is_counted_not_retried(receiver: OTLPReceiver, protocol: str) -> None:
    receiver.partial_success(3, "three were malformed", times=1)
    with fast(receiver, protocol).build() as client:
        for _ in range(10):
            client.log_info("x")
        client.flush(timeout=5)
        assert receiver.attempts == 1
        status = client.get_status()
        assert status["logs_sent"] == 7
        assert status["dropped"]["logs"] == {"partial_rejection": 3}
        identity_holds(client)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_attempt_ends_by_its_timeout_when_the_receiver_never_answers(
    receiver: OTLPReceiver, protocol: str
) -> None:
    receiver.blackhole(True)
    client = fast(receiver, protocol, retries=0).with_timeout(timedelta(milliseconds=400)).build()
    client.initialize()
    client.log_info("into the void")
    started = time.monotonic()
    client.flush(timeout=2)
    assert time.monotonic() - started < 2.5
    # Every attempt was cut off at 0.4 s, so several fit in the flush window.
    assert receiver.attempts >= 3
    assert client.health()["last_error"] is not None
    assert client.health()["queue_depth"]["logs"] == 1  # kept, not dropped
    receiver.blackhole(False)
    client.shutdown(timeout=2)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_flush_whose_time_runs_out_never_raises(
    receiver: OTLPReceiver, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The logs use up the flush window (the receiver never answers), leaving the
    metric side a millisecond; on a busy machine that millisecond is gone before the
    SDK's ``MeterProvider`` looks, and it raises. Here its clock runs 5 ms per reading,
    as a thread preempted between the two readings would see it."""
    receiver.blackhole(True)
    client = fast(receiver, protocol, retries=0).with_timeout(timedelta(milliseconds=400)).build()
    client.initialize()
    step = iter(range(10**6))
    monkeypatch.setattr(
        "opentelemetry.sdk.metrics._internal.time_ns",
        lambda: time.time_ns() + next(step) * 5_000_000,
    )
    try:
        client.log_info("into the void")
        client.increment_counter("void.calls")
        client.flush(timeout=0.3)  # raised from the SDK's MeterProvider before
        assert client.health()["queue_depth"]["logs"] == 1  # kept for the next attempt
    finally:
        monkeypatch.undo()
        receiver.blackhole(False)
        client.shutdown(timeout=2)


_WORKERS = ("telemetryflow-metrics", "telemetryflow-logs", "telemetryflow-traces")


def test_shutdown_whose_time_runs_out_never_raises(
    receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same at ``shutdown`` (its clock now a second per reading, past the whole
    budget): the SDK's ``MeterProvider.shutdown`` raises for the reader it had no time
    left for; shutdown still stops every thread."""
    receiver.blackhole(True)
    client = fast(receiver, "http", retries=0).with_timeout(timedelta(milliseconds=200)).build()
    before = set(threading.enumerate())
    client.initialize()
    client.increment_counter("void.calls")
    client.log_info("into the void")
    with client.span("void"):
        pass
    # this client's periodic reader and batch workers
    workers = [t for t in threading.enumerate() if t not in before and t.name in _WORKERS]
    assert {t.name for t in workers} == set(_WORKERS)
    step = iter(range(10**6))
    monkeypatch.setattr(
        "opentelemetry.sdk.metrics._internal.time_ns",
        lambda: time.time_ns() + next(step) * 1_000_000_000,
    )
    try:
        client.shutdown(timeout=0.3)  # raised from the SDK's MeterProvider before
    finally:
        monkeypatch.undo()
        receiver.blackhole(False)
    assert not client.is_initialized()
    for thread in workers:  # every one was told to stop
        thread.join(timeout=5)
    assert not [t.name for t in workers if t.is_alive()]


# -- outages ------------------------------------------------------------------------


def test_data_recorded_during_an_outage_is_delivered_when_it_ends(
    receiver: OTLPReceiver,
) -> None:
    client = fast(receiver, retries=1).with_retry_max_backoff(timedelta(milliseconds=200)).build()
    with client:
        receiver.go_down()
        for i in range(50):
            client.log_info(f"during outage {i}")
        assert not receiver.wait_for_logs(1, timeout=0.5)
        receiver.come_back()
        assert receiver.wait_for_logs(50, timeout=10)
        assert client.get_status()["dropped"]["logs"] == {}


@pytest.mark.slow
def test_outage_of_30_seconds_loses_nothing(receiver: OTLPReceiver) -> None:
    """10,000 spans at ~200/s with the collector down for 30 s in the middle."""
    outage = float(os.environ.get("TELEMETRYFLOW_TEST_OUTAGE_SECONDS", "30"))
    total, rate = 10_000, 200.0
    client = (
        fast(receiver, retries=2)
        .with_timeout(timedelta(seconds=10))
        .with_retry_max_backoff(timedelta(seconds=1))
        .with_queue_size(20_000)
        .with_queue_bytes(32 * 1024 * 1024)
        .build()
    )
    client.initialize()
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    slowest, peak = 0.0, 0
    costs: dict[str, list[float]] = {"up-before": [], "down": [], "up-after": []}
    down_at, up_at = 2.0, 2.0 + outage
    state = "up-before"
    started = time.monotonic()
    for i in range(total):
        elapsed = time.monotonic() - started
        if state == "up-before" and elapsed >= down_at:
            receiver.go_down()
            state = "down"
        elif state == "down" and elapsed >= up_at:
            receiver.come_back()
            state = "up-after"
        call_start = time.perf_counter()
        with client.span("work", attributes={"i": i}):
            pass
        cost = time.perf_counter() - call_start
        slowest = max(slowest, cost)
        costs[state].append(cost)
        if i % 500 == 0:
            peak = max(peak, tracemalloc.get_traced_memory()[0] - baseline)
        pause = started + (i + 1) / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    if state == "down":
        receiver.come_back()
    tracemalloc.stop()
    assert receiver.wait_for(lambda: len(receiver.spans()) >= total, timeout=30)
    client.shutdown(timeout=10)
    ids = [s.span.span_id for s in receiver.spans()]
    assert len(set(ids)) == total
    assert len(ids) - len(set(ids)) <= total // 1000
    # Recording costs the same with the collector down: compare medians of one run,
    # and no call ever waited on the network (that would take the 10 s export timeout).
    assert statistics.median(costs["down"]) < 3 * statistics.median(costs["up-before"])
    assert slowest < 5.0, f"a recording call blocked for {slowest:.3f}s"
    assert peak < 32 * 1024 * 1024
    identity_holds(client)


def test_full_buffer_drops_are_counted_and_accounting_is_exact(receiver: OTLPReceiver) -> None:
    receiver.go_down()
    client = fast(receiver, retries=0).with_queue_size(50).with_batch_settings(max_size=10).build()
    client.initialize()
    for _ in range(300):
        with client.span("burst"):
            pass
        client.log_info("burst")
    client.shutdown(timeout=1)
    stats = client.health()["signals"]
    assert stats["traces"]["recorded"] == 300
    assert stats["traces"]["dropped_by_reason"]["queue_full"] >= 200
    identity_holds(client)


def test_oversized_item_is_dropped_alone_and_the_rest_is_split(receiver: OTLPReceiver) -> None:
    client = fast(receiver).with_max_request_size(20_000).build()
    with client:
        for i in range(9):
            with client.span(f"small-{i}"):
                pass
        with client.span("huge", attributes={f"blob{i}": "x" * 4000 for i in range(10)}):
            pass
        client.flush(timeout=5)
        assert sorted(receiver.span_names()) == [f"small-{i}" for i in range(9)]
        assert client.get_status()["dropped"]["traces"] == {"too_large": 1}
        assert all(r.body_size <= 20_000 for r in receiver.requests)


def test_metric_cardinality_is_capped_with_totals_preserved(receiver: OTLPReceiver) -> None:
    client = fast(receiver).build()
    with client:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100_000):
            client.increment_counter("requests", attributes={"user": f"u{i}"})
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        client.flush(timeout=10)
    points = receiver.find_metric("requests").sum.data_points
    assert len(points) == 2001
    assert sum(p.as_int for p in points) == 100_000
    overflow = [p for p in points if p.attributes[0].key == "otel.metric.overflow"]
    assert len(overflow) == 1 and overflow[0].as_int == 98_000
    assert grown < 20 * 1024 * 1024


# -- shutdown and flush are bounded -----------------------------------------------------


@pytest.mark.parametrize("fault", ["down", "blackhole", "slow"])
def test_shutdown_and_flush_are_bounded(receiver: OTLPReceiver, fault: str) -> None:
    if fault == "down":
        receiver.go_down()
    elif fault == "blackhole":
        receiver.blackhole(True)
    else:
        receiver.set_delay(5.0)
    client = builder_for(receiver).with_retry(True, 10, timedelta(seconds=2)).build()
    client.initialize()
    for _ in range(200):
        client.log_info("pending")
        client.increment_counter("pending")
    started = time.monotonic()
    client.flush(timeout=1.0)
    assert time.monotonic() - started < 2.0
    started = time.monotonic()
    client.shutdown(timeout=1.0)
    assert time.monotonic() - started < 2.0
    identity_holds(client)
    receiver.blackhole(False)
    receiver.set_delay(0.0)


def _run_script(body: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_atexit_flushes_a_forgotten_client(receiver: OTLPReceiver) -> None:
    result = _run_script(f"""
        from datetime import timedelta
        from telemetryflow import TelemetryFlowBuilder
        client = (TelemetryFlowBuilder().with_api_key("{KEY_ID}", "{KEY_SECRET}")
                  .with_service("forgetful").with_endpoint("{receiver.grpc_endpoint}")
                  .with_insecure().build())
        client.initialize()
        client.log_info("written just before exit")
    """)
    assert result.returncode == 0, result.stderr
    assert receiver.wait_for_logs(1, timeout=5)


def test_atexit_never_hangs_when_the_collector_is_down() -> None:
    started = time.monotonic()
    result = _run_script(f"""
        from telemetryflow import TelemetryFlowBuilder
        client = (TelemetryFlowBuilder().with_api_key("{KEY_ID}", "{KEY_SECRET}")
                  .with_service("stranded").with_endpoint("127.0.0.1:9").with_insecure()
                  .build())
        client.initialize()
        for i in range(1000):
            client.log_info("lost")
    """)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    assert "Traceback" not in result.stderr


# -- fork, threads, asyncio -------------------------------------------------------------


def _child(client: TelemetryFlowClient, index: int) -> None:
    for i in range(1000):
        with client.span("child-span", attributes={"child": index, "i": i}):
            pass
    client.increment_counter("child.count", 1000)
    client.shutdown(timeout=10)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_export_their_own_and_never_the_parents(receiver: OTLPReceiver) -> None:
    client = fast(receiver).build()
    client.initialize()
    client.increment_counter("parent.only", 5)
    with client.span("parent-span"):
        pass  # queued in the parent, not yet sent
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_child, args=(client, n)) for n in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    client.shutdown(timeout=10)
    names = receiver.span_names()
    assert names.count("child-span") == 4000
    assert names.count("parent-span") == 1
    instances = {s.resource["service.instance.id"] for s in receiver.spans()}
    assert len(instances) == 5
    parent_points = [m for m in receiver.metrics() if m.name == "parent.only"]
    assert {m.resource["service.instance.id"] for m in parent_points} == {
        s.resource["service.instance.id"] for s in receiver.spans() if s.name == "parent-span"
    }
    child_counts = [
        m.metric.sum.data_points[0].as_int for m in receiver.metrics() if m.name == "child.count"
    ]
    assert sorted(set(child_counts)) == [1000]


def test_32_threads_and_concurrent_flush_keep_exact_accounting(receiver: OTLPReceiver) -> None:
    client = fast(receiver).with_queue_size(50_000).with_timeout(timedelta(seconds=10)).build()
    client.initialize()
    stop = threading.Event()

    def work(me: int) -> None:
        # An index, not threading.get_ident(): a finished thread's ident is reused by
        # the next one, which under load made whole threads look lost.
        for i in range(300):
            with client.span("t", attributes={"i": i, "thread": me}):
                client.log_info("in thread", {"i": i, "thread": me})
            client.increment_counter("ops")

    def flusher() -> None:
        while not stop.is_set():
            client.flush(timeout=2)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(32)]
    side = threading.Thread(target=flusher)
    side.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a recording thread deadlocked"
    stop.set()
    side.join(timeout=10)
    assert not side.is_alive()
    client.shutdown(timeout=10)
    # At least once: a request that timed out under load may arrive twice.
    for records in (receiver.spans(), receiver.logs()):
        unique = {(r.attributes["thread"], r.attributes["i"]) for r in records}
        assert len(unique) == 32 * 300
        assert len(records) - len(unique) <= 32 * 300 // 100
    identity_holds(client)


def test_recording_from_asyncio_never_blocks_the_loop(receiver: OTLPReceiver) -> None:
    """Recording inside an event loop, with a collector that never answers: each export
    attempt is held for a minute (its timeout), so a call that waited on the network
    would find an attempt ended when the loop is done. None has, and the loop did all
    its work: no clock decides it."""
    receiver.blackhole(True)
    client = fast(receiver).with_timeout(timedelta(seconds=60)).build()
    client.initialize()

    async def main() -> int:
        done = 0
        for i in range(2000):
            with client.span("async"):
                client.log_info("async log")
                client.record_histogram("latency", i)
            done += 1
            if i % 100 == 0:
                await asyncio.sleep(0)
        return done

    assert asyncio.run(main()) == 2000
    ended = {name: (s["requests_failed"], s["exported"])
             for name, s in client._stats_snapshot().items()}  # fmt: skip
    assert ended == {"traces": (0, 0), "metrics": (0, 0), "logs": (0, 0)}
    receiver.blackhole(False)
    client.shutdown(timeout=2)
