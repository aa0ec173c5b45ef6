"""The opt-in persistent buffer: outages longer than memory, restarts, and kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

from _support import KEY_ID, KEY_SECRET, builder_for
from telemetryflow import TelemetryFlowBuilder
from telemetryflow.testing import OTLPReceiver


def durable(receiver: OTLPReceiver, directory: Path) -> TelemetryFlowBuilder:
    return (
        builder_for(receiver)
        .with_retry(True, max_retries=1, backoff=timedelta(milliseconds=50))
        .with_retry_max_backoff(timedelta(milliseconds=200))
        .with_persistent_buffer(str(directory))
    )


def spool_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.spool"))


def test_backlog_survives_a_restart_and_is_sent_first(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    receiver.go_down()
    first = durable(receiver, tmp_path).build()
    first.initialize()
    for i in range(100):
        with first.span("before-restart", attributes={"i": i}):
            pass
    for i in range(50):
        first.log_info(f"log {i}")
    first.flush(timeout=1)
    assert first.health()["queue_depth"]["persistent_buffer"] == 150
    first.shutdown(timeout=1)
    assert len(spool_files(tmp_path)) == 1, "the backlog stays on disk"

    receiver.come_back()
    second = durable(receiver, tmp_path).build()
    with second:
        with second.span("after-restart"):
            pass
        assert receiver.wait_for_spans(101, timeout=10)
        assert receiver.wait_for_logs(50, timeout=10)
    names = receiver.span_names()
    assert names.index("after-restart") == len(names) - 1
    assert sorted(s.attributes["i"] for s in receiver.spans() if "i" in s.attributes) == list(
        range(100)
    )
    status = second.get_status()
    assert status["spans_sent"] == 101 and status["logs_sent"] == 50
    assert spool_files(tmp_path) == []


def test_kill_9_mid_outage_loses_nothing_that_was_stored(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    receiver.go_down()
    script = textwrap.dedent(f"""
        import sys, time
        from datetime import timedelta
        from telemetryflow import TelemetryFlowBuilder
        client = (TelemetryFlowBuilder().with_api_key("{KEY_ID}", "{KEY_SECRET}")
                  .with_service("durable").with_endpoint("{receiver.grpc_endpoint}")
                  .with_insecure().with_global_providers(False)
                  .with_batch_settings(timeout=timedelta(milliseconds=100))
                  .with_retry(True, 1, timedelta(milliseconds=50))
                  .with_persistent_buffer(sys.argv[1]).build())
        client.initialize()
        for i in range(500):
            with client.span("stored", attributes={{"i": i}}):
                pass
        client.flush(timeout=1)
        print("stored", client.health()["queue_depth"]["persistent_buffer"], flush=True)
        time.sleep(60)
    """)
    producer = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        line = producer.stdout.readline() if producer.stdout else ""
        assert line.split() == ["stored", "500"]
        os.kill(producer.pid, signal.SIGKILL)
        producer.wait(timeout=10)
    finally:
        if producer.poll() is None:
            producer.kill()
    receiver.come_back()
    heir = durable(receiver, tmp_path).with_service("durable").build()
    with heir:
        assert receiver.wait_for_spans(500, timeout=15)
    received = sorted(s.attributes["i"] for s in receiver.spans())
    assert received == list(range(500))


def test_disk_budget_bounds_the_buffer(receiver: OTLPReceiver, tmp_path: Path) -> None:
    receiver.go_down()
    client = (
        durable(receiver, tmp_path)
        .with_persistent_buffer(str(tmp_path), max_bytes=4096)
        .with_batch_settings(max_size=10)
        .build()
    )
    client.initialize()
    for i in range(300):
        with client.span("bounded", attributes={"i": i}):
            pass
    client.flush(timeout=1)
    health = client.health()
    dropped = health["signals"]["traces"]["dropped_by_reason"].get("queue_full", 0)
    stored = health["queue_depth"]["persistent_buffer"]
    assert dropped > 0 and stored > 0
    assert dropped + stored == 300
    client.shutdown(timeout=0.5)
    assert sum(p.stat().st_size for p in tmp_path.glob("*.spool")) < 64 * 1024


def test_spool_files_are_private(receiver: OTLPReceiver, tmp_path: Path) -> None:
    directory = tmp_path / "buffer"
    client = durable(receiver, directory).build()
    with client:
        client.log_info("x")
        assert (directory.stat().st_mode & 0o077) == 0
        time.sleep(0.05)
