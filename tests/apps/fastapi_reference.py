"""The SDK reference's FastAPI example, as written, served by uvicorn on loopback.

``python fastapi_reference.py OTLP_GRPC_ENDPOINT LIFESPAN [unseen]`` prints ``port N``
before it serves, and on SIGTERM stops serving and shuts the client down (flushing).
The client installs itself as the global OpenTelemetry provider, as it does by default.
``unseen``: the middleware cannot find its FastAPI app while the app is being built,
so only the per-request check is left to turn FastAPI's own telemetry off.
"""

from __future__ import annotations

import socket
import sys
from datetime import timedelta

import uvicorn
from fastapi import FastAPI

from telemetryflow import TelemetryFlowBuilder
from telemetryflow.middleware import FastAPITelemetryMiddleware

if sys.argv[3:] == ["unseen"]:
    import telemetryflow.middleware._asgi as asgi_middleware

    asgi_middleware.owning_app = lambda middleware_class: None  # type: ignore[assignment]

client = (
    TelemetryFlowBuilder()
    .with_api_key("tfk_reference_app", "tfs_reference_app")
    .with_service("reference-app", "1.0.0")
    .with_endpoint(sys.argv[1])
    .with_insecure()
    .with_batch_settings(timeout=timedelta(milliseconds=100))
    .build()
)
client.initialize()

# --- the example, as the reference writes it ---
app = FastAPI()
app.add_middleware(
    FastAPITelemetryMiddleware,
    client=client,
    excluded_paths=["/health"],
)
# --- end of the example ---


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    return {"id": item_id}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan=sys.argv[2], log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    print(f"port {sock.getsockname()[1]}", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        client.shutdown(timeout=5)
        sock.close()


if __name__ == "__main__":
    main()
