"""The web view: pages under ``/ui`` served by the collector on its HTTP port.

:func:`routes` gives the Starlette routes the collector's HTTP app mounts. Pages are
static shells plus the package's own scripts and styles (nothing is fetched from
elsewhere); their data comes from ``/ui/api/*``, which reads through
:meth:`Pipeline.query`, the same code that answers the query API.
"""

from __future__ import annotations

import weakref

from starlette.routing import BaseRoute, Route

from telemetryflow.collector._pipeline import Pipeline
from telemetryflow.collector.web._api import WebApi
from telemetryflow.collector.web._insights import InsightsApi
from telemetryflow.collector.web._metrics import MetricsApi
from telemetryflow.collector.web._pages import Pages
from telemetryflow.collector.web._security import CSP, secured
from telemetryflow.collector.web._session import COOKIE, SessionStore
from telemetryflow.collector.web._tail import LogTail

__all__ = ["COOKIE", "CSP", "MAX_STREAMS", "SessionStore", "close_live_tails", "routes"]

MAX_STREAMS = 16
"""Live tails open at once, per collector, by default."""

_TAILS: weakref.WeakKeyDictionary[Pipeline, list[LogTail]] = weakref.WeakKeyDictionary()


def close_live_tails(pipeline: Pipeline) -> None:
    """End the live tails served for ``pipeline``: call before stopping the HTTP server.

    A stream never ends by itself within a server's grace period, so without this a
    browser left on a live tail would hold the shutdown until the grace runs out.
    """
    for tail in _TAILS.get(pipeline, ()):
        tail.close()


def routes(
    pipeline: Pipeline, sessions: SessionStore | None = None, *, max_streams: int = MAX_STREAMS
) -> list[BaseRoute]:
    """The web view's routes: pages, JSON and static files, all under ``/ui``.

    ``sessions`` defaults to a new in-memory store on ``pipeline.auth``;
    ``max_streams`` caps live tails open at once.
    """
    sessions = sessions or SessionStore(pipeline.auth)
    pages = Pages(sessions)
    api = WebApi(pipeline, sessions)
    tail = LogTail(pipeline, sessions, max_streams)
    _TAILS.setdefault(pipeline, []).append(tail)
    metrics = MetricsApi(pipeline, sessions)
    insights = InsightsApi(pipeline, sessions)
    table = [
        ("/ui", pages.view("overview"), ("GET", "HEAD"), "home"),
        ("/ui/traces", pages.view("traces"), ("GET", "HEAD"), "traces"),
        ("/ui/traces/{trace_id}", pages.view("trace"), ("GET", "HEAD"), "trace"),
        ("/ui/logs", pages.view("logs"), ("GET", "HEAD"), "logs"),
        ("/ui/metrics", pages.view("metrics"), ("GET", "HEAD"), "metrics"),
        ("/ui/metrics/{name:path}", pages.view("metric"), ("GET", "HEAD"), "metric"),
        ("/ui/errors", pages.view("errors"), ("GET", "HEAD"), "errors"),
        ("/ui/events", pages.view("events"), ("GET", "HEAD"), "events"),
        ("/ui/signin", pages.signin_page, ("GET", "HEAD"), "signin_page"),
        ("/ui/signin", pages.signin, ("POST",), "signin"),
        ("/ui/signout", pages.signout, ("POST",), "signout"),
        ("/ui/static/{name}", pages.static, ("GET", "HEAD"), "static"),
        ("/ui/api/session", api.session, ("GET",), "api_session"),
        ("/ui/api/traces", api.traces, ("GET",), "api_traces"),
        ("/ui/api/traces/{trace_id}", api.trace, ("GET",), "api_trace"),
        ("/ui/api/logs", api.logs, ("GET",), "api_logs"),
        ("/ui/api/logs/tail", tail.endpoint, ("GET",), "api_tail"),
        ("/ui/api/metrics", metrics.names, ("GET",), "api_metrics"),
        ("/ui/api/metrics/{name:path}", metrics.series, ("GET",), "api_metric"),
        ("/ui/api/errors", insights.errors, ("GET",), "api_errors"),
        ("/ui/api/errors/{error_id}", insights.error, ("GET",), "api_error"),
        ("/ui/api/events", insights.events, ("GET",), "api_events"),
        ("/ui/api/overview", insights.overview, ("GET",), "api_overview"),
        ("/ui/api/{rest:path}", pages.no_endpoint, ("GET", "HEAD"), "api_not_found"),
        ("/ui/{rest:path}", pages.not_found, ("GET", "HEAD"), "not_found"),
    ]
    return [
        Route(path, secured(endpoint), methods=list(methods), name=name)
        for path, endpoint, methods, name in table
    ]
