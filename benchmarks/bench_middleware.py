"""What the HTTP middleware adds to a request, against OpenTelemetry's contrib instrumentation.

Flask apps are called as WSGI callables with a prepared environ, Starlette apps as ASGI
callables with a synthetic scope: no network, so the numbers are the middleware's own
cost. Three variants of each app run in one process (bare, TelemetryFlow, contrib),
interleaved round by round so drift and noise hit all of them alike.

Rounds are timed in CPU time of the request thread (``time.thread_time``), not wall
time: on a shared machine other processes' load then barely shows, and background
threads are left out by construction.

Both instrumented variants export to the same loopback OTLP receiver over gRPC. Export
happens between rounds (batch delays are long and queues large), so each round times
only what the request thread pays; the flush that follows is timed separately (CPU
time of the whole process, the in-process receiver included) and reported per request
as background export cost. Every request carries a ``traceparent``.

Run: ``python benchmarks/bench_middleware.py [--rounds 15] [--requests 1000]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from flask import Flask
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from telemetryflow import TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow.middleware import FastAPITelemetryMiddleware, FlaskTelemetryMiddleware
from telemetryflow.testing import OTLPReceiver

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
QUEUE = 200_000  # large enough that no export starts inside a timed round
VARIANTS = ("bare", "telemetryflow", "contrib")


# -- telemetry back ends ------------------------------------------------------------
class Backends:
    """Our client and contrib's providers, aimed at the same receiver."""

    def __init__(self, receiver: OTLPReceiver) -> None:
        self.client: TelemetryFlowClient = (
            TelemetryFlowBuilder()
            .with_api_key("tfk_bench", "tfs_bench")
            .with_service("bench")
            .with_endpoint(receiver.grpc_endpoint)
            .with_insecure()
            .with_global_providers(False)
            .with_batch_settings(timeout=timedelta(seconds=3600), max_size=QUEUE)
            .with_queue_size(QUEUE)
            .build()
        )
        self.client.initialize()
        resource = Resource.create({"service.name": "bench-contrib"})
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True),
                max_queue_size=QUEUE,
                max_export_batch_size=QUEUE,
                schedule_delay_millis=3_600_000,
            )
        )
        self.meter_provider = MeterProvider(
            resource=resource,
            metric_readers=[
                PeriodicExportingMetricReader(
                    OTLPMetricExporter(endpoint=receiver.grpc_endpoint, insecure=True),
                    export_interval_millis=3_600_000,
                )
            ],
        )

    def flush(self, variant: str) -> None:
        if variant == "telemetryflow":
            self.client.flush(timeout=30)
        elif variant == "contrib":
            self.tracer_provider.force_flush(30_000)
            self.meter_provider.force_flush(30_000)

    def close(self) -> None:
        self.client.shutdown(timeout=10)
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


# -- Flask ----------------------------------------------------------------------------
def flask_app() -> Flask:
    app = Flask("bench")

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> dict[str, Any]:
        return {"id": user_id}

    return app


def flask_variants(backends: Backends) -> dict[str, Callable[..., Iterable[bytes]]]:
    ours, contrib = flask_app(), flask_app()
    FlaskTelemetryMiddleware(backends.client, ours)
    FlaskInstrumentor().instrument_app(
        contrib, tracer_provider=backends.tracer_provider, meter_provider=backends.meter_provider
    )
    return {"bare": flask_app(), "telemetryflow": ours, "contrib": contrib}


ENVIRON = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/users/42",
    "QUERY_STRING": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_HOST": "127.0.0.1:8000",
    "HTTP_USER_AGENT": "bench/1.0",
    "HTTP_ACCEPT": "*/*",
    "HTTP_TRACEPARENT": TRACEPARENT,
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def _start_response(
    status: str,
    headers: list[tuple[str, str]],
    exc_info: Any = None,
) -> Callable[[bytes], None]:
    return lambda data: None


def time_wsgi(app: Callable[..., Iterable[bytes]], n: int) -> float:
    """Seconds for ``n`` requests, each with a fresh environ, body read and closed."""
    environs = [
        dict(ENVIRON, **{"wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr}) for _ in range(n)
    ]
    started = time.thread_time()
    for environ in environs:
        body = app(environ, _start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return time.thread_time() - started


# -- ASGI -----------------------------------------------------------------------------
async def _user(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["user_id"]})


def starlette_app() -> Starlette:
    return Starlette(routes=[Route("/users/{user_id:int}", _user)])


def asgi_variants(backends: Backends) -> dict[str, Any]:
    ours = starlette_app()
    ours.add_middleware(FastAPITelemetryMiddleware, client=backends.client)
    contrib = OpenTelemetryMiddleware(
        starlette_app(),
        tracer_provider=backends.tracer_provider,
        meter_provider=backends.meter_provider,
    )
    return {"bare": starlette_app(), "telemetryflow": ours, "contrib": contrib}


SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/users/42",
    "raw_path": b"/users/42",
    "query_string": b"",
    "root_path": "",
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
    "headers": [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"bench/1.0"),
        (b"accept", b"*/*"),
        (b"traceparent", TRACEPARENT.encode()),
    ],
}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


def time_asgi(loop: asyncio.AbstractEventLoop, app: Any, n: int) -> float:
    async def run() -> float:
        scopes = [dict(SCOPE) for _ in range(n)]
        started = time.thread_time()
        for scope in scopes:
            await app(scope, _receive, _send)
        return time.thread_time() - started

    return loop.run_until_complete(run())


# -- measurement ----------------------------------------------------------------------
def measure(
    name: str, run: Callable[[str], float], backends: Backends, rounds: int, n: int
) -> dict[str, Any]:
    """Per-round µs/request of each variant, rotating which variant goes first."""
    for variant in VARIANTS:  # warm up imports, caches and lazy instruments
        run(variant)
        backends.flush(variant)
    per_request: dict[str, list[float]] = {v: [] for v in VARIANTS}
    export: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
        for variant in order:
            gc.collect()  # no variant pays for collecting the previous one's garbage
            per_request[variant].append(run(variant) / n * 1e6)
            started = time.process_time()
            backends.flush(variant)
            export[variant].append((time.process_time() - started) / n * 1e6)
    added = {
        v: [x - b for x, b in zip(per_request[v], per_request["bare"], strict=True)]
        for v in ("telemetryflow", "contrib")
    }
    return {"name": name, "bare": per_request["bare"], "added": added, "export": export}


def _fmt(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} ({min(values):.0f}–{max(values):.0f})"


def report(results: list[dict[str, Any]]) -> None:
    print()
    print("Added CPU µs per request on the request thread: median (min–max) over rounds")
    print(
        f"{'app':<8} {'bare':>18} {'+ telemetryflow':>20} {'+ contrib':>20} "
        f"{'ratio':>17}   {'export µs/req: ours / contrib':>29}"
    )
    for res in results:
        ours, contrib = res["added"]["telemetryflow"], res["added"]["contrib"]
        ratios = [o / c for o, c in zip(ours, contrib, strict=True) if c > 0]
        ours_export = statistics.median(res["export"]["telemetryflow"])
        contrib_export = statistics.median(res["export"]["contrib"])
        ratio = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
        print(
            f"{res['name']:<8} {_fmt(res['bare']):>18} {_fmt(ours):>20} {_fmt(contrib):>20} "
            f"{ratio:>17}   {ours_export:14.1f} / {contrib_export:.1f}"
        )
    print()
    print("ratio = TelemetryFlow's added cost / contrib's, per round")
    print("(goals: flask <= 0.20, asgi <= 0.30).")
    print("export = process CPU of the flush after each round, per request (not in 'added').")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=1000, help="requests per round")
    args = parser.parse_args(argv)
    with OTLPReceiver() as receiver:
        backends = Backends(receiver)
        try:
            wsgi_apps = flask_variants(backends)
            flask = measure(
                "flask",
                lambda v: time_wsgi(wsgi_apps[v], args.requests),
                backends,
                args.rounds,
                args.requests,
            )
            loop = asyncio.new_event_loop()
            asgi_apps = asgi_variants(backends)
            asgi = measure(
                "asgi",
                lambda v: time_asgi(loop, asgi_apps[v], args.requests),
                backends,
                args.rounds,
                args.requests,
            )
            loop.close()
            receiver.clear()
        finally:
            backends.close()
    report([flask, asgi])
    return 0


if __name__ == "__main__":
    sys.exit(main())
