"""Live tail of logs as Server-Sent Events.

Each stream polls the log query every half second for records stamped within the
last :data:`LOOKBACK_S` seconds (clients' clocks and batching make records arrive
late and out of order), and sends the ones it has not sent yet, oldest first. A
stream is bounded: it ends after :data:`MAX_STREAM_S` seconds or :data:`MAX_EVENTS`
records (the browser's ``EventSource`` reconnects by itself), it stops as soon as
the client goes away (a comment line every second finds that out), and at most
``max_streams`` run at once (more get 503).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from telemetryflow.collector._pipeline import Pipeline
from telemetryflow.collector.query._params import iso
from telemetryflow.collector.server._auth import Principal
from telemetryflow.collector.web._api import LOG_PARAMS, admit, log_params, query_params
from telemetryflow.collector.web._security import error
from telemetryflow.collector.web._session import SessionStore
from telemetryflow.collector.web._shape import log_row

__all__ = ["LOOKBACK_S", "MAX_EVENTS", "MAX_STREAM_S", "LogTail"]

POLL_S = 0.5
LOOKBACK_S = 60.0
MAX_STREAM_S = 300.0
MAX_EVENTS = 20_000
_BATCH = 1000
# A client that closes its socket is only noticed when a write fails (a half-closed
# connection keeps waiting for its answer), so a quiet stream writes a comment often.
_KEEPALIVE_S = 1.0
_NS = 1_000_000_000


def _identity(record: dict[str, Any]) -> str:
    """What tells two records apart (the query answers carry no row id)."""
    return json.dumps(
        [record["time_unix_nano"], record["service"], record["severity_number"],
         record["body"], record["trace_id"], record["span_id"], record["attributes"]],
        sort_keys=True, default=str,
    )  # fmt: skip


def _event(kind: str, data: Any, event_id: int | None = None) -> bytes:
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    head = "" if event_id is None else f"id: {event_id}\n"
    return f"{head}event: {kind}\ndata: {payload}\n\n".encode()


def _last_event_id(request: Request) -> int | None:
    """The time of the last record a reconnecting browser was sent, if it says so."""
    value = request.headers.get("last-event-id", "")
    return int(value) if value.isdigit() and len(value) <= 19 else None


class LogTail:
    """The ``/ui/api/logs/tail`` endpoint and its stream limit."""

    def __init__(self, pipeline: Pipeline, sessions: SessionStore, max_streams: int = 16) -> None:
        self.pipeline = pipeline
        self.sessions = sessions
        self.max_streams = max_streams
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.active = 0

    def close(self) -> None:
        """End every open stream within a poll, and refuse new ones (the server is stopping)."""
        self._closing.set()

    def _claim(self) -> bool:
        with self._lock:
            if self.active >= self.max_streams:
                return False
            self.active += 1
            return True

    def _release(self) -> None:
        with self._lock:
            self.active -= 1

    async def endpoint(self, request: Request) -> Response:
        principal = admit(self.pipeline, self.sessions, request)
        raw = query_params(request, LOG_PARAMS)
        raw.pop("since", None)
        raw.pop("until", None)
        params = log_params(raw)
        params["limit"] = str(_BATCH)
        # a bad filter is refused now, as a 400, not inside the stream
        await run_in_threadpool(self._poll, principal, params, set())
        if self._closing.is_set():
            return error(503, "the collector is stopping", {"Retry-After": "5"})
        if not self._claim():
            return error(503, "too many live tails open; close one and retry",
                         {"Retry-After": "5"})  # fmt: skip
        return _TailResponse(
            self._release,
            self._stream(request, principal, params, _last_event_id(request)),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    def _poll(
        self, principal: Principal, params: dict[str, Any], seen: set[str]
    ) -> tuple[list[dict[str, Any]], bool]:
        """Records not in ``seen`` (which it updates), oldest first; and if the batch was full."""
        now = time.time_ns()
        query = {**params, "since": iso(now - int(LOOKBACK_S * _NS)),
                 "until": iso(now + 60 * _NS)}  # fmt: skip
        logs = self.pipeline.query("logs", principal, query)["logs"]
        fresh = []
        current = set()
        for record in logs:
            key = _identity(record)
            current.add(key)
            if key not in seen:
                fresh.append(record)
        # forget what fell out of the window, so ``seen`` stays bounded
        seen.intersection_update(current)
        seen.update(current)
        fresh.reverse()
        return fresh, len(logs) >= _BATCH

    async def _stream(
        self, request: Request, principal: Principal, params: dict[str, Any], after: int | None
    ) -> AsyncIterator[bytes]:
        seen: set[str] = set()
        sent = 0
        deadline = time.monotonic() + MAX_STREAM_S
        # Records already there are the page's job: the tail starts from now, or, when
        # the browser reconnects, from the last record it was sent (Last-Event-ID).
        fresh, _ = await run_in_threadpool(self._poll, principal, params, seen)
        missed = [] if after is None else [r for r in fresh if r["time_unix_nano"] > after]
        yield b"retry: 1000\n\n" + _event("ready", {"lookback_seconds": LOOKBACK_S})
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and sent < MAX_EVENTS and not self._closing.is_set():
            if await request.is_disconnected():
                return
            if missed:
                fresh, full, missed = missed, False, []
            else:
                fresh, full = await run_in_threadpool(self._poll, principal, params, seen)
            if full:
                yield _event("notice", {"message": "more records than the tail keeps up with"})
            for record in fresh[: MAX_EVENTS - sent]:
                yield _event("log", log_row(record), record["time_unix_nano"])
            sent += len(fresh)
            if fresh or full:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > _KEEPALIVE_S:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            await asyncio.sleep(POLL_S)


class _TailResponse(StreamingResponse):
    """A stream that gives its slot back however it ends, even if it never started."""

    def __init__(self, release: Callable[[], None], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release_slot = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release_slot()
