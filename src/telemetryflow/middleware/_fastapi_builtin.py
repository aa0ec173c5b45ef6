"""FastAPI's built-in telemetry, and turning it off where our middleware does the job.

Recent FastAPI releases record every request themselves (a SERVER span and an
``http.server.request.duration`` histogram) as soon as a global OpenTelemetry
provider is set, which our client does. With our middleware added too, each
request would get two server spans (ours a child of FastAPI's, so no longer the
child of the caller's ``traceparent``), two duration series, and FastAPI's would
include the paths the user excluded.

FastAPI reads its settings (``FastAPI(telemetry={...})``, kept on the app) on every
request, and builds the middleware stack, which constructs our middleware, before
it reads them for the first request. So the middleware switches the app's request
tracing and metrics off when it is constructed, before any request is recorded.
Only what would go to the global providers is switched off: a ``tracer_provider``
or ``meter_provider`` given to FastAPI explicitly is the user's choice and stays.
FastAPI's logs of unhandled exceptions stay too; they do not repeat ours.

None of this is public FastAPI API, so every step checks the shape it expects and
does nothing when it differs (FastAPI releases without built-in telemetry).
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

__all__ = ["has_settings", "native_request_span", "owning_app", "switch_off", "traces_requests"]

_SETTINGS = ("tracing", "tracer_provider"), ("metrics", "meter_provider")
_MAX_FRAMES = 6  # __init__ <- build_middleware_stack, with room for a subclass or two


def _settings_of(app: object) -> list[dict[str, Any]]:
    """The settings dicts FastAPI reads per request (the app's and its runner's)."""
    found: list[dict[str, Any]] = []
    for holder, name in ((app, "_telemetry"), (getattr(app, "_native_telemetry", None), "config")):
        settings = getattr(holder, name, None)
        if not isinstance(settings, dict) or any(settings is seen for seen in found):
            continue
        if all(switch in settings for switch, _ in _SETTINGS):
            found.append(settings)
    return found


def switch_off(app: object) -> bool:
    """Turn off the app's request spans and metrics bound for the global providers.

    Returns True when something was on and is now off.
    """
    changed = False
    for settings in _settings_of(app):
        for switch, provider in _SETTINGS:
            if settings.get(switch) and settings.get(provider) is None:
                settings[switch] = False
                changed = True
    return changed


def has_settings(app: object) -> bool:
    """Whether ``app`` is a FastAPI app with built-in telemetry settings."""
    return bool(_settings_of(app))


def traces_requests(app: object) -> bool:
    """Whether the app's own request tracing is (still) on."""
    return any(bool(settings.get("tracing")) for settings in _settings_of(app))


def owning_app(middleware_class: type) -> object | None:
    """The FastAPI app whose middleware stack is being built right now with
    ``middleware_class`` in it, found on the caller's stack; None elsewhere."""
    frame: FrameType | None
    try:
        frame = sys._getframe(2)  # our caller's caller: skip __init__ itself
    except ValueError:
        return None
    for _ in range(_MAX_FRAMES):
        if frame is None:
            return None
        if frame.f_code.co_name == "build_middleware_stack":
            app = frame.f_locals.get("self")
            users = getattr(app, "user_middleware", None) or ()
            if _settings_of(app) and any(
                isinstance(getattr(m, "cls", None), type) and issubclass(m.cls, middleware_class)
                for m in users
            ):
                return app
            return None
        frame = frame.f_back
    return None


def native_request_span(scope: Any) -> Any:
    """FastAPI's recording SERVER span for this request, if its telemetry made one."""
    state = scope.get("fastapi.telemetry")
    span = getattr(state, "span", None)
    try:
        return span if span is not None and span.is_recording() else None
    except Exception:  # not the object we expect: assume no span
        return None
