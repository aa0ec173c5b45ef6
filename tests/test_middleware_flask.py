"""FlaskTelemetryMiddleware on Flask apps served by real WSGI servers on loopback
(Werkzeug's threaded server, and gunicorn with pre-forked workers), driven by httpx;
every assertion is on what reached the OTLP receiver."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import flask
import httpx
import pytest
from flask import Flask, Response, request, stream_with_context
from opentelemetry import baggage, trace
from opentelemetry.proto.trace.v1 import trace_pb2

from _support import KEY_ID, KEY_SECRET, builder_for
from apps.support import metric_points, new_traceparent, repo_env, total, wsgi_server
from telemetryflow import TelemetryFlowClient
from telemetryflow._recording.diagnostics import reset_throttle
from telemetryflow.middleware import FlaskTelemetryMiddleware
from telemetryflow.testing import OTLPReceiver

DURATION = "http.server.request.duration"
COUNT = "http.server.request.count"
ERRORS = "http.server.error.count"
SERVER = trace_pb2.Span.SPAN_KIND_SERVER
STATUS_ERROR = trace_pb2.Status.STATUS_CODE_ERROR
APPS = Path(__file__).parent / "apps"


class TeapotError(Exception):
    """Handled by the app: becomes a 418."""


def make_app(client: TelemetryFlowClient, **options: Any) -> Flask:
    app = Flask(__name__)

    @app.get("/users/<int:user_id>")
    def get_user(user_id: int) -> dict[str, Any]:
        time.sleep(float(request.args.get("sleep", "0")))
        with client.span("load-user"):
            client.log_info("loading user")
        current = trace.get_current_span().get_span_context()
        return {"id": user_id, "trace_id": format(current.trace_id, "032x")}

    @app.get("/baggage")
    def get_baggage() -> dict[str, Any]:
        return {k: str(v) for k, v in baggage.get_all().items()}

    @app.get("/plain/<int:n>")
    def plain(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[str]:
            for i in range(3):
                time.sleep(0.15)
                yield f"chunk {i}\n"
            client.log_info("stream done")

        return Response(stream_with_context(chunks()), mimetype="text/plain")

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("kaboom")

    @app.get("/teapot")
    def teapot() -> None:
        raise TeapotError("short and stout")

    @app.get("/unavailable")
    def unavailable() -> tuple[str, int]:
        return "later", 503

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get("/internal/<name>")
    def internal(name: str) -> str:
        return name

    @app.errorhandler(TeapotError)
    def on_teapot(exc: TeapotError) -> tuple[dict[str, str], int]:
        return {"error": "teapot"}, 418

    @app.errorhandler(500)
    def on_500(exc: Any) -> tuple[dict[str, str], int]:
        return {"handled_by": "app", "error": str(exc.original_exception)}, 500

    options.setdefault("excluded_paths", ["/health", "/internal/*"])
    FlaskTelemetryMiddleware(client, app, **options)
    return app


@pytest.fixture
def client(receiver: OTLPReceiver) -> Iterator[TelemetryFlowClient]:
    tf = builder_for(receiver).build()
    tf.initialize()
    yield tf
    tf.shutdown(timeout=5)


@pytest.fixture
def served(client: TelemetryFlowClient) -> Iterator[httpx.Client]:
    with wsgi_server(make_app(client)) as url, httpx.Client(base_url=url, timeout=10) as http:
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
    assert response.json()["trace_id"] == trace_id  # the span was current in the view

    [span] = flushed(client, receiver, 1)
    assert span.name == "GET /users/<int:user_id>"
    assert span.span.trace_id.hex() == trace_id
    assert span.span.parent_span_id.hex() == parent_id
    assert span.attributes == {
        "http.request.method": "GET",
        "http.route": "/users/<int:user_id>",
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


def test_baggage_is_extracted_and_current_in_the_view(served: httpx.Client) -> None:
    header, _, _ = new_traceparent()
    headers = {"traceparent": header, "baggage": "tenant=acme,plan=pro"}
    assert served.get("/baggage", headers=headers).json() == {"tenant": "acme", "plan": "pro"}


def test_duration_histogram_and_counts_carry_only_bounded_attributes(
    served: httpx.Client, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    for user_id in (1, 2, 3):
        assert served.get(f"/users/{user_id}?q=x").status_code == 200
    assert served.get("/unavailable").status_code == 503
    flushed(client, receiver, 4)

    [(attributes, point)] = [
        (a, p)
        for a, p in metric_points(receiver, DURATION)
        if a.get("http.route") == "/users/<int:user_id>"
    ]
    assert attributes == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "http.route": "/users/<int:user_id>",
        "http.response.status_code": 200,
    }
    assert point.count == 3
    assert 0 < point.sum < 3
    assert total(receiver, COUNT) == 4
    assert total(receiver, ERRORS) == 1
    assert total(receiver, ERRORS, {"error.type": "503", "http.route": "/unavailable"}) == 1


def test_streaming_response_is_timed_to_the_last_chunk_with_the_span_current(
    served: httpx.Client, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    assert served.get("/stream").text == "chunk 0\nchunk 1\nchunk 2\n"

    [span] = flushed(client, receiver, 1)
    assert span.name == "GET /stream"
    assert (span.span.end_time_unix_nano - span.span.start_time_unix_nano) / 1e9 >= 0.44
    [(_, point)] = metric_points(receiver, DURATION)
    assert point.sum >= 0.44
    assert receiver.wait_for(lambda: len(receiver.logs()) == 1, 5)
    [log] = receiver.logs()  # logged by the generator, after the view returned
    assert (log.log.trace_id, log.log.span_id) == (span.span.trace_id, span.span.span_id)


def test_unhandled_exception_marks_the_span_and_the_apps_error_handler_runs(
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
    assert total(receiver, ERRORS, {"error.type": "RuntimeError"}) == 1


def test_send_file_keeps_the_servers_file_wrapper(
    client: TelemetryFlowClient, receiver: OTLPReceiver, tmp_path: Path
) -> None:
    from werkzeug.test import EnvironBuilder
    from werkzeug.wsgi import FileWrapper

    report = tmp_path / "report.txt"
    report.write_bytes(b"0123456789" * 1000)
    app = make_app(client)

    @app.get("/report")
    def get_report() -> Response:
        return flask.send_file(report)

    environ = EnvironBuilder(path="/report").get_environ()
    environ["wsgi.file_wrapper"] = FileWrapper  # as gunicorn provides, for sendfile
    statuses: list[str] = []
    body = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert isinstance(body, FileWrapper)  # still the server's: zero-copy stays possible
    assert b"".join(body) == report.read_bytes()
    client.flush(timeout=5)
    assert server_spans(receiver) == []  # the server has not closed it yet
    body.close()
    [span] = flushed(client, receiver, 1)
    assert (span.name, span.attributes["http.response.status_code"]) == ("GET /report", 200)
    assert statuses == ["200 OK"]


def test_propagated_exception_reaches_the_server_unchanged(
    client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    app = make_app(client)
    app.config["PROPAGATE_EXCEPTIONS"] = True
    raised: list[BaseException] = []
    flask_wsgi_app = app.wsgi_app

    def outer(environ: Any, start_response: Any) -> Any:
        try:
            return flask_wsgi_app(environ, start_response)
        except RuntimeError as exc:
            raised.append(exc)
            start_response("500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")])
            return [b"outer saw it"]

    app.wsgi_app = outer  # type: ignore[method-assign]
    with wsgi_server(app) as url:
        response = httpx.get(url + "/boom")
    assert (response.status_code, response.text) == (500, "outer saw it")
    [exc] = raised
    assert (type(exc), str(exc)) == (RuntimeError, "kaboom")
    [span] = flushed(client, receiver, 1)
    assert span.attributes["error.type"] == "RuntimeError"
    assert len(span.span.events) == 1  # recorded once, though seen by two hooks


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
    assert span.name == "HTTP"  # Flask matches no rule for a method it does not allow
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
    assert [s.name for s in spans] == ["GET /users/<int:user_id>"]
    assert total(receiver, COUNT) == 1
    assert total(receiver, DURATION) == 1


def test_concurrent_requests_keep_their_own_context(
    served: httpx.Client, client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    sent = [new_traceparent() for _ in range(16)]

    def call(i: int) -> str:
        response = served.get(f"/users/{i}?sleep=0.05", headers={"traceparent": sent[i][0]})
        return str(response.json()["trace_id"])

    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(call, range(16)))
    assert seen == [trace_id for _, trace_id, _ in sent]

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
    def login() -> Response:
        response = flask.jsonify(ok=True)
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
    with wsgi_server(app) as url, httpx.Client(base_url=url) as http:
        response = http.get(
            "/login?api_key=query-secret-4&page=2",
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
    assert attributes["url.query"] == "api_key=[REDACTED]&page=2"
    assert attributes["http.request.header.authorization"] == ["[REDACTED]"]
    assert attributes["http.request.header.cookie"] == ["[REDACTED]"]
    assert attributes["http.request.header.x-api-key"] == ["[REDACTED]"]
    assert attributes["http.request.header.x-request-id"] == ["req-1"]
    assert attributes["http.request.header.referer"] == ["https://example.com/p?token=[REDACTED]"]
    assert attributes["http.response.header.set-cookie"] == ["[REDACTED]"]
    assert attributes["http.response.header.content-type"] == ["application/json"]


def test_uninitialized_or_shut_down_client_passes_requests_through(receiver: OTLPReceiver) -> None:
    idle = builder_for(receiver).build()
    with wsgi_server(make_app(idle)) as url, httpx.Client(base_url=url) as http:
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

    monkeypatch.setattr(opentelemetry.propagate, "get_global_textmap", broken)
    assert served.get("/plain/5").json() == {"n": 5}
    assert served.get("/boom").json() == {"handled_by": "app", "error": "kaboom"}
    monkeypatch.undo()
    monkeypatch.setattr(Histogram, "record", broken)
    assert served.get("/plain/6").json() == {"n": 6}
    assert served.get("/boom").json() == {"handled_by": "app", "error": "kaboom"}
    assert "HTTP middleware telemetry failed" in caplog.text
    monkeypatch.undo()
    spans = flushed(client, receiver, 2)
    assert sorted(s.attributes["url.path"] for s in spans) == ["/boom", "/plain/6"]


def test_two_apps_on_one_client_both_count(
    client: TelemetryFlowClient, receiver: OTLPReceiver
) -> None:
    first, second = make_app(client), make_app(client)
    with wsgi_server(first) as one, wsgi_server(second) as two:
        assert httpx.get(one + "/plain/1").status_code == 200
        assert httpx.get(two + "/plain/2").status_code == 200
        assert httpx.get(two + "/plain/3").status_code == 200
    flushed(client, receiver, 3)
    assert total(receiver, COUNT, {"http.route": "/plain/<int:n>"}) == 3


def test_init_app_and_constructor_arguments(client: TelemetryFlowClient) -> None:
    app = Flask(__name__)
    middleware = FlaskTelemetryMiddleware(client, excluded_paths=["/health", "/static/*"])
    middleware.init_app(app)
    wrapped = app.wsgi_app
    middleware.init_app(app)  # idempotent
    assert app.wsgi_app is wrapped
    with pytest.raises(RuntimeError, match="already instrumented"):
        FlaskTelemetryMiddleware(client, app)
    with pytest.raises(ValueError, match=r"only allowed at the end"):
        FlaskTelemetryMiddleware(client, excluded_paths=["/a/*/b"])
    with pytest.raises(ValueError, match="must start with '/'"):
        FlaskTelemetryMiddleware(client, excluded_paths=["health"])
    with pytest.raises(TypeError, match="not a string"):
        FlaskTelemetryMiddleware(client, excluded_paths="/health")
    with pytest.raises(TypeError, match="TelemetryFlowClient"):
        FlaskTelemetryMiddleware(object())  # type: ignore[arg-type]


def test_missing_flask_names_the_extra(
    client: TelemetryFlowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "flask", None)
    with pytest.raises(ImportError, match=r"pip install 'telemetryflow\[flask\]'"):
        FlaskTelemetryMiddleware(client)


# -- gunicorn: pre-forked workers using a client built in the master ---------------------
def _start_gunicorn(receiver: OTLPReceiver, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    env = repo_env(
        TELEMETRYFLOW_API_KEY_ID=KEY_ID,
        TELEMETRYFLOW_API_KEY_SECRET=KEY_SECRET,
        TELEMETRYFLOW_ENDPOINT=receiver.grpc_endpoint,
        TELEMETRYFLOW_INSECURE="true",
        TELEMETRYFLOW_SERVICE_NAME="gunicorn-app",
        PYTHONPATH=str(APPS),
    )
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "3",
        "--preload",
        "--bind",
        "127.0.0.1:0",
        "-c",
        str(APPS / "gunicorn_conf.py"),
        "--chdir",
        str(APPS),
        "flask_gunicorn_app:app",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        text = log.read_text(errors="replace")
        port = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
        if port and text.count("Booting worker") >= 3:
            return process, int(port.group(1))
        time.sleep(0.05)
    process.kill()
    process.wait(5)
    raise AssertionError("gunicorn did not start:\n" + log.read_text(errors="replace"))


def test_gunicorn_preforked_workers_export_with_the_inherited_client(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    process, port = _start_gunicorn(receiver, tmp_path / "gunicorn.log")
    sent = [new_traceparent() for _ in range(9)]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            # Sync workers serve one request at a time: 9 slow concurrent requests
            # cannot all land on one worker.
            with ThreadPoolExecutor(9) as pool:
                bodies = list(
                    pool.map(
                        lambda i: http.get(
                            f"/users/{i}?sleep=0.3", headers={"traceparent": sent[i][0]}
                        ).json(),
                        range(9),
                    )
                )
            assert http.get("/health").text == "ok"
            assert http.get("/nope").status_code == 404
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(30)
    assert exit_code == 0, (tmp_path / "gunicorn.log").read_text(errors="replace")
    worker_pids = {body["pid"] for body in bodies}
    master_pid = bodies[0]["master_pid"]
    assert len(worker_pids) >= 2 and master_pid not in worker_pids

    log = (tmp_path / "gunicorn.log").read_text(errors="replace")
    assert receiver.wait_for(lambda: len(server_spans(receiver)) >= 11, 5), (
        [(s.name, s.resource["process.pid"]) for s in server_spans(receiver)],
        log,
    )
    spans = server_spans(receiver)
    # The master's only span is its warm-up request; the rest come from workers.
    assert [s.name for s in spans if s.resource["process.pid"] == master_pid] == ["GET /warmup"]
    spans = [s for s in spans if s.resource["process.pid"] != master_pid]
    assert {s.resource["process.pid"] for s in spans} <= worker_pids
    assert sorted(s.name for s in spans) == ["GET"] + ["GET /users/<int:user_id>"] * 9
    by_trace = {s.span.trace_id.hex(): s for s in spans}
    for _, trace_id, parent_id in sent:
        assert by_trace[trace_id].span.parent_span_id.hex() == parent_id
    children = [s for s in receiver.spans() if s.name == "load-user"]
    assert {c.span.parent_span_id for c in children} == {
        by_trace[t].span.span_id for _, t, _ in sent
    }
    # Each worker reports under its own identity.
    assert len({s.resource["service.instance.id"] for s in spans}) == len(
        {s.resource["process.pid"] for s in spans}
    )

    # Cumulative metrics per worker: the last export of each adds up to its requests.
    latest: dict[int, Any] = {}
    for record in receiver.metrics():
        if record.name == DURATION and record.resource["process.pid"] != master_pid:
            latest[record.resource["process.pid"]] = record.metric
    assert set(latest) <= worker_pids
    counts = {"/users/<int:user_id>": 0, None: 0}
    for metric in latest.values():
        for point in metric.histogram.data_points:
            attributes = {kv.key: kv.value for kv in point.attributes}
            route = attributes["http.route"].string_value if "http.route" in attributes else None
            counts[route] += point.count
    assert counts == {"/users/<int:user_id>": 9, None: 1}
