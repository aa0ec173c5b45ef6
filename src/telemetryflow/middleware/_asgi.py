"""FastAPI/Starlette request instrumentation as pure ASGI middleware.

Not ``BaseHTTPMiddleware``: that runs the app in another task and buffers the
response, which breaks streaming timings, context variables and background tasks.
Here the app runs in the caller's task with the span current, ``send`` is wrapped to
see the status and the last body chunk, and anything that is not an HTTP request
(WebSocket, lifespan) is handed to the app untouched.

The route template is read from the scope after routing (Starlette records the
matched route there), so no route table is walked on the hot path; only routes
under a ``Mount`` need their mount prefixes rebuilt.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from opentelemetry.propagators.textmap import Getter

from telemetryflow._extras.facade import TelemetryFlowClient
from telemetryflow._recording.diagnostics import logger
from telemetryflow.middleware._fastapi_builtin import (
    has_settings,
    native_request_span,
    owning_app,
    switch_off,
    traces_requests,
)
from telemetryflow.middleware._http_attributes import (
    MiddlewareOptions,
    clip,
    header_attribute,
    redact_query,
    split_host,
)
from telemetryflow.middleware._http_common import (
    DURATION_METRIC,
    RequestRecord,
    ServerTelemetry,
    warn_failure,
)

__all__ = ["FastAPITelemetryMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_INSTALL_HINT = (
    "FastAPITelemetryMiddleware needs Starlette (or FastAPI): pip install 'telemetryflow[fastapi]'"
)
_MAX_MOUNT_DEPTH = 16


def _require_starlette() -> None:
    try:
        import starlette.routing  # noqa: F401
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc


class FastAPITelemetryMiddleware:
    """Traces and measures every HTTP request of a FastAPI or Starlette app.

    Example:
        >>> app.add_middleware(FastAPITelemetryMiddleware, client=client,
        ...                    excluded_paths=["/health"])

    Args:
        app: the ASGI app to wrap (Starlette passes it).
        client: the client to record with; until it is initialized (and after it is
            shut down) requests pass through untouched.
        excluded_paths: paths (relative to the app's ``root_path``) that get no span
            and no metrics: exact paths, or prefixes ending in ``*``.
        record_request_duration: record ``http.server.request.duration`` (seconds).
        record_request_count: count requests in ``http.server.request.count``.
        record_error_count: count 5xx responses and unhandled exceptions in
            ``http.server.error.count``.
        capture_request_headers: request headers to record as
            ``http.request.header.<name>``; secrets are always ``REDACTED``.
        capture_response_headers: the same for ``http.response.header.<name>``.
        redact_query_params: query parameters whose values are redacted in
            ``url.query``, on top of the built-in list.

    On a FastAPI release with built-in telemetry, adding the middleware turns off
    FastAPI's own request spans and metrics for that app (those bound for the global
    providers), so each request is recorded once and continues the caller's trace.

    Raises:
        ImportError: Starlette is not installed.
        TypeError, ValueError: an argument is invalid (e.g. a bad path pattern).
    """

    def __init__(
        self,
        app: ASGIApp,
        client: TelemetryFlowClient,
        excluded_paths: Iterable[str] | None = None,
        record_request_duration: bool = True,
        record_request_count: bool = True,
        record_error_count: bool = True,
        *,
        capture_request_headers: Iterable[str] | None = None,
        capture_response_headers: Iterable[str] | None = None,
        redact_query_params: Iterable[str] | None = None,
    ) -> None:
        _require_starlette()
        self.app = app
        options = MiddlewareOptions.build(
            record_request_duration=record_request_duration,
            record_request_count=record_request_count,
            record_error_count=record_error_count,
            excluded_paths=excluded_paths,
            capture_request_headers=capture_request_headers,
            capture_response_headers=capture_response_headers,
            redact_query_params=redact_query_params,
        )
        self._telemetry = ServerTelemetry(client, options)
        self._native_reported = False
        self._builtin_off(app, owning_app(FastAPITelemetryMiddleware))

    @staticmethod
    def _builtin_off(*apps: object) -> None:
        """Switch FastAPI's own request telemetry off on these apps (see
        ``_fastapi_builtin``): the app we wrap, and the app whose stack we are in."""
        for target in apps:
            if target is not None:
                try:
                    switch_off(target)
                except Exception as exc:  # an unexpected FastAPI: leave it as it is
                    warn_failure(exc)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":  # before any request, when the server has one
                self._builtin_off(scope.get("app"))
            await self.app(scope, receive, send)
            return
        record = self._start(scope)
        if record is None:
            await self.app(scope, receive, send)
            return
        responder = _Responder(send, record, scope, self._telemetry.options)
        try:
            await self.app(scope, receive, responder)
        except BaseException as exc:
            if not record.done:
                _set_route(record, scope)
                record.fail(exc)
                record.finish()
            raise
        finally:
            record.detach()
        if not record.done:  # the app returned without finishing its response
            _set_route(record, scope)
            record.finish()

    def _start(self, scope: Scope) -> RequestRecord | None:
        telemetry = self._telemetry
        try:
            if not self._native_reported and "fastapi.telemetry" in scope:
                self._check_native_telemetry(scope)  # excluded paths included
            if telemetry.excluded(_app_path(scope)):
                return None
            inst = telemetry.instruments()
            if inst is None:
                return None
            headers = _headers(scope)
            return telemetry.start(
                inst,
                scope.get("method", "GET"),
                scope.get("scheme", "http"),
                _request_attributes(scope, headers, telemetry.options),
                headers,
                _GETTER,
            )
        except Exception as exc:  # serve the request without telemetry
            warn_failure(exc)
            return None

    def _check_native_telemetry(self, scope: Scope) -> None:
        """Warn, once, when FastAPI recorded a server span of its own for this request
        (only logs, or nothing, is not worth a word)."""
        if native_request_span(scope) is None:
            return
        self._native_reported = True
        app = scope.get("app")
        if not has_settings(app):  # FastAPI's telemetry is an outer app's (we are mounted)
            logger.warning(
                "FastAPI's built-in telemetry of an app this one is mounted in records a "
                "server span of its own, and FastAPITelemetryMiddleware's span nests under "
                "it. Add the middleware to the outer app instead (or pass it "
                "telemetry={'tracing': False}) to record each request once."
            )
            return
        switch_off(app)
        if not traces_requests(app):
            logger.warning(
                "FastAPI's built-in telemetry was recording this app's requests too (a "
                "second server span and %s series each, excluded paths included); it is "
                "now off for this app, so later requests are recorded once.",
                DURATION_METRIC,
            )
        else:
            logger.warning(
                "FastAPI's built-in telemetry records a server span of its own into the "
                "tracer_provider given to FastAPI(telemetry=...), and "
                "FastAPITelemetryMiddleware's span nests under it. Leave that provider out "
                "(or pass 'tracing': False) to record each request once."
            )


def _app_path(scope: Scope) -> str:
    """The path below ``root_path``, which is what ``excluded_paths`` speaks about."""
    path: str = scope.get("path") or "/"
    root = scope.get("root_path")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """Request headers by (lower-case, as ASGI gives them) name, values undecoded:
    only the few that are read get decoded. Repeated headers are joined with commas."""
    raw = scope.get("headers") or ()
    headers: dict[bytes, bytes] = dict(raw)
    if len(headers) != len(raw):  # a name occurs twice: combine, as HTTP allows
        headers = {}
        for name, value in raw:
            headers[name] = headers[name] + b"," + value if name in headers else value
    return headers


def _text(headers: Mapping[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return None if value is None else value.decode("latin-1")


class _HeaderGetter(Getter[Mapping[bytes, bytes]]):
    """Reads propagation headers (``traceparent``...) from the undecoded headers."""

    _names: dict[str, bytes] = {}  # noqa: RUF012 - a shared cache of fixed header names

    def get(self, carrier: Mapping[bytes, bytes], key: str) -> list[str] | None:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = key.lower().encode("latin-1")
        value = carrier.get(name)
        return None if value is None else [value.decode("latin-1")]

    def keys(self, carrier: Mapping[bytes, bytes]) -> list[str]:
        return [name.decode("latin-1") for name in carrier]


_GETTER = _HeaderGetter()


def _request_attributes(
    scope: Scope, headers: Mapping[bytes, bytes], options: MiddlewareOptions
) -> dict[str, Any]:
    attributes: dict[str, Any] = {"url.path": clip(scope.get("path") or "/")}
    query = scope.get("query_string")
    if query:
        attributes["url.query"] = redact_query(query.decode("latin-1"), options.redact_params)
    host = _text(headers, b"host")
    address: str | None
    port: int | None
    if host:
        address, port = split_host(host)
    else:
        server = scope.get("server")
        address, port = (server[0], server[1]) if server else (None, None)
    if address:
        attributes["server.address"] = address
        if isinstance(port, int):
            attributes["server.port"] = port
    user_agent = _text(headers, b"user-agent")
    if user_agent:
        attributes["user_agent.original"] = clip(user_agent)
    for name, key in options.request_headers.items():
        value = _text(headers, name.encode("latin-1"))
        if value is not None:
            attributes[key] = header_attribute(name, [value], options.redact_params)
    return attributes


class _Responder:
    """Wraps ``send``: notes the status, and ends the span once the last body chunk
    has been handed to the server (background tasks run after that, untimed)."""

    __slots__ = ("_options", "_record", "_scope", "_send")

    def __init__(
        self, send: Send, record: RequestRecord, scope: Scope, options: MiddlewareOptions
    ) -> None:
        self._send = send
        self._record = record
        self._scope = scope
        self._options = options

    async def __call__(self, message: Message) -> None:
        record = self._record
        kind = message.get("type")
        last = False
        if kind == "http.response.start":
            self._on_start(message)
        elif kind in ("http.response.body", "http.response.zerocopysend"):
            last = not message.get("more_body", False)
        elif kind == "http.response.pathsend":
            last = True
        try:
            await self._send(message)
        except BaseException as exc:
            if not record.done:
                _set_route(record, self._scope)
                record.fail(exc)
                record.finish()
            raise
        if last and not record.done:
            _set_route(record, self._scope)
            record.finish()

    def _on_start(self, message: Message) -> None:
        try:
            status = message.get("status")
            self._record.status = status if isinstance(status, int) else None
            wanted = self._options.response_headers
            if wanted:
                self._record.response_headers(
                    _captured(message.get("headers") or (), wanted, self._options)
                )
        except Exception as exc:
            warn_failure(exc)


def _captured(
    headers: Iterable[tuple[bytes, bytes]], wanted: Mapping[str, str], options: MiddlewareOptions
) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name in wanted:
            values.setdefault(name, []).append(raw_value.decode("latin-1"))
    return {
        wanted[name]: header_attribute(name, found, options.redact_params)
        for name, found in values.items()
    }


def _set_route(record: RequestRecord, scope: Scope) -> None:
    if record.route is not None:
        return
    try:
        record.route = _route_template(scope)
    except Exception as exc:  # an unusual router must not break the request
        warn_failure(exc)


def _route_template(scope: Scope) -> str | None:
    """The matched route's template, e.g. ``/users/{user_id}``; None when none matched."""
    route = scope.get("route")
    if route is None:
        # Starlette versions that do not record the route still record its endpoint.
        return _replayed_template(scope, None) if "endpoint" in scope else None
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return None
    if "app_root_path" not in scope:  # not below a Mount: the template is complete
        return template
    return _replayed_template(scope, route)


def _replayed_template(scope: Scope, target: object) -> str | None:
    """Replay the top router's matching to find ``target`` (or, when None, the route
    that matched) and collect the ``Mount`` prefixes on the way: templates, never the
    matched path, which may hold ids."""
    from starlette.routing import Match

    routes = getattr(scope.get("router"), "routes", None)
    probe: dict[str, Any] = {
        "type": scope["type"],
        "path": scope.get("path", "/"),
        "root_path": scope.get("app_root_path", scope.get("root_path", "")),
        "method": scope.get("method"),
        "headers": scope.get("headers") or [],
    }
    prefix = ""
    for _ in range(_MAX_MOUNT_DEPTH):
        descend: Any = None
        partial: Any = None
        for route in routes or ():
            match, child = route.matches(probe)
            if match is Match.NONE:
                continue
            if route is target:
                return prefix + str(getattr(route, "path_format", ""))
            if match is Match.FULL and getattr(route, "routes", None):
                descend = route  # a Mount (or Host) with routes below it
                probe = {**probe, **child}
                break
            if match is Match.FULL:
                return prefix + str(route.path_format) if target is None else None
            partial = partial or route
        if descend is None:
            found = target is None and partial is not None
            return prefix + str(partial.path_format) if found else None
        prefix += getattr(descend, "path", "")
        routes = descend.routes
    return None
