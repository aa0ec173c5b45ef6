"""TelemetryFlow's recording calls next to the raw OpenTelemetry calls they replace.

Metrics, spans (``span()`` and ``start_span``/``end_span``), logs, the ``logging``
bridge, and ``import telemetryflow``. Both sides use the same OpenTelemetry SDK in one
process; their export queues are large and their batch delays long, so nothing is
exported inside a timed sample: queues are flushed, untimed, after every sample. The
numbers are what the application thread pays per call.

    python benchmarks/bench_core.py [--quick] [--json PATH]

Variants run in interleaved rounds (shuffled order); the ratio is taken per round,
then its median and min–max are reported. Compare the ratios, not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from _harness import (
    Row,
    Spread,
    format_table,
    interleaved,
    per_call_us,
    ratio_rows,
    rows_to_json,
)
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from telemetryflow import SeverityLevel, TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow._exporting.transport import SendResult

QUEUE = 100_000  # no export starts inside a timed sample
HOUR = 3600.0

RAW_IMPORTS = (
    "opentelemetry.sdk.trace, opentelemetry.sdk.metrics, opentelemetry.sdk._logs, "
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter, "
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter, "
    "opentelemetry.exporter.otlp.proto.grpc._log_exporter"
)
RAW_HTTP_IMPORTS = RAW_IMPORTS.replace(".grpc.", ".http.")


# -- back ends ------------------------------------------------------------------------
class DiscardTransport:
    """Our transport interface, answering success without touching a network."""

    def send(self, signal: str, body: bytes, timeout: float) -> SendResult:
        return SendResult(ok=True)

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None


class NullSpanExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class NullLogExporter(LogRecordExporter):
    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def make_client() -> TelemetryFlowClient:
    """A client with default settings except: queues large, batch delay an hour, no wire."""
    client = (
        TelemetryFlowBuilder()
        .with_api_key("tfk_bench", "tfs_bench")
        .with_service("bench")
        .with_endpoint("127.0.0.1:4317")
        .with_insecure()
        .with_global_providers(False)
        .with_batch_settings(timeout=timedelta(seconds=HOUR), max_size=QUEUE)
        .with_queue_size(QUEUE)
        .build()
    )
    client._transport_factory = DiscardTransport
    client.initialize()
    return client


class RawOTel:
    """The raw OpenTelemetry SDK set up like our client: batch processors, one reader."""

    def __init__(self) -> None:
        resource = Resource.create({"service.name": "bench-raw"})
        self.tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(
            BatchSpanProcessor(
                NullSpanExporter(),
                max_queue_size=QUEUE,
                max_export_batch_size=QUEUE,
                schedule_delay_millis=HOUR * 1000,
            )
        )
        self.tracer = self.tracer_provider.get_tracer("bench")
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(
            metric_readers=[self.reader], resource=resource, shutdown_on_exit=False
        )
        self.meter = self.meter_provider.get_meter("bench")
        self.logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self.logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(
                NullLogExporter(),
                max_queue_size=QUEUE,
                max_export_batch_size=QUEUE,
                schedule_delay_millis=HOUR * 1000,
            )
        )
        self.logger = self.logger_provider.get_logger("bench")

    def flush(self) -> None:
        self.tracer_provider.force_flush()
        self.logger_provider.force_flush()

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


def _sampler(body: Callable[[], object], calls: int) -> Callable[[], float]:
    return lambda: per_call_us(body, calls)


# -- metrics --------------------------------------------------------------------------
def bench_metrics(
    raw: RawOTel, client: TelemetryFlowClient, rounds: int, calls: int, budget: float
) -> list[Row]:
    counter = raw.meter.create_counter("http.requests")
    histogram = raw.meter.create_histogram("http.duration", unit="ms")
    gauge = raw.meter.create_gauge("queue.depth")

    def raw_counter() -> None:
        counter.add(1, {"http.route": "/users", "http.status_code": 200})

    def our_counter() -> None:
        client.increment_counter(
            "http.requests", 1, {"http.route": "/users", "http.status_code": 200}
        )

    def raw_histogram() -> None:
        histogram.record(12.5, {"http.route": "/users", "http.status_code": 200})

    def our_histogram() -> None:
        client.record_histogram(
            "http.duration", 12.5, "ms", {"http.route": "/users", "http.status_code": 200}
        )

    def raw_gauge() -> None:
        gauge.set(7, {"queue": "jobs", "region": "eu"})

    def our_gauge() -> None:
        client.record_gauge("queue.depth", 7, {"queue": "jobs", "region": "eu"})

    span = raw.tracer.start_span("parent")  # a sampled span: exemplars are taken

    def in_span(body: Callable[[], None]) -> Callable[[], float]:
        def sample() -> float:
            token = otel_context.attach(otel_trace.set_span_in_context(span))
            try:
                return per_call_us(body, calls)
            finally:
                otel_context.detach(token)

        return sample

    variants = {
        "increment_counter": _sampler(our_counter, calls),
        "Counter.add": _sampler(raw_counter, calls),
        "record_histogram": _sampler(our_histogram, calls),
        "Histogram.record": _sampler(raw_histogram, calls),
        "record_gauge": _sampler(our_gauge, calls),
        "Gauge.set": _sampler(raw_gauge, calls),
        "record_histogram in a span": in_span(our_histogram),
        "Histogram.record in a span": in_span(raw_histogram),
    }
    pairs = [
        ("increment_counter", "Counter.add", 1.0),
        ("record_histogram", "Histogram.record", 1.0),
        ("record_gauge", "Gauge.set", 1.0),
        ("record_histogram in a span", "Histogram.record in a span", 1.0),
    ]
    samples = interleaved(variants, rounds, max_seconds=budget, groups=[pair[:2] for pair in pairs])
    span.end()
    return ratio_rows("metrics", samples, pairs, notes={"record_histogram in a span": "exemplar"})


# -- spans ----------------------------------------------------------------------------
def bench_spans(
    raw: RawOTel, client: TelemetryFlowClient, rounds: int, calls: int, budget: float
) -> list[Row]:
    tracer = raw.tracer

    def raw_current() -> None:
        with tracer.start_as_current_span(
            "GET /users", attributes={"http.route": "/users", "user.id": 42, "cache.hit": False}
        ) as span:
            span.add_event("cache.miss", {"cache.key": "users:42"})

    def our_span() -> None:
        with client.span(
            "GET /users", attributes={"http.route": "/users", "user.id": 42, "cache.hit": False}
        ) as span_id:
            client.add_span_event(span_id, "cache.miss", {"cache.key": "users:42"})

    def raw_start_end() -> None:
        span = tracer.start_span(
            "GET /users", attributes={"http.route": "/users", "user.id": 42, "cache.hit": False}
        )
        span.add_event("cache.miss", {"cache.key": "users:42"})
        span.end()

    def our_start_end() -> None:
        span_id = client.start_span(
            "GET /users", attributes={"http.route": "/users", "user.id": 42, "cache.hit": False}
        )
        client.add_span_event(span_id, "cache.miss", {"cache.key": "users:42"})
        client.end_span(span_id)

    variants = {
        "span() + 3 attrs + 1 event": _sampler(our_span, calls),
        "start_as_current_span + 3 attrs + 1 event": _sampler(raw_current, calls),
        "start_span/end_span + event": _sampler(our_start_end, calls),
        "start_span/end + event": _sampler(raw_start_end, calls),
    }

    def between(name: str) -> None:
        raw.flush()
        client.flush(timeout=30)

    pairs = [
        ("span() + 3 attrs + 1 event", "start_as_current_span + 3 attrs + 1 event", 1.1),
        ("start_span/end_span + event", "start_span/end + event", None),
    ]
    samples = interleaved(
        variants,
        rounds,
        max_seconds=budget,
        between=between,
        groups=[pair[:2] for pair in pairs],
    )
    return ratio_rows("spans", samples, pairs)


# -- logs -----------------------------------------------------------------------------
def bench_logs(
    raw: RawOTel, client: TelemetryFlowClient, rounds: int, calls: int, budget: float
) -> list[Row]:
    otel_logger = raw.logger

    def raw_emit() -> None:
        otel_logger.emit(
            body="user signed in",
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            attributes={"user.id": 42, "tenant": "acme"},
        )

    def our_log() -> None:
        client.log_info("user signed in", {"user.id": 42, "tenant": "acme"})

    def our_log_severity() -> None:
        client.log("disk almost full", SeverityLevel.WARN, {"disk": "/var", "used": 0.93})

    def raw_emit_warn() -> None:
        otel_logger.emit(
            body="disk almost full",
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            attributes={"disk": "/var", "used": 0.93},
        )

    raw_std = logging.getLogger("bench.raw")
    raw_std.propagate = False
    raw_std.setLevel(logging.INFO)
    raw_handler = LoggingHandler(level=logging.INFO, logger_provider=raw.logger_provider)
    raw_std.addHandler(raw_handler)
    our_std = logging.getLogger("bench.ours")
    our_std.propagate = False
    our_std.setLevel(logging.INFO)
    our_handler = client.instrument_logging(logging.INFO, our_std)

    def raw_bridge() -> None:
        raw_std.info("order %s shipped", 1234, extra={"order.total": 99.5})

    def our_bridge() -> None:
        our_std.info("order %s shipped", 1234, extra={"order.total": 99.5})

    variants = {
        "log_info": _sampler(our_log, calls),
        "Logger.emit": _sampler(raw_emit, calls),
        "log(WARN)": _sampler(our_log_severity, calls),
        "Logger.emit(WARN)": _sampler(raw_emit_warn, calls),
        "logging → TelemetryFlowHandler": _sampler(our_bridge, calls),
        "logging → OTel LoggingHandler": _sampler(raw_bridge, calls),
    }

    def between(name: str) -> None:
        raw.flush()
        client.flush(timeout=30)

    pairs = [
        ("log_info", "Logger.emit", 0.5),
        ("log(WARN)", "Logger.emit(WARN)", 1.1),
        ("logging → TelemetryFlowHandler", "logging → OTel LoggingHandler", 1.0),
    ]
    try:
        samples = interleaved(
            variants,
            rounds,
            max_seconds=budget,
            between=between,
            groups=[pair[:2] for pair in pairs],
        )
    finally:
        raw_std.removeHandler(raw_handler)
        our_handler.close()
    return ratio_rows("logs", samples, pairs)


# -- import ---------------------------------------------------------------------------
_IMPORT_PROBE = """
import json, sys, time
before = len(sys.modules)
started = time.perf_counter()
import {modules}
elapsed = time.perf_counter() - started
print(json.dumps({{"ms": elapsed * 1000, "modules": len(sys.modules) - before,
                  "grpc": "grpc" in sys.modules}}))
"""


# Import, then set up everything a first export needs (nothing is sent): our client
# loads its export path on initialize(), so this is where the rest of its cost shows.
_SETUP_OURS = """
from telemetryflow import TelemetryFlowBuilder
client = (TelemetryFlowBuilder().with_api_key("tfk_bench", "tfs_bench").with_service("bench")
          .with_endpoint("http://127.0.0.1:4318").with_http().with_insecure()
          .with_global_providers(False).build())
client.initialize()
"""
_SETUP_RAW = """
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
resource = Resource.create({"service.name": "bench"})
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
meter_provider = MeterProvider(resource=resource,
                               metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
"""
_SETUP_PROBE = """
import json, os, sys, time
started = time.perf_counter()
exec(compile({code!r}, "setup", "exec"))
elapsed = time.perf_counter() - started
print(json.dumps({{"ms": elapsed * 1000, "grpc": "grpc" in sys.modules}}))
sys.stdout.flush()
os._exit(0)  # the timed part is over; no shutdown to wait for
"""


def _import_once(modules: str, pycache: str, setup: str | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: bytecode compiled once, reused
    env["PYTHONPYCACHEPREFIX"] = pycache  # ... into a scratch directory, for both sides
    probe = (
        _IMPORT_PROBE.format(modules=modules) if setup is None else _SETUP_PROBE.format(code=setup)
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bench_import(rounds: int) -> list[Row]:
    probes = {"ours": "telemetryflow", "raw": RAW_IMPORTS, "raw_http": RAW_HTTP_IMPORTS}
    last: dict[str, dict[str, Any]] = {}
    pycache = tempfile.mkdtemp(prefix="tf-bench-pycache-")

    setups = {"ours_setup": _SETUP_OURS, "raw_setup": _SETUP_RAW}

    def sampler(name: str) -> Callable[[], float]:
        def sample() -> float:
            if name in setups:
                return float(_import_once("", pycache, setups[name])["ms"])
            last[name] = _import_once(probes[name], pycache)
            return float(last[name]["ms"])

        return sample

    try:
        samples = interleaved(
            {name: sampler(name) for name in (*probes, *setups)},
            rounds,
            max_seconds=90,
            groups=[list(probes), list(setups)],
        )
    finally:
        shutil.rmtree(pycache, ignore_errors=True)
    rows = ratio_rows(
        "import",
        {
            "import telemetryflow": samples["ours"],
            "SDK + OTLP gRPC exporters": samples["raw"],
            "SDK + OTLP HTTP exporters": samples["raw_http"],
        },
        [
            ("import telemetryflow", "SDK + OTLP gRPC exporters", None),
            ("import telemetryflow", "SDK + OTLP HTTP exporters", 0.8),
        ],
        unit="ms",
        notes={"import telemetryflow": "grpc loaded" if last["ours"]["grpc"] else "no grpc"},
    )
    rows += ratio_rows(
        "import",
        {
            "import, build, initialize (HTTP)": samples["ours_setup"],
            "SDK + HTTP exporters, three providers": samples["raw_setup"],
        },
        [("import, build, initialize (HTTP)", "SDK + HTTP exporters, three providers", None)],
        unit="ms",
    )
    modules = {name: float(result["modules"]) for name, result in last.items()}
    rows.append(
        Row(
            group="import",
            name="modules loaded by import telemetryflow",
            unit="modules",
            ours=Spread(modules["ours"], modules["ours"], modules["ours"]),
            raw=Spread(modules["raw"], modules["raw"], modules["raw"]),
            ratio=Spread(*[modules["ours"] / modules["raw"]] * 3),
            raw_name="SDK + OTLP gRPC exporters",
        )
    )
    return rows


# -- main -----------------------------------------------------------------------------
def run(quick: bool) -> list[Row]:
    """Short samples, many rounds: a noisy neighbour spoils a few rounds, not the median."""
    rounds, budget = (20, 10.0) if quick else (200, 70.0)
    raw = RawOTel()
    client = make_client()
    try:
        rows = bench_metrics(raw, client, rounds, 500, budget)
        rows += bench_spans(raw, client, rounds, 200, budget)
        rows += bench_logs(raw, client, rounds, 200, budget)
    finally:
        client.shutdown(timeout=10)
        raw.shutdown()
    rows += bench_import(5 if quick else 15)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    rows = run(args.quick)
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(rows_to_json(rows), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
