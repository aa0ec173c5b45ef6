"""Benchmark the local collector: ingest throughput and query latency.

Ingest: a collector runs in a subprocess (as users run it); this process sends
pre-encoded OTLP requests from several threads over gRPC and over HTTP, so the
figures are the collector's, not the client's encoding cost. Every request is
acknowledged only after its SQLite commit.

Query: a store is filled with synthetic spans (100,000 by default, one million with
``--full``), then a collector serves it and each query kind is timed over HTTP.

    python benchmarks/bench_collector.py            # short run (~1 min)
    python benchmarks/bench_collector.py --full     # query store of 1,000,000 spans

Two versions of the collector, interleaved in one run (small requests over HTTP only;
each ``--src`` is a source directory put first on the collector's ``PYTHONPATH``):

    python benchmarks/bench_collector.py --skip-queries --transports HTTP --batch 10 \
        --requests 2000 --rounds 3 --src old/src --src new/src
"""

from __future__ import annotations

import argparse
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

import grpc
import httpx
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from telemetryflow.collector.store.sqlite._store import Store, WriteBatch

KEY = "tfk_bench0001:tfs_bench-secret@bench"
AUTH = "Bearer tfk_bench0001:tfs_bench-secret"
SERVICES = ("checkout", "search", "payments", "inventory")
NAMES = ("GET /items", "POST /cart", "SELECT items", "charge", "render")


def _resource(service: str) -> Resource:
    return Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))])


def span_request(n: int) -> bytes:
    now = time.time_ns()
    spans = []
    for i in range(n):
        spans.append(
            Span(
                trace_id=random.randbytes(16),
                span_id=random.randbytes(8),
                name=NAMES[i % 5],
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=now - 10**6,
                end_time_unix_nano=now,
                attributes=[KeyValue(key="http.route", value=AnyValue(string_value="/items"))],
            )
        )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(resource=_resource("bench"), scope_spans=[ScopeSpans(spans=spans)])
        ]
    )
    return request.SerializeToString()


def point_request(n: int) -> bytes:
    now = time.time_ns()
    points = [
        NumberDataPoint(
            time_unix_nano=now,
            as_double=float(i),
            attributes=[KeyValue(key="route", value=AnyValue(string_value=f"/r{i % 10}"))],
        )
        for i in range(n)
    ]
    request = ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=_resource("bench"),
                scope_metrics=[
                    ScopeMetrics(
                        metrics=[Metric(name="bench.gauge", gauge=Gauge(data_points=points))]
                    )
                ],
            )
        ]
    )
    return request.SerializeToString()


def start_collector(db: str, src: str = "") -> tuple[subprocess.Popen[str], str, str]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "telemetryflow.collector",
            "--db",
            db,
            "--key",
            KEY,
            "--grpc-port",
            "0",
            "--http-port",
            "0",
            "--rate-limit",
            "0",
            "--max-db-size",
            "0",
            "--log-level",
            "WARNING",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr is not None
    grpc_addr = http_url = ""
    deadline = time.monotonic() + 30
    while not http_url and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if m := re.search(r"OTLP/gRPC\s+(\S+)", line):
            grpc_addr = m.group(1)
        if m := re.search(r"OTLP/HTTP\s+(http://\S+)", line):
            http_url = m.group(1)
    if not http_url:
        proc.kill()
        raise SystemExit("collector did not start")
    return proc, grpc_addr, http_url


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux; 0.0 elsewhere).

    On a busy machine throughput swings with the neighbours; the collector's own CPU
    per request does not, so it is the figure to compare between versions.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(send: object, body: bytes, requests: int, threads: int) -> float:
    """Send ``requests`` copies of ``body`` from ``threads`` threads; return seconds."""
    per_thread = requests // threads
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(per_thread):
                send(body)  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


CPU = dict[tuple[str, str], list[float]]
"""(kind, transport) -> collector CPU per request (µs), one entry per round."""


def bench_ingest(
    args: argparse.Namespace, tmp: str, src: str = "", label: str = "", cpu_of: CPU | None = None
) -> None:
    db = os.path.join(tmp, f"ingest-{time.monotonic_ns()}.db")
    proc, grpc_addr, http_url = start_collector(db, src)
    try:
        bodies = {"spans": span_request(args.batch), "points": point_request(args.batch)}
        paths = {"spans": "traces", "points": "metrics"}
        services = {"spans": "trace.v1.TraceService", "points": "metrics.v1.MetricsService"}
        channel = grpc.insecure_channel(grpc_addr)
        http = httpx.Client(
            base_url=http_url,
            timeout=30,
            headers={"Authorization": AUTH, "Content-Type": "application/x-protobuf"},
        )
        for kind, body in bodies.items():
            method = channel.unary_unary(f"/opentelemetry.proto.collector.{services[kind]}/Export")
            md = (("authorization", AUTH),)
            senders = {
                "gRPC": lambda b, m=method, md=md: m(b, metadata=md, timeout=30),
                "HTTP": lambda b, k=kind: http.post(
                    f"/v1/{paths[k]}", content=b
                ).raise_for_status(),
            }
            for transport, send in senders.items():
                if transport not in args.transports:
                    continue
                drive(send, body, args.threads, args.threads)  # warm up
                cpu_before = cpu_seconds(proc.pid)
                seconds = drive(send, body, args.requests, args.threads)
                sent = args.requests // args.threads * args.threads
                cpu = (cpu_seconds(proc.pid) - cpu_before) / sent * 1e6
                rate = sent * args.batch / seconds
                if cpu_of is not None:
                    cpu_of.setdefault((kind, transport), []).append(cpu)
                print(
                    f"{label}ingest {kind:<6} over {transport:<4}: {rate:>10,.0f} {kind}/s "
                    f"({args.batch}/request, {args.threads} threads); "
                    f"collector CPU {cpu:,.0f} us/request"
                )
        channel.close()
        http.close()
    finally:
        proc.terminate()
        proc.wait(30)


def print_cpu_summary(sources: list[str], cpu_of: list[CPU]) -> None:
    """Median (min–max) collector CPU per request over the rounds, for each version."""
    print("\ncollector CPU per request, median (min-max) over rounds:")
    for i, (src, results) in enumerate(zip(sources, cpu_of, strict=True)):
        print(f"  version {i + 1} {src or '(this tree)'}")
        for (kind, transport), values in results.items():
            low, high = min(values), max(values)
            print(f"    {transport:<4} {kind:<6}: {statistics.median(values):8,.0f} us "
                  f"({low:,.0f}-{high:,.0f}, {len(values)} rounds)")  # fmt: skip


def fill_store(db: str, total: int) -> list[str]:
    """Write ``total`` spans (traces of 5 spans over 24 h) straight into a store."""
    store = Store(db)
    now = time.time_ns()
    trace_ids: list[str] = []
    chunk: list[tuple[object, ...]] = []
    for i in range(total // 5):
        trace_id = random.randbytes(16).hex()
        trace_ids.append(trace_id)
        start = now - random.randrange(24 * 3600 * 10**9)
        service = SERVICES[i % 4]
        root = random.randbytes(8).hex()
        for j in range(5):
            duration = random.randrange(10**5, 5 * 10**8)
            chunk.append(
                (
                    "bench",
                    service,
                    trace_id,
                    root if j == 0 else random.randbytes(8).hex(),
                    "" if j == 0 else root,
                    NAMES[j],
                    2,
                    start + j,
                    start + j + duration,
                    duration,
                    2 if random.random() < 0.01 else 1,
                    "",
                    "{}",
                    "[]",
                    "{}",
                    "",
                    now,
                    "",
                    "[]",
                    None,
                    None,
                )
            )
        if len(chunk) >= 50_000:
            store.submit(WriteBatch(spans=chunk), timeout=600)
            chunk = []
    if chunk:
        store.submit(WriteBatch(spans=chunk), timeout=600)
    store.close()
    return trace_ids


def bench_queries(args: argparse.Namespace, tmp: str) -> None:
    db = os.path.join(tmp, "query.db")
    started = time.perf_counter()
    trace_ids = fill_store(db, args.spans)
    size = Path(db).stat().st_size / 2**20
    print(
        f"\nstore: {args.spans:,} spans written in {time.perf_counter() - started:.1f} s, "
        f"{size:.0f} MiB"
    )
    proc, _, http_url = start_collector(db)
    queries = {
        "trace by id": lambda: {"trace_id": random.choice(trace_ids)},
        "latest 20 traces": lambda: {"limit": 20, "detail": False},
        "service, last 1h": lambda: {"service": "payments", "time_window": "1h", "limit": 20},
        "span >= 400ms, 24h": lambda: {"min_duration": "400ms", "limit": 20},
        "errors, 24h": lambda: {"error": True, "limit": 20},
    }
    try:
        with httpx.Client(base_url=http_url, timeout=120, headers={"Authorization": AUTH}) as http:
            for label, make in queries.items():
                times = []
                for _ in range(args.query_rounds):
                    t0 = time.perf_counter()
                    http.post("/v1/traces/query", json=make()).raise_for_status()
                    times.append((time.perf_counter() - t0) * 1e3)
                p95 = sorted(times)[int(len(times) * 0.95) - 1]
                print(
                    f"query {label:<20}: median {statistics.median(times):7.1f} ms, "
                    f"p95 {p95:7.1f} ms ({args.query_rounds} runs)"
                )
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="query store of 1,000,000 spans")
    parser.add_argument("--spans", type=int, default=100_000, help="spans in the query store")
    parser.add_argument("--requests", type=int, default=200, help="ingest requests per run")
    parser.add_argument("--batch", type=int, default=500, help="spans or points per request")
    parser.add_argument("--threads", type=int, default=4, help="concurrent senders")
    parser.add_argument("--query-rounds", type=int, default=20, help="runs per query kind")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-queries", action="store_true")
    parser.add_argument(
        "--transports", nargs="+", default=["gRPC", "HTTP"], choices=["gRPC", "HTTP"]
    )
    parser.add_argument(
        "--src", action="append", default=[],
        help="collector source directory to compare (repeat; runs are interleaved)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="ingest runs per version")
    args = parser.parse_args()
    if args.full:
        args.spans = 1_000_000
    sources = args.src or [""]
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_ingest:
            cpu_of: list[CPU] = [{} for _ in sources]
            for round_ in range(args.rounds):
                for i, src in enumerate(sources):
                    label = f"[round {round_ + 1}, version {i + 1}] " if len(sources) > 1 else ""
                    bench_ingest(args, tmp, src, label, cpu_of[i])
            if args.rounds > 1 or len(sources) > 1:
                print_cpu_summary(sources, cpu_of)
        if not args.skip_queries:
            bench_queries(args, tmp)


if __name__ == "__main__":
    main()
