"""The Flask app the pre-fork test serves with ``gunicorn --preload``.

The client is built from the environment and initialized at import time, that is in
the gunicorn master, before the workers fork, and the master serves one request:
every worker then records with a client (and middleware state) it inherited, which is
the situation pre-fork servers put an SDK in.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from flask import Flask, request

from telemetryflow import TelemetryFlowBuilder
from telemetryflow.middleware import FlaskTelemetryMiddleware

client = (
    TelemetryFlowBuilder()
    .with_auto_configuration()
    .with_global_providers(False)
    .with_batch_settings(timeout=timedelta(milliseconds=200))
    .build()
)
client.initialize()
MASTER_PID = os.getpid()

app = Flask(__name__)


@app.get("/users/<int:user_id>")
def get_user(user_id: int) -> dict[str, Any]:
    time.sleep(float(request.args.get("sleep", "0")))
    with client.span("load-user"):
        client.log_info("loading user")
    return {"id": user_id, "pid": os.getpid(), "master_pid": MASTER_PID}


@app.get("/health")
def health() -> str:
    return "ok"


@app.get("/warmup")
def warmup() -> str:
    return "warm"


FlaskTelemetryMiddleware(client, app, excluded_paths=["/health"])

# Serve one request in the master before the fork, as apps that warm up do: the
# middleware's instruments then exist before the workers do.
with app.test_client() as warm:
    warm.get("/warmup").close()
