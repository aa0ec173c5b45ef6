"""What exporting costs the application, and what memory an outage or a cardinality
explosion takes, TelemetryFlow next to raw OpenTelemetry.

- **App CPU per exported span**, over OTLP gRPC and OTLP HTTP: the process's CPU time
  (every thread: recording, batching, encoding, sending) to record a round of spans
  and flush them to a loopback ``telemetryflow.testing.OTLPReceiver`` that runs in a
  *separate process*, so its decoding is not counted. Raw OpenTelemetry uses its
  ``BatchSpanProcessor`` and OTLP exporters; both sides keep their default batch
  size and compression (ours gzips by default, OpenTelemetry's does not), and their
  queues hold a whole round so nothing is dropped. Each span has three attributes
  and one event.
- **Encoding alone**, µs per span: the official OTLP encoder (``encode_spans`` then
  ``SerializeToString``) next to the encoder our pipeline uses.
- **Memory**, each case in a fresh process: 100,000 distinct attribute sets on one
  counter (then one collection), and recording spans while the collector is down
  (peak RSS growth, and how long ``shutdown()`` takes).

    python benchmarks/bench_export.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from _harness import Row, Spread, format_table, interleaved, ratio_rows, rows_to_json
from opentelemetry.util.types import AnyValue

HERE = Path(__file__).resolve()
ATTRIBUTES: dict[str, AnyValue] = {"http.route": "/users/{id}", "user.id": 42, "cache.hit": False}


# -- the receiver, in its own process ---------------------------------------------------
def _items_per_service(request: Any) -> list[tuple[str, int]]:
    """(service.name, spans or log records) for each resource block of a request."""
    if request.signal == "traces":
        blocks = [(b.resource, sum(len(s.spans) for s in b.scope_spans))
                  for b in request.message.resource_spans]  # fmt: skip
    elif request.signal == "logs":
        blocks = [(b.resource, sum(len(s.log_records) for s in b.scope_logs))
                  for b in request.message.resource_logs]  # fmt: skip
    else:
        return []
    found = []
    for owner, items in blocks:
        service = next(
            (kv.value.string_value for kv in owner.attributes if kv.key == "service.name"), ""
        )
        found.append((service, items))
    return found


def serve() -> int:
    """Run a receiver; answer ``count`` (spans and log records received per service,
    then forget) and
    ``quit`` on stdin, one JSON line per answer on stdout."""
    from telemetryflow.testing import OTLPReceiver

    with OTLPReceiver() as receiver:
        print(json.dumps({"grpc": receiver.grpc_endpoint, "http": receiver.http_endpoint}))
        sys.stdout.flush()
        for line in sys.stdin:
            command = line.strip()
            if command == "quit":
                break
            if command == "count":
                counts: dict[str, int] = {}
                for request in receiver.requests:
                    for service, items in _items_per_service(request):
                        counts[service] = counts.get(service, 0) + items
                receiver.clear()
                print(json.dumps(counts))
                sys.stdout.flush()
    return 0


class ReceiverProcess:
    """A receiver child process and a line protocol to it."""

    def __init__(self) -> None:
        self._child = subprocess.Popen(
            [sys.executable, str(HERE), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        endpoints = json.loads(self._readline(30.0))
        self.grpc_endpoint: str = endpoints["grpc"]
        self.http_endpoint: str = endpoints["http"]

    def _readline(self, timeout: float) -> str:
        assert self._child.stdout is not None
        ready, _, _ = select.select([self._child.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError("the receiver process did not answer")
        return self._child.stdout.readline()

    def counts(self) -> dict[str, int]:
        assert self._child.stdin is not None
        self._child.stdin.write("count\n")
        self._child.stdin.flush()
        result: dict[str, int] = json.loads(self._readline(30.0))
        return result

    def close(self) -> None:
        try:
            assert self._child.stdin is not None
            self._child.stdin.write("quit\n")
            self._child.stdin.flush()
            self._child.wait(timeout=10)
        except Exception:
            self._child.kill()
            self._child.wait(timeout=10)


# -- senders ------------------------------------------------------------------------
class Variant:
    """One way of recording spans and exporting them to the receiver."""

    name = ""
    service = ""

    def record(self, n: int) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class RawVariant(Variant):
    def __init__(self, protocol: str, receiver: ReceiverProcess, queue: int) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.exporter: Any
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            self.exporter = GrpcExporter(endpoint=receiver.grpc_endpoint, insecure=True)
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpExporter,
            )

            self.exporter = HttpExporter(endpoint=receiver.http_endpoint + "/v1/traces")
        self.name = f"raw OTel {protocol}"
        self.service = f"raw-{protocol}"
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": self.service}), shutdown_on_exit=False
        )
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter, max_queue_size=queue))
        self.tracer = self.provider.get_tracer("bench")

    def record(self, n: int) -> None:
        tracer = self.tracer
        for _ in range(n):
            with tracer.start_as_current_span("GET /users", attributes=ATTRIBUTES) as span:
                span.add_event("cache.miss", {"cache.key": "users:42"})

    def flush(self) -> None:
        self.provider.force_flush(30_000)

    def close(self) -> None:
        self.provider.shutdown()


class OurVariant(Variant):
    def __init__(
        self, protocol: str, receiver: ReceiverProcess, queue: int, compression: bool = True
    ) -> None:
        from telemetryflow import TelemetryFlowBuilder

        suffix = "" if compression else ", no gzip"
        self.name = f"TelemetryFlow {protocol}{suffix}"
        self.service = f"ours-{protocol}{'' if compression else '-plain'}"
        builder = (
            TelemetryFlowBuilder()
            .with_api_key("tfk_bench", "tfs_bench")
            .with_service(self.service)
            .with_insecure()
            .with_global_providers(False)
            .with_signals(metrics=False, logs=False, traces=True)
            .with_queue_size(queue)
            .with_compression(compression)
        )
        if protocol == "grpc":
            builder.with_endpoint(receiver.grpc_endpoint).with_grpc()
        else:
            builder.with_endpoint(receiver.http_endpoint).with_http()
        self.client = builder.build()
        self.client.initialize()

    def record(self, n: int) -> None:
        client = self.client
        for _ in range(n):
            with client.span("GET /users", attributes=ATTRIBUTES) as span_id:
                client.add_span_event(span_id, "cache.miss", {"cache.key": "users:42"})

    def flush(self) -> None:
        self.client.flush(timeout=30)

    def close(self) -> None:
        self.client.shutdown(timeout=10)


def bench_end_to_end(rounds: int, spans: int, max_seconds: float) -> list[Row]:
    receiver = ReceiverProcess()
    variants: list[Variant] = []
    delivered: dict[str, list[int]] = {}
    try:
        for protocol in ("grpc", "http"):
            variants.append(RawVariant(protocol, receiver, queue=spans * 2))
            variants.append(OurVariant(protocol, receiver, queue=spans * 2))
        variants.append(OurVariant("grpc", receiver, queue=spans * 2, compression=False))
        receiver.counts()

        def sampler(variant: Variant) -> Callable[[], float]:
            def sample() -> float:
                started = time.process_time()
                variant.record(spans)
                variant.flush()
                cpu = time.process_time() - started
                got = receiver.counts().get(variant.service, 0)
                delivered.setdefault(variant.name, []).append(got)
                return cpu / max(got, 1) * 1e6

            return sample

        samples = interleaved(
            {v.name: sampler(v) for v in variants},
            rounds,
            max_seconds=max_seconds,
            groups=[
                ["raw OTel grpc", "TelemetryFlow grpc", "TelemetryFlow grpc, no gzip"],
                ["raw OTel http", "TelemetryFlow http"],
            ],
        )
    finally:
        for variant in variants:
            variant.close()
        receiver.close()
    notes = {
        name: f"{min(counts)}/{spans} delivered"
        for name, counts in delivered.items()
        if min(counts) < spans
    }
    return ratio_rows(
        "export",
        samples,
        [
            ("TelemetryFlow grpc", "raw OTel grpc", 0.5),
            ("TelemetryFlow http", "raw OTel http", 0.5),
            ("TelemetryFlow grpc, no gzip", "raw OTel grpc", 0.5),
        ],
        unit="µs CPU/span",
        notes=notes,
    )


# -- encoding alone -----------------------------------------------------------------
def sample_spans(n: int) -> list[Any]:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench", "1.0")
    for _ in range(n):
        with tracer.start_as_current_span("GET /users", attributes=ATTRIBUTES) as span:
            span.add_event("cache.miss", {"cache.key": "users:42"})
    return list(exporter.get_finished_spans())


def sample_logs(n: int) -> list[Any]:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    records: list[Any] = []

    class Keep(LogRecordProcessor):
        def on_emit(self, log_record: Any) -> None:
            records.append(log_record)

        def shutdown(self) -> None:
            return None

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return True

    provider = LoggerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_log_record_processor(Keep())
    logger = provider.get_logger("bench", "1.0")
    for i in range(n):
        logger.emit(
            body=f"user {i} signed in",
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            attributes={"user.id": i, "tenant": "acme", "plan": "pro"},
        )
    return records


def bench_encoding(rounds: int, batch: int) -> list[Row]:
    """The direct encoder with the scrubber's rules applied to values before encoding
    (what the pipeline does by default), next to the protobuf path: the official
    encoder, then the scrubber editing the message, then serialization."""
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from telemetryflow._exporting.encode import OtlpEncoder
    from telemetryflow._scrubbing.scrubber import Scrubber

    spans, logs = sample_spans(batch), sample_logs(batch)
    scrubbing = OtlpEncoder(Scrubber(secrets=("tfs_bench",)))
    plain = OtlpEncoder(None)
    scrubber = Scrubber(secrets=("tfs_bench",))

    def timed(body: Callable[[], object]) -> Callable[[], float]:
        def sample() -> float:
            started = time.perf_counter()
            body()
            return (time.perf_counter() - started) / batch * 1e6

        return sample

    def protobuf_path(signal: str, items: Any, encode: Any, scrub: bool) -> Callable[[], float]:
        def body() -> None:
            request = encode(items)
            if scrub:
                scrubber(signal, request)
            request.SerializeToString()

        return timed(body)

    variants = {
        "spans: direct, scrub rules": timed(lambda: scrubbing.spans(spans, {})),
        "spans: official + scrub + serialize": protobuf_path("traces", spans, encode_spans, True),
        "spans: direct, no scrubbing": timed(lambda: plain.spans(spans, {})),
        "spans: official + serialize": protobuf_path("traces", spans, encode_spans, False),
        "logs: direct, scrub rules": timed(lambda: scrubbing.logs(logs, {})),
        "logs: official + scrub + serialize": protobuf_path("logs", logs, encode_logs, True),
    }
    pairs = [
        ("spans: direct, scrub rules", "spans: official + scrub + serialize", None),
        ("spans: direct, no scrubbing", "spans: official + serialize", None),
        ("logs: direct, scrub rules", "logs: official + scrub + serialize", None),
    ]
    samples = interleaved(variants, rounds, max_seconds=30, groups=[pair[:2] for pair in pairs])
    return ratio_rows("encode", samples, pairs, unit="µs/item")


class _NullTransport:
    def send(self, signal: str, body: bytes, timeout: float) -> Any:
        from telemetryflow._exporting.transport import SendResult

        return SendResult(ok=True)

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None


# -- memory, each case in its own process -----------------------------------------------
def _rss_mb() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _emit(payload: dict[str, Any]) -> None:
    print(json.dumps(payload))
    sys.stdout.flush()


def _timed_shutdown(shutdown: Callable[[], object], limit: float) -> None:
    """Report how long ``shutdown`` takes, or that it is still running at ``limit``."""
    thread = threading.Thread(target=shutdown, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        _emit({"shutdown_s": limit, "capped": True})
        os._exit(0)  # do not wait for it
    _emit({"shutdown_s": time.monotonic() - started})


def child(case: str, n: int, limit: float) -> int:
    """One memory case; prints JSON lines (the last one may never come: bounded by the parent)."""
    if case == "cardinality-raw":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        reader = InMemoryMetricReader()
        counter = MeterProvider(metric_readers=[reader]).get_meter("bench").create_counter("c")
        base = _rss_mb()
        for i in range(n):
            counter.add(1, {"user.id": i, "route": "/users"})
        started = time.perf_counter()
        reader.get_metrics_data()
        _emit({"mb": _rss_mb() - base, "collect_s": time.perf_counter() - started})
        return 0
    if case == "cardinality-ours":
        from telemetryflow import TelemetryFlowBuilder

        client = (
            TelemetryFlowBuilder()
            .with_api_key("tfk_bench", "tfs_bench")
            .with_service("bench")
            .with_endpoint("127.0.0.1:4317")
            .with_insecure()
            .with_global_providers(False)
            .with_signals(metrics=True, logs=False, traces=False)
            .with_batch_settings(timeout=timedelta(hours=1))
            .build()
        )
        client._transport_factory = _NullTransport
        client.initialize()
        base = _rss_mb()
        for i in range(n):
            client.increment_counter("c", 1, {"user.id": i, "route": "/users"})
        started = time.perf_counter()
        client.flush(timeout=60)
        _emit({"mb": _rss_mb() - base, "collect_s": time.perf_counter() - started})
        client.shutdown(timeout=5)
        return 0
    port = _closed_port()
    if case == "outage-raw":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True))
        )
        tracer = provider.get_tracer("bench")
        base, base_peak = _rss_mb(), _peak_mb()
        for _ in range(n):
            with tracer.start_as_current_span("GET /users", attributes=ATTRIBUTES) as span:
                span.add_event("cache.miss", {"cache.key": "users:42"})
        _emit({"mb": _rss_mb() - base, "peak_mb": _peak_mb() - base_peak})
        _timed_shutdown(provider.shutdown, limit)
        return 0
    if case in ("outage-ours", "outage-ours-5s"):
        from telemetryflow import TelemetryFlowBuilder

        client = (
            TelemetryFlowBuilder()
            .with_api_key("tfk_bench", "tfs_bench")
            .with_service("bench")
            .with_endpoint(f"127.0.0.1:{port}")
            .with_insecure()
            .with_global_providers(False)
            .with_signals(metrics=False, logs=False, traces=True)
            .build()
        )
        client.initialize()
        import grpc  # noqa: F401 - loaded before the baseline, as on the raw side

        base, base_peak = _rss_mb(), _peak_mb()
        for _ in range(n):
            with client.span("GET /users", attributes=ATTRIBUTES) as span_id:
                client.add_span_event(span_id, "cache.miss", {"cache.key": "users:42"})
        _emit({"mb": _rss_mb() - base, "peak_mb": _peak_mb() - base_peak})
        if case == "outage-ours":
            _timed_shutdown(client.shutdown, limit)
        else:
            _timed_shutdown(lambda: client.shutdown(timeout=5), limit)
        return 0
    raise SystemExit(f"unknown case {case!r}")


class Child:
    """One memory case in its own process; its JSON lines merged; bounded in time."""

    def __init__(self, case: str, n: int, limit: float) -> None:
        self.case = case
        self.deadline = time.monotonic() + 120 + limit  # recording is bounded by n
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "--child", case, str(n), str(limit)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.result: dict[str, Any] = {}

    def collect(self) -> dict[str, Any]:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                left = self.deadline - time.monotonic()
                ready = select.select([stdout], [], [], left)[0] if left > 0 else []
                if not ready:
                    self.result["timed_out"] = True
                    break
                line = stdout.readline()
                if not line:
                    break
                self.result.update(json.loads(line))
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=10)
        return self.result


def run_children(cases: Sequence[str], n: int, limit: float) -> dict[str, dict[str, Any]]:
    """Run cases side by side (they mostly wait); each gives up after ``limit`` s."""
    children = [Child(case, n, limit) for case in cases]
    return {child.case: child.collect() for child in children}


def bench_memory(repeats: int, sets: int, outage_spans: int, shutdown_limit: float) -> list[Row]:
    results: dict[str, list[dict[str, Any]]] = {}
    for _ in range(repeats):
        for case in ("cardinality-raw", "cardinality-ours"):  # one at a time: CPU-bound
            results.setdefault(case, []).append(run_children([case], sets, 60)[case])
        outage = run_children(
            ("outage-raw", "outage-ours", "outage-ours-5s"), outage_spans, shutdown_limit
        )
        for case, result in outage.items():
            results.setdefault(case, []).append(result)

    def values(case: str, key: str) -> list[float]:
        return [float(r.get(key, float("nan"))) for r in results[case]]

    def row(name: str, raw_name: str, unit: str, ours: str, raw: str, key: str) -> Row:
        mine, theirs = values(ours, key), values(raw, key)
        ratios = [a / b if b > 0 else float("nan") for a, b in zip(mine, theirs, strict=True)]
        capped = [c for c in (ours, raw) if any(r.get("capped") for r in results[c])]
        note = (
            f"{' and '.join(capped)} still running after {shutdown_limit:.0f} s" if capped else ""
        )
        return Row(
            "memory",
            name,
            unit,
            Spread.of(mine),
            Spread.of(theirs),
            Spread.of(ratios),
            None,
            raw_name,
            note if key == "shutdown_s" else "",
        )

    return [
        row(
            f"{sets:,} attribute sets on one counter",
            "same on a raw Counter",
            "MB RSS",
            "cardinality-ours",
            "cardinality-raw",
            "mb",
        ),
        row(
            f"collector down, {outage_spans:,} spans: RSS growth",
            "BatchSpanProcessor + OTLP gRPC",
            "MB",
            "outage-ours",
            "outage-raw",
            "mb",
        ),
        row(
            "shutdown() with the collector down",
            "TracerProvider.shutdown()",
            "s",
            "outage-ours",
            "outage-raw",
            "shutdown_s",
        ),
        row(
            "shutdown(timeout=5) with the collector down",
            "TracerProvider.shutdown()",
            "s",
            "outage-ours-5s",
            "outage-raw",
            "shutdown_s",
        ),
    ]


# -- main -----------------------------------------------------------------------------
def run(quick: bool) -> list[Row]:
    rows = bench_encoding(rounds=7 if quick else 25, batch=512)
    rows += bench_end_to_end(
        rounds=3 if quick else 15, spans=2000 if quick else 5000, max_seconds=40 if quick else 200
    )
    rows += bench_memory(
        repeats=1 if quick else 2,
        sets=100_000,
        outage_spans=20_000 if quick else 100_000,
        shutdown_limit=12.0 if quick else 40.0,
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, metavar=("CASE", "N", "LIMIT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve()
    if args.child:
        return child(args.child[0], int(args.child[1]), float(args.child[2]))
    rows = run(args.quick)
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(rows_to_json(rows), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
