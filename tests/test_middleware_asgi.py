"""FastAPITelemetryMiddleware on a FastAPI app served by uvicorn on loopback, driven by
httpx; every assertion is on what reached the OTLP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from opentelemetry import baggage, trace
from opentelemetry.proto.trace.v1 import trace_pb2
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from _support import builder_for
from apps.support import metric_points, new_traceparent, total, uvicorn_server
from telemetryflow import TelemetryFlowClient
from telemetryflow._recording.diagnostics import reset_throttle
from telemetryflow.middleware import FastAPITelemetryMiddleware
from telemetryflow.testing import OTLPReceiver

DURATION = "http.server.request.duration"
COUNT = "http.server.request.count"
ERRORS = "http.server.error.count"
SERVER = trace_pb2.Span.SPAN_KIND_SERVER
STATUS_ERROR = trace_pb2.Status.STATUS_CODE_ERROR
REQUEST_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("request_tag", default="-")


class TeapotError(Exception):
    """Handled by the app: becomes a 418."""


class TagMiddleware:
    """An outer pure-ASGI middleware that sets a context variable for the request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-tag":
                    REQUEST_TAG.set(value.decode())
        await self.app(scope, receive, send)


# FastAPI's own telemetry turns on whenever some test has set a global provider; the
# apps here measure the middleware alone (one test covers the two together).
WITHOUT_BUILTIN: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI).parameters
    else {}
)


def make_app(client: TelemetryFlowClient, **options: Any) -> FastAPI:
    app = FastAPI(**WITHOUT_BUILTIN)

    @app.get("/users/{user_id}")
    async def get_user(user_id: int, request: Request) -> dict[str, Any]:
        await asyncio.sleep(float(request.query_params.get("sleep", "0")))
        with client.span("load-user"):
            client.log_info("loading user")
        current = trace.get_current_span().get_span_context()
        return {
            "id": user_id,
            "trace_id": format(current.trace_id, "032x"),
            "tag": REQUEST_TAG.get(),
        }

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> Any:
            for i in range(3):
                await asyncio.sleep(0.15)
                yield f"chunk {i}\n".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    @app.get("/teapot")
    async def teapot() -> None:
        raise TeapotError("short and stout")

    @app.get("/unavailable")
    async def unavailable() -> JSONResponse:
        return JSONResponse({"retry": True}, status_code=503)

    @app.get("/background")
    async def background(tasks: BackgroundTasks) -> dict[str, str]:
        async def later() -> None:
            await asyncio.sleep(0.4)
            client.log_info("background done", {"tag": REQUEST_TAG.get()})

        tasks.add_task(later)
        return {"queued": "yes"}

    @app.get("/baggage")
    async def get_baggage() -> dict[str, Any]:
        return {k: str(v) for k, v in baggage.get_all().items()}

    @app.get("/plain/{n}")
    async def plain(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/internal/{name}")
    async def internal(name: str) -> PlainTextResponse:
        return PlainTextResponse(name)

    @app.exception_handler(TeapotError)
    async def on_teapot(request: Request, exc: TeapotError) -> JSONResponse:
        return JSONResponse({"error": "teapot"}, status_code=418)

    @app.exception_handler(Exception)
    async def on_any(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"handled_by": "app", "error": str(exc)}, status_code=500)

    options.setdefault("excluded_paths", ["/health", "/internal/*"])
    app.add_middleware(FastAPITelemetryMiddleware, client=client, **options)
    app.add_middleware(TagMiddleware)
    return app


@pytest.fixture
def client(receiver: OTLPReceiver) -> Iterator[TelemetryFlowClient]:
    tf = builder_for(receiver).build()
    tf.initialize()
    yield tf
    tf.shutdown(timeout=5)


@pytest.fixture
def served(client: TelemetryFlowClient) -> Iterator[httpx.Client]:
    with uvicorn_server(make_app(client)) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield http


def server_spans(receiver: OTLPReceiver) -> list[Any]:
    return [s for s in receiver.spans() if s.span.kind == SERVER]


def flushed(client: TelemetryFlowClient, receiver: OTLPReceiver, n_server_spans: int) -> list[Any]:
    client.flush(timeout=5)
    assert receiver.wait_for(lambda: len(server_spans(receiver)) >= n_server_spans, 5)
    # The response reaches the test before the middleware finishes recording, so the
    # first flush can run before the request's metrics exist; they do once its span
    # has arrived (the middleware ends the span last).
    client.flush(timeout=5)
    return server_spans(receiver)


def test_continues_the_callers_trace_and_parents_handler_telemetry(
    served: httpx.Client, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    header, trace_id, parent_id = new_traceparent()
    response = served.get("/users/42", headers={"traceparent": header, "user-agent": "tests/1.0"})
    assert response.status_code == 200
    assert response.json()["trace_id"] == trace_id  # the span was current in the handler

    [span] = flushed(client, receiver, 1)
    assert span.name == "GET /users/{user_id}"
    assert span.span.trace_id.hex() == trace_id
    assert span.span.parent_span_id.hex() == parent_id
    assert span.attributes == {
        "http.request.method": "GET",
        "http.route": "/users/{user_id}",
        "url.path": "/users/42",
        "url.scheme": "http",
        "http.response.status_code": 200,
        "server.address": "127.0.0.1",
        "server.port": int(str(served.base_url.port)),
        "user_agent.original": "tests/1.0",
    }
    [child] = [s for s in receiver.spans() if s.name == "load-user"]
    assert child.span.parent_span_id == span.span.span_id
    assert receiver.wait_for(lambda: len(receiver.logs()) == 1, 5)
    [log] = receiver.logs()
    assert (log.log.trace_id, log.log.span_id) == (span.span.trace_id, child.span.span_id)


def test_baggage_is_extracted_even_from_repeated_headers(served: httpx.Client) -> None:
    header, _, _ = new_traceparent()
    headers = [("traceparent", header), ("baggage", "tenant=acme"), ("baggage", "plan=pro")]
    assert served.get("/baggage", headers=headers).json() == {"tenant": "acme", "plan": "pro"}


def test_duration_histogram_and_counts_carry_only_bounded_attributes(
    served: httpx.Client, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    for user_id in (1, 2, 3):
        assert served.get(f"/users/{user_id}?secret_q=x").status_code == 200
    assert served.get("/unavailable").status_code == 503
    flushed(client, receiver, 4)

    [(attributes, point)] = [
        (a, p)
        for a, p in metric_points(receiver, DURATION)
        if a.get("http.route") == "/users/{user_id}"
    ]
    assert attributes == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "http.route": "/users/{user_id}",
        "http.response.status_code": 200,
    }
    assert point.count == 3
    assert 0 < point.sum < 3
    assert receiver.find_metric(DURATION).unit == "s"
    assert total(receiver, COUNT) == 4
    assert total(receiver, ERRORS) == 1
    assert total(receiver, ERRORS, {"error.type": "503", "http.route": "/unavailable"}) == 1


def test_streaming_response_is_timed_to_the_last_chunk(
    served: httpx.Client, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    response = served.get("/stream")
    assert response.text == "chunk 0\nchunk 1\nchunk 2\n"

    [span] = flushed(client, receiver, 1)
    assert span.name == "GET /stream"
    assert (span.span.end_time_unix_nano - span.span.start_time_unix_nano) / 1e9 >= 0.44
    [(_, point)] = metric_points(receiver, DURATION)
    assert point.sum >= 0.44


def test_background_task_runs_after_the_span_in_the_request_context(
    served: httpx.Client, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    header, trace_id, _ = new_traceparent()
    response = served.get("/background", headers={"traceparent": header, "x-tag": "blue"})
    assert response.json() == {"queued": "yes"}

    [span] = flushed(client, receiver, 1)
    assert (span.span.end_time_unix_nano - span.span.start_time_unix_nano) / 1e9 < 0.3
    assert receiver.wait_for(lambda: client.flush(1) or len(receiver.logs()) == 1, 5)
    [log] = receiver.logs()
    assert log.body == "background done"
    assert log.attributes == {"tag": "blue"}  # the outer middleware's context variable
    assert log.log.trace_id.hex() == trace_id


def test_unhandled_exception_marks_the_span_and_reaches_the_app_handler(
    served: httpx.Client, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    response = served.get("/boom")
    assert response.status_code == 500
    assert response.json() == {"handled_by": "app", "error": "kaboom"}

    [span] = flushed(client, receiver, 1)
    assert span.name == "GET /boom"
    assert span.span.status.code == STATUS_ERROR
    assert span.attributes["error.type"] == "RuntimeError"
    assert span.attributes["http.response.status_code"] == 500
    [event] = span.span.events
    assert event.name == "exception"
    assert {kv.key: kv.value.string_value for kv in event.attributes}["exception.message"] == (
        "kaboom"
    )
    assert total(receiver, ERRORS, {"error.type": "RuntimeError"}) == 1


def test_handled_4xx_exception_is_not_an_error(
    served: httpx.Client, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    response = served.get("/teapot")
    assert (response.status_code, response.json()) == (418, {"error": "teapot"})

    [span] = flushed(client, receiver, 1)
    assert span.span.status.code != STATUS_ERROR
    assert "error.type" not in span.attributes
    assert span.attributes["http.response.status_code"] == 418
    assert total(receiver, COUNT, {"http.response.status_code": 418}) == 1
    assert receiver.find_metric(ERRORS) is None


def test_unknown_route_has_no_route_and_bounded_cardinality(
    served: httpx.Client, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    for i in range(5):
        assert served.get(f"/no/such/page/{i}?id={i}").status_code == 404
    spans = flushed(client, receiver, 5)
    assert {s.name for s in spans} == {"GET"}
    assert all("http.route" not in s.attributes for s in spans)
    assert {s.attributes["url.path"] for s in spans} == {f"/no/such/page/{i}" for i in range(5)}
    points = metric_points(receiver, DURATION)
    assert [a for a, _ in points] == [
        {"http.request.method": "GET", "url.scheme": "http", "http.response.status_code": 404}
    ]
    assert points[0][1].count == 5


def test_unknown_method_is_recorded_as_other(
    served: httpx.Client, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    assert served.request("PURGE", "/users/1").status_code == 405
    [span] = flushed(client, receiver, 1)
    assert span.name == "HTTP /users/{user_id}"
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "PURGE"
    [(attributes, _)] = metric_points(receiver, DURATION)
    assert attributes["http.request.method"] == "_OTHER"


def test_excluded_paths_produce_no_spans_and_no_metrics(
    served: httpx.Client, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    for path in ("/health", "/internal/metrics", "/internal/x"):
        assert served.get(path).status_code == 200
    assert served.get("/users/7").status_code == 200
    spans = flushed(client, receiver, 1)
    assert [s.name for s in spans] == ["GET /users/{user_id}"]
    assert total(receiver, COUNT) == 1
    assert total(receiver, DURATION) == 1


def test_concurrent_requests_keep_their_own_context(
    served: httpx.Client, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    sent = [new_traceparent() for _ in range(16)]

    def call(i: int) -> dict[str, Any]:
        header = sent[i][0]
        return dict(
            served.get(
                f"/users/{i}?sleep=0.05", headers={"traceparent": header, "x-tag": f"t{i}"}
            ).json()
        )

    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(call, range(16)))
    assert [b["trace_id"] for b in bodies] == [trace_id for _, trace_id, _ in sent]
    assert [b["tag"] for b in bodies] == [f"t{i}" for i in range(16)]

    spans = flushed(client, receiver, 16)
    by_trace = {s.span.trace_id.hex(): s for s in spans}
    children = {s.span.trace_id.hex(): s for s in receiver.spans() if s.name == "load-user"}
    for i, (_, trace_id, parent_id) in enumerate(sent):
        assert by_trace[trace_id].span.parent_span_id.hex() == parent_id
        assert by_trace[trace_id].attributes["url.path"] == f"/users/{i}"
        assert children[trace_id].span.parent_span_id == by_trace[trace_id].span.span_id


def test_secrets_never_reach_the_receiver(receiver: OTLPReceiver) -> None:
    # The exporter's own scrubbing is off: the middleware must not record secrets itself.
    client = builder_for(receiver).with_scrubbing(False).build()
    client.initialize()
    app = make_app(
        client,
        capture_request_headers=["Authorization", "Cookie", "X-Request-Id", "X-Api-Key", "Referer"],
        capture_response_headers=["Set-Cookie", "Content-Type"],
    )

    @app.get("/login")
    async def login() -> JSONResponse:
        response = JSONResponse({"ok": True})
        response.set_cookie("session", "cookie-secret-3")
        return response

    secrets = [
        "bearer-secret-1",
        "cookie-secret-2",
        "cookie-secret-3",
        "query-secret-4",
        "apikey-secret-5",
        "referer-secret-6",
        "userinfo-secret-7",
    ]
    with uvicorn_server(app) as url, httpx.Client(base_url=url) as http:
        response = http.get(
            "/login?access_token=query-secret-4&page=2",
            headers={
                "Authorization": "Bearer bearer-secret-1",
                "X-Request-Id": "req-1",
                "Cookie": "session=cookie-secret-2",
                "X-Api-Key": "apikey-secret-5",
                "Referer": "https://bob:userinfo-secret-7@example.com/p?token=referer-secret-6",
            },
        )
        assert response.status_code == 200
    [span] = flushed(client, receiver, 1)
    client.shutdown(timeout=5)
    wire = b"".join(r.message.SerializeToString() for r in receiver.requests)
    for secret in secrets:
        assert secret.encode() not in wire
    attributes = span.attributes
    assert attributes["url.query"] == "access_token=[REDACTED]&page=2"
    assert attributes["http.request.header.authorization"] == ["[REDACTED]"]
    assert attributes["http.request.header.cookie"] == ["[REDACTED]"]
    assert attributes["http.request.header.x-api-key"] == ["[REDACTED]"]
    assert attributes["http.request.header.x-request-id"] == ["req-1"]
    assert attributes["http.request.header.referer"] == ["https://example.com/p?token=[REDACTED]"]
    assert attributes["http.response.header.set-cookie"] == ["[REDACTED]"]
    assert attributes["http.response.header.content-type"] == ["application/json"]


def test_mounted_routes_keep_their_mount_template(
    client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    async def item(request: Any) -> PlainTextResponse:
        return PlainTextResponse("item")

    inner = Starlette(routes=[Route("/items/{item_id}", item)])
    app = Starlette(routes=[Mount("/orgs/{org}", app=inner)])
    app.add_middleware(FastAPITelemetryMiddleware, client=client)
    with uvicorn_server(app) as url, httpx.Client(base_url=url) as http:
        assert http.get("/orgs/acme/items/9").status_code == 200
    [span] = flushed(client, receiver, 1)
    assert span.name == "GET /orgs/{org}/items/{item_id}"
    assert span.attributes["http.route"] == "/orgs/{org}/items/{item_id}"


async def drive(
    app: Any,
    scope: dict[str, Any],
    incoming: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Run one ASGI connection to completion with scripted incoming messages."""
    pending = list(incoming)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(10)
        raise AssertionError("the app waited for a message that never comes")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 5)
    return sent


def test_route_is_found_again_when_the_router_does_not_record_it(
    client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    class HideRoute:
        """Between this middleware and the router: takes scope["route"] away, as
        Starlette versions that do not record it would leave the scope."""

        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            async def hiding_send(message: Any) -> None:
                scope.pop("route", None)
                await send(message)

            await self.app(scope, receive, hiding_send)

    async def item(request: Any) -> PlainTextResponse:
        return PlainTextResponse("item")

    inner = Starlette(routes=[Route("/items/{item_id}", item)])
    app = Starlette(
        routes=[Route("/users/{user_id}", item), Mount("/orgs/{org}", app=inner)],
    )
    app.add_middleware(HideRoute)
    app.add_middleware(FastAPITelemetryMiddleware, client=client)
    with uvicorn_server(app) as url, httpx.Client(base_url=url) as http:
        assert http.get("/users/1").status_code == 200
        assert http.get("/orgs/acme/items/9").status_code == 200
        assert http.post("/users/1").status_code == 405
        assert http.get("/nope").status_code == 404
    spans = flushed(client, receiver, 4)
    assert sorted(s.name for s in spans) == [
        "GET",
        "GET /orgs/{org}/items/{item_id}",
        "GET /users/{user_id}",
        "POST /users/{user_id}",
    ]


def test_websocket_and_lifespan_pass_through(
    client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    events: list[str] = []

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("echo: " + await websocket.receive_text())
        await websocket.close()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = Starlette(routes=[WebSocketRoute("/ws", echo)], lifespan=lifespan)
    app.add_middleware(FastAPITelemetryMiddleware, client=client)
    lifespan_sent = asyncio.run(
        drive(
            app,
            {"type": "lifespan", "asgi": {"version": "3.0"}},
            [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}],
        )
    )
    ws_scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "scheme": "ws",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "subprotocols": [],
    }
    ws_sent = asyncio.run(
        drive(
            app,
            ws_scope,
            [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"}],
        )
    )
    assert events == ["startup", "shutdown"]
    assert [m["type"] for m in lifespan_sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert [m["type"] for m in ws_sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert ws_sent[1]["text"] == "echo: hi"
    client.flush(timeout=5)
    assert receiver.spans() == []
    assert receiver.find_metric(DURATION) is None


def test_pathsend_file_response_ends_the_span_before_background_tasks(
    client: TelemetryFlowClient, receiver: OTLPReceiver, tmp_path: Any
) -> None:
    from starlette.background import BackgroundTask
    from starlette.responses import FileResponse

    report = tmp_path / "report.txt"
    report.write_text("report")

    async def download(request: Any) -> FileResponse:
        return FileResponse(report, background=BackgroundTask(asyncio.sleep, 0.4))

    app = Starlette(routes=[Route("/report", download)])
    app.add_middleware(FastAPITelemetryMiddleware, client=client)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/report",
        "raw_path": b"/report",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"example.com")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "extensions": {"http.response.pathsend": {}},  # the server sends the file itself
    }
    sent = asyncio.run(drive(app, scope, [{"type": "http.request", "body": b""}]))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.pathsend"]
    [span] = flushed(client, receiver, 1)
    assert (span.name, span.attributes["http.response.status_code"]) == ("GET /report", 200)
    assert (span.span.end_time_unix_nano - span.span.start_time_unix_nano) / 1e9 < 0.3


def test_non_http_scopes_reach_the_app_as_the_very_same_objects(
    client: TelemetryFlowClient,
) -> None:
    seen: list[tuple[Any, Any, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    middleware = FastAPITelemetryMiddleware(inner, client=client)
    for kind in ("websocket", "lifespan"):
        scope = {"type": kind, "path": "/"}

        async def receive() -> dict[str, Any]:
            return {}

        async def send(message: Any) -> None:
            return None

        asyncio.run(middleware(scope, receive, send))
        assert seen[-1][0] is scope and seen[-1][1] is receive and seen[-1][2] is send


def test_uninitialized_or_shut_down_client_passes_requests_through(receiver: OTLPReceiver) -> None:
    idle = builder_for(receiver).build()
    with uvicorn_server(make_app(idle)) as url, httpx.Client(base_url=url) as http:
        assert http.get("/plain/1").json() == {"n": 1}
        assert http.get("/boom").status_code == 500
        idle.initialize()
        assert http.get("/plain/2").json() == {"n": 2}
        idle.flush(timeout=5)
        assert receiver.wait_for(lambda: len(server_spans(receiver)) == 1, 5)
        idle.shutdown(timeout=5)
        assert http.get("/plain/3").json() == {"n": 3}
    assert [s.attributes["url.path"] for s in server_spans(receiver)] == ["/plain/2"]


def test_a_failing_tracer_or_meter_never_breaks_the_request(
    served: httpx.Client,
    client: TelemetryFlowClient,
    receiver: OTLPReceiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import opentelemetry.propagate
    from opentelemetry.sdk.metrics._internal.instrument import Histogram

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("telemetry is broken")

    reset_throttle()  # the warning is once a minute per kind; another test may have used it

    # Failing when the request starts: served without telemetry.
    monkeypatch.setattr(opentelemetry.propagate, "get_global_textmap", broken)
    assert served.get("/plain/5").json() == {"n": 5}
    assert served.get("/boom").json() == {"handled_by": "app", "error": "kaboom"}
    monkeypatch.undo()
    # Failing when it finishes: the response is already right, the span still ends.
    monkeypatch.setattr(Histogram, "record", broken)
    assert served.get("/plain/6").json() == {"n": 6}
    assert served.get("/boom").json() == {"handled_by": "app", "error": "kaboom"}
    assert "HTTP middleware telemetry failed" in caplog.text
    monkeypatch.undo()
    spans = flushed(client, receiver, 2)
    assert sorted(s.attributes["url.path"] for s in spans) == ["/boom", "/plain/6"]


def test_fastapi_builtin_telemetry_is_reported_and_our_span_nests_under_it(
    client: TelemetryFlowClient, receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    if "telemetry" not in inspect.signature(FastAPI).parameters:
        pytest.skip("this FastAPI has no built-in telemetry")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    app = FastAPI(telemetry={"tracer_provider": provider, "metrics": False, "logs": False})

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.add_middleware(FastAPITelemetryMiddleware, client=client)
    header, trace_id, parent_id = new_traceparent()
    with uvicorn_server(app) as url:
        assert httpx.get(url + "/items/1", headers={"traceparent": header}).status_code == 200
    [native] = [s for s in exported.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    [span] = flushed(client, receiver, 1)
    assert format(native.context.trace_id, "032x") == trace_id
    assert native.parent is not None and format(native.parent.span_id, "016x") == parent_id
    assert span.span.trace_id.hex() == trace_id
    assert span.span.parent_span_id == native.context.span_id.to_bytes(8, "big")
    assert "FastAPI's built-in telemetry records a server span of its own" in caplog.text


def test_constructor_validates_its_arguments(client: TelemetryFlowClient) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    with pytest.raises(ValueError, match=r"only allowed at the end"):
        FastAPITelemetryMiddleware(app, client=client, excluded_paths=["/a/*/b"])
    with pytest.raises(TypeError, match="not a string"):
        FastAPITelemetryMiddleware(app, client=client, excluded_paths="/health")
    with pytest.raises(ValueError, match="not a header name"):
        FastAPITelemetryMiddleware(app, client=client, capture_request_headers=["bad name"])
    with pytest.raises(TypeError, match="TelemetryFlowClient"):
        FastAPITelemetryMiddleware(app, client=object())  # type: ignore[arg-type]


def test_missing_starlette_names_the_extra(
    client: TelemetryFlowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "starlette.routing", None)
    with pytest.raises(ImportError, match=r"pip install 'telemetryflow\[fastapi\]'"):
        FastAPITelemetryMiddleware(lambda *a: None, client=client)  # type: ignore[arg-type]
