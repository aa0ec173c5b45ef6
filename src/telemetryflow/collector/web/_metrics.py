"""The JSON of the metric pages: the catalogue of names, and one metric's series over time.

Both read through :meth:`Pipeline.query` (``metric_names`` and ``metrics``), like the
query API. The chart needs points over time, so when the page gives no ``step`` the
window is cut into about :data:`TARGET_POINTS` buckets.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from telemetryflow.collector._pipeline import Pipeline
from telemetryflow.collector.query._params import parse_instant
from telemetryflow.collector.web._api import admit, query_params
from telemetryflow.collector.web._session import SessionStore

__all__ = ["TARGET_POINTS", "MetricsApi"]

TARGET_POINTS = 60
_NAME_PARAMS = ("service", "prefix")
_SERIES_PARAMS = ("agg", "group_by", "service", "since", "until", "step")
_DEFAULT_WINDOW_S = 3600
_NS = 1_000_000_000


def auto_step(raw: dict[str, str]) -> str:
    """A step giving about :data:`TARGET_POINTS` buckets over the asked window."""
    now = time.time_ns()
    until = parse_instant(raw["until"], "until", now) if "until" in raw else now
    since = (parse_instant(raw["since"], "since", now) if "since" in raw
             else until - _DEFAULT_WINDOW_S * _NS)  # fmt: skip
    seconds = max(1, round((until - since) / _NS / TARGET_POINTS))
    return f"{seconds}s"


class MetricsApi:
    """Endpoints bound to one pipeline and one session store."""

    def __init__(self, pipeline: Pipeline, sessions: SessionStore) -> None:
        self.pipeline = pipeline
        self.sessions = sessions

    async def names(self, request: Request) -> Response:
        principal = admit(self.pipeline, self.sessions, request)
        params = query_params(request, _NAME_PARAMS)
        answer = await run_in_threadpool(self.pipeline.query, "metric_names", principal, params)
        return JSONResponse({"metrics": answer["metrics"], "project": principal.project})

    async def series(self, request: Request) -> Response:
        principal = admit(self.pipeline, self.sessions, request)
        raw = query_params(request, _SERIES_PARAMS)
        params: dict[str, Any] = {"name": request.path_params["name"], "agg": "avg", **raw}
        params.setdefault("since", f"{_DEFAULT_WINDOW_S}s")
        params.setdefault("step", auto_step(params))
        params["exemplars"] = "true"  # the chart links measured values to their traces
        answer = await run_in_threadpool(self.pipeline.query, "metrics", principal, params)
        tag_keys = sorted({key for s in answer["series"] for key in s["tags"]})
        return JSONResponse({**answer, "tag_keys": tag_keys, "project": principal.project})
