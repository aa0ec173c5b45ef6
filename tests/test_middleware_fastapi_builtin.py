"""The SDK reference's FastAPI example, as written, with FastAPI's own telemetry.

Recent FastAPI releases record requests themselves once a global OpenTelemetry
provider is set, which our client does by default. The example must still give one
server span per request, continuing the caller's trace, one duration series, and
nothing for excluded paths: on the newest FastAPI installed here and on the oldest
release ``pyproject.toml`` allows. Each app runs in its own process (the global
provider can be set once per process) under real uvicorn.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.proto.trace.v1 import trace_pb2

from _support import builder_for
from apps.support import new_traceparent, repo_env, uvicorn_server
from telemetryflow import TelemetryFlowClient
from telemetryflow.middleware import FastAPITelemetryMiddleware
from telemetryflow.testing import OTLPReceiver, attrs

ROOT = Path(__file__).resolve().parents[1]
APP = Path(__file__).resolve().parent / "apps" / "fastapi_reference.py"
DURATION = "http.server.request.duration"
SERVER = trace_pb2.Span.SPAN_KIND_SERVER
OLDEST_FASTAPI = "fastapi==0.100.*"  # the lower bound of the dev extra in pyproject.toml
OLDEST_STARLETTE = "starlette==0.27.*"  # what that FastAPI requires
START_TIMEOUT = 30.0
INSTALL_TIMEOUT = 180
HAS_BUILTIN = "telemetry" in inspect.signature(FastAPI).parameters


@contextmanager
def _serve(
    receiver: OTLPReceiver,
    lifespan: str,
    pythonpath: str,
    *extra: str,
    stderr: list[str] | None = None,
) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, str(APP), receiver.grpc_endpoint, lifespan, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=repo_env(PYTHONPATH=pythonpath),
    )
    try:
        assert proc.stdout is not None
        match = re.fullmatch(r"port (\d+)\n", proc.stdout.readline())
        assert match, proc.stderr.read() if proc.poll() is not None else "no port line"
        url = f"http://127.0.0.1:{match.group(1)}"
        _wait_until_serving(url, proc)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)  # uvicorn stops; the script flushes the client
        try:
            proc.wait(20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            if stderr is not None and proc.stderr is not None:
                stderr.append(proc.stderr.read())
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def _wait_until_serving(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"the reference app did not start (exit status {proc.poll()})")


def check_one_server_span_per_request(
    receiver: OTLPReceiver, lifespan: str, pythonpath: str
) -> None:
    requests = [new_traceparent() for _ in range(3)]
    with _serve(receiver, lifespan, pythonpath) as server:
        for n, (header, _, _) in enumerate(requests):
            response = httpx.get(f"{server}/items/{n}", headers={"traceparent": header})
            assert response.json() == {"id": n}
            assert httpx.get(server + "/health").status_code == 200
    # The process has exited and flushed: everything it sent has arrived.
    spans = [s for s in receiver.spans() if s.span.kind == SERVER]
    assert len(spans) == len(requests), [(s.scope, s.name) for s in spans]
    by_trace = {s.span.trace_id.hex(): s for s in spans}
    for _, trace_id, parent_id in requests:
        span = by_trace[trace_id]  # each continues its caller's trace...
        assert span.span.parent_span_id.hex() == parent_id  # ...as the caller's child
        assert span.name == "GET /items/{item_id}"
    assert all(s.attributes.get("url.path") != "/health" for s in receiver.spans())
    series = {
        (m.scope, tuple(sorted(attrs(p.attributes).items())))
        for m in receiver.metrics()
        if m.name == DURATION
        for p in m.metric.histogram.data_points
    }
    assert len(series) == 1, series
    [(_, attributes)] = series
    assert dict(attributes)["http.route"] == "/items/{item_id}"
    assert "http.server.active_requests" not in {m.name for m in receiver.metrics()}


@pytest.mark.slow
@pytest.mark.parametrize("lifespan", ["on", "off"])
def test_reference_example_records_each_request_once_on_the_newest_fastapi(
    receiver: OTLPReceiver, lifespan: str
) -> None:
    """``lifespan`` off: the first request is the first time the app is built."""
    if not HAS_BUILTIN:
        pytest.skip("the installed FastAPI has no built-in telemetry")
    check_one_server_span_per_request(
        receiver, lifespan, str(ROOT / "src") + os.pathsep + str(ROOT / "tests")
    )


@pytest.mark.slow
def test_reference_example_on_the_oldest_fastapi_allowed(
    receiver: OTLPReceiver, tmp_path: Path
) -> None:
    """The oldest FastAPI (and its Starlette) put ahead of the installed ones."""
    target = tmp_path / "oldest"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(target), OLDEST_FASTAPI, OLDEST_STARLETTE],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    probe = subprocess.run(
        [sys.executable, "-c", "import fastapi, starlette; print(fastapi.__version__, "
         "starlette.__version__)"],
        capture_output=True, text=True, timeout=60, check=False,
        env=repo_env(PYTHONPATH=str(target)),
    )  # fmt: skip
    assert re.fullmatch(r"0\.100\.\d+ 0\.27\.\d+\n", probe.stdout), probe.stdout + probe.stderr
    path = os.pathsep.join((str(target), str(ROOT / "src"), str(ROOT / "tests")))
    check_one_server_span_per_request(receiver, "on", path)


@pytest.mark.slow
def test_an_app_not_found_while_built_is_switched_off_at_its_first_request(
    receiver: OTLPReceiver,
) -> None:
    """The fallback: FastAPI's telemetry is switched off at the first request it
    records (here the excluded ``/health`` that tells the app is up), with a warning."""
    if not HAS_BUILTIN:
        pytest.skip("the installed FastAPI has no built-in telemetry")
    stderr: list[str] = []
    path = str(ROOT / "src") + os.pathsep + str(ROOT / "tests")
    requests = [new_traceparent() for _ in range(3)]
    with _serve(receiver, "off", path, "unseen", stderr=stderr) as server:
        for n, (header, _, _) in enumerate(requests):
            assert httpx.get(f"{server}/items/{n}", headers={"traceparent": header}).is_success
    per_trace = {trace_id: 0 for _, trace_id, _ in requests}
    for span in receiver.spans():
        if span.span.kind == SERVER and span.span.trace_id.hex() in per_trace:
            per_trace[span.span.trace_id.hex()] += 1
    assert list(per_trace.values()) == [1, 1, 1]
    [text] = stderr
    assert text.count("FastAPI's built-in telemetry was recording this app's requests") == 1
    assert "it is now off for this app" in text


@pytest.fixture
def client(receiver: OTLPReceiver) -> Iterator[TelemetryFlowClient]:
    tf = builder_for(receiver).build()
    tf.initialize()
    yield tf
    tf.shutdown(timeout=5)


def _logs_only_app(client: TelemetryFlowClient, **telemetry: Any) -> FastAPI:
    from opentelemetry.sdk._logs import LoggerProvider

    # FastAPI's own logs stay on (with a provider of their own, as no global one is
    # set in this process): FastAPI handles the request, but records no span.
    app = FastAPI(telemetry={"logger_provider": LoggerProvider(), **telemetry})

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.add_middleware(FastAPITelemetryMiddleware, client=client)
    return app


@pytest.mark.skipif(not HAS_BUILTIN, reason="the installed FastAPI has no built-in telemetry")
def test_no_warning_when_fastapi_records_no_span_of_its_own(
    client: TelemetryFlowClient, caplog: pytest.LogCaptureFixture
) -> None:
    app = _logs_only_app(client, tracing=False, metrics=False)
    with caplog.at_level(logging.WARNING), uvicorn_server(app) as url:
        assert httpx.get(url + "/items/1").json() == {"id": 1}
    assert "built-in telemetry" not in caplog.text


@pytest.mark.skipif(not HAS_BUILTIN, reason="the installed FastAPI has no built-in telemetry")
def test_adding_the_middleware_switches_off_only_what_goes_to_global_providers(
    client: TelemetryFlowClient,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    own = TracerProvider()
    app = FastAPI(telemetry={"tracer_provider": own})
    app.add_middleware(FastAPITelemetryMiddleware, client=client)
    app.build_middleware_stack()  # what FastAPI does before its first request
    settings: dict[str, Any] = app._telemetry  # type: ignore[attr-defined]
    assert settings["tracing"] is True  # the user gave it a provider of its own
    assert settings["metrics"] is False  # would have gone to the global provider
    assert settings["logs"] is True  # FastAPI's exception logs do not repeat ours
