"""Durability and retention: restarts, kill -9, age and size limits."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from collector_helpers import KEY_A, headers_for, log_request, make_log, make_span, trace_request

from telemetryflow.collector import Collector

PB = {"Content-Type": "application/x-protobuf"}


def post_log(collector: Collector, text: str) -> int:
    body = log_request("svc", [make_log(text)]).SerializeToString()
    return httpx.post(
        f"{collector.http_endpoint}/v1/logs", content=body, headers={**PB, **headers_for(KEY_A)}
    ).status_code


def test_restart_keeps_data(make_collector: Callable[..., Collector], tmp_path: Path) -> None:
    db = str(tmp_path / "keep.db")
    first = make_collector(db_path=db)
    assert post_log(first, "before restart") == 200
    first.stop()
    second = make_collector(db_path=db)
    answer = httpx.get(f"{second.http_endpoint}/v1/logs/query", headers=headers_for(KEY_A))
    assert [e["body"] for e in answer.json()["logs"]] == ["before restart"]


def _start_subprocess(db: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "telemetryflow.collector",
            "--db",
            str(db),
            "--no-auth",
            "--grpc-port",
            "0",
            "--http-port",
            "0",
            "--rate-limit",
            "0",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        match = re.search(r"OTLP/HTTP\s+(http://\S+)", line)
        if match:
            return proc, match.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError("the collector subprocess did not start")


def test_kill_9_keeps_every_acknowledged_write(tmp_path: Path, subprocess_env: dict) -> None:
    db = tmp_path / "crash.db"
    proc, url = _start_subprocess(db, subprocess_env)
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer(worker: int) -> None:
        with httpx.Client(base_url=url, timeout=5) as client:
            for i in range(10_000):
                if stop.is_set():
                    return
                text = f"w{worker}-{i}"
                body = log_request("svc", [make_log(text)]).SerializeToString()
                try:
                    if client.post("/v1/logs", content=body, headers=PB).status_code == 200:
                        acknowledged.append(text)
                except httpx.HTTPError:
                    return  # the collector died mid-request: not acknowledged

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(acknowledged) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # while writes are still in flight
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    assert len(acknowledged) >= 200
    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT body FROM logs")}
    assert set(acknowledged) <= stored


YEAR_2200_NS = 7_258_118_400 * 10**9


def test_retention_by_age_goes_by_receive_time(make_collector: Callable[..., Collector]) -> None:
    """Client clocks are not trusted: what was just received stays, whatever it claims."""
    collector = make_collector(retention_seconds=3600.0)
    old = time.time_ns() - 2 * 3600 * 10**9
    body = log_request(
        "svc",
        [make_log("stamped-old", time_ns=old), make_log("stamped-2200", time_ns=YEAR_2200_NS)],
    ).SerializeToString()
    spans = trace_request(
        "svc",
        [
            make_span("ab" * 16, "cd" * 8, "old-span", start_ns=old),
            make_span("ef" * 16, "cd" * 8, "future-span", start_ns=YEAR_2200_NS),
        ],
    )
    headers = {**PB, **headers_for(KEY_A)}
    assert httpx.post(
        f"{collector.http_endpoint}/v1/logs", content=body, headers=headers
    ).is_success
    assert httpx.post(
        f"{collector.http_endpoint}/v1/traces", content=spans.SerializeToString(), headers=headers
    ).is_success
    assert collector.store.apply_retention() == 0
    with collector.store.reader() as conn:
        assert conn.execute("SELECT count(*) FROM logs").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM spans").fetchone()[0] == 2
    two_hours_later = time.time_ns() + 2 * 3600 * 10**9
    assert collector.store.apply_retention(now_ns=two_hours_later) == 4  # the 2200 ones too
    with collector.store.reader() as conn:
        assert conn.execute("SELECT count(*) FROM logs").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM spans").fetchone()[0] == 0


def test_retention_by_size_drops_oldest_first(make_collector: Callable[..., Collector]) -> None:
    limit = 256 * 1024
    collector = make_collector(max_db_bytes=limit, retention_seconds=0.0, retention_interval=3600.0)
    base = time.time_ns() - 3600 * 10**9
    headers = {**PB, **headers_for(KEY_A)}
    for batch in range(20):
        records = [
            make_log(f"b{batch:02d}-{i:03d} " + "x" * 200, time_ns=base + batch * 10**9 + i)
            for i in range(200)
        ]
        body = log_request("svc", records).SerializeToString()
        assert httpx.post(
            f"{collector.http_endpoint}/v1/logs", content=body, headers=headers
        ).is_success
    assert collector.store.live_bytes() > limit
    assert collector.store.apply_retention() > 0
    assert collector.store.live_bytes() <= limit
    with collector.store.reader() as conn:
        bodies = sorted(r[0] for r in conn.execute("SELECT body FROM logs"))
    assert bodies, "retention must not delete everything"
    assert bodies[-1].startswith("b19-199")  # the newest survive
    assert not any(b.startswith("b00-") for b in bodies)  # the oldest go first
    db_file = Path(collector.store.path).stat().st_size
    assert db_file <= 2 * limit  # free pages are given back to the file system


def test_status_counts_what_arrived_whatever_its_timestamps(
    make_collector: Callable[..., Collector],
) -> None:
    collector = make_collector()
    headers = {**PB, **headers_for(KEY_A)}
    two_days_ago = time.time_ns() - 2 * 86400 * 10**9
    spans = trace_request("svc", [make_span("ab" * 16, "cd" * 8, "late", start_ns=two_days_ago)])
    assert httpx.post(
        f"{collector.http_endpoint}/v1/traces", content=spans.SerializeToString(), headers=headers
    ).is_success
    status = httpx.get(f"{collector.http_endpoint}/v1/status", headers=headers_for(KEY_A)).json()
    assert status["received"]["spans"] == 1
