"""Benchmark metric queries over a large store: time and collector memory.

A store is filled with raw metric points (1,000,000 by default: one metric, 20 series,
spread over 24 h), a collector serves it in a subprocess, and several queries run
concurrently over HTTP, each covering every point. Reported: each query's time, the
collector's peak resident memory (``VmHWM``) before and after the queries, and the CPU
time the collector spent on them (steadier than wall time on a shared machine).

    python benchmarks/bench_metric_queries.py
    python benchmarks/bench_metric_queries.py --collector-src ../old/src   # another version

``--collector-src`` runs the collector from another source tree against the same
store (the store is written by this tree; older versions ignore the added columns).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from telemetryflow.collector.store.sqlite._schema import POINT_COLUMNS
from telemetryflow.collector.store.sqlite._store import Store, WriteBatch

KEY = "tfk_bench0001:tfs_bench-secret@bench"
AUTH = "Bearer tfk_bench0001:tfs_bench-secret"
ROUTES = ("/items", "/cart", "/pay", "/search", "/login")
STATUSES = ("200", "201", "404", "500")
QUERIES = (
    {"name": "http.duration", "agg": "p99", "window": "24h", "step": "1h"},
    {"name": "http.duration", "agg": "p50", "window": "24h"},
    {"name": "http.duration", "agg": "avg", "window": "24h", "step": "15m"},
    {"name": "http.duration", "agg": "max", "window": "24h", "group_by": "route"},
)


def fill_store(db: str, total: int) -> None:
    """Write ``total`` gauge points of one metric over the last 24 h, 20 series."""
    store = Store(db)
    now = time.time_ns()
    defaults: dict[str, Any] = dict.fromkeys(POINT_COLUMNS)
    defaults.update(project="bench", service="api", name="http.duration", kind="gauge",
                    monotonic=0, temporality=0, unit="s", start_ns=0, received_ns=now,
                    resource="{}")  # fmt: skip
    rng = random.Random(7)
    chunk: list[tuple[Any, ...]] = []
    day = 24 * 3600 * 10**9
    for i in range(total):  # in time order, as points arrive
        tags = json.dumps({"route": ROUTES[i % 5], "status": STATUSES[i % 4]}, sort_keys=True)
        row = {**defaults, "tags": tags, "value": rng.lognormvariate(-3, 1),
               "time_ns": now - day + day * i // total}  # fmt: skip
        chunk.append(tuple(row[c] for c in POINT_COLUMNS))
        if len(chunk) >= 50_000:
            store.submit(WriteBatch(points=chunk), timeout=600)
            chunk = []
    if chunk:
        store.submit(WriteBatch(points=chunk), timeout=600)
    store.close()


def start_collector(db: str, src: str | None) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "telemetryflow.collector", "--db", db, "--key", KEY,
         "--no-grpc", "--http-port", "0", "--rate-limit", "0", "--max-db-size", "0",
         "--retention", "0", "--log-level", "WARNING"],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if m := re.search(r"OTLP/HTTP\s+(http://\S+)", line):
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("collector did not start")


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a process (Linux ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process used so far (Linux), steadier than wall time
    on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_concurrently(http_url: str) -> list[tuple[str, float, int]]:
    """Run every query at once, one thread each; (label, seconds, status) per query."""
    results: list[tuple[str, float, int]] = []
    lock = threading.Lock()

    def one(params: dict[str, str]) -> None:
        with httpx.Client(base_url=http_url, timeout=600, headers={"Authorization": AUTH}) as c:
            t0 = time.perf_counter()
            status = c.get("/v1/metrics/query", params=params).status_code
            elapsed = time.perf_counter() - t0
        label = " ".join(f"{k}={v}" for k, v in params.items() if k != "name")
        with lock:
            results.append((label, elapsed, status))

    threads = [threading.Thread(target=one, args=(q,)) for q in QUERIES]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of concurrent queries")
    parser.add_argument("--collector-src", help="source tree to run the collector from")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "metrics.db")
        started = time.perf_counter()
        fill_store(db, args.points)
        size = Path(db).stat().st_size / 2**20
        print(f"store: {args.points:,} points in {time.perf_counter() - started:.0f} s, "
              f"{size:.0f} MiB")  # fmt: skip
        proc, http_url = start_collector(db, args.collector_src)
        try:
            before = peak_rss_mib(proc.pid)
            cpu_before = cpu_seconds(proc.pid)
            times: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for label, seconds, status in run_concurrently(http_url):
                    times.setdefault(f"{label} -> {status}", []).append(seconds)
            after = peak_rss_mib(proc.pid)
            cpu = cpu_seconds(proc.pid) - cpu_before
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"{len(QUERIES)} concurrent queries x {args.rounds} rounds, each over every point:")
    for label, values in times.items():
        print(f"  {label:<48} median {statistics.median(values):6.2f} s, "
              f"max {max(values):6.2f} s")  # fmt: skip
    print(f"collector peak RSS: {before:.0f} MiB before the queries, {after:.0f} MiB after")
    runs = len(QUERIES) * args.rounds
    print(f"collector CPU time: {cpu:.1f} s for {runs} queries ({cpu / runs:.1f} s each)")


if __name__ == "__main__":
    main()
