"""The collector under random and mutated input, bad credentials, and a nosy tenant.

Over 100,000 inputs go through both receivers: most are handed in-process to the
collector's own HTTP connection protocol (raw bytes into the server's protocol and
app on its event loop, through an in-memory transport) and to its gRPC method
handlers (fast, and every exception is seen where it happens), a few thousand cross
real loopback sockets. An *unhandled exception* is anything that escapes a handler
or servicer, an HTTP 500, a gRPC ``UNKNOWN``, or an ERROR logged by the collector, the
HTTP server or the event loop; there must be none, and the collector must still
serve afterwards. Then 10,000 requests with bad credentials
must store nothing, and one project must never see another's data.

Inputs come from a seeded generator (``TELEMETRYFLOW_FUZZ_SEED``); set
``TELEMETRYFLOW_FUZZ_SCALE`` to run more of them (``10`` is ten times as many).
The tests at the end pin the out-of-range inputs an earlier run of this fuzz turned
into HTTP 500s and gRPC ``UNKNOWN``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import gzip
import http.client
import json
import logging
import math
import os
import random
import re
import socket
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from telemetryflow.collector import ApiKey, Collector, CollectorConfig
from telemetryflow.collector.server import _grpc as grpc_receiver

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("TELEMETRYFLOW_FUZZ_SEED", "20240611"))
SCALE = float(os.environ.get("TELEMETRYFLOW_FUZZ_SCALE", "1"))
KEY_A = ApiKey("tfk_fuzz_alpha01", "tfs_fuzz-alpha-secret-01", "alpha")
KEY_B = ApiKey("tfk_fuzz_beta002", "tfs_fuzz-beta-secret-02", "beta")
MAX_BODY = 256 * 1024
NOW = time.time_ns()

REQUESTS: dict[str, type[Any]] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}
SERVICES = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
}
OTLP_PATHS = {"traces": "/v1/traces", "logs": "/v1/logs", "metrics": "/v1/metrics"}
QUERY_PATHS = (
    "/v1/traces/query", "/v1/logs/query", "/v1/metrics/query", "/observability/traces",
    "/observability/logs", "/observability/metrics",
)  # fmt: skip
OTHER_PATHS = (
    "/v1/status", "/health", "/openapi.json", "/v1/metrics/report", "/v1/metrics/batch", "/",
    "/v1", "/v1/traces/", "/v1/../v1/logs", "/v1/logs%00", "//v1//traces", "/v1/Traces",
    "/" + "a" * 3000, "*", "http://evil.example/v1/logs", "/v1/logs?x=1#frag",
    "/v1/metrics/names", "/v1/observability/errors", "/v1/observability/events",
    "/v1/observability/metrics", "/v1/observability/flags/new-checkout",
    "/v1/observability/errors/0123456789abcdef", "/v1/observability/flags/%00",
)  # fmt: skip
QUERY_PARAMS = (
    "project_name", "service", "severity", "time_window", "window", "since", "until",
    "trace_id", "trace", "contains", "limit", "name", "metric", "agg", "percentile", "tags",
    "step", "group_by", "min_duration", "error", "detail", "agent_name", "session_id",
    "status", "category", "project", "tenant", "x",
)  # fmt: skip
ODD_STRINGS = (
    "", " ", "0", "-1", "1", "1e400", "-1e400", "inf", "nan", "NaN", "Infinity", "1e18",
    "9999999999999999999999", "now", "1h", "5m", "30s", "7d", "0s", "100w", "1.5h", "-5m",
    "2024-01-01T00:00:00Z", "2024-13-45T99:99:99", "true", "false", "yes", "p99", "avg",
    "sum", "max", "rate", "count", "ERROR", "warn", "fatal", "' OR 1=1 --", "%", "_",
    "\\", '"', "a\x00b", "\u202e", "日本語", "🙂", "x" * 5000, "null", "[]", "{}",
    '{"a": "b"}', "service.name", "alpha", "beta", "default", "0" * 32, "f" * 32,
)  # fmt: skip


# -- in-process harnesses ------------------------------------------------------------------
class _Transport(asyncio.Transport):
    """An in-memory connection: keeps what the server writes, reports its closing."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.sent = bytearray()
        self.closed = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closed.is_set():
            self.sent += data

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed.is_set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 4318)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


class _AbortedError(Exception):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code.name)
        self.code = code


class _Context:
    """The parts of ``grpc.ServicerContext`` the collector uses; abort raises like gRPC's."""

    def __init__(self, metadata: tuple[tuple[str, Any], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._metadata

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _AbortedError(code)

    def abort_with_status(self, status: Any) -> None:
        raise _AbortedError(status.code)

    def set_trailing_metadata(self, metadata: Any) -> None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"


@dataclass
class _CallDetails:
    method: str
    invocation_metadata: tuple[tuple[str, Any], ...]


_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
Dispatch = Callable[[str, bytes, _Context], str]


def grpc_dispatch(pipeline: Any) -> Dispatch:
    """Call the collector's gRPC method handlers as the gRPC server would, in-process.

    Goes through gRPC's own handler protocol (``GenericRpcHandler.service`` and the
    ``RpcMethodHandler`` it returns), so the same code runs as on the wire: the
    collector's authentication, its parsing, its servicer.
    """
    generic = grpc_receiver._handlers(pipeline)

    def dispatch(signal: str, raw: bytes, context: _Context) -> str:
        details = _CallDetails(f"/{SERVICES[signal]}/Export", context.invocation_metadata())
        handler = next(h for h in (g.service(details) for g in generic) if h is not None)
        request: Any = raw
        if handler.request_deserializer is not None:
            try:
                request = handler.request_deserializer(raw)
            except Exception:
                return "DESERIALIZE"  # gRPC itself answers this one
        if handler.request_streaming:
            handler.stream_unary(iter([request]), context)
        else:
            handler.unary_unary(request, context)
        return "OK"

    return dispatch


@dataclass
class Tally:
    """What happened to every input."""

    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    unhandled: list[str] = field(default_factory=list)
    known: Counter[str] = field(default_factory=Counter)
    """Failures explained by a collector bug pinned by a strict xfail test below."""
    answered_500: int = 0

    def crash(self, where: str, detail: str) -> None:
        if len(self.unhandled) < 50:
            self.unhandled.append(f"{where}: {detail}")
        self.outcomes["UNHANDLED"] += 1


class Harness:
    """Drives one collector in-process and over its sockets."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        server = collector._http
        assert server is not None and server.loop is not None
        self.loop = server.loop
        self.uvicorn = server._server
        self.pipeline = collector._pipeline
        self.dispatch = grpc_dispatch(self.pipeline)

    def exchange(self, raw: bytes) -> bytes:
        """Hand ``raw`` to a fresh connection of the server, then end it; what came back."""
        return self.exchange_many([raw])[0]

    def exchange_many(self, raws: list[bytes]) -> list[bytes]:
        """:meth:`exchange` for each of ``raws`` in turn, in one trip to the server's loop."""

        async def one(raw: bytes) -> bytes:
            config = self.uvicorn.config
            protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.uvicorn.server_state, app_state={}
            )
            transport = _Transport(protocol)
            protocol.connection_made(transport)
            if raw and not transport.is_closing():  # asyncio never delivers b""
                protocol.data_received(raw)
            if not transport.is_closing() and not protocol.eof_received():
                transport.close()
            await asyncio.wait_for(transport.closed.wait(), 30)
            tasks = list(self.uvicorn.server_state.tasks)
            if tasks:
                await asyncio.wait(tasks, timeout=30)
            return bytes(transport.sent)

        async def drive() -> list[bytes]:
            return [await one(raw) for raw in raws]

        return asyncio.run_coroutine_threadsafe(drive(), self.loop).result(60 + 30 * len(raws))

    def tally_http(self, reply: bytes, tally: Tally) -> list[int]:
        statuses = [int(code) for code in _STATUS.findall(reply)]
        for status in statuses:
            tally.outcomes[f"http {status}"] += 1
            tally.answered_500 += status == 500  # explained (or not) by the logged error
        return statuses

    def http(self, raw: bytes, tally: Tally) -> list[int]:
        try:
            reply = self.exchange(raw)
        except Exception as exc:
            tally.crash("http connection", f"{type(exc).__name__}: {exc}"[:300])
            return []
        return self.tally_http(reply, tally)

    def grpc(
        self, signal: str, raw: bytes, metadata: tuple[tuple[str, Any], ...], tally: Tally
    ) -> str:
        context = _Context(metadata)
        code = "OK"
        try:
            code = self.dispatch(signal, raw, context)
        except _AbortedError as aborted:
            code = aborted.code.name
        except Exception as exc:
            tally.crash(f"grpc {signal}", f"{type(exc).__name__}: {exc}"[:300])
            return "UNHANDLED"
        tally.outcomes[f"grpc {code}"] += 1
        if code in ("NOT ABORTED", "UNKNOWN", "INTERNAL"):
            tally.crash(f"grpc {signal}", code)
        return code

    def rows(self) -> dict[str, int]:
        with self.collector.store.reader() as conn:
            return {
                table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                for table in ("spans", "logs", "metric_points", "idempotency")
            }


@dataclass(frozen=True)
class Logged:
    """An ERROR the collector (or gRPC's server, for what a servicer let escape) logged."""

    logger: str
    message: str
    error: str

    def __str__(self) -> str:
        return f"{self.logger}: {self.message} ({self.error})"[:300]


@contextlib.contextmanager
def collector_errors() -> Iterator[list[Logged]]:
    """ERROR records of the collector's logger and of gRPC's server while the block runs."""
    records: list[Logged] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            error = record.exc_info[1] if record.exc_info else None
            text = f"{type(error).__name__}: {error}" if error is not None else ""
            records.append(Logged(record.name, record.getMessage(), text))

    handler = Keep(logging.ERROR)
    names = ("telemetryflow.collector", "grpc._server", "uvicorn.error", "asyncio")
    targets = [logging.getLogger(name) for name in names]
    for target in targets:
        target.addHandler(handler)
    try:
        yield records
    finally:
        for target in targets:
            target.removeHandler(handler)


KNOWN_BUGS: tuple[tuple[str, str, str], ...] = ()
"""(error, route fragment, pinning test): 500s these explain are counted, not failed.
Remove an entry when its test starts passing (strict xfail makes that impossible to miss)."""


def _settle(tally: Tally, errors: list[Logged]) -> None:
    """Every logged error is a crash unless a pinned bug explains it; every 500 needs one."""
    explained = 0
    for logged in errors:
        name = next(
            (
                test
                for error, route, test in KNOWN_BUGS
                if logged.error.startswith(error) and route in logged.message
            ),
            None,
        )
        if name is None:
            tally.crash("log", str(logged))
        else:
            tally.known[name] += 1
            explained += logged.message.startswith("unexpected error handling")
    if tally.answered_500 > explained:
        tally.crash("http", f"{tally.answered_500 - explained} answer(s) 500 without a known cause")


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[[str], Harness]]:
    started: list[Collector] = []

    def factory(name: str) -> Harness:
        config = CollectorConfig(
            db_path=str(tmp_path / f"{name}.db"),
            grpc_port=0,
            http_port=0,
            keys=(KEY_A, KEY_B),
            rate_limit=0.0,
            max_body_bytes=MAX_BODY,
            max_pending_writes=4096,
            retention_seconds=0.0,
        )
        collector = Collector(config).start()
        started.append(collector)
        return Harness(collector)

    yield factory
    for collector in started:
        collector.stop()


# -- input generation ------------------------------------------------------------------------
class Gen:
    """Random OTLP messages, HTTP requests and mutations, all from one seeded ``Random``."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self._pool: dict[str, list[tuple[Any, bytes]]] = {signal: [] for signal in REQUESTS}

    # values -----------------------------------------------------------------------------
    def text(self) -> str:
        rng = self.rng
        if rng.random() < 0.3:
            return rng.choice(ODD_STRINGS)
        alphabet = rng.choice(
            ("abc.xyz_-", "0123456789abcdef", "αβγ日本🙂\u202e\t\n\x00", "AZaz09 /:?&=%")
        )
        return "".join(rng.choices(alphabet, k=rng.randrange(0, 24)))

    def time(self) -> int:
        rng = self.rng
        choice = rng.random()
        if choice < 0.5:
            return NOW - rng.randrange(0, 10**12)
        if choice < 0.6:
            return 0
        if choice < 0.8:
            return rng.choice((1, 2**32, 2**62, 2**63 - 1, 2**63, 2**64 - 1, NOW + 10**15))
        return rng.randrange(0, 2**64)

    def number(self) -> float:
        return self.rng.choice(
            (
                0.0,
                -0.0,
                1.5,
                -3.0,
                1e308,
                -1e308,
                5e-324,
                math.inf,
                -math.inf,
                math.nan,
                self.rng.uniform(-1e6, 1e6),
            )
        )

    def any_value(self, target: AnyValue, depth: int = 0) -> None:
        rng = self.rng
        kind = rng.randrange(8 if depth < 4 else 6)
        if kind == 0:
            target.string_value = self.text()
        elif kind == 1:
            target.int_value = rng.choice((0, -1, 2**63 - 1, -(2**63), rng.randrange(-99, 99)))
        elif kind == 2:
            target.double_value = self.number()
        elif kind == 3:
            target.bool_value = rng.random() < 0.5
        elif kind == 4:
            target.bytes_value = rng.randbytes(rng.randrange(0, 12))
        elif kind == 5:
            pass  # an empty AnyValue
        elif kind == 6:
            for _ in range(rng.randrange(0, 4)):
                self.any_value(target.array_value.values.add(), depth + 1)
        else:
            self.attributes(target.kvlist_value.values, depth + 1)

    def attributes(self, target: Any, depth: int = 0) -> None:
        for _ in range(self.rng.randrange(0, 5)):
            item: KeyValue = target.add(key=self.text())
            self.any_value(item.value, depth)

    def resource(self, target: Any) -> None:
        service = target.attributes.add(key="service.name")
        if self.rng.random() < 0.8:
            service.value.string_value = self.rng.choice(("svc", "checkout", "", self.text()))
        else:
            self.any_value(service.value)
        self.attributes(target.attributes)

    def ident(self, size: int) -> bytes:
        rng = self.rng
        choice = rng.random()
        if choice < 0.75:
            return rng.randbytes(size)
        if choice < 0.85:
            return bytes(size)
        return rng.randbytes(rng.randrange(0, 20))

    # messages ---------------------------------------------------------------------------
    def traces(self) -> Any:
        rng, request = self.rng, ExportTraceServiceRequest()
        for _ in range(rng.randrange(0, 3)):
            block = request.resource_spans.add()
            self.resource(block.resource)
            for _ in range(rng.randrange(0, 3)):
                scoped = block.scope_spans.add()
                scoped.scope.name = self.text()
                for _ in range(rng.randrange(0, 4)):
                    span = scoped.spans.add(
                        trace_id=self.ident(16),
                        span_id=self.ident(8),
                        parent_span_id=self.ident(8) if rng.random() < 0.5 else b"",
                        name=self.text(),
                        kind=rng.choice((0, 1, 2, 3, 4, 5, 6, 99, -1)),
                        start_time_unix_nano=self.time(),
                        end_time_unix_nano=self.time(),
                    )
                    self.attributes(span.attributes)
                    span.status.code = rng.choice((0, 1, 2, 7))
                    span.status.message = self.text()
                    for _ in range(rng.randrange(0, 3)):
                        event = span.events.add(name=self.text(), time_unix_nano=self.time())
                        self.attributes(event.attributes)
                    for _ in range(rng.randrange(0, 2)):
                        link = span.links.add(trace_id=self.ident(16), span_id=self.ident(8))
                        self.attributes(link.attributes)
        return request

    def logs(self) -> Any:
        rng, request = self.rng, ExportLogsServiceRequest()
        for _ in range(rng.randrange(0, 3)):
            block = request.resource_logs.add()
            self.resource(block.resource)
            for _ in range(rng.randrange(0, 3)):
                scoped = block.scope_logs.add()
                scoped.scope.name = self.text()
                for _ in range(rng.randrange(0, 4)):
                    record = scoped.log_records.add(
                        time_unix_nano=self.time(),
                        observed_time_unix_nano=self.time(),
                        severity_number=rng.choice((0, 1, 9, 13, 17, 24, 99, -5)),
                        severity_text=self.text(),
                        trace_id=self.ident(16),
                        span_id=self.ident(8),
                    )
                    if rng.random() < 0.9:
                        self.any_value(record.body)
                    self.attributes(record.attributes)
        return request

    def metrics(self) -> Any:
        rng, request = self.rng, ExportMetricsServiceRequest()
        for _ in range(rng.randrange(0, 3)):
            block = request.resource_metrics.add()
            self.resource(block.resource)
            for _ in range(rng.randrange(0, 3)):
                scoped = block.scope_metrics.add()
                for _ in range(rng.randrange(0, 4)):
                    metric = scoped.metrics.add(name=self.text(), unit=self.text())
                    self.metric_data(metric)
        return request

    def metric_data(self, metric: Any) -> None:
        rng = self.rng
        kind = rng.choice(("gauge", "sum", "histogram", "exponential_histogram", "summary", None))
        if kind is None:
            return
        data = getattr(metric, kind)
        if kind != "gauge" and kind != "summary":
            data.aggregation_temporality = rng.choice((0, 1, 2, 9))
        if kind == "sum":
            data.is_monotonic = rng.random() < 0.5
        for _ in range(rng.randrange(0, 4)):
            point = data.data_points.add(
                time_unix_nano=self.time(), start_time_unix_nano=self.time()
            )
            self.attributes(point.attributes)
            if kind in ("gauge", "sum"):
                if rng.random() < 0.5:
                    point.as_double = self.number()
                elif rng.random() < 0.9:
                    point.as_int = rng.choice((0, -1, 2**63 - 1, -(2**63), 42))
            elif kind == "histogram":
                bounds = sorted(self.number() for _ in range(rng.randrange(0, 5)))
                point.explicit_bounds.extend(bounds)
                extra = rng.choice((1, 1, 1, 0, 2))
                point.bucket_counts.extend(
                    rng.randrange(0, 2**64) for _ in range(len(bounds) + extra)
                )
                point.count = rng.randrange(0, 2**64)
                if rng.random() < 0.7:
                    point.sum = self.number()
                if rng.random() < 0.5:
                    point.min, point.max = self.number(), self.number()
            elif kind == "exponential_histogram":
                point.scale = rng.choice((0, 1, 3, 8, 20, -1, -5, -9, -10, -30, 2**31 - 1))
                point.zero_count = rng.randrange(0, 100)
                point.count = rng.randrange(0, 2**64)
                point.positive.offset = rng.choice((0, 1, -1, 100, -100, 2000, -2000, 2**31 - 1))
                point.positive.bucket_counts.extend(rng.randrange(0, 9) for _ in range(4))
                point.negative.bucket_counts.extend(rng.randrange(0, 9) for _ in range(2))
            else:
                point.count = rng.randrange(0, 2**64)
                point.sum = self.number()
                quantile = point.quantile_values.add()
                quantile.quantile, quantile.value = self.number(), self.number()
            if kind != "summary" and rng.random() < 0.3:
                exemplar = point.exemplars.add(
                    time_unix_nano=self.time(), span_id=self.ident(8), trace_id=self.ident(16)
                )
                exemplar.as_double = self.number()
                self.attributes(exemplar.filtered_attributes)

    def message(self, signal: str) -> Any:
        return {"traces": self.traces, "logs": self.logs, "metrics": self.metrics}[signal]()

    def sample(self, signal: str) -> tuple[Any, bytes]:
        """A message and its bytes: a fresh one a quarter of the time, else one of the
        last few hundred (cheap, and mutation makes every use different). Never modify
        the message returned."""
        pool = self._pool[signal]
        if len(pool) < 300 or self.rng.random() < 0.25:
            message = self.message(signal)
            item = (message, message.SerializeToString())
            if len(pool) < 300:
                pool.append(item)
            else:
                pool[self.rng.randrange(len(pool))] = item
            return item
        return self.rng.choice(pool)

    # mutations --------------------------------------------------------------------------
    def mutate(self, data: bytes) -> bytes:
        rng = self.rng
        out = bytearray(data)
        for _ in range(rng.randrange(1, 5)):
            op = rng.randrange(7)
            at = rng.randrange(len(out) + 1)
            if op == 0 and out:
                out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
            elif op == 1 and out:
                out[min(at, len(out) - 1)] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x0A, 0x12))
            elif op == 2:
                del out[at : at + rng.randrange(1, 16)]
            elif op == 3:
                out[at:at] = rng.randbytes(rng.randrange(1, 16))
            elif op == 4 and out:
                start = rng.randrange(len(out))
                out[at:at] = out[start : start + rng.randrange(1, 64)]
            elif op == 5:
                out[at:at] = rng.choice((b"\xff" * 10 + b"\x01", b"\x0a\xff\xff\xff\xff\x0f"))
            else:
                out = out[:at]
        return bytes(out)

    def otlp_body(self, signal: str) -> tuple[bytes, str]:
        """A body and its content type: valid, mutated, JSON, or noise."""
        rng = self.rng
        choice = rng.random()
        message, serialized = self.sample(signal)
        if choice < 0.35:
            return serialized, "application/x-protobuf"
        if choice < 0.7:
            return self.mutate(serialized), "application/x-protobuf"
        if choice < 0.85:
            from google.protobuf import json_format

            text = json_format.MessageToJson(message, indent=None)
            if rng.random() < 0.6:
                text = self.mutate(text.encode()).decode("utf-8", "replace")
            return text.encode(), "application/json"
        return rng.randbytes(rng.randrange(0, 300)), rng.choice(
            ("application/x-protobuf", "application/json", "text/plain", "")
        )

    # HTTP -------------------------------------------------------------------------------
    def auth_headers(self, good: float = 0.85) -> list[tuple[str, str]]:
        rng = self.rng
        if rng.random() < good:
            key = rng.choice((KEY_A, KEY_B))
            if rng.random() < 0.8:
                return [("Authorization", f"Bearer {key.key_id}:{key.key_secret}")]
            return [
                ("X-TelemetryFlow-Key-ID", key.key_id),
                ("X-TelemetryFlow-Key-Secret", key.key_secret),
            ]
        return bad_credentials(rng)

    def encode_body(self, body: bytes) -> tuple[bytes, list[tuple[str, str]]]:
        rng = self.rng
        choice = rng.random()
        if choice < 0.7:
            return body, []
        if choice < 0.8:
            return gzip.compress(body), [("Content-Encoding", "gzip")]
        if choice < 0.85:
            return zlib.compress(body), [("Content-Encoding", "deflate")]
        if choice < 0.9:
            return self.mutate(gzip.compress(body)), [("Content-Encoding", "gzip")]
        if choice < 0.95:
            return _bomb(), [("Content-Encoding", rng.choice(("gzip", "GZIP", " gzip ")))]
        return body, [("Content-Encoding", rng.choice(("br", "x-garbage", "gzip, gzip", "")))]

    def http_request(self) -> bytes:
        """One raw HTTP/1.1 request (sometimes two, pipelined, or malformed framing)."""
        rng = self.rng
        choice = rng.random()
        headers: list[tuple[str, str]] = []
        body = b""
        if choice < 0.55:
            signal = rng.choice(tuple(OTLP_PATHS))
            method, path = "POST", OTLP_PATHS[signal]
            body, content_type = self.otlp_body(signal)
            body, encoding = self.encode_body(body)
            headers += [("Content-Type", content_type), *encoding]
        elif choice < 0.8:
            method = rng.choice(("GET", "GET", "POST"))
            path = rng.choice(QUERY_PATHS)
            params = self.query_params()
            if method == "GET":
                path += "?" + "&".join(f"{quote(k)}={quote(str(v))}" for k, v in params.items())
            else:
                body = self.json_value(params).encode()
                headers.append(("Content-Type", "application/json"))
        elif choice < 0.9:
            method, path = "POST", rng.choice(("/v1/metrics/report", "/v1/metrics/batch"))
            body = self.json_value(self.metric_points()).encode()
            headers.append(("Content-Type", rng.choice(("application/json", "text/json"))))
        else:
            method = rng.choice(
                ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "BREW")
            )
            path = rng.choice(OTHER_PATHS)
            body = rng.randbytes(rng.randrange(0, 64))
        headers += self.auth_headers()
        return self.frame(method, path, headers, body)

    def frame(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
        rng = self.rng
        framing = rng.random()
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in headers]
        if framing < 0.8:
            lines.append(f"Content-Length: {len(body)}")
            payload = body
        elif framing < 0.88:
            lines.append("Transfer-Encoding: chunked")
            payload = self.chunked(body)
        elif framing < 0.94:
            wrong = ("-1", "abc", "99999999999", "0", str(len(body) + 5), " 3")
            lines.append(f"Content-Length: {rng.choice(wrong)}")
            payload = body
        else:
            payload = body  # no length at all
        if rng.random() < 0.03:
            lines.insert(
                rng.randrange(1, len(lines) + 1),
                rng.choice(
                    ("X-Evil: a\rb", "Bad Header Line", ":", "X-Long: " + "a" * 70000, "\x00: 1")
                ),
            )
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + payload
        if rng.random() < 0.05:
            raw = self.mutate(raw)
        return raw

    def chunked(self, body: bytes) -> bytes:
        rng = self.rng
        out = bytearray()
        rest = body
        while rest:
            size = rng.randrange(1, 64)
            out += f"{size:x}\r\n".encode() + rest[:size] + b"\r\n"
            rest = rest[size:]
        out += rng.choice((b"0\r\n\r\n", b"zz\r\n", b"", b"fffffffffff\r\n"))
        return bytes(out)

    def query_params(self) -> dict[str, Any]:
        rng = self.rng
        return {
            rng.choice(QUERY_PARAMS): rng.choice((self.text(), rng.choice(ODD_STRINGS)))
            for _ in range(rng.randrange(0, 5))
        }

    def metric_points(self) -> Any:
        rng = self.rng

        def point() -> Any:
            fields = {
                "name": rng.choice(("req", "", self.text(), 5)),
                "value": rng.choice((1, -2.5, 1e308, "3", None, True, [1])),
                "type": rng.choice(("counter", "gauge", "timing", "bogus", None)),
                "tags": rng.choice(({}, {"service.name": "svc"}, {"a": [1]}, "x", None)),
                "timestamp": rng.choice((None, "now", "1h", NOW, 1e400, "2024-01-01", "x")),
                "unit": rng.choice(("s", "", 3)),
            }
            return {k: v for k, v in fields.items() if rng.random() < 0.8}

        if rng.random() < 0.5:
            return point() | {"idempotency_key": rng.choice((None, "k1", "", 7, "k" * 300))}
        return {
            "points": [point() for _ in range(rng.randrange(0, 5))],
            "idempotency_key": rng.choice((None, "b1", "b2")),
        }

    def json_value(self, value: Any) -> str:
        text = json.dumps(value, default=str)
        if self.rng.random() < 0.2:
            text = self.mutate(text.encode()).decode("utf-8", "replace")
        return text


@functools.cache
def _bomb() -> bytes:
    """A small gzip body that inflates past the collector's cap."""
    return gzip.compress(b"\x0a" * (MAX_BODY * 4))


def quote(text: str) -> str:
    from urllib.parse import quote as url_quote

    return url_quote(text, safe="")


def bad_credentials(rng: random.Random) -> list[tuple[str, str]]:
    """Credentials that must never be accepted (empty headers are left out on purpose)."""
    a, b = KEY_A, KEY_B
    secret = a.key_secret
    options: list[list[tuple[str, str]]] = [
        [],
        [("Authorization", f"Bearer {a.key_id}:{b.key_secret}")],
        [("Authorization", f"Bearer {a.key_id}:{secret}x")],
        [("Authorization", f"Bearer {a.key_id}:{secret[:-1]}")],
        [("Authorization", f"Bearer {a.key_id}:{secret.upper()}")],
        [("Authorization", f"Bearer tfk_unknown_{rng.randrange(10**6)}:{secret}")],
        [("Authorization", f"Bearer {a.key_id}")],
        [("Authorization", f"Bearer :{secret}")],
        [("Authorization", f"Bearer {secret}:{a.key_id}")],
        [("Authorization", f"Basic {base64.b64encode(f'{a.key_id}:{secret}'.encode()).decode()}")],
        [("Authorization", f"Token {a.key_id}:{secret}")],
        [("Authorization", f"Bearer{a.key_id}:{secret}")],
        [("Authorization", f"Bearer {a.key_id}:{secret} extra")],
        [("Authorization", "Bearer " + "x" * rng.randrange(1, 5000))],
        [
            ("Authorization", f"Bearer {a.key_id}:{b.key_secret}"),
            ("X-TelemetryFlow-Key-ID", a.key_id),
            ("X-TelemetryFlow-Key-Secret", secret),
        ],
        [("X-TelemetryFlow-Key-ID", a.key_id), ("X-TelemetryFlow-Key-Secret", b.key_secret)],
        [("X-TelemetryFlow-Key-ID", a.key_id)],
        [("X-TelemetryFlow-Key-Secret", secret)],
        [("X-TelemetryFlow-Key-ID", b.key_id), ("X-TelemetryFlow-Key-Secret", secret)],
        [("Authorisation", f"Bearer {a.key_id}:{secret}")],
        [("Authorization", f"Bearer {a.key_id}:{secret}".replace("tfs_", "tfs-"))],
        [("Authorization", f"Bearer {a.key_id}:\u00e9{secret}")],
    ]
    return rng.choice(options)


# -- the tests --------------------------------------------------------------------------------
def _expected_share(total: int) -> dict[str, int]:
    return {
        "http in-process": int(total * 0.45),
        "grpc in-process": int(total * 0.47),
        "http sockets": int(total * 0.04),
        "grpc sockets": int(total * 0.04),
    }


def test_fuzz_both_transports_without_an_unhandled_exception(
    make: Callable[[str], Harness],
) -> None:
    harness = make("fuzz")
    rng = random.Random(SEED)
    gen = Gen(rng)
    tally = Tally()
    shares = _expected_share(int(100_000 * SCALE))
    started = time.monotonic()
    with collector_errors() as errors:
        _fuzz_http_in_process(harness, gen, tally, shares["http in-process"])
        _fuzz_grpc_in_process(harness, gen, tally, shares["grpc in-process"])
        _fuzz_http_sockets(harness, gen, tally, shares["http sockets"])
        _fuzz_grpc_sockets(harness, gen, tally, shares["grpc sockets"])
    _settle(tally, errors)
    elapsed = time.monotonic() - started
    print(
        f"\nfuzz: {tally.inputs} inputs in {elapsed:.1f}s (seed {SEED}); "
        f"outcomes {dict(sorted(tally.outcomes.items()))}; "
        f"explained by pinned bugs {dict(tally.known)}"
    )
    assert tally.inputs >= int(100_000 * SCALE)
    assert tally.unhandled == [], "\n".join(tally.unhandled)
    _assert_still_serving(harness)
    stored = harness.rows()
    assert stored["spans"] > 0 and stored["logs"] > 0 and stored["metric_points"] > 0


def _fuzz_http_in_process(harness: Harness, gen: Gen, tally: Tally, count: int) -> None:
    produced = 0
    while produced < count:
        raws = [gen.http_request() for _ in range(min(200, count - produced))]
        produced += len(raws)
        tally.inputs += len(raws)
        try:
            replies = harness.exchange_many(raws)
        except Exception as exc:
            tally.crash("http connection", f"{type(exc).__name__}: {exc}"[:300])
            continue
        for reply in replies:
            harness.tally_http(reply, tally)


def _fuzz_grpc_in_process(harness: Harness, gen: Gen, tally: Tally, count: int) -> None:
    rng = gen.rng
    for _ in range(count):
        tally.inputs += 1
        signal = rng.choice(tuple(SERVICES))
        _, raw = gen.sample(signal)
        choice = rng.random()
        if choice < 0.5:
            raw = gen.mutate(raw)
        elif choice < 0.55:
            raw = rng.randbytes(rng.randrange(0, 200))
        metadata: tuple[tuple[str, Any], ...] = tuple(
            (k.lower(), v) for k, v in gen.auth_headers(good=0.9)
        )
        if rng.random() < 0.05:
            metadata += (("authorization-bin", rng.randbytes(8)), ("x-other", gen.text()))
        harness.grpc(signal, raw, metadata, tally)


def _fuzz_http_sockets(harness: Harness, gen: Gen, tally: Tally, count: int) -> None:
    """Raw requests on real connections, from a few threads: framing, keep-alive, close."""
    port = harness.collector.http_port
    requests: list[bytes] = []
    while len(requests) < count:
        raw = gen.http_request()
        if gen.rng.random() < 0.1:
            raw = gen.rng.randbytes(gen.rng.randrange(1, 400))  # not HTTP at all
        tally.inputs += 1
        requests.append(raw)

    def send(raw: bytes) -> list[int]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            with contextlib.suppress(OSError):
                sock.sendall(raw)
                sock.shutdown(socket.SHUT_WR)
            reply = bytearray()
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    reply += chunk
        return [int(code) for code in _STATUS.findall(bytes(reply))]

    with ThreadPoolExecutor(max_workers=8) as pool:
        for statuses in pool.map(send, requests):
            for status in statuses:
                tally.outcomes[f"socket http {status}"] += 1
                tally.answered_500 += status == 500


def _fuzz_grpc_sockets(harness: Harness, gen: Gen, tally: Tally, count: int) -> None:
    rng = gen.rng
    calls: list[tuple[str, bytes, tuple[tuple[str, str], ...]]] = []
    while len(calls) < count:
        tally.inputs += 1
        signal = rng.choice(tuple(SERVICES))
        _, raw = gen.sample(signal)
        if rng.random() < 0.5:
            raw = gen.mutate(raw)
        headers = gen.auth_headers(good=0.9)
        metadata = tuple((k.lower(), v) for k, v in headers if _grpc_safe(v))
        calls.append((signal, raw, metadata))
    with grpc.insecure_channel(harness.collector.grpc_endpoint or "") as channel:
        stubs = {s: channel.unary_unary(f"/{SERVICES[s]}/Export") for s in SERVICES}

        def call(item: tuple[str, bytes, tuple[tuple[str, str], ...]]) -> str:
            signal, raw, metadata = item
            try:
                stubs[signal](raw, metadata=metadata, timeout=10)
            except grpc.RpcError as error:
                return str(error.code().name)
            return "OK"

        with ThreadPoolExecutor(max_workers=8) as pool:
            for code in pool.map(call, calls):
                tally.outcomes[f"socket grpc {code}"] += 1
                if code == "UNKNOWN":
                    tally.crash("socket grpc", code)


def _grpc_safe(value: str) -> bool:
    return all(0x20 <= ord(c) < 0x7F for c in value)


def _assert_still_serving(harness: Harness) -> None:
    """A valid export over each transport is stored and can be read back."""
    collector = harness.collector
    marker = f"still-serving-{SEED}"
    request = ExportLogsServiceRequest()
    record = request.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=NOW)
    record.body.string_value = marker
    body = request.SerializeToString()
    auth = f"Bearer {KEY_A.key_id}:{KEY_A.key_secret}"
    conn = http.client.HTTPConnection("127.0.0.1", collector.http_port, timeout=10)
    conn.request(
        "POST",
        "/v1/logs",
        body=body,
        headers={"Content-Type": "application/x-protobuf", "Authorization": auth},
    )
    assert conn.getresponse().status == 200
    conn.close()
    with grpc.insecure_channel(collector.grpc_endpoint or "") as channel:
        export = channel.unary_unary(f"/{SERVICES['logs']}/Export")
        export(body, metadata=(("authorization", auth),), timeout=10)
    found = _query(collector.http_port, KEY_A, f"/v1/logs/query?contains={marker}&window=7d")
    assert found[0] == 200 and json.loads(found[1])["count"] == 2


def _query(port: int, key: ApiKey, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {key.key_id}:{key.key_secret}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request("POST" if body is not None else "GET", path, body=body, headers=headers)
    response = conn.getresponse()
    result = response.status, response.read()
    conn.close()
    return result


def test_ten_thousand_bad_auth_requests_store_nothing(make: Callable[[str], Harness]) -> None:
    harness = make("badauth")
    rng = random.Random(SEED + 1)
    gen = Gen(rng)
    tally = Tally()
    total = int(10_000 * SCALE)
    with collector_errors() as errors:
        for i in range(total):
            signal = rng.choice(tuple(SERVICES))
            _, body = gen.sample(signal)
            credentials = bad_credentials(rng)
            if i % 2 == 0:
                path = rng.choice(
                    (
                        *OTLP_PATHS.values(),
                        "/v1/metrics/report",
                        "/v1/metrics/batch",
                        "/v1/logs/query",
                        "/v1/traces/query",
                    )
                )
                headers = [("Content-Type", "application/x-protobuf"), *credentials]
                statuses = harness.http(gen.frame("POST", path, headers, body), tally)
                assert all(s >= 400 and s != 500 for s in statuses), statuses
                tally.outcomes["http no answer (malformed)"] += not statuses
            else:
                metadata = tuple((k.lower(), v) for k, v in credentials)
                assert harness.grpc(signal, body, metadata, tally) == "UNAUTHENTICATED"
        sockets = _bad_auth_over_sockets(harness, gen, max(200, total // 20))
    assert tally.unhandled == [] and errors == []
    assert sockets == {"http 401", "grpc UNAUTHENTICATED"}
    assert tally.outcomes["http 401"] > total * 0.45
    assert harness.rows() == {"spans": 0, "logs": 0, "metric_points": 0, "idempotency": 0}


def _bad_auth_over_sockets(harness: Harness, gen: Gen, count: int) -> set[str]:
    seen: set[str] = set()
    body = gen.traces().SerializeToString() or b"\n\x00"
    port = harness.collector.http_port
    with grpc.insecure_channel(harness.collector.grpc_endpoint or "") as channel:
        export = channel.unary_unary(f"/{SERVICES['traces']}/Export")
        for _ in range(count):
            credentials = [(k, v) for k, v in bad_credentials(gen.rng) if _grpc_safe(v)]
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            headers = dict(credentials) | {"Content-Type": "application/x-protobuf"}
            conn.request("POST", "/v1/traces", body=body, headers=headers)
            seen.add(f"http {conn.getresponse().status}")
            conn.close()
            try:
                export(body, metadata=tuple((k.lower(), v) for k, v in credentials), timeout=10)
                seen.add("grpc OK")
            except grpc.RpcError as error:
                seen.add(f"grpc {error.code().name}")
    return seen


def test_a_tenant_never_reads_another_tenants_data(make: Callable[[str], Harness]) -> None:
    harness = make("tenants")
    rng = random.Random(SEED + 2)
    gen = Gen(rng)
    port = harness.collector.http_port
    marker = "alpha-only-marker"
    _seed_alpha(port, marker)
    status, mine = _query(port, KEY_A, f"/v1/logs/query?contains={marker}&window=7d")
    assert status == 200 and marker in mine.decode()
    tally = Tally()
    leaks = []
    forged = {"project": "alpha", "project_name": "alpha", "tenant": "alpha"}
    for i in range(int(2_000 * SCALE)):
        params = gen.query_params()
        if i % 3 == 0:
            params.update(forged)
        path = (
            rng.choice(QUERY_PATHS)
            + "?"
            + "&".join(f"{quote(k)}={quote(str(v))}" for k, v in params.items() if k != "project")
        )
        if i % 2:
            raw = gen.frame("GET", path, _auth(KEY_B), b"")
        else:
            body = json.dumps(params).encode()
            raw = gen.frame(
                "POST",
                path.split("?")[0],
                [*_auth(KEY_B), ("Content-Type", "application/json")],
                body,
            )
        reply = harness.exchange(raw)
        tally.outcomes[str(_STATUS.findall(reply)[:1])] += 1
        if any(secret in reply for secret in (*ALPHA_ONLY, marker.encode())):
            leaks.append(raw[:200] + b" => " + reply[-300:])
    for path in (
        "/v1/status",
        "/v1/traces/query?window=7d",
        "/v1/logs/query?window=7d",
        "/v1/metrics/query?name=alpha.metric&window=7d",
    ):
        status, answer = _query(port, KEY_B, path)
        assert status == 200
        if any(secret in answer for secret in (*ALPHA_ONLY, marker.encode())):
            leaks.append(path.encode())
    assert leaks == []
    status, answer = _query(port, KEY_B, "/v1/status")
    assert json.loads(answer)["received"] == {"spans": 0, "metric_points": 0, "logs": 0}
    assert tally.outcomes["[b'200']"] > 100  # plenty of queries were answered, and empty


ALPHA_ONLY = (b"alpha-svc", b"01" * 16, b'"project":"alpha"', b'"value":1.0')
"""Bytes only alpha's data or identity can put in an answer."""


def _auth(key: ApiKey) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {key.key_id}:{key.key_secret}")]


def _seed_alpha(port: int, marker: str) -> None:
    logs = ExportLogsServiceRequest()
    block = logs.resource_logs.add()
    block.resource.attributes.add(key="service.name").value.string_value = "alpha-svc"
    record = block.scope_logs.add().log_records.add(time_unix_nano=NOW)
    record.body.string_value = marker
    traces = ExportTraceServiceRequest()
    spans = traces.resource_spans.add()
    spans.resource.attributes.add(key="service.name").value.string_value = "alpha-svc"
    spans.scope_spans.add().spans.add(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        name=marker,
        start_time_unix_nano=NOW - 10**6,
        end_time_unix_nano=NOW,
    )
    metrics = ExportMetricsServiceRequest()
    points = metrics.resource_metrics.add()
    points.resource.attributes.add(key="service.name").value.string_value = "alpha-svc"
    gauge = points.scope_metrics.add().metrics.add(name="alpha.metric").gauge
    gauge.data_points.add(time_unix_nano=NOW, as_double=1.0)
    for path, message in (("/v1/logs", logs), ("/v1/traces", traces), ("/v1/metrics", metrics)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(
            "POST",
            path,
            body=message.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf", **dict(_auth(KEY_A))},
        )
        assert conn.getresponse().status == 200
        conn.close()


# -- out-of-range input the fuzz used to turn into 500s ---------------------------------------
def _post(port: int, path: str, body: bytes, content_type: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": content_type, **dict(_auth(KEY_A))}
    conn.request("POST", path, body=body, headers=headers)
    status = conn.getresponse().status
    conn.close()
    return status


def _grpc_code(harness: Harness, signal: str, body: bytes) -> str:
    metadata = (("authorization", f"Bearer {KEY_A.key_id}:{KEY_A.key_secret}"),)
    with grpc.insecure_channel(harness.collector.grpc_endpoint or "") as channel:
        try:
            channel.unary_unary(f"/{SERVICES[signal]}/Export")(body, metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            return str(error.code().name)
    return "OK"


def assert_refused_cleanly(harness: Harness, signal: str, message: Any) -> None:
    body = message.SerializeToString()
    with collector_errors() as errors:
        status = _post(
            harness.collector.http_port, OTLP_PATHS[signal], body, "application/x-protobuf"
        )
        code = _grpc_code(harness, signal, body)
    assert status in (200, 400) and code in ("OK", "INVALID_ARGUMENT")
    assert errors == []


@pytest.mark.parametrize("field", ["log time", "span end", "histogram count"])
def test_uint64_values_past_int64_areassert_refused_cleanly(
    make: Callable[[str], Harness], field: str
) -> None:
    """OTLP times and counts are uint64; the database holds int64."""
    harness = make("uint64")
    if field == "log time":
        signal, message = "logs", ExportLogsServiceRequest()
        message.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=2**63)
    elif field == "span end":
        signal, message = "traces", ExportTraceServiceRequest()
        message.resource_spans.add().scope_spans.add().spans.add(
            trace_id=b"\x01" * 16, span_id=b"\x02" * 8, end_time_unix_nano=2**64 - 1
        )
    else:
        signal, message = "metrics", ExportMetricsServiceRequest()
        metric = message.resource_metrics.add().scope_metrics.add().metrics.add(name="h")
        metric.histogram.data_points.add(count=2**63, time_unix_nano=NOW, bucket_counts=[1])
    assert_refused_cleanly(harness, signal, message)


@pytest.mark.parametrize(("scale", "offset"), [(-10, 0), (0, 2000), (20, 2**31 - 1)])
def test_extreme_exponential_histograms_areassert_refused_cleanly(
    make: Callable[[str], Harness], scale: int, offset: int
) -> None:
    """``2 ** (2 ** -scale)`` and ``base ** offset`` overflow a float."""
    harness = make("exponential")
    message = ExportMetricsServiceRequest()
    metric = message.resource_metrics.add().scope_metrics.add().metrics.add(name="e")
    point = metric.exponential_histogram.data_points.add(time_unix_nano=NOW, scale=scale, count=1)
    point.positive.offset = offset
    point.positive.bucket_counts.extend([1, 2])
    assert_refused_cleanly(harness, "metrics", message)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/metrics/query?name=m&since=inf", None),
        ("/v1/metrics/query?name=m&until=1e308", None),
        ("/v1/metrics/query?name=m&window=9999999999w", None),
        ("/v1/traces/query?time_window=100000000h", None),
        ("/v1/logs/query", b'{"since": 1e400}'),
        ("/v1/metrics/report", b'{"name": "m", "value": 1, "timestamp": 1e308}'),
    ],
)
def test_out_of_range_times_in_the_query_api_are_400(
    make: Callable[[str], Harness], path: str, body: bytes | None
) -> None:
    """Instants and durations past int64 nanoseconds (or infinite) are the caller's error."""
    harness = make("times")
    with collector_errors() as errors:
        status, _ = _query(harness.collector.http_port, KEY_A, path, body)
    assert status == 400
    assert errors == []


@pytest.mark.parametrize(
    ("path", "key"),
    [("/v1/traces/query", "name"), ("/v1/metrics/query", "name"), ("/v1/logs/query", "service")],
)
def test_lone_surrogates_in_a_query_body_are_400(
    make: Callable[[str], Harness], path: str, key: str
) -> None:
    harness = make("surrogates")
    body = json.dumps({key: "\ud800"}).encode()
    with collector_errors() as errors:
        status, _ = _query(harness.collector.http_port, KEY_A, path, body)
    assert status == 400
    assert errors == []


@pytest.mark.parametrize("agg", ["avg", "sum"])
def test_metric_queries_over_huge_values_answer_200(
    make: Callable[[str], Harness], agg: str
) -> None:
    harness = make("fsum")
    message = ExportMetricsServiceRequest()
    gauge = message.resource_metrics.add().scope_metrics.add().metrics.add(name="big").gauge
    for _ in range(3):
        gauge.data_points.add(time_unix_nano=NOW, as_double=1e308)
    port = harness.collector.http_port
    assert _post(port, "/v1/metrics", message.SerializeToString(), "application/x-protobuf") == 200
    with collector_errors() as errors:
        status, _ = _query(port, KEY_A, f"/v1/metrics/query?name=big&window=1d&agg={agg}")
    assert status == 200
    assert errors == []
