"""``telemetryflow demo``: a collector, an instrumented Flask app and a worker, for a few
seconds, then a summary of what arrived: request rates, latency percentiles per
route, error logs and one trace as a tree. Everything runs on free loopback ports
with a temporary database and is stopped before the command returns; with ``--serve``
the collector and its web view keep running until Ctrl-C (or SIGTERM).

The demo's collector takes data without keys (it only listens on loopback), so the
web view it prints opens without signing in.
"""

from __future__ import annotations

import argparse
import logging
import random
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["register"]

_SERVICE = "demo-shop"
_WORKER = "demo-worker"
_ROUTES = (
    ("GET", "/products", 5),
    ("GET", "/products/7", 4),
    ("POST", "/checkout", 2),
    ("GET", "/products/404", 1),
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run an instrumented app and worker against a local collector, then show what arrived",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="traffic duration (default 5)")
    p.add_argument("--http", action="store_true", help="export over OTLP/HTTP, not gRPC")
    p.add_argument("--serve", action="store_true",
                   help="keep the collector and its web view running until Ctrl-C")  # fmt: skip
    p.set_defaults(func=_run)


def _sleep_ms(low: float, high: float) -> None:
    time.sleep(random.uniform(low, high) / 1000)


def _make_app(client: Any) -> Any:
    import flask

    from telemetryflow._configuration.enums import SpanKind
    from telemetryflow.middleware import FlaskTelemetryMiddleware

    app = flask.Flask("demo-shop")
    app.logger.disabled = True  # the demo reports errors from the collector, not stderr
    FlaskTelemetryMiddleware(client, app, excluded_paths=["/health"])

    @app.get("/products")
    def products() -> Any:
        _sleep_ms(2, 12)
        return {"products": list(range(10))}

    @app.get("/products/<int:pid>")
    def product(pid: int) -> Any:
        with client.span("db.select product", SpanKind.CLIENT):
            _sleep_ms(5, 30)
        if pid == 404:
            client.log_warn("product not found", {"product.id": pid})
            flask.abort(404)
        return {"id": pid}

    @app.post("/checkout")
    def checkout() -> Any:
        order = f"o-{random.randrange(10_000)}"
        with client.span("reserve stock", SpanKind.INTERNAL):
            _sleep_ms(5, 15)
        with client.span("charge card", SpanKind.CLIENT):
            _sleep_ms(20, 60)
            if random.random() < 0.2:
                client.log_error("payment declined", {"order.id": order})
                raise RuntimeError("payment declined")
        client.log_info("order placed", {"order.id": order})
        return {"order": order}

    return app


def _worker(client: Any, stop: threading.Event) -> None:
    from telemetryflow._configuration.enums import SpanKind

    while not stop.is_set():
        started = time.perf_counter()
        with client.span("process order", SpanKind.CONSUMER, {"queue": "orders"}):
            with client.span("send email", SpanKind.CLIENT):
                _sleep_ms(10, 40)
            if random.random() < 0.05:
                client.log_warn("email provider slow; retried", {"queue": "orders"})
        client.increment_counter("worker.jobs", attributes={"queue": "orders"})
        client.record_histogram("worker.job.duration", time.perf_counter() - started, unit="s")
        stop.wait(0.02)


def _drive(base_url: str, seconds: float, threads: int = 2) -> None:
    import httpx

    weighted = [(m, p) for m, p, weight in _ROUTES for _ in range(weight)]
    deadline = time.monotonic() + seconds

    def loop() -> None:
        with httpx.Client(base_url=base_url, timeout=5) as http:
            while time.monotonic() < deadline:
                method, path = random.choice(weighted)
                http.request(method, path)

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(seconds + 10)


def _client(key: Any, collector: Any, service: str, use_http: bool) -> Any:
    from datetime import timedelta

    from telemetryflow import TelemetryFlowBuilder

    builder = (
        TelemetryFlowBuilder()
        .with_api_key(key.key_id, key.key_secret)
        .with_service(service, "1.0.0")
        .with_insecure()
        .with_batch_settings(timeout=timedelta(milliseconds=500))
    )
    if use_http:
        builder = builder.with_http().with_endpoint(collector.http_endpoint.split("://")[1])
    else:
        builder = builder.with_grpc().with_endpoint(collector.grpc_endpoint)
    client = builder.build()
    client.initialize()
    return client


def _run(args: argparse.Namespace) -> int:
    try:
        import flask  # noqa: F401
        import werkzeug  # noqa: F401
    except ImportError:
        print("telemetryflow demo needs Flask: pip install 'telemetryflow[flask]'", file=sys.stderr)
        return 1
    from telemetryflow.collector import ApiKey, Collector, CollectorConfig

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log lines

    key = ApiKey(f"tfk_demo{secrets.token_hex(4)}", f"tfs_{secrets.token_hex(16)}", "demo")
    with tempfile.TemporaryDirectory(prefix="telemetryflow-demo-") as tmp:
        config = CollectorConfig(
            db_path=str(Path(tmp) / "demo.db"), grpc_port=0, http_port=0, keys=(key,),
            rate_limit=0, auth=False,
        )  # fmt: skip
        with Collector(config) as collector:
            elapsed = _simulate(collector, key, args)
            _report(collector, key, elapsed, print)
            if args.serve:
                _serve(collector)
    return 0


def _serve(collector: Any) -> None:
    """Keep the collector (and its web view) up until SIGINT or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"\nServing the web view at {collector.http_endpoint}/ui; Ctrl-C stops.",
              flush=True)  # fmt: skip
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("Stopping.", flush=True)


def _simulate(collector: Any, key: Any, args: argparse.Namespace) -> float:
    """Run the app, its traffic and the worker; return how long traffic ran."""
    from werkzeug.serving import make_server

    app_client = _client(key, collector, _SERVICE, args.http)
    worker_client = _client(key, collector, _WORKER, args.http)
    server = make_server("127.0.0.1", 0, _make_app(app_client), threaded=True)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    app_url = f"http://127.0.0.1:{server.server_port}"
    otlp = (
        f"OTLP/HTTP {collector.http_endpoint}"
        if args.http
        else f"OTLP/gRPC {collector.grpc_endpoint}"
    )
    print(
        f"TelemetryFlow demo\n  collector  {otlp}, query API {collector.http_endpoint}"
        f"\n  web view   {collector.http_endpoint}/ui"
        f"{'' if args.serve else ' (while the demo runs; --serve keeps it open)'}"
        f"\n  web app    {app_url} (Flask + FlaskTelemetryMiddleware)"
        f"\n  worker     a background thread\n"
        f"Sending traffic for {args.seconds:g} s...",
        flush=True,
    )
    stop = threading.Event()
    worker = threading.Thread(target=_worker, args=(worker_client, stop), daemon=True)
    worker.start()
    started = time.monotonic()
    try:
        _drive(app_url, args.seconds)
    finally:
        elapsed = time.monotonic() - started
        stop.set()
        worker.join(5)
        server.shutdown()
        serving.join(5)
        app_client.shutdown(timeout=5)
        worker_client.shutdown(timeout=5)
    return elapsed


def _by_route(query: Any, name: str, agg: str) -> dict[str, float]:
    answer = query.metrics.query(
        name=name, agg=agg, group_by="http.request.method,http.route", window="10m"
    )
    return {
        f"{s['tags'].get('http.request.method', '?')} "
        f"{s['tags'].get('http.route', '(unmatched)')}": s["value"] or 0.0
        for s in answer["series"]
    }


def _route_table(query: Any, elapsed: float) -> str:
    from telemetryflow.cli._query import format_table

    counts = _by_route(query, "http.server.request.count", "sum")
    errors = _by_route(query, "http.server.error.count", "sum")
    p50 = _by_route(query, "http.server.request.duration", "p50")
    p99 = _by_route(query, "http.server.request.duration", "p99")
    rows = [
        (
            route,
            int(n),
            f"{n / elapsed:.1f}",
            f"{p50.get(route, 0) * 1e3:.1f}",
            f"{p99.get(route, 0) * 1e3:.1f}",
            int(errors.get(route, 0)),
        )
        for route, n in sorted(counts.items())
    ]
    return format_table(("ROUTE", "REQUESTS", "RATE/S", "P50_MS", "P99_MS", "ERRORS"), rows)


def _report(collector: Any, key: Any, elapsed: float, out: Callable[..., None]) -> None:
    from telemetryflow.cli._query import format_table, format_trace_tree
    from telemetryflow.query import QueryClient

    with QueryClient(
        collector.http_endpoint, key_id=key.key_id, key_secret=key.key_secret
    ) as query:
        out(f"\nRequests in {elapsed:.1f} s (p50/p99 interpolated from histogram buckets)")
        out(_route_table(query, elapsed))
        jobs = query.metrics.query(name="worker.jobs", agg="sum", window="10m")["series"]
        job_p50 = query.metrics.query(name="worker.job.duration", agg="p50", window="10m")
        error_logs = query.logs.query(severity="error", limit=5)["logs"]
        traces = query.traces.query(service=_SERVICE, name="POST /checkout", limit=20)["traces"]
        received = query.status()["received"]
    done = sum(s["value"] or 0 for s in jobs)
    job_ms = (job_p50["series"][0]["value"] or 0) * 1e3 if job_p50["series"] else 0.0
    out(f"\nWorker: {int(done)} jobs, p50 {job_ms:.1f} ms")
    out("\nError logs (newest first)")
    rows = [(e["time"], e["service"], e["body"], e["trace_id"]) for e in error_logs]
    out(format_table(("TIME", "SERVICE", "BODY", "TRACE_ID"), rows))
    if traces:
        trace = max(traces, key=lambda t: (t["error"], t["span_count"]))
        out(f"\nOne trace: {trace['trace_id']} ({trace['span_count']} spans)")
        out("\n".join(format_trace_tree(trace["spans"])))
    out(
        f"\nStored: {received['spans']} spans, {received['metric_points']} metric points, "
        f"{received['logs']} logs. Run your own: telemetryflow collector (docs/collector.md)"
    )
