"""The JSON of the errors, events and overview pages, read through the :class:`Pipeline`.

Errors come from ``error_groups``/``error_by_id`` and product events from
``event_counts``: the same model the observability listings answer from. Flag
evaluations are the SDK's ``feature_flag.evaluation`` log records, counted per flag
and user by the store (``flag_evaluations``: SQL over every record of the window).
The overview reads the middleware's ``http.server.request.duration``
histogram through the metric query, grouped by service and route.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from telemetryflow.collector._pipeline import Pipeline
from telemetryflow.collector.query._params import parse_instant
from telemetryflow.collector.server._auth import Principal
from telemetryflow.collector.web._api import admit, query_params
from telemetryflow.collector.web._session import SessionStore

__all__ = ["DURATION_METRIC", "InsightsApi"]

DURATION_METRIC = "http.server.request.duration"
"""The middleware's request histogram the overview summarises."""
_ERROR_PARAMS = ("service", "since", "until", "limit")
_EVENT_PARAMS = ("service", "since", "until")
_OVERVIEW_PARAMS = ("service", "since")
_ROUTE = ("service.name", "http.route")
_NS = 1_000_000_000


def _route_key(tags: dict[str, str]) -> tuple[str, str]:
    return tags.get("service.name", ""), tags.get("http.route", "")


class InsightsApi:
    """Endpoints bound to one pipeline and one session store."""

    def __init__(self, pipeline: Pipeline, sessions: SessionStore) -> None:
        self.pipeline = pipeline
        self.sessions = sessions

    async def errors(self, request: Request) -> Response:
        """Error groups, most recently seen first, each with its latest occurrence."""
        principal = admit(self.pipeline, self.sessions, request)
        params = query_params(request, _ERROR_PARAMS)
        answer = await run_in_threadpool(self.pipeline.error_groups, principal, params)
        return JSONResponse({**answer, "project": principal.project})

    async def error(self, request: Request) -> Response:
        """One occurrence by its ``error_id``, with its group's figures."""
        principal = admit(self.pipeline, self.sessions, request)
        error_id = request.path_params["error_id"]
        answer = await run_in_threadpool(self.pipeline.error_by_id, principal, error_id)
        return JSONResponse({**answer, "project": principal.project})

    async def events(self, request: Request) -> Response:
        """Counts and distinct users per event name, and who saw which flag variant."""
        principal = admit(self.pipeline, self.sessions, request)
        params = query_params(request, _EVENT_PARAMS)
        answer = await run_in_threadpool(self._events, principal, params)
        return JSONResponse(answer)

    def _events(self, principal: Principal, params: dict[str, str]) -> dict[str, Any]:
        params = {"since": "24h", **params}  # one window for events and evaluations alike
        counts = self.pipeline.event_counts(principal, params)
        flags = self.pipeline.flag_evaluations(principal, params)
        return {
            "events": counts["events"],
            "flags": flags["flags"],
            "flags_truncated": flags["truncated"],
            "project": principal.project,
        }

    async def overview(self, request: Request) -> Response:
        """Per service and route: requests, rate, error rate, p50 and p99; latest errors;
        each forwarding upstream's delivered, pending and dropped items."""
        principal = admit(self.pipeline, self.sessions, request)
        params = query_params(request, _OVERVIEW_PARAMS)
        answer = await run_in_threadpool(self._overview, principal, params)
        return JSONResponse(answer)

    def _overview(self, principal: Principal, raw: dict[str, str]) -> dict[str, Any]:
        now = time.time_ns()
        since_text = raw.get("since", "1h")
        since = parse_instant(since_text, "since", now)
        seconds = max(1.0, (now - since) / _NS)
        base: dict[str, Any] = {"name": DURATION_METRIC, "since": since_text, "until": "now"}
        if "service" in raw:
            base["service"] = raw["service"]
        routes: dict[tuple[str, str], dict[str, Any]] = {}
        for agg in ("count", "p50", "p99"):
            answer = self.pipeline.query(
                "metrics", principal, {**base, "agg": agg, "group_by": ",".join(_ROUTE)}
            )
            for series in answer["series"]:
                key = _route_key(series["tags"])
                row = routes.setdefault(key, {"service": key[0], "route": key[1], "errors": 0})
                row[agg if agg != "count" else "requests"] = series["value"]
        failed = self.pipeline.query("metrics", principal, {
            **base, "agg": "count", "group_by": ",".join((*_ROUTE, "http.response.status_code")),
        })  # fmt: skip
        for series in failed["series"]:
            failing = routes.get(_route_key(series["tags"]))
            status = series["tags"].get("http.response.status_code", "")
            if failing is not None and _server_error(status):
                failing["errors"] += series["value"] or 0
        rows = sorted(routes.values(), key=lambda r: (r["service"], r["route"]))
        for row in rows:
            requests = row.get("requests") or 0
            row["rate"] = requests / seconds
            row["error_rate"] = row["errors"] / requests if requests else 0.0
        groups = self.pipeline.error_groups(principal, {"limit": "5", **_only(raw, "service")})
        return {"routes": rows, "window_s": seconds, "errors": groups["groups"],
                "project": principal.project,
                "forwarding": self.pipeline.forwarding_status()}  # fmt: skip


def _server_error(status: str) -> bool:
    return status.isdigit() and int(status) >= 500


def _only(raw: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in raw.items() if k in names}
