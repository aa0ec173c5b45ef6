"""Flask request instrumentation: one SERVER span and a few metric points per request.

It wraps ``app.wsgi_app`` rather than relying on request hooks alone, so it sees the
whole request, including the 500 that Flask's own error handling produces, and so a
streamed body is timed until the server has taken its last chunk. One
``teardown_request`` function, which Flask runs while the request is still bound,
reads the matched rule and the unhandled exception (if any); ``before_request`` is
avoided because an earlier hook that returns a response would skip it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry.propagators.textmap import Getter

from telemetryflow._extras.facade import TelemetryFlowClient
from telemetryflow._recording.fast_context import attach as _attach
from telemetryflow._recording.fast_context import detach as _detach
from telemetryflow.middleware._http_attributes import (
    MiddlewareOptions,
    clip,
    header_attribute,
    redact_query,
    split_host,
)
from telemetryflow.middleware._http_common import RequestRecord, ServerTelemetry, warn_failure

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

__all__ = ["FlaskTelemetryMiddleware"]

_ENVIRON_KEY = "telemetryflow.request:{}"  # one key per app: instrumented apps may nest
_EXTENSION_KEY = "telemetryflow"
_INSTALL_HINT = "FlaskTelemetryMiddleware needs Flask: pip install 'telemetryflow[flask]'"


def _require_flask() -> ModuleType:
    try:
        import flask
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return flask


class FlaskTelemetryMiddleware:
    """Traces and measures every request of a Flask app.

    Example:
        >>> middleware = FlaskTelemetryMiddleware(client, excluded_paths=["/health"])
        >>> middleware.init_app(app)

    Args:
        client: the client to record with; until it is initialized (and after it is
            shut down) requests pass through untouched.
        app: instrument this app now (else call :meth:`init_app`).
        record_request_duration: record ``http.server.request.duration`` (seconds).
        record_request_count: count requests in ``http.server.request.count``.
        record_error_count: count 5xx responses and unhandled exceptions in
            ``http.server.error.count``.
        excluded_paths: paths (relative to the app root) that get no span and no
            metrics: exact paths, or prefixes ending in ``*`` such as ``"/static/*"``.
        capture_request_headers: request headers to record as
            ``http.request.header.<name>``; secrets are always ``REDACTED``.
        capture_response_headers: the same for ``http.response.header.<name>``.
        redact_query_params: query parameters whose values are redacted in
            ``url.query``, on top of the built-in list (tokens, keys, passwords...).

    Raises:
        ImportError: Flask is not installed.
        TypeError, ValueError: an argument is invalid (e.g. a bad path pattern).
    """

    def __init__(
        self,
        client: TelemetryFlowClient,
        app: Flask | None = None,
        record_request_duration: bool = True,
        record_request_count: bool = True,
        record_error_count: bool = True,
        excluded_paths: Iterable[str] | None = None,
        *,
        capture_request_headers: Iterable[str] | None = None,
        capture_response_headers: Iterable[str] | None = None,
        redact_query_params: Iterable[str] | None = None,
    ) -> None:
        _require_flask()
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
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Instrument ``app``. Idempotent for the same middleware.

        Call it before wrapping ``app.wsgi_app`` in proxy middleware such as
        ``ProxyFix``, so the span sees the scheme and host the proxy restored.

        Raises:
            RuntimeError: another TelemetryFlow middleware already instruments ``app``.
        """
        flask = _require_flask()
        current = app.extensions.get(_EXTENSION_KEY)
        if current is self:
            return
        if current is not None:
            raise RuntimeError(
                "this Flask app is already instrumented by another FlaskTelemetryMiddleware"
            )
        key = _ENVIRON_KEY.format(id(app))
        app.wsgi_app = _InstrumentedWsgiApp(app.wsgi_app, self._telemetry, key)  # type: ignore[method-assign]
        app.teardown_request(_teardown(flask.request, key))
        app.extensions[_EXTENSION_KEY] = self


def _teardown(request_proxy: Any, key: str) -> Callable[[BaseException | None], None]:
    """A teardown function, which Flask runs while the request is still bound: it
    notes the matched rule (``/users/<int:user_id>``; none for a 404/405) and the
    exception Flask turned into a 500. A plain function, not a callable object:
    Flask checks every teardown function for ``async`` on every request."""

    def on_teardown(exc: BaseException | None) -> None:
        try:
            request = request_proxy._get_current_object()  # one proxy lookup, not three
            record = request.environ.get(key)
            if isinstance(record, RequestRecord):
                rule = request.url_rule
                if rule is not None:
                    record.route = rule.rule
                if exc is not None:
                    record.fail(exc)
        except Exception as error:  # never interfere with Flask's teardown
            warn_failure(error)

    return on_teardown


class _EnvironGetter(Getter[Mapping[str, Any]]):
    """Reads propagation headers (``traceparent``...) from a WSGI environ."""

    _names: dict[str, str] = {}  # noqa: RUF012 - a shared cache of fixed header names

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        name = self._names.get(key)
        if name is None:
            name = self._names[key] = _environ_name(key)
        value = carrier.get(name)
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


def _environ_name(header: str) -> str:
    name = header.upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name


_GETTER = _EnvironGetter()
_hosts: dict[str, tuple[str, int | None]] = {}
"""``split_host`` of recent ``Host`` headers: a server sees a few, again and again."""


def _request_attributes(environ: WSGIEnvironment, options: MiddlewareOptions) -> dict[str, Any]:
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    if not path.isascii():  # PEP 3333 hands over bytes decoded as latin-1
        path = path.encode("latin-1", "replace").decode("utf-8", "replace")
    attributes: dict[str, Any] = {"url.path": clip(path) or "/"}
    query = environ.get("QUERY_STRING")
    if query:
        attributes["url.query"] = redact_query(query, options.redact_params)
    host = environ.get("HTTP_HOST")
    if host:
        found = _hosts.get(host)
        if found is None:
            found = split_host(host)
            if len(_hosts) >= 256:  # a Host header is the client's to choose: stay bounded
                _hosts.clear()
            _hosts[host] = found
        address, port = found
    else:
        address = environ.get("SERVER_NAME", "")
        server_port = environ.get("SERVER_PORT", "")
        port = int(server_port) if server_port.isdigit() else None
    if address:
        attributes["server.address"] = address
        if port is not None:
            attributes["server.port"] = port
    user_agent = environ.get("HTTP_USER_AGENT")
    if user_agent:
        attributes["user_agent.original"] = clip(user_agent)
    for name, key in options.request_headers.items():
        value = environ.get(_environ_name(name))
        if isinstance(value, str):
            attributes[key] = header_attribute(name, [value], options.redact_params)
    return attributes


class _InstrumentedWsgiApp:
    """Replaces ``app.wsgi_app``: starts the span, calls Flask, wraps the body."""

    __slots__ = ("_key", "_telemetry", "wsgi_app")

    def __init__(self, wsgi_app: WSGIApplication, telemetry: ServerTelemetry, key: str) -> None:
        self.wsgi_app = wsgi_app
        self._telemetry = telemetry
        self._key = key

    def __call__(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        telemetry = self._telemetry
        record: RequestRecord | None = None
        if not telemetry.excluded(environ.get("PATH_INFO") or "/"):
            try:
                inst = telemetry.instruments()
                if inst is not None:
                    record = telemetry.start(
                        inst,
                        environ.get("REQUEST_METHOD", "GET"),
                        environ.get("wsgi.url_scheme", "http"),
                        _request_attributes(environ, telemetry.options),
                        environ,
                        _GETTER,
                    )
            except Exception as exc:  # serve the request without telemetry
                warn_failure(exc)
        if record is None:
            return self.wsgi_app(environ, start_response)
        environ[self._key] = record
        response = _Response(start_response, record, telemetry.options)
        try:
            body = self.wsgi_app(environ, response)
        except BaseException as exc:
            record.fail(exc)
            record.finish()
            raise
        finally:
            record.detach()
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
            return _keep_file_wrapper(body, record)
        response._body = body
        return response


def _keep_file_wrapper(body: Any, record: RequestRecord) -> Iterable[bytes]:
    """Return the server's own file wrapper (``send_file``) unwrapped, so the server
    can still send it with ``sendfile``; the span ends when the server closes it."""
    original_close = getattr(body, "close", None)

    def close() -> None:
        try:
            if original_close is not None:
                original_close()
        finally:
            record.finish()

    try:
        body.close = close
    except (AttributeError, TypeError):  # a wrapper with __slots__: time up to here
        record.finish()
    return body  # type: ignore[no-any-return]


class _Response:
    """The server's ``start_response`` and the response iterable, in one object.

    As ``start_response`` it notes the status, the body length and captured headers
    on their way to the server. As the body it keeps the request's span current
    while the body produces chunks. The span ends once the body's ``Content-Length``
    bytes have been handed out, or at its end, or when the server closes it,
    whichever comes first: a client that never reads a body it knows the size of
    (Werkzeug's test client takes only the first chunk until the test reads
    ``.data``) still gets its telemetry."""

    __slots__ = (
        "_body",
        "_iterator",
        "_options",
        "_record",
        "_sent",
        "_start_response",
        "content_length",
    )

    def __init__(
        self, start_response: StartResponse, record: RequestRecord, options: MiddlewareOptions
    ) -> None:
        self._start_response = start_response
        self._record = record
        self._options = options
        self.content_length: int | None = None
        self._body: Iterable[bytes] = ()
        self._iterator: Iterator[bytes] | None = None
        self._sent = 0

    def __call__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: tuple[type[BaseException], BaseException, TracebackType]
        | tuple[None, None, None]
        | None = None,
    ) -> Any:
        try:
            code = status[:3]
            self._record.status = int(code) if code.isdigit() else None
            self.content_length = _content_length(headers)
            wanted = self._options.response_headers
            if wanted:
                self._record.response_headers(_captured(headers, wanted, self._options))
        except Exception as exc:
            warn_failure(exc)
        return self._start_response(status, headers, exc_info)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        record = self._record
        context = record.context
        token = _attach(context) if context is not None else None
        try:
            if self._iterator is None:
                self._iterator = iter(self._body)
            chunk = next(self._iterator)
        except StopIteration:
            record.finish()
            raise
        except BaseException as exc:
            record.fail(exc)
            record.finish()
            raise
        finally:
            if token is not None:
                _detach(token)
        if not record.done:
            self._sent += len(chunk)
            length = self.content_length
            if length is not None and self._sent >= length:
                record.finish()  # the last byte the response announced is out
        return chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        except BaseException as exc:
            self._record.fail(exc)
            raise
        finally:
            self._record.finish()


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if len(name) == 14 and name.lower() == "content-length":
            text = value.strip()
            return int(text) if text.isdigit() else None
    return None


def _captured(
    headers: list[tuple[str, str]], wanted: Mapping[str, str], options: MiddlewareOptions
) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in wanted:
            values.setdefault(lowered, []).append(value)
    return {
        wanted[name]: header_attribute(name, found, options.redact_params)
        for name, found in values.items()
    }
