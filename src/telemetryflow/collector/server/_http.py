"""The HTTP side as a Starlette app: OTLP/HTTP, the 001 metric API, queries, status, OpenAPI,
and the web view (``collector/web``, under ``/ui``).

Order of checks on every request: route and method (404/405), authentication from
headers (401), rate limit (429), content type (415), declared length (411/413), the
in-flight memory budget (503). Only then is the body read (408 past its deadline, see
``_http_protocol.py``), inflated under the size cap (413/400) and parsed (400); see
``_http_admission.py``. The work itself (inflating, parsing JSON and protobuf,
storing, querying) runs on worker threads through the shared :class:`Pipeline`; the
event loop reads and writes bytes and encodes the (bounded) JSON answers. Small OTLP
bodies (below ``_SMALL_BODY`` received and inflated) are the exception: parsed on the
loop, which then awaits their commit, as the trip to a thread would cost more than the
work.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from google.protobuf import json_format  # type: ignore[import-untyped]
from google.rpc import status_pb2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route, compile_path

from telemetryflow.collector._pipeline import SIGNALS, Pipeline, Signal
from telemetryflow.collector.ingest._decode import BadRequestError, decode_json, inflate, parse_otlp
from telemetryflow.collector.server._auth import Principal
from telemetryflow.collector.server._http_admission import (
    Admission,
    BodyBudget,
    RefusedError,
    Reservation,
    retry_after,
)
from telemetryflow.collector.server._limits import return_free_memory_to_the_os
from telemetryflow.collector.server._openapi import openapi_document
from telemetryflow.collector.store._writes import OverloadedError, StoreClosedError
from telemetryflow.collector.web import routes as web_routes

__all__ = ["ROUTES", "HTTPLimits", "create_app"]

_log = logging.getLogger("telemetryflow.collector")

_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
# HTTP status -> google.rpc.Code for OTLP error bodies
_RPC_CODES = {400: 3, 401: 16, 404: 5, 405: 12, 408: 4, 411: 3, 413: 3, 415: 3, 429: 8, 503: 14}
ROUTES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "/": (("GET",), "root", ""),
    "/v1/traces": (("POST",), "otlp", "traces"),
    "/v1/metrics": (("POST",), "otlp", "metrics"),
    "/v1/logs": (("POST",), "otlp", "logs"),
    "/v1/metrics/report": (("POST",), "report", ""),
    "/v1/metrics/batch": (("POST",), "batch", ""),
    "/v1/metrics/query": (("GET", "POST"), "query", "metrics"),
    "/v1/metrics/names": (("GET",), "query", "metric_names"),
    "/v1/logs/query": (("GET", "POST"), "query", "logs"),
    "/v1/traces/query": (("GET", "POST"), "query", "traces"),
    "/observability/metrics": (("GET", "POST"), "query", "metrics"),
    "/observability/logs": (("GET", "POST"), "query", "logs"),
    "/observability/traces": (("GET", "POST"), "query", "traces"),
    "/v1/observability/errors": (("GET", "POST"), "observability", "errors"),
    "/v1/observability/errors/{error_id}": (("GET",), "error_by_id", ""),
    "/v1/observability/events": (("GET", "POST"), "observability", "events"),
    "/v1/observability/metrics": (("POST",), "observability", "metrics"),
    "/v1/observability/flags/{key}": (("GET",), "flag", ""),
    "/v1/status": (("GET",), "status", ""),
    "/health": (("GET",), "health", ""),
    "/openapi.json": (("GET",), "openapi", ""),
}
"""path -> (methods, kind, argument). A trailing slash is ignored."""
_ROOT = {
    "service": "telemetryflow-collector",
    "api": "/openapi.json",
    "health": "/health",
    "message": "OTLP/HTTP on /v1/traces, /v1/metrics, /v1/logs; the query API is described "
    "in /openapi.json",
}

T = TypeVar("T")
_SMALL_BODY = 16 * 1024
"""OTLP bodies below this, received and inflated, are parsed and stored from the loop.

About 190 spans or 450 metric points: a few milliseconds of the loop at most, while the
trip to a thread (~60 us) is most of the cost of a request of ten. An SDK's default
batch of 512 spans (~40 KiB) goes to a thread."""


@dataclass(frozen=True)
class HTTPLimits:
    """What one request may cost: body size and the shared memory budget."""

    max_body: int
    max_inflight_bytes: int


class _Endpoints:
    """One handler per kind of route, sharing the admission checks and the error format.

    Work that blocks or burns CPU (inflating, parsing, storing, querying) goes to
    ``executor`` in one hop per request.
    """

    def __init__(self, pipeline: Pipeline, limits: HTTPLimits, executor: Executor) -> None:
        self.pipeline = pipeline
        self.limits = limits
        budget = BodyBudget(limits.max_inflight_bytes, self._after_burst)
        self.admission = Admission(pipeline, limits.max_body, budget)
        self._executor = executor

    def _after_burst(self) -> None:
        """A budget's worth of bodies came and went: hand their memory back, off the loop."""
        with contextlib.suppress(RuntimeError):  # the pool is shutting down
            self._executor.submit(return_free_memory_to_the_os)

    async def _in_thread(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args))

    def endpoint(self, kind: str, arg: str) -> Callable[[Request], Awaitable[Response]]:
        handler = getattr(self, f"_{kind}")

        async def run(request: Request) -> Response:
            reservation = Reservation(self.admission.budget)
            try:
                response: Response = await handler(request, arg, reservation)
                return response
            except RefusedError as exc:
                return error_response(request, kind, exc.status, exc.message, exc.headers)
            except BadRequestError as exc:
                return error_response(request, kind, exc.status, exc.message)
            except OverloadedError as exc:
                return error_response(request, kind, 503, "the collector is overloaded; retry "
                                      "later", retry_after(exc.retry_after))  # fmt: skip
            except (StoreClosedError, TimeoutError) as exc:
                return error_response(request, kind, 503, str(exc), retry_after(1))
            except Exception:
                _log.exception("unexpected error handling %s %s", request.method, request.url.path)
                return error_response(request, kind, 500, "internal error")
            finally:
                reservation.release()

        return run

    # -- handlers --------------------------------------------------------------------
    async def _root(self, request: Request, *_: Any) -> Response:
        """A browser is sent to the web view; any other client gets the API's signposts."""
        if "text/html" in (request.headers.get("accept") or ""):
            return RedirectResponse("/ui", 307)
        return json_response(200, _ROOT)

    async def _health(self, request: Request, *_: Any) -> Response:
        return json_response(200, {"status": "ok"})

    async def _openapi(self, request: Request, *_: Any) -> Response:
        return json_response(200, openapi_document())

    async def _status(self, request: Request, *_: Any) -> Response:
        principal = self.admission.authenticate(request)
        return json_response(200, await self._in_thread(self.pipeline.status, principal))

    async def _query(self, request: Request, arg: str, reservation: Reservation) -> Response:
        principal = self.admission.authenticate(request)
        if request.method == "GET":
            query = request.scope["query_string"].decode("latin-1")
            params: Any = dict(parse_qsl(query, keep_blank_values=False))
        elif Admission.has_body(request):
            params = await self._json_body(request, reservation)
            if not isinstance(params, dict):
                raise BadRequestError(400, "query body must be a JSON object")
        else:
            params = {}
        try:
            answer = await self._in_thread(self.pipeline.query, arg, principal, params)
        except KeyError as exc:
            if exc.args != (arg,):
                raise
            raise RefusedError(404, f"the {arg} query is not available") from None
        return json_response(200, answer)

    async def _report(self, request: Request, arg: str, reservation: Reservation) -> Response:
        principal = self.admission.authenticate(request)
        body = await self._json_body(request, reservation)
        return json_response(200, await self._in_thread(self.pipeline.report, principal, body))

    async def _batch(self, request: Request, arg: str, reservation: Reservation) -> Response:
        principal = self.admission.authenticate(request)
        body = await self._json_body(request, reservation)
        return json_response(200, await self._in_thread(self.pipeline.batch, principal, body))

    async def _otlp(self, request: Request, signal_name: str, reservation: Reservation) -> Response:
        principal = self.admission.authenticate(request)
        is_json = Admission.content_type(request, (_PROTOBUF, _JSON)) == _JSON
        raw = await self.admission.read_body(request, reservation)
        encoding = request.headers.get("content-encoding") or ""
        signal = SIGNALS[signal_name]
        held = reservation.held
        body = self._inflate_small(raw, encoding, reservation)
        if body is None:  # large: every step on a worker thread, the loop stays free
            reserve = _credited(reservation.take, reservation.held - held)
            payload = await self._in_thread(
                self._ingest, signal, principal, raw, encoding, is_json, reserve
            )
        else:
            message = parse_otlp(body, is_json, signal.request())
            del raw, body
            payload = _encoded(await self.pipeline.export_async(signal, principal, message),
                               is_json)  # fmt: skip
        return Response(payload, 200, media_type=_JSON if is_json else _PROTOBUF)

    def _inflate_small(
        self, raw: bytearray, encoding: str, reservation: Reservation
    ) -> bytes | bytearray | None:
        """The body inflated on the loop if it stays under ``_SMALL_BODY``, else ``None``."""
        if len(raw) >= _SMALL_BODY:
            return None
        limit = min(_SMALL_BODY, self.limits.max_body)
        try:
            body = inflate(raw, encoding, limit, reservation.take)
        except BadRequestError as exc:
            if exc.status != 413:
                raise
            return None  # past the loop's share (not yet the cap): inflated again on a thread
        return body if len(body) < _SMALL_BODY else None

    def _ingest(self, signal: Signal, principal: Principal, raw: bytearray, encoding: str,
                is_json: bool, reserve: Callable[[int], None]) -> bytes:  # fmt: skip
        """Inflate, parse, store and encode the answer: one trip to a worker thread."""
        body = inflate(raw, encoding, self.limits.max_body, reserve)
        request = parse_otlp(body, is_json, signal.request())
        del raw, body
        return _encoded(self.pipeline.export(signal, principal, request), is_json)

    # -- the observability API: errors, events, metrics, flags ----------------------
    async def _observability(
        self, request: Request, arg: str, reservation: Reservation
    ) -> Response:
        """``POST`` records an error, event or metric point; ``GET`` lists errors or events."""
        principal = self.admission.authenticate(request)
        pipeline = self.pipeline
        if request.method == "GET":
            listing = pipeline.error_groups if arg == "errors" else pipeline.event_counts
            return json_response(200, await self._in_thread(listing, principal, _query(request)))
        body = await self._json_body(request, reservation)
        record = {"errors": pipeline.capture_error, "events": pipeline.track_event,
                  "metrics": pipeline.report_metric}[arg]  # fmt: skip
        return json_response(200, await self._in_thread(record, principal, body))

    async def _error_by_id(self, request: Request, *_: Any) -> Response:
        principal = self.admission.authenticate(request)
        error_id = request.path_params["error_id"]
        return json_response(200, await self._in_thread(self.pipeline.error_by_id, principal,
                                                        error_id))  # fmt: skip

    async def _flag(self, request: Request, *_: Any) -> Response:
        """Pure and in memory: answered on the event loop."""
        principal = self.admission.authenticate(request)
        key = request.path_params["key"]
        return json_response(200, self.pipeline.evaluate_flag(principal, key, _query(request)))

    async def _json_body(self, request: Request, reservation: Reservation) -> Any:
        Admission.content_type(request, (_JSON,))
        raw = await self.admission.read_body(request, reservation)
        encoding = request.headers.get("content-encoding") or ""
        return await self._in_thread(
            _inflate_json, raw, encoding, self.limits.max_body, reservation.take
        )


def _inflate_json(raw: bytearray, encoding: str, limit: int, take: Callable[[int], None]) -> Any:
    """Inflate and parse a JSON body in one trip to a worker thread, so the loop is free
    while the body inflates. ``json`` parses in C holding the GIL, so a body of many
    megabytes still pauses the loop for its parse; ``--max-body-size`` bounds that."""
    return decode_json(inflate(raw, encoding, limit, take))


def _credited(take: Callable[[int], None], credit: int) -> Callable[[int], None]:
    """``take`` past the first ``credit`` bytes, already reserved by an earlier attempt."""

    def reserve(size: int) -> None:
        nonlocal credit
        covered = min(size, credit)
        credit -= covered
        take(size - covered)

    return reserve


# -- responses -------------------------------------------------------------------------
def _encoded(response: Any, is_json: bool) -> bytes:
    if is_json:
        return str(json_format.MessageToJson(response, indent=None)).encode()
    return bytes(response.SerializeToString())


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    return Response(payload, status, headers=headers, media_type=_JSON)


def error_response(
    request: Request, kind: str, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    """An error in the form the route's clients read: OTLP ``Status`` or ``{"error": ...}``."""
    if kind != "otlp":
        return json_response(status, {"error": {"code": status, "message": message}}, headers)
    detail = status_pb2.Status(code=_RPC_CODES.get(status, 13), message=message)
    if (request.headers.get("content-type") or "").startswith(_JSON):
        payload = str(json_format.MessageToJson(detail, indent=None)).encode()
        return Response(payload, status, headers=headers, media_type=_JSON)
    return Response(detail.SerializeToString(), status, headers=headers, media_type=_PROTOBUF)


def _query(request: Request) -> dict[str, str]:
    return dict(parse_qsl(request.scope["query_string"].decode("latin-1")))


def _normalise(path: str) -> str:
    return path.rstrip("/") or "/"


class _Front:
    """In front of the router: trailing slashes dropped, OTLP exports sent straight on.

    ``/v1/traces/`` is ``/v1/traces``. ``POST`` to the three OTLP paths, nearly every
    request a collector gets, goes to its handler without Starlette's middleware and
    route matching (about 7 of the 26 µs the app spent on a small export). It is the
    same handler the router would call, so every admission check and error is the
    same; any other method or path goes through the router (404, 405, the rest),
    which is :attr:`app`.
    """

    def __init__(self, app: Any, otlp: dict[str, Callable[[Request], Awaitable[Response]]]) -> None:
        self.app = app
        self._otlp = otlp

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                path = _normalise(path)
                scope = {**scope, "path": path}
            handler = self._otlp.get(path) if scope["method"] == "POST" else None
            if handler is not None:
                response = await handler(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


_TEMPLATES = [(compile_path(path)[0], route) for path, route in ROUTES.items() if "{" in path]


def _route_of(path: str) -> tuple[tuple[str, ...], str, str] | None:
    """The :data:`ROUTES` entry serving ``path``, path parameters included."""
    route = ROUTES.get(path)
    if route is None:
        route = next((r for pattern, r in _TEMPLATES if pattern.match(path)), None)
    return route


async def _not_routed(request: Request, exc: Exception) -> Response:
    """404 and 405 from the router, in the route's own error format."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    route = _route_of(_normalise(request.url.path))
    kind = route[1] if route else ""
    if status == 405 and route is not None:
        message = f"{request.method} is not allowed here"
        return error_response(request, kind, 405, message, {"Allow": ", ".join(route[0])})
    return error_response(request, kind, status, f"no such endpoint: {request.url.path}")


def create_app(pipeline: Pipeline, limits: HTTPLimits, executor: Executor) -> Any:
    """The collector's ASGI app: every route of :data:`ROUTES` on one :class:`Pipeline`."""
    endpoints = _Endpoints(pipeline, limits, executor)
    routes: list[BaseRoute] = [
        Route(path, endpoints.endpoint(kind, arg), methods=list(methods))
        for path, (methods, kind, arg) in ROUTES.items()
    ]
    routes += web_routes(pipeline)  # the web view, under /ui
    app = Starlette(routes=routes, exception_handlers={HTTPException: _not_routed})
    app.router.redirect_slashes = False
    otlp = {path: endpoints.endpoint(kind, arg) for path, (_, kind, arg) in ROUTES.items()
            if kind == "otlp"}  # fmt: skip
    return _Front(app, otlp)
