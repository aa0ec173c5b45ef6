"""The JSON the pages fetch: traces, one trace with its logs, logs; all via ``Pipeline.query``.

Page parameters (``q``, ``page``...) are translated into the query API's own, so the
pages and ``/v1/*/query`` answer from the same code. Unknown page parameters are
refused with a 400 naming them, like the query API does.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from telemetryflow.collector._pipeline import Pipeline
from telemetryflow.collector.ingest._decode import BadRequestError
from telemetryflow.collector.query._params import iso
from telemetryflow.collector.server._auth import Principal
from telemetryflow.collector.web._security import RefusedError, error
from telemetryflow.collector.web._session import SessionStore
from telemetryflow.collector.web._shape import flat_trace, list_row, log_row

__all__ = [
    "LOG_PARAMS",
    "PAGE_SIZE",
    "TRACE_LOG_LIMIT",
    "WebApi",
    "admit",
    "log_params",
    "query_params",
]

PAGE_SIZE = 50
"""Traces per page of the trace list."""
_MAX_OFFSET = 1000  # the query API answers at most 1,000 traces per call
TRACE_LOG_LIMIT = 2000
"""Logs shown inline on a trace page, oldest first."""
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
_TRACE_PARAMS = ("service", "q", "min_duration", "error", "since", "until", "page")
LOG_PARAMS = ("q", "severity", "service", "trace_id", "since", "until", "limit")
_LOG_LIMIT = 200
# page parameter -> query parameter
_TRACE_QUERY_NAMES = (
    ("service", "service"), ("q", "name_contains"), ("min_duration", "min_duration"),
    ("error", "error"), ("since", "since"),
)  # fmt: skip
_LOG_QUERY_NAMES = (
    ("q", "contains"), ("severity", "severity"), ("service", "service"),
    ("trace_id", "trace_id"), ("since", "since"), ("until", "until"),
)  # fmt: skip


def query_params(request: Request, known: tuple[str, ...]) -> dict[str, str]:
    raw = {k: v for k, v in request.query_params.items() if v != ""}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise BadRequestError(
            400, f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return raw


def _page(raw: dict[str, str]) -> int:
    try:
        page = int(raw.get("page", "0"))
    except ValueError:
        raise BadRequestError(400, "page must be an integer") from None
    if not 0 <= page < _MAX_OFFSET // PAGE_SIZE:
        raise BadRequestError(400, f"page must be between 0 and {_MAX_OFFSET // PAGE_SIZE - 1}")
    return page


def admit(pipeline: Pipeline, sessions: SessionStore, request: Request) -> Principal:
    """The caller's principal, within the same rate limit as the query API.

    Raises:
        RefusedError: no valid session or key (401), or over the rate limit (429).
    """
    principal = sessions.principal(request)
    if principal is None:
        raise RefusedError(401, "sign in with an API key")
    wait = pipeline.limiter.acquire(principal.key_id)
    if wait > 0:
        retry = {"Retry-After": str(max(1, math.ceil(wait)))}
        raise RefusedError(429, "rate limit exceeded; retry later", retry)
    return principal


class WebApi:
    """Endpoints bound to one pipeline and one session store."""

    def __init__(self, pipeline: Pipeline, sessions: SessionStore) -> None:
        self.pipeline = pipeline
        self.sessions = sessions

    def _query(self, signal: str, principal: Principal, params: dict[str, Any]) -> Any:
        return self.pipeline.query(signal, principal, params)

    async def session(self, request: Request) -> Response:
        principal = admit(self.pipeline, self.sessions, request)
        return JSONResponse({"project": principal.project, "auth": self.sessions.required})

    async def traces(self, request: Request) -> Response:
        """The trace list, newest first; pages share one pinned ``until``."""
        principal = admit(self.pipeline, self.sessions, request)
        raw = query_params(request, _TRACE_PARAMS)
        page = _page(raw)
        # pinned to a microsecond so that the next page's offsets line up exactly
        until = raw.get("until") or iso(time.time_ns() // 1000 * 1000)
        limit = min(_MAX_OFFSET, (page + 1) * PAGE_SIZE + 1)
        params: dict[str, Any] = {"detail": "false", "until": until, "limit": str(limit)}
        for ours, theirs in _TRACE_QUERY_NAMES:
            if ours in raw:
                params[theirs] = raw[ours]
        answer = await run_in_threadpool(self._query, "traces", principal, params)
        rows = answer["traces"][page * PAGE_SIZE :]
        return JSONResponse({
            "traces": [list_row(t) for t in rows[:PAGE_SIZE]],
            "page": page,
            "more": len(rows) > PAGE_SIZE,
            "since": answer["since"],
            "until": answer["until"],
            "project": principal.project,
        })  # fmt: skip

    async def trace(self, request: Request) -> Response:
        """One trace as display rows, with its logs in time order."""
        principal = admit(self.pipeline, self.sessions, request)
        trace_id = request.path_params["trace_id"]
        if not _TRACE_ID.match(trace_id):
            return error(400, "trace_id must be 32 hexadecimal characters")
        answer = await run_in_threadpool(self._trace, principal, trace_id.lower())
        if answer is None:
            return error(404, "no such trace in this project")
        return JSONResponse(answer)

    def _trace(self, principal: Principal, trace_id: str) -> dict[str, Any] | None:
        found = self._query("traces", principal, {"trace_id": trace_id})["traces"]
        if not found:
            return None
        summary = found[0]
        start = summary["start_unix_nano"]
        # logs of a trace may carry any client clock: look from 1970 to a day ahead
        logs = self._query("logs", principal, {
            "trace_id": trace_id, "since": "0", "limit": str(TRACE_LOG_LIMIT + 1),
            "until": iso(time.time_ns() + 86_400 * 10**9),
        })["logs"]  # fmt: skip
        shown = sorted(logs[:TRACE_LOG_LIMIT], key=lambda r: r["time_unix_nano"])
        return {
            **list_row(summary),
            **flat_trace(summary["spans"], start),
            "logs": [log_row(r, start) for r in shown],
            "logs_truncated": len(logs) > TRACE_LOG_LIMIT,
            "project": principal.project,
        }

    async def logs(self, request: Request) -> Response:
        principal = admit(self.pipeline, self.sessions, request)
        params = log_params(query_params(request, LOG_PARAMS))
        answer = await run_in_threadpool(self._query, "logs", principal, params)
        return JSONResponse({
            "logs": [log_row(r) for r in answer["logs"]],
            "since": answer["since"],
            "until": answer["until"],
            "project": principal.project,
        })  # fmt: skip


def log_params(raw: dict[str, str]) -> dict[str, Any]:
    """Page parameters of the log views → the log query's."""
    params: dict[str, Any] = {"limit": raw.get("limit", str(_LOG_LIMIT))}
    for ours, theirs in _LOG_QUERY_NAMES:
        if ours in raw:
            params[theirs] = raw[ours]
    return params
