"""A Flask app traced and measured by ``FlaskTelemetryMiddleware``.

Configuration comes from the environment (``TELEMETRYFLOW_*`` and ``OTEL_*``
variables) or from ``telemetryflow setup``. With nothing set, it sends to a local
collector at 127.0.0.1:4317 without TLS, for instance one started with::

    telemetryflow collector --no-auth

Run it with Flask's development server, or with gunicorn (the client is built at
import, so ``--preload`` workers share the configuration and each exports on its own)::

    python examples/flask_app.py
    gunicorn --chdir examples --preload -w 4 flask_app:app

then try ``curl localhost:5000/users/42``, ``/stream``, ``/error`` or ``/nope``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, stream_with_context

from telemetryflow import BuilderError, TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow.middleware import FlaskTelemetryMiddleware

LOCAL_ENDPOINT = "127.0.0.1:4317"
LOCAL_KEY = ("tfk_local_example", "tfs_local_example")


def build_client(service_name: str) -> TelemetryFlowClient:
    """The environment (or ``telemetryflow setup``) first; a local collector otherwise."""

    def configured() -> TelemetryFlowBuilder:
        builder = TelemetryFlowBuilder().with_auto_configuration()
        if not (
            os.environ.get("TELEMETRYFLOW_SERVICE_NAME") or os.environ.get("OTEL_SERVICE_NAME")
        ):
            builder.with_service(service_name)
        return builder

    probe = configured().with_api_key(*LOCAL_KEY).build_config()
    builder = configured()
    if probe.sources.get("endpoint") == "default":  # nothing says where to send
        builder.with_endpoint(LOCAL_ENDPOINT).with_insecure()
        try:
            builder.build_config()
        except BuilderError as exc:
            if exc.field != "credentials":
                raise
            builder.with_api_key(*LOCAL_KEY)  # a local collector without auth takes any key
    client = builder.build()
    client.initialize()
    return client


client = build_client("flask-example")
app = Flask(__name__)


@app.get("/users/<int:user_id>")
def get_user(user_id: int) -> dict[str, Any]:
    # Inside the request's span: this span is its child, the log carries its ids.
    with client.span("db.load_user", attributes={"user.id": user_id}):
        time.sleep(0.01)
    client.log_info("loaded user", {"user.id": user_id})
    return {"id": user_id, "name": f"user-{user_id}"}


@app.get("/stream")
def stream() -> Response:
    def rows() -> Iterator[str]:
        for i in range(5):
            time.sleep(0.05)
            yield f"row {i}\n"

    # The request's span ends when the last row has been sent.
    return Response(stream_with_context(rows()), mimetype="text/plain")


@app.get("/error")
def error() -> str:
    raise RuntimeError("something broke")  # a 500, the span marked failed


@app.get("/health")
def health() -> str:
    return "ok"


FlaskTelemetryMiddleware(
    client,
    app,
    excluded_paths=["/health", "/static/*"],
    capture_request_headers=["X-Request-Id"],
)


if __name__ == "__main__":
    try:
        app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
    finally:
        client.shutdown(timeout=5)
