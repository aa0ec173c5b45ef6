"""What the HTTP and gRPC receivers share: decode OTLP, store rows, run queries.

Both transports call the same :class:`Pipeline`, so authentication, rate limits,
partial success and project scoping behave the same whichever one a client uses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
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

from telemetryflow.collector.api._observability import ObservabilityAPI
from telemetryflow.collector.ingest._metrics_api import (
    FINGERPRINT,
    batch_rows,
    check_replay,
    fingerprint,
    report_row,
)
from telemetryflow.collector.query._gate import QueryGate
from telemetryflow.collector.query._metrics import QueryLimits
from telemetryflow.collector.query._params import iso
from telemetryflow.collector.server._auth import Authenticator, Principal, RateLimiter
from telemetryflow.collector.store._backend import Backend
from telemetryflow.collector.store.sqlite._backend import SqliteBackend
from telemetryflow.collector.store.sqlite._store import Store

if TYPE_CHECKING:
    from telemetryflow.collector.forward import Forwarder

__all__ = ["SIGNALS", "Pipeline", "Signal"]


@dataclass(frozen=True)
class Signal:
    """How one OTLP signal is decoded, stored and answered."""

    name: str
    request: type[Message]
    response: type[Message]
    rejected_field: str


SIGNALS: dict[str, Signal] = {
    "traces": Signal("traces", ExportTraceServiceRequest, ExportTraceServiceResponse,
                     "rejected_spans"),
    "metrics": Signal("metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse,
                      "rejected_data_points"),
    "logs": Signal("logs", ExportLogsServiceRequest, ExportLogsServiceResponse,
                   "rejected_log_records"),
}  # fmt: skip


def _item_count(signal: str, request: Any) -> int:
    """Spans, data points or log records in an OTLP request (counted only to forward)."""
    if signal == "traces":
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if signal == "logs":
        return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    points = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    points += len(getattr(metric, kind).data_points)
    return points


class Pipeline(ObservabilityAPI):
    """Authentication, admission and storage shared by both receivers.

    The observability endpoints (errors, events, metrics, flags) come from
    :class:`ObservabilityAPI`.
    """

    def __init__(
        self,
        store: Store | Backend,
        auth: Authenticator,
        limiter: RateLimiter,
        query_limits: QueryLimits | None = None,
        query_gate: QueryGate | None = None,
    ) -> None:
        """``store``: a backend, or the SQLite :class:`Store` (served by its backend)."""
        self.backend: Backend = SqliteBackend(store) if isinstance(store, Store) else store
        self.auth = auth
        self.limiter = limiter
        self.query_limits = QueryLimits.from_env() if query_limits is None else query_limits
        self.query_gate = QueryGate() if query_gate is None else query_gate
        self.forwarder: Forwarder | None = None
        """Copies of what was accepted go to its upstreams (``--forward``): OTLP
        requests as received, REST writes made into OTLP."""

    def export(self, signal: Signal, principal: Principal, request: Any) -> Message:
        """Store an OTLP export request; answer with partial success when needed.

        Raises:
            OverloadedError: the write queue is full, or the disk is
                (``StorageFullError``); nothing stored.
        """
        batch, response = self._export_batch(signal, principal, request)
        if batch is not None:
            self.backend.submit(batch)
            self._forward(signal, request, response)
        return response

    async def export_async(self, signal: Signal, principal: Principal, request: Any) -> Message:
        """:meth:`export` on an event loop: rows built here, the commit awaited, no thread.

        For small requests, where a trip to a worker thread costs more than the work.

        Raises:
            The same as :meth:`export`.
        """
        batch, response = self._export_batch(signal, principal, request)
        if batch is not None:
            await self.backend.submit_async(batch)
            self._forward(signal, request, response)
        return response

    def _forward(self, signal: Signal, request: Any, response: Any) -> None:
        """Hand a committed request to the upstreams, minus what was refused
        (never blocks: each upstream queues it on its own)."""
        if self.forwarder is None:
            return
        rejected = getattr(response.partial_success, signal.rejected_field)
        stored = _item_count(signal.name, request) - rejected
        self.forwarder.offer(signal.name, request, stored, rejected)

    def _export_batch(
        self, signal: Signal, principal: Principal, request: Any
    ) -> tuple[Any, Message]:
        """The batch to store (``None`` when there is nothing) and the answer to send."""
        batch, rejected, message = self.backend.rows(
            signal.name, request, principal.project, time.time_ns()
        )
        response = signal.response()
        if rejected:
            partial = response.partial_success  # type: ignore[attr-defined]
            setattr(partial, signal.rejected_field, rejected)
            partial.error_message = message
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
        """Store ``rows`` (once per idempotency key), then forward them; a repeated key
        stores and forwards nothing and answers what the first request was answered."""
        if key is None:
            self.backend.submit(self.backend.points_batch(rows))
            self._forward_points(rows)
            return {**answer, "duplicate": False}
        digest = fingerprint(content)
        stored = {**answer, FINGERPRINT: digest}
        result = self.backend.submit(
            self.backend.points_batch(rows, (principal.project, f"{kind}:{key}", stored))
        )
        if result.previous is not None:
            return {**check_replay(result.previous, digest, key), "duplicate": True}
        self._forward_points(rows)
        return {**answer, "duplicate": False}

    def _forward_points(self, rows: list[Any]) -> None:
        if self.forwarder is not None:
            self.forwarder.offer_points(rows)

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
        with gate.admit(principal.key_id):
            return self.backend.query(signal, principal.project, params, self.query_limits, gate)

    def flag_evaluations(self, principal: Principal, params: Mapping[str, Any]) -> dict[str, Any]:
        """Feature flag evaluations per flag and user, counted by the store (a query:
        admitted by :attr:`query_gate` and bounded by its deadline, as :meth:`query`)."""
        with self.query_gate.admit(principal.key_id):
            return self.backend.flag_evaluations(principal.project, params, self.query_gate)

    def status(self, principal: Principal, window_s: float = 900.0) -> dict[str, Any]:
        """What this project sent lately: counts over ``window_s`` and the last arrival."""
        since = time.time_ns() - int(window_s * 1e9)
        received, last = self.backend.status_counts(principal.project, since)
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
