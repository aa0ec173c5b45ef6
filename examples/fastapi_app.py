"""A FastAPI app traced and measured by ``FastAPITelemetryMiddleware``.

Configuration comes from the environment (``TELEMETRYFLOW_*`` and ``OTEL_*``
variables) or from ``telemetryflow setup``. With nothing set, it sends to a local
collector at 127.0.0.1:4317 without TLS, for instance one started with::

    telemetryflow collector --no-auth

Run it::

    python examples/fastapi_app.py
    uvicorn --app-dir examples fastapi_app:app

then try ``curl localhost:8000/users/42``, ``/stream``, ``/error``, ``/later`` or ``/nope``.

The client is built when the module loads, so the middleware can be added, and is
initialized in the lifespan: until then (and after shutdown) requests simply pass
through the middleware.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import StreamingResponse

from telemetryflow import BuilderError, TelemetryFlowBuilder, TelemetryFlowClient
from telemetryflow.middleware import FastAPITelemetryMiddleware

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
    return builder.build()


client = build_client("fastapi-example")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    client.initialize()
    try:
        yield
    finally:
        client.shutdown(timeout=5)


# Recent FastAPI versions trace and measure requests themselves once a global
# OpenTelemetry provider is set (this client installs one). Adding the middleware
# turns FastAPI's own request spans and metrics off for this app, so each request
# is recorded once.
app = FastAPI(lifespan=lifespan)
app.add_middleware(
    FastAPITelemetryMiddleware,
    client=client,
    excluded_paths=["/health", "/docs", "/openapi.json"],
    capture_request_headers=["X-Request-Id"],
)


@app.get("/users/{user_id}")
async def get_user(user_id: int) -> dict[str, Any]:
    # Inside the request's span: this span is its child, the log carries its ids.
    with client.span("db.load_user", attributes={"user.id": user_id}):
        await asyncio.sleep(0.01)
    client.log_info("loaded user", {"user.id": user_id})
    return {"id": user_id, "name": f"user-{user_id}"}


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def rows() -> AsyncIterator[bytes]:
        for i in range(5):
            await asyncio.sleep(0.05)
            yield f"row {i}\n".encode()

    # The request's span ends when the last row has been sent.
    return StreamingResponse(rows(), media_type="text/plain")


@app.get("/later")
async def later(tasks: BackgroundTasks) -> dict[str, str]:
    async def send_email() -> None:
        await asyncio.sleep(0.2)
        client.log_info("email sent")  # after the response, still in the request's trace

    tasks.add_task(send_email)
    return {"status": "queued"}


@app.get("/error")
async def error() -> None:
    raise RuntimeError("something broke")  # a 500, the span marked failed


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
