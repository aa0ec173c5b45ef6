"""What the collector's pipeline needs from a store, whichever engine holds the data.

Two backends implement it: SQLite (``store/sqlite/_backend.py``, the embedded file and
the default) and ClickHouse (``store/clickhouse/_backend.py``, the OpenTelemetry
Collector exporter's tables over chDB or a server). The pipeline, both receivers, the
query API and the web view talk to this interface only; a batch is whatever the backend
builds in :meth:`Backend.rows` and takes back in :meth:`Backend.submit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from telemetryflow.collector.query._gate import QueryGate
from telemetryflow.collector.store._writes import WriteResult

__all__ = ["Backend"]


class Backend(Protocol):
    """A store: batches in, answers out."""

    kind: str
    """``sqlite`` or ``clickhouse``."""

    @property
    def retention_seconds(self) -> float:
        """How far back data is kept (the default window of the metric name listing)."""
        ...

    def rows(
        self, signal: str, request: Any, project: str, received_ns: int
    ) -> tuple[Any | None, int, str]:
        """The batch for an OTLP request (``None``: nothing to store), items refused, why."""
        ...

    def captures_batch(self, errors: list[Any], events: list[Any]) -> Any:
        """A batch of error occurrences and product events (``_errors_events`` rows)."""
        ...

    def points_batch(
        self, rows: list[Any], idempotency: tuple[str, str, dict[str, Any]] | None = None
    ) -> Any:
        """A batch of 001 report/batch points, stored once per idempotency key."""
        ...

    def submit(self, batch: Any, timeout: float = 30.0) -> WriteResult:
        """Store ``batch``; raises ``OverloadedError`` (503) when it cannot now."""
        ...

    async def submit_async(self, batch: Any, timeout: float = 30.0) -> WriteResult:
        """:meth:`submit` on an event loop."""
        ...

    def query(
        self,
        signal: str,
        project: str,
        params: Mapping[str, Any],
        limits: Any,
        gate: QueryGate,
    ) -> Any:
        """Answer ``logs``, ``traces``, ``metrics`` or ``metric_names`` within the gate's
        deadline (past it: ``BadRequestError`` 422)."""
        ...

    def status_counts(self, project: str, since_ns: int) -> tuple[dict[str, int], int]:
        """Spans, metric points and logs of ``project`` since ``since_ns``; the newest."""
        ...

    def error_groups(self, project: str, params: Mapping[str, Any]) -> dict[str, Any]: ...

    def find_error(self, project: str, error_id: str) -> dict[str, Any] | None: ...

    def event_counts(self, project: str, params: Mapping[str, Any]) -> dict[str, Any]: ...

    def flag_evaluations(
        self, project: str, params: Mapping[str, Any], gate: QueryGate
    ) -> dict[str, Any]:
        """Feature flag evaluations per flag and user over a window, counted in SQL
        (``query/_flags.py``), within the gate's deadline."""
        ...

    def close(self, timeout: float = 30.0) -> None:
        """Store what is queued, then release the engine."""
        ...
