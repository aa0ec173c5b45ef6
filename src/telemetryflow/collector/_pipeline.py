"""What the HTTP and gRPC receivers share: decode OTLP, store rows, run queries.

Both transports call the same :class:`Pipeline`, so authentication, rate limits,
partial success and project scoping behave the same whichever one a client uses.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from telemetryflow.collector._auth import Authenticator, Principal, RateLimiter
from telemetryflow.collector._errors_events import otlp_captures
from telemetryflow.collector._exemplars import exemplar_rows
from telemetryflow.collector._ingest import Ingested, log_rows, point_rows, span_rows
from telemetryflow.collector._logs_query import query_logs
from telemetryflow.collector._metric_names import query_metric_names
from telemetryflow.collector._metrics_api import (
    FINGERPRINT,
    batch_rows,
    check_replay,
    fingerprint,
    report_row,
)
from telemetryflow.collector._metrics_query import QueryLimits, query_metrics
from telemetryflow.collector._observability_api import ObservabilityAPI
from telemetryflow.collector._params import iso
from telemetryflow.collector._query_gate import QueryGate, reading
from telemetryflow.collector._store import Store, WriteBatch
from telemetryflow.collector._traces_query import query_traces

if TYPE_CHECKING:
    from telemetryflow.collector.forward import Forwarder

__all__ = ["SIGNALS", "Pipeline", "Signal"]


@dataclass(frozen=True)
class Signal:
    """How one OTLP signal is decoded, stored and answered."""

    name: str
    request: type[Message]
    response: type[Message]
    rows: Callable[[Any, str, int], Ingested]
    table: str
    rejected_field: str


def _points(request: ExportMetricsServiceRequest, project: str, received_ns: int) -> Ingested:
    rows, rejected, message = point_rows(request, project, received_ns)
    return Ingested(rows, rejected, message)


SIGNALS: dict[str, Signal] = {
    "traces": Signal("traces", ExportTraceServiceRequest, ExportTraceServiceResponse,
                     span_rows, "spans", "rejected_spans"),
    "metrics": Signal("metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse,
                      _points, "points", "rejected_data_points"),
    "logs": Signal("logs", ExportLogsServiceRequest, ExportLogsServiceResponse,
                   log_rows, "logs", "rejected_log_records"),
}  # fmt: skip

_QUERIES = {"logs": query_logs, "metric_names": query_metric_names, "traces": query_traces}


class Pipeline(ObservabilityAPI):
    """Authentication, admission and storage shared by both receivers.

    The observability endpoints (errors, events, metrics, flags) come from
    :class:`ObservabilityAPI`.
    """

    def __init__(
        self,
        store: Store,
        auth: Authenticator,
        limiter: RateLimiter,
        query_limits: QueryLimits | None = None,
        query_gate: QueryGate | None = None,
    ) -> None:
        self.store = store
        self.auth = auth
        self.limiter = limiter
        self.query_limits = QueryLimits.from_env() if query_limits is None else query_limits
        self.query_gate = QueryGate() if query_gate is None else query_gate
        self.forwarder: Forwarder | None = None
        """Copies of accepted OTLP requests go to its upstreams (``--forward``)."""

    def export(self, signal: Signal, principal: Principal, request: Any) -> Message:
        """Store an OTLP export request; answer with partial success when needed.

        Raises:
            OverloadedError: the write queue is full, or the disk is
                (``StorageFullError``); nothing stored.
        """
        batch, response = self._export_batch(signal, principal, request)
        if batch is not None:
            stored = len(getattr(batch, signal.table))
            self.store.submit(batch)
            self._forward(signal, request, stored, response)
        return response

    async def export_async(self, signal: Signal, principal: Principal, request: Any) -> Message:
        """:meth:`export` on an event loop: rows built here, the commit awaited, no thread.

        For small requests, where a trip to a worker thread costs more than the work.

        Raises:
            The same as :meth:`export`.
        """
        batch, response = self._export_batch(signal, principal, request)
        if batch is not None:
            stored = len(getattr(batch, signal.table))
            await self.store.submit_async(batch)
            self._forward(signal, request, stored, response)
        return response

    def _forward(self, signal: Signal, request: Any, stored: int, response: Any) -> None:
        """Hand a request whose ``stored`` items were committed to the upstreams
        (never blocks: each upstream queues it on its own)."""
        if self.forwarder is None:
            return
        rejected = getattr(response.partial_success, signal.rejected_field)
        self.forwarder.offer(signal.name, request, stored, rejected)

    def _export_batch(
        self, signal: Signal, principal: Principal, request: Any
    ) -> tuple[WriteBatch | None, Message]:
        """The rows to store (``None`` when there are none) and the answer to send."""
        received_ns = time.time_ns()
        parsed = signal.rows(request, principal.project, received_ns)
        # errors and product events the SDK captured, for the observability listings
        errors, events = otlp_captures(signal.name, request, principal.project, received_ns)
        metrics = signal.name == "metrics"  # their exemplars go in the same batch
        exemplars = exemplar_rows(request, principal.project, received_ns) if metrics else []
        batch = None
        if parsed.rows or errors or events:
            batch = WriteBatch(resources=parsed.resources, scopes=parsed.scopes,
                               errors=errors, events=events, exemplars=exemplars)  # fmt: skip
            getattr(batch, signal.table).extend(parsed.rows)
        response = signal.response()
        if parsed.rejected:
            partial = response.partial_success  # type: ignore[attr-defined]
            setattr(partial, signal.rejected_field, parsed.rejected)
            partial.error_message = parsed.message
        return batch, response

    def report(self, principal: Principal, body: Any) -> dict[str, Any]:
        """Store one 001 point; a repeated ``idempotency_key`` stores nothing.

        Raises:
            BadRequestError: 400 for a bad point, 409 for a key reused with another point.
        """
        row, key = report_row(body, principal.project)
        content = {k: v for k, v in body.items() if k != "idempotency_key"}
        return self._store_once(principal, "report", key, [row], content, {"ok": True})

    def batch(self, principal: Principal, body: Any) -> dict[str, Any]:
        """Store a 001 batch: valid points are stored, invalid ones listed with a reason.

        ``ok`` is true only when every point was accepted.

        Raises:
            BadRequestError: 400/413 for a malformed batch, 409 for a reused key.
        """
        rows, errors, key = batch_rows(body, principal.project)
        answer: dict[str, Any] = {
            "ok": not errors,
            "accepted": len(rows),
            "rejected": len(errors),
            "errors": errors,
        }
        return self._store_once(principal, "batch", key, rows, body["points"], answer)

    def _store_once(
        self,
        principal: Principal,
        kind: str,
        key: str | None,
        rows: list[Any],
        content: Any,
        answer: dict[str, Any],
    ) -> dict[str, Any]:
        if key is None:
            self.store.submit(WriteBatch(points=rows))
            return {**answer, "duplicate": False}
        digest = fingerprint(content)
        stored = {**answer, FINGERPRINT: digest}
        result = self.store.submit(
            WriteBatch(points=rows, idempotency=(principal.project, f"{kind}:{key}", stored))
        )
        if result.previous is not None:
            return {**check_replay(result.previous, digest, key), "duplicate": True}
        return {**answer, "duplicate": False}

    def query(self, signal: str, principal: Principal, params: Mapping[str, Any]) -> Any:
        """Answer a query: ``logs``, ``metrics``, ``metric_names`` or ``traces``.

        Raises:
            BadRequestError: a parameter is malformed (400) or the metric query covers
                more than :attr:`query_limits` allow (422), or the query ran past the
                deadline of :attr:`query_gate` (422); the message names it.
            QueryBusyError: :attr:`query_gate` has no free slot (an ``OverloadedError``:
                503 with a retry hint); nothing was run.
        """
        gate = self.query_gate
        with gate.admit(principal.key_id), reading(self.store) as conn, gate.bounded(conn):
            if signal == "metrics":
                return query_metrics(conn, principal.project, params, self.query_limits)
            if signal == "metric_names":  # by default over the retention window
                return query_metric_names(
                    conn, principal.project, params, self.store.retention_seconds
                )
            return _QUERIES[signal](conn, principal.project, params)

    def status(self, principal: Principal, window_s: float = 900.0) -> dict[str, Any]:
        """What this project sent lately: counts over ``window_s`` and the last arrival."""
        since = time.time_ns() - int(window_s * 1e9)
        received: dict[str, int] = {}
        last = 0
        with reading(self.store) as conn:
            for label, table in (
                ("spans", "spans"),
                ("metric_points", "metric_points"),
                ("logs", "logs"),
            ):
                # by the collector's receive stamp: a client's clock cannot hide its data
                count, newest = conn.execute(
                    f"SELECT count(*), max(received_ns) FROM {table} "  # noqa: S608
                    "WHERE received_ns >= ? AND project = ?",
                    (since, principal.project),
                ).fetchone()
                received[label] = int(count)
                last = max(last, int(newest or 0))
        return {
            "ok": True,
            "project": principal.project,
            "auth": self.auth.enabled,
            "window_seconds": window_s,
            "received": received,
            "last_received": iso(last) if last else None,
            "forwarding": self.forwarding_status(),
        }

    def forwarding_status(self) -> list[dict[str, Any]]:
        """Per upstream: delivered, pending, dropped, last error (nothing secret)."""
        return [] if self.forwarder is None else self.forwarder.status()
