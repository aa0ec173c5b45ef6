"""Request instrumentation for Flask and FastAPI/Starlette, imported on first use.

Importing this package never imports a web framework: each middleware class loads
when its name is first accessed, so apps pay only for the framework they use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from telemetryflow.middleware._asgi import FastAPITelemetryMiddleware
    from telemetryflow.middleware._flask import FlaskTelemetryMiddleware

__all__ = ["FastAPITelemetryMiddleware", "FlaskTelemetryMiddleware"]


def __getattr__(name: str) -> Any:
    if name == "FlaskTelemetryMiddleware":
        from telemetryflow.middleware._flask import FlaskTelemetryMiddleware

        return FlaskTelemetryMiddleware
    if name == "FastAPITelemetryMiddleware":
        from telemetryflow.middleware._asgi import FastAPITelemetryMiddleware

        return FastAPITelemetryMiddleware
    raise AttributeError(f"module 'telemetryflow.middleware' has no attribute {name!r}")
