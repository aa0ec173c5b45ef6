"""Logs, the ``logging`` bridge and ``track`` end to end: app CPU per item exported.

Measured like the export benchmark (``bench_export.py``): the process's CPU time over
every thread (recording, batching, encoding, sending) to record a round of items and
flush them to a loopback ``telemetryflow.testing.OTLPReceiver`` in a *separate
process* over OTLP/gRPC, divided by the items the receiver got. Raw OpenTelemetry
uses its batch processors and OTLP gRPC exporters; both sides keep their defaults
(ours gzips) with queues that hold a whole round.

- **logging → OTLP**: ``logger.info("order %s shipped", n, extra={...})`` on a stdlib
  logger, through ``client.instrument_logging`` / OpenTelemetry's ``LoggingHandler``.
- **log_info → OTLP**: ``client.log_info`` / ``Logger.emit`` with two attributes.
- **track → OTLP**: a call of an empty function decorated with ``@client.track`` (a
  span and a duration histogram point) / a bare ``start_as_current_span``.

Each variant has its own client or providers and service name; rounds interleave the
variants compared, in a shuffled order, and ratios are taken per round.

    python benchmarks/bench_end_to_end.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _harness import Row, format_table, interleaved, ratio_rows, rows_to_json
from bench_export import ReceiverProcess
from opentelemetry._logs import SeverityNumber

LOGGING_GOAL = 0.5
LOG_INFO_GOAL = None  # its goal is per call, in bench_core.py
TRACK_GOAL = 0.5


class Variant:
    """One way of recording items and exporting them to the receiver."""

    def __init__(self, name: str, service: str) -> None:
        self.name = name
        self.service = service

    def record(self, n: int) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _std_logger(name: str, handler: logging.Handler | None = None) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if handler is not None:
        logger.addHandler(handler)
    return logger


class RawLogs(Variant):
    """OpenTelemetry's LoggerProvider, BatchLogRecordProcessor and OTLP gRPC exporter."""

    def __init__(self, kind: str, receiver: ReceiverProcess, queue: int) -> None:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.resources import Resource

        super().__init__(f"raw OTel {kind}", f"raw-{kind}")
        self.kind = kind
        self.provider = LoggerProvider(
            resource=Resource.create({"service.name": self.service}), shutdown_on_exit=False
        )
        exporter = OTLPLogExporter(endpoint=receiver.grpc_endpoint, insecure=True)
        self.provider.add_log_record_processor(
            BatchLogRecordProcessor(exporter, max_queue_size=queue)
        )
        self.logger = self.provider.get_logger("bench")
        self.handler = LoggingHandler(level=logging.INFO, logger_provider=self.provider)
        self.std = _std_logger(f"bench.{self.service}", self.handler)

    def record(self, n: int) -> None:
        if self.kind == "logging":
            std = self.std
            for i in range(n):
                std.info("order %s shipped", i, extra={"order.total": 99.5})
            return
        logger = self.logger
        for _ in range(n):
            logger.emit(
                body="user signed in",
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                attributes={"user.id": 42, "tenant": "acme"},
            )

    def flush(self) -> None:
        self.provider.force_flush(30_000)

    def close(self) -> None:
        self.std.removeHandler(self.handler)
        self.provider.shutdown()


class RawSpans(Variant):
    """A bare ``start_as_current_span`` with BatchSpanProcessor and OTLP gRPC."""

    def __init__(self, receiver: ReceiverProcess, queue: int) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        super().__init__("raw OTel span", "raw-span")
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": self.service}), shutdown_on_exit=False
        )
        exporter = OTLPSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True)
        self.provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=queue))
        self.tracer = self.provider.get_tracer("bench")

    def record(self, n: int) -> None:
        tracer = self.tracer
        for _ in range(n):
            with tracer.start_as_current_span("op"):
                pass

    def flush(self) -> None:
        self.provider.force_flush(30_000)

    def close(self) -> None:
        self.provider.shutdown()


class Ours(Variant):
    """A client with its defaults over OTLP/gRPC, for one kind of recording."""

    def __init__(self, kind: str, receiver: ReceiverProcess, queue: int) -> None:
        from telemetryflow import TelemetryFlowBuilder

        super().__init__(f"TelemetryFlow {kind}", f"ours-{kind}")
        self.kind = kind
        tracking = kind == "track"
        self.client = (
            TelemetryFlowBuilder()
            .with_api_key("tfk_bench", "tfs_bench")
            .with_service(self.service)
            .with_endpoint(receiver.grpc_endpoint)
            .with_grpc()
            .with_insecure()
            .with_global_providers(False)
            .with_signals(metrics=tracking, logs=not tracking, traces=tracking)
            .with_queue_size(queue)
            .build()
        )
        self.client.initialize()
        self.std = _std_logger(f"bench.{self.service}")
        self.handler: logging.Handler | None = None
        if kind == "logging":
            self.handler = self.client.instrument_logging(logging.INFO, self.std)

        def empty() -> None:
            return None

        self.tracked = self.client.track("op")(empty)

    def record(self, n: int) -> None:
        if self.kind == "logging":
            std = self.std
            for i in range(n):
                std.info("order %s shipped", i, extra={"order.total": 99.5})
        elif self.kind == "log_info":
            client = self.client
            for _ in range(n):
                client.log_info("user signed in", {"user.id": 42, "tenant": "acme"})
        else:
            tracked = self.tracked
            for _ in range(n):
                tracked()

    def flush(self) -> None:
        self.client.flush(timeout=30)

    def close(self) -> None:
        if self.handler is not None:
            self.handler.close()
        self.client.shutdown(timeout=10)


def bench(rounds: int, items: int, max_seconds: float) -> list[Row]:
    receiver = ReceiverProcess()
    variants: list[Variant] = []
    delivered: dict[str, list[int]] = {}
    try:
        queue = items * 2
        variants += [RawLogs("logging", receiver, queue), Ours("logging", receiver, queue)]
        variants += [RawLogs("emit", receiver, queue), Ours("log_info", receiver, queue)]
        variants += [RawSpans(receiver, queue), Ours("track", receiver, queue)]
        receiver.counts()

        def sampler(variant: Variant) -> Callable[[], float]:
            def sample() -> float:
                started = time.process_time()
                variant.record(items)
                variant.flush()
                cpu = time.process_time() - started
                got = receiver.counts().get(variant.service, 0)
                delivered.setdefault(variant.name, []).append(got)
                return cpu / max(got, 1) * 1e6

            return sample

        pairs: list[tuple[str, str, float | None]] = [
            ("TelemetryFlow logging", "raw OTel logging", LOGGING_GOAL),
            ("TelemetryFlow log_info", "raw OTel emit", LOG_INFO_GOAL),
            ("TelemetryFlow track", "raw OTel span", TRACK_GOAL),
        ]
        samples = interleaved(
            {v.name: sampler(v) for v in variants},
            rounds,
            max_seconds=max_seconds,
            groups=[pair[:2] for pair in pairs],
        )
    finally:
        for variant in variants:
            variant.close()
        receiver.close()
    notes = {
        name: f"{min(counts)}/{items} delivered"
        for name, counts in delivered.items()
        if min(counts) < items
    }
    rows = ratio_rows("end to end", samples, pairs, unit="µs CPU/item", notes=notes)
    labels = {
        "TelemetryFlow logging": ("logging → instrument_logging → OTLP", "→ LoggingHandler"),
        "TelemetryFlow log_info": ("log_info → OTLP", "Logger.emit → OTLP"),
        "TelemetryFlow track": ("@client.track, empty function → OTLP", "start_as_current_span"),
    }
    return [_relabel(row, *labels[row.name]) for row in rows]


def _relabel(row: Row, name: str, raw_name: str) -> Row:
    from dataclasses import replace

    return replace(row, name=name, raw_name=raw_name)


def run(quick: bool) -> list[Row]:
    return bench(
        rounds=4 if quick else 15, items=2000 if quick else 4000, max_seconds=40 if quick else 240
    )


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
