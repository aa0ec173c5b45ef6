"""Real servers on loopback for the middleware tests, and helpers to read what the
receiver got back."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from telemetryflow.testing import OTLPReceiver, attrs

SERVER_START_TIMEOUT = 10.0


def new_traceparent() -> tuple[str, str, str]:
    """A sampled W3C ``traceparent`` and its trace id and parent span id in hex."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a loopback port; yields its base URL."""
    import uvicorn

    sock = loopback_socket()
    config = uvicorn.Config(app, lifespan="off", log_level="critical", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextmanager
def wsgi_server(app: Any) -> Iterator[str]:
    """Serve a WSGI app with Werkzeug's threaded server on loopback; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def metric_points(receiver: OTLPReceiver, name: str) -> list[tuple[dict[str, Any], Any]]:
    """``(attributes, data point)`` of the latest export of metric ``name``."""
    metric = receiver.find_metric(name)
    if metric is None:
        return []
    data = getattr(metric, metric.WhichOneof("data"))
    return [(attrs(point.attributes), point) for point in data.data_points]


def total(receiver: OTLPReceiver, name: str, match: dict[str, Any] | None = None) -> int:
    """A counter's sum (a histogram's count) over the points whose attributes match."""
    found = 0
    for attributes, point in metric_points(receiver, name):
        if all(attributes.get(k) == v for k, v in (match or {}).items()):
            found += int(point.count) if hasattr(point, "count") else int(point.as_int)
    return found


def repo_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: ours, minus any telemetry settings of the
    machine running the tests, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRYFLOW_", "OTEL_"))}
    env.update(extra)
    return env
